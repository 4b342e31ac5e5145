//! `llmtop bench`: the video's test, headless. One warm-up, then N runs of a long story prompt
//! on a fresh conversation each, measured by the real engine.

use crate::accounting::energy::EnergyReport;
use crate::accounting::energy::Window;
use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::cli::{BenchArgs, CapDevice};
use crate::commands::power_cap::{CapBench, Timing, measure_cap};
use crate::config::Config;
use crate::engine::EngineSettings;
use crate::engine::llama::LlamaEngine;
use crate::engine::{self, Command, Engine, EngineEvent, EngineHandle, ModelInfo, ReplyStats};
use crate::metering::Metering;
use crate::report::bench::*;
use crate::report::power_cap::{CapFigures, CapSweep, CurvePoint, Phase};
use crate::report::runcard::{CardSettings, CardSpans, CardThrottle, SeriesPoint};
use crate::report::sweep::{
    SweepKey, SweepPoint, SweepResult, SweepValue, combinations, parse_axes, setting_label,
};
use crate::sensors::host::{BuildInfo, HostInfo};
use crate::sensors::powerlimit::marker;
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
    run_reply(handle, prompt, on_tokens, false)
}

/// Makes the engine of a setting: llama.cpp in `llmtop bench`; tests drive the bench with a
/// scripted one.
pub type Engines<'a> = &'a dyn Fn(EngineSettings) -> Box<dyn Engine>;

/// Send one prompt on a fresh conversation and cancel its reply at the first token: the
/// prompt's prefill, timed by the engine (the power-cap sweep's prefill phase).
pub fn run_first_token(
    handle: &mut EngineHandle,
    prompt: &str,
    on_tokens: &mut dyn FnMut(u32),
) -> Result<(String, ReplyStats), BenchError> {
    run_reply(handle, prompt, on_tokens, true)
}

/// One reply on a fresh conversation, cancelled at its first token when `first_only`.
fn run_reply(
    handle: &mut EngineHandle,
    prompt: &str,
    on_tokens: &mut dyn FnMut(u32),
    first_only: bool,
) -> Result<(String, ReplyStats), BenchError> {
    handle.send(Command::Reset);
    handle.send(Command::Send(prompt.to_string()));
    let mut text = String::new();
    let mut cancelled = false;
    loop {
        match handle.events.blocking_recv() {
            Some(EngineEvent::Tokens { text: t, count }) => {
                on_tokens(count);
                text.push_str(&t);
                if first_only && !cancelled {
                    handle.send(Command::Cancel);
                    cancelled = true;
                }
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
    engines: Engines<'a>,
}

/// One setting, measured: the result and the spans its card and session report need.
struct Measured {
    result: BenchResult,
    cold_ttft_ms: Option<f64>,
    first_t0: f64,
    last_t1: f64,
}

/// A model loaded for measuring (its engine's handle apart, since shutting down takes it).
struct Loaded {
    model: ModelInfo,
    in_effect: CardSettings,
    ceiling: Option<crate::accounting::roofline::Ceiling>,
}

impl Bench<'_> {
    /// Load the model at `settings` and tell the session about it.
    fn load(&mut self, settings: EngineSettings) -> Result<(EngineHandle, Loaded), BenchError> {
        let mut handle = engine::spawn((self.engines)(settings))
            .map_err(|e| BenchError::Engine(e.to_string()))?;
        handle.send(Command::Load);
        let model = wait_loaded(&mut handle)?;
        // From here on the settings are the engine's report, not the request.
        let in_effect = CardSettings::from_model_info(&model);
        let _ = writeln!(
            std::io::stderr(),
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
        // The session learns the model (its threads: what contention is judged against).
        let books = &mut self.books;
        books
            .session
            .observe(&EngineEvent::Loaded(model.clone()), books.now());
        Ok((
            handle,
            Loaded {
                model,
                in_effect,
                ceiling,
            },
        ))
    }

    /// Measure idle power once per bench (before the first setting's runs).
    fn idle_baseline(&mut self) {
        let books = &mut self.books;
        if self.args.no_idle || self.idle_window_s <= 0.0 || books.session.idle_baseline().is_some()
        {
            return;
        }
        let mut err = std::io::stderr();
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

    /// The warm-up run (unless `--no-warmup`): its TTFT is the cold one.
    fn warm_up(&mut self, handle: &mut EngineHandle) -> Result<Option<f64>, BenchError> {
        if self.args.no_warmup {
            return Ok(None);
        }
        let (_, s) = run_once(handle, &self.prompt, &mut |_| {})?;
        let _ = writeln!(
            std::io::stderr(),
            "bench: warm-up: {} tokens, {:.1} tok/s",
            s.generated_tokens,
            s.gen_tok_s
        );
        Ok(Some(s.ttft_ms))
    }

    /// One measured run of `prompt` (cut after its first token when `first_token_only`): its
    /// energy, cost, throttling and contention from the session, its roofline. Refused under
    /// contention unless `--allow-contention`; `run` numbers it in that message.
    fn measured_run(
        &mut self,
        handle: &mut EngineHandle,
        l: &Loaded,
        prompt: &str,
        first_token_only: bool,
        run: u32,
    ) -> Result<BenchRun, BenchError> {
        let books = &mut self.books;
        let mut on_tokens = |count| {
            let now = books.now();
            let piece = EngineEvent::Tokens {
                text: String::new(),
                count,
            };
            books.session.observe(&piece, now);
        };
        let (_, s) = if first_token_only {
            run_first_token(handle, prompt, &mut on_tokens)?
        } else {
            run_once(handle, prompt, &mut on_tokens)?
        };
        let mut r = books.reply(&s, books.now(), &self.tariffs);
        if !first_token_only {
            r.roofline =
                l.model.traffic.as_ref().and_then(|t| {
                    crate::accounting::roofline::for_reply(t, &s, l.ceiling.as_ref())
                });
        }
        if let Some(c) = r.contention.first() {
            let what = c.reply_text(s.gen_tok_s);
            if !self.args.allow_contention {
                return Err(BenchError::Contended { run, what });
            }
            let _ = writeln!(
                std::io::stderr(),
                "bench:   {what}; reported as --allow-contention asks"
            );
        }
        Ok(r)
    }

    /// The bench result of `runs` measured on `l`.
    fn result(&self, l: &Loaded, runs: Vec<BenchRun>) -> BenchResult {
        let summary = Summary::of(l.model.load_ms, &runs);
        BenchResult {
            schema: SCHEMA.to_string(),
            started_unix: self.started_unix,
            host: HostInfo::detect(crate::sensors::nvml::gpu_names()),
            build: BuildInfo::current(),
            model: l.model.clone(),
            settings: l.in_effect.clone(),
            prompt: self.prompt.clone(),
            warmup: !self.args.no_warmup,
            sensors: self.statuses.clone(),
            idle: self.books.session.idle_baseline().cloned(),
            memory: Some(self.memory.clone()),
            ceiling: l.ceiling.clone(),
            contended: runs.iter().any(|r| !r.contention.is_empty()),
            runs,
            summary,
        }
    }

    /// Load the model at `settings`, measure idle power once per bench (before the first
    /// setting's runs), warm up, run the measured replies and unload.
    fn measure(&mut self, settings: EngineSettings) -> Result<Measured, BenchError> {
        let args = self.args;
        let mut err = std::io::stderr();
        let (mut handle, l) = self.load(settings)?;
        self.idle_baseline();
        let cold_ttft_ms = self.warm_up(&mut handle)?;
        let mut runs = Vec::new();
        let first_t0 = self.books.now();
        let prompt = self.prompt.clone();
        for i in 1..=args.reps {
            let run = self.measured_run(&mut handle, &l, &prompt, false, i)?;
            let s = &run.stats;
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
            runs.push(run);
        }
        handle.shutdown();
        let last_t1 = self.books.now();
        self.books.catch_up(last_t1);
        let result = self.result(&l, runs);
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
            SweepKey::PowerCap => None,
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
                    // Not an engine setting: set on the device around the runs.
                    SweepKey::PowerCap => {}
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
    run_with(
        args,
        cfg,
        &|settings| Box::new(LlamaEngine { settings }),
        &crate::config::data_dir(),
    )
}

/// [`run`] with the engine of each setting made by `engines`, and the data dir (the
/// bandwidth cache, the power-cap marker) at `data_dir`.
pub fn run_with(
    args: &BenchArgs,
    cfg: &Config,
    engines: Engines<'_>,
    data_dir: &Path,
) -> anyhow::Result<()> {
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
    let cap_axis = axes.iter().find(|a| a.key == SweepKey::PowerCap).cloned();
    let cap_timing = cap_options(args, cap_axis.is_some())?;
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
    let memory = crate::sensors::bandwidth::ceilings(data_dir);
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
        engines,
    };
    if let (Some(axis), Some((timing, tolerance))) = (&cap_axis, cap_timing) {
        let Some(single) = settings.into_iter().next() else {
            return Ok(());
        };
        let (points, cap) = power_cap_sweep(
            &mut bench,
            single,
            &sensors_cfg.sysfs_root,
            &marker::path(data_dir),
            axis,
            timing,
            tolerance,
        )?;
        let mut sweep = SweepResult::new(started_unix, axes, points);
        sweep.power_cap = Some(cap);
        return write_sweep(args, &sweep);
    }
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
        return write_sweep(args, &sweep);
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

/// A sweep's table on stdout, its JSON and SVG where asked.
fn write_sweep(args: &BenchArgs, sweep: &SweepResult) -> anyhow::Result<()> {
    print!("{}", crate::report::sweep::render_table(sweep));
    if let Some(path) = &args.json {
        write_out("--json", path, &serde_json::to_vec_pretty(sweep)?)?;
    }
    if let Some(path) = &args.svg {
        let chart = crate::report::sweep::render_svg(sweep)?;
        write_out("--svg", path, chart.svg.as_bytes())?;
    }
    Ok(())
}

/// The power-cap sweep's timing and tolerance, checked; `None` without a power-cap axis (its
/// flags are then refused rather than ignored).
fn cap_options(args: &BenchArgs, sweeping: bool) -> anyhow::Result<Option<(Timing, f64)>> {
    let given = [
        ("--cap-device", args.cap_device.is_some()),
        ("--cap-cooldown", args.cap_cooldown.is_some()),
        ("--cap-settle", args.cap_settle.is_some()),
        ("--cap-window", args.cap_window.is_some()),
        ("--cap-tolerance", args.cap_tolerance.is_some()),
    ];
    if !sweeping {
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            anyhow::bail!(
                "{flag} only applies to a power-cap sweep; add --sweep power-cap=W1,W2,... or drop {flag}"
            );
        }
        return Ok(None);
    }
    let seconds = |flag: &str, v: Option<f64>, default: f64| -> anyhow::Result<f64> {
        let v = v.unwrap_or(default);
        if !(0.0..=3600.0).contains(&v) {
            anyhow::bail!("{flag} {v}: must be 0 to 3600 seconds");
        }
        Ok(v)
    };
    let timing = Timing {
        cooldown_s: seconds("--cap-cooldown", args.cap_cooldown, 10.0)?,
        settle_s: seconds("--cap-settle", args.cap_settle, 5.0)?,
        window_s: seconds("--cap-window", args.cap_window, 10.0)?,
        reps: args.reps,
    };
    let tolerance = args
        .cap_tolerance
        .unwrap_or(crate::report::power_cap::DEFAULT_TOLERANCE_PCT);
    if !(tolerance > 0.0 && tolerance < 100.0) {
        anyhow::bail!(
            "--cap-tolerance {tolerance}: must be a percent above 0 and below 100, e.g. 5"
        );
    }
    Ok(Some((timing, tolerance)))
}

/// The bench's side of the power-cap loop: its runs, clock and ledger.
struct CapRunner<'a, 'b> {
    bench: &'a mut Bench<'b>,
    handle: &'a mut EngineHandle,
    loaded: &'a Loaded,
    prefill_prompt: String,
    runs: u32,
}

impl CapBench for CapRunner<'_, '_> {
    fn now(&self) -> f64 {
        self.bench.books.now()
    }

    fn idle(&mut self, seconds: f64) {
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }

    fn run(&mut self, phase: Phase) -> anyhow::Result<BenchRun> {
        self.runs += 1;
        let (prompt, first_token_only) = match phase {
            Phase::Prefill => (self.prefill_prompt.clone(), true),
            Phase::Decode => (self.bench.prompt.clone(), false),
        };
        Ok(self.bench.measured_run(
            self.handle,
            self.loaded,
            &prompt,
            first_token_only,
            self.runs,
        )?)
    }

    fn window(&mut self, t0: f64, t1: f64) -> Option<EnergyReport> {
        let books = &mut self.bench.books;
        books.catch_up(t1);
        Some(books.ledger().report(&Window {
            t0,
            t1,
            tokens: None,
            phase_boundary: None,
            idle: books.session.idle_baseline().cloned(),
            apportion: true,
        }))
    }

    fn say(&self, line: &str) {
        let _ = writeln!(std::io::stderr(), "bench: {line}");
    }
}

/// `--sweep power-cap=...`: load the model once, take charge of the devices' limits (marker,
/// permission), then measure at each cap; the limits as found are put back however this ends
/// (the guard: here at the end or on an error, the signal watcher on a signal, the panic hook
/// on a panic, the marker at the next start after a SIGKILL).
fn power_cap_sweep(
    bench: &mut Bench,
    settings: EngineSettings,
    sysfs_root: &Path,
    marker_path: &Path,
    axis: &crate::report::sweep::SweepAxis,
    timing: Timing,
    tolerance_pct: f64,
) -> anyhow::Result<(Vec<SweepPoint>, CapSweep)> {
    use crate::sensors::powerlimit::{self, CapKind, guard::CapGuard};
    let caps: Vec<(String, f64)> = axis
        .values
        .iter()
        .filter_map(|v| Some((v.clone(), v.parse::<f64>().ok()?)))
        .collect();
    let (mut handle, loaded) = bench.load(settings)?;
    let placement = crate::accounting::roofline::placement(&loaded.model, None);
    let on_gpu =
        matches!(placement, crate::accounting::roofline::Placement::GpuShare(s) if s > 0.0);
    let (kind, rule) = match bench.args.cap_device.unwrap_or_default() {
        CapDevice::Auto if on_gpu => (
            CapKind::Gpu,
            "the model runs on the GPU; --cap-device cpu caps the CPU packages instead",
        ),
        CapDevice::Auto => (
            CapKind::CpuPackage,
            "the model runs on the CPU; --cap-device gpu caps the NVIDIA boards instead",
        ),
        CapDevice::Gpu => (CapKind::Gpu, "--cap-device gpu"),
        CapDevice::Cpu => (CapKind::CpuPackage, "--cap-device cpu"),
    };
    let devices = powerlimit::devices(kind, &crate::sensors::sysfs::Sysfs::new(sysfs_root))?;
    for d in &devices {
        for (_, w) in &caps {
            d.check(*w)?;
        }
    }
    let stock_w = devices
        .iter()
        .filter_map(|d| d.original().limit_w())
        .reduce(f64::max);
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "bench: power caps apply to each {}: {} ({rule}); as found: {}",
        kind.describe(),
        devices
            .iter()
            .map(|d| d.label())
            .collect::<Vec<_>>()
            .join(", "),
        devices
            .iter()
            .map(|d| d.original().limit_text())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let command = format!("bench --sweep power-cap={}", axis.values.join(","));
    let say: powerlimit::guard::Say = Box::new(|line| {
        let _ = writeln!(std::io::stderr(), "bench: {line}");
    });
    let guard = CapGuard::begin(devices, marker_path.to_path_buf(), &command, say)?;
    let restorer = guard.restorer();
    let armed = match crate::util::signals::last_word(std::sync::Arc::new(move |name| {
        restorer.restore(&format!("on {name}"));
    })) {
        Ok(a) => a,
        Err(e) => {
            guard.restore("before the sweep")?;
            anyhow::bail!(
                "cannot catch the terminating signals ({e}): not changing power limits a signal could leave changed"
            );
        }
    };
    let n = caps.len();
    let outcome = (|| -> anyhow::Result<(Vec<SweepPoint>, Vec<CapFigures>)> {
        // At the limits as found: the idle baseline and the warm-up.
        bench.idle_baseline();
        bench.warm_up(&mut handle)?;
        let prefill_prompt = crate::report::power_cap::prefill_prompt(loaded.model.n_ctx);
        let mut points = Vec::new();
        let mut figures = Vec::new();
        let mut runs = 0;
        for (i, (value, w)) in caps.iter().enumerate() {
            let _ = writeln!(
                std::io::stderr(),
                "bench: setting {}/{n}: power-cap={}",
                i + 1,
                powerlimit::watts_text(*w)
            );
            let mut runner = CapRunner {
                bench: &mut *bench,
                handle: &mut handle,
                loaded: &loaded,
                prefill_prompt: prefill_prompt.clone(),
                runs,
            };
            let (fig, decode_runs) = measure_cap(&mut runner, &guard, kind, *w, &timing)?;
            runs = runner.runs;
            let setting = vec![SweepValue {
                key: SweepKey::PowerCap,
                value: value.clone(),
            }];
            let mut p = SweepPoint::of(setting, bench.result(&loaded, decode_runs));
            p.power_cap = Some(fig.clone());
            points.push(p);
            figures.push(fig);
        }
        Ok((points, figures))
    })();
    handle.shutdown();
    let restored = guard.restore(if outcome.is_ok() {
        "at the end of the sweep"
    } else {
        "after an error"
    });
    drop(armed);
    let (points, figures) = outcome?;
    restored?;
    let curve: Vec<CurvePoint> = figures.iter().map(CurvePoint::of).collect();
    let knee = crate::report::power_cap::knee(&curve, tolerance_pct);
    let commands = knee
        .as_ref()
        .map(|k| guard.commands_for(k.recommended_w))
        .unwrap_or_default();
    let cap = CapSweep {
        kind,
        rule: rule.into(),
        devices: guard.labels(),
        originals: guard.originals(),
        stock_w,
        cooldown_s: timing.cooldown_s,
        settle_s: timing.settle_s,
        window_s: timing.window_s,
        tolerance_pct,
        knee,
        commands,
    };
    Ok((points, cap))
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
