//! Doctor's one look at the machine: discovery, then the sampler for a few seconds, every
//! sample stamped with when it arrived and folded into the ledger by the metering runtime's
//! fold (doctor has no subscribers: it reads the ledger afterwards). Nothing here judges.

use crate::accounting::energy::TotalBasis;
use crate::accounting::ledger::Ledger;
use crate::metering::Metering;
use crate::sensors::bandwidth::Ceilings;
use crate::sensors::plug::{PlugSensor, timeout_for};
use crate::sensors::settings::SensorsSection;
use crate::sensors::sysfs::Sysfs;
use crate::sensors::{Meter, Sample, SourceStatus};
use std::time::{Duration, Instant};

/// A sample and when it reached doctor, on the sampler's clock: for a plug (its own thread,
/// stamped before the request) the difference is how long the plug took to answer.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub sample: Sample,
    pub received: f64,
}

/// A configured plug as doctor knows it without asking it anything.
#[derive(Debug, Clone)]
pub struct PlugPlan {
    /// The prefix of its reading ids: `plug:HOST`.
    pub name: String,
    pub request_url: String,
    pub rate_hz: f64,
    pub timeout_s: f64,
}

/// Everything doctor saw.
pub struct Observed {
    pub sysfs: Sysfs,
    pub statuses: Vec<SourceStatus>,
    pub rate_hz: f64,
    pub plugs: Vec<PlugPlan>,
    pub arrivals: Vec<Arrival>,
    pub ledger: Ledger,
    /// The memory bandwidth, measured before the sensors started.
    pub memory: Ceilings,
    /// Sampler seconds covered: from the first sample to the last.
    pub span: (f64, f64),
}

/// The probe, discovery and the readings end within this many seconds of doctor starting;
/// the rest of the 10 s is the process's start and the report.
pub const BUDGET_S: f64 = 9.0;

/// Seconds of readings: `requested`, less what the probe and discovery took past the budget
/// (the probe measures anew while other programs keep the CPUs busy: 1-4 s on a loaded
/// 2-CPU VM), never under a second.
pub fn readings_s(requested: f64, spent: f64) -> f64 {
    requested.min(BUDGET_S - spent).max(1.0)
}

/// Measure the memory bandwidth, discover, then sample for `seconds` (or what the budget
/// leaves of them).
pub fn observe(section: &SensorsSection, seconds: f64) -> Observed {
    let started = Instant::now();
    // Before the sensors start: the probe keeps every CPU busy.
    let memory = crate::commands::sensors::memory_of(section);
    let meter = Meter::start(section);
    let plugs = section
        .plugs
        .iter()
        .filter_map(|p| {
            let s = PlugSensor::new(p).ok()?;
            Some(PlugPlan {
                name: crate::sensors::Sensor::name(&s),
                request_url: s.request_url().to_string(),
                rate_hz: p.rate_hz,
                timeout_s: timeout_for(p.rate_hz).as_secs_f64(),
            })
        })
        .collect();
    // No tariff: doctor prices nothing.
    let mut metering = Metering::new(
        Ledger::new()
            .plausible(meter.limits)
            .expecting(meter.has_wall_plug().then_some(TotalBasis::Wall)),
    );
    let (rate_hz, statuses) = (meter.rate_hz, meter.statuses.clone());
    let (handle, mut rx) = meter.into_parts();
    let seconds = readings_s(seconds, started.elapsed().as_secs_f64());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut arrivals = Vec::new();
    if let Ok(rt) = crate::util::runtime::current_thread() {
        rt.block_on(async {
            while let Ok(Some(sample)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                let received = handle.now();
                metering.fold(&sample, &mut []);
                arrivals.push(Arrival { sample, received });
            }
        });
    }
    handle.stop();
    let first = arrivals.iter().map(|a| a.sample.t).reduce(f64::min);
    let last = arrivals.iter().map(|a| a.sample.t).reduce(f64::max);
    Observed {
        sysfs: Sysfs::new(&section.sysfs_root),
        statuses,
        rate_hz,
        plugs,
        arrivals,
        ledger: metering.ledger().clone(),
        memory,
        span: (first.unwrap_or(0.0), last.unwrap_or(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readings_give_way_to_a_slow_probe_down_to_a_second() {
        assert_eq!(readings_s(5.0, 1.2), 5.0);
        assert!((readings_s(7.0, 3.5) - 5.5).abs() < 1e-12);
        assert!((readings_s(5.0, 4.5) - 4.5).abs() < 1e-12);
        assert_eq!(readings_s(5.0, 8.6), 1.0);
        assert_eq!(readings_s(2.0, 0.1), 2.0);
    }
}
