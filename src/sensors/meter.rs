//! Discovery and the sampler, started in one place for the dashboard, bench and serve.

use super::plausible::Limits;
use super::sampler::{Sampler, SamplerHandle};
use super::settings::SensorsSection;
use super::{Sample, Sensor, Source, SourceState, SourceStatus};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Running sensors: the sampler threads, their samples, and what discovery reported.
pub struct Meter {
    pub handle: SamplerHandle,
    pub samples: UnboundedReceiver<Sample>,
    pub statuses: Vec<SourceStatus>,
    pub rate_hz: f64,
    /// The wall-clock instant of sampler time zero (prices joules by time of day).
    pub wall_origin: jiff::Timestamp,
    /// The plausibility limits the sampler applies; the ledger checks counter steps by them.
    pub limits: Limits,
}

impl Meter {
    /// Every source this machine has, sampled at `section.rate_hz` (plugs at their own rate).
    pub fn start(section: &SensorsSection) -> Self {
        let found = super::discover(section);
        Self::checked(
            found.sensors,
            found.statuses,
            section.rate_hz,
            section.into(),
        )
    }

    /// What a discovery found (tests pick what to look at with `discover_with`).
    pub fn discovered(found: super::Discovery, rate_hz: f64) -> Self {
        Self::with_sensors(found.sensors, found.statuses, rate_hz)
    }

    /// Given sensors (scripted ones in `--demo` and tests).
    pub fn with_sensors(
        sensors: Vec<Box<dyn Sensor>>,
        statuses: Vec<SourceStatus>,
        rate_hz: f64,
    ) -> Self {
        Self::checked(sensors, statuses, rate_hz, Limits::default())
    }

    /// Given sensors, screened by `limits`.
    pub fn checked(
        sensors: Vec<Box<dyn Sensor>>,
        statuses: Vec<SourceStatus>,
        rate_hz: f64,
        limits: Limits,
    ) -> Self {
        let rate_hz = if rate_hz.is_finite() && rate_hz > 0.0 {
            rate_hz
        } else {
            4.0
        };
        let (tx, samples) = unbounded_channel();
        let handle = Sampler::spawn_checked(sensors, rate_hz, limits, tx);
        let since_start = jiff::SignedDuration::try_from(handle.start().elapsed())
            .unwrap_or(jiff::SignedDuration::ZERO);
        let now = jiff::Timestamp::now();
        Self {
            wall_origin: now.checked_sub(since_start).unwrap_or(now),
            handle,
            samples,
            statuses,
            rate_hz,
            limits,
        }
    }

    /// A wall plug answered at discovery: the total should wait for it.
    pub fn has_wall_plug(&self) -> bool {
        self.statuses
            .iter()
            .any(|s| s.source == Source::Plug && s.state == SourceState::Found)
    }

    pub fn into_parts(self) -> (SamplerHandle, UnboundedReceiver<Sample>) {
        (self.handle, self.samples)
    }
}
