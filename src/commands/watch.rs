//! `llmtop watch --server URL`: a passive watch of a running llama-server. Its `/metrics`
//! counters (all clients' tokens) are read every interval by a thread of their own; the
//! metering runtime folds the samples into the ledger and hands them to the watch (and the
//! server process's share, when it runs on this machine), which prints each interval once the
//! ledger covers it: tokens, the machine's energy and J/token. At the end (a terminating
//! signal or `--duration`) the counters are read a last time and the drain lets the ledger
//! cover that last interval before the totals.

use crate::accounting::ledger::Ledger;
use crate::accounting::server_watch::{ServerWatch, WatchInterval};
use crate::accounting::share::{ServerMeter, ServerShare, is_local};
use crate::accounting::subscriber::Subscriber;
use crate::cli::WatchArgs;
use crate::config::Config;
use crate::metering::{Deadline, Metering, run_headless};
use crate::sensors::llama_metrics::{LlamaCounters, LlamaMetrics, MetricsError};
use crate::sensors::{Meter, Sample};
use crate::util::sanitize;
use serde_json::json;
use std::io::Write;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A read of /metrics gives up after this long (the server is on the LAN or this machine).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a server that is still loading its model.
const LOAD_WAIT: Duration = Duration::from_secs(120);

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
    let mut metering = Metering::for_meter(&meter, cfg.tariff.clone());
    let start = meter.handle.start();
    let (server, share_note) = if is_local(&host) {
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
    let mut out = std::io::stdout();
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

    let url = metrics.url().to_string();
    let (poller, reads) = Poller::start(metrics, start, args.interval)?;
    let mut watch = WatchScreen {
        watch: ServerWatch::new(),
        server,
        reads,
        url,
        json: args.json,
        last_error: None,
        newest: None,
        poller_gone: false,
        write_error: None,
    };
    let mut deadline = Deadline::at(
        args.duration
            .map_or(f64::INFINITY, |d| meter.handle.now() + d),
    );
    let (sampler, samples) = meter.into_parts();
    // The last read is taken when the run ends; the drain then waits for the ledger to cover
    // it before the totals are printed.
    let ended = run_headless(
        &mut metering,
        samples,
        &mut [&mut watch, &mut deadline],
        move || poller.finish(),
    );
    sampler.stop();
    ended?;
    Ok(())
}

/// Reads the counters every interval on a thread of its own, so a slow server never holds up
/// the samples; each read is stamped with the sampler clock when it began.
struct Poller {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

type Read = (f64, Result<LlamaCounters, MetricsError>);

impl Poller {
    fn start(
        metrics: LlamaMetrics,
        clock: Instant,
        interval: f64,
    ) -> std::io::Result<(Self, mpsc::Receiver<Read>)> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (tx, reads) = mpsc::channel();
        let period = Duration::from_secs_f64(interval);
        let thread = std::thread::Builder::new()
            .name("llmtop-watch".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    let t = clock.elapsed().as_secs_f64();
                    if tx.send((t, metrics.read())).is_err() {
                        return;
                    }
                    next += period;
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // Asked to stop: one last read, then end.
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            let t = clock.elapsed().as_secs_f64();
                            let _ = tx.send((t, metrics.read()));
                            return;
                        }
                    }
                }
            })?;
        Ok((Self { stop, thread }, reads))
    }

    /// The last read, then the thread's end.
    fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// The watch's subscriber and screen: reads in, intervals out as the ledger covers them.
struct WatchScreen {
    watch: ServerWatch,
    server: Option<ServerMeter>,
    reads: mpsc::Receiver<Read>,
    url: String,
    json: bool,
    last_error: Option<MetricsError>,
    /// The time of the newest read (answered or not).
    newest: Option<f64>,
    /// The poller has ended: its last read is in.
    poller_gone: bool,
    write_error: Option<std::io::Error>,
}

impl WatchScreen {
    /// Take in the reads so far.
    fn pull(&mut self) {
        loop {
            match self.reads.try_recv() {
                Ok((t, read)) => {
                    self.newest = Some(t);
                    self.take(t, read);
                }
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.poller_gone = true;
                    return;
                }
            }
        }
    }

    /// A failure is one line on stderr when it starts and one when the server answers again.
    fn take(&mut self, t: f64, read: Result<LlamaCounters, MetricsError>) {
        match read {
            Ok(c) => {
                if self.last_error.take().is_some() {
                    eprintln!(
                        "llmtop watch: {} answers again",
                        sanitize::terminal(&self.url)
                    );
                }
                self.watch.read(t, c);
            }
            Err(e) => {
                if self.last_error.as_ref() != Some(&e) {
                    eprintln!("llmtop watch: {}", sanitize::terminal(&e.to_string()));
                }
                self.last_error = Some(e);
            }
        }
    }

    fn print(&mut self, ledger: &Ledger, flush: bool) {
        let tracker = self.server.as_ref().map(|m| m.tracker());
        let ready = self.watch.ready(ledger, tracker, flush);
        let mut out = std::io::stdout().lock();
        for i in ready {
            let r = print_interval(&mut out, self.json, ledger, &i, self.server.as_ref());
            if let Err(e) = r {
                self.write_error.get_or_insert(e);
            }
        }
    }
}
impl Subscriber for WatchScreen {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        // No idle window here: only a channel's own idle figure applies.
        if let Some(m) = self.server.as_mut() {
            m.on_sample(s.t, ledger, None);
        }
        self.pull();
        self.print(ledger, false);
    }

    /// After the last read: until the ledger covers it.
    fn holds(&mut self, ledger: &Ledger) -> bool {
        self.pull();
        self.poller_gone
            && self
                .newest
                .is_some_and(|t| ledger.settled_until().is_none_or(|s| s < t))
    }

    /// Stdout is gone (a closed pipe): nothing more can be shown.
    fn done(&self) -> bool {
        self.write_error.is_some()
    }

    /// The intervals left, with what there is, then the totals.
    fn flush(&mut self, ledger: &Ledger) -> Result<(), String> {
        self.pull();
        self.print(ledger, true);
        let tracker = self.server.as_ref().map(|m| m.tracker());
        let mut out = std::io::stdout().lock();
        let written = match self.watch.summary(ledger, tracker) {
            Some(total) => print_total(
                &mut out,
                self.json,
                &total,
                self.server.as_ref().map(|m| m.tracker().share()),
            ),
            None => writeln!(
                out,
                "llmtop watch: stopped before a whole interval was read"
            )
            .and_then(|()| out.flush()),
        };
        match self.write_error.take().map_or(written, Err) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("cannot write to stdout: {e}")),
        }
    }
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
