//! Power limits set and put back, for `bench --sweep power-cap=W1,W2,...`: NVIDIA boards
//! through NVML (`nvmlDeviceSetPowerManagementLimit`, within its limit constraints), CPU
//! packages through RAPL's powercap constraint files (`constraint_N_power_limit_uw` of the
//! `long_term` and `short_term` constraints, under the sysfs root the sensors read).
//!
//! A cap changes the machine beyond llmtop's life, so the limits as found are kept in a
//! marker file in the data dir, written atomically before the first change and removed only
//! once every limit is back ([`guard::CapGuard`]). The guard puts them back at the normal end,
//! on an error, on a panic and (through the caller's signal watcher) on every terminating
//! signal; after a SIGKILL or a crash the next llmtop start finds the marker and restores
//! them ([`marker::recover`]).

pub mod guard;
pub mod marker;
pub mod nvml;
pub mod rapl;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which kind of device a cap applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapKind {
    /// Every NVIDIA board NVML lists, each capped at the value.
    Gpu,
    /// Every CPU package (RAPL `package-N` zone), each capped at the value.
    CpuPackage,
}

impl CapKind {
    pub fn describe(self) -> &'static str {
        match self {
            CapKind::Gpu => "NVIDIA board",
            CapKind::CpuPackage => "CPU package",
        }
    }
}

/// One RAPL constraint as found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// N of `constraint_N_*`.
    pub index: u32,
    /// `long_term`, `short_term`, `peak_power`.
    pub name: String,
    pub power_limit_uw: u64,
}

/// A device's power limit as found: enough to put it back, from this process or the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Original {
    Nvml {
        index: u32,
        /// The board's name, checked before restoring (indices follow the PCI order, which a
        /// changed machine can change).
        name: String,
        limit_mw: u32,
    },
    Rapl {
        /// `intel-rapl:0`.
        zone: String,
        /// `package-0`.
        name: String,
        /// The zone's directory, absolute.
        dir: PathBuf,
        /// The zone's `enabled` as found (limits act only while it is 1).
        enabled: Option<bool>,
        /// The constraints a cap changes, as found.
        constraints: Vec<Constraint>,
    },
}

impl Original {
    /// "GPU 0 (NVIDIA H100 80GB HBM3)", "CPU package-0 (intel-rapl:0)".
    pub fn label(&self) -> String {
        match self {
            Original::Nvml { index, name, .. } => {
                format!("GPU {index} ({})", crate::util::sanitize::terminal(name))
            }
            Original::Rapl { zone, name, .. } => format!(
                "CPU {} ({})",
                crate::util::sanitize::terminal(name),
                crate::util::sanitize::terminal(zone)
            ),
        }
    }

    /// The limit as found, for a line: "700 W", "long_term 65 W, short_term 90 W".
    pub fn limit_text(&self) -> String {
        match self {
            Original::Nvml { limit_mw, .. } => watts_text(f64::from(*limit_mw) / 1e3),
            Original::Rapl { constraints, .. } => constraints
                .iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        crate::util::sanitize::terminal(&c.name),
                        watts_text(c.power_limit_uw as f64 / 1e6)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The limit a cap replaces, W: the board's, or the package's long-term one.
    pub fn limit_w(&self) -> Option<f64> {
        match self {
            Original::Nvml { limit_mw, .. } => Some(f64::from(*limit_mw) / 1e3),
            Original::Rapl { constraints, .. } => constraints
                .iter()
                .find(|c| c.name == "long_term")
                .map(|c| c.power_limit_uw as f64 / 1e6),
        }
    }

    pub fn kind(&self) -> CapKind {
        match self {
            Original::Nvml { .. } => CapKind::Gpu,
            Original::Rapl { .. } => CapKind::CpuPackage,
        }
    }
}

/// "250 W", "12.5 W".
pub fn watts_text(w: f64) -> String {
    if (w - w.round()).abs() < 0.05 {
        format!("{w:.0} W")
    } else {
        format!("{w:.1} W")
    }
}

/// Why a cap could not be set or a limit put back: one line naming the device, the cause
/// and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapError {
    #[error("{device}: permission denied setting its power limit; {fix}")]
    NoPermission { device: String, fix: String },
    #[error(
        "{device}: a cap of {watts} is outside the limits it accepts ({min} to {max}); pick caps in that range"
    )]
    OutOfRange {
        device: String,
        watts: String,
        min: String,
        max: String,
    },
    #[error("{device}: its power limit cannot be set ({why})")]
    Unsupported { device: String, why: String },
    #[error("{device}: {what}: {why}")]
    Failed {
        device: String,
        what: &'static str,
        why: String,
    },
    #[error("no {what} to cap: {why}")]
    NoDevice { what: &'static str, why: String },
    #[error(
        "{path}: cannot write the record that restores the power limits after a crash ({why}); make the data dir writable (or point LLMTOP_DATA_DIR elsewhere) and run again"
    )]
    Marker { path: String, why: String },
    #[error(
        "another llmtop (pid {pid}) is sweeping power caps ({path}); wait for it to end (if that process is not llmtop, remove the file)"
    )]
    Busy { pid: u32, path: String },
    #[error("the power limits were put back already; not setting {watts}")]
    Closed { watts: String },
}

/// The fix for a board that refuses a new limit.
pub const NVML_FIX: &str =
    "run llmtop as root (a board's power limit needs root, as `sudo nvidia-smi -pl WATTS` does)";

/// The fix for RAPL constraint files the user cannot write.
pub fn rapl_fix(dir: &std::path::Path) -> String {
    format!(
        "run llmtop as root, or let your user write the limits: sudo chmod a+w {d}/constraint_*_power_limit_uw (until reboot; to keep it, a udev rule: SUBSYSTEM==\"powercap\", ACTION==\"add\", RUN+=\"/bin/chmod a+w /sys%p/constraint_0_power_limit_uw /sys%p/constraint_1_power_limit_uw\")",
        d = dir.display()
    )
}

/// A device whose power limit llmtop can set.
pub enum Device {
    Nvml(nvml::Board),
    Rapl(rapl::Zone),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Device").field(&self.label()).finish()
    }
}

/// What a device was set to: the cap asked for and the limit it reports in effect after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub device: String,
    pub requested_w: f64,
    /// Read back after setting (NVML's enforced limit; RAPL's long_term limit).
    pub in_effect_w: Option<f64>,
}

impl Device {
    pub fn label(&self) -> String {
        self.original().label()
    }

    pub fn original(&self) -> &Original {
        match self {
            Device::Nvml(b) => &b.original,
            Device::Rapl(z) => &z.original,
        }
    }

    /// The range of caps the device accepts, W (`None`: no bound known).
    pub fn range_w(&self) -> (Option<f64>, Option<f64>) {
        match self {
            Device::Nvml(b) => (Some(b.min_w), Some(b.max_w)),
            Device::Rapl(_) => (Some(rapl::MIN_W), None),
        }
    }

    /// Refuse a cap outside the device's range before anything is set.
    pub fn check(&self, watts: f64) -> Result<(), CapError> {
        let (lo, hi) = self.range_w();
        let below = lo.is_some_and(|lo| watts < lo - 1e-9);
        let above = hi.is_some_and(|hi| watts > hi + 1e-9);
        if below || above {
            return Err(CapError::OutOfRange {
                device: self.label(),
                watts: watts_text(watts),
                min: lo.map_or("0 W".into(), watts_text),
                max: hi.map_or("no maximum".into(), watts_text),
            });
        }
        Ok(())
    }

    /// Set the cap.
    pub fn set(&mut self, watts: f64) -> Result<(), CapError> {
        match self {
            Device::Nvml(b) => b.set(watts),
            Device::Rapl(z) => z.set(watts),
        }
    }

    /// The limit in effect now, W.
    pub fn in_effect_w(&self) -> Result<f64, CapError> {
        match self {
            Device::Nvml(b) => b.in_effect_w(),
            Device::Rapl(z) => z.in_effect_w(),
        }
    }

    /// Write the limit as found back (also the permission check before a sweep: it changes
    /// nothing).
    pub fn restore(&mut self) -> Result<(), CapError> {
        match self {
            Device::Nvml(b) => b.restore(),
            Device::Rapl(z) => z.restore(),
        }
    }

    /// The command that sets this cap by hand, for the recommendation line.
    pub fn command_for(&self, watts: f64) -> String {
        match self {
            Device::Nvml(b) => format!(
                "sudo nvidia-smi -i {} -pl {}",
                b.index,
                watts.round().max(1.0)
            ),
            Device::Rapl(z) => z.command_for(watts),
        }
    }
}

/// Restore one limit as found, from a marker left by another process.
pub fn restore_original(o: &Original) -> Result<(), CapError> {
    match o {
        Original::Nvml {
            index,
            name,
            limit_mw,
        } => nvml::restore_from(
            crate::sensors::nvml::handle().map_err(|why| CapError::Failed {
                device: o.label(),
                what: "cannot reach NVML",
                why: why.into(),
            })?,
            *index,
            name,
            *limit_mw,
        ),
        Original::Rapl { .. } => {
            rapl::Zone::from_original(o.clone(), rapl::real_writer()).and_then(|mut z| z.restore())
        }
    }
}

/// The devices of `kind`: every NVIDIA board of the process-wide NVML, or every CPU package
/// zone under `fs`.
pub fn devices(kind: CapKind, fs: &crate::sensors::sysfs::Sysfs) -> Result<Vec<Device>, CapError> {
    match kind {
        CapKind::Gpu => {
            let nvml = crate::sensors::nvml::handle().map_err(|why| CapError::NoDevice {
                what: "NVIDIA board",
                why: why.into(),
            })?;
            Ok(nvml::boards(nvml)?.into_iter().map(Device::Nvml).collect())
        }
        CapKind::CpuPackage => Ok(rapl::packages(fs, rapl::real_writer())?
            .into_iter()
            .map(Device::Rapl)
            .collect()),
    }
}
