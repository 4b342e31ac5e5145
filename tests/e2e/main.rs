//! End to end: the real binary, in a real pseudo-terminal (tmux) where it draws, and its errors and
//! config files.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/mod.rs"]
mod common;
#[path = "../live/mod.rs"]
mod live;
#[path = "../nvml/mod.rs"]
mod nvml_standin;
#[path = "../servers/mod.rs"]
mod servers;
#[path = "../common/skip.rs"]
mod skip;
#[path = "../tmux/mod.rs"]
mod tmux;

mod at_rest;
mod cli_errors;
mod config_files;
mod doctor_cli;
mod e2e_attach;
mod e2e_dashboard;
mod e2e_nvml;
mod e2e_signals;
mod fleet;
mod gpu_build;
mod gpu_cuda_env;
mod gpu_proof;
mod lifecycle;
mod power_cap;
mod share_cli;
mod watch_server;
