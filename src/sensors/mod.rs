//! Hardware sensors: what each reading is, where it came from, and the sampler thread.
//!
//! Every figure carries its provenance: the [`Source`] that produced it, what it [`Covers`] and
//! the [`Method`] (cumulative counter, measured/averaged power, or estimate). A sensor that
//! cannot be read yields `value: None` ("n/a") rather than failing the whole sample.

pub mod scripted;
pub mod settings;

use serde::{Deserialize, Serialize};

pub mod bandwidth;
pub mod battery;
pub mod counter;
pub mod cpufreq;
pub mod discover;
pub mod estimate;
pub mod host;
pub mod hwmon;
pub mod llama_metrics;
pub mod meter;
pub mod nvml;
pub mod nvml_init;
pub mod plausible;
pub mod plug;
pub mod powercap;
pub mod powerlimit;
pub mod process;
pub mod procstat;
pub mod runnable;
pub mod sampler;
pub mod sysfs;
pub mod system;

pub use discover::{DiscoverOptions, Discovery, discover, discover_with};
pub use meter::Meter;
pub use sampler::{Sampler, SamplerHandle};

/// Which interface produced a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Nvml,
    Rapl,
    Hwmon,
    Battery,
    Plug,
    Estimate,
    /// The machine itself: CPU utilisation, memory, CPU clocks (cpufreq) and the kernel's
    /// thermal throttle counters.
    System,
}

impl Source {
    /// The name listings and logs use: "nvml", "rapl", "hwmon", "battery", "plug", ...
    pub fn name(self) -> &'static str {
        match self {
            Source::Nvml => "nvml",
            Source::Rapl => "rapl",
            Source::Hwmon => "hwmon",
            Source::Battery => "battery",
            Source::Plug => "plug",
            Source::Estimate => "estimate",
            Source::System => "system",
        }
    }
}

/// What part of the machine a reading covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Covers {
    GpuBoard,
    CpuPackage,
    Dram,
    /// Whole system measured at the wall (smart plug).
    Wall,
    /// Whole system drawn from the battery while discharging.
    Battery,
    /// Whole platform from RAPL psys.
    Platform,
    /// Anything else (a motherboard fan, a chipset temperature, ...).
    Other,
}

/// What quantity a reading holds, with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Watts.
    Power,
    /// Joules, cumulative since some arbitrary origin (a counter).
    Energy,
    /// Degrees Celsius.
    Temperature,
    /// Revolutions per minute.
    FanRpm,
    /// Percent of maximum fan speed (when RPM is not available).
    FanPercent,
    /// Percent.
    Utilization,
    /// Bytes.
    MemoryUsed,
    /// Bytes.
    MemoryTotal,
    /// MHz. `limit` is the clock's maximum, when known.
    Clock,
    /// Throttle events counted since boot (a cumulative count, `Method::Counter`): the
    /// kernel's `thermal_throttle/*_throttle_count`.
    ThrottleCount,
    /// Why a GPU holds its clocks down now: NVML's clocks-event reason bits, only those that
    /// cost speed ([`nvml::COSTLY_REASONS`]); 0 when nothing does.
    ThrottleReasons,
    /// Threads of other programs runnable now (running or waiting for a CPU): the kernel's
    /// `procs_running` less this process's own runnable threads. `limit`: the online CPUs.
    RunnableThreads,
}

/// How a value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A cumulative energy counter (take end minus start).
    Counter,
    /// An instantaneous or device-averaged measurement.
    Measured,
    /// Computed from a model (utilisation x TDP); never a measurement.
    Estimated,
}

/// One value from one sensor at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Stable key across samples, e.g. `rapl:package-0:energy` or `hwmon:coretemp:temp1`.
    pub id: String,
    /// Human name of the device, e.g. "NVIDIA GeForce RTX 4090" or "coretemp".
    pub device: String,
    /// Label of the channel, e.g. "Package id 0", "fan2", "package-0".
    pub label: String,
    pub quantity: Quantity,
    /// `None` when the sensor exists but could not be read this time ("n/a"), or when the
    /// value was implausible (then `rejected` says why).
    pub value: Option<f64>,
    /// A relevant limit in the same unit: temperature slowdown/critical point, power limit.
    /// For an energy counter (`Method::Counter`): the value at which it wraps to zero, if known
    /// (RAPL `max_energy_range_uj`), which the energy accounting uses to unwrap it.
    /// For an estimated power reading (`Method::Estimated`): the model's floor, its idle
    /// power, which is the channel's own idle figure for net-of-idle energy
    /// ([`Reading::own_idle_w`]).
    pub limit: Option<f64>,
    pub source: Source,
    pub covers: Covers,
    pub method: Method,
    /// Why the value was rejected as implausible ([`plausible`]); `value` is then `None`.
    /// Shown as "rejected" with this reason, never accumulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Provenance detail: the call or file the value came from, where a source has more than
    /// one way to read it, e.g. "nvmlDeviceGetTotalEnergyConsumption",
    /// "NVML_FI_DEV_POWER_INSTANT", "nvmlDeviceGetPowerUsage (1 s average)", "power1_average".
    /// Shown beside the method (F1, run card, `llmtop sensors`). With no value: what the
    /// device answered instead, where that matters ("GPU lost (NVML_ERROR_GPU_IS_LOST)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Reading {
    /// The source's own figure for its idle power, W: only an estimate has one (its model's
    /// `P_idle`, carried in `limit`); a measured channel's idle has to be measured.
    pub fn own_idle_w(&self) -> Option<f64> {
        (self.quantity == Quantity::Power && self.method == Method::Estimated)
            .then_some(self.limit)
            .flatten()
            .filter(|w| w.is_finite() && *w >= 0.0)
    }
}

/// Everything read in one sampler tick.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started, from a monotonic clock.
    pub t: f64,
    pub readings: Vec<Reading>,
}

/// A source of readings. Implementations take their roots (sysfs dir, URL) at construction
/// and the time as an argument, so they run against fixtures and fakes in tests.
pub trait Sensor: Send {
    /// Short name for listings and logs, e.g. "rapl", "hwmon:coretemp", "plug:shelly-gen2".
    fn name(&self) -> String;
    /// Read every channel now; `now` is seconds on the sampler's monotonic clock.
    /// A channel that fails this time is returned with `value: None`.
    fn read(&mut self, now: f64) -> Vec<Reading>;
    /// `Some(hz)` for a slow or remote source (a smart plug) that the sampler polls on its own
    /// thread at its own rate, so it never delays the local sensors. `None`: the local tick.
    fn poll_rate_hz(&self) -> Option<f64> {
        None
    }
}

/// Whether a source could be used, as found at discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Readable; its rows are in the sample.
    Found,
    /// Not present on this machine (no driver, no such device, not configured).
    Missing,
    /// Present but the files are readable by root only.
    PermissionDenied,
    /// Present but reading failed or returned garbage (EIO, a symlink loop, non-numbers,
    /// an unreachable plug).
    Unreadable,
}

/// One line of the discovery report: what was looked for, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub source: Source,
    /// Device or path, e.g. "intel-rapl:0", "hwmon3 (nct6775)", "http://192.168.1.50".
    pub device: String,
    pub state: SourceState,
    /// Why, in a few words: "energy_uj is root-only", "no NVIDIA driver", "3 channels".
    pub detail: String,
    /// The exact one-line fix, when there is one.
    pub fix: Option<String>,
}
