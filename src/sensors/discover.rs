//! Find every source this machine has, and say for each one that is missing or unreadable why,
//! with the fix.

use super::battery;
use super::cpufreq;
use super::estimate::EstimateSensor;
use super::hwmon;
use super::nvml;
use super::plug::PlugSensor;
use super::powercap;
use super::procstat::CpuUtil;
use super::settings::SensorsSection;
use super::sysfs::Sysfs;
use super::system::SystemSensor;
use super::{Sensor, Source, SourceState, SourceStatus};
use std::path::PathBuf;

/// What discovery found: sensors to hand to the sampler, and the report.
pub struct Discovery {
    pub sensors: Vec<Box<dyn Sensor>>,
    pub statuses: Vec<SourceStatus>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field(
                "sensors",
                &self.sensors.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("statuses", &self.statuses)
            .finish()
    }
}

impl SourceStatus {
    /// Found and readable: nothing to tell the user.
    pub fn is_problem(&self) -> bool {
        self.state != SourceState::Found
    }

    /// One line for a status line, a help screen or the log:
    /// "plug http://10.0.0.9/rpc (unreadable): unreachable now: ...; fix: ...".
    pub fn line(&self) -> String {
        let source = self.source.name();
        let state = match self.state {
            SourceState::Found => "found",
            SourceState::Missing => "not found",
            SourceState::PermissionDenied => "permission denied",
            SourceState::Unreadable => "unreadable",
        };
        let mut line = format!("{source} {} ({state}): {}", self.device, self.detail);
        if let Some(fix) = &self.fix {
            line.push_str("; fix: ");
            line.push_str(fix);
        }
        line
    }
}

/// What to look at. Tests turn off the host-dependent parts.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    pub sysfs: Sysfs,
    /// Query NVML (the host's driver, not the sysfs tree).
    pub nvml: bool,
    /// Add the CPU-utilisation/memory sensor.
    pub system: bool,
    /// Contact configured smart plugs once to check them.
    pub probe_plugs: bool,
    /// `/proc/stat`, for utilisation (the estimate and the system sensor).
    pub proc_stat: PathBuf,
}

impl DiscoverOptions {
    pub fn from_config(cfg: &SensorsSection) -> Self {
        Self {
            sysfs: Sysfs::new(&cfg.sysfs_root),
            nvml: true,
            system: true,
            probe_plugs: true,
            proc_stat: PathBuf::from("/proc/stat"),
        }
    }
}

/// Everything, from the config (`sysfs_root`, TDP, plugs).
pub fn discover(cfg: &SensorsSection) -> Discovery {
    discover_with(cfg, &DiscoverOptions::from_config(cfg))
}

pub fn discover_with(cfg: &SensorsSection, opts: &DiscoverOptions) -> Discovery {
    let mut sensors: Vec<Box<dyn Sensor>> = Vec::new();
    let mut statuses = Vec::new();

    if opts.nvml {
        let (s, st) = nvml::discover();
        statuses.extend(st);
        if let Some(s) = s {
            sensors.push(Box::new(s));
        }
    }

    let (rapl, st) = powercap::discover(&opts.sysfs);
    statuses.extend(st);
    let mut cpu_power = rapl.as_ref().is_some_and(|r| r.has_cpu_power());
    if let Some(r) = rapl {
        sensors.push(Box::new(r));
    }

    let (hw, st) = hwmon::discover(&opts.sysfs);
    statuses.extend(st);
    if hw.is_empty() {
        statuses.push(SourceStatus {
            source: Source::Hwmon,
            device: opts.sysfs.path("class/hwmon").display().to_string(),
            state: SourceState::Missing,
            detail: "no hwmon devices (VM, or sensor drivers not loaded)".into(),
            fix: Some("sudo sensors-detect (lm-sensors), then load the modules it names".into()),
        });
    }
    cpu_power |= hw.iter().any(|h| h.has_cpu_power());
    for h in hw {
        sensors.push(Box::new(h));
    }

    // Clocks and throttle counters: what the throttle detector weighs a slower reply against.
    let (cpu, st) = cpufreq::discover(&opts.sysfs);
    statuses.extend(st);
    if let Some(c) = cpu {
        sensors.push(Box::new(c));
    }

    let (bats, st) = battery::discover(&opts.sysfs);
    statuses.extend(st);
    for b in bats {
        sensors.push(Box::new(b));
    }

    for p in &cfg.plugs {
        match PlugSensor::new(p) {
            Ok(plug) => {
                let probe = if opts.probe_plugs {
                    plug.fetch().map(|_| ()).map_err(|e| e.to_string())
                } else {
                    Ok(())
                };
                let (state, detail) = match probe {
                    Ok(()) => (SourceState::Found, format!("{} at the wall", p.kind)),
                    Err(e) => (SourceState::Unreadable, format!("unreachable now: {e}")),
                };
                statuses.push(SourceStatus {
                    source: Source::Plug,
                    device: plug.request_url().to_string(),
                    state,
                    detail,
                    fix: (state != SourceState::Found).then(|| {
                        "check the plug is on and the url in [[sensors.plugs]] of the config".into()
                    }),
                });
                // Kept even when unreachable now: it may come back, and shows as n/a meanwhile.
                sensors.push(Box::new(plug));
            }
            Err(e) => statuses.push(SourceStatus {
                source: Source::Plug,
                device: p.url.clone(),
                state: SourceState::Unreadable,
                detail: e.to_string(),
                fix: Some("fix this plug's entry in [[sensors.plugs]] of the config".into()),
            }),
        }
    }

    if !cpu_power {
        sensors.push(Box::new(EstimateSensor::new(
            cfg.tdp_watts,
            cfg.idle_watts,
            Box::new(CpuUtil::new(&opts.proc_stat)),
        )));
        statuses.push(SourceStatus {
            source: Source::Estimate,
            device: "CPU".into(),
            state: SourceState::Found,
            detail: format!(
                "no CPU power sensor readable: estimating {:.0} W idle + ({:.0} W TDP - idle) x utilisation",
                cfg.idle_watts, cfg.tdp_watts
            ),
            fix: Some(
                "set tdp_watts and idle_watts in [sensors] of the config to match this CPU".into(),
            ),
        });
    }

    if opts.system {
        sensors.push(Box::new(SystemSensor::new(&opts.proc_stat)));
    }
    Discovery { sensors, statuses }
}
