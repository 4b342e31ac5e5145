//! Reports and export: run cards, `llmtop compare`, and the Prometheus endpoint scraped over
//! loopback.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/mod.rs"]
mod common;

mod charts;
mod compare;
mod deploy;
mod metrics;
mod remote;
mod runcard;
