//! `llmtop bench --sweep`: the bench run at every combination of a few settings, the table,
//! the JSON schema `--json` writes, the Pareto frontier of speed against energy and its chart.
//!
//! Schema `llmtop.sweep/1` (`--json FILE` with `--sweep`):
//!
//! ```text
//! { "schema": "llmtop.sweep/1",
//!   "started_unix": 1760000000,              seconds since the epoch when the sweep started
//!   "axes": [ { "key": "threads", "values": ["1", "2"] } ],   in the order given
//!   "points": [                             one per combination, first axis slowest
//!     { "setting": [ { "key": "threads", "value": "1" } ],
//!       "label": "threads=1",
//!       "gen_tok_s": 41.2,                  median generation speed of the measured runs
//!       "j_per_token": 0.61,                median J per generated token (null: no power source)
//!       "memory_gb_s": 9.8,                 median memory bandwidth generation used (decode roofline)
//!       "roofline_share": 0.76,             its median share of the memory's ceiling (null: none known)
//!       "costs": [ { "region": "US", "currency": "USD", "amount": 1.2e-6 } ],
//!                                           median cost of one run per region, from the ledger
//!       "frontier": true,                   on the Pareto frontier of (gen_tok_s, j_per_token)
//!       "result": { ... },                  the full `llmtop.bench/2` result at this setting
//!       "power_cap": { ... }                power-cap sweeps only: prefill and decode at
//!     } ],                                  this cap (`report::power_cap::CapFigures`)
//!   "power_cap": { ... } }                  power-cap sweeps only: the devices, the limits
//!                                           as found, the timing, the knees
//!                                           (`report::power_cap::CapSweep`)
//! ```

use crate::report::bench::{BenchResult, RunCost, median_costs};
use crate::report::chart::{self, Chart, ChartError, Point};
use crate::report::power_cap::{CapFigures, CapSweep};
use crate::util::sanitize;
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "llmtop.sweep/1";

/// A setting a sweep can vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepKey {
    Threads,
    GpuLayers,
    Ctx,
    Model,
    /// The power limit, W: NVIDIA boards' through NVML, or CPU packages' through RAPL (see
    /// `report::power_cap`).
    PowerCap,
}

impl SweepKey {
    pub const ALL: [SweepKey; 5] = [
        Self::Threads,
        Self::GpuLayers,
        Self::Ctx,
        Self::Model,
        Self::PowerCap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Threads => "threads",
            Self::GpuLayers => "gpu-layers",
            Self::Ctx => "ctx",
            Self::Model => "model",
            Self::PowerCap => "power-cap",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Self::Threads => "--sweep threads=1,2,4",
            Self::GpuLayers => "--sweep gpu-layers=0,16,99",
            Self::Ctx => "--sweep ctx=512,2048",
            Self::Model => "--sweep model=a.gguf,b.gguf",
            Self::PowerCap => "--sweep power-cap=350,300,250,200",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "threads" => Some(Self::Threads),
            "gpu-layers" | "gpu_layers" => Some(Self::GpuLayers),
            "ctx" | "n-ctx" | "n_ctx" => Some(Self::Ctx),
            "model" => Some(Self::Model),
            "power-cap" | "power_cap" | "powercap" => Some(Self::PowerCap),
            _ => None,
        }
    }
}

/// One varied setting and its values, as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepAxis {
    pub key: SweepKey,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepValue {
    pub key: SweepKey,
    pub value: String,
}

/// A bad `--sweep`: one line naming the key, the cause and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    #[error("--sweep {spec:?}: no '='; write KEY=V1,V2,... e.g. --sweep threads=1,2,4")]
    NoEquals { spec: String },
    #[error(
        "--sweep {spec:?}: unknown key {key:?}; use threads, gpu-layers, ctx, model or power-cap, e.g. --sweep threads=1,2,4"
    )]
    UnknownKey { spec: String, key: String },
    #[error("--sweep {key}: no values; list them after '=', e.g. {example}")]
    Empty {
        key: &'static str,
        example: &'static str,
    },
    #[error("--sweep {key}: {value:?} {why}; e.g. {example}")]
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
        example: &'static str,
    },
    #[error("--sweep {key}: {value:?} is listed twice; list each value once")]
    Repeated { key: &'static str, value: String },
    #[error("--sweep {key} is given twice; put every value in one --sweep {key}=...")]
    TwoAxes { key: &'static str },
    #[error(
        "--sweep power-cap cannot be combined with --sweep {other}: the knee compares caps at one setting; run one power-cap sweep per {other} value (--{flag} N)"
    )]
    CapWithOthers {
        other: &'static str,
        flag: &'static str,
    },
}

/// Parse the `--sweep KEY=V1,V2` arguments, in order (pure: a model path is checked by the
/// caller, which can look at files).
pub fn parse_axes(specs: &[String]) -> Result<Vec<SweepAxis>, SweepError> {
    let mut axes: Vec<SweepAxis> = Vec::new();
    for spec in specs {
        let (k, v) = spec.split_once('=').ok_or_else(|| SweepError::NoEquals {
            spec: sanitize::terminal(spec).into_owned(),
        })?;
        let key = SweepKey::parse(k).ok_or_else(|| SweepError::UnknownKey {
            spec: sanitize::terminal(spec).into_owned(),
            key: sanitize::terminal(k.trim()).into_owned(),
        })?;
        if axes.iter().any(|a| a.key == key) {
            return Err(SweepError::TwoAxes { key: key.name() });
        }
        let values: Vec<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if values.is_empty() {
            return Err(SweepError::Empty {
                key: key.name(),
                example: key.example(),
            });
        }
        let mut seen: Vec<String> = Vec::new();
        for value in &values {
            let bad = |why| SweepError::BadValue {
                key: key.name(),
                value: sanitize::terminal(value).into_owned(),
                why,
                example: key.example(),
            };
            let canonical = match key {
                SweepKey::Threads | SweepKey::Ctx => match value.parse::<u32>() {
                    Ok(n) if n >= 1 => n.to_string(),
                    _ => return Err(bad("is not a whole number of 1 or more")),
                },
                SweepKey::GpuLayers => match value.parse::<u32>() {
                    Ok(n) => n.to_string(),
                    _ => return Err(bad("is not a whole number of 0 or more")),
                },
                SweepKey::Model => value.clone(),
                SweepKey::PowerCap => {
                    match value.trim_end_matches(['W', 'w']).trim().parse::<f64>() {
                        Ok(w) if w.is_finite() && w > 0.0 && w <= 100_000.0 => format!("{w}"),
                        _ => return Err(bad("is not a power in watts above 0")),
                    }
                }
            };
            if seen.contains(&canonical) {
                return Err(SweepError::Repeated {
                    key: key.name(),
                    value: sanitize::terminal(value).into_owned(),
                });
            }
            seen.push(canonical);
        }
        axes.push(SweepAxis { key, values: seen });
    }
    if axes.iter().any(|a| a.key == SweepKey::PowerCap)
        && let Some(other) = axes.iter().find(|a| a.key != SweepKey::PowerCap)
    {
        return Err(SweepError::CapWithOthers {
            other: other.key.name(),
            flag: match other.key {
                SweepKey::Ctx => "n-ctx",
                k => k.name(),
            },
        });
    }
    Ok(axes)
}

/// Every combination of the axes' values, the first axis varying slowest.
pub fn combinations(axes: &[SweepAxis]) -> Vec<Vec<SweepValue>> {
    let mut out: Vec<Vec<SweepValue>> = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push(SweepValue {
                        key: axis.key,
                        value: v.clone(),
                    });
                    p
                })
            })
            .collect();
    }
    out
}

/// `threads=2 ctx=512`; a model is named by its file name.
pub fn setting_label(setting: &[SweepValue]) -> String {
    setting
        .iter()
        .map(|s| {
            let v = if s.key == SweepKey::Model {
                std::path::Path::new(&s.value)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| s.value.clone())
            } else {
                s.value.clone()
            };
            format!("{}={v}", s.key.name())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub schema: String,
    pub started_unix: u64,
    pub axes: Vec<SweepAxis>,
    pub points: Vec<SweepPoint>,
    /// A power-cap sweep: what was capped, how, and its knees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cap: Option<CapSweep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub setting: Vec<SweepValue>,
    pub label: String,
    pub gen_tok_s: f64,
    pub j_per_token: Option<f64>,
    /// Median memory bandwidth generation used, GB/s, and its share of the ceiling.
    #[serde(default)]
    pub memory_gb_s: Option<f64>,
    #[serde(default)]
    pub roofline_share: Option<f64>,
    pub costs: Vec<RunCost>,
    pub frontier: bool,
    pub result: BenchResult,
    /// A power-cap sweep's figures at this cap, prefill and decode apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_cap: Option<CapFigures>,
}

impl SweepPoint {
    /// The point for one finished bench: its figures are the bench summary's medians and the
    /// median of the ledger's cost of each run; `frontier` is set by [`SweepResult::new`].
    pub fn of(setting: Vec<SweepValue>, result: BenchResult) -> Self {
        Self {
            label: setting_label(&setting),
            setting,
            gen_tok_s: result.summary.gen_tok_s.median,
            j_per_token: result.summary.j_per_token.map(|s| s.median),
            memory_gb_s: result.summary.memory_gb_s.map(|s| s.median),
            roofline_share: result.summary.roofline_share.map(|s| s.median),
            costs: median_costs(&result),
            frontier: false,
            result,
            power_cap: None,
        }
    }
}

impl SweepResult {
    /// The sweep with its Pareto frontier marked.
    pub fn new(started_unix: u64, axes: Vec<SweepAxis>, mut points: Vec<SweepPoint>) -> Self {
        let front = pareto(
            &points
                .iter()
                .map(|p| (p.gen_tok_s, p.j_per_token))
                .collect::<Vec<_>>(),
        );
        for (p, f) in points.iter_mut().zip(front) {
            p.frontier = f;
        }
        Self {
            schema: SCHEMA.into(),
            started_unix,
            axes,
            points,
            power_cap: None,
        }
    }

    /// The power-cap figures of every point, in the sweep's order.
    pub fn caps(&self) -> Vec<&CapFigures> {
        self.points
            .iter()
            .filter_map(|p| p.power_cap.as_ref())
            .collect()
    }
}

/// Which points are on the Pareto frontier of speed (`.0`, more is better) against energy
/// (`.1`, less is better): those no other point beats on one without losing on the other.
/// A point without an energy figure cannot be placed and is never on it.
pub fn pareto(points: &[(f64, Option<f64>)]) -> Vec<bool> {
    let ok = |p: &(f64, Option<f64>)| p.0.is_finite() && p.1.is_some_and(f64::is_finite);
    points
        .iter()
        .map(|a| {
            let (Some(ay), true) = (a.1, ok(a)) else {
                return false;
            };
            !points.iter().filter(|b| ok(b)).any(|b| {
                let by = b.1.unwrap_or(f64::INFINITY);
                b.0 >= a.0 && by <= ay && (b.0 > a.0 || by < ay)
            })
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "n/a".into(),
    }
}

/// One row per setting; `*` marks the frontier. A power-cap sweep has its own table.
pub fn render_table(r: &SweepResult) -> String {
    if let Some(cap) = &r.power_cap {
        let mut out = crate::report::power_cap::render_table(cap, &r.caps());
        // Runs kept with --allow-contention: the speeds moved with the other work too.
        let contended: Vec<String> = r
            .points
            .iter()
            .filter(|p| p.result.contended)
            .filter_map(|p| p.power_cap.as_ref())
            .map(|c| crate::sensors::powerlimit::watts_text(c.cap_w))
            .collect();
        if !contended.is_empty() {
            out.push_str(&format!(
                "CONTENDED: other programs took llama.cpp's CPUs while it decoded at {} (kept by --allow-contention); those speeds moved with that work as well as with the cap, so neither knee is the cap's alone\n",
                contended.join(", ")
            ));
        }
        return out;
    }
    let region = r
        .points
        .iter()
        .find_map(|p| p.costs.first())
        .map(|c| (c.region.clone(), c.currency.clone()));
    let cost_head = region
        .as_ref()
        .map(|(reg, _)| format!("cost/run {reg}"))
        .unwrap_or_else(|| "cost/run".into());
    let head = [
        "setting".to_string(),
        "gen tok/s".into(),
        "prefill tok/s".into(),
        "TTFT ms".into(),
        "J/token".into(),
        "mem GB/s".into(),
        "% of mem".into(),
        "Wh/run".into(),
        cost_head,
        "frontier".into(),
    ];
    let mut rows = vec![head.to_vec()];
    for p in &r.points {
        let s = &p.result.summary;
        let cost = region
            .as_ref()
            .and_then(|(reg, cur)| {
                p.costs
                    .iter()
                    .find(|c| &c.region == reg && &c.currency == cur)
            })
            .and_then(|c| {
                crate::accounting::pricing::Currency::new(&c.currency)
                    .ok()
                    .map(|cur| crate::accounting::pricing::format_money(c.amount, &cur))
            })
            .unwrap_or_else(|| "n/a".into());
        rows.push(vec![
            sanitize::terminal(&p.label).into_owned(),
            format!("{:.1}", p.gen_tok_s),
            format!("{:.1}", s.prefill_tok_s.median),
            format!("{:.0}", s.ttft_ms.median),
            opt(p.j_per_token, 3),
            opt(p.memory_gb_s, 2),
            opt(p.roofline_share.map(|x| x * 100.0), 1),
            opt(s.energy_wh.map(|e| e.median), 4),
            cost,
            if p.frontier {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    let mut o = super::align_columns(&rows, &[0], "");
    if r.points.iter().all(|p| p.j_per_token.is_none()) {
        o.push_str("no energy figure (no readable power source), so no frontier\n");
    } else {
        o.push_str("* on the frontier: no other setting is both faster and cheaper per token\n");
    }
    o
}

/// Generation speed against energy per token, the frontier marked; a power-cap sweep: speed
/// against the cap, the knees marked.
pub fn render_svg(r: &SweepResult) -> Result<Chart, ChartError> {
    if let Some(cap) = &r.power_cap {
        let (model, host) = r
            .points
            .first()
            .map(|p| {
                (
                    format!("{} {}", p.result.model.name, p.result.model.quantization),
                    p.result.host.cpu_model.clone(),
                )
            })
            .unwrap_or_default();
        return crate::report::power_cap::render_svg(cap, &r.caps(), &model, &host);
    }
    let points: Vec<Point> = r
        .points
        .iter()
        .filter_map(|p| {
            Some(Point {
                label: p.label.clone(),
                x: p.gen_tok_s,
                y: p.j_per_token?,
                frontier: p.frontier,
            })
        })
        .collect();
    let mut models: Vec<String> = r
        .points
        .iter()
        .map(|p| format!("{} {}", p.result.model.name, p.result.model.quantization))
        .collect();
    models.dedup();
    let host = r
        .points
        .first()
        .map(|p| p.result.host.cpu_model.clone())
        .unwrap_or_default();
    let left_out = r.points.len() - points.len();
    let subtitle = format!(
        "{} on {host}; frontier (orange): fastest, cheapest and those between{}",
        models.join(" / "),
        if left_out > 0 {
            format!("; {left_out} setting(s) without an energy figure left out")
        } else {
            String::new()
        }
    );
    chart::frontier_scatter(
        &format!("llmtop bench --sweep: {} settings", r.points.len()),
        &subtitle,
        "generation (tok/s, median)",
        "energy (J/token, median)",
        &points,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_of_a_known_set() {
        // b and d trade speed for energy; a is beaten by b on both; c by d; e has no energy.
        let f = pareto(&[
            (10.0, Some(2.0)),
            (20.0, Some(1.5)),
            (25.0, Some(3.0)),
            (30.0, Some(2.5)),
            (50.0, None),
        ]);
        assert_eq!(f, [false, true, false, true, false]);
        // Equal points do not beat each other.
        assert_eq!(pareto(&[(1.0, Some(1.0)), (1.0, Some(1.0))]), [true, true]);
    }

    #[test]
    fn power_caps_parse_in_watts_and_stand_alone() {
        let axes = parse_axes(&["power-cap=350, 300W,12.5".into()]).expect("ok");
        assert_eq!(axes[0].key, SweepKey::PowerCap);
        assert_eq!(axes[0].values, ["350", "300", "12.5"]);
        let e = parse_axes(&["power-cap=300,-5".into()]).expect_err("negative");
        assert_eq!(
            e.to_string(),
            "--sweep power-cap: \"-5\" is not a power in watts above 0; e.g. --sweep power-cap=350,300,250,200"
        );
        assert!(matches!(
            parse_axes(&["power-cap=300,300.0".into()]),
            Err(SweepError::Repeated { .. })
        ));
        let e = parse_axes(&["threads=1,2".into(), "power-cap=300".into()]).expect_err("mixed");
        assert!(
            e.to_string().starts_with(
                "--sweep power-cap cannot be combined with --sweep threads: the knee compares caps at one setting"
            ),
            "{e}"
        );
    }

    #[test]
    fn axes_parse_and_combine() {
        let axes = parse_axes(&["threads=1, 2".into(), "ctx=512,2048".into()]).expect("ok");
        let c = combinations(&axes);
        let labels: Vec<String> = c.iter().map(|s| setting_label(s)).collect();
        assert_eq!(
            labels,
            [
                "threads=1 ctx=512",
                "threads=1 ctx=2048",
                "threads=2 ctx=512",
                "threads=2 ctx=2048"
            ]
        );
    }
}
