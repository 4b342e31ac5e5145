//! Energy accounting: pure functions over sampled readings. No I/O, no clock reads: times are
//! the sampler's monotonic seconds carried in each [`Sample`].
//!
//! Rules (see SENSORS.md): counters beat samples (end minus start of a cumulative counter, wrap-
//! and reset-safe); power is integrated (trapezoid) only where the same channel has no counter;
//! the system total is the wall plug if there is one, else the battery drain, else RAPL psys,
//! else the sum of non-overlapping components (GPU boards + CPU packages + DRAM).

use crate::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Joules in one watt-hour.
pub const J_PER_WH: f64 = 3600.0;

/// One step of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterStep {
    /// `cur >= prev`: the counter advanced by this much.
    Advanced(f64),
    /// The counter passed its wrap point once; this much was consumed.
    Wrapped(f64),
    /// The counter went backwards with no plausible wrap (driver reload, device reset, reboot
    /// of a plug): the interval's energy is unknown and counted as zero.
    Reset,
}

impl CounterStep {
    /// The energy this step contributes.
    pub fn energy(self) -> f64 {
        match self {
            CounterStep::Advanced(d) | CounterStep::Wrapped(d) => d,
            CounterStep::Reset => 0.0,
        }
    }
}

/// From `prev` to `cur` of a counter that wraps to zero at `wrap` (if known).
///
/// A wrap is only believed when the consumed amount is under half the range: a sampler reads
/// far more often than that (RAPL at 200 W wraps every ~22 minutes), so a larger "wrap" is
/// really a reset.
pub fn counter_delta(prev: f64, cur: f64, wrap: Option<f64>) -> CounterStep {
    if !prev.is_finite() || !cur.is_finite() {
        return CounterStep::Reset;
    }
    if cur >= prev {
        return CounterStep::Advanced(cur - prev);
    }
    match wrap {
        Some(w) if w > 0.0 && prev <= w && cur >= 0.0 => {
            let d = cur + (w - prev);
            if d <= w / 2.0 {
                CounterStep::Wrapped(d)
            } else {
                CounterStep::Reset
            }
        }
        _ => CounterStep::Reset,
    }
}

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
}

/// Average power of the machine doing nothing, for net-of-idle energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    pub watts: f64,
    pub basis: TotalBasis,
    pub window_s: f64,
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
    /// Total minus idle power x duration; may be slightly negative when the run drew less
    /// than the baseline (noise), left as measured.
    pub net_j: Option<f64>,
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

#[derive(Debug, Clone)]
struct Meta {
    device: String,
    label: String,
    source: Source,
    covers: Covers,
    method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Unwrapped cumulative joules.
    Counter,
    Power,
    Temperature,
    Fan,
}

#[derive(Debug, Clone)]
struct Series {
    meta: Meta,
    kind: Kind,
    /// For counters: unwrapped joules; `None` = no data at `t` (a gap for power).
    points: Vec<(f64, Option<f64>)>,
    last_raw: Option<f64>,
    unwrapped: f64,
    reset_times: Vec<f64>,
}

/// Folds samples into per-channel time series and answers questions about windows.
#[derive(Debug, Clone, Default)]
pub struct EnergyAccumulator {
    series: BTreeMap<String, Series>,
}

/// `rapl:package-0:energy` -> `rapl:package-0`: readings of one channel share this key, so a
/// power reading is not integrated where its channel has a counter.
fn channel_key(id: &str) -> &str {
    id.rsplit_once(':').map(|(k, _)| k).unwrap_or(id)
}

impl EnergyAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, sample: &Sample) {
        for r in &sample.readings {
            self.push_reading(sample.t, r);
        }
    }

    fn push_reading(&mut self, t: f64, r: &Reading) {
        let kind = match (r.quantity, r.method) {
            (Quantity::Energy, Method::Counter) => Kind::Counter,
            (Quantity::Power, _) => Kind::Power,
            (Quantity::Temperature, _) => Kind::Temperature,
            (Quantity::FanRpm, _) => Kind::Fan,
            _ => return,
        };
        if !t.is_finite() {
            return;
        }
        let s = self.series.entry(r.id.clone()).or_insert_with(|| Series {
            meta: Meta {
                device: r.device.clone(),
                label: r.label.clone(),
                source: r.source,
                covers: r.covers,
                method: r.method,
            },
            kind,
            points: Vec::new(),
            last_raw: None,
            unwrapped: 0.0,
            reset_times: Vec::new(),
        });
        // Timestamps must be monotonic per channel; drop anything else.
        if s.points.last().is_some_and(|&(lt, _)| t <= lt) {
            return;
        }
        let value = r.value.filter(|v| v.is_finite());
        match kind {
            Kind::Counter => {
                // Gaps in a counter are bridged: the counter kept counting meanwhile.
                let Some(raw) = value else { return };
                if let Some(prev) = s.last_raw {
                    let step = counter_delta(prev, raw, r.limit);
                    if step == CounterStep::Reset {
                        s.reset_times.push(t);
                    }
                    s.unwrapped += step.energy();
                }
                s.last_raw = Some(raw);
                s.points.push((t, Some(s.unwrapped)));
            }
            _ => s.points.push((t, value)),
        }
    }

    /// Forget points before `t` (keeping one so windows starting at `t` still interpolate).
    pub fn prune_before(&mut self, t: f64) {
        for s in self.series.values_mut() {
            let keep_from = s.points.partition_point(|&(pt, _)| pt < t);
            let keep_from = keep_from.saturating_sub(1);
            s.points.drain(..keep_from);
            s.reset_times.retain(|&rt| rt >= t);
        }
    }

    /// Bound memory in long sessions: points before `t` are thinned to one per `gap_s`
    /// seconds (the first of each interval). Counters stay exact (their points hold unwrapped
    /// joules, so any two retained points still differ by the energy between them); power is
    /// afterwards integrated over the coarser points; temperature and fan series keep each
    /// interval's highest value, so peaks survive.
    pub fn thin_before(&mut self, t: f64, gap_s: f64) {
        if !(gap_s > 0.0 && t.is_finite()) {
            return;
        }
        for s in self.series.values_mut() {
            let split = s.points.partition_point(|&(pt, _)| pt < t);
            if split < 2 {
                continue;
            }
            let peaks = matches!(s.kind, Kind::Temperature | Kind::Fan);
            let mut kept: Vec<(f64, Option<f64>)> = Vec::with_capacity(split / 2 + 1);
            let mut bucket = f64::NAN;
            for &(pt, v) in &s.points[..split] {
                let b = (pt / gap_s).floor();
                let replace = match kept.last() {
                    Some(&(_, last)) if b == bucket => {
                        if peaks {
                            v.is_some_and(|v| last.is_none_or(|l| v >= l))
                        } else {
                            // The first reading of the interval (so a series keeps its start),
                            // a reading preferred over n/a.
                            last.is_none() && v.is_some()
                        }
                    }
                    _ => {
                        kept.push((pt, v));
                        bucket = b;
                        continue;
                    }
                };
                if replace && let Some(k) = kept.last_mut() {
                    *k = (pt, v);
                }
            }
            kept.extend_from_slice(&s.points[split..]);
            s.points = kept;
        }
    }

    /// Points held, over all series (for tests and memory checks).
    pub fn point_count(&self) -> usize {
        self.series.values().map(|s| s.points.len()).sum()
    }

    /// Average system power over `[t0, t1]`, e.g. model loaded and nothing generating.
    pub fn idle_baseline(&self, t0: f64, t1: f64) -> Option<IdleBaseline> {
        let total = self.total_over(t0, t1)?;
        Some(IdleBaseline {
            watts: total.avg_w?,
            basis: total.basis,
            window_s: t1 - t0,
        })
    }

    fn total_over(&self, t0: f64, t1: f64) -> Option<TotalEnergy> {
        let sources = self.sources_over(t0, t1);
        select_total(&sources, self, t0, t1).map(|(t, _)| t)
    }

    fn energy_series(&self) -> impl Iterator<Item = (&String, &Series)> {
        let counters: std::collections::HashSet<&str> = self
            .series
            .iter()
            // A counter that never produced a value (unsupported on this device) must not
            // hide the power reading of the same channel.
            .filter(|(_, s)| s.kind == Kind::Counter && s.points.iter().any(|p| p.1.is_some()))
            .map(|(id, _)| channel_key(id))
            .collect();
        self.series.iter().filter(move |(id, s)| match s.kind {
            Kind::Counter => true,
            Kind::Power => !counters.contains(channel_key(id)),
            _ => false,
        })
    }

    fn sources_over(&self, t0: f64, t1: f64) -> Vec<SourceEnergy> {
        self.energy_series()
            .filter_map(|(id, s)| {
                let (energy_j, covered_s) = match s.kind {
                    Kind::Counter => counter_energy(&s.points, t0, t1)?,
                    _ => power_energy(&s.points, t0, t1)?,
                };
                let peak_w = peak_power(s, t0, t1);
                Some(SourceEnergy {
                    id: id.clone(),
                    device: s.meta.device.clone(),
                    label: s.meta.label.clone(),
                    source: s.meta.source,
                    covers: s.meta.covers,
                    method: s.meta.method,
                    energy_j,
                    wh: joules_to_wh(energy_j),
                    avg_w: (covered_s > 0.0).then(|| energy_j / covered_s),
                    peak_w,
                    covered_s,
                    resets: s
                        .reset_times
                        .iter()
                        .filter(|&&rt| rt > t0 && rt <= t1)
                        .count() as u32,
                    in_total: false,
                })
            })
            .collect()
    }

    /// Everything about `[w.t0, w.t1]`.
    pub fn report(&self, w: &Window) -> EnergyReport {
        let (t0, t1) = (w.t0, w.t1.max(w.t0));
        let duration_s = t1 - t0;
        let mut sources = self.sources_over(t0, t1);
        let total = select_total(&sources, self, t0, t1).map(|(total, ids)| {
            for s in sources.iter_mut() {
                s.in_total = ids.contains(&s.id);
            }
            total
        });
        let idle = w
            .idle
            .as_ref()
            .filter(|i| total.as_ref().is_some_and(|t| t.basis == i.basis));
        let idle_w = idle.map(|i| i.watts);
        let net_j = match (&total, idle_w) {
            (Some(t), Some(iw)) => Some(t.energy_j - iw * duration_s),
            _ => None,
        };
        let per_token = |j: Option<f64>| match (j, w.tokens) {
            (Some(j), Some(n)) if n > 0 => Some(j / n as f64),
            _ => None,
        };
        let total_j = total.as_ref().map(|t| t.energy_j);
        let (prefill_j, decode_j) = match w.phase_boundary {
            Some(b) if b >= t0 && b <= t1 => (
                self.total_over(t0, b).map(|t| t.energy_j),
                self.total_over(b, t1).map(|t| t.energy_j),
            ),
            _ => (None, None),
        };
        let (peak_temp_c, peak_temp_sensor) = self.peak_of(Kind::Temperature, t0, t1);
        let (max_fan_rpm, _) = self.peak_of(Kind::Fan, t0, t1);
        EnergyReport {
            t0,
            t1,
            duration_s,
            sources,
            idle_w,
            net_wh: net_j.map(joules_to_wh),
            net_j,
            tokens: w.tokens,
            j_per_token: per_token(total_j),
            net_j_per_token: per_token(net_j),
            decode_j_per_token: per_token(decode_j),
            prefill_j,
            decode_j,
            peak_temp_c,
            peak_temp_sensor,
            max_fan_rpm,
            total,
        }
    }

    fn peak_of(&self, kind: Kind, t0: f64, t1: f64) -> (Option<f64>, Option<String>) {
        let mut best: Option<(f64, String)> = None;
        for s in self.series.values().filter(|s| s.kind == kind) {
            for &(t, v) in &s.points {
                if let Some(v) = v.filter(|_| t >= t0 && t <= t1)
                    && best.as_ref().is_none_or(|(b, _)| v > *b)
                {
                    best = Some((v, format!("{} {}", s.meta.device, s.meta.label)));
                }
            }
        }
        match best {
            Some((v, name)) => (Some(v), Some(name)),
            None => (None, None),
        }
    }
}

/// Pick the total's basis and sum it. Returns the ids summed too.
fn select_total(
    sources: &[SourceEnergy],
    acc: &EnergyAccumulator,
    t0: f64,
    t1: f64,
) -> Option<(TotalEnergy, Vec<String>)> {
    let with = |c: Covers| -> Vec<&SourceEnergy> {
        sources
            .iter()
            .filter(|s| s.covers == c && s.covered_s > 0.0)
            .collect()
    };
    let (basis, parts) = [
        (TotalBasis::Wall, vec![Covers::Wall]),
        (TotalBasis::Battery, vec![Covers::Battery]),
        (TotalBasis::Platform, vec![Covers::Platform]),
        (
            TotalBasis::Components,
            vec![Covers::GpuBoard, Covers::CpuPackage, Covers::Dram],
        ),
    ]
    .into_iter()
    .map(|(b, cs)| (b, cs.into_iter().flat_map(&with).collect::<Vec<_>>()))
    .find(|(_, parts)| !parts.is_empty())?;
    let energy_j: f64 = parts.iter().map(|s| s.energy_j).sum();
    let covered = parts
        .iter()
        .map(|s| s.covered_s)
        .fold(f64::INFINITY, f64::min);
    let ids: Vec<String> = parts.iter().map(|s| s.id.clone()).collect();
    let peak_w = total_peak(acc, &ids, t0, t1);
    Some((
        TotalEnergy {
            energy_j,
            wh: joules_to_wh(energy_j),
            avg_w: (covered > 0.0 && covered.is_finite()).then(|| energy_j / covered),
            peak_w,
            basis,
            components_only: matches!(basis, TotalBasis::Platform | TotalBasis::Components),
            estimated: parts.iter().any(|s| s.method == Method::Estimated),
            sources: ids.clone(),
        },
        ids,
    ))
}

/// Linear interpolation of the valid points at `t` (clamped to none outside their range).
fn interp(points: &[(f64, f64)], t: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if t < first.0 || t > last.0 {
        return None;
    }
    let i = points.partition_point(|&(pt, _)| pt < t);
    if i < points.len() && points[i].0 == t {
        return Some(points[i].1);
    }
    let (a, b) = (points[i - 1], points[i]);
    Some(a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0))
}

/// Counter energy over the part of `[t0, t1]` the counter has data for: `(joules, seconds)`.
fn counter_energy(points: &[(f64, Option<f64>)], t0: f64, t1: f64) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|&(t, v)| v.map(|v| (t, v)))
        .collect();
    let (first, last) = (pts.first()?.0, pts.last()?.0);
    let (a, b) = (t0.max(first), t1.min(last));
    if b <= a {
        return None;
    }
    Some((interp(&pts, b)? - interp(&pts, a)?, b - a))
}

/// Trapezoid of power over `[t0, t1]`, skipping intervals with a missing end: `(joules, seconds)`.
fn power_energy(points: &[(f64, Option<f64>)], t0: f64, t1: f64) -> Option<(f64, f64)> {
    let mut joules = 0.0;
    let mut covered = 0.0;
    for w in points.windows(2) {
        let ((ta, Some(pa)), (tb, Some(pb))) = (w[0], w[1]) else {
            continue;
        };
        let (a, b) = (t0.max(ta), t1.min(tb));
        if b <= a {
            continue;
        }
        let seg = [(ta, pa), (tb, pb)];
        let (pa2, pb2) = (interp(&seg, a)?, interp(&seg, b)?);
        joules += trapezoid(&[(a, pa2), (b, pb2)]);
        covered += b - a;
    }
    (covered > 0.0).then_some((joules, covered))
}

/// Power of a series at `t`: a counter's rate over the interval holding `t`, or interpolated
/// power.
fn power_at(s: &Series, t: f64) -> Option<f64> {
    match s.kind {
        Kind::Counter => {
            if s.points.len() < 2 {
                return None;
            }
            let i = s.points.partition_point(|&(pt, _)| pt < t);
            let i = i.clamp(1, s.points.len() - 1);
            let ((ta, Some(ea)), (tb, Some(eb))) = (s.points[i - 1], s.points[i]) else {
                return None;
            };
            (tb > ta && t >= ta && t <= tb).then(|| (eb - ea) / (tb - ta))
        }
        Kind::Power => {
            let i = s.points.partition_point(|&(pt, _)| pt < t);
            if let Some(&(pt, v)) = s.points.get(i)
                && pt == t
            {
                return v;
            }
            let ((ta, Some(pa)), (tb, Some(pb))) =
                (*s.points.get(i.checked_sub(1)?)?, *s.points.get(i)?)
            else {
                return None;
            };
            interp(&[(ta, pa), (tb, pb)], t)
        }
        _ => None,
    }
}

fn peak_power(s: &Series, t0: f64, t1: f64) -> Option<f64> {
    match s.kind {
        Kind::Counter => s
            .points
            .windows(2)
            .filter(|w| w[1].0 > t0 && w[0].0 < t1 && w[1].0 > w[0].0)
            .filter_map(|w| Some((w[1].1? - w[0].1?) / (w[1].0 - w[0].0)))
            .reduce(f64::max),
        _ => {
            let inside = s
                .points
                .iter()
                .filter(|&&(t, _)| t >= t0 && t <= t1)
                .filter_map(|&(_, v)| v);
            let edges = [power_at(s, t0), power_at(s, t1)].into_iter().flatten();
            inside.chain(edges).reduce(f64::max)
        }
    }
}

/// Peak of the summed power, evaluated at every sample time of the parts in the window.
fn total_peak(acc: &EnergyAccumulator, ids: &[String], t0: f64, t1: f64) -> Option<f64> {
    let parts: Vec<&Series> = ids.iter().filter_map(|id| acc.series.get(id)).collect();
    let mut times: Vec<f64> = parts
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|&t| t > t0 && t <= t1)
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    times
        .into_iter()
        .filter_map(|t| {
            let vals: Vec<f64> = parts.iter().filter_map(|s| power_at(s, t)).collect();
            (!vals.is_empty()).then(|| vals.iter().sum())
        })
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_wraps_and_resets() {
        assert_eq!(counter_delta(10.0, 25.0, None), CounterStep::Advanced(15.0));
        // RAPL: max 262143.328850 J; from 262140 to 5 is 3.32885 + 5.
        let d = counter_delta(262_140.0, 5.0, Some(262_143.328_85));
        match d {
            CounterStep::Wrapped(x) => assert!((x - 8.328_85).abs() < 1e-6, "{x}"),
            other => panic!("expected wrap, got {other:?}"),
        }
        // Backwards by most of the range: a reset, not a wrap of 200 kJ in one tick.
        assert_eq!(
            counter_delta(1000.0, 10.0, Some(262_143.328_85)),
            CounterStep::Reset
        );
        // No wrap point known (NVML mJ counter): backwards is a reset.
        assert_eq!(counter_delta(50.0, 3.0, None), CounterStep::Reset);
        assert_eq!(CounterStep::Reset.energy(), 0.0);
    }

    #[test]
    fn trapezoid_is_exact_on_lines() {
        assert_eq!(trapezoid(&[(0.0, 50.0), (2.0, 50.0), (10.0, 50.0)]), 500.0);
        // 10 W -> 30 W over 4 s = 80 J.
        assert_eq!(trapezoid(&[(0.0, 10.0), (1.0, 15.0), (4.0, 30.0)]), 80.0);
    }
}
