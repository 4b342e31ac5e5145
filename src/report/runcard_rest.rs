//! Two sections of the run card's session (`llmtop.runcard/1`, both optional): the wall's
//! remainder (what the wall plug measured beyond the parts) and the model loaded at rest
//! (waiting against answering, and what unloading would save).

use crate::accounting::at_rest::AtRest;
use crate::accounting::ledger::views::WallSplit;
use crate::accounting::remainder::RemainderView;
use serde::{Deserialize, Serialize};

/// The wall less the parts over the session.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CardRemainder {
    /// Over the session: W, and its share of the wall (0..1).
    pub avg_w: f64,
    pub share: f64,
    pub wall_w: f64,
    pub parts_w: f64,
    /// The idle remainder at the end, W.
    #[serde(default)]
    pub idle_w: Option<f64>,
    /// Under load: remainder = intercept + slope x parts.
    #[serde(default)]
    pub loaded_intercept_w: Option<f64>,
    #[serde(default)]
    pub loaded_slope: Option<f64>,
    /// Lasting changes of the idle remainder: something else started (or stopped) drawing
    /// power.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shifts: Vec<CardShift>,
    /// The parts are partly an estimate.
    #[serde(default)]
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardShift {
    /// Seconds on the card's `series` clock.
    pub t_s: f64,
    pub watts: f64,
    pub before_w: f64,
    pub after_w: f64,
    pub text: String,
}

impl CardRemainder {
    /// `split`: the session's wall against its parts; `view`: the fits and shifts; `origin`:
    /// sampler time of the series' zero.
    pub fn of(split: &WallSplit, view: Option<&RemainderView>, origin: f64) -> Self {
        Self {
            avg_w: split.remainder_w(),
            share: split.share().unwrap_or(0.0),
            wall_w: split.wall_w(),
            parts_w: split.parts_w(),
            idle_w: view.and_then(|v| v.idle_w),
            loaded_intercept_w: view.and_then(|v| v.loaded.map(|l| l.0)),
            loaded_slope: view.and_then(|v| v.loaded.map(|l| l.1)),
            shifts: view
                .map(|v| {
                    v.shifts
                        .iter()
                        .map(|s| CardShift {
                            t_s: s.t - origin,
                            watts: s.watts,
                            before_w: s.before_w,
                            after_w: s.after_w,
                            text: s.describe(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            estimated: split.estimated,
        }
    }
}

/// The model loaded with no request ("waiting") against replies ("answering").
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CardAtRest {
    pub waiting_s: f64,
    pub waiting_j: f64,
    #[serde(default)]
    pub waiting_w: Option<f64>,
    /// In `currency`, each joule priced when it was drawn.
    #[serde(default)]
    pub waiting_cost: Option<f64>,
    #[serde(default)]
    pub waiting_cost_per_hour: Option<f64>,
    pub answering_s: f64,
    pub answering_j: f64,
    #[serde(default)]
    pub answering_cost: Option<f64>,
    /// The machine's idle without the model, W, when it was measured (a server unloaded it).
    #[serde(default)]
    pub unloaded_w: Option<f64>,
    /// What unloading would save a month, around the clock.
    #[serde(default)]
    pub unloading_saves_per_month: Option<f64>,
    #[serde(default)]
    pub currency: Option<String>,
}

impl CardAtRest {
    pub fn of(a: &AtRest, currency: Option<&str>) -> Self {
        Self {
            waiting_s: a.waiting.seconds,
            waiting_j: a.waiting.energy_j,
            waiting_w: a.waiting.watts(),
            waiting_cost: a.waiting.cost,
            waiting_cost_per_hour: a.waiting.cost_per_hour(),
            answering_s: a.answering.seconds,
            answering_j: a.answering.energy_j,
            answering_cost: a.answering.cost,
            unloaded_w: a.unloaded.and_then(|u| u.watts()),
            unloading_saves_per_month: a.saving_per_month(),
            currency: currency.map(str::to_string),
        }
    }
}
