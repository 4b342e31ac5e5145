//! The metrics endpoint's state as a subscriber of the metering runtime: each sample's readings
//! and the ledger's figures after it. Shared with the HTTP server, which renders it per scrape.

use super::prometheus::MetricsState;
use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::accounting::subscriber::Subscriber;
use crate::sensors::Sample;
use std::sync::{Arc, Mutex};

/// A handle on the shared state; clones share it.
#[derive(Clone)]
pub struct MetricsFeed(Arc<Mutex<MetricsState>>);

impl MetricsFeed {
    pub fn new(tariff: Option<Tariff>) -> Self {
        Self(Arc::new(Mutex::new(MetricsState::new(tariff))))
    }

    /// The state, for the server that renders it.
    pub fn state(&self) -> Arc<Mutex<MetricsState>> {
        self.0.clone()
    }

    /// Change the state. A scrape that panicked while rendering poisons nothing that matters
    /// here: the figures are still whole.
    pub fn with<R>(&self, f: impl FnOnce(&mut MetricsState) -> R) -> R {
        match self.0.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Subscriber for MetricsFeed {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        self.with(|m| {
            m.apply_sample(s);
            m.apply_ledger(ledger);
        });
    }
}
