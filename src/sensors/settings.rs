//! The `[sensors]` section of the config file, with its `[[sensors.plugs]]`.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorsSection {
    /// Sampling rate of local sensors, Hz.
    pub rate_hz: f64,
    /// Read sysfs from here instead of `/sys` (a captured tree).
    pub sysfs_root: PathBuf,
    /// CPU TDP for the utilisation-based estimate when no power sensor is readable, W.
    pub tdp_watts: f64,
    /// CPU idle power for the same estimate, W.
    pub idle_watts: f64,
    /// Idle-baseline window, seconds: before bench runs, and after the dashboard's model loads.
    pub idle_window_s: f64,
    /// Plausibility ceiling for whole-system power (wall plug, RAPL psys, anything else), W.
    /// Above it a reading is rejected; a big server at the wall raises it.
    pub max_watts: f64,
    /// Ceiling for one GPU board, W.
    pub max_gpu_watts: f64,
    /// Ceiling for one CPU package (and its DRAM), W; `tdp_watts` must not exceed it.
    pub max_cpu_watts: f64,
    /// Ceiling for a battery's discharge, W.
    pub max_battery_watts: f64,
    pub plugs: Vec<PlugConfig>,
}

impl Default for SensorsSection {
    fn default() -> Self {
        Self {
            rate_hz: 4.0,
            sysfs_root: PathBuf::from("/sys"),
            tdp_watts: 65.0,
            idle_watts: 10.0,
            idle_window_s: 10.0,
            max_watts: 5000.0,
            max_gpu_watts: 1500.0,
            max_cpu_watts: 1000.0,
            max_battery_watts: 500.0,
            plugs: Vec::new(),
        }
    }
}

/// A smart plug measuring wall power.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlugConfig {
    /// "shelly-gen2", "shelly-pm1", "shelly-gen1", "tasmota" or "home-assistant".
    pub kind: String,
    /// Base URL, e.g. "http://192.168.1.50" or "https://homeassistant.local:8123".
    pub url: String,
    /// Home Assistant only.
    pub entity: Option<String>,
    /// Home Assistant only: long-lived access token.
    pub token: Option<String>,
    /// https only: PEM file of the CA to trust for this plug instead of the public roots
    /// (a self-signed Home Assistant certificate).
    pub ca_file: Option<PathBuf>,
    /// Poll rate, Hz (plugs update about once a second).
    #[serde(default = "default_plug_rate")]
    pub rate_hz: f64,
}

fn default_plug_rate() -> f64 {
    1.0
}
