//! Export: Prometheus exposition, run cards over HTTP, their routes on the HTTP server, and
//! the scraping of other llmtop hosts.

pub mod feed;
pub mod prometheus;
pub mod runcards;
pub mod scrape;
pub mod server;
