//! procfs files as the kernel writes them, for fixture trees: `/proc/PID/stat` with all its
//! fields and `/proc/stat` with the lines the kernel always prints.
#![allow(dead_code)]

/// A `/proc/PID/stat` line: `pid (comm) state` and the 49 fields after them, with the
/// parent and the CPU times (clock ticks) given and the rest as a sleeping process has them.
pub fn pid_stat(pid: u32, comm: &str, ppid: u32, times: [u64; 4]) -> String {
    let [utime, stime, cutime, cstime] = times;
    let mut f: Vec<String> = vec![0.to_string(); 49];
    let mut set = |field: usize, v: String| f[field - 4] = v;
    // Field numbers as in proc(5).
    set(4, ppid.to_string());
    set(5, pid.to_string());
    set(6, pid.to_string());
    set(8, "-1".into());
    set(9, "4194560".into());
    set(14, utime.to_string());
    set(15, stime.to_string());
    set(16, cutime.to_string());
    set(17, cstime.to_string());
    set(18, "20".into());
    set(20, "1".into());
    set(22, "100".into());
    set(23, "10000000".into());
    set(24, "500".into());
    set(25, u64::MAX.to_string());
    set(38, "17".into());
    format!("{pid} ({comm}) S {}\n", f.join(" "))
}

/// `/proc/stat` with the aggregate `cpu` line given (`"cpu  user nice system idle ..."`).
pub fn proc_stat(cpu_line: &str) -> String {
    format!(
        "{cpu_line}\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1000 0\nctxt 5000\nbtime 1700000000\nprocesses 300\nprocs_running 1\nprocs_blocked 0\nsoftirq 100 0\n"
    )
}
