//! CPU utilisation from `/proc/stat` ticks: busy / total between two reads (parsed by
//! [`super::process::stat_ticks`], the one reader of `/proc`).

use super::process::stat_ticks;
use std::path::PathBuf;

/// Utilisation in `[0, 1]` since the previous read.
#[derive(Debug)]
pub struct CpuUtil {
    path: PathBuf,
    prev: Option<(u64, u64)>,
}

impl CpuUtil {
    /// Reads once now, so the first [`CpuUtil::sample`] already has a delta.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let mut s = Self {
            path: path.into(),
            prev: None,
        };
        s.prev = s.read_raw();
        s
    }

    fn read_raw(&self) -> Option<(u64, u64)> {
        stat_ticks(&self.path).ok()
    }

    /// `None` when the file is unreadable or no time passed.
    pub fn sample(&mut self) -> Option<f64> {
        let cur = self.read_raw()?;
        let prev = self.prev.replace(cur)?;
        let total = cur.1.checked_sub(prev.1)?;
        let busy = cur.0.checked_sub(prev.0)?;
        (total > 0).then(|| (busy as f64 / total as f64).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/stat` as the kernel writes it, with the aggregate `cpu` line given.
    fn stat_file(cpu: &str) -> String {
        format!(
            "{cpu}\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1 0\nctxt 100\nbtime 1700000000\nprocesses 10\nprocs_running 1\nprocs_blocked 0\nsoftirq 1 0\n"
        )
    }

    #[test]
    fn parses_and_differences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("stat");
        // user nice system idle iowait irq softirq steal guest guest_nice: guest is inside
        // user already and not counted twice.
        std::fs::write(&p, stat_file("cpu  100 0 50 800 50 0 0 0 30 0")).expect("write");
        assert_eq!(stat_ticks(&p), Ok((150, 1000)));
        let mut u = CpuUtil::new(&p);
        // +300 busy, +100 idle: 75 %.
        std::fs::write(&p, stat_file("cpu  300 0 150 900 50 0 0 0 0 0")).expect("write");
        let got = u.sample().expect("util");
        assert!((got - 0.75).abs() < 1e-12, "{got}");
        std::fs::write(&p, stat_file("cpu  x y")).expect("write");
        assert!(stat_ticks(&p).is_err());
        assert_eq!(u.sample(), None);
    }
}
