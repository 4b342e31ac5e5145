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
//! - The books are kept in time order: each piece of the ledger's time (its intervals, cut
//!   where a request starts or ends or an open one shows its first token) is split once, as
//!   soon as the ledger covers it, between every request active in it, and each share is
//!   booked to its request for good. So the shares of a piece always add up to its energy, a
//!   request is settled as soon as the ledger covers its end, and one still open is settled
//!   in parts (its energy so far booked, the rest as it goes). An open request counts the
//!   tokens seen on its stream so far; its prompt count comes only with its last chunk, so a
//!   piece in which an open request is still computing its prompt beside another request
//!   waits for that count, at most [`PREFILL_WAIT_S`], then counts that prompt as nothing.

use super::energy::{IdleBaseline, TotalBasis, floor_net};
use super::ledger::Ledger;
use super::pricing::Tariff;
use std::collections::BTreeMap;

/// How long a piece shared with an open request still computing its prompt waits for that
/// prompt's count (it comes with the request's last chunk) before it is split without it: a
/// request queued or prefilling for long does not hold back the records beside it.
pub const PREFILL_WAIT_S: f64 = 5.0;

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

/// What the books know of a request still open: when it came and the tokens seen so far.
#[derive(Debug, Clone, Default)]
struct Open {
    t0: f64,
    /// Generated tokens seen at each time, not yet past the books' frontier.
    times: Vec<f64>,
    /// Its first generated token (prefill is over).
    first: Option<f64>,
}

impl Open {
    /// As an activity for the pieces before `now`: tokens as seen, its prompt not yet known.
    fn activity(&self, id: u64) -> Activity {
        Activity {
            id,
            t0: self.t0,
            t1: f64::INFINITY,
            prefill_tokens: 0.0,
            prefill: (self.t0, self.first.unwrap_or(f64::INFINITY)),
            generated_tokens: self.times.len() as f64,
            token_times: self.times.clone(),
            prefill_weight: None,
        }
    }

    /// Still computing its prompt somewhere in `(a, b]` (its count not known yet).
    fn prefilling(&self, a: f64) -> bool {
        self.first.is_none_or(|f| f > a)
    }
}

/// The parts booked to one request so far.
#[derive(Debug, Clone, Default)]
struct Booked {
    signed_j: f64,
    idle_w: Option<f64>,
    intervals: u32,
    covered_s: f64,
    shared_s: f64,
    cost: f64,
}

/// The books of the requests a server answered: open ones (settled in parts as the ledger
/// covers them) and ended ones whose end the ledger has not covered yet. Every piece of time
/// is split once, in order, up to the frontier.
#[derive(Debug, Clone, Default)]
pub struct Attributor {
    open: BTreeMap<u64, Open>,
    ended: BTreeMap<u64, Activity>,
    booked: BTreeMap<u64, Booked>,
    /// Every piece before this is split and booked.
    frontier: Option<f64>,
}

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// A request arrived at `t0` (a time before the frontier counts from the frontier: that
    /// time is already split).
    pub fn open(&mut self, id: u64, t0: f64) {
        let t0 = self.frontier.map_or(t0, |f| t0.max(f));
        self.open.insert(
            id,
            Open {
                t0,
                ..Open::default()
            },
        );
    }

    /// An open request's stream showed `n` generated tokens at `t`.
    pub fn tokens(&mut self, id: u64, t: f64, n: u32) {
        if let Some(o) = self.open.get_mut(&id) {
            o.first.get_or_insert(t);
            if o.times.len() < 1 << 20 {
                o.times.extend(std::iter::repeat_n(t, n as usize));
            }
        }
    }

    /// A request ended; its token counts are final.
    pub fn close(&mut self, mut a: Activity) {
        self.open.remove(&a.id);
        if let Some(f) = self.frontier {
            a.t0 = a.t0.max(f);
            a.t1 = a.t1.max(a.t0);
        }
        self.ended.insert(a.id, a);
    }

    /// Drop a request that will never be attributed (the ledger never covered it).
    pub fn forget(&mut self, id: u64) {
        self.open.remove(&id);
        self.ended.remove(&id);
        self.booked.remove(&id);
    }

    /// Requests not yet attributed (open or waiting for the ledger).
    pub fn pending(&self) -> usize {
        self.open.len() + self.ended.len()
    }

    /// Joules booked so far to a request not yet settled (an open one's energy so far), gross
    /// of the final floor at zero.
    pub fn booked_j(&self, id: u64) -> Option<f64> {
        self.booked.get(&id).map(|b| b.signed_j)
    }

    /// Up to where every piece is split (`None`: nothing yet).
    pub fn frontier(&self) -> Option<f64> {
        self.frontier
    }

    /// Split every piece the ledger now covers, and settle each ended request whose end the
    /// frontier passed. Returns `(id, share)` in the order they ended.
    pub fn settle(
        &mut self,
        ledger: &Ledger,
        idle: Option<&IdleBaseline>,
        tariff: Option<&Tariff>,
    ) -> Vec<(u64, Share)> {
        let Some(until) = ledger.settled_until().map(|t| t - SETTLE_AFTER_S) else {
            return Vec::new();
        };
        let earliest = self
            .open
            .values()
            .map(|o| o.t0)
            .chain(self.ended.values().map(|a| a.t0))
            .fold(f64::INFINITY, f64::min);
        if !earliest.is_finite() {
            // Nobody to book to: the frontier moves on with the ledger.
            self.frontier = Some(self.frontier.map_or(until, |f| f.max(until)));
            return Vec::new();
        }
        let from = self
            .frontier
            .map_or(earliest, |f| f.max(earliest))
            .min(until);
        if until > from {
            self.book(ledger, idle, tariff, from, until);
        }
        self.trim();
        let front = self.frontier.unwrap_or(f64::NEG_INFINITY);
        let mut done: Vec<(f64, u64)> = self
            .ended
            .values()
            .filter(|a| a.t1 <= front)
            .map(|a| (a.t1, a.id))
            .collect();
        done.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let basis = ledger.basis();
        done.into_iter()
            .filter_map(|(_, id)| {
                let a = self.ended.remove(&id)?;
                let b = self.booked.remove(&id).unwrap_or_default();
                Some((id, share(&a, b, basis, tariff)))
            })
            .collect()
    }

    /// Split the pieces of `(from, until]` in order, stopping at the first that must wait.
    fn book(
        &mut self,
        ledger: &Ledger,
        idle: Option<&IdleBaseline>,
        tariff: Option<&Tariff>,
        from: f64,
        until: f64,
    ) {
        let opens: Vec<(u64, Activity, &Open)> = self
            .open
            .iter()
            .map(|(id, o)| (*id, o.activity(*id), o))
            .collect();
        let mut cuts: Vec<f64> = self
            .ended
            .values()
            .flat_map(|a| [a.t0, a.t1])
            .chain(
                opens
                    .iter()
                    .flat_map(|(_, _, o)| [Some(o.t0), o.first])
                    .flatten(),
            )
            .filter(|&t| t > from && t < until)
            .collect();
        cuts.sort_by(f64::total_cmp);
        let mut pieces = Vec::new();
        for (a, b, _) in ledger.steps_between(from, until) {
            let mut start = a;
            for c in cuts.iter().copied().filter(|&c| c > a && c < b).chain([b]) {
                pieces.push((start, c));
                start = c;
            }
        }
        let mut front = until;
        for (a, b) in pieces {
            let active: Vec<&Activity> = self
                .ended
                .values()
                .chain(opens.iter().map(|(_, act, _)| act))
                .filter(|r| r.overlaps(a, b))
                .collect();
            // A prompt still being computed beside another request: its count is needed,
            // unless the piece has waited long enough for it.
            let waits = active.len() > 1
                && b + PREFILL_WAIT_S > until
                && opens
                    .iter()
                    .any(|(_, act, o)| act.overlaps(a, b) && o.prefilling(a));
            if waits {
                front = a;
                break;
            }
            let above = ledger.total_above_idle(a, b, idle);
            let give = above.as_ref().map_or(0.0, |e| e.signed_or_gross_j());
            let idle_w = above.and_then(|e| e.idle).map(|i| i.watts);
            let shared = active.len() > 1;
            for (id, j) in split_interval(give, a, b, &active) {
                let bk = self.booked.entry(id).or_default();
                bk.signed_j += j;
                bk.intervals += 1;
                bk.covered_s += b - a;
                if shared {
                    bk.shared_s += b - a;
                }
                bk.idle_w = bk.idle_w.or(idle_w);
                if let Some(t) = tariff {
                    bk.cost += ledger.cost_spread(t, j, a, b).unwrap_or(0.0);
                }
            }
        }
        self.frontier = Some(front.max(self.frontier.unwrap_or(f64::NEG_INFINITY)));
    }

    /// Token times behind the frontier are booked: an open request keeps only those after.
    fn trim(&mut self) {
        let Some(f) = self.frontier else { return };
        for o in self.open.values_mut() {
            let keep = o.times.partition_point(|&t| t <= f);
            o.times.drain(..keep);
        }
    }
}

/// A settled request's share from its booked parts.
fn share(a: &Activity, b: Booked, basis: Option<TotalBasis>, tariff: Option<&Tariff>) -> Share {
    let joules = floor_net(b.signed_j);
    Share {
        joules,
        idle_w: b.idle_w,
        basis,
        intervals: b.intervals,
        covered_s: b.covered_s,
        shared_s: b.shared_s,
        prefill_weight: a.weight(),
        weight_measured: a.prefill_weight.is_some(),
        cost: tariff.map(|_| if joules == 0.0 { 0.0 } else { b.cost }),
        co2_g: tariff.and_then(|t| t.co2_g(joules)),
    }
}
