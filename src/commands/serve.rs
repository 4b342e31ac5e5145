//! `llmtop serve`: Prometheus metrics of this machine's sensors, without the dashboard, and the
//! run cards this machine wrote. The metering runtime's one subscriber is the metrics state;
//! every terminating signal stops it the same way.

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::export::feed::MetricsFeed;
use crate::export::prometheus::MetricsServer;
use crate::export::runcards::Shelf;
use crate::metering::{Metering, run_headless};
use crate::sensors::Meter;

/// The `serve` dispatch: discover this machine's sensors and serve what they read until a
/// terminating signal.
pub fn run(args: &ServeArgs, cfg: &Config) -> anyhow::Result<()> {
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let meter = Meter::start(&section);
    let mut metering = Metering::for_meter(&meter, cfg.tariff.clone());
    let mut metrics = MetricsFeed::new(metering.ledger().tariff().cloned());
    let cards = crate::report::snapshot::default_dir(&cfg.raw.snapshot);
    let listen =
        crate::net::server::Listen::parse(&args.metrics_addr, crate::export::server::METRICS_ADDR)?;
    let server =
        MetricsServer::start_with_cards(&listen, metrics.state(), Some(Shelf::new(&cards)))?;
    eprintln!(
        "llmtop: serving Prometheus metrics on http://{0}/metrics and run cards on http://{0}/runcards/ (Ctrl-C to stop)",
        server.local_addr()
    );
    let (sampler, samples) = meter.into_parts();
    let ended = run_headless(&mut metering, samples, &mut [&mut metrics], || {});
    drop(server);
    sampler.stop();
    ended?;
    Ok(())
}
