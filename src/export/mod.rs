//! Export: Prometheus exposition, run cards over HTTP, and their HTTP server.

pub mod feed;
pub mod prometheus;
pub mod remote;
pub mod runcards;
pub mod server;
