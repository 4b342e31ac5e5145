//! NVIDIA GPUs through NVML (nvml-wrapper). The library is opened at run time: on a machine
//! without the driver, init fails and there are simply no GPU rows (one quiet status line).
//! NVML is initialised once per process and kept for its lifetime.
//!
//! Each board gives its own rows (`nvml:{index}:...`). What NVML gets wrong, and how the rows
//! carry it (SENSORS.md, NVIDIA section):
//! - energy comes from the total-energy counter (Volta and newer), which moves in ~100 ms
//!   steps; the ledger never takes live watts from it;
//! - live watts come from the instant field `NVML_FI_DEV_POWER_INSTANT` where the board has
//!   it, else from `nvmlDeviceGetPowerUsage`, a 1 s average on Ampere and newer, and named so;
//! - a pre-Volta board has no counter: the ledger integrates its power, and says so;
//! - a board that falls off the bus (`GPU_IS_LOST`) keeps its rows, n/a and marked lost, and
//!   is not asked again;
//! - any one call may be NOT_SUPPORTED: that row is n/a, the others carry on.
//!
//! Every row names the call it came from in [`Reading::via`].

use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor, TemperatureThreshold};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::OnceLock;

/// Test-only: load this file instead of the driver's `libnvidia-ml.so.1` (the stand-in
/// library of tests/nvml/ that plays a scripted timeline). Never needed on a real machine.
pub const LIBRARY_ENV: &str = "LLMTOP_NVML_LIBRARY";

/// Where each row's value comes from ([`Reading::via`]).
pub const VIA_COUNTER: &str = "nvmlDeviceGetTotalEnergyConsumption";
pub const VIA_INSTANT: &str = "NVML_FI_DEV_POWER_INSTANT (instant)";
pub const VIA_AVERAGE: &str = "nvmlDeviceGetPowerUsage (1 s average)";
/// What a lost board's rows say instead of a value.
pub const VIA_LOST: &str = "GPU lost (NVML_ERROR_GPU_IS_LOST)";

/// `NVML_FI_DEV_POWER_INSTANT`: instant board power, mW (Ampere and newer, recent drivers).
const FI_POWER_INSTANT: u32 = nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;

static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();

/// The process-wide NVML handle, or why there is none.
pub fn handle() -> Result<&'static Nvml, &'static str> {
    NVML.get_or_init(
        || match std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
            Some(path) => init_at(&path),
            None => Nvml::init().map_err(|e| describe_init_error(&e)),
        },
    )
    .as_ref()
    .map_err(|e| e.as_str())
}

fn init_at(path: &OsStr) -> Result<Nvml, String> {
    Nvml::builder().lib_path(path).init().map_err(|e| match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => format!(
            "no NVIDIA driver ({LIBRARY_ENV}={} could not be loaded: {e}; unset it)",
            Path::new(path).display()
        ),
        other => describe_init_error(&other),
    })
}

/// A separate NVML loaded from `path` and kept for the life of the process: tests load one
/// stand-in library per scenario (each copy its own state) beside the process-wide handle.
pub fn open_at(path: &Path) -> Result<&'static Nvml, String> {
    init_at(path.as_os_str()).map(|n| &*Box::leak(Box::new(n)))
}

fn describe_init_error(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "no NVIDIA driver (libnvidia-ml.so.1 not found)".into()
        }
        NvmlError::DriverNotLoaded => "no NVIDIA driver loaded".into(),
        NvmlError::NoPermission => "NVML: permission denied".into(),
        other => format!("NVML init failed: {other}"),
    }
}

/// GPU names for HostInfo; empty without a driver.
pub fn gpu_names() -> Vec<String> {
    let Ok(nvml) = handle() else {
        return Vec::new();
    };
    let n = nvml.device_count().unwrap_or(0);
    (0..n)
        .filter_map(|i| nvml.device_by_index(i).ok()?.name().ok())
        .collect()
}

/// One GPU as found at discovery: what it supports and its fixed limits.
#[derive(Debug, Clone, Default)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub num_fans: u32,
    /// Fan i reports RPM (else percent).
    pub fan_rpm: Vec<bool>,
    pub slowdown_c: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// Volta and newer: the total-energy counter exists. Without it, energy comes from
    /// integrating board power (a counter row that is always n/a would hide the power).
    pub energy_counter: bool,
    /// The board answers `NVML_FI_DEV_POWER_INSTANT`: its power row is the instant value,
    /// else `nvmlDeviceGetPowerUsage` (a 1 s average on Ampere and newer).
    pub instant_power: bool,
    /// Maximum graphics and SM clocks, MHz: the limits of the clock rows.
    pub max_gfx_mhz: Option<f64>,
    pub max_sm_mhz: Option<f64>,
    /// The board reports clocks-event (throttle) reasons.
    pub reasons: bool,
}

impl Gpu {
    /// How this board's power and energy are read, for `llmtop sensors`.
    pub fn describe(&self) -> String {
        let power = if self.instant_power {
            VIA_INSTANT
        } else {
            VIA_AVERAGE
        };
        let energy = if self.energy_counter {
            format!("energy counter ({VIA_COUNTER})")
        } else {
            "no energy counter (pre-Volta): energy integrated from the power".into()
        };
        format!(
            "power {power}, {energy}, temperature, fans, utilisation, VRAM, clocks{}",
            if self.reasons {
                ", throttle reasons"
            } else {
                ""
            }
        )
    }
}

/// All NVIDIA GPUs.
#[derive(Debug)]
pub struct NvmlSensor {
    nvml: &'static Nvml,
    gpus: Vec<Gpu>,
    /// Boards that fell off the bus: never asked again (a lost board stays lost until the
    /// driver is reloaded).
    lost: Vec<bool>,
}

/// The boards of the process-wide NVML handle.
pub fn discover() -> (Option<NvmlSensor>, Vec<SourceStatus>) {
    match handle() {
        Ok(nvml) => discover_on(nvml),
        Err(why) => {
            let state = if why.contains("permission") {
                SourceState::PermissionDenied
            } else {
                SourceState::Missing
            };
            (
                None,
                vec![SourceStatus {
                    source: Source::Nvml,
                    device: "NVIDIA".into(),
                    state,
                    detail: why.into(),
                    fix: None,
                }],
            )
        }
    }
}

/// The boards of `nvml` (the process-wide handle, or a test's own [`open_at`]).
pub fn discover_on(nvml: &'static Nvml) -> (Option<NvmlSensor>, Vec<SourceStatus>) {
    let count = nvml.device_count().unwrap_or(0);
    let mut gpus = Vec::new();
    let mut statuses = Vec::new();
    for index in 0..count {
        let d = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                statuses.push(SourceStatus {
                    source: Source::Nvml,
                    device: format!("GPU {index}"),
                    state: SourceState::Unreadable,
                    detail: format!("cannot open it: {e}"),
                    fix: None,
                });
                continue;
            }
        };
        let num_fans = d.num_fans().unwrap_or(0);
        let fan_rpm = (0..num_fans).map(|f| d.fan_speed_rpm(f).is_ok()).collect();
        gpus.push(Gpu {
            index,
            name: d.name().unwrap_or_else(|_| format!("GPU {index}")),
            num_fans,
            fan_rpm,
            slowdown_c: d
                .temperature_threshold(TemperatureThreshold::Slowdown)
                .ok()
                .map(f64::from),
            power_limit_w: d.enforced_power_limit().ok().map(|mw| mw as f64 / 1e3),
            energy_counter: d.total_energy_consumption().is_ok(),
            instant_power: instant_mw(&d).is_ok(),
            max_gfx_mhz: d.max_clock_info(Clock::Graphics).ok().map(f64::from),
            max_sm_mhz: d.max_clock_info(Clock::SM).ok().map(f64::from),
            reasons: d.current_throttle_reasons().is_ok(),
        });
    }
    if gpus.is_empty() && statuses.is_empty() {
        statuses.push(SourceStatus {
            source: Source::Nvml,
            device: "NVIDIA".into(),
            state: SourceState::Missing,
            detail: "driver loaded but no GPU visible".into(),
            fix: None,
        });
    }
    statuses.extend(gpus.iter().map(|g| SourceStatus {
        source: Source::Nvml,
        device: format!("GPU {} ({})", g.index, g.name),
        state: SourceState::Found,
        detail: g.describe(),
        fix: None,
    }));
    if gpus.is_empty() {
        return (None, statuses);
    }
    let lost = vec![false; gpus.len()];
    (Some(NvmlSensor { nvml, gpus, lost }), statuses)
}

/// The instant board power, mW, from the field value (whatever integer type the driver uses).
fn instant_mw(d: &nvml_wrapper::Device<'_>) -> Result<u32, NvmlError> {
    let mut values = d.field_values_for(&[FieldId(FI_POWER_INSTANT)])?;
    let sample = values.pop().ok_or(NvmlError::NotSupported)??;
    match sample.value? {
        SampleValue::U32(v) => Ok(v),
        SampleValue::U64(v) => u32::try_from(v).map_err(|_| NvmlError::NotSupported),
        SampleValue::I64(v) => u32::try_from(v).map_err(|_| NvmlError::NotSupported),
        SampleValue::F64(v) if v.is_finite() && v >= 0.0 && v < f64::from(u32::MAX) => {
            Ok(v.round() as u32)
        }
        SampleValue::F64(_) => Err(NvmlError::NotSupported),
    }
}

/// A board's memory as NVML describes it: what its datasheet bandwidth is made of
/// (`sensors::bandwidth` turns it into GB/s).
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySpec {
    pub index: u32,
    pub name: String,
    /// `max_clock_info(Memory)`, MHz.
    pub max_mem_mhz: u32,
    /// `memory_bus_width`, bits.
    pub bus_bits: u32,
}

/// Every board's memory clock and bus width; empty without a driver or where a board does
/// not say.
pub fn memory_specs() -> Vec<MemorySpec> {
    let Ok(nvml) = handle() else {
        return Vec::new();
    };
    (0..nvml.device_count().unwrap_or(0))
        .filter_map(|index| {
            let d = nvml.device_by_index(index).ok()?;
            Some(MemorySpec {
                index,
                name: d.name().unwrap_or_else(|_| format!("GPU {index}")),
                max_mem_mhz: d.max_clock_info(Clock::Memory).ok()?,
                bus_bits: d.memory_bus_width().ok()?,
            })
        })
        .collect()
}

/// Clocks-event reasons that cost speed: power caps, thermal slowdowns, hardware slowdown,
/// an external power brake, a sync-boost group held back by another GPU. Idle, application
/// clocks and display clocks are settings or rest, not throttling.
pub const COSTLY_REASONS: u64 = ThrottleReasons::SW_POWER_CAP.bits()
    | ThrottleReasons::HW_SLOWDOWN.bits()
    | ThrottleReasons::SYNC_BOOST.bits()
    | ThrottleReasons::SW_THERMAL_SLOWDOWN.bits()
    | ThrottleReasons::HW_THERMAL_SLOWDOWN.bits()
    | ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN.bits();

/// Names of the costly reasons in `bits` (a [`Quantity::ThrottleReasons`] value), in NVML's
/// bit order: "power cap", "thermal (sw)", ...
pub fn reason_names(bits: u64) -> Vec<&'static str> {
    [
        (ThrottleReasons::SW_POWER_CAP, "power cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "thermal (sw)"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "thermal (hw)"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "power brake"),
    ]
    .into_iter()
    .filter(|(r, _)| bits & r.bits() != 0)
    .map(|(_, n)| n)
    .collect()
}

/// One read of one GPU, as NVML answered: `None` for a call that failed this time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuRead {
    /// `nvmlDeviceGetPowerUsage`, mW (a 1 s average on Ampere and newer).
    pub power_mw: Option<u32>,
    /// `NVML_FI_DEV_POWER_INSTANT`, mW, on boards that have it.
    pub power_instant_mw: Option<u32>,
    pub energy_mj: Option<u64>,
    pub temp_c: Option<u32>,
    /// Per fan: RPM where the fan reports it (see [`Gpu::fan_rpm`]), else percent.
    pub fans: Vec<Option<u32>>,
    pub util_pct: Option<u32>,
    pub vram: Option<(u64, u64)>,
    pub clock_gfx_mhz: Option<u32>,
    pub clock_sm_mhz: Option<u32>,
    pub clock_mem_mhz: Option<u32>,
    /// Raw clocks-event reason bits.
    pub reasons: Option<u64>,
    /// A call answered `GPU_IS_LOST`: the board fell off the bus.
    pub lost: bool,
}

/// What NVML answered: the value, or `None` (noting a lost board).
fn answer<T>(lost: &mut bool, r: Result<T, NvmlError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(NvmlError::GpuLost) => {
            *lost = true;
            None
        }
        Err(_) => None,
    }
}

impl Gpu {
    /// Everything this GPU reports now; a call that fails leaves its field `None`.
    fn read(&self, d: Result<nvml_wrapper::Device<'_>, NvmlError>) -> GpuRead {
        let mut lost = false;
        let Some(d) = answer(&mut lost, d) else {
            return GpuRead {
                fans: vec![None; self.num_fans as usize],
                lost,
                ..GpuRead::default()
            };
        };
        let l = &mut lost;
        let mut r = GpuRead {
            power_mw: if self.instant_power {
                None
            } else {
                answer(l, d.power_usage())
            },
            power_instant_mw: if self.instant_power {
                answer(l, instant_mw(&d))
            } else {
                None
            },
            energy_mj: if self.energy_counter {
                answer(l, d.total_energy_consumption())
            } else {
                None
            },
            temp_c: answer(l, d.temperature(TemperatureSensor::Gpu)),
            fans: Vec::with_capacity(self.num_fans as usize),
            util_pct: answer(l, d.utilization_rates()).map(|u| u.gpu),
            vram: answer(l, d.memory_info()).map(|m| (m.used, m.total)),
            clock_gfx_mhz: answer(l, d.clock_info(Clock::Graphics)),
            clock_sm_mhz: answer(l, d.clock_info(Clock::SM)),
            clock_mem_mhz: answer(l, d.clock_info(Clock::Memory)),
            reasons: if self.reasons {
                answer(l, d.current_throttle_reasons()).map(|r| r.bits())
            } else {
                None
            },
            lost: false,
        };
        for f in 0..self.num_fans {
            let v = if self.fan_rpm.get(f as usize).copied().unwrap_or(false) {
                d.fan_speed_rpm(f)
            } else {
                d.fan_speed(f)
            };
            r.fans.push(answer(l, v));
        }
        r.lost = lost;
        r
    }

    /// The rows of one read: pure, so every row is tested without a GPU.
    pub fn rows(&self, r: &GpuRead) -> Vec<Reading> {
        // A lost board keeps its rows, each n/a and saying why.
        let lost = r.lost.then(|| VIA_LOST.to_string());
        let row = |what: &str, label: &str, q: Quantity, m: Method, v: Option<f64>| Reading {
            id: format!("nvml:{}:{what}", self.index),
            device: self.name.clone(),
            label: label.into(),
            quantity: q,
            value: v.filter(|_| !r.lost),
            limit: None,
            source: Source::Nvml,
            covers: Covers::GpuBoard,
            method: m,
            rejected: None,
            via: lost.clone(),
        };
        let via = |v: &str, reading: Reading| Reading {
            via: reading.via.or_else(|| Some(v.to_string())),
            ..reading
        };
        let mut out = Vec::new();
        let (power, power_via) = if self.instant_power {
            (r.power_instant_mw, VIA_INSTANT)
        } else {
            (r.power_mw, VIA_AVERAGE)
        };
        out.push(via(
            power_via,
            Reading {
                limit: self.power_limit_w,
                ..row(
                    "power",
                    "board power",
                    Quantity::Power,
                    Method::Measured,
                    power.map(|mw| f64::from(mw) / 1e3),
                )
            },
        ));
        if self.energy_counter {
            out.push(via(
                VIA_COUNTER,
                row(
                    "energy",
                    "board energy",
                    Quantity::Energy,
                    Method::Counter,
                    r.energy_mj.map(|mj| mj as f64 / 1e3),
                ),
            ));
        }
        out.push(Reading {
            limit: self.slowdown_c,
            ..row(
                "temp",
                "GPU",
                Quantity::Temperature,
                Method::Measured,
                r.temp_c.map(f64::from),
            )
        });
        for f in 0..self.num_fans {
            let rpm = self.fan_rpm.get(f as usize).copied().unwrap_or(false);
            let q = if rpm {
                Quantity::FanRpm
            } else {
                Quantity::FanPercent
            };
            let v = r.fans.get(f as usize).copied().flatten().map(f64::from);
            out.push(row(
                &format!("fan{f}"),
                &format!("fan{f}"),
                q,
                Method::Measured,
                v,
            ));
        }
        out.push(row(
            "util",
            "GPU busy",
            Quantity::Utilization,
            Method::Measured,
            r.util_pct.map(f64::from),
        ));
        out.push(row(
            "vram_used",
            "VRAM used",
            Quantity::MemoryUsed,
            Method::Measured,
            r.vram.map(|m| m.0 as f64),
        ));
        out.push(row(
            "vram_total",
            "VRAM total",
            Quantity::MemoryTotal,
            Method::Measured,
            r.vram.map(|m| m.1 as f64),
        ));
        // Graphics and SM clocks against their maxima: a clock held under its maximum while
        // generating is one sign of throttling. The memory clock is fixed by the board.
        for (what, label, v, max) in [
            (
                "clock_gfx",
                "graphics clock",
                r.clock_gfx_mhz,
                self.max_gfx_mhz,
            ),
            ("clock_sm", "SM clock", r.clock_sm_mhz, self.max_sm_mhz),
            ("clock_mem", "memory clock", r.clock_mem_mhz, None),
        ] {
            out.push(Reading {
                limit: max,
                ..row(
                    what,
                    label,
                    Quantity::Clock,
                    Method::Measured,
                    v.map(f64::from),
                )
            });
        }
        if self.reasons {
            out.push(row(
                "throttle",
                "throttle reasons",
                Quantity::ThrottleReasons,
                Method::Measured,
                r.reasons.map(|b| (b & COSTLY_REASONS) as f64),
            ));
        }
        out
    }
}

impl Sensor for NvmlSensor {
    fn name(&self) -> String {
        "nvml".into()
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let mut out = Vec::new();
        for (g, lost) in self.gpus.iter().zip(self.lost.iter_mut()) {
            let read = if *lost {
                GpuRead {
                    fans: vec![None; g.num_fans as usize],
                    lost: true,
                    ..GpuRead::default()
                }
            } else {
                g.read(self.nvml.device_by_index(g.index))
            };
            *lost = read.lost;
            out.extend(g.rows(&read));
        }
        out
    }
}

/// One NVML per-process utilisation sample (`nvmlDeviceGetProcessUtilization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSm {
    pub pid: u32,
    /// CPU timestamp of the sample, µs.
    pub timestamp_us: u64,
    /// SM (compute) utilisation, percent.
    pub sm_pct: u32,
    /// Frame-buffer memory utilisation, percent.
    pub mem_pct: u32,
}

/// A process with a compute context on a GPU (`running_compute_processes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputeProcess {
    pub pid: u32,
    /// VRAM it holds, bytes; `None` where the driver does not say (some vGPU and MIG setups).
    pub vram_bytes: Option<u64>,
}

/// Per-process GPU figures: NVML on a real machine, a scripted fake in tests. NVML has no
/// per-process energy; these are what an attribution splits a board's energy by.
pub trait GpuProcesses: Send {
    /// The GPU indices, as the `nvml:{index}:...` reading ids name them.
    fn indices(&self) -> Vec<u32>;
    /// Utilisation samples of every process newer than `since_us` (0: all the driver kept).
    fn utilization(&mut self, index: u32, since_us: u64) -> Result<Vec<ProcessSm>, String>;
    /// Processes with a compute context, and their VRAM.
    fn compute_processes(&mut self, index: u32) -> Result<Vec<ComputeProcess>, String>;
}

/// [`GpuProcesses`] through the process-wide NVML handle.
#[derive(Debug)]
pub struct NvmlProcesses {
    nvml: &'static Nvml,
    count: u32,
}

/// NVML's per-process figures, or why there are none ("no NVIDIA driver ...").
pub fn processes() -> Result<NvmlProcesses, &'static str> {
    Ok(processes_on(handle()?))
}

/// The per-process figures of `nvml` (a test's own [`open_at`]).
pub fn processes_on(nvml: &'static Nvml) -> NvmlProcesses {
    NvmlProcesses {
        nvml,
        count: nvml.device_count().unwrap_or(0),
    }
}

impl GpuProcesses for NvmlProcesses {
    fn indices(&self) -> Vec<u32> {
        (0..self.count).collect()
    }

    fn utilization(&mut self, index: u32, since_us: u64) -> Result<Vec<ProcessSm>, String> {
        let d = self
            .nvml
            .device_by_index(index)
            .map_err(|e| format!("GPU {index}: {e}"))?;
        match d.process_utilization_stats(since_us) {
            Ok(v) => Ok(v
                .into_iter()
                .map(|s| ProcessSm {
                    pid: s.pid,
                    timestamp_us: s.timestamp,
                    sm_pct: s.sm_util,
                    mem_pct: s.mem_util,
                })
                .collect()),
            // No process ran a kernel since `since_us`: no samples, not a failure.
            Err(NvmlError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(format!("GPU {index}: per-process utilisation: {e}")),
        }
    }

    fn compute_processes(&mut self, index: u32) -> Result<Vec<ComputeProcess>, String> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let d = self
            .nvml
            .device_by_index(index)
            .map_err(|e| format!("GPU {index}: {e}"))?;
        let procs = d
            .running_compute_processes()
            .map_err(|e| format!("GPU {index}: compute processes: {e}"))?;
        Ok(procs
            .into_iter()
            .map(|p| ComputeProcess {
                pid: p.pid,
                vram_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b),
                    UsedGpuMemory::Unavailable => None,
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The no-driver case is tests/sensors/sensors_nvml.rs's (counted as skipped on a GPU
    // machine, where its ignored GPU test runs instead).

    /// Only the reasons that cost speed are named; idle and display clocks are not throttling.
    /// (How rows come out of NVML's answers is tested through the real nvml-wrapper against
    /// the stand-in library: tests/sensors/sensors_nvml.rs.)
    #[test]
    fn only_costly_reasons_are_named() {
        assert_eq!(reason_names(0x4 | 0x20), ["power cap", "thermal (sw)"]);
        assert!(reason_names(0x1 | 0x2 | 0x100).is_empty());
        // A bit NVML adds later is not named, and does not count.
        assert_eq!(COSTLY_REASONS & (1 << 40), 0);
    }
}
