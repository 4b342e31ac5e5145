//! The imperative shell of the dashboard: builds the engine, the metering runtime and its
//! subscribers, and the terminal, runs the event loop ([`shell::event_loop`]) on the real
//! terminal, and puts everything back on the way out.
//!
//! Everything that can fail on bad input (config, theme, key bindings, model path) is checked
//! before the terminal is taken over, so errors print as one plain line.

pub mod app;
pub mod card;
pub mod event;
pub mod fleet;
pub mod history;
pub mod layout;
pub mod pace;
pub mod shell;
pub mod state;
pub mod theme;
pub mod ui;

use crate::accounting::lifetime::LifetimeTally;
use crate::accounting::session::SessionRecorder;
use crate::accounting::tally::{self, TallyStore};
use crate::cli::DashboardArgs;
use crate::config::{self, Config, RawConfig};
use crate::dashboard::event::Event;
use crate::dashboard::pace::Pace;
use crate::dashboard::shell::{DashProxy, Shell};
use crate::dashboard::state::{App, EngineState, Message, RequestTable, Role};
use crate::dashboard::theme::Theme;
use crate::engine::{self, Engine, EngineSettings, scripted::ScriptedEngine};
use crate::export::feed::MetricsFeed;
use crate::export::prometheus::MetricsServer;
use crate::metering::Metering;
use crate::proxy::feed::ProxyFeed;
use crate::sensors::scripted::ScriptedSensor;
use crate::sensors::{Meter, Source, SourceState, SourceStatus};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Themes for Ctrl-T, degraded to the terminal's colours (`--color` is already in
/// `cfg.color`), and the index of the chosen one.
fn load_themes(args: &DashboardArgs, cfg: &Config) -> anyhow::Result<(Vec<Theme>, usize)> {
    let depth = theme::detect_depth(cfg.color, |k| std::env::var(k).ok());
    let user_dir = config::config_dir().map(|d| d.join("themes"));
    let wanted = args
        .theme
        .clone()
        .unwrap_or_else(|| cfg.raw.ui.theme.clone());
    let mut names = theme::available(user_dir.as_deref());
    if !names.contains(&wanted) {
        // Surfaces "unknown theme" with the fix, before the terminal is taken over.
        theme::load(&wanted, user_dir.as_deref())?;
        names.push(wanted.clone());
    }
    let themes = names
        .iter()
        .map(|n| theme::load(n, user_dir.as_deref()).map(|t| t.degrade(depth)))
        .collect::<Result<Vec<_>, _>>()?;
    let index = names.iter().position(|n| *n == wanted).unwrap_or(0);
    Ok((themes, index))
}

/// Sensors for the dashboard: the scripted sensor in `--demo`, else every sensor discovery
/// finds (NVML, RAPL, hwmon, battery, plugs, the estimate).
fn start_meter(args: &DashboardArgs, cfg: &RawConfig) -> Meter {
    if args.demo {
        // Every source the dashboard can chart: GPU, CPU package and a wall plug.
        let demo = ScriptedSensor {
            with_wall: true,
            ..ScriptedSensor::default()
        };
        return Meter::with_sensors(vec![Box::new(demo)], Vec::new(), cfg.sensors.rate_hz);
    }
    let mut section = cfg.sensors.clone();
    if let Some(root) = &args.sensors.sysfs_root {
        section.sysfs_root = root.clone();
    }
    Meter::start(&section)
}

/// `--demo`: a scripted RAM figure, so the roofline shows without measuring this machine.
fn demo_memory() -> crate::sensors::bandwidth::Ceilings {
    use crate::sensors::bandwidth::{Bandwidth, BandwidthMethod, Ceilings, Memory};
    Ceilings {
        cpu: Some(Bandwidth {
            memory: Memory::Cpu,
            device: "system RAM".into(),
            read_gb_s: 40.0,
            triad_gb_s: Some(36.0),
            method: BandwidthMethod::Probe,
            detail: "scripted for --demo, not measured".into(),
            others_runnable: None,
        }),
        cpu_missing: None,
        gpus: Vec::new(),
    }
}

/// `--metrics-addr` or `[metrics] addr`: the Prometheus endpoint beside the dashboard.
fn start_metrics(
    args: &DashboardArgs,
    cfg: &Config,
) -> anyhow::Result<Option<(MetricsServer, MetricsFeed)>> {
    use crate::export::server::{METRICS_ADDR, METRICS_ADDR_CONFIG};
    let listen = match (&args.metrics_addr, &cfg.raw.metrics.addr) {
        (Some(a), _) => crate::net::server::Listen::parse(a, METRICS_ADDR)?,
        (None, Some(a)) => crate::net::server::Listen::parse(a, METRICS_ADDR_CONFIG)?,
        (None, None) => return Ok(None),
    };
    let feed = MetricsFeed::new(Some(cfg.tariff.clone()));
    // The run cards Ctrl-S writes are served beside the metrics, as `llmtop serve` does.
    let cards = crate::export::runcards::Shelf::new(&crate::report::snapshot::default_dir(
        &cfg.raw.snapshot,
    ));
    let server = MetricsServer::start_with_cards(&listen, feed.state(), Some(cards))?;
    Ok(Some((server, feed)))
}

/// Tell the user what start-up found wrong, so nothing is lost without a word: a tally moved
/// aside or unusable, and every sensor source not found or unreadable (an unreachable plug
/// included). All of it goes to the log and to the F1 help; the status line names the most
/// pressing at start. The status line is soon taken by "model loaded", so the tally note and
/// unreadable sources also stay in the chat as notices.
pub fn report_startup(app: &mut App, tally_note: Option<String>, statuses: &[SourceStatus]) {
    let mut problems: Vec<&SourceStatus> = statuses.iter().filter(|s| s.is_problem()).collect();
    // Plugs first: the user configured those and expects them to work.
    problems.sort_by_key(|s| s.source != Source::Plug);
    let mut notes = Vec::new();
    if let Some(n) = &tally_note {
        tracing::warn!("{n}");
        notes.push(n.clone());
        app.messages.push(Message::new(Role::Notice, n.clone()));
    }
    for s in &problems {
        let line = format!("sensor: {}", s.line());
        tracing::warn!("{line}");
        if s.state == SourceState::Unreadable {
            app.messages.push(Message::new(Role::Notice, line.clone()));
        }
        notes.push(line);
    }
    app.startup_notes = notes;
    let status = match (&tally_note, problems.as_slice()) {
        (Some(n), _) => n.clone(),
        (None, []) => return,
        (None, [one]) => format!("sensor: {} (F1 lists it)", one.line()),
        (None, [first, ..]) => format!(
            "{} sensor sources not available (F1 lists them): {}",
            problems.len(),
            first.line()
        ),
    };
    app.update(Event::Status(status));
}

/// `--proxy`: no model runs in-process; the engine only waits to be stopped.
struct NoEngine;

impl Engine for NoEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<engine::Command>,
        _events: tokio::sync::mpsc::UnboundedSender<engine::EngineEvent>,
    ) {
        while let Some(c) = commands.blocking_recv() {
            if matches!(c, engine::Command::Shutdown) {
                return;
            }
        }
    }
}

/// `--proxy`: the proxy on its own thread, its records to requests.jsonl in the data dir (and
/// to the metrics endpoint, when there is one).
fn start_proxy(
    args: &DashboardArgs,
    cfg: &Config,
    upstream: crate::proxy::forward::Upstream,
    clock: Instant,
    data_dir: &Path,
    metrics: Option<MetricsFeed>,
) -> anyhow::Result<DashProxy> {
    use crate::proxy::record::{DEFAULT_KEEP, DEFAULT_MAX_BYTES, FILE_NAME, RequestLog};
    // A data dir not writable now is said on the status line at the first record; the
    // records wait in memory until it is.
    let path = data_dir.join(FILE_NAME);
    let (log, failed) = match RequestLog::open(&path, DEFAULT_MAX_BYTES, DEFAULT_KEEP) {
        Ok(l) => (l, None),
        Err(e) => (
            RequestLog::closed(&path, DEFAULT_MAX_BYTES, DEFAULT_KEEP),
            Some(e),
        ),
    };
    let (tx, events) = unbounded_channel();
    let server = crate::proxy::forward::ProxyServer::start(&args.listen, upstream, clock, tx)?;
    let mut books = crate::proxy::books::ProxyBooks::new(cfg.raw.sensors.idle_window_s, Some(log));
    if let Some(e) = &failed {
        books.log_failed(e);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let watch = crate::proxy::health::HealthWatch::start(server.upstream(), move |h, line| {
        let _ = tx.send((h, line));
    });
    Ok(DashProxy {
        feed: ProxyFeed::new(books, events, metrics).keeping_records(),
        server: Some(server),
        health: Some((watch, rx)),
    })
}

/// Run the dashboard until the user quits.
pub fn run(args: &DashboardArgs, cfg: &Config) -> anyhow::Result<()> {
    if !args.remote.is_empty() {
        return fleet::run(args, cfg);
    }
    // Everything that can fail on bad input, before the terminal is touched (the config was
    // checked when it was loaded).
    let (themes, theme_index) = load_themes(args, cfg)?;
    // `--attach URL` (or `[backend] attach`): a server does the inference.
    let attach = if args.demo || args.proxy {
        None
    } else {
        crate::config::engine::resolve_attach(
            &args.engine,
            args.attach.attach.as_deref(),
            args.attach.kind.as_deref(),
            &cfg.raw,
        )?
    };
    let mut settings = if args.proxy {
        // No model runs in-process: the server behind the proxy runs it.
        EngineSettings::with_model(PathBuf::from("proxy"))
    } else if args.demo {
        EngineSettings::with_model(PathBuf::from("demo.gguf"))
    } else if let Some((s, _)) = &attach {
        s.clone()
    } else {
        crate::config::engine::resolve_settings(&args.engine, &cfg.raw)?
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pace = Pace::new(
        cfg.raw.ui.generating_fps,
        engine::effective::threads(settings.threads),
        cpus,
    );
    settings.stream_every = pace.generating;
    let metrics = start_metrics(args, cfg)?;
    // A server on this machine: its process's share of the energy beside the machine's total.
    let server = attach
        .as_ref()
        .map(|(_, a)| crate::accounting::share::ServerMeter::for_url(&a.url));
    // `--proxy`: bad addresses are one line, before the terminal is taken over.
    let upstream = if args.proxy {
        crate::proxy::forward::parse_listen(&args.listen)?;
        Some(crate::proxy::forward::Upstream::parse(&args.upstream)?)
    } else {
        None
    };
    let attach_label = attach.as_ref().map(|(_, a)| {
        let what = a.model.clone().unwrap_or_else(|| "attaching".into());
        (what, format!("server {}", a.url))
    });
    let engine: Box<dyn Engine> = if upstream.is_some() {
        Box::new(NoEngine)
    } else if args.demo {
        Box::new(ScriptedEngine::default())
    } else if let Some((_, a)) = attach {
        Box::new(engine::remote::engine::AttachEngine {
            attach: a,
            settings: settings.clone(),
        })
    } else {
        Box::new(engine::llama::LlamaEngine {
            settings: settings.clone(),
        })
    };
    let data_dir = config::data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log = crate::util::paths::log_file();
    // A tally that cannot be read is reported in the status line; the dashboard still runs.
    let (mut tally, tally_note) =
        match TallyStore::open(&tally::default_path(), jiff::Timestamp::now()) {
            Ok((t, warning)) => (Some(t), warning),
            Err(e) => (None, Some(e.to_string())),
        };

    let runtime =
        crate::util::runtime::current_thread().context("cannot start the async runtime")?;
    // The memory's bandwidth, before the model loads (the probe would slow the load and the
    // load the probe); measured once per boot, read back after that.
    let memory = if args.demo {
        demo_memory()
    } else if args.proxy {
        Default::default()
    } else {
        crate::sensors::bandwidth::ceilings(&data_dir)
    };
    let handle = engine::spawn(engine).context("cannot start the engine thread")?;
    handle.send(engine::Command::Load);
    let meter = start_meter(args, &cfg.raw);
    let statuses = meter.statuses.clone();
    let metering = Metering::for_meter(&meter, cfg.tariff.clone());
    let proxy = match upstream {
        Some(up) => Some(start_proxy(
            args,
            cfg,
            up,
            meter.handle.start(),
            &data_dir,
            metrics.as_ref().map(|(_, feed)| feed.clone()),
        )?),
        None => None,
    };
    let (sampler, samples) = meter.into_parts();

    let model_label = match &attach_label {
        Some((what, _)) => what.clone(),
        None => settings
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    // The header shows threads and GPU layers once the engine reports them.
    let mut app = App::new(
        cfg.keys.clone(),
        themes.iter().map(|t| t.name.clone()).collect(),
        theme_index,
        model_label,
    );
    if let Some((_, device)) = attach_label {
        app.device = device;
    }
    app.memory = memory;
    report_startup(&mut app, tally_note, &statuses);
    let server = match server {
        Some(Ok(m)) => {
            tracing::info!(
                "attached server runs here: pid {} ({})",
                m.pid(),
                crate::util::sanitize::terminal(&m.name)
            );
            Some(crate::accounting::subscriber::ServerFeed {
                meter: m,
                idle: None,
            })
        }
        Some(Err(e)) => {
            // Not fatal: the machine's total is still right; only the split is missing.
            let line = format!("server share: {e}");
            tracing::info!("{line}");
            app.startup_notes.push(line);
            None
        }
        None => None,
    };
    if let Some(p) = &proxy
        && let Some(server) = &p.server
    {
        app.requests = Some(RequestTable {
            listen: server.local_addr().to_string(),
            upstream: server.upstream().url(),
            ..RequestTable::default()
        });
        app.model_label = format!("proxy → {}", server.upstream().url());
        app.engine = EngineState::Idle;
    }

    let mut shell = Shell {
        handle,
        metering,
        session: SessionRecorder::new(cfg.raw.sensors.idle_window_s),
        tally: tally.as_mut().map(LifetimeTally::new),
        metrics: metrics.as_ref().map(|(_, feed)| feed.clone()),
        cfg: &cfg.raw,
        tariff: &cfg.tariff,
        compare: &cfg.compare,
        pace,
        server,
        proxy,
    };
    // The engine's events come through the event source; the shell keeps its command side.
    let engine_events = std::mem::replace(&mut shell.handle.events, unbounded_channel().1);
    // One clock for events and samples: reply spans line up with the sensor readings.
    let start = sampler.start();
    let result = runtime.block_on(crate::term::screen::in_terminal(&log, async |terminal| {
        let mut events = event::source(start, cfg.raw.ui.refresh_hz, engine_events, samples);
        if let Err(e) = events.listen_for_signals() {
            app.update(Event::Status(format!("cannot catch SIGTERM/SIGHUP: {e}")));
        }
        shell::event_loop(terminal, &mut events, &mut app, &themes, &mut shell).await
    }));
    crate::term::guard::restore();
    // Stops the engine (frees the model) once the terminal is back.
    drop(shell);
    sampler.stop();
    drop(metrics);
    result.map(|_| ())
}
