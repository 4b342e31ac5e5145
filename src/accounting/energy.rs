//! What the ledger reports: energy over a window per source and in total, with provenance, the
//! idle baseline and the per-second series of a run card. Plain data; the ledger
//! (`ledger.rs`) is the only thing that computes it.

use crate::accounting::uncertainty::Band;
pub use crate::sensors::counter::{CounterStep, counter_delta};
use crate::sensors::{Covers, Method, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Joules in one watt-hour.
pub const J_PER_WH: f64 = 3600.0;

/// Trapezoid integral of `(t, watts)` points (monotonic `t`): joules. Exact for piecewise-linear
/// power.
pub fn trapezoid(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

pub fn joules_to_wh(j: f64) -> f64 {
    j / J_PER_WH
}

/// How the system total was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalBasis {
    /// Smart plug(s) at the wall: what the user pays.
    Wall,
    /// Battery drain while discharging: the whole laptop, before charger losses.
    Battery,
    /// RAPL psys: the platform as the CPU sees it, not the wall.
    Platform,
    /// GPU boards + CPU packages + DRAM: PSU losses, disks, fans, board not included.
    Components,
}

/// Energy of one source over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEnergy {
    pub id: String,
    pub device: String,
    pub label: String,
    pub source: Source,
    pub covers: Covers,
    /// `Counter`: end minus start of a cumulative counter; `Measured`: integrated power;
    /// `Estimated`: integrated estimate.
    pub method: Method,
    pub energy_j: f64,
    pub wh: f64,
    pub avg_w: Option<f64>,
    pub peak_w: Option<f64>,
    /// Seconds of the window this source has data for.
    pub covered_s: f64,
    /// Counter resets seen in the window (their intervals count as zero).
    pub resets: u32,
    /// Whether this source is part of the system total.
    pub in_total: bool,
    /// Where the energy comes from: the counter's call or file, or the power reading that
    /// was integrated ("nvmlDeviceGetTotalEnergyConsumption", "power1_average").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Where the live watts come from ("NVML_FI_DEV_POWER_INSTANT (instant)", "rate of the
    /// counter").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_via: Option<String>,
    /// Where the truth of `energy_j` lies: the method's band and what sampling adds over
    /// this window ([`crate::accounting::uncertainty`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<Band>,
    /// The row of the method table that band comes from ("rapl_intel", "nvml_counter").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub band_row: String,
}

/// The whole machine over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalEnergy {
    pub energy_j: f64,
    pub wh: f64,
    pub avg_w: Option<f64>,
    pub peak_w: Option<f64>,
    pub basis: TotalBasis,
    /// Not a whole-system measurement (psys or a sum of components): the wall reads more.
    pub components_only: bool,
    /// At least one part is an estimate (utilisation x TDP), not a measurement.
    pub estimated: bool,
    /// Ids of the sources summed.
    pub sources: Vec<String>,
    /// Changes of basis inside the window (a source went silent or came back); the energy
    /// before and after each is measured on the basis in force then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<BasisChange>,
    /// The window was shorter than two steps of a quantised counter (NVML's, ~100 ms): its
    /// energy is the rate over the two steps around it times its length, not a difference.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apportioned: bool,
    /// Where the truth of `energy_j` lies (and of J/token, cost and CO2 taken from it): its
    /// sources' bands added over the window ([`crate::accounting::uncertainty`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<Band>,
}

/// A timestamped change of what the whole-system total is measured from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BasisChange {
    /// Sampler-clock seconds.
    pub t: f64,
    /// `None`: no total before (the first basis) or after (every source silent).
    pub from: Option<TotalBasis>,
    pub to: Option<TotalBasis>,
    /// Source ids summed after the change.
    pub sources: Vec<String>,
    /// Why, in a few words: "plug:shelly went silent (3.2 s)", "plug:shelly reporting".
    pub reason: String,
}

impl TotalBasis {
    /// How the UI names it: "wall plug", "battery", "platform (psys)", "sum of parts".
    pub fn describe(self) -> &'static str {
        match self {
            TotalBasis::Wall => "wall plug",
            TotalBasis::Battery => "battery",
            TotalBasis::Platform => "platform (psys)",
            TotalBasis::Components => "sum of parts",
        }
    }

    /// Priority order: the first that has a reporting source is the total.
    pub const ORDER: [TotalBasis; 4] = [
        TotalBasis::Wall,
        TotalBasis::Battery,
        TotalBasis::Platform,
        TotalBasis::Components,
    ];

    /// What a source must cover to be part of this basis.
    pub fn covers(self) -> &'static [Covers] {
        match self {
            TotalBasis::Wall => &[Covers::Wall],
            TotalBasis::Battery => &[Covers::Battery],
            TotalBasis::Platform => &[Covers::Platform],
            TotalBasis::Components => &[Covers::GpuBoard, Covers::CpuPackage, Covers::Dram],
        }
    }
}

/// Average power of the machine doing nothing, for net-of-idle energy: the whole-system
/// total's, and each energy channel's over the same window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub watts: f64,
    pub basis: TotalBasis,
    pub window_s: f64,
    /// Per energy channel id, its average power over the window, W.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, f64>,
}

/// Where an idle floor comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleFrom {
    /// Measured: an [`IdleBaseline`] window.
    Baseline,
    /// The source's own figure (the CPU estimate's `P_idle`).
    Source,
}

/// An idle floor, W, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleFloor {
    pub watts: f64,
    pub from: IdleFrom,
}

/// The one flooring rule of net-of-idle energy: a figure that reaches a user (a window's
/// report, a request's share, a process's joules) is floored at 0 once, as a whole. The
/// pieces it is summed from (sampling intervals, a request's intervals, a process's looks) are
/// never floored: an interval below idle lowers the figure it belongs to, so noise around idle
/// averages out instead of piling up, and the pieces of any window add up to its net.
pub fn floor_net(signed_j: f64) -> f64 {
    signed_j.max(0.0)
}

/// Energy over a window and its idle floor: the whole-system total's or one channel's, from
/// the ledger (`Ledger::total_above_idle`, `Ledger::channels_above_idle`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AboveIdle {
    pub gross_j: f64,
    /// Seconds of the window with data.
    pub covered_s: f64,
    /// `None`: no idle floor (no baseline on this basis or channel, no figure of its own).
    pub idle: Option<IdleFloor>,
}

impl AboveIdle {
    /// Gross less idle power x the seconds covered: signed, additive over any cut of the
    /// window. `None` without an idle floor.
    pub fn signed_j(&self) -> Option<f64> {
        self.idle.map(|i| self.gross_j - i.watts * self.covered_s)
    }

    /// The figure to show: [`floor_net`] of [`Self::signed_j`].
    pub fn net_j(&self) -> Option<f64> {
        self.signed_j().map(floor_net)
    }

    /// What a split hands out: the signed net where there is an idle floor, else the gross.
    pub fn signed_or_gross_j(&self) -> f64 {
        self.signed_j().unwrap_or(self.gross_j)
    }
}

/// One energy channel's [`AboveIdle`] over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAboveIdle {
    pub id: String,
    pub covers: Covers,
    pub method: Method,
    pub energy: AboveIdle,
}

/// What to report on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub t0: f64,
    pub t1: f64,
    /// Generated tokens, for J/token.
    pub tokens: Option<u64>,
    /// End of prefill / first token time, for the prefill vs decode split.
    pub phase_boundary: Option<f64>,
    /// Subtracted for the net figures (only when measured on the same basis).
    pub idle: Option<IdleBaseline>,
    /// The window stands alone (a reply): where it is shorter than two steps of a quantised
    /// energy counter (NVML's), its figures are apportioned from the steps around it and
    /// marked. Off for windows that tile a longer span (a meter's intervals), whose parts must
    /// add up exactly.
    pub apportion: bool,
}

/// Energy over a window: for the bench table and JSON, and run cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    pub t0: f64,
    pub t1: f64,
    pub duration_s: f64,
    pub sources: Vec<SourceEnergy>,
    pub total: Option<TotalEnergy>,
    pub idle_w: Option<f64>,
    /// Total minus idle power x the seconds the total covers, floored at 0 ([`floor_net`]).
    pub net_j: Option<f64>,
    /// Where the truth of `net_j` lies: the total's gain as the same fraction, its sampling
    /// error in joules on the smaller figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_band: Option<Band>,
    pub net_wh: Option<f64>,
    pub tokens: Option<u64>,
    pub j_per_token: Option<f64>,
    pub net_j_per_token: Option<f64>,
    pub prefill_j: Option<f64>,
    pub decode_j: Option<f64>,
    /// Decode energy / tokens, when the phase boundary is known.
    pub decode_j_per_token: Option<f64>,
    pub peak_temp_c: Option<f64>,
    /// Which sensor ("device label") reached `peak_temp_c`.
    pub peak_temp_sensor: Option<String>,
    pub max_fan_rpm: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
/// One second of a run card's time series.
pub struct SeriesPoint {
    /// Seconds from the start of the session.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub t_s: f64,
    /// Whole-system power from the ledger, on the basis in force then.
    #[serde(default)]
    pub power_w: Option<f64>,
    #[serde(default)]
    pub tok_s: Option<f64>,
    #[serde(default)]
    pub temps_c: BTreeMap<String, f64>,
    #[serde(default)]
    pub fans_rpm: BTreeMap<String, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_is_exact_on_lines() {
        assert_eq!(trapezoid(&[(0.0, 50.0), (2.0, 50.0), (10.0, 50.0)]), 500.0);
        // 10 W -> 30 W over 4 s = 80 J.
        assert_eq!(trapezoid(&[(0.0, 10.0), (1.0, 15.0), (4.0, 30.0)]), 80.0);
    }
}
