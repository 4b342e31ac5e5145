//! `llmtop doctor`: a sensor self-test in under 10 s, the first thing to run on a new box.
//! Discovery says what is there; a few seconds of the sampler and the ledger say whether it
//! reads right: for each source, readable or not and the exact fix, a counter set against its
//! own power reading, the wall against the sum of the parts, stuck, zero and jumping channels,
//! the period each source really delivers and how long a plug takes to answer. One verdict
//! line per source and an overall one; `--json`; the exit code says whether the total is a
//! measurement ([`verdict::exit`]).
//!
//! Doctor decides verdicts only: it reads nothing itself (discovery and the sampler do) and
//! integrates nothing (the ledger does).

pub mod judge;
pub mod observe;
pub mod render;
pub mod verdict;

use crate::cli::DoctorArgs;
use crate::config::Config;
use verdict::{Report, SCHEMA, exit_code};

/// Seconds of readings by default: four plug polls at 1 Hz, and room for discovery inside
/// the 10 s a self-test may take.
pub const DEFAULT_SECONDS: f64 = 5.0;
/// At most this long: discovery and the memory probe come first (about 1 s, up to 4 s on a
/// loaded 2-CPU VM, where the readings give way: [`observe::BUDGET_S`]).
pub const MAX_SECONDS: f64 = 7.0;

/// Run the self-test; the exit code for the process.
pub fn run(args: &DoctorArgs, cfg: &Config) -> anyhow::Result<u8> {
    let section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    let seconds = args.seconds.unwrap_or(DEFAULT_SECONDS);
    if !(seconds.is_finite() && (1.0..=MAX_SECONDS).contains(&seconds)) {
        anyhow::bail!("--seconds {seconds}: must be between 1 and {MAX_SECONDS}");
    }
    let obs = observe::observe(&section, seconds);
    let (verdicts, overall, estimated) = judge::judge(&obs);
    let report = Report {
        schema: SCHEMA,
        sysfs_root: section.sysfs_root.display().to_string(),
        seconds: obs.span.1 - obs.span.0,
        exit_code: exit_code(estimated, &verdicts, &overall),
        verdicts,
        overall,
        estimated,
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render::text(&report).as_bytes())?;
    }
    Ok(report.exit_code)
}
