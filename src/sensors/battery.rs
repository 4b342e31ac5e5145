//! Batteries: `class/power_supply/BATn/` `power_now` (µW), or `current_now` (µA) x
//! `voltage_now` (µV). Only while `status` is `Discharging` is that the whole system's draw;
//! otherwise the reading is n/a (charging power is not what the machine uses).

use super::sysfs::{Sysfs, list_dir};
use super::{Covers, Method, Quantity, Reading, Sensor, Source, SourceState, SourceStatus};
use std::path::PathBuf;

#[derive(Debug)]
pub struct BatterySensor {
    fs: Sysfs,
    /// `BAT0`.
    pub name: String,
    dir: PathBuf,
}

/// What one read of a battery found.
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryState {
    pub status: String,
    /// Draw in W, whatever the status.
    pub watts: Option<f64>,
}

impl BatterySensor {
    pub fn state(&self) -> BatteryState {
        let status = self
            .fs
            .read_str(&self.dir.join("status"))
            .unwrap_or_else(|_| "Unknown".into());
        let watts = match self.fs.read_num::<f64>(&self.dir.join("power_now")) {
            Ok(uw) => Some(uw.abs() / 1e6),
            Err(_) => {
                let ua = self.fs.read_num::<f64>(&self.dir.join("current_now"));
                let uv = self.fs.read_num::<f64>(&self.dir.join("voltage_now"));
                match (ua, uv) {
                    (Ok(a), Ok(v)) => Some((a * v).abs() / 1e12),
                    _ => None,
                }
            }
        };
        BatteryState {
            status,
            watts: watts.filter(|w| w.is_finite()),
        }
    }
}

pub fn discover(fs: &Sysfs) -> (Vec<BatterySensor>, Vec<SourceStatus>) {
    let mut sensors = Vec::new();
    let mut statuses = Vec::new();
    for (name, dir) in list_dir(&fs.path("class/power_supply")) {
        let is_battery = fs
            .read_str(&dir.join("type"))
            .map(|t| t == "Battery")
            .unwrap_or_else(|_| name.starts_with("BAT"));
        // Peripherals (mice, headsets) report batteries too; their `scope` is `Device`.
        let is_device_scope = fs.read_str(&dir.join("scope")).is_ok_and(|s| s == "Device");
        if !is_battery || is_device_scope {
            continue;
        }
        let sensor = BatterySensor {
            fs: fs.clone(),
            name: name.clone(),
            dir,
        };
        let st = sensor.state();
        if st.watts.is_none() {
            statuses.push(SourceStatus {
                source: Source::Battery,
                device: name,
                state: SourceState::Unreadable,
                detail: "neither power_now nor current_now x voltage_now is readable".into(),
                fix: None,
            });
            continue;
        }
        let detail = if st.status == "Discharging" {
            "discharging: measures the whole system".to_string()
        } else {
            format!(
                "{}: system draw is only measured while discharging",
                st.status
            )
        };
        statuses.push(SourceStatus {
            source: Source::Battery,
            device: name,
            state: SourceState::Found,
            detail,
            fix: None,
        });
        sensors.push(sensor);
    }
    (sensors, statuses)
}

impl Sensor for BatterySensor {
    fn name(&self) -> String {
        format!("battery:{}", self.name)
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let st = self.state();
        let discharging = st.status == "Discharging";
        vec![Reading {
            id: format!("battery:{}:power", self.name),
            device: self.name.clone(),
            label: if discharging {
                "discharging".into()
            } else {
                format!("{} (n/a unless discharging)", st.status.to_lowercase())
            },
            quantity: Quantity::Power,
            value: st.watts.filter(|_| discharging),
            limit: None,
            source: Source::Battery,
            covers: Covers::Battery,
            method: Method::Measured,
            rejected: None,
            via: None,
        }]
    }
}
