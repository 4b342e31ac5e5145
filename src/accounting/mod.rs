//! Accounting: the only place that turns readings into energy, and energy into money.

pub mod at_rest;
pub mod attribution;
pub mod contention;
pub mod energy;
pub mod ledger;
pub mod lifetime;
pub mod pricing;
pub mod remainder;
pub mod roofline;
pub mod server_watch;
pub mod session;
pub mod share;
pub mod subscriber;
pub mod tally;
pub mod throttle;
pub mod uncertainty;

use crate::accounting::energy::TotalBasis;
use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::sensors::Meter;

/// The ledger for a running meter: priced from the meter's clock, and waiting at start for a
/// wall plug that discovery found.
pub fn ledger_for(meter: &Meter, tariff: Tariff) -> Ledger {
    Ledger::new()
        .plausible(meter.limits)
        .priced(tariff, meter.wall_origin)
        .expecting(meter.has_wall_plug().then_some(TotalBasis::Wall))
}
