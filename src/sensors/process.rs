//! One process on this machine, from procfs: which process owns a listening TCP socket (a
//! local server's port), and how much CPU time it, its threads and the whole machine have
//! used. Every read of `/proc` in llmtop goes through here, parsed by the `procfs` crate.
//!
//! - **Owner.** `/proc/net/tcp` and `/proc/net/tcp6` list sockets; the LISTEN one on the port
//!   gives an inode, and the process holding it has a `/proc/PID/fd/N` link to
//!   `socket:[inode]`. Another user's `/proc/PID/fd` is root-only: those processes are skipped
//!   and counted, and the count is the reason given when no owner is found.
//! - **CPU time.** `/proc/PID/stat` utime+stime and the `cpu` line of `/proc/stat` are both in
//!   clock ticks (USER_HZ): the share of one in the other needs no conversion; seconds are
//!   ticks / [`ticks_per_second`].
//!
//! The procfs root is injected, so every piece runs against a fixture tree.

use procfs::process::{FDTarget, Process};
use procfs::{FromReadSI, KernelStats, ProcError as Pf};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcError {
    #[error(
        "nothing listens on TCP port {port} on this machine; check the server runs here and the port in the URL"
    )]
    NoListener { port: u16 },
    #[error(
        "TCP port {port} is open but no process found holding it{}",
        denied_reason(*denied)
    )]
    NoOwner { port: u16, denied: usize },
    #[error("{path}: cannot read: {why}")]
    Unreadable { path: String, why: String },
    #[error("{path}: unexpected format; is {root} a procfs tree?")]
    Malformed { path: String, root: String },
    #[error("process {pid} has exited")]
    Gone { pid: u32 },
}

fn denied_reason(denied: usize) -> String {
    if denied == 0 {
        " (a server in another container or network namespace is not visible from here)".into()
    } else {
        format!(
            ": {denied} processes of other users could not be inspected; run llmtop as the server's user or as root"
        )
    }
}

/// One LISTEN socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Local address: "127.0.0.1", "0.0.0.0", "::".
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// The process that owns a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// `/proc/PID/comm` (the kernel's 15-character name), as read; sanitise before display.
    pub name: String,
    /// Processes skipped because their fds are not ours to read (a reason, not an error).
    pub denied: usize,
}

/// Cumulative CPU time, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// The process: utime + stime.
    pub process: u64,
    /// The whole machine, busy (not idle or iowait).
    pub busy: u64,
    /// The whole machine, everything.
    pub total: u64,
}

/// A procfs tree: `/proc`, or a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

/// Clock ticks per second (USER_HZ), the unit of `/proc/PID/stat` and `/proc/stat` times.
pub fn ticks_per_second() -> f64 {
    match procfs::ticks_per_second() {
        0 => 100.0,
        hz => hz as f64,
    }
}

/// The machine's (busy, total) ticks from a `/proc/stat` file: busy is everything but idle
/// and iowait; guest time is already inside user time, so it is not added again.
pub fn stat_ticks(path: &Path) -> Result<(u64, u64), ProcError> {
    let root = path.parent().unwrap_or(path);
    let k = KernelStats::from_file(path, procfs::current_system_info())
        .map_err(|e| pf_error(path, root, e))?;
    let c = &k.total;
    let idle = c.idle + c.iowait.unwrap_or(0);
    let total = c.user
        + c.nice
        + c.system
        + idle
        + c.irq.unwrap_or(0)
        + c.softirq.unwrap_or(0)
        + c.steal.unwrap_or(0);
    Ok((total - idle, total))
}

/// A procfs error on `path` (in the tree at `root`): a file that cannot be read, or one in
/// the wrong format.
fn pf_error(path: &Path, root: &Path, e: Pf) -> ProcError {
    match e {
        Pf::PermissionDenied(_) | Pf::NotFound(_) | Pf::Io(..) => ProcError::Unreadable {
            path: path.display().to_string(),
            why: e.to_string(),
        },
        _ => ProcError::Malformed {
            path: path.display().to_string(),
            root: root.display().to_string(),
        },
    }
}

impl Procfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn malformed(&self, rel: &str) -> ProcError {
        ProcError::Malformed {
            path: self.root.join(rel).display().to_string(),
            root: self.root.display().to_string(),
        }
    }

    fn error(&self, rel: &str, e: Pf) -> ProcError {
        pf_error(&self.root.join(rel), &self.root, e)
    }

    /// Every LISTEN socket on `port`, IPv4 and IPv6. A missing tcp6 (IPv6 off) is no error.
    pub fn listeners(&self, port: u16) -> Result<Vec<Listener>, ProcError> {
        let mut out = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            let path = self.root.join(file);
            let rows =
                match procfs::net::TcpNetEntries::from_file(&path, procfs::current_system_info()) {
                    Ok(t) => t.0,
                    Err(Pf::NotFound(_)) if file == "net/tcp6" => continue,
                    Err(e) => return Err(self.error(file, e)),
                };
            out.extend(
                rows.iter()
                    .filter(|r| {
                        r.state == procfs::net::TcpState::Listen && r.local_address.port() == port
                    })
                    .map(|r| Listener {
                        addr: r.local_address.ip(),
                        port,
                        inode: r.inode,
                    }),
            );
        }
        Ok(out)
    }

    /// The process holding the LISTEN socket on `port` (the lowest PID when several share it,
    /// as a pre-forking server's workers do).
    pub fn socket_owner(&self, port: u16) -> Result<Owner, ProcError> {
        let inodes: BTreeSet<u64> = self.listeners(port)?.iter().map(|l| l.inode).collect();
        if inodes.is_empty() {
            return Err(ProcError::NoListener { port });
        }
        let mut denied = 0;
        for pid in self.pids()? {
            // Exited while we looked, or a kernel thread: nothing to see.
            let Ok(p) = self.process(pid) else { continue };
            let fds = match p.fd() {
                Ok(f) => f,
                Err(Pf::PermissionDenied(_)) => {
                    denied += 1;
                    continue;
                }
                Err(_) => continue,
            };
            let holds = fds
                .flatten()
                .any(|fd| matches!(fd.target, FDTarget::Socket(i) if inodes.contains(&i)));
            if holds {
                return Ok(Owner {
                    pid,
                    name: self.comm(pid).unwrap_or_default(),
                    denied,
                });
            }
        }
        Err(ProcError::NoOwner { port, denied })
    }

    fn process(&self, pid: u32) -> Result<Process, ProcError> {
        Process::new_with_root(self.root.join(pid.to_string())).map_err(|e| match e {
            Pf::NotFound(_) => ProcError::Gone { pid },
            e => self.error(&pid.to_string(), e),
        })
    }

    /// Numeric entries of the root, ascending.
    fn pids(&self) -> Result<Vec<u32>, ProcError> {
        let rd = std::fs::read_dir(&self.root).map_err(|e| ProcError::Unreadable {
            path: self.root.display().to_string(),
            why: e.to_string(),
        })?;
        let mut pids: Vec<u32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Whether a process `pid` is there (running, or a zombie not yet reaped).
    pub fn has_pid(&self, pid: u32) -> bool {
        self.root.join(pid.to_string()).exists()
    }

    /// `/proc/PID/comm`, trimmed.
    pub fn comm(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(format!("{pid}/comm"))).ok()?;
        Some(text.trim_end().to_string())
    }

    /// `(ppid, ticks)` of one process: utime + stime, plus cutime + cstime (the children it
    /// has reaped, so a worker that exits moves its time to its parent instead of out of the
    /// sum).
    fn stat(&self, pid: u32) -> Result<(u32, u64), ProcError> {
        let rel = format!("{pid}/stat");
        let st = self.process(pid)?.stat().map_err(|e| match e {
            Pf::NotFound(_) => ProcError::Gone { pid },
            e => self.error(&rel, e),
        })?;
        // cutime/cstime are signed in the kernel's format; never negative in practice.
        let reaped = |v: i64| u64::try_from(v).unwrap_or(0);
        let ppid = u32::try_from(st.ppid).map_err(|_| self.malformed(&rel))?;
        Ok((
            ppid,
            st.utime + st.stime + reaped(st.cutime) + reaped(st.cstime),
        ))
    }

    /// CPU ticks of `pid` and every process below it (a server's workers: Ollama runs each
    /// model in a child `ollama runner`), reaped children included; and those pids.
    pub fn tree_ticks(&self, pid: u32) -> Result<(u64, Vec<u32>), ProcError> {
        let (_, own) = self.stat(pid)?;
        let mut stats: Vec<(u32, u32, u64)> = Vec::new();
        for p in self.pids()? {
            if p == pid {
                continue;
            }
            // A process that exits while we look is simply not counted this time.
            if let Ok((ppid, t)) = self.stat(p) {
                stats.push((p, ppid, t));
            }
        }
        let mut tree = vec![pid];
        let mut ticks = own;
        let mut i = 0;
        while let Some(&parent) = tree.get(i) {
            for &(p, ppid, t) in &stats {
                if ppid == parent && !tree.contains(&p) {
                    tree.push(p);
                    ticks += t;
                }
            }
            i += 1;
        }
        Ok((ticks, tree))
    }

    /// CPU ticks of `pid` alone (utime + stime + reaped children).
    pub fn process_ticks(&self, pid: u32) -> Result<u64, ProcError> {
        self.stat(pid).map(|(_, t)| t)
    }

    /// The whole machine's (busy, total) ticks from `stat`.
    pub fn machine_ticks(&self) -> Result<(u64, u64), ProcError> {
        stat_ticks(&self.root.join("stat"))
    }

    /// CPU seconds (user + system) of the threads of process `pid` (`None`: this process,
    /// `self`) named `thread_name`, or of all of them with `None`.
    pub fn thread_cpu_seconds(
        &self,
        pid: Option<u32>,
        thread_name: Option<&str>,
    ) -> Result<f64, ProcError> {
        let dir = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
        let p = Process::new_with_root(self.root.join(&dir)).map_err(|e| self.error(&dir, e))?;
        let rel = format!("{dir}/task");
        let mut ticks = 0u64;
        for task in p.tasks().map_err(|e| self.error(&rel, e))?.flatten() {
            // A thread that ends while we look is not counted.
            let Ok(st) = task.stat() else { continue };
            if thread_name.is_none_or(|n| n == st.comm) {
                ticks += st.utime + st.stime;
            }
        }
        Ok(ticks as f64 / ticks_per_second())
    }

    /// The process's (with its descendants) and the machine's CPU time now.
    pub fn cpu_ticks(&self, pid: u32) -> Result<CpuTicks, ProcError> {
        Ok(self.cpu_ticks_tree(pid)?.0)
    }

    /// As [`Procfs::cpu_ticks`], with the pids counted.
    pub fn cpu_ticks_tree(&self, pid: u32) -> Result<(CpuTicks, Vec<u32>), ProcError> {
        let (process, pids) = self.tree_ticks(pid)?;
        let (busy, total) = self.machine_ticks()?;
        Ok((
            CpuTicks {
                process,
                busy,
                total,
            },
            pids,
        ))
    }
}

/// What one look at a process gives: its CPU time against the machine's, and per GPU its
/// NVML utilisation samples since the last look and the VRAM it holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeRead {
    pub cpu: Option<CpuTicks>,
    /// Why `cpu` is `None` (the process exited, procfs unreadable).
    pub cpu_error: Option<String>,
    /// Per GPU index: every process's samples since the last look (`Err`: NVML could not
    /// say, e.g. per-process utilisation not supported on this board).
    pub gpu: std::collections::BTreeMap<u32, Result<Vec<super::nvml::ProcessSm>, String>>,
    /// VRAM the process holds, summed over GPUs (`None`: no compute context or unknown).
    pub vram_bytes: Option<u64>,
    /// The process and its descendants, whose CPU time, SM use and VRAM count.
    pub pids: Vec<u32>,
}

/// Looks at one process each sample: procfs for CPU time, [`GpuProcesses`] for the GPU.
///
/// [`GpuProcesses`]: super::nvml::GpuProcesses
pub struct ProcessProbe {
    pub pid: u32,
    procfs: Procfs,
    gpu: Option<Box<dyn super::nvml::GpuProcesses>>,
    /// Per GPU: the newest sample timestamp seen, so each look gets only new samples.
    seen_us: std::collections::BTreeMap<u32, u64>,
}

impl std::fmt::Debug for ProcessProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessProbe")
            .field("pid", &self.pid)
            .field("procfs", &self.procfs)
            .field("gpu", &self.gpu.is_some())
            .finish()
    }
}

impl ProcessProbe {
    /// `gpu`: `None` on a machine without NVIDIA GPUs (the GPU is then not split).
    pub fn new(pid: u32, procfs: Procfs, gpu: Option<Box<dyn super::nvml::GpuProcesses>>) -> Self {
        Self {
            pid,
            procfs,
            gpu,
            seen_us: Default::default(),
        }
    }

    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Look at another process from now on (the server restarted under a new PID).
    pub fn repoint(&mut self, pid: u32) {
        self.pid = pid;
    }

    pub fn read(&mut self) -> ProbeRead {
        let mut out = ProbeRead::default();
        match self.procfs.cpu_ticks_tree(self.pid) {
            Ok((c, pids)) => {
                out.cpu = Some(c);
                out.pids = pids;
            }
            Err(e) => {
                out.cpu_error = Some(e.to_string());
                out.pids = vec![self.pid];
            }
        }
        let Some(gpu) = self.gpu.as_mut() else {
            return out;
        };
        let mut vram: Option<u64> = None;
        for index in gpu.indices() {
            let since = self.seen_us.get(&index).copied().unwrap_or(0);
            let samples = gpu.utilization(index, since);
            if let Some(newest) = samples
                .as_ref()
                .ok()
                .and_then(|s| s.iter().map(|x| x.timestamp_us).max())
            {
                self.seen_us.insert(index, newest.max(since));
            }
            out.gpu.insert(index, samples);
            if let Ok(procs) = gpu.compute_processes(index) {
                for p in procs.iter().filter(|p| out.pids.contains(&p.pid)) {
                    if let Some(b) = p.vram_bytes {
                        vram = Some(vram.unwrap_or(0) + b);
                    }
                }
            }
        }
        out.vram_bytes = vram;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_proc_reads() {
        let p = Procfs::default();
        let me = std::process::id();
        let (busy, total) = p.machine_ticks().expect("/proc/stat");
        assert!(busy <= total && total > 0, "{busy} {total}");
        assert!(p.process_ticks(me).is_ok());
        assert!(ticks_per_second() >= 1.0);
        let all = p.thread_cpu_seconds(None, None).expect("own threads");
        assert!(all.is_finite() && all >= 0.0, "{all}");
        assert_eq!(
            p.thread_cpu_seconds(None, Some("no such thread name")),
            Ok(0.0)
        );
    }
}
