//! The bench result: the schema `llmtop bench --json` writes, its summary, and the table.

use crate::accounting::energy::EnergyReport;
use crate::accounting::energy::IdleBaseline;
use crate::accounting::pricing::{Currency, format_money};
use crate::accounting::uncertainty::Band;
use crate::engine::{ModelInfo, ReplyStats};
use crate::report::runcard::CardSettings;
use crate::sensors::SourceStatus;
use crate::sensors::host::{BuildInfo, HostInfo};
use crate::util::sanitize;
use serde::{Deserialize, Serialize};

/// The prompt of the video this project grew from.
pub const STORY_PROMPT: &str =
    "Write a 1000-word story about a lighthouse keeper who finds a message in a bottle.";
/// Enough room for 1000 words (about 1300 tokens for English).
pub const STORY_MAX_TOKENS: u32 = 1500;
/// Bumped whenever a field changes meaning or is removed (adding fields keeps the version).
/// 2: `settings` holds the settings in effect as the engine reported them (no model path;
/// sampling values greedy ignores are absent).
pub const SCHEMA: &str = "llmtop.bench/2";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub schema: String,
    /// Seconds since the Unix epoch when the bench started.
    pub started_unix: u64,
    pub host: HostInfo,
    pub build: BuildInfo,
    pub model: ModelInfo,
    /// The settings in effect, from the engine's report (`model`), as a run card records them.
    pub settings: CardSettings,
    pub prompt: String,
    pub warmup: bool,
    /// Power and temperature sources found, and why others are missing.
    pub sensors: Vec<SourceStatus>,
    /// Average system power with the model loaded and nothing generating.
    pub idle: Option<IdleBaseline>,
    /// The machine's memory bandwidth, and the ceiling this model's generation is judged
    /// against (where its layers sit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::sensors::bandwidth::Ceilings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<crate::accounting::roofline::Ceiling>,
    /// Some run was generated while other programs took the CPUs llama.cpp needed; only
    /// reported with `--allow-contention` (each run's `contention` says when and how much).
    #[serde(default)]
    pub contended: bool,
    pub runs: Vec<BenchRun>,
    pub summary: Summary,
}

/// One measured reply: the engine's figures and the energy over its wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    #[serde(flatten)]
    pub stats: ReplyStats,
    pub energy: Option<EnergyReport>,
    /// What the run's energy cost in each region, each joule priced when it was drawn.
    #[serde(default)]
    pub costs: Vec<RunCost>,
    /// Where the run slowed while the hardware held itself back, seconds from the run's
    /// start (absent: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle: Vec<crate::report::runcard::CardThrottle>,
    /// Memory bandwidth generation used and its share of the ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline: Option<crate::accounting::roofline::Roofline>,
    /// Where other programs took the CPUs llama.cpp needed, seconds from the run's start
    /// (absent: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contention: Vec<crate::accounting::contention::Contention>,
}

/// The cost of one run in one tariff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCost {
    /// Region code, or "own".
    pub region: String,
    pub currency: String,
    pub amount: f64,
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
    /// Memory bandwidth generation used, GB/s, and its share of the ceiling (1.0 = 100 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gb_s: Option<Spread>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline_share: Option<Spread>,
    /// The widest error band of any run's energy (each run's own is in its
    /// `energy.total.band`): where the truth of the energy rows, J/token and cost lies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_band: Option<Band>,
    /// ... and of the net-of-idle figures (`energy.net_band`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_band: Option<Band>,
}

/// The widest of some bands (each side on its own), when every one is known.
fn widest(bands: impl Iterator<Item = Option<Band>>) -> Option<Band> {
    let all: Option<Vec<Band>> = bands.collect();
    all.filter(|v| !v.is_empty()).map(|v| Band {
        lo: v.iter().map(|b| b.lo).fold(0.0, f64::min),
        hi: v.iter().map(|b| b.hi).fold(0.0, f64::max),
    })
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
            memory_gb_s: roof(runs, |r| Some(r.gb_s)),
            roofline_share: roof(runs, |r| r.share),
            energy_band: widest(runs.iter().map(|r| {
                r.energy
                    .as_ref()
                    .and_then(|e| e.total.as_ref())
                    .and_then(|t| t.band)
            })),
            net_band: widest(
                runs.iter()
                    .map(|r| r.energy.as_ref().and_then(|e| e.net_band)),
            ),
        }
    }
}

/// A roofline figure over the runs, when every run has it.
fn roof(
    runs: &[BenchRun],
    g: fn(&crate::accounting::roofline::Roofline) -> Option<f64>,
) -> Option<Spread> {
    let v: Option<Vec<f64>> = runs
        .iter()
        .map(|r| r.roofline.as_ref().and_then(g))
        .collect();
    v.filter(|v| !v.is_empty()).map(|v| Spread::of(&v))
}

/// The median cost of one run in each region (regions in the order the runs list them); the
/// amounts are the ledger's, priced when each joule was drawn.
pub fn median_costs(r: &BenchResult) -> Vec<RunCost> {
    let mut out: Vec<RunCost> = Vec::new();
    for c in r.runs.iter().flat_map(|run| &run.costs) {
        if out
            .iter()
            .any(|o| o.region == c.region && o.currency == c.currency)
        {
            continue;
        }
        let amounts: Vec<f64> = r
            .runs
            .iter()
            .flat_map(|run| &run.costs)
            .filter(|x| x.region == c.region && x.currency == c.currency)
            .map(|x| x.amount)
            .collect();
        out.push(RunCost {
            region: c.region.clone(),
            currency: c.currency.clone(),
            amount: Spread::of(&amounts).median,
        });
    }
    out
}

/// What the median run cost in each region, and per 1000 runs (sub-cent amounts stay readable).
pub fn cost_lines(r: &BenchResult) -> String {
    let mut out = String::new();
    for c in median_costs(r) {
        let Ok(cur) = Currency::new(&c.currency) else {
            continue;
        };
        out.push_str(&format!(
            "cost per run, {:<4} {:>12}   per 1000 runs {:>10}\n",
            c.region,
            format_money(c.amount, &cur),
            format_money(c.amount * 1000.0, &cur)
        ));
    }
    out
}

/// The human table: one row per figure, median/min/max columns. The model's name and the
/// host come from the GGUF file and the machine: sanitised.
pub fn render_table(r: &BenchResult) -> String {
    let mut out = String::new();
    let m = &r.model;
    let st = &r.settings;
    let head = format!(
        "{} ({}, {}, {:.0} MB) on {} - {} threads, GPU layers {}, n_ctx {}, sampler {}, {} run(s)",
        m.name,
        m.quantization,
        m.architecture,
        m.file_size as f64 / 1e6,
        r.host.cpu_model,
        st.threads,
        st.gpu_layers,
        st.n_ctx,
        st.sampler_text(),
        r.runs.len()
    );
    out.push_str(&sanitize::terminal(&head));
    out.push_str("\n\n");
    out.push_str(&format!(
        "{:<22}{:>12}{:>12}{:>12}  {}\n",
        "", "median", "min", "max", "error band"
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
    // Each energy figure with the band its sensors allow (the widest of the runs); a peak is
    // one reading, not an integral, and has none.
    let energy_rows: [(&str, &Option<Spread>, usize, Option<Band>); 5] = [
        ("energy (Wh)", &s.energy_wh, 4, s.energy_band),
        ("average power (W)", &s.avg_w, 1, s.energy_band),
        ("peak power (W)", &s.peak_w, 1, None),
        ("energy/token (J)", &s.j_per_token, 3, s.energy_band),
        ("net of idle (J/token)", &s.net_j_per_token, 3, s.net_band),
    ];
    for (name, sp, prec, band) in energy_rows {
        if let Some(sp) = sp {
            push_row(&mut out, name, sp, prec);
            if let Some(b) = band {
                // The band after the row's max: "±3 %", or "−67…+163 %" where wide.
                out.pop();
                out.push_str(&format!("  {}\n", b.text()));
            }
        }
    }
    if let Some(sp) = &s.memory_gb_s {
        push_row(&mut out, "memory read (GB/s)", sp, 2);
    }
    if let Some(sp) = &s.roofline_share {
        let pct = Spread {
            median: sp.median * 100.0,
            min: sp.min * 100.0,
            max: sp.max * 100.0,
        };
        push_row(&mut out, "of the ceiling (%)", &pct, 1);
    }
    out.push('\n');
    out.push_str(&sanitize::terminal(power_note(r).trim_end()));
    out.push('\n');
    if let Some(note) = memory_note(r) {
        out.push_str(&sanitize::terminal(&note));
        out.push('\n');
    }
    for (i, run) in r.runs.iter().enumerate() {
        for c in &run.contention {
            out.push_str(&format!(
                "run {}: {} (from {:.1} s into it)\n",
                i + 1,
                c.reply_text(run.stats.gen_tok_s),
                c.since
            ));
        }
    }
    out
}

/// What the memory figures rest on: the bytes a token reads and the ceiling.
fn memory_note(r: &BenchResult) -> Option<String> {
    let t = r.model.traffic.as_ref()?;
    let per_token = format!(
        "memory: {:.1} MB of weights a token{} + {:.1} KB of KV cache per token of context ({} layers x {} KV heads x {}+{} dims, {})",
        t.weight_bytes as f64 / 1e6,
        t.experts
            .as_ref()
            .map(|e| format!(" ({} of {} experts)", e.used, e.count))
            .unwrap_or_default(),
        t.kv_bytes_per_position as f64 / 1e3,
        t.kv_layers,
        t.kv_heads,
        t.head_dim_k,
        t.head_dim_v,
        t.kv_type
    );
    Some(match &r.ceiling {
        Some(c) => format!(
            "{per_token}; ceiling {} GB/s: {}",
            crate::accounting::roofline::gb(c.gb_s),
            c.what
        ),
        None => format!("{per_token}; no memory ceiling known for where this model runs"),
    })
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
        crate::accounting::energy::TotalBasis::Wall => "measured at the wall (smart plug)",
        crate::accounting::energy::TotalBasis::Battery => "battery drain",
        crate::accounting::energy::TotalBasis::Platform => "RAPL psys (platform, not the wall)",
        crate::accounting::energy::TotalBasis::Components => {
            "sum of components (GPU + CPU package + DRAM), not the wall"
        }
    };
    let mut note = format!("power: {basis}: {}", t.sources.join(", "));
    if t.estimated {
        note.push_str(" - ESTIMATED from CPU utilisation x TDP, not measured");
    }
    // A band wider than ±25 % in words, not only in the table's digits.
    if let Some(w) = r.summary.energy_band.and_then(Band::words) {
        note.push_str(&format!("; the energy {w}"));
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
}
