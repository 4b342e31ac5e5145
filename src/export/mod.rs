//! Export: Prometheus exposition and its HTTP server.

pub mod prometheus;
pub mod server;
