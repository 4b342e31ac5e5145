//! CPU power estimated from utilisation when no CPU power sensor is readable:
//! `P = idle + (tdp - idle) * utilisation`. Never a measurement: every reading says
//! `Method::Estimated` / `Source::Estimate`, and the UI and run cards show it as such. Its
//! reading carries the model's idle power in `limit` ([`super::Reading::own_idle_w`]): the
//! ledger's idle floor for this channel when no idle baseline was measured.

use super::procstat::CpuUtil;
use super::{Covers, Method, Quantity, Reading, Sensor, Source};

/// Where utilisation comes from (`/proc/stat` for real; a script in tests).
pub trait UtilSource: Send {
    /// Utilisation in `[0, 1]` since the last call.
    fn util(&mut self) -> Option<f64>;
}

impl UtilSource for CpuUtil {
    fn util(&mut self) -> Option<f64> {
        self.sample()
    }
}

/// The model itself, for tests and docs.
pub fn estimate_watts(idle_w: f64, tdp_w: f64, util: f64) -> f64 {
    idle_w + (tdp_w - idle_w) * util.clamp(0.0, 1.0)
}

pub struct EstimateSensor {
    tdp_w: f64,
    idle_w: f64,
    util: Box<dyn UtilSource>,
}

impl std::fmt::Debug for EstimateSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstimateSensor")
            .field("tdp_w", &self.tdp_w)
            .field("idle_w", &self.idle_w)
            .finish()
    }
}

impl EstimateSensor {
    pub fn new(tdp_w: f64, idle_w: f64, util: Box<dyn UtilSource>) -> Self {
        Self {
            tdp_w,
            idle_w,
            util,
        }
    }
}

impl Sensor for EstimateSensor {
    fn name(&self) -> String {
        "estimate:cpu".into()
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let value = self
            .util
            .util()
            .map(|u| estimate_watts(self.idle_w, self.tdp_w, u));
        vec![Reading {
            id: "estimate:cpu:power".into(),
            device: "CPU".into(),
            label: format!(
                "estimated ({:.0} W idle, {:.0} W TDP)",
                self.idle_w, self.tdp_w
            ),
            quantity: Quantity::Power,
            value,
            // The model's idle power: the ledger's idle floor for this channel.
            limit: Some(self.idle_w),
            source: Source::Estimate,
            covers: Covers::CpuPackage,
            method: Method::Estimated,
            rejected: None,
            via: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Script(Vec<Option<f64>>);
    impl UtilSource for Script {
        fn util(&mut self) -> Option<f64> {
            self.0.remove(0)
        }
    }

    #[test]
    fn linear_between_idle_and_tdp() {
        let mut s = EstimateSensor::new(65.0, 10.0, Box::new(Script(vec![Some(0.5), None])));
        let r = s.read(0.0);
        assert_eq!(r[0].value, Some(37.5));
        assert_eq!(r[0].method, Method::Estimated);
        assert_eq!(r[0].source, Source::Estimate);
        assert_eq!(r[0].own_idle_w(), Some(10.0));
        assert_eq!(s.read(0.25)[0].value, None);
        assert_eq!(estimate_watts(10.0, 65.0, 2.0), 65.0);
    }
}
