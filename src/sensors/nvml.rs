//! NVIDIA GPUs through NVML (nvml-wrapper). The library is opened at run time: on a machine
//! without the driver, init fails and there are simply no GPU rows (one quiet status line).
//! NVML is initialised once per process and kept for its lifetime.

use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor, TemperatureThreshold};
use nvml_wrapper::error::NvmlError;
use std::sync::OnceLock;

static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();

/// The process-wide NVML handle, or why there is none.
pub fn handle() -> Result<&'static Nvml, &'static str> {
    NVML.get_or_init(|| Nvml::init().map_err(|e| describe_init_error(&e)))
        .as_ref()
        .map_err(|e| e.as_str())
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
    /// Maximum graphics and SM clocks, MHz: the limits of the clock rows.
    pub max_gfx_mhz: Option<f64>,
    pub max_sm_mhz: Option<f64>,
    /// The board reports clocks-event (throttle) reasons.
    pub reasons: bool,
}

/// All NVIDIA GPUs.
#[derive(Debug)]
pub struct NvmlSensor {
    nvml: &'static Nvml,
    gpus: Vec<Gpu>,
}

pub fn discover() -> (Option<NvmlSensor>, Vec<SourceStatus>) {
    let nvml = match handle() {
        Ok(n) => n,
        Err(why) => {
            let state = if why.contains("permission") {
                SourceState::PermissionDenied
            } else {
                SourceState::Missing
            };
            return (
                None,
                vec![SourceStatus {
                    source: Source::Nvml,
                    device: "NVIDIA".into(),
                    state,
                    detail: why.into(),
                    fix: None,
                }],
            );
        }
    };
    let count = nvml.device_count().unwrap_or(0);
    let mut gpus = Vec::new();
    for index in 0..count {
        let Ok(d) = nvml.device_by_index(index) else {
            continue;
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
            max_gfx_mhz: d.max_clock_info(Clock::Graphics).ok().map(f64::from),
            max_sm_mhz: d.max_clock_info(Clock::SM).ok().map(f64::from),
            reasons: d.current_throttle_reasons().is_ok(),
        });
    }
    let statuses = if gpus.is_empty() {
        vec![SourceStatus {
            source: Source::Nvml,
            device: "NVIDIA".into(),
            state: SourceState::Missing,
            detail: "driver loaded but no GPU visible".into(),
            fix: None,
        }]
    } else {
        gpus.iter()
            .map(|g| SourceStatus {
                source: Source::Nvml,
                device: format!("GPU {} ({})", g.index, g.name),
                state: SourceState::Found,
                detail: "power, energy counter, temperature, fans, utilisation, VRAM, clocks, throttle reasons"
                    .into(),
                fix: None,
            })
            .collect()
    };
    if gpus.is_empty() {
        return (None, statuses);
    }
    (Some(NvmlSensor { nvml, gpus }), statuses)
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
    pub power_mw: Option<u32>,
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
}

impl Gpu {
    /// Everything this GPU reports now; a call that fails leaves its field `None`.
    fn read(&self, d: Option<&nvml_wrapper::Device<'_>>) -> GpuRead {
        let Some(d) = d else {
            return GpuRead {
                fans: vec![None; self.num_fans as usize],
                ..GpuRead::default()
            };
        };
        GpuRead {
            power_mw: d.power_usage().ok(),
            energy_mj: self
                .energy_counter
                .then(|| d.total_energy_consumption().ok())
                .flatten(),
            temp_c: d.temperature(TemperatureSensor::Gpu).ok(),
            fans: (0..self.num_fans)
                .map(|f| {
                    if self.fan_rpm.get(f as usize).copied().unwrap_or(false) {
                        d.fan_speed_rpm(f).ok()
                    } else {
                        d.fan_speed(f).ok()
                    }
                })
                .collect(),
            util_pct: d.utilization_rates().ok().map(|u| u.gpu),
            vram: d.memory_info().ok().map(|m| (m.used, m.total)),
            clock_gfx_mhz: d.clock_info(Clock::Graphics).ok(),
            clock_sm_mhz: d.clock_info(Clock::SM).ok(),
            clock_mem_mhz: d.clock_info(Clock::Memory).ok(),
            reasons: self
                .reasons
                .then(|| d.current_throttle_reasons().ok().map(|r| r.bits()))
                .flatten(),
        }
    }

    /// The rows of one read: pure, so every row is tested without a GPU.
    pub fn rows(&self, r: &GpuRead) -> Vec<Reading> {
        let row = |what: &str, label: &str, q: Quantity, m: Method, v: Option<f64>| Reading {
            id: format!("nvml:{}:{what}", self.index),
            device: self.name.clone(),
            label: label.into(),
            quantity: q,
            value: v,
            limit: None,
            source: Source::Nvml,
            covers: Covers::GpuBoard,
            method: m,
            rejected: None,
        };
        let mut out = Vec::new();
        out.push(Reading {
            limit: self.power_limit_w,
            ..row(
                "power",
                "board power",
                Quantity::Power,
                Method::Measured,
                r.power_mw.map(|mw| f64::from(mw) / 1e3),
            )
        });
        if self.energy_counter {
            out.push(row(
                "energy",
                "board energy",
                Quantity::Energy,
                Method::Counter,
                r.energy_mj.map(|mj| mj as f64 / 1e3),
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
        for g in &self.gpus {
            let d = self.nvml.device_by_index(g.index).ok();
            out.extend(g.rows(&g.read(d.as_ref())));
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
    let nvml = handle()?;
    Ok(NvmlProcesses {
        nvml,
        count: nvml.device_count().unwrap_or(0),
    })
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

    fn gpu() -> Gpu {
        Gpu {
            index: 1,
            name: "NVIDIA H200".into(),
            num_fans: 1,
            fan_rpm: vec![false],
            slowdown_c: Some(87.0),
            power_limit_w: Some(700.0),
            energy_counter: true,
            max_gfx_mhz: Some(1980.0),
            max_sm_mhz: Some(1980.0),
            reasons: true,
        }
    }

    /// The seam: what NVML answered becomes rows with units, limits and ids, no GPU needed.
    #[test]
    fn rows_carry_clocks_against_their_maxima_and_only_costly_reasons() {
        let g = gpu();
        let read = GpuRead {
            power_mw: Some(512_250),
            energy_mj: Some(9_000_500),
            temp_c: Some(86),
            fans: vec![Some(64)],
            util_pct: Some(99),
            vram: Some((40 << 30, 141 << 30)),
            clock_gfx_mhz: Some(1410),
            clock_sm_mhz: Some(1395),
            clock_mem_mhz: Some(3201),
            // Idle (0x1) and display clock (0x100) are not throttling; power cap (0x4) and
            // sw thermal (0x20) are.
            reasons: Some(0x1 | 0x4 | 0x20 | 0x100),
        };
        let rows = g.rows(&read);
        let get = |id: &str| rows.iter().find(|r| r.id == id).expect(id);
        let p = get("nvml:1:power");
        assert_eq!((p.value, p.limit), (Some(512.25), Some(700.0)));
        assert_eq!(get("nvml:1:energy").value, Some(9_000.5));
        assert_eq!(get("nvml:1:temp").limit, Some(87.0));
        assert_eq!(get("nvml:1:fan0").quantity, Quantity::FanPercent);
        let gfx = get("nvml:1:clock_gfx");
        assert_eq!((gfx.value, gfx.limit), (Some(1410.0), Some(1980.0)));
        let sm = get("nvml:1:clock_sm");
        assert_eq!(
            (sm.value, sm.limit, sm.label.as_str()),
            (Some(1395.0), Some(1980.0), "SM clock")
        );
        assert_eq!(get("nvml:1:clock_mem").limit, None);
        let why = get("nvml:1:throttle");
        assert_eq!(why.quantity, Quantity::ThrottleReasons);
        assert_eq!(why.value, Some(f64::from(0x4 | 0x20)));
        assert_eq!(reason_names(0x4 | 0x20), ["power cap", "thermal (sw)"]);
        assert!(reason_names(0x1 | 0x2 | 0x100).is_empty());
        // A bit NVML adds later is not named, and does not count.
        assert_eq!(COSTLY_REASONS & (1 << 40), 0);
    }

    /// A device that vanished between reads (or calls that fail) gives the same rows, n/a.
    #[test]
    fn a_failed_read_keeps_every_row_as_na() {
        let g = gpu();
        let rows = g.rows(&g.read(None));
        assert_eq!(rows.len(), 11);
        assert!(rows.iter().all(|r| r.value.is_none()), "{rows:?}");
        let no_reasons = Gpu {
            reasons: false,
            energy_counter: false,
            ..gpu()
        };
        let ids: Vec<String> = no_reasons
            .rows(&GpuRead::default())
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert!(
            !ids.iter()
                .any(|i| i.ends_with(":throttle") || i.ends_with(":energy")),
            "{ids:?}"
        );
    }
}
