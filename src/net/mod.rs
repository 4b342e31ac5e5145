//! The network layer: the one HTTP server (exporter and proxy), the one HTTP client with one
//! error vocabulary (plugs, attach, scraping other hosts, llama-server's /metrics), and the one
//! reader of the Prometheus text format. Everything above speaks HTTP through here.
//!
//! A layer of its own (between `util` and `sensors`/`engine`) rather than part of `util`: the
//! lowest modules that need HTTP are sensors (plugs) and engine (attach), and `util` stays
//! free of hyper, tokio and TLS.

pub mod client;
pub mod exposition;
pub mod server;
