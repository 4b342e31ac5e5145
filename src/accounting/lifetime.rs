//! The lifetime tally as a subscriber of the metering runtime: what the ledger settles goes
//! into the store sample by sample, finished replies as the engine reports them, and the store
//! is written every few seconds and when the run ends.

use crate::accounting::ledger::{Ledger, Totals};
use crate::accounting::subscriber::Subscriber;
use crate::accounting::tally::{Tally, TallyDelta, TallyStore};
use crate::sensors::Sample;

/// What the ledger settled since the last call: the tally's share of its energy, money and
/// CO2, counted once.
#[derive(Debug, Default)]
pub struct Settled {
    tallied: Totals,
}

impl Settled {
    pub fn take(&mut self, ledger: &Ledger) -> TallyDelta {
        let now = ledger.totals();
        let j = now.energy_j - self.tallied.energy_j;
        if j <= 0.0 {
            return TallyDelta::default();
        }
        let mut delta = TallyDelta {
            energy_j: j,
            co2_g: now.co2_g - self.tallied.co2_g,
            ..TallyDelta::default()
        };
        if let Some(t) = ledger.tariff() {
            delta
                .cost
                .insert(t.currency.code().to_string(), now.cost - self.tallied.cost);
        }
        self.tallied = now;
        delta
    }
}

/// The store, fed by the ledger.
pub struct LifetimeTally<'a> {
    store: &'a mut TallyStore,
    settled: Settled,
    /// The last write that failed, for the status line (taken once).
    warning: Option<String>,
}

impl<'a> LifetimeTally<'a> {
    pub fn new(store: &'a mut TallyStore) -> Self {
        Self {
            store,
            settled: Settled::default(),
            warning: None,
        }
    }

    /// A finished reply's tokens and count.
    pub fn add(&mut self, d: &TallyDelta) {
        self.store.add(d);
    }

    pub fn tally(&self) -> &Tally {
        self.store.tally()
    }

    /// Why the last write failed, once.
    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }
}

impl Subscriber for LifetimeTally<'_> {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        let d = self.settled.take(ledger);
        self.store.add(&d);
        if let Err(e) = self.store.tick(s.t, jiff::Timestamp::now()) {
            self.warning = Some(e.to_string());
        }
    }

    fn flush(&mut self, ledger: &Ledger) -> Result<(), String> {
        let d = self.settled.take(ledger);
        self.store.add(&d);
        self.store
            .flush(jiff::Timestamp::now())
            .map_err(|e| e.to_string())
    }
}
