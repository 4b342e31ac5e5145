//! Hostile input, each class with cases of its own: what a broken or malicious file, device,
//! network peer or signal does to the real binary. Every case asserts the exit code, one clear
//! line, no panic text, and that nothing foreign reaches the terminal raw.
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/proc_files.rs"]
mod proc_files;
#[path = "../support/mod.rs"]
mod support;
#[path = "../tmux/mod.rs"]
mod tmux;

mod fuzz;
mod hostile_engine;
mod hostile_files;
mod hostile_values;
