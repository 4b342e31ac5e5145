//! What the metering runtime hands each sample to, once the ledger has taken it in: the
//! session recorder, the lifetime tally, the server's share, the proxy's books, the metrics
//! endpoint, a watch. The trait sits here, below every layer that implements it; the one fold
//! that calls it, the drain and the flush are `metering`'s.

use crate::accounting::energy::IdleBaseline;
use crate::accounting::ledger::Ledger;
use crate::accounting::share::ServerMeter;
use crate::sensors::Sample;

pub trait Subscriber {
    /// One sample, after `ledger` took it in.
    fn sample(&mut self, s: &Sample, ledger: &Ledger);

    /// Whether it still holds something the ledger may yet cover (a request that just ended,
    /// a watch's last interval): the drain at the end of a run waits, bounded, while any does.
    fn holds(&mut self, _ledger: &Ledger) -> bool {
        false
    }

    /// Whether it has what it came for (a count of requests, a duration): the run ends.
    fn done(&self) -> bool {
        false
    }

    /// The run is over: write out what it holds, without energy where the ledger never
    /// covered it. Err: one line for the user.
    fn flush(&mut self, _ledger: &Ledger) -> Result<(), String> {
        Ok(())
    }
}

/// The attached server's share as a subscriber: a look at its process on every sample, split
/// net of `idle`. The dashboard hands it the session's measured baseline before each sample
/// (so a baseline applies from the sample after the one that completed it); `watch` and
/// `share` have none, and only a channel's own idle figure applies.
pub struct ServerFeed {
    pub meter: ServerMeter,
    pub idle: Option<IdleBaseline>,
}

impl Subscriber for ServerFeed {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        self.meter.on_sample(s.t, ledger, self.idle.as_ref());
    }
}
