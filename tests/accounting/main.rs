//! Accounting: the energy ledger (unit cases and a live synthetic machine), prices, the lifetime
//! tally and the dashboard session's books.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../live/mod.rs"]
mod live;
#[path = "../common/proc_files.rs"]
mod proc_files;
#[path = "../common/skip.rs"]
mod skip;
#[path = "../support/mod.rs"]
mod support;

mod attribution;
mod energy;
mod error_bars;
mod ledger_live;
mod metering;
mod net_of_idle;
mod pricing;
mod remainder_live;
mod session;
mod share;
mod tally;
