//! CPU utilisation from `/proc/stat` jiffies: busy / total between two reads.

use std::path::PathBuf;

/// Cumulative jiffies of the aggregate `cpu` line: (busy, total).
pub fn parse_cpu_line(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already
    // inside user, so only the first eight count.
    let fields = &nums[..nums.len().min(8)];
    let total: u64 = fields.iter().sum();
    let idle = nums[3] + nums.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

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
        parse_cpu_line(&std::fs::read_to_string(&self.path).ok()?)
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

    #[test]
    fn parses_and_differences() {
        let a = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu_line(a), Some((150, 1000)));
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("stat");
        std::fs::write(&p, a).expect("write");
        let mut u = CpuUtil::new(&p);
        // +300 busy, +100 idle: 75 %.
        std::fs::write(&p, "cpu  300 0 150 900 50 0 0 0 0 0\n").expect("write");
        let got = u.sample().expect("util");
        assert!((got - 0.75).abs() < 1e-12, "{got}");
        assert_eq!(parse_cpu_line("cpu  x y\n"), None);
    }
}
