//! Threads other programs keep runnable: what CPU contention is judged by
//! (`accounting::contention`).
//!
//! The kernel's `procs_running` (`/proc/stat`) counts every thread running or waiting for a
//! CPU on the machine, this process's included (the thread reading it is one). This
//! process's own runnable threads (state `R` in `/proc/self/task/*/stat`: llama.cpp's, the
//! sampler's) are taken off, so what is left is everyone else's. Two reads a moment apart can
//! disagree by a thread either way; the detector averages over a second.

use std::path::{Path, PathBuf};

/// The reading's id (`system` source, quantity `RunnableThreads`, limit the online CPUs).
pub const READING_ID: &str = "system:runnable";

/// Reads the machine's and this process's runnable threads.
#[derive(Debug, Clone)]
pub struct RunnableReader {
    stat: PathBuf,
    tasks: PathBuf,
}

/// One read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runnable {
    /// `procs_running`: every runnable thread on the machine.
    pub machine: u32,
    /// This process's threads in state R.
    pub own: u32,
    /// Online CPUs (`cpuN` lines of /proc/stat).
    pub cpus: u32,
}

impl Runnable {
    /// Other programs' runnable threads (negative when the two reads disagree).
    pub fn others(&self) -> i64 {
        i64::from(self.machine) - i64::from(self.own)
    }
}

impl RunnableReader {
    /// `proc_root` is `/proc` (tests pass a tree of their own).
    pub fn new(proc_root: &Path) -> Self {
        Self {
            stat: proc_root.join("stat"),
            tasks: proc_root.join("self/task"),
        }
    }

    /// `None` when /proc/stat has no `procs_running` (not Linux, or no /proc).
    ///
    /// Our threads are looked at just before and just after the machine's count, and one
    /// runnable at either look counts as ours: llama.cpp's threads pass between running and
    /// waiting many times a second, and one that ran when the kernel counted but waited when
    /// we looked would otherwise be counted as someone else's.
    pub fn read(&self) -> Option<Runnable> {
        let before = own_runnable(&self.tasks);
        let stat = crate::util::fs::read_capped(&self.stat, 1 << 20).ok()?;
        let after = own_runnable(&self.tasks);
        let (machine, cpus) = parse_stat(&stat)?;
        let own = before.union(&after).count() as u32;
        Some(Runnable { machine, own, cpus })
    }
}

/// `procs_running` and the number of `cpuN` lines.
pub fn parse_stat(text: &str) -> Option<(u32, u32)> {
    let mut running = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("procs_running ") {
            running = rest.trim().parse().ok();
        } else if line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
        {
            cpus += 1;
        }
    }
    Some((running?, cpus.max(1)))
}

/// Threads (ids) of this process in state R (running or runnable).
fn own_runnable(tasks: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return Default::default();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| task_state(&s))
                == Some('R')
        })
        .map(|e| e.file_name())
        .collect()
}

/// The state letter of a `/proc/PID/task/TID/stat` line (after the command in parentheses,
/// which may hold spaces and parentheses itself).
pub fn task_state(stat: &str) -> Option<char> {
    let close = stat.rfind(')')?;
    stat[close + 1..].split_whitespace().next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_procs_running_cpus_and_states() {
        let stat =
            "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 5\nprocs_running 7\nprocs_blocked 0\n";
        assert_eq!(parse_stat(stat), Some((7, 2)));
        assert_eq!(parse_stat("cpu  1 2 3\n"), None);
        assert_eq!(task_state("123 (a (b) c) R 1 2 3"), Some('R'));
        assert_eq!(task_state("123 (llmtop-engine) S 1"), Some('S'));
        assert_eq!(task_state("garbage"), None);
    }

    #[test]
    fn reads_a_tree_and_this_process() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("stat"),
            "cpu  1\ncpu0 1\ncpu1 1\ncpu2 1\nprocs_running 5\n",
        )
        .expect("w");
        for (tid, state) in [("10", "R"), ("11", "S"), ("12", "R")] {
            let d = dir.path().join("self/task").join(tid);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join("stat"), format!("{tid} (t) {state} 1 1")).expect("w");
        }
        let r = RunnableReader::new(dir.path()).read().expect("read");
        assert_eq!(
            r,
            Runnable {
                machine: 5,
                own: 2,
                cpus: 3
            }
        );
        assert_eq!(r.others(), 3);
        // The real /proc: this thread is running while it reads, so at least one of ours.
        let real = RunnableReader::new(Path::new("/proc"))
            .read()
            .expect("linux");
        assert!(
            real.own >= 1 && real.machine >= 1 && real.cpus >= 1,
            "{real:?}"
        );
    }
}
