//! `llmtop proxy`: price every request to a model server. The proxy forwards; the metering
//! runtime runs the sampler and the ledger, and its subscribers are the proxy's books (records
//! to the log, stdout and Prometheus) and the metrics endpoint. On any terminating signal the
//! listener closes, the streams in flight end, and the drain records every request, with
//! energy where the ledger covered it.

use crate::cli::ProxyArgs;
use crate::config::Config;
use crate::export::feed::MetricsFeed;
use crate::export::prometheus::MetricsServer;
use crate::export::server::METRICS_ADDR;
use crate::metering::{Metering, run_headless};
use crate::net::server::{Limits, Listen, Setting};
use crate::proxy::books::ProxyBooks;
use crate::proxy::feed::ProxyFeed;
use crate::proxy::forward::{ProxyServer, Upstream, parse_listen};
use crate::proxy::record::{DEFAULT_KEEP, FILE_NAME, RequestLog};
use crate::sensors::Meter;
use tokio::sync::mpsc::unbounded_channel;

pub fn run(args: &ProxyArgs, cfg: &Config) -> anyhow::Result<()> {
    // Bad addresses are one line each, before any sensor starts.
    let upstream = Upstream::parse(&args.upstream)?;
    let listen = parse_listen(&args.listen)?;
    let metrics_at = match (&args.metrics_addr, &args.metrics_old_name) {
        (Some(a), _) => Some(Listen::parse(a, METRICS_ADDR)?),
        (None, Some(a)) => Some(Listen::parse(
            a,
            Setting {
                name: "--metrics",
                ..METRICS_ADDR
            },
        )?),
        (None, None) => None,
    };
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let mut log_failed = None;
    let log = if args.no_log {
        None
    } else {
        let path = args
            .log
            .clone()
            .unwrap_or_else(|| crate::util::paths::data_dir().join(FILE_NAME));
        let max = u64::from(args.log_max_mib) * 1024 * 1024;
        // A data dir not writable now is no reason not to forward: the books say so once and
        // keep the records in memory until it is.
        Some(
            RequestLog::open(&path, max, DEFAULT_KEEP).unwrap_or_else(|e| {
                log_failed = Some(e);
                RequestLog::closed(&path, max, DEFAULT_KEEP)
            }),
        )
    };
    let log_path = log.as_ref().map(|l| l.path().display().to_string());
    let meter = Meter::start(&section);
    let mut metering = Metering::for_meter(&meter, cfg.tariff.clone());
    let (tx, events) = unbounded_channel();
    let proxy = ProxyServer::start_with(
        &listen,
        Limits::STREAMING,
        upstream,
        meter.handle.start(),
        tx,
    )?;
    let mut metrics = MetricsFeed::new(metering.ledger().tariff().cloned());
    let server = match &metrics_at {
        Some(l) => Some(MetricsServer::start_with_cards(l, metrics.state(), None)?),
        None => None,
    };
    eprintln!(
        "llmtop: proxying http://{} -> {} (Ctrl-C to stop)",
        proxy.local_addr(),
        proxy.upstream().url()
    );
    if let Some(p) = &log_path {
        eprintln!("llmtop: request records to {p}");
    }
    // Whether the upstream answers, said now if it does not and once when that changes.
    let health = crate::proxy::health::HealthWatch::start(proxy.upstream(), |_, line| {
        eprintln!("llmtop: {line}");
    });
    if let Some(s) = &server {
        eprintln!(
            "llmtop: Prometheus metrics on http://{}/metrics",
            s.local_addr()
        );
    }
    let mut proxy_books = ProxyBooks::new(section.idle_window_s, log);
    if let Some(e) = &log_failed {
        proxy_books.log_failed(e);
    }
    let mut books = ProxyFeed::new(proxy_books, events, Some(metrics.clone()))
        .exit_after(args.exit_after)
        .on_notice(Box::new(|line| eprintln!("llmtop: {line}")));
    if args.print {
        books = books.on_record(Box::new(|r| {
            if let Ok(line) = serde_json::to_string(r) {
                println!("{line}");
            }
        }));
    }
    let (sampler, samples) = meter.into_parts();
    // Stopping the server ends the streams in flight (after its grace period, cut as the proxy
    // stopping); each is reported to the books, which the drain then settles.
    let ended = run_headless(
        &mut metering,
        samples,
        &mut [&mut books, &mut metrics],
        move || drop(proxy),
    );
    drop(server);
    drop(health);
    sampler.stop();
    ended?;
    Ok(())
}
