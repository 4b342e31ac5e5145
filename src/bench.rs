//! `llmtop bench`: the video's test, headless. One warm-up, then N runs of a long story prompt
//! on a fresh conversation each, measured by the real engine.

use crate::cli::BenchArgs;
use crate::config::RawConfig;
use crate::engine::llama::{LlamaEngine, default_threads};
use crate::engine::{
    self, Command, EngineEvent, EngineHandle, EngineSettings, ModelInfo, ReplyStats,
};
use crate::hostinfo::{BuildInfo, HostInfo};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

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
    pub runs: Vec<ReplyStats>,
    pub summary: Summary,
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
    pub fn of(load_ms: f64, runs: &[ReplyStats]) -> Self {
        let f = |g: fn(&ReplyStats) -> f64| Spread::of(&runs.iter().map(g).collect::<Vec<_>>());
        Self {
            load_ms,
            ttft_ms: f(|r| r.ttft_ms),
            prefill_tok_s: f(|r| r.prefill_tok_s),
            gen_tok_s: f(|r| r.gen_tok_s),
            generated_tokens: f(|r| f64::from(r.generated_tokens)),
            wall_s: f(|r| r.wall_s),
        }
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
    if !args.no_warmup {
        let (_, s) = run_once(&mut handle, &prompt)?;
        let _ = writeln!(
            err,
            "bench: warm-up: {} tokens, {:.1} tok/s",
            s.generated_tokens, s.gen_tok_s
        );
    }
    let mut runs = Vec::new();
    for i in 1..=args.reps {
        let (_, s) = run_once(&mut handle, &prompt)?;
        let _ = writeln!(
            err,
            "bench: run {i}/{}: {} tokens, prefill {:.0} tok/s, generation {:.1} tok/s ({})",
            args.reps, s.generated_tokens, s.prefill_tok_s, s.gen_tok_s, s.stop
        );
        runs.push(s);
    }
    handle.shutdown();
    let summary = Summary::of(model.load_ms, &runs);
    let result = BenchResult {
        schema: SCHEMA.to_string(),
        started_unix,
        host: HostInfo::detect(Vec::new()),
        build: BuildInfo::current(),
        model,
        settings,
        prompt,
        warmup: !args.no_warmup,
        runs,
        summary,
    };
    print!("{}", render_table(&result));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&result)?;
        crate::fsutil::write_atomic(path, &json).map_err(|source| BenchError::Write {
            path: path.display().to_string(),
            source,
        })?;
        let _ = writeln!(err, "bench: wrote {}", path.display());
    }
    Ok(())
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
        out.push_str(&format!(
            "{name:<22}{:>12.prec$}{:>12.prec$}{:>12.prec$}\n",
            sp.median, sp.min, sp.max
        ));
    }
    out
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
