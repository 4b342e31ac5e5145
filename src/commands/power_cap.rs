//! The measuring loop of `bench --sweep power-cap=...`: at each cap, set it, cool down, then
//! prefill and decode each run back to back, first unmeasured until the machine settles, then
//! measured over a window. The bench supplies the runs ([`CapBench`]); the caps come and go
//! through the guard (`sensors::powerlimit`), which puts the limits back however this ends.

use crate::accounting::energy::EnergyReport;
use crate::report::bench::BenchRun;
use crate::report::power_cap::{CapFigures, Phase, PhaseFigures};
use crate::sensors::powerlimit::guard::CapGuard;
use crate::sensors::powerlimit::{Applied, CapKind, watts_text};

/// Test-only: set to `after-first-cap` to panic right after the first cap is set (the tests
/// check that the limits are put back after a panic). Never set on a real machine.
pub const PANIC_ENV: &str = "LLMTOP_TEST_PANIC";

/// What the loop needs from the bench.
pub trait CapBench {
    /// Seconds on the sensors' clock.
    fn now(&self) -> f64;
    /// Stay idle (no generation) for `seconds`.
    fn idle(&mut self, seconds: f64);
    /// One run of `phase`, with its energy and checks.
    fn run(&mut self, phase: Phase) -> anyhow::Result<BenchRun>;
    /// The ledger's energy over `[t0, t1]`, once the sensors have caught up with `t1`.
    fn window(&mut self, t0: f64, t1: f64) -> Option<EnergyReport>;
    /// A progress line.
    fn say(&self, line: &str);
}

/// How long each part of a cap's measurement lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub cooldown_s: f64,
    pub settle_s: f64,
    pub window_s: f64,
    /// At least this many measured runs per phase.
    pub reps: u32,
}

/// A bound on a phase's runs, whatever the window: a run that takes no time cannot loop for
/// ever.
const MAX_RUNS: usize = 10_000;

/// One phase measured: settle, then the window.
struct Measured {
    settle_runs: u32,
    runs: Vec<BenchRun>,
    window_s: f64,
    energy: Option<EnergyReport>,
}

fn phase(b: &mut dyn CapBench, t: &Timing, phase: Phase) -> anyhow::Result<Measured> {
    let start = b.now();
    let mut settle_runs = 0u32;
    while b.now() - start < t.settle_s && (settle_runs as usize) < MAX_RUNS {
        b.run(phase)?;
        settle_runs += 1;
    }
    let t0 = b.now();
    let mut runs = Vec::new();
    while (runs.len() < t.reps.max(1) as usize || b.now() - t0 < t.window_s)
        && runs.len() < MAX_RUNS
    {
        runs.push(b.run(phase)?);
    }
    let t1 = b.now();
    let energy = b.window(t0, t1);
    Ok(Measured {
        settle_runs,
        runs,
        window_s: t1 - t0,
        energy,
    })
}

fn measure_phase(
    b: &mut dyn CapBench,
    t: &Timing,
    kind: CapKind,
    p: Phase,
) -> anyhow::Result<(PhaseFigures, Vec<BenchRun>)> {
    let m = phase(b, t, p)?;
    let f = PhaseFigures::of(
        p,
        kind,
        m.settle_runs,
        &m.runs,
        m.window_s,
        m.energy.as_ref(),
    );
    b.say(&format!(
        "  {}: {} settle + {} measured run(s) over {:.1} s: {:.1} tok/s (median), {}{}",
        p.name(),
        f.settle_runs,
        f.runs,
        f.window_s,
        f.tok_s.median,
        f.j_per_token
            .map_or("no energy figure".into(), |j| format!("{j:.4} J/token")),
        f.device_w
            .map(|w| format!(", capped devices {w:.1} W"))
            .unwrap_or_default()
    ));
    Ok((f, m.runs))
}

/// Set `cap`, then measure prefill and decode at it. The decode runs come back apart: they
/// are the point's bench result.
pub fn measure_cap(
    b: &mut dyn CapBench,
    guard: &CapGuard,
    kind: CapKind,
    cap_w: f64,
    t: &Timing,
) -> anyhow::Result<(CapFigures, Vec<BenchRun>)> {
    let applied: Vec<Applied> = guard.set(cap_w)?;
    b.say(&format!(
        "cap {} set: {}",
        watts_text(cap_w),
        applied
            .iter()
            .map(|a| format!(
                "{} {} in effect",
                a.device,
                a.in_effect_w.map_or("n/a".into(), watts_text)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if std::env::var(PANIC_ENV).is_ok_and(|v| v == "after-first-cap") {
        panic!("{PANIC_ENV}=after-first-cap: the test-only panic after the first cap");
    }
    if t.cooldown_s > 0.0 {
        b.say(&format!(
            "cooling down for {:.0} s at the new cap",
            t.cooldown_s
        ));
        b.idle(t.cooldown_s);
    }
    let (prefill, prefill_runs) = measure_phase(b, t, kind, Phase::Prefill)?;
    let (decode, decode_runs) = measure_phase(b, t, kind, Phase::Decode)?;
    Ok((
        CapFigures {
            cap_w,
            applied,
            prefill,
            decode,
            prefill_runs,
        },
        decode_runs,
    ))
}
