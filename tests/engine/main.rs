//! The real llama.cpp engine on the real default model, in-process and through `llmtop bench`.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/mod.rs"]
mod common;
#[path = "../live/mod.rs"]
mod live;
#[path = "../servers/mod.rs"]
mod servers;

mod attach;
mod bench_cli;
mod engine;
