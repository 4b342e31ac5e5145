//! Helpers every layer may use: capped file reads, atomic writes, paths, sanitising, thread
//! priority.

pub mod fs;
pub mod json;
pub mod paths;
pub mod priority;
pub mod sanitize;
