//! llmtop: what a local LLM answer really costs, live.
//!
//! The folders are the layers, and dependencies run one way (checked by tests/architecture.rs):
//!
//! ```text
//! util ─▶ net ─▶ sensors ─┐
//!                engine ──┴─▶ accounting ─▶ report ─▶ export ─▶ proxy ─▶ cli ─▶ config ─┬─▶ dashboard
//!                                                                                       └─▶ commands
//! ```
//!
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
pub mod net;
pub mod proxy;
pub mod report;
pub mod sensors;
pub mod util;
