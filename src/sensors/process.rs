//! One process on this machine, from procfs: which process owns a listening TCP socket (a
//! local server's port), and how much CPU time it and the whole machine have used.
//!
//! - **Owner.** `/proc/net/tcp` and `/proc/net/tcp6` list sockets; the LISTEN one (state `0A`)
//!   on the port gives an inode, and the process holding it has a `/proc/PID/fd/N` link to
//!   `socket:[inode]`. Another user's `/proc/PID/fd` is root-only: those processes are skipped
//!   and counted, and the count is the reason given when no owner is found.
//! - **CPU time.** `/proc/PID/stat` utime+stime and the `cpu` line of `/proc/stat` are both in
//!   clock ticks (USER_HZ): the share of one in the other needs no conversion; seconds are
//!   ticks / `sysconf(_SC_CLK_TCK)`.
//!
//! The procfs root is injected, so every piece runs against a fixture tree.

use super::procstat::parse_cpu_line;
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The TCP state LISTEN in `/proc/net/tcp*`.
const TCP_LISTEN: &str = "0A";

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
    /// Local address as the kernel writes it, decoded: "127.0.0.1", "0.0.0.0", "::".
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
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

impl Procfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self, rel: &str) -> Result<String, ProcError> {
        let path = self.root.join(rel);
        std::fs::read_to_string(&path).map_err(|e| ProcError::Unreadable {
            path: path.display().to_string(),
            why: e.to_string(),
        })
    }

    /// Every LISTEN socket on `port`, IPv4 and IPv6. A missing tcp6 (IPv6 off) is no error.
    pub fn listeners(&self, port: u16) -> Result<Vec<Listener>, ProcError> {
        let mut out = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            let text = match self.read(file) {
                Ok(t) => t,
                Err(_) if file == "net/tcp6" => continue,
                Err(e) => return Err(e),
            };
            for line in text.lines().skip(1) {
                let l = parse_tcp_line(line).ok_or_else(|| ProcError::Malformed {
                    path: self.root.join(file).display().to_string(),
                    root: self.root.display().to_string(),
                })?;
                if let Some(l) = l.filter(|l| l.port == port) {
                    out.push(l);
                }
            }
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
            let dir = self.root.join(pid.to_string()).join("fd");
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    denied += 1;
                    continue;
                }
                // Exited while we looked, or a kernel thread: nothing to see.
                Err(_) => continue,
            };
            for entry in entries.flatten() {
                let Ok(target) = std::fs::read_link(entry.path()) else {
                    continue;
                };
                if socket_inode(&target.to_string_lossy()).is_some_and(|i| inodes.contains(&i)) {
                    return Ok(Owner {
                        pid,
                        name: self.comm(pid).unwrap_or_default(),
                        denied,
                    });
                }
            }
        }
        Err(ProcError::NoOwner { port, denied })
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

    /// `/proc/PID/comm`, trimmed.
    pub fn comm(&self, pid: u32) -> Option<String> {
        Some(
            self.read(&format!("{pid}/comm"))
                .ok()?
                .trim_end()
                .to_string(),
        )
    }

    /// CPU ticks of `pid` and every process below it (a server's workers: Ollama runs each
    /// model in a child `ollama runner`), reaped children included; and those pids.
    pub fn tree_ticks(&self, pid: u32) -> Result<(u64, Vec<u32>), ProcError> {
        let rel = format!("{pid}/stat");
        let text = self.read(&rel).map_err(|e| match e {
            ProcError::Unreadable { .. } if !self.root.join(pid.to_string()).exists() => {
                ProcError::Gone { pid }
            }
            other => other,
        })?;
        let (_, own) = parse_stat(&text).ok_or_else(|| ProcError::Malformed {
            path: self.root.join(&rel).display().to_string(),
            root: self.root.display().to_string(),
        })?;
        let mut stats: Vec<(u32, u32, u64)> = Vec::new();
        for p in self.pids()? {
            if p == pid {
                continue;
            }
            // A process that exits while we look is simply not counted this time.
            if let Some((ppid, t)) = self
                .read(&format!("{p}/stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            {
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
        let rel = format!("{pid}/stat");
        let text = self.read(&rel).map_err(|e| match e {
            ProcError::Unreadable { .. } if !self.root.join(pid.to_string()).exists() => {
                ProcError::Gone { pid }
            }
            other => other,
        })?;
        parse_stat(&text)
            .map(|(_, t)| t)
            .ok_or_else(|| ProcError::Malformed {
                path: self.root.join(rel).display().to_string(),
                root: self.root.display().to_string(),
            })
    }

    /// The whole machine's (busy, total) ticks from `stat`.
    pub fn machine_ticks(&self) -> Result<(u64, u64), ProcError> {
        parse_cpu_line(&self.read("stat")?).ok_or_else(|| ProcError::Malformed {
            path: self.root.join("stat").display().to_string(),
            root: self.root.display().to_string(),
        })
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

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One row of `/proc/net/tcp{,6}`: `Some(Some(l))` a LISTEN socket, `Some(None)` another
/// state, `None` a line that is not a socket row.
fn parse_tcp_line(line: &str) -> Option<Option<Listener>> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.is_empty() {
        return Some(None);
    }
    if f.len() < 10 || !f[0].ends_with(':') {
        return None;
    }
    let (addr_hex, port_hex) = f[1].split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let addr = parse_hex_addr(addr_hex)?;
    let inode: u64 = f[9].parse().ok()?;
    Some((f[3] == TCP_LISTEN).then_some(Listener { addr, port, inode }))
}

/// The kernel prints addresses as 32-bit words in host byte order, each as 8 hex digits.
fn parse_hex_addr(hex: &str) -> Option<std::net::IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// `(ppid, ticks)` from `/proc/PID/stat`: utime + stime, plus cutime + cstime (the children it
/// has reaped, so a worker that exits moves its time to its parent instead of out of the sum).
/// The name (field 2) may hold spaces and parentheses, so fields are counted from the last
/// `)`: state is the first after it, ppid the 2nd, utime the 12th.
fn parse_stat(text: &str) -> Option<(u32, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let mut ticks = 0u64;
    for i in 11..=14 {
        // cutime/cstime are signed in the kernel's format; never negative in practice.
        let v: i64 = f.get(i)?.parse().ok()?;
        ticks += u64::try_from(v).unwrap_or(0);
    }
    Some((ppid, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_rows_decode_address_port_state_and_inode() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
        let l = parse_tcp_line(v4).expect("row").expect("listen");
        assert_eq!(l.port, 8080);
        assert_eq!(l.inode, 4242);
        if cfg!(target_endian = "little") {
            assert_eq!(l.addr.to_string(), "127.0.0.1");
        }
        let est = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_tcp_line(&est), Some(None));
        let v6 = "   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 99 1 0000000000000000 100 0 0 10 0";
        let l = parse_tcp_line(v6).expect("row").expect("listen");
        assert_eq!((l.port, l.inode), (8081, 99));
        if cfg!(target_endian = "little") {
            assert_eq!(l.addr.to_string(), "::1");
        }
        assert_eq!(parse_tcp_line("garbage"), None);
    }

    #[test]
    fn stat_ticks_survive_a_name_with_parens_and_spaces() {
        let stat = "1234 (llama (srv) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 700 250 40 10 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(stat), Some((1, 1000)));
        assert_eq!(parse_stat("1 (x) S 1"), None);
        assert_eq!(socket_inode("socket:[77]"), Some(77));
        assert_eq!(socket_inode("pipe:[77]"), None);
        assert!(ticks_per_second() >= 1.0);
    }
}
