//! Attribution of the machine's energy to the requests a server answered at the same time.
//!
//! Nobody publishes a method for overlapping requests; this one is stated in every record it
//! produces, as an attribution, not a measurement:
//!
//! - The energy is the ledger's, never computed here: its whole-system total cut into its own
//!   sampling intervals ([`Ledger::steps_between`]). With an idle baseline on the same basis,
//!   each interval gives its energy net of idle as the ledger has it
//!   ([`Ledger::total_above_idle`]: signed, so an interval below idle takes from the request
//!   instead of being dropped); the request's figure is floored once, as a whole
//!   ([`floor_net`]). Without a baseline it is gross, and the record says which.
//! - Within each interval, the energy is split between the requests active in it in
//!   proportion to the tokens each processed in it. Generated tokens count where they were
//!   seen on the stream; prompt tokens (cached ones excluded: the server did not compute them)
//!   are spread evenly over the request's prefill span. A prompt token weighs its measured
//!   cost relative to a generated one (`prompt_per_token_ms / predicted_per_token_ms` from the
//!   server's timings) or 1 where the server gave no timings.
//! - An interval in which requests were active but none processed a token (all queued, or
//!   between chunks) is split evenly between them: the server was busy for them.
//! - A request is settled only when the ledger covers its end and every request that
//!   overlapped it has ended (their token counts are final), so the splits of one interval,
//!   taken at different times for different requests, always add up to its energy.

use super::energy::{IdleBaseline, TotalBasis, floor_net};
use super::ledger::Ledger;
use super::pricing::Tariff;
use std::collections::BTreeMap;

/// How far past a request's end the ledger must have settled before it is attributed: a
/// slow source's step across the end is shaped by the fast sensors only once they reported.
pub const SETTLE_AFTER_S: f64 = 1.0;

/// What one request did and when, on the sampler clock (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: u64,
    /// The request arrived.
    pub t0: f64,
    /// Its last byte passed (or it failed).
    pub t1: f64,
    /// Prompt tokens the server computed (cached ones excluded).
    pub prefill_tokens: f64,
    /// When it computed them: from the request's arrival to its first generated token.
    pub prefill: (f64, f64),
    /// When each generated token was seen on the stream. Empty for a reply that came in one
    /// piece: its tokens are then spread evenly from the end of prefill to `t1`.
    pub token_times: Vec<f64>,
    /// Generated tokens by the server's own count; `token_times` are scaled to it.
    pub generated_tokens: f64,
    /// A prompt token's cost relative to a generated one, from the server's timings.
    pub prefill_weight: Option<f64>,
}

impl Activity {
    fn weight(&self) -> f64 {
        self.prefill_weight
            .filter(|w| w.is_finite() && *w >= 0.0)
            .unwrap_or(1.0)
    }

    /// Weighted tokens this request processed in `(a, b]`.
    pub fn tokens_in(&self, a: f64, b: f64) -> f64 {
        let prefill = spread(self.prefill_tokens, self.prefill, a, b) * self.weight();
        let decode = if self.token_times.is_empty() {
            let from = if self.t1 > self.prefill.1 {
                self.prefill.1
            } else {
                self.t0
            };
            spread(self.generated_tokens, (from, self.t1), a, b)
        } else {
            let seen = self.token_times.len() as f64;
            let scale = if self.generated_tokens > 0.0 {
                self.generated_tokens / seen
            } else {
                1.0
            };
            let lo = self.token_times.partition_point(|&t| t <= a);
            let hi = self.token_times.partition_point(|&t| t <= b);
            (hi.saturating_sub(lo)) as f64 * scale
        };
        prefill + decode
    }

    fn overlaps(&self, a: f64, b: f64) -> bool {
        self.t0 < b && self.t1 > a
    }
}

/// The part of `n` tokens spread evenly over `span` that falls in `(a, b]`; a span of no
/// length puts them all at its instant.
fn spread(n: f64, span: (f64, f64), a: f64, b: f64) -> f64 {
    if n <= 0.0 || !n.is_finite() {
        return 0.0;
    }
    let (s0, s1) = span;
    if s1 <= s0 {
        return if s0 > a && s0 <= b { n } else { 0.0 };
    }
    let lo = a.max(s0);
    let hi = b.min(s1);
    if hi <= lo {
        0.0
    } else {
        n * (hi - lo) / (s1 - s0)
    }
}

/// The energy of one interval split between the requests active in it: `(id, joules)`.
/// `energy_j` is what the interval has to give (already net of idle where that applies).
pub fn split_interval(energy_j: f64, a: f64, b: f64, active: &[&Activity]) -> Vec<(u64, f64)> {
    let live: Vec<&&Activity> = active.iter().filter(|r| r.overlaps(a, b)).collect();
    if live.is_empty() || !energy_j.is_finite() {
        return Vec::new();
    }
    let weights: Vec<f64> = live.iter().map(|r| r.tokens_in(a, b)).collect();
    let sum: f64 = weights.iter().sum();
    if sum > 0.0 {
        live.iter()
            .zip(&weights)
            .map(|(r, w)| (r.id, energy_j * w / sum))
            .collect()
    } else {
        let each = energy_j / live.len() as f64;
        live.iter().map(|r| (r.id, each)).collect()
    }
}

/// A request's attributed energy and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub joules: f64,
    /// The idle power taken off each interval first (`None`: gross, no baseline on the
    /// ledger's basis).
    pub idle_w: Option<f64>,
    /// What the ledger's total covers (wall plug, sum of parts, ...).
    pub basis: Option<TotalBasis>,
    /// Sampling intervals the request was split in.
    pub intervals: u32,
    /// Seconds of the request the ledger had a total for.
    pub covered_s: f64,
    /// Of those, seconds shared with other requests.
    pub shared_s: f64,
    /// The prompt-token weight used, and whether the server measured it.
    pub prefill_weight: f64,
    pub weight_measured: bool,
    /// In the tariff's currency, each interval's share priced when it was drawn.
    pub cost: Option<f64>,
    pub co2_g: Option<f64>,
}

/// Attribute `target`'s share of every interval of its span, with all of `all` (which must
/// hold every request overlapping it, with final token counts).
pub fn attribute(
    ledger: &Ledger,
    idle: Option<&IdleBaseline>,
    tariff: Option<&Tariff>,
    all: &[&Activity],
    target: &Activity,
) -> Share {
    let basis = ledger.basis();
    let idle_w = ledger
        .total_above_idle(target.t0, target.t1, idle)
        .and_then(|e| e.idle)
        .map(|i| i.watts);
    let mut s = Share {
        joules: 0.0,
        idle_w,
        basis,
        intervals: 0,
        covered_s: 0.0,
        shared_s: 0.0,
        prefill_weight: target.weight(),
        weight_measured: target.prefill_weight.is_some(),
        cost: tariff.map(|_| 0.0),
        co2_g: tariff.and_then(|t| t.co2_g(0.0)),
    };
    let others: Vec<&Activity> = all
        .iter()
        .copied()
        .filter(|r| r.id != target.id && r.overlaps(target.t0, target.t1))
        .collect();
    // Each interval is cut where a request starts or ends, so a request is split only
    // the part of an interval it was active in; the cuts come from every request that
    // overlaps the target, so each request's figure of a shared piece is the same piece.
    let mut cuts: Vec<f64> = others
        .iter()
        .flat_map(|r| [r.t0, r.t1])
        .filter(|&t| t > target.t0 && t < target.t1)
        .collect();
    cuts.sort_by(f64::total_cmp);
    let mut pieces = Vec::new();
    for (a, b, _) in ledger.steps_between(target.t0, target.t1) {
        let mut from = a;
        for c in cuts.iter().copied().filter(|&c| c > a && c < b).chain([b]) {
            pieces.push((from, c));
            from = c;
        }
    }
    let mut signed = 0.0;
    for (a, b) in pieces {
        // The ledger's own figure for the piece (its interpolation inside a step), net of
        // idle where the baseline applies.
        let give = ledger
            .total_above_idle(a, b, idle)
            .map_or(0.0, |e| e.signed_or_gross_j());
        let mut active: Vec<&Activity> = others.clone();
        active.push(target);
        let mine: f64 = split_interval(give, a, b, &active)
            .into_iter()
            .filter(|(id, _)| *id == target.id)
            .map(|(_, j)| j)
            .sum();
        signed += mine;
        s.intervals += 1;
        s.covered_s += b - a;
        if others.iter().any(|r| r.overlaps(a, b)) {
            s.shared_s += b - a;
        }
        if let (Some(t), Some(c)) = (tariff, s.cost.as_mut()) {
            *c += ledger.cost_spread(t, mine, a, b).unwrap_or(0.0);
        }
    }
    s.joules = floor_net(signed);
    if s.joules == 0.0 {
        s.cost = s.cost.map(|_| 0.0);
    }
    s.co2_g = tariff.and_then(|t| t.co2_g(s.joules));
    s
}

/// Requests on their way to being attributed: open ones (started, not ended) and ended ones
/// kept while a request they overlapped still needs them.
#[derive(Debug, Clone, Default)]
pub struct Attributor {
    open: BTreeMap<u64, f64>,
    ended: Vec<(Activity, bool)>,
}

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// A request arrived at `t0`.
    pub fn open(&mut self, id: u64, t0: f64) {
        self.open.insert(id, t0);
    }

    /// A request ended; its token counts are final.
    pub fn close(&mut self, a: Activity) {
        self.open.remove(&a.id);
        self.ended.push((a, false));
    }

    /// Drop a request that will never be attributed (the ledger never covered it).
    pub fn forget(&mut self, id: u64) {
        self.open.remove(&id);
        self.ended.retain(|(a, _)| a.id != id);
    }

    /// Requests not yet attributed (open or waiting for the ledger).
    pub fn pending(&self) -> usize {
        self.open.len() + self.ended.iter().filter(|(_, done)| !done).count()
    }

    /// Attribute every ended request the ledger now covers and whose overlapping requests
    /// have all ended. Returns `(id, share)` in the order they ended.
    pub fn settle(
        &mut self,
        ledger: &Ledger,
        idle: Option<&IdleBaseline>,
        tariff: Option<&Tariff>,
    ) -> Vec<(u64, Share)> {
        let Some(until) = ledger.settled_until() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let ready: Vec<usize> = (0..self.ended.len())
            .filter(|&i| {
                let (a, done) = &self.ended[i];
                !done && a.t1 + SETTLE_AFTER_S <= until && self.open.values().all(|&t0| t0 >= a.t1)
            })
            .collect();
        let all: Vec<&Activity> = self.ended.iter().map(|(a, _)| a).collect();
        for &i in &ready {
            let target = &self.ended[i].0;
            out.push((target.id, attribute(ledger, idle, tariff, &all, target)));
        }
        for i in ready {
            self.ended[i].1 = true;
        }
        // Keep an attributed request only while one not yet attributed may still overlap it.
        let earliest_waiting = self
            .open
            .values()
            .copied()
            .chain(self.ended.iter().filter(|(_, d)| !d).map(|(a, _)| a.t0))
            .fold(f64::INFINITY, f64::min);
        self.ended
            .retain(|(a, done)| !done || a.t1 > earliest_waiting);
        out
    }
}
