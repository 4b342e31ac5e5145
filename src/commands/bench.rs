//! `llmtop bench`: the video's test, headless. One warm-up, then N runs of a long story prompt
//! on a fresh conversation each, measured by the real engine.

use crate::accounting::energy::Window;
use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::cli::BenchArgs;
use crate::config::Config;
use crate::engine::EngineSettings;
use crate::engine::llama::LlamaEngine;
use crate::engine::{self, Command, EngineEvent, EngineHandle, ModelInfo, ReplyStats};
use crate::metering::Metering;
use crate::report::bench::*;
use crate::report::runcard::{CardSettings, CardSpans, CardThrottle, SeriesPoint};
use crate::report::sweep::{
    SweepKey, SweepPoint, SweepResult, SweepValue, combinations, parse_axes, setting_label,
};
use crate::sensors::host::{BuildInfo, HostInfo};
use crate::sensors::sampler::SamplerHandle;
use crate::sensors::{Meter, Sample, SourceStatus};
use crate::util::sanitize;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The sensors and the session's accounting: every joule of a run comes from the metering
/// runtime's ledger, whose one subscriber here is the session.
struct Books {
    sampler: SamplerHandle,
    samples: UnboundedReceiver<Sample>,
    metering: Metering,
    session: SessionRecorder,
    period: Duration,
}

impl Books {
    fn start(cfg: &crate::config::SensorsSection, tariff: &Tariff) -> (Self, Vec<SourceStatus>) {
        let meter = Meter::start(cfg);
        let metering = Metering::for_meter(&meter, tariff.clone());
        let period = Duration::from_secs_f64(1.0 / meter.rate_hz);
        let statuses = meter.statuses.clone();
        let (sampler, samples) = meter.into_parts();
        let books = Self {
            sampler,
            samples,
            metering,
            session: SessionRecorder::new(cfg.idle_window_s),
            period,
        };
        (books, statuses)
    }

    fn ledger(&self) -> &Ledger {
        self.metering.ledger()
    }

    fn now(&self) -> f64 {
        self.sampler.now()
    }

    /// Take in samples until the ledger has settled past `t` (a 1 Hz plug included), or the
    /// sources stayed silent for a few of their periods.
    fn catch_up(&mut self, t: f64) {
        let started = std::time::Instant::now();
        // A plug polled at 1 Hz settles up to a second after the local sensors.
        let patience = (self.period * 3).max(Duration::from_millis(2500));
        loop {
            self.metering
                .fold_ready(&mut self.samples, &mut [&mut self.session]);
            let settled = self.ledger().settled_until();
            if settled.is_some_and(|s| s >= t) {
                return;
            }
            let waited = started.elapsed();
            // Nothing to wait for: no source gives a total.
            if settled.is_none() && waited >= self.period * 3 + Duration::from_millis(200) {
                return;
            }
            if waited >= patience {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Energy and cost of the reply that just ended at `t1`.
    fn reply(&mut self, stats: &ReplyStats, t1: f64, tariffs: &[&Tariff]) -> BenchRun {
        // The run's samples first, while the throttle detector still knows the reply is on
        // (its tokens came in during the run; the samples only now).
        self.catch_up(t1);
        self.session
            .observe(&EngineEvent::ReplyDone(stats.clone()), t1);
        let span = self.session.replies().last().cloned();
        let throttle = span
            .as_ref()
            .map(|s| {
                self.session
                    .throttle_between(s.t0, s.t1)
                    .iter()
                    .map(|e| CardThrottle::from_episode(e, s.t0))
                    .collect()
            })
            .unwrap_or_default();
        let contention = span
            .as_ref()
            .map(|s| {
                self.session
                    .contention_between(s.t0, s.t1)
                    .into_iter()
                    .map(|c| c.shifted(s.t0))
                    .collect()
            })
            .unwrap_or_default();
        let energy = span
            .as_ref()
            .and_then(|s| self.session.reply_report(self.ledger(), s));
        let costs = span
            .map(|s| run_costs(self.ledger(), tariffs, s.t0, s.t1))
            .unwrap_or_default();
        BenchRun {
            stats: stats.clone(),
            energy,
            costs,
            throttle,
            roofline: None,
            contention,
        }
    }
}

/// What a span cost in each tariff, from the ledger.
fn run_costs(ledger: &Ledger, tariffs: &[&Tariff], t0: f64, t1: f64) -> Vec<RunCost> {
    tariffs
        .iter()
        .filter_map(|t| {
            Some(RunCost {
                region: t.label.clone(),
                currency: t.currency.code().to_string(),
                amount: ledger.cost_between(t, t0, t1)?,
            })
        })
        .collect()
}

/// Errors of the bench command: one line each.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0} {1}: directory {2} does not exist (create it first)")]
    OutDir(&'static str, String, String),
    #[error("--reps 0: need at least one measured run")]
    NoReps,
    #[error("{0}")]
    Engine(String),
    #[error("the engine stopped unexpectedly")]
    EngineGone,
    #[error(
        "refusing to report: run {run} was generated while other programs took the CPUs llama.cpp needed ({what}); stop the other work, or leave llama.cpp free CPUs with --threads, and run again (--allow-contention reports it anyway)"
    )]
    Contended { run: u32, what: String },
    #[error("{flag} {path}: cannot write: {source}")]
    Write {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Check an output path before spending minutes on runs.
pub fn check_out_path(flag: &'static str, path: &Path) -> Result<(), BenchError> {
    match crate::util::paths::missing_parent(path) {
        Some(dir) => Err(BenchError::OutDir(
            flag,
            path.display().to_string(),
            dir.display().to_string(),
        )),
        None => Ok(()),
    }
}

/// Wait for the model to load; returns its info.
pub fn wait_loaded(handle: &mut EngineHandle) -> Result<ModelInfo, BenchError> {
    loop {
        match handle.events.blocking_recv() {
            Some(EngineEvent::Loaded(info)) => return Ok(info),
            Some(EngineEvent::Failed(e)) => {
                return Err(BenchError::Engine(sanitize::terminal(&e).into_owned()));
            }
            Some(_) => {}
            None => return Err(BenchError::EngineGone),
        }
    }
}

/// Send one prompt on a fresh conversation and wait for the reply; returns text and stats.
/// `on_tokens` is called with the number of tokens in each piece as it arrives (the throttle
/// detector times them).
pub fn run_once(
    handle: &mut EngineHandle,
    prompt: &str,
    on_tokens: &mut dyn FnMut(u32),
) -> Result<(String, ReplyStats), BenchError> {
    handle.send(Command::Reset);
    handle.send(Command::Send(prompt.to_string()));
    let mut text = String::new();
    loop {
        match handle.events.blocking_recv() {
            Some(EngineEvent::Tokens { text: t, count }) => {
                on_tokens(count);
                text.push_str(&t);
            }
            Some(EngineEvent::ReplyDone(stats)) => return Ok((text, stats)),
            Some(EngineEvent::Failed(e)) => {
                return Err(BenchError::Engine(sanitize::terminal(&e).into_owned()));
            }
            Some(_) => {}
            None => return Err(BenchError::EngineGone),
        }
    }
}

/// What every setting of a bench shares: the prompt, the regions and the sensors' books.
struct Bench<'a> {
    args: &'a BenchArgs,
    prompt: String,
    tariffs: Vec<&'a Tariff>,
    statuses: Vec<SourceStatus>,
    idle_window_s: f64,
    started_unix: u64,
    books: Books,
    /// The machine's memory bandwidth (the roofline's ceiling), measured before any model.
    memory: crate::sensors::bandwidth::Ceilings,
}

/// One setting, measured: the result and the spans its card and session report need.
struct Measured {
    result: BenchResult,
    cold_ttft_ms: Option<f64>,
    first_t0: f64,
    last_t1: f64,
}

impl Bench<'_> {
    /// Load the model at `settings`, measure idle power once per bench (before the first
    /// setting's runs), warm up, run the measured replies and unload.
    fn measure(&mut self, settings: EngineSettings) -> Result<Measured, BenchError> {
        let args = self.args;
        let mut err = std::io::stderr();
        let mut handle = engine::spawn(Box::new(LlamaEngine { settings }))
            .map_err(|e| BenchError::Engine(e.to_string()))?;
        handle.send(Command::Load);
        let model = wait_loaded(&mut handle)?;
        // From here on the settings are the engine's report, not the request.
        let in_effect = CardSettings::from_model_info(&model);
        let _ = writeln!(
            err,
            "bench: loaded {} {} in {:.0} ms: {} threads, GPU layers {}, n_ctx {}, sampler {}",
            sanitize::terminal(&model.name),
            sanitize::terminal(&model.quantization),
            model.load_ms,
            in_effect.threads,
            in_effect.gpu_layers,
            in_effect.n_ctx,
            in_effect.sampler_text()
        );
        let ceiling = crate::accounting::roofline::ceiling_for(
            &self.memory,
            crate::accounting::roofline::placement(&model, None),
        );
        let books = &mut self.books;
        // The session learns the model (its threads: what contention is judged against).
        books
            .session
            .observe(&EngineEvent::Loaded(model.clone()), books.now());
        if !args.no_idle && self.idle_window_s > 0.0 && books.session.idle_baseline().is_none() {
            let _ = writeln!(
                err,
                "bench: measuring idle power for {:.0} s (--no-idle skips)",
                self.idle_window_s
            );
            std::thread::sleep(Duration::from_secs_f64(self.idle_window_s));
            let t1 = books.now();
            books.catch_up(t1);
            if let Some(i) = books.session.idle_baseline() {
                let _ = writeln!(err, "bench: idle {:.1} W ({})", i.watts, i.basis.describe());
            }
        }
        let idle = books.session.idle_baseline().cloned();
        let mut cold_ttft_ms = None;
        if !args.no_warmup {
            let (_, s) = run_once(&mut handle, &self.prompt, &mut |_| {})?;
            cold_ttft_ms = Some(s.ttft_ms);
            let _ = writeln!(
                err,
                "bench: warm-up: {} tokens, {:.1} tok/s",
                s.generated_tokens, s.gen_tok_s
            );
        }
        let mut runs = Vec::new();
        let first_t0 = books.now();
        for i in 1..=args.reps {
            let (_, s) = run_once(&mut handle, &self.prompt, &mut |count| {
                let now = books.now();
                let piece = EngineEvent::Tokens {
                    text: String::new(),
                    count,
                };
                books.session.observe(&piece, now);
            })?;
            let mut run = books.reply(&s, books.now(), &self.tariffs);
            run.roofline = model
                .traffic
                .as_ref()
                .and_then(|t| crate::accounting::roofline::for_reply(t, &s, ceiling.as_ref()));
            let memory = run
                .roofline
                .as_ref()
                .map(|r| format!(", {}", crate::accounting::roofline::text(r)))
                .unwrap_or_default();
            let watts = run
                .energy
                .as_ref()
                .and_then(|e| e.total.as_ref())
                .map(|t| format!(", {:.2} Wh", t.wh))
                .unwrap_or_default();
            let throttled = run
                .throttle
                .iter()
                .map(|t| t.slowdown_pct)
                .reduce(f64::max)
                .map(|p| format!(", THROTTLED (−{p:.0} %)"))
                .unwrap_or_default();
            let _ = writeln!(
                err,
                "bench: run {i}/{}: {} tokens, prefill {:.0} tok/s, generation {:.1} tok/s ({}){memory}{watts}{throttled}",
                args.reps, s.generated_tokens, s.prefill_tok_s, s.gen_tok_s, s.stop
            );
            for t in &run.throttle {
                let _ = writeln!(err, "bench:   throttled {}", sanitize::terminal(&t.line()));
            }
            if let Some(c) = run.contention.first() {
                let what = c.reply_text(s.gen_tok_s);
                if !args.allow_contention {
                    return Err(BenchError::Contended { run: i, what });
                }
                let _ = writeln!(err, "bench:   {what}; reported as --allow-contention asks");
            }
            runs.push(run);
        }
        handle.shutdown();
        let last_t1 = books.now();
        books.catch_up(last_t1);
        let summary = Summary::of(model.load_ms, &runs);
        let result = BenchResult {
            schema: SCHEMA.to_string(),
            started_unix: self.started_unix,
            host: HostInfo::detect(crate::sensors::nvml::gpu_names()),
            build: BuildInfo::current(),
            model,
            settings: in_effect,
            prompt: self.prompt.clone(),
            warmup: !args.no_warmup,
            sensors: self.statuses.clone(),
            idle,
            memory: Some(self.memory.clone()),
            ceiling,
            contended: runs.iter().any(|r| !r.contention.is_empty()),
            runs,
            summary,
        };
        Ok(Measured {
            result,
            cold_ttft_ms,
            first_t0,
            last_t1,
        })
    }
}

/// The engine settings of each combination of a sweep, resolved (model files and numbers
/// checked) before any run.
fn sweep_settings(
    args: &BenchArgs,
    base: &crate::cli::EngineArgs,
    cfg: &Config,
    combos: &[Vec<SweepValue>],
) -> anyhow::Result<Vec<EngineSettings>> {
    let e = &args.engine;
    for key in combos.first().into_iter().flatten().map(|v| v.key) {
        let given = match key {
            SweepKey::Threads => e.threads.is_some().then_some("--threads"),
            SweepKey::GpuLayers => e.gpu_layers.is_some().then_some("--gpu-layers"),
            SweepKey::Ctx => e.n_ctx.is_some().then_some("--n-ctx"),
            SweepKey::Model => e.model.is_some().then_some("--model"),
        };
        if let Some(flag) = given {
            anyhow::bail!(
                "--sweep {key} and {flag} both set the {key}; drop {flag} or take its value into the sweep",
                key = key.name()
            );
        }
    }
    combos
        .iter()
        .map(|combo| {
            let mut ea = base.clone();
            for v in combo {
                // The values were checked when the sweep was parsed.
                let n = || v.value.parse::<u32>().ok();
                match v.key {
                    SweepKey::Threads => ea.threads = n(),
                    SweepKey::GpuLayers => ea.gpu_layers = n(),
                    SweepKey::Ctx => ea.n_ctx = n(),
                    SweepKey::Model => ea.model = Some(v.value.clone().into()),
                }
            }
            crate::config::engine::resolve_settings(&ea, &cfg.raw).map_err(|e| {
                anyhow::anyhow!(
                    "--sweep {}: {}",
                    sanitize::terminal(&setting_label(combo)),
                    e
                )
            })
        })
        .collect()
}

pub fn run(args: &BenchArgs, cfg: &Config) -> anyhow::Result<()> {
    if args.reps == 0 {
        return Err(BenchError::NoReps.into());
    }
    if let Some(p) = &args.json {
        check_out_path("--json", p)?;
    }
    if let Some(p) = &args.svg {
        check_out_path("--svg", p)?;
    }
    let axes = parse_axes(&args.sweep)?;
    // The tariffs were checked when the config was loaded, before minutes of runs.
    let (tariff, compare) = (&cfg.tariff, &cfg.compare);
    let mut engine_args = args.engine.clone();
    // The bench is a measurement: repeatable output unless the user asks otherwise.
    engine_args.temperature = engine_args.temperature.or(Some(0.0));
    engine_args.max_tokens = engine_args.max_tokens.or(Some(STORY_MAX_TOKENS));
    let combos = combinations(&axes);
    let settings = if axes.is_empty() {
        vec![crate::config::engine::resolve_settings(
            &engine_args,
            &cfg.raw,
        )?]
    } else {
        sweep_settings(args, &engine_args, cfg, &combos)?
    };
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| STORY_PROMPT.to_string());
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let mut err = std::io::stderr();
    let warm = if args.no_warmup {
        ""
    } else {
        " after a warm-up"
    };
    if axes.is_empty() {
        let _ = writeln!(
            err,
            "bench: {}, {} run(s){warm}",
            sanitize::terminal(&settings[0].model.display().to_string()),
            args.reps,
        );
    } else {
        let _ = writeln!(
            err,
            "bench: sweep of {} settings, {} run(s) each{warm}",
            settings.len(),
            args.reps,
        );
    }
    let sensors_cfg = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let mut tariffs = vec![tariff];
    tariffs.extend(compare.iter().filter(|t| t.label != tariff.label));
    // The memory's bandwidth first, with nothing else running (kept per boot).
    let memory = crate::sensors::bandwidth::ceilings(&crate::config::data_dir());
    for line in memory.lines() {
        let _ = writeln!(
            err,
            "bench: memory bandwidth: {}",
            sanitize::terminal(&line)
        );
    }
    let (books, statuses) = Books::start(&sensors_cfg, tariff);
    let mut bench = Bench {
        memory,
        args,
        prompt,
        tariffs,
        statuses,
        idle_window_s: sensors_cfg.idle_window_s,
        started_unix,
        books,
    };
    if !axes.is_empty() {
        let n = settings.len();
        let mut points = Vec::new();
        for (i, (s, combo)) in settings.into_iter().zip(combos).enumerate() {
            let _ = writeln!(
                err,
                "bench: setting {}/{n}: {}",
                i + 1,
                sanitize::terminal(&setting_label(&combo))
            );
            let m = bench.measure(s)?;
            points.push(SweepPoint::of(combo, m.result));
        }
        let sweep = SweepResult::new(started_unix, axes, points);
        print!("{}", crate::report::sweep::render_table(&sweep));
        if let Some(path) = &args.json {
            write_out("--json", path, &serde_json::to_vec_pretty(&sweep)?)?;
        }
        if let Some(path) = &args.svg {
            let chart = crate::report::sweep::render_svg(&sweep)?;
            write_out("--svg", path, chart.svg.as_bytes())?;
        }
        return Ok(());
    }
    let Some(single) = settings.into_iter().next() else {
        return Ok(());
    };
    let Measured {
        result,
        cold_ttft_ms,
        first_t0,
        last_t1,
    } = bench.measure(single)?;
    let books = &bench.books;
    let tokens: u64 = result
        .runs
        .iter()
        .map(|r| u64::from(r.stats.generated_tokens))
        .sum();
    let session = books.ledger().report(&Window {
        t0: first_t0,
        t1: last_t1,
        tokens: Some(tokens),
        phase_boundary: None,
        idle: result.idle.clone(),
        apportion: true,
    });
    // The card's series starts at the first measured run.
    let origin = books.session.series_origin().unwrap_or(0.0);
    let series: Vec<SeriesPoint> = books
        .session
        .series()
        .iter()
        .filter_map(|p| {
            let t = p.t_s + origin;
            (t >= first_t0 && t <= last_t1).then(|| SeriesPoint {
                t_s: t - first_t0,
                ..p.clone()
            })
        })
        .collect();
    print!("{}", render_table(&result));
    print!("{}", cost_lines(&result));
    if let Some(path) = &args.json {
        write_out("--json", path, &serde_json::to_vec_pretty(&result)?)?;
    }
    if args.snapshot {
        let session = session.total.is_some().then_some(&session);
        let mut card = crate::report::bench_card::card(&result, cold_ttft_ms, session, series)?;
        let spans = CardSpans {
            reply: books.session.replies().last().map(|r| (r.t0, r.t1)),
            session: Some((first_t0, last_t1)),
        };
        card.price(tariff, compare, books.ledger(), spans);
        let dir = crate::report::snapshot::default_dir(&cfg.raw.snapshot);
        let paths = crate::report::snapshot::write(&dir, &card, None)?;
        let _ = writeln!(
            err,
            "bench: run card {}",
            sanitize::terminal(&paths.json.display().to_string())
        );
    }
    Ok(())
}

/// Write an output file atomically and say so on stderr.
fn write_out(flag: &'static str, path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    crate::util::fs::write_atomic(path, bytes).map_err(|source| BenchError::Write {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    let _ = writeln!(
        std::io::stderr(),
        "bench: wrote {}",
        sanitize::terminal(&path.display().to_string())
    );
    Ok(())
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
    fn json_into_missing_directory_is_refused_up_front() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("no/such/dir/out.json");
        let e = check_out_path("--json", &p).expect_err("missing dir");
        assert!(e.to_string().starts_with("--json "), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(check_out_path("--json", &dir.path().join("ok.json")).is_ok());
        assert!(check_out_path("--svg", Path::new("relative.json")).is_ok());
    }
}
