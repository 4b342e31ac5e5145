//! Helpers every layer may use: atomic file writes.

pub mod fs;
pub mod json;
pub mod paths;
pub mod sanitize;
