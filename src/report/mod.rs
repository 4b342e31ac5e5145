//! Reports: the bench result, run cards and their Markdown/SVG, and comparisons across machines.

pub mod bench;
pub mod bench_card;
pub mod chart;
pub mod compare;
pub mod power_cap;
pub mod runcard;
pub mod runcard_rest;
pub mod snapshot;
pub mod sweep;
