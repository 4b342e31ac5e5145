//! llmtop: what a local LLM answer really costs, live.
//!
//! The folders are the layers, and dependencies run one way (checked by tests/architecture.rs):
//!
//! ```text
//! util ─▶ net ─▶ sensors ─┐
//!                engine ──┴─▶ accounting ─▶ metering ─▶ report ─▶ export ─▶ proxy ─▶ cli ─┐
//!  ┌─────────────────────────────────────────────────────────────────────────────────────────┘
//!  └─▶ config ─▶ logging ─▶ term ─┬─▶ dashboard
//!                                 └─▶ commands
//! ```
//!
//! `metering` is the runtime every mode runs (meter → ledger → subscribers, the drain, the
//! signal policy); `term` the terminal every screen runs on (its guard, its events, the loop).
//! A layer uses only the layers left of it; nothing imports `dashboard` or `commands`, and no
//! two modules use each other. Each section of the config file is defined by the layer that
//! uses it; `config` gathers them, validates the file once and resolves the settings.

pub mod accounting;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod export;
pub mod logging;
pub mod metering;
pub mod net;
pub mod proxy;
pub mod report;
pub mod sensors;
pub mod term;
pub mod util;
