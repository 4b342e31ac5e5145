//! The imperative shell of the dashboard: builds the engine, the sample feed and the terminal,
//! runs the event loop, carries out the app's effects, and puts everything back on the way out.
//!
//! Everything that can fail on bad input (config, theme, key bindings, model path) is checked
//! before the terminal is taken over, so errors print as one plain line.

use crate::app::{App, Effect};
use crate::cli::{ColorMode, DashboardArgs};
use crate::config::{self, RawConfig};
use crate::engine::{self, Engine, EngineHandle, EngineSettings, scripted::ScriptedEngine};
use crate::event::{Event, EventSource, Wake};
use crate::keys::KeyMap;
use crate::sensors::sampler::{Sampler, SamplerHandle};
use crate::sensors::scripted::ScriptedSensor;
use crate::sensors::{Sample, Sensor};
use crate::theme::{self, Theme};
use crate::tui::Tui;
use anyhow::{Context, anyhow};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Tokens arrive faster than a terminal over SSH should be repainted: one frame per 16 ms at most.
const MIN_FRAME: Duration = Duration::from_millis(16);
/// Events folded into one frame at most, so keys stay responsive during a token burst.
const MAX_BATCH: usize = 512;

fn device_text(s: &EngineSettings) -> String {
    let threads = if s.threads == 0 {
        sysinfo::System::physical_core_count().unwrap_or(1) as u32
    } else {
        s.threads
    };
    if s.gpu_layers > 0 {
        format!("GPU {} layers · CPU {threads} thr", s.gpu_layers)
    } else {
        format!("CPU {threads} threads")
    }
}

/// Themes for Ctrl-T, degraded to the terminal's colours, and the index of the chosen one.
fn load_themes(args: &DashboardArgs, cfg: &RawConfig) -> anyhow::Result<(Vec<Theme>, usize)> {
    let mode = match args.color {
        Some(m) => m,
        None => match cfg.ui.color.as_str() {
            "always" => ColorMode::Always,
            "never" => ColorMode::Never,
            _ => ColorMode::Auto,
        },
    };
    let depth = theme::detect_depth(mode, |k| std::env::var(k).ok());
    let user_dir = config::config_dir().map(|d| d.join("themes"));
    let wanted = args.theme.clone().unwrap_or_else(|| cfg.ui.theme.clone());
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

/// Sensor samples for the dashboard: the scripted sensor in `--demo`, else every sensor
/// discovery finds (NVML, RAPL, hwmon, battery, plugs, the estimate).
fn spawn_samples(
    args: &DashboardArgs,
    cfg: &RawConfig,
) -> (SamplerHandle, UnboundedReceiver<Sample>) {
    let (tx, rx) = unbounded_channel();
    let sensors: Vec<Box<dyn Sensor>> = if args.demo {
        vec![Box::new(ScriptedSensor::default())]
    } else {
        let mut section = cfg.sensors.clone();
        if let Some(root) = &args.sensors.sysfs_root {
            section.sysfs_root = root.clone();
        }
        crate::sensors::discover(&section).sensors
    };
    (Sampler::spawn(sensors, cfg.sensors.rate_hz, tx), rx)
}

/// The run card JSON: model, settings, last reply, session energy, host, transcript.
// lead: replace with the snapshot module (run card + Markdown + SVG of `ui::render_buffer`).
pub fn write_snapshot(
    app: &App,
    settings: &EngineSettings,
    cfg: &RawConfig,
    unix_secs: u64,
) -> anyhow::Result<PathBuf> {
    let dir = cfg
        .snapshot
        .dir
        .clone()
        .unwrap_or_else(|| config::data_dir().join("snapshots"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let transcript: Vec<serde_json::Value> = if cfg.snapshot.transcript {
        app.messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "role": match m.role {
                        crate::app::Role::User => "user",
                        crate::app::Role::Assistant => "assistant",
                        crate::app::Role::Notice => "notice",
                    },
                    "text": m.text,
                    "stats": m.stats,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let card = serde_json::json!({
        "kind": "llmtop-run-card",
        "version": 1,
        "created_unix": unix_secs,
        "model": app.model,
        "settings": settings,
        "last_reply": app.last_stats,
        "session_energy_wh": app.energy.wh,
        "session_energy_estimated": app.energy.estimated,
        "host": crate::hostinfo::HostInfo::detect(Vec::new()),
        "build": crate::hostinfo::BuildInfo::current(),
        "transcript": transcript,
    });
    let stem = app
        .model
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_else(|| "model".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let path = dir.join(format!("llmtop-{unix_secs}-{stem}.json"));
    let bytes = serde_json::to_vec_pretty(&card)?;
    crate::fsutil::write_atomic(&path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Run the dashboard until the user quits.
pub fn run(args: &DashboardArgs, cfg: RawConfig) -> anyhow::Result<()> {
    // Everything that can fail on bad input, before the terminal is touched.
    let keys = KeyMap::from_config(&cfg.keys).map_err(|(k, e)| anyhow!("config: keys.{k}: {e}"))?;
    let (themes, theme_index) = load_themes(args, &cfg)?;
    let settings = if args.demo {
        EngineSettings::with_model(PathBuf::from("demo.gguf"))
    } else {
        crate::models::resolve_settings(&args.engine, &cfg)?
    };
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    let start = Instant::now();
    let handle = engine::spawn(engine).context("cannot start the engine thread")?;
    handle.send(engine::Command::Load);
    let (sampler, samples) = spawn_samples(args, &cfg);

    let model_label = settings
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut app = App::new(
        keys,
        themes.iter().map(|t| t.name.clone()).collect(),
        theme_index,
        model_label,
    );
    app.device = device_text(&settings);

    let result = runtime.block_on(event_loop(
        start, &mut app, &themes, handle, samples, &settings, &cfg, &log,
    ));
    crate::tui::restore();
    sampler.stop();
    result
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    start: Instant,
    app: &mut App,
    themes: &[Theme],
    mut handle: EngineHandle,
    samples: UnboundedReceiver<Sample>,
    settings: &EngineSettings,
    cfg: &RawConfig,
    log: &Path,
) -> anyhow::Result<()> {
    let mut tui = Tui::enter().context("cannot set up the terminal")?;
    // From here on nothing may reach the screen but frames.
    let _ = crate::tui::redirect_stderr(log);
    let size = tui.terminal.size()?;
    app.update(Event::Resize {
        width: size.width,
        height: size.height,
    });
    let fallback = Theme::dark();
    let theme_of = |app: &App| themes.get(app.theme).unwrap_or(&fallback);
    tui.draw(|f| crate::ui::draw(app, theme_of(app), f))?;
    app.dirty = false;
    let mut last_frame = tokio::time::Instant::now();
    let mut frame_due: Option<tokio::time::Instant> = None;

    // The engine's events come through the event source; keep its command side here.
    let events_rx = std::mem::replace(&mut handle.events, unbounded_channel().1);
    let mut events = EventSource::new(start, cfg.ui.refresh_hz, events_rx, samples);
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
        for ev in batch {
            for effect in app.update(ev) {
                match effect {
                    Effect::Engine(cmd) => handle.send(cmd),
                    Effect::Quit => quit = true,
                    Effect::Snapshot => {
                        let unix = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0);
                        let r = write_snapshot(app, settings, cfg, unix)
                            .map(|p| p.display().to_string())
                            .map_err(|e| format!("{e:#}"));
                        app.update(Event::SnapshotWritten(r));
                    }
                }
            }
        }
        if quit {
            break;
        }
        if app.dirty {
            let now = tokio::time::Instant::now();
            if now >= last_frame + MIN_FRAME {
                tui.draw(|f| crate::ui::draw(app, theme_of(app), f))?;
                app.dirty = false;
                last_frame = now;
                frame_due = None;
            } else if frame_due.is_none() {
                frame_due = Some(last_frame + MIN_FRAME);
            }
        }
    }
    drop(tui);
    crate::tui::restore();
    handle.shutdown();
    Ok(())
}
