//! The ledger: the one place that turns readings into energy, picks what the whole-system total
//! is measured from, and prices it. Every surface (gauge, footer, per-reply line, bench, run
//! card, exporter, lifetime tally) reads its figures from here.
//!
//! - **Channels.** Each energy reading id is a channel. A counter is unwrapped once (wrap and
//!   reset, [`counter_delta`]); a power reading is integrated once (trapezoid). Either way the
//!   channel keeps cumulative joules at its own sample times, so the energy between any two
//!   instants is a difference of two interpolations: a slow source (a plug at 1 Hz) is
//!   interpolated across a window's edges instead of being cut off at them.
//! - **Basis.** The total is the wall plug, else the battery while discharging, else RAPL psys,
//!   else the sum of non-overlapping components; per channel a counter beats a power reading.
//!   The basis stays put while its sources keep reporting. A source silent for
//!   [`SILENT_PERIODS`] of its own periods, or one that starts reporting, is a timestamped
//!   [`BasisChange`], never a silent flip.
//! - **Total.** The total advances only as far as every source of the basis has reported (the
//!   settled time), one knot of cumulative joules, money and CO2 per step. Each step is priced
//!   at the wall-clock time it was drawn.
//! - **Net of idle.** [`Ledger::total_above_idle`] and [`Ledger::channels_above_idle`] are the
//!   only net-of-idle figures (reports, per-request attribution and a server's share all take
//!   theirs from here): the energy less the idle floor x the seconds covered. The total's floor
//!   is a measured [`IdleBaseline`] on the same basis; a channel's is the baseline's figure for
//!   it, else the source's own (the CPU estimate's `P_idle`), never the lowest power seen (a
//!   machine busy all along would read no work at all). Signed and additive over any cut of a
//!   window; a figure shown is floored once, as a whole ([`floor_net`]).
//! - **Estimates.** A measured channel shadows an estimate of what it covers, for the total,
//!   the channel list and every window ([`Ledger::shadowed`]).
//!
//! Pure: times are the sampler's monotonic seconds; the wall clock enters as the instant that
//! sampler time zero corresponds to.

pub mod views;

use super::energy::{
    AboveIdle, BasisChange, ChannelAboveIdle, EnergyReport, IdleBaseline, IdleFloor, IdleFrom,
    SourceEnergy, TotalBasis, TotalEnergy, Window, joules_to_wh,
};
use super::pricing::Tariff;
use super::uncertainty::{
    Band, ErrorJ, MethodBand, WindowFacts, method_band, trapezoid_bound_j, window_error_j,
};
use crate::sensors::counter::{CounterStep, counter_delta, update_step_s};
use crate::sensors::plausible::Limits;
use crate::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// A source is silent after this many of its own sampling periods without a reading.
pub const SILENT_PERIODS: f64 = 3.0;
/// ... and never sooner than this, so a slow local tick is not a change of basis.
pub const MIN_SILENCE_S: f64 = 1.0;
/// How long the ledger waits at start for a source that discovery found (a plug) before it
/// settles for a lesser basis.
pub const START_GRACE_S: f64 = 5.0;
/// The last ten minutes stay at full resolution; older points are thinned to one per ten
/// seconds, once a minute, so a ledger left running for days (`serve`, the dashboard) stays
/// small while every total stays exact (points hold cumulative joules).
pub const FULL_RESOLUTION_S: f64 = 600.0;
pub const THINNED_GAP_S: f64 = 10.0;
const THIN_EVERY_S: f64 = 60.0;
/// Peak power is taken over intervals at least this long (shorter ones are jitter).
const MIN_PEAK_INTERVAL_S: f64 = 0.1;
/// A counter step is judged against the power ceiling over at least this long: counters
/// advance in quanta (a plug's whole Wh, NVML's 100 ms updates), so one short interval may
/// hold several of them.
const MIN_STEP_JUDGED_S: f64 = 5.0;

/// An apportioned window ([`Ledger::apportion_span`]) takes its rate from at least this long
/// around it: ten of NVML's counter steps, so one step more or less moves it by a tenth.
const APPORTION_SPAN_S: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Power,
}

/// One point of a channel: cumulative joules at `t`, and the power then (the sampled watts,
/// or a counter's rate over the interval that ends at `t`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    t: f64,
    j: f64,
    w: Option<f64>,
    /// Cumulative trapezoid bound of a sampled power channel, J
    /// ([`trapezoid_bound_j`]): what the power between its readings may have added or taken.
    /// Cumulative like `j`, so any two points give a window's share and thinning keeps it.
    u: f64,
}

#[derive(Debug, Clone)]
struct Channel {
    device: String,
    label: String,
    source: Source,
    covers: Covers,
    method: Method,
    kind: Kind,
    points: Vec<Point>,
    last_raw: Option<f64>,
    resets: Vec<f64>,
    /// Smoothed interval between readings, seconds.
    period: Option<f64>,
    /// The source's own idle figure, W (an estimate's `P_idle`), latest seen.
    own_idle: Option<f64>,
    /// The call or file of the latest value (`Reading::via`).
    via: Option<String>,
    /// What the device said instead of a value since the last one ("GPU lost ..."), for the
    /// reason of a change of basis.
    na_why: Option<String>,
    /// How sure its joules are, from its provenance ([`method_band`]).
    band: &'static MethodBand,
}

impl Channel {
    fn first_t(&self) -> Option<f64> {
        self.points.first().map(|p| p.t)
    }

    fn last_t(&self) -> Option<f64> {
        self.points.last().map(|p| p.t)
    }

    /// Cumulative joules at `t`, clamped to the first/last point outside them. Inside an
    /// interval a counter is linear; sampled power is linear too, so its energy is the exact
    /// integral of that line (the same trapezoid the points hold).
    fn j_at(&self, t: f64) -> Option<f64> {
        let pts = &self.points;
        let first = pts.first()?;
        let last = pts.last()?;
        if t <= first.t {
            return Some(first.j);
        }
        if t >= last.t {
            return Some(last.j);
        }
        let i = pts.partition_point(|p| p.t < t);
        let (a, b) = (pts[i - 1], pts[i]);
        let f = (t - a.t) / (b.t - a.t);
        // The share of the interval's energy drawn by `t`: under a line of power that is the
        // trapezoid up to `t` over the whole one.
        let share = match (self.kind, a.w, b.w) {
            (Kind::Power, Some(wa), Some(wb)) if wa + wb > 0.0 => {
                let wt = wa + (wb - wa) * f;
                f * (wa + wt) / (wa + wb)
            }
            _ => f,
        };
        Some(a.j + (b.j - a.j) * share)
    }

    /// Joules over `[t0, t1]` and the seconds of it with data (`None`: no overlap).
    fn energy_over(&self, t0: f64, t1: f64) -> Option<(f64, f64)> {
        let (a, b) = (t0.max(self.first_t()?), t1.min(self.last_t()?));
        if b <= a {
            return None;
        }
        Some((self.j_at(b)? - self.j_at(a)?, b - a))
    }

    fn silence_s(&self) -> f64 {
        (SILENT_PERIODS * self.period.unwrap_or(1.0)).max(MIN_SILENCE_S)
    }

    fn alive(&self, now: f64) -> bool {
        self.last_t().is_some_and(|t| now - t <= self.silence_s())
    }

    /// A recent reading: it can carry a total from its first point on.
    fn usable(&self, now: f64) -> bool {
        self.alive(now)
    }

    /// Sampled power at `t` on the line between readings (power channels).
    fn w_at(&self, t: f64) -> Option<f64> {
        let i = self.points.partition_point(|p| p.t < t);
        let b = self.points.get(i)?;
        if b.t == t || i == 0 {
            return b.w.filter(|_| b.t == t);
        }
        let a = self.points[i - 1];
        let f = (t - a.t) / (b.t - a.t);
        Some(a.w? + (b.w? - a.w?) * f)
    }

    /// Where the current unbroken run of readings began (after the last silence).
    fn resumed_at(&self) -> Option<f64> {
        let silence = self.silence_s();
        let i = self
            .points
            .windows(2)
            .rposition(|w| w[1].t - w[0].t > silence)
            .map_or(0, |i| i + 1);
        self.points.get(i).map(|p| p.t)
    }

    fn power_now(&self) -> Option<f64> {
        self.points.last().and_then(|p| p.w)
    }

    /// The power of the interval `k` ends (a counter's rate, a power channel's reading).
    fn rate(&self, k: usize) -> Option<f64> {
        self.points.get(k).filter(|_| k > 0).and_then(|p| p.w)
    }

    /// The cumulative trapezoid bound at the last point at or before `t` (`before`), or the
    /// first at or after it.
    fn u_at(&self, t: f64, before: bool) -> f64 {
        let pts = &self.points;
        let i = if before {
            pts.partition_point(|p| p.t <= t).saturating_sub(1)
        } else {
            pts.partition_point(|p| p.t < t)
                .min(pts.len().saturating_sub(1))
        };
        pts.get(i).map_or(0.0, |p| p.u)
    }

    /// The range of the power over `[t0, t1]`: a power channel's readings inside and the
    /// line's value at each edge; a counter's rate over every interval that overlaps it.
    fn swing(&self, t0: f64, t1: f64) -> f64 {
        let pts = &self.points;
        let ws: Vec<f64> = match self.kind {
            Kind::Power => pts
                .iter()
                .filter(|p| p.t >= t0 && p.t <= t1)
                .filter_map(|p| p.w)
                .chain([self.w_at(t0), self.w_at(t1)].into_iter().flatten())
                .collect(),
            Kind::Counter => (1..pts.len())
                .filter(|&k| pts[k].t > t0 && pts[k - 1].t < t1)
                .filter_map(|k| pts[k].w)
                .collect(),
        };
        let lo = ws.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi >= lo { hi - lo } else { 0.0 }
    }
}

/// `rapl:package-0:energy` -> `rapl:package-0`: a counter and a power reading of one channel
/// share this key, and the counter wins.
fn channel_key(id: &str) -> &str {
    id.rsplit_once(':').map(|(k, _)| k).unwrap_or(id)
}

/// A stretch of time with one basis and one set of sources.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    t0: f64,
    basis: Option<TotalBasis>,
    ids: Vec<String>,
}

/// Cumulative whole-system figures at a settled time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Knot {
    t: f64,
    j: f64,
    cost: f64,
    co2_g: f64,
}

/// A temperature or fan channel, kept for the peaks of a window.
#[derive(Debug, Clone)]
struct Extreme {
    name: String,
    fan: bool,
    points: Vec<(f64, f64)>,
}

/// The whole-system power right now, as the gauge shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TotalPower {
    pub watts: f64,
    pub basis: TotalBasis,
    /// Some part is an estimate (utilisation x TDP).
    pub estimated: bool,
    /// The sources summed: one source means its provenance can be named.
    pub sources: Vec<String>,
    /// Their [`Source`], when all share one.
    pub source: Option<Source>,
}

/// One energy channel right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelNow {
    pub id: String,
    pub device: String,
    pub label: String,
    pub source: Source,
    pub covers: Covers,
    pub method: Method,
    /// Power now, W: a counter's from its channel's power reading where there is one, never
    /// its step over one sample; `None` while the channel is silent.
    pub watts: Option<f64>,
    /// Where `watts` comes from: "NVML_FI_DEV_POWER_INSTANT (instant)", "rate of the
    /// counter", ...
    pub watts_via: Option<String>,
    /// Where the energy comes from: the counter's call or file, or the power integrated.
    pub via: Option<String>,
    /// Joules since the ledger started (unwrapped counter, or integrated power).
    pub energy_j: f64,
    pub in_total: bool,
    /// What the device said instead of a value since its last one ("GPU lost ...").
    pub note: Option<String>,
    /// How sure its joules are: its row of the method table.
    pub method_band: &'static MethodBand,
    /// Where the truth of `energy_j` lies: the method's band and what sampling added.
    pub band: Option<Band>,
}

impl ChannelNow {
    /// How its energy is taken, with the call or file: "counter
    /// (nvmlDeviceGetTotalEnergyConsumption)", "integrated nvmlDeviceGetPowerUsage (1 s
    /// average)", "estimated".
    pub fn energy_method(&self) -> String {
        let how = match self.method {
            Method::Counter => "counter",
            Method::Measured => "integrated",
            Method::Estimated => "estimated",
        };
        match (&self.via, self.method) {
            (Some(v), Method::Counter) => format!("{how} ({v})"),
            (Some(v), _) => format!("{how} {v}"),
            (None, _) => how.to_string(),
        }
    }
}

/// What the power gauges show: the total now and every energy channel.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PowerView {
    pub total: Option<TotalPower>,
    pub channels: Vec<ChannelNow>,
}

/// Figures since the ledger started.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    /// Sampler time up to which every source of the basis has reported.
    pub settled_t: f64,
    pub energy_j: f64,
    /// In the ledger's tariff's currency (0 without a tariff).
    pub cost: f64,
    pub co2_g: f64,
    /// Some part of the total was an estimate.
    pub estimated: bool,
    /// Where the truth of `energy_j` (and so of `cost` and `co2_g`) lies.
    pub band: Option<Band>,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    channels: BTreeMap<String, Channel>,
    extremes: BTreeMap<String, Extreme>,
    segments: Vec<Segment>,
    knots: Vec<Knot>,
    changes: Vec<BasisChange>,
    tariff: Option<Tariff>,
    wall_origin: Option<Timestamp>,
    expected: Option<TotalBasis>,
    t_first: Option<f64>,
    t_now: f64,
    estimated: bool,
    limits: Limits,
    last_thin_t: Option<f64>,
}

impl Ledger {
    /// A ledger without prices (bench and tests price windows on demand).
    pub fn new() -> Self {
        Self::default()
    }

    /// Price each joule with `tariff` at the wall-clock time it was drawn: sampler time 0 is
    /// the instant `origin`.
    pub fn priced(mut self, tariff: Tariff, origin: Timestamp) -> Self {
        self.tariff = Some(tariff);
        self.wall_origin = Some(origin);
        self
    }

    /// Judge readings and counter steps by these plausibility limits (the sampler's; the
    /// default ones otherwise).
    pub fn plausible(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// A basis discovery found (a plug that answered): wait up to [`START_GRACE_S`] for it
    /// before starting on a lesser one, so the total does not begin with a change.
    pub fn expecting(mut self, basis: Option<TotalBasis>) -> Self {
        self.expected = basis;
        self
    }

    pub fn tariff(&self) -> Option<&Tariff> {
        self.tariff.as_ref()
    }

    /// The wall-clock instant of sampler time `t`.
    pub fn wall_at(&self, t: f64) -> Option<Timestamp> {
        let origin = self.wall_origin?;
        let ns = (t * 1e9).round() as i128;
        Timestamp::from_nanosecond(origin.as_nanosecond() + ns).ok()
    }

    /// Take in one sampler tick (local sensors, or one plug's poll).
    pub fn push(&mut self, sample: &Sample) {
        if !sample.t.is_finite() {
            return;
        }
        self.t_first.get_or_insert(sample.t);
        self.t_now = self.t_now.max(sample.t);
        for r in &sample.readings {
            self.fold(sample.t, r);
        }
        self.advance();
        if self.t_now - *self.last_thin_t.get_or_insert(self.t_now) >= THIN_EVERY_S {
            self.last_thin_t = Some(self.t_now);
            self.thin_before(self.t_now - FULL_RESOLUTION_S, THINNED_GAP_S);
        }
    }

    fn fold(&mut self, t: f64, r: &Reading) {
        // A rejected reading never counts, and neither does an implausible one that did not
        // come through the sampler (a test, a replay).
        if r.rejected.is_some()
            || r.value
                .is_some_and(|v| self.limits.check(r.quantity, r.covers, v).is_err())
        {
            return;
        }
        let kind = match (r.quantity, r.method) {
            (Quantity::Energy, Method::Counter) => Kind::Counter,
            (Quantity::Power, _) => Kind::Power,
            (Quantity::Temperature | Quantity::FanRpm, _) => {
                if let Some(v) = r.value.filter(|v| v.is_finite()) {
                    let e = self
                        .extremes
                        .entry(r.id.clone())
                        .or_insert_with(|| Extreme {
                            name: format!("{} {}", r.device, r.label),
                            fan: r.quantity == Quantity::FanRpm,
                            points: Vec::new(),
                        });
                    if e.points.last().is_none_or(|&(lt, _)| t > lt) {
                        e.points.push((t, v));
                    }
                }
                return;
            }
            _ => return,
        };
        // Energy and power are never negative: such a value is not a reading.
        let Some(value) = r.value.filter(|v| v.is_finite() && *v >= 0.0) else {
            if let (None, Some(why), Some(c)) = (r.value, &r.via, self.channels.get_mut(&r.id)) {
                c.na_why = Some(why.clone());
            }
            return;
        };
        let c = self
            .channels
            .entry(r.id.clone())
            .or_insert_with(|| Channel {
                device: r.device.clone(),
                label: r.label.clone(),
                source: r.source,
                covers: r.covers,
                method: r.method,
                kind,
                points: Vec::new(),
                last_raw: None,
                resets: Vec::new(),
                period: None,
                own_idle: None,
                via: None,
                na_why: None,
                band: method_band(r.source, r.method, r.via.as_deref()),
            });
        if let Some(w) = r.own_idle_w() {
            c.own_idle = Some(w);
        }
        if c.via != r.via {
            c.band = method_band(r.source, r.method, r.via.as_deref());
        }
        c.via.clone_from(&r.via);
        c.na_why = None;
        let Some(&last) = c.points.last() else {
            c.points.push(Point {
                t,
                j: 0.0,
                w: (kind == Kind::Power).then_some(value),
                u: 0.0,
            });
            c.last_raw = Some(value);
            return;
        };
        if t <= last.t {
            return; // timestamps are monotonic per channel
        }
        let dt = t - last.t;
        let silence = c.silence_s();
        if dt <= silence {
            c.period = Some(match c.period {
                Some(p) => 0.8 * p + 0.2 * dt,
                None => dt,
            });
        }
        let point = match kind {
            Kind::Counter => {
                let mut step = counter_delta(c.last_raw.unwrap_or(value), value, r.limit);
                // More than the source could draw over the interval: a reset (a counter
                // reloaded, a value misread), not energy.
                let most = self.limits.max_power(c.covers) * dt.max(MIN_STEP_JUDGED_S);
                if step.energy() > most {
                    step = CounterStep::Reset;
                }
                if step == CounterStep::Reset {
                    c.resets.push(t);
                }
                let d = step.energy();
                Point {
                    t,
                    j: last.j + d,
                    w: Some(d / dt),
                    u: last.u,
                }
            }
            Kind::Power => {
                let prev_w = last.w.unwrap_or(value);
                // A short gap (a missed reading) is bridged; across a silence nothing is
                // known, so nothing is integrated.
                let bridged = dt <= silence;
                Point {
                    t,
                    j: last.j
                        + if bridged {
                            dt * (prev_w + value) / 2.0
                        } else {
                            0.0
                        },
                    w: Some(value),
                    u: last.u
                        + if bridged {
                            trapezoid_bound_j(c.band, dt, value - prev_w)
                        } else {
                            0.0
                        },
                }
            }
        };
        c.last_raw = Some(value);
        c.points.push(point);
    }

    /// The basis and sources the total should use now: per basis in priority order, per
    /// channel key the counter if usable, else the power reading.
    fn target(&self) -> Option<(TotalBasis, Vec<String>)> {
        let now = self.t_now;
        for basis in TotalBasis::ORDER {
            let mut by_key: BTreeMap<&str, (&String, Kind)> = BTreeMap::new();
            for (id, c) in &self.channels {
                if !basis.covers().contains(&c.covers)
                    || !c.usable(now)
                    || self.shadowed(id, c, true)
                {
                    continue;
                }
                let key = channel_key(id);
                match by_key.get(key) {
                    Some((_, Kind::Counter)) => {}
                    _ => {
                        by_key.insert(key, (id, c.kind));
                    }
                }
            }
            if !by_key.is_empty() {
                return Some((
                    basis,
                    by_key.into_values().map(|(id, _)| id.clone()).collect(),
                ));
            }
        }
        None
    }

    fn advance(&mut self) {
        let target = self.target();
        let current = self.segments.last().cloned();
        let Some(current) = current else {
            let Some((basis, ids)) = target else { return };
            let waiting = self.expected.is_some_and(|e| rank(e) < rank(basis))
                && self.t_now - self.t_first.unwrap_or(self.t_now) < START_GRACE_S;
            if waiting {
                return;
            }
            let t0 = self.start_time(&ids);
            self.begin(t0, Some(basis), ids, "first reading".into(), None);
            self.settle();
            return;
        };
        let same = match &target {
            Some((b, ids)) => current.basis == Some(*b) && current.ids == *ids,
            None => current.basis.is_none(),
        };
        if same {
            self.settle();
            return;
        }
        // Count the old basis as far as its sources reported, then change there.
        self.settle();
        let reason = self.why(&current.ids, target.as_ref().map(|(_, ids)| ids.as_slice()));
        let settled = self.knots.last().map_or(self.t_now, |k| k.t);
        match target {
            Some((basis, ids)) => {
                // After a stretch with no source, start where the new ones resumed.
                let t0 = if current.basis.is_none() {
                    settled.max(self.start_time(&ids))
                } else {
                    settled
                };
                self.begin(t0, Some(basis), ids, reason, current.basis);
                self.settle();
            }
            None => self.begin(settled, None, Vec::new(), reason, current.basis),
        }
    }

    /// Where all of `ids` have data without a silence since.
    fn start_time(&self, ids: &[String]) -> f64 {
        ids.iter()
            .filter_map(|id| self.channels.get(id).and_then(Channel::resumed_at))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn begin(
        &mut self,
        t0: f64,
        basis: Option<TotalBasis>,
        ids: Vec<String>,
        reason: String,
        from: Option<TotalBasis>,
    ) {
        match self.knots.last().copied() {
            None => self.knots.push(Knot {
                t: t0,
                ..Knot::default()
            }),
            // Nothing is known between the last settled time and `t0`: the total stays.
            Some(k) if t0 > k.t => self.knots.push(Knot { t: t0, ..k }),
            Some(_) => {}
        }
        self.changes.push(BasisChange {
            t: t0,
            from,
            to: basis,
            sources: ids.clone(),
            reason,
        });
        self.segments.push(Segment { t0, basis, ids });
    }

    /// Why the sources changed from `old` to `new`, in a few words.
    fn why(&self, old: &[String], new: Option<&[String]>) -> String {
        let new = new.unwrap_or(&[]);
        let silent: Vec<String> = old
            .iter()
            .filter(|id| !new.contains(id))
            .map(|id| {
                let c = self.channels.get(id);
                let mut s = match c.and_then(Channel::last_t) {
                    Some(t) => format!("{id} silent {:.1} s", self.t_now - t),
                    None => format!("{id} silent"),
                };
                // What the device said instead, where it said something: "GPU lost ...".
                if let Some(why) = c.and_then(|c| c.na_why.as_deref()) {
                    s.push_str(&format!(" ({why})"));
                }
                s
            })
            .collect();
        let back: Vec<String> = new
            .iter()
            .filter(|id| !old.contains(id))
            .map(|id| format!("{id} reporting"))
            .collect();
        let mut all = silent;
        all.extend(back);
        if all.is_empty() {
            "sources changed".into()
        } else {
            all.join(", ")
        }
    }

    /// Move the total forward to where every source of the current basis has reported.
    fn settle(&mut self) {
        let Some(seg) = self.segments.last() else {
            return;
        };
        if seg.basis.is_none() {
            return;
        }
        let parts: Vec<&Channel> = seg
            .ids
            .iter()
            .filter_map(|id| self.channels.get(id))
            .collect();
        let Some(frontier) = parts.iter().filter_map(|c| c.last_t()).reduce(f64::min) else {
            return;
        };
        let Some(&last) = self.knots.last() else {
            return;
        };
        if frontier <= last.t {
            return;
        }
        let inc: f64 = parts
            .iter()
            .filter_map(|c| Some(c.j_at(frontier)? - c.j_at(last.t)?))
            .sum::<f64>()
            .max(0.0);
        self.estimated |= parts.iter().any(|c| c.method == Method::Estimated);
        let (cost, co2) = self.price(inc, last.t, frontier);
        self.knots.push(Knot {
            t: frontier,
            j: last.j + inc,
            cost: last.cost + cost,
            co2_g: last.co2_g + co2,
        });
    }

    fn price(&self, j: f64, t0: f64, t1: f64) -> (f64, f64) {
        match (&self.tariff, self.wall_at(t0), self.wall_at(t1)) {
            (Some(tariff), Some(a), Some(b)) => {
                (tariff.cost_over(j, a, b), tariff.co2_g(j).unwrap_or(0.0))
            }
            _ => (0.0, 0.0),
        }
    }

    /// Whole-system joules between `t0` and `t1` and the seconds of that span the total
    /// covers (`None`: no overlap).
    pub fn energy_between(&self, t0: f64, t1: f64) -> Option<(f64, f64)> {
        let (a, b) = self.clamp(t0, t1)?;
        Some((self.knot_at(b).j - self.knot_at(a).j, b - a))
    }

    /// The total's own steps (one per settled sampler tick) inside `[t0, t1]`, as
    /// `(start, end, joules)`, the steps at the edges cut at `t0` and `t1` the way
    /// [`Self::energy_between`] cuts them: the steps add up to it. These are the sampling
    /// intervals that attribution (`accounting::attribution`) splits between requests.
    pub fn steps_between(&self, t0: f64, t1: f64) -> Vec<(f64, f64, f64)> {
        let Some((a, b)) = self.clamp(t0, t1) else {
            return Vec::new();
        };
        let mut edges = vec![a];
        let from = self.knots.partition_point(|k| k.t <= a);
        edges.extend(
            self.knots[from..]
                .iter()
                .map(|k| k.t)
                .take_while(|&t| t < b),
        );
        edges.push(b);
        edges
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| (w[0], w[1], self.knot_at(w[1]).j - self.knot_at(w[0]).j))
            .collect()
    }

    /// The cost of the energy between `t0` and `t1` in `tariff`, each step priced at the time
    /// it was drawn; `None` without a wall clock or an overlap.
    pub fn cost_between(&self, tariff: &Tariff, t0: f64, t1: f64) -> Option<f64> {
        let (a, b) = self.clamp(t0, t1)?;
        if self.tariff.as_ref() == Some(tariff) {
            return Some(self.knot_at(b).cost - self.knot_at(a).cost);
        }
        let mut cost = 0.0;
        for w in self.knots.windows(2) {
            let (lo, hi) = (w[0].t.max(a), w[1].t.min(b));
            if hi <= lo {
                continue;
            }
            let j = self.knot_at(hi).j - self.knot_at(lo).j;
            cost += tariff.cost_over(j, self.wall_at(lo)?, self.wall_at(hi)?);
        }
        Some(cost)
    }

    /// What `j` joules cost in `tariff` when drawn evenly over `t0..t1`, each hour at its own
    /// price: for a figure the knots do not hold, such as a reply's energy net of idle.
    pub fn cost_spread(&self, tariff: &Tariff, j: f64, t0: f64, t1: f64) -> Option<f64> {
        Some(tariff.cost_over(j, self.wall_at(t0)?, self.wall_at(t1)?))
    }

    fn clamp(&self, t0: f64, t1: f64) -> Option<(f64, f64)> {
        let first = self.knots.first()?.t;
        let last = self.knots.last()?.t;
        let (a, b) = (t0.max(first), t1.min(last));
        (b > a).then_some((a, b))
    }

    /// Cumulative figures at `t`, interpolated between knots (clamped to their range).
    fn knot_at(&self, t: f64) -> Knot {
        let k = &self.knots;
        let Some(first) = k.first() else {
            return Knot::default();
        };
        if t <= first.t {
            return *first;
        }
        let i = k.partition_point(|p| p.t < t);
        if i >= k.len() {
            return k[k.len() - 1];
        }
        let (a, b) = (k[i - 1], k[i]);
        let f = if b.t > a.t {
            self.shaped_share(&a, &b, t)
                .unwrap_or((t - a.t) / (b.t - a.t))
        } else {
            1.0
        };
        Knot {
            t,
            j: a.j + (b.j - a.j) * f,
            cost: a.cost + (b.cost - a.cost) * f,
            co2_g: a.co2_g + (b.co2_g - a.co2_g) * f,
        }
    }

    /// Between two readings of a slow whole-machine source (a plug at 1 Hz), the share of
    /// the step's energy drawn by `t`, shaped by the fast component sensors: the components'
    /// own energy, plus the rest of the machine (the step's energy less the components') at a
    /// constant rate. A reply that starts mid-step then gets the ramp it really caused, not
    /// an even share of the step. `None`: no components cover the step, or they disagree with
    /// the whole (they drew more than it), and the share is linear in time.
    fn shaped_share(&self, a: &Knot, b: &Knot, t: f64) -> Option<f64> {
        let basis = self.segment_at(t)?.basis?;
        if !matches!(basis, TotalBasis::Wall | TotalBasis::Battery) || b.j <= a.j {
            return None;
        }
        let (ca, ct, cb) = (
            self.components_j_at(a.t)?,
            self.components_j_at(t)?,
            self.components_j_at(b.t)?,
        );
        let rest = (b.j - a.j) - (cb - ca);
        if rest < 0.0 {
            return None;
        }
        let share = ((ct - ca) + rest * (t - a.t) / (b.t - a.t)) / (b.j - a.j);
        Some(share.clamp(0.0, 1.0))
    }

    /// Cumulative joules of the component channels (GPU boards, CPU packages, DRAM) at `x`,
    /// where every one of them has data then: what shapes a slow whole-machine source's step.
    /// `None`: no components, or one without data at `x`.
    fn components_j_at(&self, x: f64) -> Option<f64> {
        let mut any = false;
        let mut sum = 0.0;
        for (id, c) in &self.channels {
            if !TotalBasis::Components.covers().contains(&c.covers) || self.shadowed(id, c, false) {
                continue;
            }
            let covered = c.first_t()? <= x && x <= c.last_t()?;
            if !covered {
                return None;
            }
            sum += c.j_at(x)?;
            any = true;
        }
        any.then_some(sum)
    }

    /// One channel's error over `[a, b]` (clamped to its data): its method's gain on the
    /// joules it counted there, and what its sampling adds ([`window_error_j`]).
    fn channel_error(&self, c: &Channel, a: f64, b: f64) -> Option<ErrorJ> {
        let (a, b) = (a.max(c.first_t()?), b.min(c.last_t()?));
        if b <= a {
            return None;
        }
        let energy = c.j_at(b)? - c.j_at(a)?;
        let counter = c.kind == Kind::Counter;
        let mut f = WindowFacts {
            length_s: b - a,
            counter,
            ..WindowFacts::default()
        };
        if counter {
            (f.p_start_w, f.swing_start_w, f.gap_start_s) = self.counter_edge(c, a);
            (f.p_end_w, f.swing_end_w, f.gap_end_s) = self.counter_edge(c, b);
        } else {
            f.trapezoid_j = (c.u_at(b, false) - c.u_at(a, true)).max(0.0);
            let tau = c.band.average_s;
            if tau > 0.0 {
                f.swing_w = c.swing(a - tau, b + tau);
            }
        }
        let (lo, hi) = window_error_j(c.band, &f);
        Some(ErrorJ::of(energy, c.band.gain, lo, hi))
    }

    /// At a window's edge `t` in a counter: its rate there, how far the rate ranges around
    /// `t` (the interval that holds it and the ones either side), and that interval's length
    /// when `t` falls inside one (0 on a reading: nothing is interpolated there). A
    /// whole-machine counter's step is shaped by the components ([`Self::shaped_share`]), so
    /// only the rest of the machine is interpolated: its range is the rest's.
    fn counter_edge(&self, c: &Channel, t: f64) -> (f64, f64, f64) {
        let pts = &c.points;
        if pts.len() < 2 {
            return (0.0, 0.0, 0.0);
        }
        let i = pts.partition_point(|p| p.t < t);
        let k = i.clamp(1, pts.len() - 1);
        let p = c.rate(k).unwrap_or(0.0);
        let gap = if i > 0 && i < pts.len() && pts[i].t > t {
            pts[i].t - pts[i - 1].t
        } else {
            0.0
        };
        if gap <= 0.0 {
            return (p, 0.0, 0.0);
        }
        let around: Vec<usize> = [k - 1, k, k + 1]
            .into_iter()
            .filter(|&n| n >= 1 && n < pts.len())
            .collect();
        let range = |ws: &[f64]| {
            let lo = ws.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if hi >= lo { hi - lo } else { 0.0 }
        };
        let own: Vec<f64> = around.iter().filter_map(|&n| c.rate(n)).collect();
        let mut swing = range(&own);
        if matches!(c.covers, Covers::Wall | Covers::Battery) {
            let rest: Option<Vec<f64>> = around
                .iter()
                .map(|&n| {
                    let (x, y) = (pts[n - 1].t, pts[n].t);
                    let comp = self.components_j_at(y)? - self.components_j_at(x)?;
                    let r = (pts[n].j - pts[n - 1].j - comp) / (y - x);
                    (r >= 0.0).then_some(r)
                })
                .collect();
            if let Some(rest) = rest.filter(|r| !r.is_empty()) {
                swing = range(&rest);
            }
        }
        (p, swing, gap)
    }

    /// The whole-system total's error over `[t0, t1]` (clamped to the settled span): each
    /// basis in force there, each of its sources over its part of the window, added linearly.
    fn total_error(&self, t0: f64, t1: f64) -> Option<ErrorJ> {
        let (t0, t1) = self.clamp(t0, t1)?;
        let mut out: Option<ErrorJ> = None;
        for (i, s) in self.segments.iter().enumerate() {
            let end = self.segments.get(i + 1).map_or(f64::INFINITY, |n| n.t0);
            let (a, b) = (t0.max(s.t0), t1.min(end));
            if b <= a {
                continue;
            }
            for id in &s.ids {
                if let Some(e) = self
                    .channels
                    .get(id)
                    .and_then(|c| self.channel_error(c, a, b))
                {
                    out = Some(out.map_or(e, |o| o + e));
                }
            }
        }
        out
    }

    /// The error of a window as a report takes it: apportioned from `span`
    /// ([`Self::apportion_span`]), the span's error scaled to the window, plus what the power
    /// may have done inside the window that the span's average does not show (its range over
    /// the span times the window's length).
    fn window_error(&self, t0: f64, t1: f64, span: Option<(f64, f64)>) -> Option<ErrorJ> {
        let Some((sa, sb)) = span.and_then(|(a, b)| self.clamp(a, b)) else {
            return self.total_error(t0, t1);
        };
        let (a, b) = self.clamp(t0, t1)?;
        let e = self.total_error(sa, sb)?;
        let seg = self.segment_at(b.min(self.settled_until()?))?;
        let swing: f64 = seg
            .ids
            .iter()
            .filter_map(|id| Some((id, self.channels.get(id)?)))
            .map(|(id, c)| self.apportion_swing(id, c, sa, sb))
            .sum();
        let len = b - a;
        Some(e.scaled(len / (sb - sa)).widen(swing * len, swing * len))
    }

    /// The range of a channel's power over an apportioning span: a quantised counter's
    /// readings of its own power where it has them (its rates over one sample hold 0, 1 or 2
    /// of its steps), else its rates or readings.
    fn apportion_swing(&self, id: &str, c: &Channel, sa: f64, sb: f64) -> f64 {
        let quantised = c.kind == Kind::Counter && update_step_s(c.source).is_some();
        match self.power_sibling(id).filter(|_| quantised) {
            Some(p) => p.swing(sa, sb),
            None => c.swing(sa, sb),
        }
    }

    /// The band of the whole-system energy over `[t0, t1]` (see [`super::uncertainty`]).
    pub fn band_between(&self, t0: f64, t1: f64) -> Option<Band> {
        let (j, _) = self.energy_between(t0, t1)?;
        self.total_error(t0, t1)?.band_of(j)
    }

    /// Everything since the ledger started.
    pub fn totals(&self) -> Totals {
        let first = self.knots.first().copied().unwrap_or_default();
        let last = self.knots.last().copied().unwrap_or_default();
        let energy_j = last.j - first.j;
        Totals {
            settled_t: last.t,
            energy_j,
            cost: last.cost - first.cost,
            co2_g: last.co2_g - first.co2_g,
            estimated: self.estimated,
            band: self
                .total_error(first.t, last.t)
                .and_then(|e| e.band_of(energy_j)),
        }
    }

    /// From the first to the last settled time of the total.
    pub fn span(&self) -> Option<(f64, f64)> {
        Some((self.knots.first()?.t, self.knots.last()?.t))
    }

    /// Sampler time up to which the total is known (`None`: no total yet).
    pub fn settled_until(&self) -> Option<f64> {
        self.knots.last().map(|k| k.t)
    }

    /// The basis in force now (`None`: no source reporting, or not started).
    pub fn basis(&self) -> Option<TotalBasis> {
        self.segments.last().and_then(|s| s.basis)
    }

    /// Every change of basis, the first one included, oldest first.
    pub fn changes(&self) -> &[BasisChange] {
        &self.changes
    }

    /// The whole-system power now: the sum of the latest power of the basis's sources.
    pub fn total_power(&self) -> Option<TotalPower> {
        let seg = self.segments.last()?;
        let basis = seg.basis?;
        let parts: Vec<&Channel> = seg
            .ids
            .iter()
            .filter_map(|id| self.channels.get(id))
            .collect();
        let watts: Vec<f64> = seg
            .ids
            .iter()
            .filter_map(|id| self.live_watts(id).0)
            .collect();
        if watts.is_empty() {
            return None;
        }
        let first = parts.first().map(|c| c.source);
        Some(TotalPower {
            watts: watts.iter().sum(),
            basis,
            estimated: parts.iter().any(|c| c.method == Method::Estimated),
            sources: seg.ids.clone(),
            source: first.filter(|s| parts.iter().all(|c| c.source == *s)),
        })
    }

    /// The power of channel `id` now, and the call or file it comes from. A counter's watts
    /// are the power reading of its channel while one reports (NVML's instant field or its
    /// 1 s average, a plug's apower), never the counter's step over one sample: NVML's counter
    /// moves in ~100 ms steps, so over a 250 ms sample a steady 250 W reads 200 or 300 W. A
    /// counter alone gives its rate over its last interval (RAPL updates every millisecond).
    /// A silent channel has no power now: its last figure is not shown as if it were live.
    fn live_watts(&self, id: &str) -> (Option<f64>, Option<String>) {
        let Some(c) = self.channels.get(id) else {
            return (None, None);
        };
        if !c.alive(self.t_now) {
            return (None, None);
        }
        if c.kind == Kind::Counter {
            let key = channel_key(id);
            let sibling = self.channels.iter().find(|(other, o)| {
                o.kind == Kind::Power && channel_key(other) == key && o.alive(self.t_now)
            });
            if let Some((_, p)) = sibling
                && let Some(w) = p.power_now()
            {
                return (Some(w), p.via.clone());
            }
            return (c.power_now(), Some("rate of the counter".into()));
        }
        (c.power_now(), c.via.clone())
    }

    /// Whether a channel stands aside for another (reporting now, with `live`): a power
    /// reading of a channel that also has a counter (the counter is its energy), and an
    /// estimate of something a measured channel covers (a CPU package estimate beside RAPL).
    fn shadowed(&self, id: &str, c: &Channel, live: bool) -> bool {
        let reports = |o: &Channel| !o.points.is_empty() && (!live || o.alive(self.t_now));
        let by_counter = c.kind == Kind::Power
            && self.channels.iter().any(|(other, o)| {
                o.kind == Kind::Counter
                    && !o.points.is_empty()
                    && (!live || o.alive(self.t_now) || !c.alive(self.t_now))
                    && channel_key(other) == channel_key(id)
            });
        let by_measurement = c.method == Method::Estimated
            && self
                .channels
                .values()
                .any(|o| o.method != Method::Estimated && o.covers == c.covers && reports(o));
        by_counter || by_measurement
    }

    /// The total and the channels, for the gauges.
    pub fn power_view(&self) -> PowerView {
        PowerView {
            total: self.total_power(),
            channels: self.channels(),
        }
    }

    /// Every energy channel (a counter hides the power reading of its channel while it
    /// reports), with its power now and its energy since start.
    pub fn channels(&self) -> Vec<ChannelNow> {
        let in_total: BTreeSet<&String> = self
            .segments
            .last()
            .map(|s| s.ids.iter().collect())
            .unwrap_or_default();
        self.channels
            .iter()
            .filter(|(id, c)| !self.shadowed(id, c, true))
            .map(|(id, c)| {
                let (watts, watts_via) = self.live_watts(id);
                ChannelNow {
                    id: id.clone(),
                    device: c.device.clone(),
                    label: c.label.clone(),
                    source: c.source,
                    covers: c.covers,
                    method: c.method,
                    watts,
                    watts_via,
                    via: c.via.clone(),
                    energy_j: c.points.last().map_or(0.0, |p| p.j),
                    in_total: in_total.contains(id),
                    note: c.na_why.clone(),
                    method_band: c.band,
                    band: c
                        .first_t()
                        .zip(c.last_t())
                        .and_then(|(a, b)| self.channel_error(c, a, b))
                        .and_then(|e| e.band()),
                }
            })
            .collect()
    }

    /// Average whole-system power over `[t0, t1]`, and each energy channel's: the machine
    /// loaded and doing nothing. A channel is in it when it has data over half the window.
    pub fn idle_baseline(&self, t0: f64, t1: f64) -> Option<IdleBaseline> {
        let (j, covered) = self.energy_between(t0, t1)?;
        // The baseline must be on one basis, measured over most of the window.
        let basis = self.single_basis(t0, t1)?;
        let half = 0.5 * (t1 - t0);
        let channels = self
            .channels
            .iter()
            .filter(|(id, c)| !self.shadowed(id, c, false))
            .filter_map(|(id, c)| {
                let (j, s) = c.energy_over(t0, t1)?;
                (s >= half).then(|| (id.clone(), j / s))
            })
            .collect();
        (covered >= half).then_some(IdleBaseline {
            watts: j / covered,
            basis,
            window_s: covered,
            channels,
        })
    }

    /// A channel's idle floor: the baseline's figure for it, else the source's own (an
    /// estimate's `P_idle`). `None`: neither; its net of idle is unknown.
    pub fn idle_floor(&self, id: &str, idle: Option<&IdleBaseline>) -> Option<IdleFloor> {
        let measured = idle.and_then(|b| b.channels.get(id)).map(|&w| IdleFloor {
            watts: w,
            from: IdleFrom::Baseline,
        });
        measured.or_else(|| {
            Some(IdleFloor {
                watts: self.channels.get(id)?.own_idle?,
                from: IdleFrom::Source,
            })
        })
    }

    /// The whole-system energy over `[t0, t1]` and its idle floor: the baseline's watts when
    /// it was measured on the basis the total has over the window (else no floor: gross).
    /// `None`: the total does not overlap the window.
    pub fn total_above_idle(
        &self,
        t0: f64,
        t1: f64,
        idle: Option<&IdleBaseline>,
    ) -> Option<AboveIdle> {
        let (gross_j, covered_s) = self.energy_between(t0, t1)?;
        let basis = self
            .segment_at(t1.min(self.settled_until()?))
            .and_then(|s| s.basis);
        let idle = idle.filter(|i| basis == Some(i.basis)).map(|i| IdleFloor {
            watts: i.watts,
            from: IdleFrom::Baseline,
        });
        Some(AboveIdle {
            gross_j,
            covered_s,
            idle,
        })
    }

    /// Every energy channel that stands (not shadowed, [`Self::shadowed`]) with data in
    /// `[t0, t1]`: its energy there and its idle floor ([`Self::idle_floor`]).
    pub fn channels_above_idle(
        &self,
        t0: f64,
        t1: f64,
        idle: Option<&IdleBaseline>,
    ) -> Vec<ChannelAboveIdle> {
        self.channels
            .iter()
            .filter(|(id, c)| !self.shadowed(id, c, false))
            .filter_map(|(id, c)| {
                let (gross_j, covered_s) = c.energy_over(t0, t1)?;
                Some(ChannelAboveIdle {
                    id: id.clone(),
                    covers: c.covers,
                    method: c.method,
                    energy: AboveIdle {
                        gross_j,
                        covered_s,
                        idle: self.idle_floor(id, idle),
                    },
                })
            })
            .collect()
    }

    /// The segments that overlap `[t0, t1]`.
    fn segments_in(&self, t0: f64, t1: f64) -> impl Iterator<Item = &Segment> {
        self.segments.iter().enumerate().filter_map(move |(i, s)| {
            let end = self.segments.get(i + 1).map_or(f64::INFINITY, |n| n.t0);
            (s.t0 < t1 && end > t0).then_some(s)
        })
    }

    /// The basis over `[t0, t1]` when it did not change inside.
    fn single_basis(&self, t0: f64, t1: f64) -> Option<TotalBasis> {
        let inside: Vec<&Segment> = self.segments_in(t0, t1).collect();
        match inside.as_slice() {
            [one] => one.basis,
            _ => None,
        }
    }

    /// The basis at `t`, and the sources summed then.
    fn segment_at(&self, t: f64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.t0 <= t);
        self.segments.get(i.checked_sub(1)?)
    }

    /// Everything about `[w.t0, w.t1]`.
    pub fn report(&self, w: &Window) -> EnergyReport {
        let (t0, t1) = (w.t0, w.t1.max(w.t0));
        let duration_s = t1 - t0;
        let span = if w.apportion {
            self.apportion_span(t0, t1)
        } else {
            None
        };
        let mut total = self.total_over(t0, t1, span);
        let error = total
            .as_ref()
            .and_then(|t| self.window_error(t0, t1, span.filter(|_| t.apportioned)));
        if let Some(t) = total.as_mut() {
            t.band = error.and_then(|e| e.band_of(t.energy_j));
        }
        let in_total: BTreeSet<&str> = self
            .segments_in(t0, t1)
            .flat_map(|s| s.ids.iter().map(String::as_str))
            .collect();
        let sources: Vec<SourceEnergy> = self
            .channels
            .iter()
            .filter(|(id, c)| !self.shadowed(id, c, false))
            .filter_map(|(id, c)| {
                self.source_over(id, c, (t0, t1), span, in_total.contains(id.as_str()))
            })
            .collect();
        let above = self.total_above_idle(t0, t1, w.idle.as_ref());
        let idle_w = above.and_then(|a| a.idle).map(|i| i.watts);
        let net_j = above.and_then(|a| a.net_j());
        let net_band = net_j.and_then(|n| error?.band_of(n));
        let per_token = |j: Option<f64>| match (j, w.tokens) {
            (Some(j), Some(n)) if n > 0 => Some(j / n as f64),
            _ => None,
        };
        let total_j = total.as_ref().map(|t| t.energy_j);
        let (prefill_j, decode_j) = match (w.phase_boundary, &total) {
            // An apportioned window has no finer detail: its phases share it by time.
            (Some(b), Some(t)) if t.apportioned && b >= t0 && b <= t1 && t1 > t0 => {
                let f = (b - t0) / (t1 - t0);
                (Some(t.energy_j * f), Some(t.energy_j * (1.0 - f)))
            }
            (Some(b), _) if b >= t0 && b <= t1 => (
                self.energy_between(t0, b).map(|(j, _)| j),
                self.energy_between(b, t1).map(|(j, _)| j),
            ),
            _ => (None, None),
        };
        let (peak_temp_c, peak_temp_sensor) = self.peak_of(false, t0, t1);
        let (max_fan_rpm, _) = self.peak_of(true, t0, t1);
        EnergyReport {
            t0,
            t1,
            duration_s,
            sources,
            idle_w,
            net_wh: net_j.map(joules_to_wh),
            net_j,
            net_band,
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

    /// Where a window is shorter than two steps of a quantised counter of the total (NVML's
    /// moves every ~100 ms; a step is that, or the counter's sampling period where longer),
    /// its own difference holds 0, 1 or 2 steps: a 50 ms reply would read 0 J or a whole
    /// step. Its figures are then apportioned from the steps around it (Zeus's
    /// approx_instant_energy, taken from the counter itself): the span of two steps, and at
    /// least [`APPORTION_SPAN_S`], centred on the window, whose rate times the window's length
    /// is its energy. `None`: the window stands on its own.
    fn apportion_span(&self, t0: f64, t1: f64) -> Option<(f64, f64)> {
        let seg = self.segment_at(t1.min(self.settled_until()?))?;
        let step = seg
            .ids
            .iter()
            .filter_map(|id| self.channels.get(id))
            .filter(|c| c.kind == Kind::Counter)
            .filter_map(|c| Some(update_step_s(c.source)?.max(c.period.unwrap_or(0.0))))
            .reduce(f64::max)?;
        let (mid, half) = ((t0 + t1) / 2.0, step.max(APPORTION_SPAN_S / 2.0));
        (t1 - t0 < 2.0 * step).then_some((mid - half, mid + half))
    }

    /// Whole-system joules over `[t0, t1]` as a report takes them (over `span` and scaled
    /// to the window where it is apportioned, [`Self::apportion_span`]), the seconds covered,
    /// and whether it was apportioned.
    fn window_energy(
        &self,
        t0: f64,
        t1: f64,
        span: Option<(f64, f64)>,
    ) -> Option<(f64, f64, bool)> {
        let (a, b) = self.clamp(t0, t1)?;
        if let Some((sa, sb)) = span
            && let Some((j, span)) = self.energy_between(sa, sb)
            && span > 0.0
        {
            return Some((j / span * (b - a), b - a, true));
        }
        self.energy_between(a, b).map(|(j, c)| (j, c, false))
    }

    /// The cost of a reply's energy in `tariff`: each step priced when it was drawn
    /// ([`Self::cost_between`]), apportioned like its energy in a report with
    /// [`Window::apportion`].
    pub fn window_cost(&self, tariff: &Tariff, t0: f64, t1: f64) -> Option<f64> {
        let (a, b) = self.clamp(t0, t1)?;
        if let Some((sa, sb)) = self.apportion_span(t0, t1)
            && let Some((_, span)) = self.energy_between(sa, sb)
            && span > 0.0
        {
            return Some(self.cost_between(tariff, sa, sb)? / span * (b - a));
        }
        self.cost_between(tariff, a, b)
    }

    fn total_over(&self, t0: f64, t1: f64, span: Option<(f64, f64)>) -> Option<TotalEnergy> {
        let (energy_j, covered, apportioned) = self.window_energy(t0, t1, span)?;
        let seg = self.segment_at(t1.min(self.settled_until()?))?;
        let basis = seg.basis?;
        // The first entry is where the total began, not a change.
        let changes: Vec<BasisChange> = self
            .changes
            .iter()
            .skip(1)
            .filter(|c| c.t > t0 && c.t < t1)
            .cloned()
            .collect();
        let ids: BTreeSet<&String> = self
            .segments_in(t0, t1)
            .flat_map(|s| s.ids.iter())
            .collect();
        let estimated = ids
            .iter()
            .filter_map(|id| self.channels.get(*id))
            .any(|c| c.method == Method::Estimated);
        Some(TotalEnergy {
            energy_j,
            wh: joules_to_wh(energy_j),
            avg_w: (covered > 0.0).then(|| energy_j / covered),
            peak_w: self.peak_total(t0, t1),
            basis,
            components_only: matches!(basis, TotalBasis::Platform | TotalBasis::Components),
            estimated,
            sources: seg.ids.clone(),
            changes,
            apportioned,
            band: None,
        })
    }

    /// Highest whole-system power over the knot steps inside the window.
    fn peak_total(&self, t0: f64, t1: f64) -> Option<f64> {
        if let Some(p) = self.peak_live(t0, t1) {
            return Some(p);
        }
        let rate = |a: &Knot, b: &Knot| (b.j - a.j) / (b.t - a.t);
        let steps = || {
            self.knots
                .windows(2)
                .filter(move |w| w[1].t > t0 && w[0].t < t1 && w[1].t > w[0].t)
        };
        steps()
            .filter(|w| w[1].t - w[0].t >= MIN_PEAK_INTERVAL_S)
            .map(|w| rate(&w[0], &w[1]))
            .reduce(f64::max)
            .or_else(|| steps().map(|w| rate(&w[0], &w[1])).reduce(f64::max))
    }

    /// Where the total holds a quantised counter with a power reading of its own (an NVML
    /// board), the highest total as the gauge showed it: at each sample time inside the
    /// window, the sum of every source's live watts (the power reading, or a counter's rate).
    /// The counter's steps over one sample overshoot: a steady 250 W board peaks at 300 W.
    fn peak_live(&self, t0: f64, t1: f64) -> Option<f64> {
        let seg = self.segment_at(t1.min(self.settled_until()?))?;
        let parts: Vec<(&Channel, Option<&Channel>)> = seg
            .ids
            .iter()
            .filter_map(|id| {
                let c = self.channels.get(id)?;
                let sibling = (c.kind == Kind::Counter)
                    .then(|| self.power_sibling(id))
                    .flatten();
                Some((c, sibling))
            })
            .collect();
        let quantised = parts
            .iter()
            .any(|(c, p)| p.is_some() && update_step_s(c.source).is_some());
        if !quantised {
            return None;
        }
        let (first, _) = parts.first()?;
        let watts_at = |(c, sibling): &(&Channel, Option<&Channel>), t: f64| match sibling {
            Some(p) => p.w_at(t),
            // The rate of the counter's interval that holds `t`.
            None => c.points.get(c.points.partition_point(|p| p.t < t))?.w,
        };
        let from = first.points.partition_point(|p| p.t < t0);
        first.points[from..]
            .iter()
            .take_while(|p| p.t <= t1)
            .filter_map(|p| parts.iter().map(|x| watts_at(x, p.t)).sum::<Option<f64>>())
            .reduce(f64::max)
    }

    fn source_over(
        &self,
        id: &str,
        c: &Channel,
        (t0, t1): (f64, f64),
        span: Option<(f64, f64)>,
        in_total: bool,
    ) -> Option<SourceEnergy> {
        let (a, b) = (t0.max(c.first_t()?), t1.min(c.last_t()?));
        if b <= a {
            return None;
        }
        let covered_s = b - a;
        // Apportioned like the total (the same span), so the parts still add up to it.
        let energy_j = match span {
            Some((sa, sb)) => {
                let (x, y) = (sa.max(c.first_t()?), sb.min(c.last_t()?));
                if y <= x {
                    return None;
                }
                (c.j_at(y)? - c.j_at(x)?) / (y - x) * covered_s
            }
            None => c.j_at(b)? - c.j_at(a)?,
        };
        let error = match span {
            Some((sa, sb)) => {
                let (x, y) = (sa.max(c.first_t()?), sb.min(c.last_t()?));
                let swing = self.apportion_swing(id, c, x, y);
                self.channel_error(c, x, y).map(|e| {
                    e.scaled(covered_s / (y - x))
                        .widen(swing * covered_s, swing * covered_s)
                })
            }
            None => self.channel_error(c, a, b),
        };
        let sibling = self.power_sibling(id);
        let quantised = update_step_s(c.source).is_some();
        let peak_w = match (c.kind, sibling.filter(|_| quantised)) {
            // A quantised counter with a power reading of its own: the readings' peak (its
            // steps over one sample overshoot).
            (Kind::Counter, Some(p)) => Self::power_peak(p, t0, t1),
            // The rate of every interval that overlaps the window.
            (Kind::Counter, None) => c
                .points
                .windows(2)
                .filter(|w| w[1].t > t0 && w[0].t < t1)
                .filter_map(|w| w[1].w)
                .reduce(f64::max),
            (Kind::Power, _) => Self::power_peak(c, t0, t1),
        };
        Some(SourceEnergy {
            id: id.to_string(),
            device: c.device.clone(),
            label: c.label.clone(),
            source: c.source,
            covers: c.covers,
            method: c.method,
            energy_j,
            wh: joules_to_wh(energy_j),
            avg_w: Some(energy_j / covered_s),
            peak_w,
            covered_s,
            resets: c.resets.iter().filter(|&&r| r > t0 && r <= t1).count() as u32,
            in_total,
            via: c.via.clone(),
            power_via: match (c.kind, sibling) {
                (Kind::Counter, Some(p)) => p.via.clone(),
                (Kind::Counter, None) => Some("rate of the counter".into()),
                (Kind::Power, _) => c.via.clone(),
            },
            band: error.and_then(|e| e.band_of(energy_j)),
            band_row: c.band.key.to_string(),
        })
    }

    /// The power reading that shares channel `id`'s key (a counter's own power row).
    fn power_sibling(&self, id: &str) -> Option<&Channel> {
        let key = channel_key(id);
        self.channels
            .iter()
            .find(|(other, o)| {
                o.kind == Kind::Power && other.as_str() != id && channel_key(other) == key
            })
            .map(|(_, o)| o)
    }

    /// The highest power a power channel read over `[t0, t1]`: its readings inside and the
    /// line's value at each edge.
    fn power_peak(c: &Channel, t0: f64, t1: f64) -> Option<f64> {
        let (a, b) = (t0.max(c.first_t()?), t1.min(c.last_t()?));
        if b <= a {
            return None;
        }
        c.points
            .iter()
            .filter(|p| p.t >= a && p.t <= b)
            .filter_map(|p| p.w)
            .chain([c.w_at(a), c.w_at(b)].into_iter().flatten())
            .reduce(f64::max)
    }

    fn peak_of(&self, fan: bool, t0: f64, t1: f64) -> (Option<f64>, Option<String>) {
        let mut best: Option<(f64, &str)> = None;
        for e in self.extremes.values().filter(|e| e.fan == fan) {
            for &(t, v) in &e.points {
                if t >= t0 && t <= t1 && best.is_none_or(|(b, _)| v > b) {
                    best = Some((v, &e.name));
                }
            }
        }
        match best {
            Some((v, name)) => (Some(v), Some(name.to_string())),
            None => (None, None),
        }
    }

    /// Bound memory in long sessions: points before `t` are thinned to one per `gap_s`
    /// seconds. Channel and total points hold cumulative joules, so any two retained points
    /// still differ by exactly the energy between them; temperature and fan series keep each
    /// interval's highest value, so peaks survive.
    pub fn thin_before(&mut self, t: f64, gap_s: f64) {
        if !(gap_s > 0.0 && t.is_finite()) {
            return;
        }
        let bucket = |x: f64| (x / gap_s).floor();
        for c in self.channels.values_mut() {
            thin(&mut c.points, t, |p| p.t, bucket, |_, _| false);
        }
        thin(&mut self.knots, t, |k| k.t, bucket, |_, _| false);
        for e in self.extremes.values_mut() {
            thin(
                &mut e.points,
                t,
                |p| p.0,
                bucket,
                |new, kept| new.1 > kept.1,
            );
        }
    }

    /// Points held, over all series (for tests and memory checks).
    pub fn point_count(&self) -> usize {
        self.channels
            .values()
            .map(|c| c.points.len())
            .sum::<usize>()
            + self.knots.len()
            + self
                .extremes
                .values()
                .map(|e| e.points.len())
                .sum::<usize>()
    }
}

/// Rank of a basis: lower is better.
fn rank(b: TotalBasis) -> usize {
    TotalBasis::ORDER
        .iter()
        .position(|x| *x == b)
        .unwrap_or(usize::MAX)
}

/// Keep, of the points before `cut`, the first of each bucket (or the one `better` prefers);
/// the points from `cut` on stay as they are.
fn thin<P: Copy>(
    points: &mut Vec<P>,
    cut: f64,
    t: impl Fn(&P) -> f64,
    bucket: impl Fn(f64) -> f64,
    better: impl Fn(&P, &P) -> bool,
) {
    let split = points.partition_point(|p| t(p) < cut);
    if split < 2 {
        return;
    }
    let mut kept: Vec<P> = Vec::with_capacity(split / 2 + 1);
    let mut current = f64::NAN;
    for p in &points[..split] {
        let b = bucket(t(p));
        match kept.last_mut() {
            Some(k) if b == current => {
                if better(p, k) {
                    *k = *p;
                }
            }
            _ => {
                kept.push(*p);
                current = b;
            }
        }
    }
    kept.extend_from_slice(&points[split..]);
    *points = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, q: Quantity, covers: Covers, v: f64) -> Reading {
        Reading {
            id: id.into(),
            device: "d".into(),
            label: "l".into(),
            quantity: q,
            value: Some(v),
            limit: None,
            source: Source::System,
            covers,
            method: if q == Quantity::Energy {
                Method::Counter
            } else {
                Method::Measured
            },
            rejected: None,
            via: None,
        }
    }

    #[test]
    fn an_impossible_plug_or_battery_reading_never_reaches_the_total() {
        // A plug at 100 W with one reading of f64::MAX W (finite, and infinite once
        // integrated); a battery at 5e14 W. Without the limits the total is inf / ~1e15 J.
        for (id, covers, bad) in [
            ("plug:p:power", Covers::Wall, f64::MAX),
            ("battery:BAT0:power", Covers::Battery, 5e14),
        ] {
            let mut l = Ledger::new();
            for i in 0..=10 {
                let w = if i == 5 { bad } else { 100.0 };
                l.push(&Sample {
                    t: f64::from(i),
                    readings: vec![reading(id, Quantity::Power, covers, w)],
                });
            }
            let j = l.totals().energy_j;
            // 10 s at 100 W; the bad reading is skipped and bridged from 4 s to 6 s.
            assert!((j - 1000.0).abs() < 1e-9, "{id}: {j}");
            let now = l.total_power().map(|p| p.watts);
            assert_eq!(now, Some(100.0), "{id}");
        }
    }

    #[test]
    fn a_rejected_reading_is_not_counted() {
        let mut l = Ledger::new();
        for i in 0..=4 {
            let mut r = reading("plug:p:power", Quantity::Power, Covers::Wall, 100.0);
            if i == 2 {
                r.rejected = Some("test".into());
            }
            l.push(&Sample {
                t: f64::from(i),
                readings: vec![r],
            });
        }
        assert_eq!(l.channels()[0].watts, Some(100.0));
        assert!((l.totals().energy_j - 400.0).abs() < 1e-9);
    }

    #[test]
    fn a_counter_step_beyond_the_ceiling_is_a_reset_not_energy() {
        // A wall counter at 200 W that jumps by 1e15 J in one second (a misread total), then
        // carries on from there: the jump is a reset, the rest counts.
        let mut l = Ledger::new();
        let mut j = 0.0;
        for i in 0..=10 {
            j += if i == 5 {
                1e15
            } else if i > 0 {
                200.0
            } else {
                0.0
            };
            l.push(&Sample {
                t: f64::from(i),
                readings: vec![reading("plug:p:energy", Quantity::Energy, Covers::Wall, j)],
            });
        }
        let total = l.totals().energy_j;
        assert!((total - 1800.0).abs() < 1e-6, "{total}");
        // A coarse counter (a plug's whole Wh, 3600 J, in a half-second poll) is still
        // energy: steps are judged over at least MIN_STEP_JUDGED_S.
        let mut l = Ledger::new();
        for (t, j) in [(0.0, 0.0), (0.5, 3600.0), (1.0, 3600.0)] {
            l.push(&Sample {
                t,
                readings: vec![reading("plug:p:energy", Quantity::Energy, Covers::Wall, j)],
            });
        }
        assert_eq!(l.totals().energy_j, 3600.0);
        // A raised ceiling (a big server) lets a real 10 kW through.
        let mut l = Ledger::new().plausible(Limits {
            max_watts: 20_000.0,
            ..Limits::default()
        });
        for i in 0..=10 {
            l.push(&Sample {
                t: f64::from(i) * 10.0,
                readings: vec![reading(
                    "plug:p:energy",
                    Quantity::Energy,
                    Covers::Wall,
                    1e5 * f64::from(i),
                )],
            });
        }
        assert_eq!(l.totals().energy_j, 1e6);
    }

    #[test]
    fn a_slow_wall_plug_is_interpolated_across_window_edges() {
        // Plug: 100 W at 1 Hz with a Wh-style counter; components at 4 Hz (ignored: the wall
        // wins). A window from 0.3 to 3.7 s holds 340 J.
        let mut l = Ledger::new().expecting(Some(TotalBasis::Wall));
        for i in 0..=20 {
            let t = f64::from(i) * 0.25;
            let mut r = vec![reading(
                "rapl:pkg:energy",
                Quantity::Energy,
                Covers::CpuPackage,
                40.0 * t,
            )];
            if i % 4 == 0 {
                r.push(reading(
                    "plug:p:energy",
                    Quantity::Energy,
                    Covers::Wall,
                    100.0 * t,
                ));
            }
            l.push(&Sample { t, readings: r });
        }
        assert_eq!(l.basis(), Some(TotalBasis::Wall));
        let (j, covered) = l.energy_between(0.3, 3.7).expect("energy");
        assert!((j - 340.0).abs() < 1e-9, "{j}");
        assert!((covered - 3.4).abs() < 1e-9);
    }

    #[test]
    fn a_window_edge_inside_a_plug_step_follows_the_fast_components() {
        // CPU counter at 4 Hz: 10 W until t = 2.5, then 110 W. The wall (1 Hz counter) is the
        // CPU plus 50 W. A window from 2.5 to 3.0 holds 0.5 s x 160 W = 80 J; an even share
        // of the plug's step from 2 to 3 s (110 J) would say 55 J.
        let cpu_j = |t: f64| {
            if t <= 2.5 {
                10.0 * t
            } else {
                25.0 + 110.0 * (t - 2.5)
            }
        };
        let mut l = Ledger::new().expecting(Some(TotalBasis::Wall));
        for i in 0..=16 {
            let t = f64::from(i) * 0.25;
            let mut r = vec![reading(
                "rapl:pkg:energy",
                Quantity::Energy,
                Covers::CpuPackage,
                cpu_j(t),
            )];
            if i % 4 == 0 {
                r.push(reading(
                    "plug:p:energy",
                    Quantity::Energy,
                    Covers::Wall,
                    cpu_j(t) + 50.0 * t,
                ));
            }
            l.push(&Sample { t, readings: r });
        }
        let (j, _) = l.energy_between(2.5, 3.0).expect("energy");
        assert!((j - 80.0).abs() < 1e-9, "{j}");
        let (j, _) = l.energy_between(2.0, 2.5).expect("energy");
        assert!((j - 30.0).abs() < 1e-9, "{j}");
    }

    #[test]
    fn thin_keeps_first_of_bucket_and_the_tail() {
        let mut v: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i))).collect();
        thin(&mut v, 6.0, |p| p.0, |x| (x / 3.0).floor(), |_, _| false);
        assert_eq!(
            v.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0.0, 3.0, 6.0, 7.0, 8.0, 9.0]
        );
    }
}
