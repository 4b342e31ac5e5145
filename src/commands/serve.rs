//! `llmtop serve`: Prometheus metrics of this machine's sensors, without the dashboard, and the
//! run cards this machine wrote.

use crate::accounting::ledger::Ledger;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::export::prometheus::{MetricsServer, MetricsState};
use crate::export::runcards::Shelf;
use crate::sensors::{Meter, Sample};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedReceiver;

/// Serve metrics of `samples`, every energy figure through `ledger`, until the stream ends.
/// The run cards in `cards` (the snapshots dir) are served under `/runcards/`.
pub fn serve(
    args: &ServeArgs,
    mut ledger: Ledger,
    mut samples: UnboundedReceiver<Sample>,
    cards: &Path,
) -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(MetricsState::new(ledger.tariff().cloned())));
    let listen =
        crate::net::server::Listen::parse(&args.metrics_addr, crate::export::server::METRICS_ADDR)?;
    let server = MetricsServer::start_with_cards(&listen, state.clone(), Some(Shelf::new(cards)))?;
    eprintln!(
        "llmtop: serving Prometheus metrics on http://{0}/metrics and run cards on http://{0}/runcards/ (Ctrl-C to stop)",
        server.local_addr()
    );
    while let Some(sample) = samples.blocking_recv() {
        ledger.push(&sample);
        let mut s = match state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        s.apply_sample(&sample);
        s.apply_ledger(&ledger);
    }
    drop(server);
    Ok(())
}

/// The `serve` dispatch: discover this machine's sensors and serve what they read.
pub fn run(args: &ServeArgs, cfg: &Config) -> anyhow::Result<()> {
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let meter = Meter::start(&section);
    let ledger = crate::accounting::ledger_for(&meter, cfg.tariff.clone());
    // The sampler's threads run for the life of the process.
    let (_handle, samples) = meter.into_parts();
    let cards = crate::report::snapshot::default_dir(&cfg.raw.snapshot);
    serve(args, ledger, samples, &cards)
}
