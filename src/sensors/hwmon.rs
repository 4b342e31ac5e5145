//! hwmon: `class/hwmon/hwmonN/` temperatures (m°C), fans (RPM), power (µW) and energy (µJ).
//!
//! `hwmonN` numbers change between boots, so a device is keyed by its `name` plus the basename
//! of its `device` link. Only files directly in the device directory (or, for old drivers, in
//! `device/`) are read: nothing is walked recursively, so symlink loops cannot trap us; a loop
//! at the top (`hwmon0 -> hwmon0`) fails to open and is reported and skipped.
//!
//! GPUs (their kernel docs: amdgpu_pm.c, sysfs-driver-intel-{i915,xe}-hwmon):
//! - **amdgpu**: `power1_input` (instantaneous, kernel 6.6+ on some boards the only one) and
//!   `power1_average` (averaged by the firmware). Where both exist the instantaneous one is
//!   read: sampled at the sampler's rate and integrated it gives a reply its own joules, where
//!   the average trails a load step by its window and moves a short reply's energy into the
//!   idle after it (NVML's 1 s average has the same flaw). A file that exists but cannot be
//!   read (EOPNOTSUPP on boards whose firmware lacks the sensor) falls back to the other.
//!   APUs label their power `slowPPT`/`fastPPT`: that is the whole SoC, CPU cores included,
//!   which RAPL's package already counts, so it is shown but not summed as a GPU board.
//! - **i915**: `energy1_input` (µJ) on the device-level hwmon (`name` i915) is the whole card;
//!   the per-GT hwmons (`i915_gtN`) are parts of it, shown and never summed.
//! - **xe**: `energyN_input` with `energyN_label` `card` (the whole card) and `pkg` (the GPU
//!   package, inside the card): the card is the board, the package is a part of it when both
//!   exist. Neither driver has a power input file; power is the counter's difference.
//!
//! Which file a value came from is in each reading's `via`.

use super::counter::{CounterStep, counter_delta};
use super::sysfs::{Sysfs, SysfsError, list_dir};
use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Temp,
    Fan,
    Power,
    Energy,
}

#[derive(Debug, Clone)]
struct Channel {
    kind: Kind,
    /// `temp1`, `fan2`, ...
    chan: String,
    label: String,
    input: PathBuf,
    /// The file read, for the reading's provenance: `power1_input`, `energy1_input`.
    via: String,
    /// Scale from the file's unit to ours (m°C -> °C, µW -> W, µJ -> J).
    scale: f64,
    limit: Option<f64>,
    covers: Covers,
    last_energy: Option<(f64, f64)>,
}

/// One hwmon device.
#[derive(Debug)]
pub struct HwmonSensor {
    fs: Sysfs,
    /// Driver name: `coretemp`, `nct6775`, `amdgpu`.
    pub name: String,
    /// `name` or `name@device`, the stable part of reading ids.
    pub key: String,
    channels: Vec<Channel>,
}

/// GPU drivers: their power/energy/temps/fans are the GPU board's. i915's per-GT hwmons
/// (`i915_gt0`, ...) are not listed: their energy is a part of the card's (`i915`).
const GPU_DRIVERS: &[&str] = &["amdgpu", "radeon", "nouveau", "i915", "xe"];
/// CPU temperature drivers.
const CPU_DRIVERS: &[&str] = &["coretemp", "k10temp", "zenpower", "cpu_thermal"];

/// amdgpu's power labels on APUs, whose "GPU" power is the whole SoC, CPU cores included.
const APU_POWER_LABELS: &[&str] = &["slowPPT", "fastPPT"];

fn covers_for(driver: &str, kind: Kind) -> Covers {
    if GPU_DRIVERS.contains(&driver) {
        Covers::GpuBoard
    } else if CPU_DRIVERS.contains(&driver) && kind == Kind::Temp {
        Covers::CpuPackage
    } else {
        Covers::Other
    }
}

/// `temp1_input` -> (Temp, "temp1", "input").
fn parse_attr(file: &str) -> Option<(Kind, &str, &str)> {
    let (chan, attr) = file.split_once('_')?;
    let digits = chan.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let kind = match &chan[..chan.len() - digits.len()] {
        "temp" => Kind::Temp,
        "fan" => Kind::Fan,
        "power" => Kind::Power,
        "energy" => Kind::Energy,
        _ => return None,
    };
    Some((kind, chan, attr))
}

fn status(device: String, state: SourceState, detail: String) -> SourceStatus {
    SourceStatus {
        source: Source::Hwmon,
        device,
        state,
        detail,
        fix: None,
    }
}

/// Find every hwmon device with at least one readable channel.
pub fn discover(fs: &Sysfs) -> (Vec<HwmonSensor>, Vec<SourceStatus>) {
    let class = fs.path("class/hwmon");
    let mut sensors: Vec<HwmonSensor> = Vec::new();
    let mut statuses = Vec::new();
    for (dir, path) in list_dir(&class) {
        match probe_device(fs, &dir, &path) {
            Ok((mut sensor, skipped)) => {
                // Two devices with the same name and no device link: keep keys unique.
                if sensors.iter().any(|s| s.key == sensor.key) {
                    sensor.key = format!("{}#{dir}", sensor.key);
                }
                let mut detail = format!("{} channel(s)", sensor.channels.len());
                if !skipped.is_empty() {
                    detail.push_str(&format!("; skipped {}", skipped.join(", ")));
                }
                statuses.push(status(
                    format!("{dir} ({})", sensor.key),
                    SourceState::Found,
                    detail,
                ));
                sensors.push(sensor);
            }
            Err(st) => statuses.push(st),
        }
    }
    (sensors, statuses)
}

fn probe_device(
    fs: &Sysfs,
    dir: &str,
    path: &Path,
) -> Result<(HwmonSensor, Vec<String>), SourceStatus> {
    // Following the class link once is fine; a loop shows up as ELOOP here.
    let files = std::fs::read_dir(path).map_err(|e| {
        let why = if e.raw_os_error() == Some(40) {
            "symlink loop".to_string()
        } else {
            e.to_string()
        };
        status(
            dir.into(),
            SourceState::Unreadable,
            format!("cannot list: {why}; skipped"),
        )
    })?;
    let mut names: Vec<String> = files
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Old drivers keep name and attributes in device/.
    let mut base = path.to_path_buf();
    let name = match fs.read_str(&path.join("name")) {
        Ok(n) => n,
        Err(_) => match fs.read_str(&path.join("device/name")) {
            Ok(n) => {
                base = path.join("device");
                names = std::fs::read_dir(&base)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                n
            }
            Err(_) => {
                return Err(status(
                    dir.into(),
                    SourceState::Unreadable,
                    "no readable `name` file; skipped".into(),
                ));
            }
        },
    };
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        return Err(status(
            dir.into(),
            SourceState::Unreadable,
            "empty or garbled `name`; skipped".into(),
        ));
    }
    let key = match std::fs::read_link(path.join("device"))
        .ok()
        .and_then(|l| l.file_name().map(|f| f.to_string_lossy().into_owned()))
    {
        Some(dev) => format!("{name}@{dev}"),
        None => name.clone(),
    };
    names.sort();
    let mut by_chan: BTreeMap<(Kind, u32), BTreeMap<String, PathBuf>> = BTreeMap::new();
    for f in &names {
        if let Some((kind, chan, attr)) = parse_attr(f) {
            let n: u32 = chan
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .parse()
                .unwrap_or(0);
            by_chan
                .entry((kind, n))
                .or_default()
                .insert(attr.to_string(), base.join(f));
        }
    }
    let mut channels = Vec::new();
    let mut skipped = Vec::new();
    for ((kind, n), attrs) in by_chan {
        let (prefix, unit_scale, preferred): (&str, f64, &[&str]) = match kind {
            Kind::Temp => ("temp", 1e-3, &["input"]),
            Kind::Fan => ("fan", 1.0, &["input"]),
            // Instantaneous before averaged (see the module doc); ACPI meters and older
            // amdgpu kernels have only the average.
            Kind::Power => ("power", 1e-6, &["input", "average"]),
            Kind::Energy => ("energy", 1e-6, &["input"]),
        };
        let chan = format!("{prefix}{n}");
        let present: Vec<(&str, &PathBuf)> = preferred
            .iter()
            .filter_map(|a| attrs.get(*a).map(|p| (*a, p)))
            .collect();
        if present.is_empty() {
            continue; // only limits (power1_cap, temp2_crit): nothing to read
        }
        // The first present file that reads as a number; else why the last one failed.
        let mut chosen = None;
        let mut why = "";
        for (a, p) in present {
            match fs.read_num::<f64>(p) {
                Ok(v) if v.is_finite() => {
                    chosen = Some((a, p));
                    break;
                }
                Ok(_) | Err(SysfsError::Garbage { .. }) => why = "not a number",
                Err(SysfsError::PermissionDenied(_)) => why = "permission denied",
                Err(_) => why = "unreadable",
            }
        }
        let Some((attr, input)) = chosen else {
            skipped.push(format!("{chan} ({why})"));
            continue;
        };
        let label = attrs
            .get("label")
            .and_then(|p| fs.read_str(p).ok())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| chan.clone());
        let limit_attrs: &[&str] = match kind {
            Kind::Temp => &["crit", "max"],
            Kind::Power => &["cap", "max"],
            _ => &[],
        };
        let limit = limit_attrs
            .iter()
            .filter_map(|a| attrs.get(*a))
            .find_map(|p| fs.read_num::<f64>(p).ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|v| v * unit_scale);
        let mut covers = covers_for(&name, kind);
        if kind == Kind::Power && APU_POWER_LABELS.contains(&label.as_str()) {
            covers = Covers::Other;
        }
        let file = format!("{chan}_{attr}");
        let via = match (kind, attr) {
            (Kind::Power, "input") => format!("{file} (instantaneous)"),
            (Kind::Power, "average") => format!("{file} (averaged by the device)"),
            _ => file,
        };
        channels.push(Channel {
            kind,
            chan,
            label,
            input: input.clone(),
            via,
            scale: unit_scale,
            limit,
            covers,
            last_energy: None,
        });
    }
    // xe: the package (`pkg`) is inside the card (`card`); with both, only the card is the
    // board.
    let has_card = |kind: Kind| {
        channels
            .iter()
            .any(|c| c.kind == kind && c.covers == Covers::GpuBoard && c.label == "card")
    };
    let (card_energy, card_power) = (has_card(Kind::Energy), has_card(Kind::Power));
    for c in &mut channels {
        let inside = match c.kind {
            Kind::Energy => card_energy,
            Kind::Power => card_power,
            _ => false,
        };
        if inside && c.label == "pkg" && c.covers == Covers::GpuBoard {
            c.covers = Covers::Other;
        }
    }
    if channels.is_empty() {
        let mut detail = "no readable temperature, fan, power or energy channels".to_string();
        if !skipped.is_empty() {
            detail.push_str(&format!(" (skipped {})", skipped.join(", ")));
        }
        return Err(status(
            format!("{dir} ({name})"),
            SourceState::Unreadable,
            detail,
        ));
    }
    Ok((
        HwmonSensor {
            fs: fs.clone(),
            name,
            key,
            channels,
        },
        skipped,
    ))
}

impl HwmonSensor {
    /// Whether this device measures CPU package power (none of the known drivers here do;
    /// kept for drivers like zenpower added later).
    pub fn has_cpu_power(&self) -> bool {
        self.channels
            .iter()
            .any(|c| matches!(c.kind, Kind::Power | Kind::Energy) && c.covers == Covers::CpuPackage)
    }
}

impl Sensor for HwmonSensor {
    fn name(&self) -> String {
        format!("hwmon:{}", self.key)
    }

    fn read(&mut self, now: f64) -> Vec<Reading> {
        let mut out = Vec::with_capacity(self.channels.len());
        for c in &mut self.channels {
            let value = self
                .fs
                .read_num::<f64>(&c.input)
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v * c.scale);
            let (quantity, method) = match c.kind {
                Kind::Temp => (Quantity::Temperature, Method::Measured),
                Kind::Fan => (Quantity::FanRpm, Method::Measured),
                Kind::Power => (Quantity::Power, Method::Measured),
                Kind::Energy => (Quantity::Energy, Method::Counter),
            };
            let reading = Reading {
                id: format!("hwmon:{}:{}", self.key, c.chan),
                device: self.key.clone(),
                label: c.label.clone(),
                quantity,
                value,
                limit: c.limit,
                source: Source::Hwmon,
                covers: c.covers,
                method,
                rejected: None,
                via: Some(c.via.clone()),
            };
            if c.kind == Kind::Energy {
                // Also the rate, so gauges have watts (the energy accounting ignores it,
                // because this channel has a counter).
                let watts = match (c.last_energy, value) {
                    (Some((t0, e0)), Some(e1)) if now > t0 => match counter_delta(e0, e1, None) {
                        CounterStep::Reset => None,
                        s => Some(s.energy() / (now - t0)),
                    },
                    _ => None,
                };
                c.last_energy = value.map(|v| (now, v)).or(c.last_energy);
                out.push(Reading {
                    id: format!("hwmon:{}:{}:power", self.key, c.chan),
                    quantity: Quantity::Power,
                    value: watts,
                    limit: None,
                    method: Method::Measured,
                    via: Some(format!("{} (difference between samples)", c.via)),
                    ..reading.clone()
                });
                out.push(Reading {
                    id: format!("hwmon:{}:{}:energy", self.key, c.chan),
                    ..reading
                });
            } else {
                out.push(reading);
            }
        }
        out
    }
}
