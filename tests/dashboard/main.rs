//! The dashboard without a terminal: the app fed events, whole screens in ratatui's TestBackend,
//! and the event loop driven by a scripted event source.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/proc_files.rs"]
mod proc_files;
#[path = "../support/mod.rs"]
mod support;

#[path = "../live/mod.rs"]
mod live;

mod app_update;
mod dashboard_loop;
mod fleet_view;
mod roofline;
mod throttle_live;
mod ui_snapshots;
