//! `llmtop watch --server URL`: a passive watch of a running llama-server. Its `/metrics`
//! counters (all clients' tokens) are read every interval beside the sampler and the ledger;
//! each interval and the whole watch get tokens, the machine's energy and J/token, and the
//! server process's attributed share when it runs on this machine.

use crate::accounting::ledger::Ledger;
use crate::accounting::server_watch::{ServerWatch, WatchInterval};
use crate::accounting::share::{ServerMeter, ServerShare, is_local};
use crate::cli::WatchArgs;
use crate::config::Config;
use crate::sensors::Meter;
use crate::sensors::llama_metrics::{LlamaMetrics, MetricsError};
use crate::util::sanitize;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

/// A read of /metrics gives up after this long (the server is on the LAN or this machine).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a server that is still loading its model.
const LOAD_WAIT: Duration = Duration::from_secs(120);
/// At the end, how long to wait for the ledger to settle the last interval.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

pub const ATTRIBUTION_NOTE: &str = "J/token is the whole machine's energy over all of the server's clients' tokens (an attribution, not a per-request measurement); a request's tokens count when the server counts them (its prompt once evaluated, its reply once finished)";

pub fn run(args: &WatchArgs, cfg: &Config) -> anyhow::Result<()> {
    if !(args.interval >= 0.2 && args.interval <= 3600.0) {
        anyhow::bail!(
            "--interval {}: must be between 0.2 and 3600 seconds",
            args.interval
        );
    }
    if let Some(d) = args.duration.filter(|d| *d <= 0.0) {
        anyhow::bail!(
            "--duration {d}: must be more than 0 seconds (leave it out to watch until Ctrl-C)"
        );
    }
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let metrics = LlamaMetrics::new(&args.server, READ_TIMEOUT)?;
    wait_until_ready(&metrics)?;
    let host = crate::util::url::parse(&args.server)
        .map(|t| t.host)
        .unwrap_or_default();
    let meter = Meter::start(&section);
    let mut ledger = crate::accounting::ledger_for(&meter, cfg.tariff.clone());
    let start = meter.handle.start();
    let (handle, mut samples) = meter.into_parts();
    let (mut server, share_note) = if is_local(&host) {
        match ServerMeter::for_url(&args.server) {
            Ok(m) => {
                let note = format!(
                    "server process {} ({}) on this machine: its share is shown as an attribution",
                    m.pid(),
                    sanitize::terminal(&m.name)
                );
                (Some(m), note)
            }
            Err(e) => (None, format!("server's share: n/a ({e})")),
        }
    } else {
        (
            None,
            "server's share: n/a (the server is not on this machine)".to_string(),
        )
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let head = json!({
            "watch": metrics.url(),
            "interval_s": args.interval,
            "server_pid": server.as_ref().map(|m| m.pid()),
            "note": ATTRIBUTION_NOTE,
        });
        writeln!(out, "{head}")?;
    } else {
        writeln!(
            out,
            "llmtop watch: {} every {} s; machine energy from this machine's sensors",
            sanitize::terminal(metrics.url()),
            args.interval
        )?;
        writeln!(out, "llmtop watch: {share_note}")?;
        writeln!(out, "llmtop watch: {ATTRIBUTION_NOTE}")?;
    }
    out.flush()?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut watch = ServerWatch::new();
    let now_t = || start.elapsed().as_secs_f64();
    let deadline = args
        .duration
        .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d));
    let mut last_error: Option<MetricsError> = None;
    let result: anyhow::Result<()> = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = until_deadline => break,
                s = samples.recv() => {
                    let Some(s) = s else { break };
                    ledger.push(&s);
                    if let Some(m) = server.as_mut() {
                        m.on_sample(s.t, &ledger, None);
                    }
                }
                _ = tick.tick() => {
                    poll(&metrics, &mut watch, now_t(), &mut last_error);
                }
            }
            let tracker = server.as_ref().map(|m| m.tracker());
            for i in watch.ready(&ledger, tracker, false) {
                print_interval(&mut out, args.json, &ledger, &i, server.as_ref())?;
            }
        }
        // The last read, then let the ledger settle it.
        let t_end = now_t();
        poll(&metrics, &mut watch, t_end, &mut last_error);
        let give_up = Instant::now() + SETTLE_WAIT;
        while ledger.settled_until().is_none_or(|s| s < t_end) && Instant::now() < give_up {
            match tokio::time::timeout(Duration::from_millis(200), samples.recv()).await {
                Ok(Some(s)) => {
                    ledger.push(&s);
                    if let Some(m) = server.as_mut() {
                        m.on_sample(s.t, &ledger, None);
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        Ok(())
    });
    handle.stop();
    result?;
    let tracker = server.as_ref().map(|m| m.tracker());
    for i in watch.ready(&ledger, tracker, true) {
        print_interval(&mut out, args.json, &ledger, &i, server.as_ref())?;
    }
    match watch.summary(&ledger, tracker) {
        Some(total) => print_total(
            &mut out,
            args.json,
            &total,
            server.as_ref().map(|m| m.tracker().share()),
        )?,
        None => writeln!(
            out,
            "llmtop watch: stopped before a whole interval was read"
        )?,
    }
    out.flush()?;
    Ok(())
}

/// The first read: a server that is down, without --metrics or not llama-server is one line
/// and an exit; one still loading its model is waited for.
fn wait_until_ready(metrics: &LlamaMetrics) -> Result<(), MetricsError> {
    let give_up = Instant::now() + LOAD_WAIT;
    let mut said = false;
    loop {
        match metrics.read() {
            Ok(_) => return Ok(()),
            Err(e) if e.is_loading() && Instant::now() < give_up => {
                if !said {
                    eprintln!(
                        "llmtop watch: {}: the server is loading its model; waiting",
                        e.url()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Read the counters at sampler time `t`; a failure is one line on stderr when it starts and
/// one when the server answers again.
fn poll(
    metrics: &LlamaMetrics,
    watch: &mut ServerWatch,
    t: f64,
    last_error: &mut Option<MetricsError>,
) {
    match metrics.read() {
        Ok(c) => {
            if last_error.take().is_some() {
                eprintln!(
                    "llmtop watch: {} answers again",
                    sanitize::terminal(metrics.url())
                );
            }
            watch.read(t, c);
        }
        Err(e) => {
            if last_error.as_ref() != Some(&e) {
                eprintln!("llmtop watch: {}", sanitize::terminal(&e.to_string()));
            }
            *last_error = Some(e);
        }
    }
}

fn clock(ledger: &Ledger, t: f64) -> String {
    ledger
        .wall_at(t)
        .map(|ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| format!("t+{t:.1}s"))
}

fn per_token(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |j| format!("{j:.3}"))
}

/// The text of one interval (or the total): tokens, the machine's joules and J/token.
pub fn render(i: &WatchInterval) -> String {
    let mut s = format!(
        "+{} prompt +{} generated tokens",
        i.tokens.prompt_tokens, i.tokens.generated_tokens
    );
    if let Some(n) = i.requests_processing.filter(|n| *n > 0.0) {
        s.push_str(&format!(" ({n:.0} in progress)"));
    }
    if i.restarted {
        s.push_str(" (server restarted)");
    }
    match (i.energy_j, &i.basis) {
        (Some(j), Some(b)) => {
            let est = if i.estimated { ", estimated" } else { "" };
            s.push_str(&format!(
                "; machine {j:.1} J ({b}{est}): {} J/generated token, {} J/token",
                per_token(i.j_per_generated_token),
                per_token(i.j_per_token)
            ));
        }
        _ => s.push_str("; machine energy n/a (no power source reporting)"),
    }
    if let Some(j) = i.server_j {
        s.push_str(&format!(
            "; server {j:.1} J attributed ({} J/generated token)",
            per_token(i.server_j_per_generated_token)
        ));
    }
    s
}

fn print_interval(
    out: &mut impl Write,
    json: bool,
    ledger: &Ledger,
    i: &WatchInterval,
    server: Option<&ServerMeter>,
) -> std::io::Result<()> {
    if json {
        let mut v = serde_json::to_value(i).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("total".into(), false.into());
            o.insert(
                "time".into(),
                ledger
                    .wall_at(i.t1)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
                    .into(),
            );
            o.insert("server_pid".into(), server.map(|m| m.pid()).into());
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}  {}", clock(ledger, i.t1), render(i))?;
    }
    out.flush()
}

fn print_total(
    out: &mut impl Write,
    json: bool,
    total: &WatchInterval,
    share: Option<ServerShare>,
) -> std::io::Result<()> {
    if json {
        let mut v = serde_json::to_value(total).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("total".into(), true.into());
            o.insert(
                "server".into(),
                share.map_or(serde_json::Value::Null, |s| {
                    json!({
                        "pid": s.pid,
                        "joules": s.joules,
                        "cpu_share": s.cpu_share,
                        "gpu_share": s.gpu_share,
                        "vram_bytes": s.vram_bytes,
                        "covers": s.covers,
                        "method": s.method,
                    })
                }),
            );
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "total over {:.1} s: {}",
            total.t1 - total.t0,
            render(total)
        )?;
        if let Some(s) = share {
            writeln!(
                out,
                "server process {}: {:.1} J attributed since the watch began; covers {}; {}",
                s.pid,
                s.joules,
                sanitize::terminal(&s.covers),
                s.method
            )?;
        }
    }
    out.flush()
}
