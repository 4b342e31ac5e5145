//! The imperative shell of the dashboard: builds the engine, the sample feed and the terminal,
//! runs the event loop, carries out the app's effects, and puts everything back on the way out.
//!
//! Everything that can fail on bad input (config, theme, key bindings, model path) is checked
//! before the terminal is taken over, so errors print as one plain line.

pub mod app;
pub mod card;
pub mod event;
pub mod layout;
pub mod state;
pub mod theme;
pub mod tui;
pub mod ui;

use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::accounting::tally::{self, TallyStore};
use crate::cli::DashboardArgs;
use crate::config::{self, Config, RawConfig};
use crate::dashboard::card::CardContext;
use crate::dashboard::event::{Event, EventSource, Wake};
use crate::dashboard::state::{App, Effect};
use crate::dashboard::theme::Theme;
use crate::dashboard::tui::Tui;
use crate::engine::{
    self, Engine, EngineEvent, EngineHandle, EngineSettings, scripted::ScriptedEngine,
};
use crate::export::prometheus::{MetricsServer, MetricsState};
use crate::sensors::host::HostInfo;
use crate::sensors::scripted::ScriptedSensor;
use crate::sensors::{Meter, Sample};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Tokens arrive faster than a terminal over SSH should be repainted: one frame per 16 ms at most.
const MIN_FRAME: Duration = Duration::from_millis(16);
/// Events folded into one frame at most, so keys stay responsive during a token burst.
const MAX_BATCH: usize = 512;

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
        return Meter::with_sensors(
            vec![Box::new(ScriptedSensor::default())],
            Vec::new(),
            cfg.sensors.rate_hz,
        );
    }
    let mut section = cfg.sensors.clone();
    if let Some(root) = &args.sensors.sysfs_root {
        section.sysfs_root = root.clone();
    }
    Meter::start(&section)
}

/// What the event loop owns besides the app: the engine's command side, the session's
/// accounting, the lifetime tally, the metrics endpoint and what snapshots need.
struct Shell<'a> {
    handle: EngineHandle,
    session: SessionRecorder,
    tally: Option<&'a mut TallyStore>,
    metrics: Option<Arc<Mutex<MetricsState>>>,
    cfg: &'a RawConfig,
    tariff: &'a Tariff,
    compare: &'a [Tariff],
}

fn with_metrics(m: &Option<Arc<Mutex<MetricsState>>>, f: impl FnOnce(&mut MetricsState)) {
    if let Some(m) = m {
        match m.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Shell<'_> {
    /// Account for an event before the app sees it. Returns whether the footer's figures
    /// may have changed.
    fn observe(&mut self, app: &mut App, ev: &Event) -> bool {
        let wall = jiff::Timestamp::now();
        match ev {
            Event::Sample(s) => {
                let live = app.live_tok_s();
                let delta = self.session.push_sample(s, live);
                if let Some(t) = self.tally.as_deref_mut() {
                    t.add(&delta);
                }
                let ledger = self.session.ledger();
                app.update(Event::Power(ledger.power_view()));
                with_metrics(&self.metrics, |m| {
                    m.apply_sample(s);
                    m.apply_ledger(ledger);
                    // Between replies the rate stays that of the last one.
                    if let Some(r) = live {
                        m.set_tok_s(r);
                    }
                });
                true
            }
            Event::Tick { now } => {
                if let Some(t) = self.tally.as_deref_mut()
                    && let Err(e) = t.tick(*now, wall)
                {
                    app.update(Event::Status(e.to_string()));
                }
                false
            }
            Event::Engine { event, now } => {
                if let EngineEvent::Loaded(info) = event {
                    // The settings in effect, as the engine reported them.
                    with_metrics(&self.metrics, |m| m.set_engine(info));
                }
                let Some(delta) = self.session.observe(event, *now) else {
                    return false;
                };
                if let Some(t) = self.tally.as_deref_mut() {
                    t.add(&delta);
                }
                if let EngineEvent::ReplyDone(stats) = event {
                    with_metrics(&self.metrics, |m| {
                        m.record_reply(u64::from(stats.generated_tokens), stats.gen_tok_s);
                    });
                }
                true
            }
            _ => false,
        }
    }

    fn footer(&self) -> Event {
        let (energy, cost) = self
            .session
            .footer(self.tally.as_deref().map(TallyStore::tally));
        Event::Footer { energy, cost }
    }

    /// Ctrl-S: the run card, its Markdown and the screen as SVG. Ok: the JSON path.
    fn snapshot(&self, app: &App, theme: &Theme) -> Result<String, String> {
        let ctx = CardContext {
            host: HostInfo::detect(crate::sensors::nvml::gpu_names()),
            tariff: self.tariff,
            compare: self.compare,
            snapshot: &self.cfg.snapshot,
            now: jiff::Timestamp::now(),
        };
        let screen = crate::dashboard::ui::render_buffer(app, theme, app.width, app.height);
        let dir = crate::report::snapshot::default_dir(&self.cfg.snapshot);
        card::write(&dir, app, &self.session, ctx, &screen)
            .map(|p| p.json.display().to_string())
            .map_err(|e| e.to_string())
    }
}

/// `--metrics-addr` or `[metrics] addr`: the Prometheus endpoint beside the dashboard.
fn start_metrics(
    args: &DashboardArgs,
    cfg: &Config,
) -> anyhow::Result<Option<(MetricsServer, Arc<Mutex<MetricsState>>)>> {
    let Some(addr) = args.metrics_addr.as_ref().or(cfg.raw.metrics.addr.as_ref()) else {
        return Ok(None);
    };
    let state = Arc::new(Mutex::new(MetricsState::new(Some(cfg.tariff.clone()))));
    let server = MetricsServer::start(addr, state.clone())?;
    Ok(Some((server, state)))
}

/// Run the dashboard until the user quits.
pub fn run(args: &DashboardArgs, cfg: &Config) -> anyhow::Result<()> {
    // Everything that can fail on bad input, before the terminal is touched (the config was
    // checked when it was loaded).
    let (themes, theme_index) = load_themes(args, cfg)?;
    let settings = if args.demo {
        EngineSettings::with_model(PathBuf::from("demo.gguf"))
    } else {
        crate::config::engine::resolve_settings(&args.engine, &cfg.raw)?
    };
    let metrics = start_metrics(args, cfg)?;
    let engine: Box<dyn Engine> = if args.demo {
        Box::new(ScriptedEngine::default())
    } else {
        Box::new(engine::llama::LlamaEngine {
            settings: settings.clone(),
        })
    };
    let data_dir = config::data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log = data_dir.join("llmtop.log");
    // A tally that cannot be read is reported in the status line; the dashboard still runs.
    let (mut tally, tally_note) =
        match TallyStore::open(&tally::default_path(), jiff::Timestamp::now()) {
            Ok((t, warning)) => (Some(t), warning),
            Err(e) => (None, Some(e.to_string())),
        };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()
        .context("cannot start the async runtime")?;
    let handle = engine::spawn(engine).context("cannot start the engine thread")?;
    handle.send(engine::Command::Load);
    let meter = start_meter(args, &cfg.raw);
    let ledger = crate::accounting::ledger_for(&meter, cfg.tariff.clone());
    let (sampler, samples) = meter.into_parts();

    let model_label = settings
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The header shows threads and GPU layers once the engine reports them.
    let mut app = App::new(
        cfg.keys.clone(),
        themes.iter().map(|t| t.name.clone()).collect(),
        theme_index,
        model_label,
    );
    if let Some(note) = tally_note {
        app.update(Event::Status(note));
    }

    let shell = Shell {
        handle,
        session: SessionRecorder::new(ledger, cfg.raw.sensors.idle_window_s),
        tally: tally.as_mut(),
        metrics: metrics.as_ref().map(|(_, state)| state.clone()),
        cfg: &cfg.raw,
        tariff: &cfg.tariff,
        compare: &cfg.compare,
    };
    // One clock for events and samples: reply spans line up with the sensor readings.
    let result = runtime.block_on(event_loop(
        sampler.start(),
        &mut app,
        &themes,
        shell,
        samples,
        &log,
    ));
    crate::dashboard::tui::restore();
    sampler.stop();
    drop(metrics);
    // Whatever ended the loop (quit, signal, lost terminal, error), keep the energy counted.
    let flushed = match tally.as_mut() {
        Some(t) => t.flush(jiff::Timestamp::now()).map_err(anyhow::Error::from),
        None => Ok(()),
    };
    result.and(flushed)
}

async fn event_loop(
    start: Instant,
    app: &mut App,
    themes: &[Theme],
    mut shell: Shell<'_>,
    samples: UnboundedReceiver<Sample>,
    log: &Path,
) -> anyhow::Result<()> {
    let mut tui = Tui::enter().context("cannot set up the terminal")?;
    // From here on nothing may reach the screen but frames.
    let _ = crate::dashboard::tui::redirect_stderr(log);
    let size = tui.terminal.size()?;
    app.update(Event::Resize {
        width: size.width,
        height: size.height,
    });
    let fallback = Theme::dark();
    let theme_of = |app: &App| themes.get(app.theme).unwrap_or(&fallback);
    tui.draw(|f| crate::dashboard::ui::draw(app, theme_of(app), f))?;
    app.dirty = false;
    let mut last_frame = tokio::time::Instant::now();
    let mut frame_due: Option<tokio::time::Instant> = None;

    // The engine's events come through the event source; keep its command side here.
    let events_rx = std::mem::replace(&mut shell.handle.events, unbounded_channel().1);
    let mut events = EventSource::new(start, shell.cfg.ui.refresh_hz, events_rx, samples);
    if let Err(e) = events.listen_for_signals() {
        app.update(Event::Status(format!("cannot catch SIGTERM/SIGHUP: {e}")));
    }
    let mut quit = false;
    while !quit {
        let mut batch = Vec::new();
        match events.next(frame_due).await {
            Wake::Event(ev) => batch.push(ev),
            Wake::Frame => frame_due = None,
            Wake::InputClosed => break,
        }
        while batch.len() < MAX_BATCH {
            match events.try_next_queued() {
                Some(ev) => batch.push(ev),
                None => break,
            }
        }
        let mut figures_changed = false;
        for ev in batch {
            figures_changed |= shell.observe(app, &ev);
            for effect in app.update(ev) {
                match effect {
                    Effect::Engine(cmd) => shell.handle.send(cmd),
                    Effect::Quit => quit = true,
                    Effect::Snapshot => {
                        let r = shell.snapshot(app, theme_of(app));
                        app.update(Event::SnapshotWritten(r));
                    }
                }
            }
        }
        if figures_changed {
            app.update(shell.footer());
        }
        if quit {
            break;
        }
        if app.dirty {
            let now = tokio::time::Instant::now();
            if now >= last_frame + MIN_FRAME {
                tui.draw(|f| crate::dashboard::ui::draw(app, theme_of(app), f))?;
                app.dirty = false;
                last_frame = now;
                frame_due = None;
            } else if frame_due.is_none() {
                frame_due = Some(last_frame + MIN_FRAME);
            }
        }
    }
    drop(tui);
    crate::dashboard::tui::restore();
    shell.handle.shutdown();
    Ok(())
}
