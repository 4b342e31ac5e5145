//! Plausibility limits per kind of reading, in one place. A value outside them (a plug saying
//! 1.8e308 W, a battery read as 5e14 W, −273 °C, −1200 RPM) is a broken sensor or a parsing
//! slip, not a measurement: the reading keeps its row but carries `value: None` and the
//! reason in `rejected`, so it is shown as rejected and never reaches the energy ledger.
//!
//! The power ceilings come from `[sensors]` (`max_watts`, `max_gpu_watts`, `max_cpu_watts`,
//! `max_battery_watts`) because a real machine can exceed any default; the other ranges are
//! physical and fixed. The README's sensors part has the table.

use super::settings::SensorsSection;
use super::{Covers, Quantity, Reading};

/// Temperatures, °C: below any place a computer runs, above any junction's shutdown point.
pub const TEMP_C: (f64, f64) = (-50.0, 150.0);
/// Fan speed, RPM: the fastest server fans turn about 30 000.
pub const FAN_RPM: (f64, f64) = (0.0, 50_000.0);
/// Fan speed in percent of maximum (NVML may report a little over 100).
pub const FAN_PERCENT: (f64, f64) = (0.0, 200.0);
/// Utilisation, percent (a hair over 100 is rounding).
pub const UTILIZATION: (f64, f64) = (0.0, 100.5);
/// Memory, bytes: 1 PiB.
pub const MEMORY_BYTES: (f64, f64) = (0.0, 1_125_899_906_842_624.0);
/// Clocks, MHz (GDDR memory clocks report above 10 000).
pub const CLOCK_MHZ: (f64, f64) = (0.0, 50_000.0);

/// The power ceilings, W, per kind of source. The defaults match `[sensors]`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Whole system: wall plug, RAPL psys, and anything not named below.
    pub max_watts: f64,
    pub max_gpu_watts: f64,
    /// A CPU package or its DRAM.
    pub max_cpu_watts: f64,
    pub max_battery_watts: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&SensorsSection::default())
    }
}

impl From<&SensorsSection> for Limits {
    fn from(s: &SensorsSection) -> Self {
        Self {
            max_watts: s.max_watts,
            max_gpu_watts: s.max_gpu_watts,
            max_cpu_watts: s.max_cpu_watts,
            max_battery_watts: s.max_battery_watts,
        }
    }
}

impl Limits {
    /// The most power a source covering `covers` can draw, W.
    pub fn max_power(&self, covers: Covers) -> f64 {
        match covers {
            Covers::GpuBoard => self.max_gpu_watts,
            Covers::CpuPackage | Covers::Dram => self.max_cpu_watts,
            Covers::Battery => self.max_battery_watts,
            Covers::Wall | Covers::Platform | Covers::Other => self.max_watts,
        }
    }

    /// The plausible range of `quantity` for a source covering `covers`, with its unit.
    /// Energy counters have no upper bound (they count since some arbitrary origin).
    pub fn range(&self, quantity: Quantity, covers: Covers) -> ((f64, f64), &'static str) {
        match quantity {
            Quantity::Power => ((0.0, self.max_power(covers)), "W"),
            Quantity::Energy => ((0.0, f64::MAX), "J"),
            Quantity::Temperature => (TEMP_C, "°C"),
            Quantity::FanRpm => (FAN_RPM, "RPM"),
            Quantity::FanPercent => (FAN_PERCENT, "%"),
            Quantity::Utilization => (UTILIZATION, "%"),
            Quantity::MemoryUsed | Quantity::MemoryTotal => (MEMORY_BYTES, "bytes"),
            Quantity::Clock => (CLOCK_MHZ, "MHz"),
            Quantity::ThrottleCount => ((0.0, f64::MAX), "events"),
            // Bit flags travel in an f64, exact up to 2^53.
            Quantity::ThrottleReasons => ((0.0, 9_007_199_254_740_992.0), "bits"),
            // Two reads a moment apart can disagree by a thread or two either way.
            Quantity::RunnableThreads => ((-65_536.0, 1e7), "threads"),
        }
    }

    /// `Err(reason)` when `value` cannot be a reading of this kind.
    pub fn check(&self, quantity: Quantity, covers: Covers, value: f64) -> Result<(), String> {
        let ((lo, hi), unit) = self.range(quantity, covers);
        if !value.is_finite() {
            return Err(format!("{value} is not a finite number"));
        }
        let (v, lo_s, hi_s) = (short(value), short(lo), short(hi));
        if value < lo {
            return Err(format!("{v} {unit} is below the plausible {lo_s} {unit}"));
        }
        if value > hi {
            let hint = if quantity == Quantity::Power {
                format!(" (raise [sensors] {} if real)", power_key(covers))
            } else {
                String::new()
            };
            return Err(format!(
                "{v} {unit} is above the plausible {hi_s} {unit}{hint}"
            ));
        }
        Ok(())
    }

    /// Apply the limits to one reading: an implausible value becomes `None` with the reason
    /// in `rejected`; an implausible `limit` (a crit point of 1e9 °C, a NaN wrap point) is
    /// dropped, since it is only context.
    pub fn screen(&self, mut r: Reading) -> Reading {
        if let Some(v) = r.value
            && let Err(why) = self.check(r.quantity, r.covers, v)
        {
            r.value = None;
            r.rejected = Some(why);
        }
        if let Some(l) = r.limit {
            let ok = match r.quantity {
                // A counter's wrap point: any positive finite number.
                Quantity::Energy => l.is_finite() && l > 0.0,
                q => self.check(q, r.covers, l).is_ok(),
            };
            if !ok {
                r.limit = None;
            }
        }
        r
    }
}

/// A number as a person reads it: 1.8e308, not 309 digits.
fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// The config key that sets the ceiling for `covers`.
pub fn power_key(covers: Covers) -> &'static str {
    match covers {
        Covers::GpuBoard => "max_gpu_watts",
        Covers::CpuPackage | Covers::Dram => "max_cpu_watts",
        Covers::Battery => "max_battery_watts",
        Covers::Wall | Covers::Platform | Covers::Other => "max_watts",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{Method, Source};

    fn reading(q: Quantity, covers: Covers, v: f64) -> Reading {
        Reading {
            id: "x:y:z".into(),
            device: "dev".into(),
            label: "lab".into(),
            quantity: q,
            value: Some(v),
            limit: None,
            source: Source::Hwmon,
            covers,
            method: Method::Measured,
            rejected: None,
            via: None,
        }
    }

    #[test]
    fn impossible_values_are_rejected_with_a_reason() {
        let l = Limits::default();
        for (q, c, v, why) in [
            (Quantity::Temperature, Covers::Other, -273.0, "below"),
            (Quantity::Temperature, Covers::Other, 1e9, "above"),
            (Quantity::FanRpm, Covers::Other, -1200.0, "below"),
            (Quantity::Power, Covers::CpuPackage, -50.0, "below"),
            (Quantity::Power, Covers::Wall, f64::MAX, "max_watts"),
            (Quantity::Power, Covers::Battery, 5e14, "max_battery_watts"),
            (Quantity::Power, Covers::GpuBoard, 1e9, "max_gpu_watts"),
            (Quantity::Energy, Covers::CpuPackage, -1.0, "below"),
            (
                Quantity::Energy,
                Covers::CpuPackage,
                f64::INFINITY,
                "finite",
            ),
            (Quantity::Utilization, Covers::Other, 250.0, "above"),
            (Quantity::MemoryUsed, Covers::Other, -1.0, "below"),
            (Quantity::Clock, Covers::Other, 1e7, "above"),
            (Quantity::FanPercent, Covers::Other, f64::NAN, "finite"),
        ] {
            let r = l.screen(reading(q, c, v));
            assert_eq!(r.value, None, "{q:?} {v}");
            let reason = r.rejected.unwrap_or_default();
            assert!(reason.contains(why), "{q:?} {v}: {reason}");
        }
    }

    #[test]
    fn real_values_pass_untouched() {
        let l = Limits::default();
        for (q, c, v) in [
            (Quantity::Temperature, Covers::Other, 95.0),
            (Quantity::Temperature, Covers::Other, -10.0),
            (Quantity::FanRpm, Covers::Other, 0.0),
            (Quantity::FanRpm, Covers::Other, 22_000.0),
            (Quantity::Power, Covers::GpuBoard, 700.0),
            (Quantity::Power, Covers::Wall, 3600.0),
            (Quantity::Power, Covers::Battery, 0.0),
            (Quantity::Energy, Covers::GpuBoard, 9.0e9),
            (Quantity::Clock, Covers::GpuBoard, 10_501.0),
            (Quantity::Utilization, Covers::Other, 100.0),
        ] {
            let r = l.screen(reading(q, c, v));
            assert_eq!((r.value, r.rejected), (Some(v), None), "{q:?} {v}");
        }
    }

    #[test]
    fn the_wall_ceiling_follows_the_config() {
        let big = Limits {
            max_watts: 20_000.0,
            ..Limits::default()
        };
        let r = reading(Quantity::Power, Covers::Wall, 10_200.0);
        assert!(Limits::default().screen(r.clone()).rejected.is_some());
        assert_eq!(big.screen(r).value, Some(10_200.0));
    }

    #[test]
    fn a_silly_limit_is_dropped_not_the_reading() {
        let l = Limits::default();
        let mut r = reading(Quantity::Temperature, Covers::Other, 50.0);
        r.limit = Some(1e9);
        let r = l.screen(r);
        assert_eq!((r.value, r.limit), (Some(50.0), None));
        let mut c = reading(Quantity::Energy, Covers::CpuPackage, 5.0);
        c.limit = Some(262_143.328_85);
        assert_eq!(l.screen(c).limit, Some(262_143.328_85));
    }
}
