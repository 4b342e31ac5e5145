//! Helpers every layer may use: capped file reads, atomic writes, paths, sanitising.

pub mod fs;
pub mod json;
pub mod paths;
pub mod runtime;
pub mod sanitize;
pub mod signals;
pub mod url;
