//! `llmtop proxy`: price every request to a model server. The proxy forwards; this loop runs
//! the sampler and the ledger, folds the proxy's events into records, writes them and
//! serves them to Prometheus.

use crate::accounting::ledger::Ledger;
use crate::cli::ProxyArgs;
use crate::config::Config;
use crate::export::prometheus::{MetricsServer, MetricsState};
use crate::export::server::METRICS_ADDR;
use crate::net::server::{Limits, Listen, Setting};
use crate::proxy::books::{ProxyBooks, metrics};
use crate::proxy::forward::{ProxyServer, Upstream, parse_listen};
use crate::proxy::record::{DEFAULT_KEEP, FILE_NAME, RequestLog, RequestRecord};
use crate::proxy::tap::ProxyEvent;
use crate::sensors::{Meter, Sample};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// After Ctrl-C, how long to wait for the ledger to cover requests that just ended.
const DRAIN_S: f64 = 3.0;

pub fn run(args: &ProxyArgs, cfg: &Config) -> anyhow::Result<()> {
    // Bad addresses are one line each, before any sensor starts.
    let upstream = Upstream::parse(&args.upstream)?;
    let listen = parse_listen(&args.listen)?;
    let metrics = match (&args.metrics_addr, &args.metrics_old_name) {
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
    let log = if args.no_log {
        None
    } else {
        let path = args
            .log
            .clone()
            .unwrap_or_else(|| crate::util::paths::data_dir().join(FILE_NAME));
        Some(RequestLog::open(
            &path,
            u64::from(args.log_max_mib) * 1024 * 1024,
            DEFAULT_KEEP,
        )?)
    };
    let log_path = log.as_ref().map(|l| l.path().display().to_string());
    let meter = Meter::start(&section);
    let ledger = crate::accounting::ledger_for(&meter, cfg.tariff.clone());
    let (tx, events) = unbounded_channel();
    let proxy = ProxyServer::start_with(
        &listen,
        Limits::STREAMING,
        upstream,
        meter.handle.start(),
        tx,
    )?;
    let state = Arc::new(Mutex::new(MetricsState::new(ledger.tariff().cloned())));
    let server = match &metrics {
        Some(l) => Some(MetricsServer::start_with_cards(l, state.clone(), None)?),
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
    if let Some(s) = &server {
        eprintln!(
            "llmtop: Prometheus metrics on http://{}/metrics",
            s.local_addr()
        );
    }
    let books = ProxyBooks::new(section.idle_window_s, log);
    let (_handle, samples) = meter.into_parts();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(fold(
        Loop {
            ledger,
            books,
            state,
            print: args.print,
            exit_after: args.exit_after,
            recorded: 0,
        },
        samples,
        events,
    ));
    drop(proxy);
    drop(server);
    out
}

struct Loop {
    ledger: Ledger,
    books: ProxyBooks,
    state: Arc<Mutex<MetricsState>>,
    print: bool,
    exit_after: Option<u32>,
    recorded: u32,
}

impl Loop {
    fn sample(&mut self, s: &Sample) {
        self.ledger.push(s);
        {
            let mut st = match self.state.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            st.apply_sample(s);
            st.apply_ledger(&self.ledger);
        }
        let records = self.books.settle(&self.ledger, s.t);
        self.emit(&records);
    }

    fn emit(&mut self, records: &[RequestRecord]) {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for r in records {
            st.record_request(&metrics(r));
            if self.print
                && let Ok(line) = serde_json::to_string(r)
            {
                println!("{line}");
            }
            self.recorded += 1;
        }
    }

    fn done(&self) -> bool {
        self.exit_after.is_some_and(|n| self.recorded >= n)
    }
}

async fn fold(
    mut l: Loop,
    mut samples: UnboundedReceiver<Sample>,
    mut events: UnboundedReceiver<ProxyEvent>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            s = samples.recv() => match s {
                Some(s) => l.sample(&s),
                None => break,
            },
            e = events.recv() => match e {
                Some(e) => l.books.event(e),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
        if l.done() {
            break;
        }
    }
    // Give the ledger a moment to cover requests that just ended, then write the rest
    // without energy.
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(DRAIN_S);
    while l.books.pending() > 0 && !l.done() {
        tokio::select! {
            s = samples.recv() => match s {
                Some(s) => l.sample(&s),
                None => break,
            },
            e = events.recv() => match e {
                Some(e) => l.books.event(e),
                None => break,
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    let rest = l.books.flush(&l.ledger);
    l.emit(&rest);
    if let Some(e) = &l.books.log_error {
        anyhow::bail!("{e}");
    }
    Ok(())
}
