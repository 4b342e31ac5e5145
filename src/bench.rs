//! `llmtop bench`: the video's test, headless. One warm-up, then N runs of a long story prompt
//! on a fresh conversation each, measured by the real engine.

use crate::cli::BenchArgs;
use crate::config::RawConfig;
use crate::energy::{EnergyAccumulator, EnergyReport, IdleBaseline, Window};
use crate::engine::llama::{LlamaEngine, default_threads};
use crate::engine::{
    self, Command, EngineEvent, EngineHandle, EngineSettings, ModelInfo, ReplyStats,
};
use crate::hostinfo::{BuildInfo, HostInfo};
use crate::sensors::sampler::{Sampler, SamplerHandle};
use crate::sensors::{Sample, SourceStatus};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The prompt of the video this project grew from.
pub const STORY_PROMPT: &str =
    "Write a 1000-word story about a lighthouse keeper who finds a message in a bottle.";
/// Enough room for 1000 words (about 1300 tokens for English).
pub const STORY_MAX_TOKENS: u32 = 1500;
/// Bumped whenever a field changes meaning or is removed (adding fields keeps the version).
pub const SCHEMA: &str = "llmtop.bench/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub schema: String,
    /// Seconds since the Unix epoch when the bench started.
    pub started_unix: u64,
    pub host: HostInfo,
    pub build: BuildInfo,
    pub model: ModelInfo,
    pub settings: EngineSettings,
    pub prompt: String,
    pub warmup: bool,
    /// Power and temperature sources found, and why others are missing.
    pub sensors: Vec<SourceStatus>,
    /// Average system power with the model loaded and nothing generating.
    pub idle: Option<IdleBaseline>,
    pub runs: Vec<BenchRun>,
    pub summary: Summary,
}

/// One measured reply: the engine's figures and the energy over its wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    #[serde(flatten)]
    pub stats: ReplyStats,
    pub energy: Option<EnergyReport>,
}

/// Median, min and max of each figure over the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub load_ms: f64,
    pub ttft_ms: Spread,
    pub prefill_tok_s: Spread,
    pub gen_tok_s: Spread,
    pub generated_tokens: Spread,
    pub wall_s: Spread,
    /// Whole-system energy per run (see each run's `energy.total.basis`).
    pub energy_wh: Option<Spread>,
    pub avg_w: Option<Spread>,
    pub peak_w: Option<Spread>,
    pub j_per_token: Option<Spread>,
    pub net_j_per_token: Option<Spread>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

impl Summary {
    pub fn of(load_ms: f64, runs: &[BenchRun]) -> Self {
        let f = |g: fn(&ReplyStats) -> f64| {
            Spread::of(&runs.iter().map(|r| g(&r.stats)).collect::<Vec<_>>())
        };
        // An energy figure is summarised only when every run has it.
        let e = |g: fn(&EnergyReport) -> Option<f64>| {
            let v: Option<Vec<f64>> = runs.iter().map(|r| r.energy.as_ref().and_then(g)).collect();
            v.filter(|v| !v.is_empty()).map(|v| Spread::of(&v))
        };
        Self {
            load_ms,
            ttft_ms: f(|r| r.ttft_ms),
            prefill_tok_s: f(|r| r.prefill_tok_s),
            gen_tok_s: f(|r| r.gen_tok_s),
            generated_tokens: f(|r| f64::from(r.generated_tokens)),
            wall_s: f(|r| r.wall_s),
            energy_wh: e(|r| r.total.as_ref().map(|t| t.wh)),
            avg_w: e(|r| r.total.as_ref().and_then(|t| t.avg_w)),
            peak_w: e(|r| r.total.as_ref().and_then(|t| t.peak_w)),
            j_per_token: e(|r| r.j_per_token),
            net_j_per_token: e(|r| r.net_j_per_token),
        }
    }
}

/// The sampler and everything it has reported, for energy over bench windows.
struct Meter {
    handle: SamplerHandle,
    samples: UnboundedReceiver<Sample>,
    acc: EnergyAccumulator,
    /// Every sample, for the run card's time series.
    kept: Vec<Sample>,
    period: Duration,
}

impl Meter {
    fn start(cfg: &crate::config::SensorsSection) -> (Self, Vec<SourceStatus>) {
        let found = crate::sensors::discover(cfg);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let rate = if cfg.rate_hz > 0.0 { cfg.rate_hz } else { 4.0 };
        let handle = Sampler::spawn(found.sensors, rate, tx);
        let meter = Self {
            handle,
            samples: rx,
            acc: EnergyAccumulator::new(),
            kept: Vec::new(),
            period: Duration::from_secs_f64(1.0 / rate),
        };
        (meter, found.statuses)
    }

    fn now(&self) -> f64 {
        self.handle.now()
    }

    /// Take in samples until one at or after `t` arrived (so `t` is inside the data), or a
    /// few sampling periods passed.
    fn catch_up(&mut self, t: f64) {
        let deadline = std::time::Instant::now() + self.period * 3 + Duration::from_millis(200);
        loop {
            while let Ok(s) = self.samples.try_recv() {
                self.acc.push(&s);
                let done = s.t >= t && !s.readings.is_empty();
                self.kept.push(s);
                if done {
                    return;
                }
            }
            if std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn report(
        &mut self,
        t0: f64,
        t1: f64,
        stats: &ReplyStats,
        idle: Option<&IdleBaseline>,
    ) -> Option<EnergyReport> {
        self.catch_up(t1);
        let r = self.acc.report(&Window {
            t0,
            t1,
            tokens: Some(u64::from(stats.generated_tokens)),
            phase_boundary: Some(t0 + stats.prefill_end_s),
            idle: idle.cloned(),
        });
        r.total.is_some().then_some(r)
    }
}

/// Errors of the bench command: one line each.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--json {0}: directory {1} does not exist (create it first)")]
    JsonDir(String, String),
    #[error("--reps 0: need at least one measured run")]
    NoReps,
    #[error("{0}")]
    Engine(String),
    #[error("the engine stopped unexpectedly")]
    EngineGone,
    #[error("--json {path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Check the output path before spending minutes on runs.
pub fn check_json_path(path: &Path) -> Result<(), BenchError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    if !dir.is_dir() {
        return Err(BenchError::JsonDir(
            path.display().to_string(),
            dir.display().to_string(),
        ));
    }
    Ok(())
}

/// Wait for the model to load; returns its info.
pub fn wait_loaded(handle: &mut EngineHandle) -> Result<ModelInfo, BenchError> {
    loop {
        match handle.events.blocking_recv() {
            Some(EngineEvent::Loaded(info)) => return Ok(info),
            Some(EngineEvent::Failed(e)) => return Err(BenchError::Engine(e)),
            Some(_) => {}
            None => return Err(BenchError::EngineGone),
        }
    }
}

/// Send one prompt on a fresh conversation and wait for the reply; returns text and stats.
pub fn run_once(
    handle: &mut EngineHandle,
    prompt: &str,
) -> Result<(String, ReplyStats), BenchError> {
    handle.send(Command::Reset);
    handle.send(Command::Send(prompt.to_string()));
    let mut text = String::new();
    loop {
        match handle.events.blocking_recv() {
            Some(EngineEvent::Token(t)) => text.push_str(&t),
            Some(EngineEvent::ReplyDone(stats)) => return Ok((text, stats)),
            Some(EngineEvent::Failed(e)) => return Err(BenchError::Engine(e)),
            Some(_) => {}
            None => return Err(BenchError::EngineGone),
        }
    }
}

pub fn run(args: &BenchArgs, cfg: &RawConfig) -> anyhow::Result<()> {
    if args.reps == 0 {
        return Err(BenchError::NoReps.into());
    }
    if let Some(p) = &args.json {
        check_json_path(p)?;
    }
    // A bad tariff fails now, not after minutes of runs.
    let tariff = crate::pricing::Tariff::from_config(&cfg.pricing)?;
    let compare = crate::pricing::Tariff::compare_set(&cfg.pricing, &[])?;
    let mut engine_args = args.engine.clone();
    // The bench is a measurement: repeatable output unless the user asks otherwise.
    engine_args.temperature = engine_args.temperature.or(Some(0.0));
    engine_args.max_tokens = engine_args.max_tokens.or(Some(STORY_MAX_TOKENS));
    let mut settings = crate::models::resolve_settings(&engine_args, cfg)?;
    if settings.threads == 0 {
        settings.threads = default_threads();
    }
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| STORY_PROMPT.to_string());
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "bench: {} ({} threads), {} run(s){}",
        settings.model.display(),
        settings.threads,
        args.reps,
        if args.no_warmup {
            ""
        } else {
            " after a warm-up"
        }
    );
    let sensors_cfg = args
        .sensors
        .apply(&cfg.sensors)
        .map_err(anyhow::Error::msg)?;
    let (mut meter, statuses) = Meter::start(&sensors_cfg);
    let mut handle = engine::spawn(Box::new(LlamaEngine {
        settings: settings.clone(),
    }))?;
    handle.send(Command::Load);
    let model = wait_loaded(&mut handle)?;
    let _ = writeln!(
        err,
        "bench: loaded {} {} in {:.0} ms",
        model.name, model.quantization, model.load_ms
    );
    let idle = if args.no_idle || sensors_cfg.idle_window_s <= 0.0 {
        None
    } else {
        let _ = writeln!(
            err,
            "bench: measuring idle power for {:.0} s (--no-idle skips)",
            sensors_cfg.idle_window_s
        );
        let t0 = meter.now();
        std::thread::sleep(Duration::from_secs_f64(sensors_cfg.idle_window_s));
        let t1 = meter.now();
        meter.catch_up(t1);
        let idle = meter.acc.idle_baseline(t0, t1);
        if let Some(i) = &idle {
            let _ = writeln!(err, "bench: idle {:.1} W ({:?})", i.watts, i.basis);
        }
        idle
    };
    let mut cold_ttft_ms = None;
    if !args.no_warmup {
        let (_, s) = run_once(&mut handle, &prompt)?;
        cold_ttft_ms = Some(s.ttft_ms);
        let _ = writeln!(
            err,
            "bench: warm-up: {} tokens, {:.1} tok/s",
            s.generated_tokens, s.gen_tok_s
        );
    }
    let mut runs = Vec::new();
    let first_t0 = meter.now();
    for i in 1..=args.reps {
        let t0 = meter.now();
        let (_, s) = run_once(&mut handle, &prompt)?;
        let t1 = meter.now();
        let energy = meter.report(t0, t1, &s, idle.as_ref());
        let watts = energy
            .as_ref()
            .and_then(|e| e.total.as_ref())
            .map(|t| format!(", {:.2} Wh", t.wh))
            .unwrap_or_default();
        let _ = writeln!(
            err,
            "bench: run {i}/{}: {} tokens, prefill {:.0} tok/s, generation {:.1} tok/s ({}){watts}",
            args.reps, s.generated_tokens, s.prefill_tok_s, s.gen_tok_s, s.stop
        );
        runs.push(BenchRun { stats: s, energy });
    }
    handle.shutdown();
    let last_t1 = meter.now();
    let tokens: u64 = runs
        .iter()
        .map(|r| u64::from(r.stats.generated_tokens))
        .sum();
    let session = meter.acc.report(&Window {
        t0: first_t0,
        t1: last_t1,
        tokens: Some(tokens),
        phase_boundary: None,
        idle: idle.clone(),
    });
    let series: Vec<_> = meter
        .kept
        .iter()
        .filter(|s| s.t >= first_t0 && s.t <= last_t1)
        .map(|s| crate::runcard::SeriesPoint::from_sample(s, first_t0, None))
        .collect();
    meter.handle.stop();
    let summary = Summary::of(model.load_ms, &runs);
    let result = BenchResult {
        schema: SCHEMA.to_string(),
        started_unix,
        host: HostInfo::detect(crate::sensors::nvml::gpu_names()),
        build: BuildInfo::current(),
        model,
        settings,
        prompt,
        warmup: !args.no_warmup,
        sensors: statuses,
        idle,
        runs,
        summary,
    };
    print!("{}", render_table(&result));
    print!("{}", cost_lines(&result, &tariff, &compare));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&result)?;
        crate::fsutil::write_atomic(path, &json).map_err(|source| BenchError::Write {
            path: path.display().to_string(),
            source,
        })?;
        let _ = writeln!(err, "bench: wrote {}", path.display());
    }
    if args.snapshot {
        let session = session.total.is_some().then_some(&session);
        let mut card = crate::bench_card::card(&result, cold_ttft_ms, session, series)?;
        card.price(&tariff, &compare);
        let dir = crate::snapshot::default_dir(&cfg.snapshot);
        let paths = crate::snapshot::write(&dir, &card, None)?;
        let _ = writeln!(err, "bench: run card {}", paths.json.display());
    }
    Ok(())
}

/// What the median run cost in each region, and per 1000 runs (sub-cent amounts stay readable).
fn cost_lines(
    r: &BenchResult,
    configured: &crate::pricing::Tariff,
    compare: &[crate::pricing::Tariff],
) -> String {
    let Some(wh) = r.summary.energy_wh.map(|s| s.median) else {
        return String::new();
    };
    let joules = wh * 3600.0;
    let mut out = String::new();
    let mut tariffs = vec![configured];
    tariffs.extend(compare.iter().filter(|t| t.label != configured.label));
    for t in tariffs {
        let each = t.cost_flat(joules);
        out.push_str(&format!(
            "cost per run, {:<4} {:>12}   per 1000 runs {:>10}\n",
            t.label,
            t.format(each),
            t.format(each * 1000.0)
        ));
    }
    out
}

/// The human table: one row per figure, median/min/max columns.
pub fn render_table(r: &BenchResult) -> String {
    let mut out = String::new();
    let m = &r.model;
    out.push_str(&format!(
        "{} ({}, {}, {:.0} MB) on {} - {} threads, {} run(s)\n\n",
        m.name,
        m.quantization,
        m.architecture,
        m.file_size as f64 / 1e6,
        r.host.cpu_model,
        r.settings.threads,
        r.runs.len()
    ));
    out.push_str(&format!(
        "{:<22}{:>12}{:>12}{:>12}\n",
        "", "median", "min", "max"
    ));
    let s = &r.summary;
    out.push_str(&format!("{:<22}{:>12.0}\n", "cold load (ms)", s.load_ms));
    let rows: [(&str, &Spread, usize); 5] = [
        ("TTFT (ms)", &s.ttft_ms, 1),
        ("prefill (tok/s)", &s.prefill_tok_s, 1),
        ("generation (tok/s)", &s.gen_tok_s, 1),
        ("tokens generated", &s.generated_tokens, 0),
        ("wall (s)", &s.wall_s, 2),
    ];
    for (name, sp, prec) in rows {
        push_row(&mut out, name, sp, prec);
    }
    let energy_rows: [(&str, &Option<Spread>, usize); 5] = [
        ("energy (Wh)", &s.energy_wh, 4),
        ("average power (W)", &s.avg_w, 1),
        ("peak power (W)", &s.peak_w, 1),
        ("energy/token (J)", &s.j_per_token, 3),
        ("net of idle (J/token)", &s.net_j_per_token, 3),
    ];
    for (name, sp, prec) in energy_rows {
        if let Some(sp) = sp {
            push_row(&mut out, name, sp, prec);
        }
    }
    out.push('\n');
    out.push_str(&power_note(r));
    out
}

fn push_row(out: &mut String, name: &str, sp: &Spread, prec: usize) {
    out.push_str(&format!(
        "{name:<22}{:>12.prec$}{:>12.prec$}{:>12.prec$}\n",
        sp.median, sp.min, sp.max
    ));
}

/// Where the energy figures came from, said plainly (an estimate is never passed off as a
/// measurement).
fn power_note(r: &BenchResult) -> String {
    let total = r
        .runs
        .iter()
        .find_map(|run| run.energy.as_ref().and_then(|e| e.total.as_ref()));
    let Some(t) = total else {
        return "power: no readable power source (see `llmtop sensors`)\n".to_string();
    };
    let basis = match t.basis {
        crate::energy::TotalBasis::Wall => "measured at the wall (smart plug)",
        crate::energy::TotalBasis::Battery => "battery drain",
        crate::energy::TotalBasis::Platform => "RAPL psys (platform, not the wall)",
        crate::energy::TotalBasis::Components => {
            "sum of components (GPU + CPU package + DRAM), not the wall"
        }
    };
    let mut note = format!("power: {basis}: {}", t.sources.join(", "));
    if t.estimated {
        note.push_str(" - ESTIMATED from CPU utilisation x TDP, not measured");
    }
    match &r.idle {
        Some(i) => note.push_str(&format!(
            "; idle baseline {:.1} W over {:.0} s",
            i.watts, i.window_s
        )),
        None => note.push_str("; no idle baseline"),
    }
    note.push('\n');
    note
}

/// Used by tests and the dashboard: wait for an event with a deadline.
pub fn recv_timeout(handle: &mut EngineHandle, timeout: Duration) -> Option<EngineEvent> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match handle.events.try_recv() {
            Ok(ev) => return Some(ev),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return None,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                if std::time::Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        let s = Spread::of(&[f64::NAN, 5.0]);
        assert_eq!((s.median, s.min, s.max), (5.0, 5.0, 5.0));
    }

    #[test]
    fn json_into_missing_directory_is_refused_up_front() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("no/such/dir/out.json");
        let e = check_json_path(&p).expect_err("missing dir");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(check_json_path(&dir.path().join("ok.json")).is_ok());
        assert!(check_json_path(Path::new("relative.json")).is_ok());
    }
}
