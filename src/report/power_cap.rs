//! The power-cap sweep's figures (`bench --sweep power-cap=W1,W2,...`): prefill and decode
//! measured apart at each cap, the two knees, the recommended cap, its table and its chart.
//!
//! **The knee of a phase** is the lowest cap down to which the phase keeps within the
//! tolerance (5 % unless `--cap-tolerance` says otherwise) of its speed at the reference cap,
//! the highest one swept, with every cap above it within too: walking down from the
//! reference, the last cap before the first that falls out. Decode reads every weight once per
//! token and waits on memory, so it keeps its speed to a far lower cap than prefill, which
//! is compute-bound and slows with the clocks the cap takes away.
//!
//! **The recommended cap** is, among the caps from the reference down to the decode knee, the
//! one with the most decode tokens per joule (whole-system energy, from the ledger); the lower
//! cap on a tie. So it costs at most the tolerance in decode speed, which is what a chat user
//! waits on, and saves the most energy for it; where no cap saves energy, it is the reference
//! itself. Without an energy figure it is the decode knee. Prompt-heavy work (long documents,
//! RAG) waits on prefill instead: its knee is shown beside it.

use crate::accounting::energy::EnergyReport;
use crate::report::bench::{BenchRun, Spread};
use crate::report::chart::{self, CapCurve, CapMark, Chart, ChartError};
use crate::sensors::powerlimit::{Applied, CapKind, watts_text};
use crate::sensors::{Covers, Source};
use crate::util::sanitize;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The tolerance unless `--cap-tolerance` gives one, percent.
pub const DEFAULT_TOLERANCE_PCT: f64 = 5.0;

/// Which phase of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The prompt read in (compute-bound): a long prompt, its reply cut after one token.
    Prefill,
    /// Tokens generated one by one (memory-bound): the story prompt's reply.
    Decode,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }

    /// The phase's tokens in a run: the prompt's for prefill, the generated for decode.
    pub fn tokens(self, run: &BenchRun) -> u64 {
        match self {
            Phase::Prefill => u64::from(run.stats.prompt_tokens),
            Phase::Decode => u64::from(run.stats.generated_tokens),
        }
    }

    /// The phase's rate in a run, as llama.cpp timed it.
    pub fn rate(self, run: &BenchRun) -> f64 {
        match self {
            Phase::Prefill => run.stats.prefill_tok_s,
            Phase::Decode => run.stats.gen_tok_s,
        }
    }
}

/// The prefill phase's prompt: about half the context (at most ~2000 tokens), so prefill
/// runs long enough to be measured and still fits with the system prompt and the template.
pub fn prefill_prompt(n_ctx: u32) -> String {
    const PARAGRAPH: &str = "The lighthouse keeper climbed the spiral stairs at dusk, trimmed the wick, wound the clockwork that turned the lens, and wrote the wind, the sea and the ships he saw in the log, as his father had done for forty years before him on the same rock. ";
    // English runs about 1.3 tokens a word; 1.5 leaves room to spare.
    let target_tokens = (n_ctx / 2).clamp(64, 2048);
    let words_each = PARAGRAPH.split_whitespace().count() as u32;
    let repeats = (target_tokens * 2 / 3 / words_each).max(1);
    let mut p = PARAGRAPH.repeat(repeats as usize);
    p.push_str("Say in one word what the keeper climbed.");
    p
}

/// One phase at one cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// Runs before the window that brought the machine to its steady state at this cap (not
    /// measured).
    pub settle_runs: u32,
    pub runs: u32,
    /// The measured window: from the first measured run's start to the last one's end.
    pub window_s: f64,
    /// The phase's tokens in the window (prompt tokens for prefill, generated for decode).
    pub tokens: u64,
    /// The runs' rates, tok/s.
    pub tok_s: Spread,
    /// Whole-system energy over the window, J (the ledger's total; `None`: no power source).
    pub energy_j: Option<f64>,
    /// `energy_j / tokens` (the window's whole energy, the short gaps between runs included).
    pub j_per_token: Option<f64>,
    pub tokens_per_j: Option<f64>,
    /// Whole-system average power over the window, W.
    pub avg_w: Option<f64>,
    /// The capped devices' own average draw over the window, from their sensors, W: shows
    /// whether the cap bit (`None`: no sensor of theirs).
    pub device_w: Option<f64>,
}

impl PhaseFigures {
    /// The figures of `runs` measured over the window `energy` covers.
    pub fn of(
        phase: Phase,
        kind: CapKind,
        settle_runs: u32,
        runs: &[BenchRun],
        window_s: f64,
        energy: Option<&EnergyReport>,
    ) -> Self {
        let tokens: u64 = runs.iter().map(|r| phase.tokens(r)).sum();
        let rates: Vec<f64> = runs.iter().map(|r| phase.rate(r)).collect();
        let total = energy.and_then(|e| e.total.as_ref());
        let energy_j = total.map(|t| t.energy_j);
        let j_per_token = energy_j.filter(|_| tokens > 0).map(|j| j / tokens as f64);
        let tokens_per_j = energy_j.filter(|j| *j > 0.0).map(|j| tokens as f64 / j);
        let device_w = energy.and_then(|e| device_power(e, kind));
        Self {
            settle_runs,
            runs: runs.len() as u32,
            window_s,
            tokens,
            tok_s: Spread::of(&rates),
            energy_j,
            j_per_token,
            tokens_per_j,
            avg_w: total.and_then(|t| t.avg_w),
            device_w,
        }
    }
}

/// The capped devices' summed average power over a window: NVIDIA boards from NVML, CPU
/// packages from RAPL.
fn device_power(e: &EnergyReport, kind: CapKind) -> Option<f64> {
    let (source, covers) = match kind {
        CapKind::Gpu => (Source::Nvml, Covers::GpuBoard),
        CapKind::CpuPackage => (Source::Rapl, Covers::CpuPackage),
    };
    let w: Vec<f64> = e
        .sources
        .iter()
        .filter(|s| s.source == source && s.covers == covers)
        .filter_map(|s| s.avg_w)
        .collect();
    (!w.is_empty()).then(|| w.iter().sum())
}

/// One cap of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapFigures {
    pub cap_w: f64,
    /// Each device as set, with the limit it reported in effect after.
    pub applied: Vec<Applied>,
    pub prefill: PhaseFigures,
    pub decode: PhaseFigures,
    /// The measured prefill runs (the decode runs are the point's `result.runs`).
    pub prefill_runs: Vec<BenchRun>,
}

/// The sweep as a whole: what was capped, how it was measured, and its knees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapSweep {
    pub kind: CapKind,
    /// Why these devices: "the model runs on the GPU", "--cap-device cpu", ...
    pub rule: String,
    pub devices: Vec<String>,
    /// The limits as found, restored after the sweep: "GPU 0 (...) 700 W".
    pub originals: Vec<String>,
    /// The highest of the limits as found, W (the board's or the package's long-term one).
    pub stock_w: Option<f64>,
    pub cooldown_s: f64,
    pub settle_s: f64,
    pub window_s: f64,
    pub tolerance_pct: f64,
    pub knee: Option<Knee>,
    /// How to set the recommended cap by hand, one command per device.
    #[serde(default)]
    pub commands: Vec<String>,
}

/// Both knees and the recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    pub tolerance_pct: f64,
    /// The highest cap swept: every speed is compared with its.
    pub reference_w: f64,
    pub decode_w: f64,
    pub prefill_w: f64,
    pub recommended_w: f64,
    /// At the recommended cap against the reference, percent (negative: slower, fewer).
    pub decode_change_pct: f64,
    pub prefill_change_pct: f64,
    pub tokens_per_j_change_pct: Option<f64>,
    /// Why this cap, one sentence.
    pub reason: String,
}

/// One cap's figures the knee is found from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub cap_w: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub decode_tokens_per_j: Option<f64>,
}

impl CurvePoint {
    pub fn of(c: &CapFigures) -> Self {
        Self {
            cap_w: c.cap_w,
            prefill_tok_s: c.prefill.tok_s.median,
            decode_tok_s: c.decode.tok_s.median,
            decode_tokens_per_j: c.decode.tokens_per_j,
        }
    }
}

fn change_pct(now: f64, reference: f64) -> f64 {
    (now / reference - 1.0) * 100.0
}

/// Index (into `sorted`, highest cap first) of the lowest cap down to which `rate` keeps
/// within `tol` of the first's, every cap above it too.
fn knee_index(sorted: &[CurvePoint], rate: impl Fn(&CurvePoint) -> f64, tol: f64) -> usize {
    let Some(reference) = sorted.first().map(&rate) else {
        return 0;
    };
    let floor = reference * (1.0 - tol);
    sorted
        .iter()
        .skip(1)
        .take_while(|p| {
            let r = rate(p);
            r.is_finite() && r >= floor
        })
        .count()
}

/// The knees and the recommended cap of a sweep (see the module comment); `None` without a
/// usable reference (no point, or a reference speed of zero).
pub fn knee(points: &[CurvePoint], tolerance_pct: f64) -> Option<Knee> {
    let mut sorted: Vec<CurvePoint> = points
        .iter()
        .copied()
        .filter(|p| p.cap_w.is_finite())
        .collect();
    sorted.sort_by(|a, b| b.cap_w.total_cmp(&a.cap_w));
    let reference = *sorted.first()?;
    if !(reference.decode_tok_s > 0.0 && reference.prefill_tok_s > 0.0) {
        return None;
    }
    let tol = (tolerance_pct / 100.0).clamp(0.0, 1.0);
    let d = knee_index(&sorted, |p| p.decode_tok_s, tol);
    let p = knee_index(&sorted, |p| p.prefill_tok_s, tol);
    let within = &sorted[..=d];
    let energy = within.iter().all(|c| c.decode_tokens_per_j.is_some());
    let best = if energy {
        // Most tokens per joule; on a tie the lower cap (later in `within`).
        within
            .iter()
            .copied()
            .reduce(|best, c| {
                if c.decode_tokens_per_j >= best.decode_tokens_per_j {
                    c
                } else {
                    best
                }
            })
            .unwrap_or(reference)
    } else {
        sorted[d]
    };
    let tpj = match (best.decode_tokens_per_j, reference.decode_tokens_per_j) {
        (Some(b), Some(r)) if r > 0.0 => Some(change_pct(b, r)),
        _ => None,
    };
    let pct = tolerance_pct;
    let (rw, dw, pw, bw) = (
        watts_text(reference.cap_w),
        watts_text(sorted[d].cap_w),
        watts_text(sorted[p].cap_w),
        watts_text(best.cap_w),
    );
    let reason = if best.cap_w == reference.cap_w {
        if d == 0 {
            format!(
                "decode loses more than {pct} % below {rw}: no lower cap keeps its speed, so keep {rw}"
            )
        } else {
            format!(
                "decode keeps within {pct} % of {rw}'s speed down to {dw}, but no cap in that range gives more decode tokens per joule than {rw}: keep {rw}"
            )
        }
    } else {
        let energy_text = tpj
            .map(|t| format!("{t:+.0} % decode tokens per joule"))
            .unwrap_or_else(|| "decode tokens per joule unknown (no power source)".into());
        format!(
            "decode (memory-bound) keeps within {pct} % of {rw}'s speed down to {dw}, prefill (compute-bound) only down to {pw}; {bw} {}: {energy_text}, decode {:+.1} %, prefill {:+.1} % against {rw}",
            if energy {
                "gives the most decode tokens per joule in that range"
            } else {
                "is the decode knee"
            },
            change_pct(best.decode_tok_s, reference.decode_tok_s),
            change_pct(best.prefill_tok_s, reference.prefill_tok_s),
        )
    };
    Some(Knee {
        tolerance_pct,
        reference_w: reference.cap_w,
        decode_w: sorted[d].cap_w,
        prefill_w: sorted[p].cap_w,
        recommended_w: best.cap_w,
        decode_change_pct: change_pct(best.decode_tok_s, reference.decode_tok_s),
        prefill_change_pct: change_pct(best.prefill_tok_s, reference.prefill_tok_s),
        tokens_per_j_change_pct: tpj,
        reason,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "n/a".into(),
    }
}

fn pct_of(v: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && v.is_finite() => format!("{:.1} %", v / r * 100.0),
        _ => "n/a".into(),
    }
}

/// What a cap is in the knee's terms: "reference", "decode knee", "recommended", ...
fn marks(cap_w: f64, k: Option<&Knee>) -> String {
    let Some(k) = k else {
        return String::new();
    };
    let mut m = Vec::new();
    if cap_w == k.reference_w {
        m.push("reference");
    }
    if cap_w == k.prefill_w {
        m.push("prefill knee");
    }
    if cap_w == k.decode_w {
        m.push("decode knee");
    }
    if cap_w == k.recommended_w {
        m.push("RECOMMENDED");
    }
    m.join(", ")
}

/// One row per cap, highest first, then the knees and the recommendation.
pub fn render_table(sweep: &CapSweep, caps: &[&CapFigures]) -> String {
    let k = sweep.knee.as_ref();
    let mut sorted: Vec<&CapFigures> = caps.to_vec();
    sorted.sort_by(|a, b| b.cap_w.total_cmp(&a.cap_w));
    let reference = sorted.first().copied();
    let ref_pre = reference.map(|r| r.prefill.tok_s.median);
    let ref_dec = reference.map(|r| r.decode.tok_s.median);
    let ref_tpj = reference.and_then(|r| r.decode.tokens_per_j);
    let head: Vec<String> = [
        "cap",
        "in effect",
        "prefill tok/s",
        "of ref",
        "decode tok/s",
        "of ref",
        "decode tok/J",
        "of ref",
        "prefill J/tok",
        "device W",
        "system W",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = vec![head];
    for c in &sorted {
        let in_effect: Vec<f64> = c.applied.iter().filter_map(|a| a.in_effect_w).collect();
        let in_effect = if in_effect.is_empty() {
            "n/a".into()
        } else if in_effect.iter().all(|w| (w - in_effect[0]).abs() < 0.05) {
            watts_text(in_effect[0])
        } else {
            in_effect
                .iter()
                .map(|w| watts_text(*w))
                .collect::<Vec<_>>()
                .join("/")
        };
        rows.push(vec![
            watts_text(c.cap_w),
            in_effect,
            format!("{:.1}", c.prefill.tok_s.median),
            pct_of(c.prefill.tok_s.median, ref_pre),
            format!("{:.1}", c.decode.tok_s.median),
            pct_of(c.decode.tok_s.median, ref_dec),
            opt(c.decode.tokens_per_j, 3),
            c.decode
                .tokens_per_j
                .map(|t| pct_of(t, ref_tpj))
                .unwrap_or_else(|| "n/a".into()),
            opt(c.prefill.j_per_token, 4),
            opt(c.decode.device_w, 1),
            opt(c.decode.avg_w, 1),
            marks(c.cap_w, k),
        ]);
    }
    let last = rows.first().map_or(0, |r| r.len().saturating_sub(1));
    let mut o = super::align_columns(&rows, &[last], "  ");
    let devices = sweep
        .devices
        .iter()
        .map(|d| sanitize::terminal(d).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        o,
        "capped: {devices} ({}); device W: their own draw in the decode window, system W: the whole system's",
        sanitize::terminal(&sweep.rule)
    );
    let _ = writeln!(
        o,
        "each cap: {:.0} s cool-down, {:.0} s of unmeasured runs to a steady state, then at least {:.0} s measured per phase; prefill: a long prompt cut after one token, decode: the story prompt",
        sweep.cooldown_s, sweep.settle_s, sweep.window_s
    );
    match k {
        Some(k) => {
            let _ = writeln!(
                o,
                "knee: the lowest cap down to which a phase keeps within {} % of its speed at the reference ({}, the highest cap swept)",
                k.tolerance_pct,
                watts_text(k.reference_w)
            );
            if let Some(stock) = sweep.stock_w
                && stock > k.reference_w + 0.5
            {
                let _ = writeln!(
                    o,
                    "note: the limit as found was {}, above every cap swept; list it to compare with the uncapped speed",
                    watts_text(stock)
                );
            }
            let _ = writeln!(
                o,
                "decode knee {}, prefill knee {}",
                watts_text(k.decode_w),
                watts_text(k.prefill_w)
            );
            let _ = writeln!(
                o,
                "recommended cap: {}: {}",
                watts_text(k.recommended_w),
                k.reason
            );
            for c in &sweep.commands {
                let _ = writeln!(o, "  set it: {}", sanitize::terminal(c));
            }
        }
        None => {
            o.push_str(
                "no knee: the reference cap has no prefill or decode speed to compare with\n",
            );
        }
    }
    let _ = writeln!(
        o,
        "limits restored: {}",
        sweep
            .originals
            .iter()
            .map(|d| sanitize::terminal(d).into_owned())
            .collect::<Vec<_>>()
            .join("; ")
    );
    o
}

/// Prefill and decode speed against the cap (percent of the reference's), decode tokens per
/// joule on the right axis, both knees and the recommended cap marked.
pub fn render_svg(
    sweep: &CapSweep,
    caps: &[&CapFigures],
    model: &str,
    host: &str,
) -> Result<Chart, ChartError> {
    let reference = caps
        .iter()
        .copied()
        .max_by(|a, b| a.cap_w.total_cmp(&b.cap_w));
    let rel = |v: f64, r: Option<f64>| match r {
        Some(r) if r > 0.0 => v / r * 100.0,
        _ => f64::NAN,
    };
    let curve = |phase: Phase| {
        let r = reference.map(|c| match phase {
            Phase::Prefill => c.prefill.tok_s.median,
            Phase::Decode => c.decode.tok_s.median,
        });
        CapCurve {
            key: phase.name().into(),
            label: format!("{} speed (% of reference)", phase.name()),
            points: caps
                .iter()
                .map(|c| {
                    let v = match phase {
                        Phase::Prefill => c.prefill.tok_s.median,
                        Phase::Decode => c.decode.tok_s.median,
                    };
                    (c.cap_w, rel(v, r))
                })
                .collect(),
        }
    };
    let tpj: Vec<(f64, f64)> = caps
        .iter()
        .filter_map(|c| Some((c.cap_w, c.decode.tokens_per_j?)))
        .collect();
    let right = (!tpj.is_empty()).then(|| CapCurve {
        key: "decode_tokens_per_j".into(),
        label: "decode tokens per joule".into(),
        points: tpj,
    });
    let mut marks = Vec::new();
    if let Some(k) = &sweep.knee {
        for (key, text, w) in [
            ("prefill-knee", "prefill knee", k.prefill_w),
            ("decode-knee", "decode knee", k.decode_w),
            ("recommended", "recommended", k.recommended_w),
        ] {
            marks.push(CapMark {
                key: key.into(),
                label: format!("{text} {}", watts_text(w)),
                cap_w: w,
            });
        }
    }
    let subtitle = format!(
        "{model} on {host}; capped: {}; knee: within {} % of the highest cap's speed",
        sweep.devices.join(", "),
        sweep.tolerance_pct
    );
    chart::cap_knees(
        &format!("llmtop bench --sweep power-cap: {} caps", caps.len()),
        &subtitle,
        &[curve(Phase::Prefill), curve(Phase::Decode)],
        right.as_ref(),
        &marks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cap_w: f64, prefill: f64, decode: f64, tpj: Option<f64>) -> CurvePoint {
        CurvePoint {
            cap_w,
            prefill_tok_s: prefill,
            decode_tok_s: decode,
            decode_tokens_per_j: tpj,
        }
    }

    #[test]
    fn the_prefill_prompt_fills_about_half_the_context() {
        let words = |n| prefill_prompt(n).split_whitespace().count() as f64;
        // About 1.3 tokens a word: between a third and a half of the context.
        for n_ctx in [512u32, 4096] {
            let tokens = words(n_ctx) * 1.3;
            assert!(
                tokens > n_ctx as f64 / 3.0 && tokens < n_ctx as f64 / 2.0,
                "{n_ctx}: {tokens}"
            );
        }
        // At most ~2000 tokens however big the context.
        assert!(words(131_072) * 1.3 < 2048.0);
    }

    #[test]
    fn decode_holds_longer_than_prefill_and_the_most_efficient_cap_in_range_wins() {
        // An RTX 3090-like curve: decode flat to 250 W, prefill falling from 300 W.
        let pts = [
            p(250.0, 3500.0, 99.0, Some(0.41)),
            p(350.0, 5000.0, 100.0, Some(0.30)),
            p(200.0, 2600.0, 80.0, Some(0.40)),
            p(300.0, 4600.0, 99.6, Some(0.35)),
        ];
        let k = knee(&pts, 5.0).expect("knee");
        assert_eq!(k.reference_w, 350.0);
        assert_eq!(k.decode_w, 250.0);
        assert_eq!(k.prefill_w, 350.0);
        assert_eq!(k.recommended_w, 250.0);
        assert!((k.decode_change_pct - -1.0).abs() < 1e-9);
        assert!((k.prefill_change_pct - -30.0).abs() < 1e-9);
        let t = k.tokens_per_j_change_pct.expect("tpj");
        assert!((t - (0.41 / 0.30 - 1.0) * 100.0).abs() < 1e-9);
        assert!(k.reason.contains("down to 250 W"), "{}", k.reason);
    }

    #[test]
    fn a_dip_ends_the_knee_even_if_a_lower_cap_recovers() {
        let pts = [
            p(300.0, 100.0, 100.0, None),
            p(250.0, 100.0, 90.0, None),
            p(200.0, 100.0, 99.0, None),
        ];
        let k = knee(&pts, 5.0).expect("knee");
        assert_eq!(k.decode_w, 300.0);
        assert_eq!(k.prefill_w, 200.0);
        // Without energy the recommendation is the decode knee, here the reference.
        assert_eq!(k.recommended_w, 300.0);
        assert!(k.reason.contains("keep 300 W"), "{}", k.reason);
    }

    #[test]
    fn no_saving_keeps_the_reference_and_ties_go_to_the_lower_cap() {
        // Speed kept but energy per token not improved: keep the reference.
        let k = knee(
            &[
                p(300.0, 10.0, 10.0, Some(1.0)),
                p(250.0, 10.0, 10.0, Some(0.9)),
            ],
            5.0,
        )
        .expect("knee");
        assert_eq!((k.decode_w, k.recommended_w), (250.0, 300.0));
        assert!(k.reason.contains("no cap in that range"), "{}", k.reason);
        let k = knee(
            &[
                p(300.0, 10.0, 10.0, Some(1.0)),
                p(250.0, 10.0, 10.0, Some(1.0)),
            ],
            5.0,
        )
        .expect("knee");
        assert_eq!(k.recommended_w, 250.0);
        assert_eq!(knee(&[], 5.0), None);
        assert_eq!(knee(&[p(300.0, 0.0, 0.0, None)], 5.0), None);
    }
}
