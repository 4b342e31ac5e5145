//! A local server's share of the machine's energy: an **attribution**, not a measurement.
//!
//! Kepler's split, on the ledger's figures only (nothing here integrates power or decides what
//! idle is, or which channel stands for a part):
//! - **CPU.** Active CPU-package energy (the channel's energy above its idle floor, from
//!   [`Ledger::channels_above_idle`]: a measured idle baseline, else the estimate's own idle
//!   figure) × the server's share of the busy CPU time of the interval (utime+stime of its
//!   process and every descendant, reaped ones included, over the machine's non-idle ticks:
//!   Ollama runs each model in a child process).
//! - **GPU.** Active GPU-board energy × the process's share of the SM utilisation NVML reports
//!   per process in the interval. A GPU without per-process figures (not NVIDIA, or NVML
//!   unsupported) is not split, and `covers` says so.
//! - A channel without an idle floor (no baseline measured, no figure of its own) is split
//!   gross, and `covers` says so. Each interval's split is signed; the figures shown are
//!   floored once, as a whole ([`floor_net`]).
//!
//! Idle power, DRAM, disks, fans and the power supply's losses are not attributed: the share
//! covers only what the server's work added on the CPU package and GPU boards.

use super::energy::{IdleBaseline, IdleFloor, floor_net};
use super::ledger::Ledger;
use crate::sensors::nvml::ProcessSm;
use crate::sensors::process::{CpuTicks, ProbeRead, ProcError, ProcessProbe, Procfs};
use crate::sensors::{Covers, Method};
use std::collections::{BTreeMap, VecDeque};

/// How every figure here is obtained, in one line for output and JSON.
pub const METHOD: &str = "attribution (Kepler's split): active CPU-package energy x the server's share of busy CPU time, active GPU-board energy x its share of SM utilisation (the server = its process and their children); idle = each channel's measured idle baseline, else its own idle figure (the CPU estimate's), else none (gross)";

/// An interval waits this long (sampler seconds behind the newest look) for every channel to
/// cover it; after that it is split with what the ledger has.
pub const MAX_WAIT_S: f64 = 5.0;

/// The share of the SM utilisation in `samples` (every process's) that `pids` (the server and
/// its workers) used: 0 when
/// nothing used the SMs, as nothing then added GPU energy for anyone.
pub fn sm_share(samples: &[ProcessSm], pids: &[u32]) -> f64 {
    let all: u64 = samples.iter().map(|s| u64::from(s.sm_pct)).sum();
    if all == 0 {
        return 0.0;
    }
    let mine: u64 = samples
        .iter()
        .filter(|s| pids.contains(&s.pid))
        .map(|s| u64::from(s.sm_pct))
        .sum();
    mine as f64 / all as f64
}

/// The process's share of the machine's busy CPU time between two looks, in `[0, 1]`.
pub fn cpu_share(a: &CpuTicks, b: &CpuTicks) -> Option<f64> {
    let busy = b.busy.checked_sub(a.busy)?;
    let mine = b.process.checked_sub(a.process)?;
    if busy == 0 {
        return Some(0.0);
    }
    Some((mine as f64 / busy as f64).clamp(0.0, 1.0))
}

/// One look at the process at sampler time `t`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mark {
    pub t: f64,
    pub cpu: Option<CpuTicks>,
    /// Per GPU index, the process's SM share since the previous look; a GPU missing here has
    /// no per-process figures and is not split.
    pub gpu: BTreeMap<u32, f64>,
    pub vram_bytes: Option<u64>,
}

impl Mark {
    /// A probe's read, as a mark at `t`.
    pub fn from_read(t: f64, r: &ProbeRead) -> Self {
        Self {
            t,
            cpu: r.cpu,
            gpu: r
                .gpu
                .iter()
                .filter_map(|(i, s)| Some((*i, sm_share(s.as_ref().ok()?, &r.pids))))
                .collect(),
            vram_bytes: r.vram_bytes,
        }
    }
}

/// One channel's part of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSplit {
    pub id: String,
    pub covers: Covers,
    pub method: Method,
    /// What the channel drew in the interval (ledger).
    pub energy_j: f64,
    /// Its idle floor (ledger); `None`: none known, the split is gross.
    pub idle: Option<IdleFloor>,
    /// Energy above idle (signed: an interval below idle reads negative), or the gross
    /// energy without an idle floor.
    pub active_j: f64,
    /// The process's share applied (`None`: not split, no per-process figures).
    pub share: Option<f64>,
    /// The process's joules from this channel.
    pub attributed_j: f64,
}

/// Kepler's split of one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub t0: f64,
    pub t1: f64,
    pub cpu_share: Option<f64>,
    /// Mean SM share over the GPUs that have per-process figures.
    pub gpu_share: Option<f64>,
    pub channels: Vec<ChannelSplit>,
}

impl Split {
    /// The process's joules over the interval, signed (see [`floor_net`]).
    pub fn joules(&self) -> f64 {
        self.channels.iter().map(|c| c.attributed_j).sum()
    }

    fn cover(&self, c: Covers) -> f64 {
        self.channels
            .iter()
            .filter(|x| x.covers == c)
            .map(|x| x.attributed_j)
            .sum()
    }

    pub fn cpu_j(&self) -> f64 {
        self.cover(Covers::CpuPackage)
    }

    pub fn gpu_j(&self) -> f64 {
        self.cover(Covers::GpuBoard)
    }
}

/// `nvml:3:energy` -> 3.
fn nvml_index(id: &str) -> Option<u32> {
    id.strip_prefix("nvml:")?.split(':').next()?.parse().ok()
}

/// Kepler's split of `[t0, t1]` on the ledger's per-channel energies above idle. `None`
/// while a CPU or GPU channel has not covered the interval, unless `partial` (then such a
/// channel counts what it has).
pub fn split(
    ledger: &Ledger,
    t0: f64,
    t1: f64,
    cpu_share: Option<f64>,
    gpu_shares: &BTreeMap<u32, f64>,
    partial: bool,
    idle: Option<&IdleBaseline>,
) -> Option<Split> {
    let span = t1 - t0;
    let mut channels = Vec::new();
    for c in ledger.channels_above_idle(t0, t1, idle) {
        if !matches!(c.covers, Covers::CpuPackage | Covers::GpuBoard) {
            continue;
        }
        if !partial && c.energy.covered_s < span - 1e-6 {
            return None;
        }
        let active_j = c.energy.signed_or_gross_j();
        let share = match c.covers {
            Covers::CpuPackage => cpu_share,
            _ => nvml_index(&c.id).and_then(|i| gpu_shares.get(&i).copied()),
        };
        channels.push(ChannelSplit {
            covers: c.covers,
            method: c.method,
            energy_j: c.energy.gross_j,
            idle: c.energy.idle,
            active_j,
            share,
            attributed_j: active_j * share.unwrap_or(0.0),
            id: c.id,
        });
    }
    let gpu: Vec<f64> = gpu_shares.values().copied().collect();
    Some(Split {
        t0,
        t1,
        cpu_share,
        gpu_share: (!gpu.is_empty()).then(|| gpu.iter().sum::<f64>() / gpu.len() as f64),
        channels,
    })
}

/// What a surface shows for the server: labelled as attribution (`method`), with what it
/// covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerShare {
    pub pid: u32,
    /// Joules attributed to the server since tracking began.
    pub joules: f64,
    /// Its attributed power over the latest interval split.
    pub watts_now: Option<f64>,
    /// Its share of busy CPU time in that interval.
    pub cpu_share: Option<f64>,
    /// Its share of SM utilisation in that interval (NVIDIA GPUs only).
    pub gpu_share: Option<f64>,
    /// VRAM it holds (NVML), bytes.
    pub vram_bytes: Option<u64>,
    /// What the joules cover and what they leave out, in one line.
    pub covers: String,
    pub method: &'static str,
    /// Sampler time split so far (`None`: nothing yet).
    pub until: Option<f64>,
}

/// Folds looks at one process into its attributed joules, interval by interval, as the ledger
/// covers them.
#[derive(Debug, Clone)]
pub struct ShareTracker {
    pid: u32,
    prev: Option<Mark>,
    pending: VecDeque<Mark>,
    joules: f64,
    last: Option<Split>,
    vram_bytes: Option<u64>,
    splits: Vec<Split>,
    /// `(t, joules attributed by t)` at each split's end, from the first split's start: the
    /// share over any window, long after the splits themselves are dropped.
    cum: Vec<(f64, f64)>,
}

impl ShareTracker {
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            prev: None,
            pending: VecDeque::new(),
            joules: 0.0,
            last: None,
            vram_bytes: None,
            splits: Vec::new(),
            cum: Vec::new(),
        }
    }

    /// The server is now another process (it restarted under a new PID): the looks so far
    /// were of the old one, so the interval across the switch gets no CPU share (the old
    /// process's ticks and the new one's do not subtract).
    pub fn repoint(&mut self, pid: u32) {
        self.pid = pid;
        for m in self.prev.iter_mut().chain(self.pending.iter_mut()) {
            m.cpu = None;
        }
    }

    /// A look at the process; looks must come in time order.
    pub fn push(&mut self, mark: Mark) {
        let newest = self
            .pending
            .back()
            .or(self.prev.as_ref())
            .map_or(f64::NEG_INFINITY, |m| m.t);
        if mark.t > newest {
            self.vram_bytes = mark.vram_bytes;
            self.pending.push_back(mark);
        }
    }

    /// Split every interval the ledger now covers, net of `idle` (the session's or the
    /// books' measured baseline; `None`: only a channel's own idle figure applies); the
    /// figures so far.
    pub fn update(&mut self, ledger: &Ledger, idle: Option<&IdleBaseline>) -> ServerShare {
        let newest = self.pending.back().map(|m| m.t);
        while let Some(next) = self.pending.front() {
            let Some(prev) = self.prev.as_ref() else {
                self.prev = self.pending.pop_front();
                continue;
            };
            let cpu = match (&prev.cpu, &next.cpu) {
                (Some(a), Some(b)) => cpu_share(a, b),
                _ => None,
            };
            let overdue = newest.is_some_and(|n| n - next.t > MAX_WAIT_S);
            let Some(s) = split(ledger, prev.t, next.t, cpu, &next.gpu, overdue, idle) else {
                break;
            };
            if self.cum.is_empty() {
                self.cum.push((s.t0, 0.0));
            }
            self.joules += s.joules();
            self.cum.push((s.t1, self.joules));
            // Days of samples: halve the older half's resolution now and then.
            if self.cum.len() > 16384 {
                let half = self.cum.len() / 2;
                let mut kept: Vec<(f64, f64)> =
                    self.cum[..half].iter().step_by(2).copied().collect();
                kept.extend_from_slice(&self.cum[half..]);
                self.cum = kept;
            }
            self.splits.push(s.clone());
            // Keep the history short: the dashboard needs the latest, tests a few seconds.
            if self.splits.len() > 4096 {
                self.splits.drain(..2048);
            }
            self.last = Some(s);
            self.prev = self.pending.pop_front();
        }
        self.share()
    }

    /// Joules attributed over `[t0, t1]` (from where splitting began, if later than `t0`),
    /// floored as a whole ([`floor_net`]); `None` until the splits reach `t1`.
    pub fn joules_between(&self, t0: f64, t1: f64) -> Option<f64> {
        let first = *self.cum.first()?;
        let last = *self.cum.last()?;
        if t1 > last.0 + 1e-9 || t1 < t0 {
            return None;
        }
        let at = |t: f64| -> f64 {
            let t = t.clamp(first.0, last.0);
            let i = self.cum.partition_point(|p| p.0 < t);
            match (
                i.checked_sub(1).and_then(|k| self.cum.get(k)),
                self.cum.get(i),
            ) {
                (Some(a), Some(b)) if b.0 > a.0 => a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0),
                (_, Some(b)) => b.1,
                (Some(a), None) => a.1,
                (None, None) => 0.0,
            }
        };
        Some(floor_net(at(t1) - at(t0)))
    }

    /// Every interval split so far (the most recent 2-4 thousand).
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    pub fn share(&self) -> ServerShare {
        let last = self.last.as_ref();
        ServerShare {
            pid: self.pid,
            joules: floor_net(self.joules),
            watts_now: last.and_then(|s| {
                let dt = s.t1 - s.t0;
                (dt > 0.0).then(|| floor_net(s.joules()) / dt)
            }),
            cpu_share: last.and_then(|s| s.cpu_share),
            gpu_share: last.and_then(|s| s.gpu_share),
            vram_bytes: self.vram_bytes,
            covers: last.map_or_else(
                || "nothing split yet".to_string(),
                |s| describe_covers(&s.channels),
            ),
            method: METHOD,
            until: last.map(|s| s.t1),
        }
    }
}

/// "CPU package rapl:package-0 and GPU board nvml:0 above idle; hwmon:amdgpu:power not split
/// (no per-process figures); not idle power, DRAM, disks, fans or PSU losses". A channel with
/// no idle floor is named as split gross, and idle power is then no longer left out.
pub fn describe_covers(channels: &[ChannelSplit]) -> String {
    let name = |c: &ChannelSplit| {
        let what = match c.covers {
            Covers::CpuPackage => "CPU package",
            _ => "GPU board",
        };
        let est = if c.method == Method::Estimated {
            " (estimated)"
        } else {
            ""
        };
        format!("{what} {}{est}", crate::util::sanitize::terminal(&c.id))
    };
    // CPU before GPU, as every surface lists them.
    let mut channels: Vec<&ChannelSplit> = channels.iter().collect();
    channels.sort_by_key(|c| c.covers != Covers::CpuPackage);
    let names = |f: &dyn Fn(&ChannelSplit) -> bool| -> Vec<String> {
        channels
            .iter()
            .copied()
            .filter(|c| f(c))
            .map(name)
            .collect()
    };
    let net = names(&|c| c.share.is_some() && c.idle.is_some());
    let gross = names(&|c| c.share.is_some() && c.idle.is_none());
    let unsplit = names(&|c| c.share.is_none());
    let mut parts = Vec::new();
    if !net.is_empty() {
        parts.push(format!("{} above idle", net.join(" and ")));
    }
    if !gross.is_empty() {
        parts.push(format!(
            "{} gross (no idle baseline measured)",
            gross.join(" and ")
        ));
    }
    if parts.is_empty() {
        parts.push("no CPU or GPU energy channel to split".to_string());
    }
    if !unsplit.is_empty() {
        parts.push(format!(
            "{} not split (no per-process figures)",
            unsplit.join(", ")
        ));
    }
    parts.push(if gross.is_empty() {
        "not idle power, DRAM, disks, fans or PSU losses".to_string()
    } else {
        "not DRAM, disks, fans or PSU losses".to_string()
    });
    parts.join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// `why` already names the URL.
    #[error("{why}")]
    Url { url: String, why: String },
    #[error(
        "{url}: the server is not on this machine; its share of the energy can only be found where it runs"
    )]
    NotLocal { url: String },
    #[error(transparent)]
    Proc(#[from] ProcError),
}

/// The server behind a URL, watched sample by sample: what the dashboard calls.
#[derive(Debug)]
pub struct ServerMeter {
    probe: ProcessProbe,
    tracker: ShareTracker,
    pub name: String,
    /// Processes of other users skipped while finding the owner.
    pub denied: usize,
    /// The port the server listens on, when found by its URL: a process gone is looked for
    /// there again (a restart under a new PID).
    port: Option<u16>,
    procfs: Procfs,
    /// Times the server was found again under a new PID.
    pub restarts: u32,
}

impl ServerMeter {
    /// Find the process listening at `url` in `/proc`, with NVML's per-process figures when
    /// the driver is there.
    pub fn for_url(url: &str) -> Result<Self, ShareError> {
        let gpu = crate::sensors::nvml::processes()
            .ok()
            .map(|g| Box::new(g) as Box<dyn crate::sensors::nvml::GpuProcesses>);
        Self::for_url_with(url, Procfs::default(), gpu)
    }

    /// As [`ServerMeter::for_url`], on a given procfs tree and GPU source.
    pub fn for_url_with(
        url: &str,
        procfs: Procfs,
        gpu: Option<Box<dyn crate::sensors::nvml::GpuProcesses>>,
    ) -> Result<Self, ShareError> {
        let target = crate::net::client::check_url(url, crate::net::client::Peer::ModelServer)
            .map_err(|e| ShareError::Url {
                url: url.into(),
                why: e.to_string(),
            })?;
        if !is_local(&target.host) {
            return Err(ShareError::NotLocal { url: url.into() });
        }
        let owner = procfs.socket_owner(target.port)?;
        let mut m = Self::for_pid(owner.pid, procfs, gpu);
        m.name = owner.name;
        m.denied = owner.denied;
        m.port = Some(target.port);
        Ok(m)
    }

    /// Watch a known process.
    pub fn for_pid(
        pid: u32,
        procfs: Procfs,
        gpu: Option<Box<dyn crate::sensors::nvml::GpuProcesses>>,
    ) -> Self {
        Self {
            probe: ProcessProbe::new(pid, procfs.clone(), gpu),
            tracker: ShareTracker::new(pid),
            name: String::new(),
            denied: 0,
            port: None,
            procfs,
            restarts: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.probe.pid
    }

    /// Look at the process now (sampler time `t`, the sample just pushed into `ledger`) and
    /// split what the ledger covers, net of `idle` ([`ShareTracker::update`]).
    pub fn on_sample(
        &mut self,
        t: f64,
        ledger: &Ledger,
        idle: Option<&IdleBaseline>,
    ) -> ServerShare {
        let mut read = self.probe.read();
        // The process is gone: whoever listens on the server's port now is the server (a
        // restart under a new PID), found within this sample.
        if read.cpu.is_none()
            && let Some(port) = self.port
            && let Ok(owner) = self.procfs.socket_owner(port)
            && owner.pid != self.probe.pid
        {
            tracing::info!(
                "the server on port {port} is now PID {} ({}), was {}",
                owner.pid,
                crate::util::sanitize::terminal(&owner.name),
                self.probe.pid
            );
            self.probe.repoint(owner.pid);
            self.tracker.repoint(owner.pid);
            self.name = owner.name;
            self.restarts += 1;
            read = self.probe.read();
        }
        self.tracker.push(Mark::from_read(t, &read));
        self.tracker.update(ledger, idle)
    }

    pub fn tracker(&self) -> &ShareTracker {
        &self.tracker
    }
}

/// A host name or address that is this machine: loopback, `localhost`, or this host's name.
pub fn is_local(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return ip.is_loopback() || ip.is_unspecified();
    }
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    crate::sensors::host::host_name().is_some_and(|me| me.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_cpu_time_and_sm_utilisation() {
        let a = CpuTicks {
            process: 100,
            busy: 1000,
            total: 4000,
        };
        let b = CpuTicks {
            process: 175,
            busy: 1300,
            total: 4400,
        };
        assert_eq!(cpu_share(&a, &b), Some(0.25));
        assert_eq!(cpu_share(&b, &a), None);
        let s = |pid, sm| ProcessSm {
            pid,
            timestamp_us: 1,
            sm_pct: sm,
            mem_pct: 0,
        };
        assert_eq!(sm_share(&[s(7, 60), s(8, 20), s(7, 0)], &[7]), 0.75);
        assert_eq!(sm_share(&[s(7, 60), s(8, 20), s(9, 20)], &[7, 9]), 0.8);
        assert_eq!(sm_share(&[s(8, 0)], &[7]), 0.0);
        assert_eq!(nvml_index("nvml:12:energy"), Some(12));
        assert_eq!(nvml_index("hwmon:amdgpu:power1"), None);
        assert!(is_local("127.0.0.1") && is_local("[::1]") && is_local("LocalHost"));
        assert!(!is_local("192.0.2.7") && !is_local("example.com"));
        if let Some(me) = crate::sensors::host::host_name() {
            assert!(is_local(&me) && is_local(&me.to_uppercase()), "{me}");
        }
    }
}
