//! CPU package, DRAM and platform energy from Linux powercap (RAPL):
//! `class/powercap/intel-rapl:N[:M]/{name, energy_uj, max_energy_range_uj}`.
//!
//! No double counting: a package contains its `core` and `uncore` subzones, and psys contains
//! the packages. Subzones are reported as [`Covers::Other`] so that no total sums them; `dram`
//! is separate from the package and counts as [`Covers::Dram`].

use super::counter::{CounterStep, counter_delta};
use super::sysfs::{Sysfs, SysfsError, list_dir};
use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use std::path::PathBuf;

/// One readable zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// `intel-rapl:0`, `intel-rapl:0:1`.
    pub dir: String,
    /// `package-0`, `core`, `uncore`, `dram`, `psys`.
    pub name: String,
    /// Stable key: `package-0`, `package-0/core`, `psys`.
    pub key: String,
    pub covers: Covers,
    energy_path: PathBuf,
    /// Wrap point, joules.
    max_j: Option<f64>,
    last: Option<(f64, f64)>,
}

/// All readable RAPL zones of the machine, one sensor.
#[derive(Debug)]
pub struct RaplSensor {
    fs: Sysfs,
    zones: Vec<Zone>,
    /// The counters' provenance ([`VIA_INTEL`] or [`VIA_AMD`]): the same files are a
    /// measurement on Intel and a model on AMD Zen, and their error bands differ.
    via: &'static str,
}

/// Where a RAPL reading comes from, by vendor ([`super::Reading::via`]).
pub const VIA_INTEL: &str = "energy_uj";
pub const VIA_AMD: &str = "energy_uj (AMD Zen: a model, not a measurement)";

/// Whether the CPU is an AMD Zen: its temperature driver (`k10temp`, `zenpower`), its energy
/// driver (`amd_energy`) or its frequency driver (`amd-pstate`) is present. (The powercap
/// zones are called `intel-rapl` on both vendors.)
pub fn amd_cpu(fs: &Sysfs) -> bool {
    let hwmon = list_dir(&fs.path("class/hwmon")).into_iter().any(|(_, p)| {
        fs.read_str(&p.join("name"))
            .is_ok_and(|n| matches!(n.as_str(), "k10temp" | "zenpower" | "amd_energy"))
    });
    hwmon
        || fs
            .read_str(&fs.path("devices/system/cpu/cpu0/cpufreq/scaling_driver"))
            .is_ok_and(|d| d.starts_with("amd-pstate"))
}

/// The fix when a container runtime hides powercap (Docker and Podman mask
/// `/sys/devices/virtual/powercap` since the 2020 PLATYPUS fix).
pub const CONTAINER_FIX: &str = "run llmtop on the host, or start the container with --security-opt systempaths=unconfined (Docker) / --security-opt unmask=/sys/devices/virtual/powercap (Podman), as root or with energy_uj made readable";

/// Where the zones' files live: `class/powercap/intel-rapl:N` links point here.
const ZONES_DIR: &str = "devices/virtual/powercap";

/// The one-line fix for root-only `energy_uj` (CVE-2020-8694).
pub fn permission_fix(fs: &Sysfs) -> String {
    let dir = fs.path("class/powercap");
    format!(
        "sudo chmod a+r {}/intel-rapl:*/energy_uj   (until reboot; to keep it: echo 'SUBSYSTEM==\"powercap\", ACTION==\"add\", RUN+=\"/bin/chmod a+r /sys%p/energy_uj\"' | sudo tee /etc/udev/rules.d/70-llmtop-rapl.rules)",
        dir.display()
    )
}

fn covers_for(name: &str, parent: Option<&str>) -> Covers {
    match (name, parent) {
        ("psys", _) => Covers::Platform,
        ("dram", _) => Covers::Dram,
        (n, None) if n.starts_with("package") => Covers::CpuPackage,
        // core, uncore (integrated GPU) and anything else inside a package.
        _ => Covers::Other,
    }
}

/// Find zones. Returns the sensor (if any zone is readable) and one status line per problem.
pub fn discover(fs: &Sysfs) -> (Option<RaplSensor>, Vec<SourceStatus>) {
    let class = fs.path("class/powercap");
    let mut statuses = Vec::new();
    let mut zones = Vec::new();
    let mut denied = Vec::new();
    let mut top_names: std::collections::HashMap<String, String> = Default::default();
    let entries: Vec<_> = list_dir(&class)
        .into_iter()
        // intel-rapl-mmio:N duplicates package N through MMIO: counting both would double it.
        .filter(|(n, _)| n.starts_with("intel-rapl:"))
        .collect();
    if let Some(masked) = masked(fs, &entries) {
        return (None, vec![masked]);
    }
    for (dir, path) in &entries {
        let parts: Vec<&str> = dir.split(':').collect();
        let name = match fs.read_str(&path.join("name")) {
            Ok(n) if !n.is_empty() => n,
            _ => {
                statuses.push(SourceStatus {
                    source: Source::Rapl,
                    device: dir.clone(),
                    state: SourceState::Unreadable,
                    detail: "zone has no readable name; skipped".into(),
                    fix: None,
                });
                continue;
            }
        };
        let parent = (parts.len() == 3).then(|| format!("{}:{}", parts[0], parts[1]));
        if parent.is_none() {
            top_names.insert(dir.clone(), name.clone());
        }
        let key = match &parent {
            Some(p) => format!(
                "{}/{}",
                top_names.get(p).cloned().unwrap_or_else(|| p.clone()),
                name
            ),
            None => name.clone(),
        };
        let energy_path = path.join("energy_uj");
        let max_j = fs
            .read_num::<u64>(&path.join("max_energy_range_uj"))
            .ok()
            .map(|uj| uj as f64 / 1e6);
        match fs.read_num::<u64>(&energy_path) {
            Ok(_) => zones.push(Zone {
                dir: dir.clone(),
                covers: covers_for(&name, parent.as_deref()),
                name,
                key,
                energy_path,
                max_j,
                last: None,
            }),
            Err(SysfsError::PermissionDenied(_)) => denied.push(dir.clone()),
            Err(e) => statuses.push(SourceStatus {
                source: Source::Rapl,
                device: dir.clone(),
                state: SourceState::Unreadable,
                detail: format!("{name}: {e}"),
                fix: None,
            }),
        }
    }
    if !denied.is_empty() {
        statuses.push(SourceStatus {
            source: Source::Rapl,
            device: denied.join(" "),
            state: SourceState::PermissionDenied,
            detail: "energy_uj is readable by root only (since the 2020 PLATYPUS fix)".into(),
            fix: Some(permission_fix(fs)),
        });
    }
    if entries.is_empty() {
        statuses.push(SourceStatus {
            source: Source::Rapl,
            device: class.display().to_string(),
            state: SourceState::Missing,
            detail: "no RAPL powercap zones (VM, non-x86, intel_rapl module not loaded, or a container that hides powercap)".into(),
            fix: Some(format!(
                "sudo modprobe intel_rapl_common intel_rapl_msr; in a container: {CONTAINER_FIX}"
            )),
        });
    }
    if zones.is_empty() {
        return (None, statuses);
    }
    statuses.push(SourceStatus {
        source: Source::Rapl,
        device: zones
            .iter()
            .map(|z| z.dir.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        state: SourceState::Found,
        detail: format!(
            "{} zone(s): {}",
            zones.len(),
            zones
                .iter()
                .map(|z| z.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        fix: None,
    });
    (
        Some(RaplSensor {
            fs: fs.clone(),
            zones,
            via: if amd_cpu(fs) { VIA_AMD } else { VIA_INTEL },
        }),
        statuses,
    )
}

/// A container runtime's mask: the zones are listed (links in `class/powercap`) but their
/// directories under `devices/virtual/powercap` are hidden (an empty read-only mount), or the
/// class directory is there and empty while that directory is too. `None`: not masked.
fn masked(fs: &Sysfs, entries: &[(String, PathBuf)]) -> Option<SourceStatus> {
    let zones_dir = fs.path(ZONES_DIR);
    let hidden_dir = zones_dir.is_dir() && list_dir(&zones_dir).is_empty();
    let dangling: Vec<&str> = entries
        .iter()
        .filter(|(_, p)| !p.exists() && p.symlink_metadata().is_ok())
        .map(|(n, _)| n.as_str())
        .collect();
    let class_empty = fs.path("class/powercap").is_dir() && entries.is_empty();
    let detail = if !entries.is_empty() && dangling.len() == entries.len() {
        format!(
            "powercap is masked: {} point into {} which is hidden (a container runtime masks it)",
            dangling.join(" "),
            zones_dir.display()
        )
    } else if class_empty && hidden_dir {
        format!(
            "powercap is masked: {} is empty (a container runtime masks it)",
            zones_dir.display()
        )
    } else {
        return None;
    };
    Some(SourceStatus {
        source: Source::Rapl,
        device: fs.path("class/powercap").display().to_string(),
        state: SourceState::Missing,
        detail,
        fix: Some(CONTAINER_FIX.into()),
    })
}

impl RaplSensor {
    /// Whether a CPU power source (a package or psys) is readable: else the estimate is used.
    pub fn has_cpu_power(&self) -> bool {
        self.zones
            .iter()
            .any(|z| matches!(z.covers, Covers::CpuPackage | Covers::Platform))
    }

    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
}

impl Sensor for RaplSensor {
    fn name(&self) -> String {
        "rapl".into()
    }

    fn read(&mut self, now: f64) -> Vec<Reading> {
        let mut out = Vec::with_capacity(self.zones.len() * 2);
        for z in &mut self.zones {
            let joules = self
                .fs
                .read_num::<u64>(&z.energy_path)
                .ok()
                .map(|uj| uj as f64 / 1e6);
            // Power over the last interval, from two counter reads (wrap-safe).
            let watts = match (z.last, joules) {
                (Some((t0, e0)), Some(e1)) if now > t0 => match counter_delta(e0, e1, z.max_j) {
                    CounterStep::Reset => None,
                    step => Some(step.energy() / (now - t0)),
                },
                _ => None,
            };
            z.last = joules.map(|j| (now, j)).or(z.last);
            let base = Reading {
                id: String::new(),
                device: z.dir.clone(),
                label: z.key.clone(),
                quantity: Quantity::Energy,
                value: joules,
                limit: z.max_j,
                source: Source::Rapl,
                covers: z.covers,
                method: Method::Counter,
                rejected: None,
                via: Some(self.via.to_string()),
            };
            out.push(Reading {
                id: format!("rapl:{}:power", z.key),
                quantity: Quantity::Power,
                value: watts,
                limit: None,
                method: Method::Measured,
                via: Some(format!("{} (difference between samples)", self.via)),
                ..base.clone()
            });
            out.push(Reading {
                id: format!("rapl:{}:energy", z.key),
                ..base
            });
        }
        out
    }
}
