//! Scheduling priority of llmtop's own threads.
//!
//! When llama.cpp runs a thread on every CPU, any other runnable thread takes a CPU from one of
//! them, and the rest wait for it at the next barrier: a wake-up costs the engine several times
//! the CPU time it uses. llmtop's own threads (the dashboard's loop, the sensor samplers) run
//! at a lower priority, so the scheduler lets an engine thread finish its slice instead of
//! preempting it at each wake-up; they need about 1 % of a CPU, which they still get.

/// The nice value of llmtop's own threads; the engine's threads keep the process's.
pub const BACKGROUND_NICE: i32 = 10;

/// Lower the calling thread's priority to [`BACKGROUND_NICE`] (Linux: nice is per thread).
/// Threads it starts afterwards inherit it, so call it after the engine's thread exists.
/// Raising it back needs privileges, so this is one-way. Elsewhere it does nothing.
pub fn background_thread() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their arguments.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE)
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread's nice value (Linux), for tests and `llmtop sensors`.
pub fn thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Field 19 is nice; the command name (field 2) may hold spaces, so count after ')'.
        return stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(16)?
            .parse()
            .ok();
    }
    #[allow(unreachable_code)]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn lowers_only_the_calling_thread_and_what_it_starts() {
        let before = thread_nice().expect("nice readable");
        let (own, child) = std::thread::spawn(|| {
            background_thread().expect("setpriority");
            let own = thread_nice();
            let child = std::thread::spawn(thread_nice).join().ok().flatten();
            (own, child)
        })
        .join()
        .expect("thread");
        let want = Some(BACKGROUND_NICE.max(before));
        assert_eq!(own, want);
        assert_eq!(child, want, "threads started afterwards inherit it");
        assert_eq!(thread_nice(), Some(before), "other threads keep theirs");
    }
}
