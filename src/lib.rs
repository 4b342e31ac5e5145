//! llmtop: what a local LLM answer really costs, live.
//!
//! Data flows one way: sensors and the engine produce events, the app folds them into state,
//! the UI draws state. See HOUSE_STYLE in the project docs and README.md.

pub mod app;
pub mod bench;
pub mod bench_card;
pub mod cli;
pub mod compare;
pub mod config;
pub mod dashboard;
pub mod energy;
pub mod engine;
pub mod event;
pub mod fsutil;
pub mod gguf;
pub mod hostinfo;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod models;
pub mod models_cmd;
pub mod pricing;
pub mod runcard;
pub mod sensors;
pub mod sensors_cmd;
pub mod session;
pub mod session_card;
pub mod snapshot;
pub mod tally;
pub mod theme;
pub mod tui;
pub mod ui;
