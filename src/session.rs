//! The dashboard session's accounting: every sensor sample goes into an energy accumulator,
//! replies are kept with their spans on the sampler clock, the idle baseline is measured after
//! the model loads, and each sample's energy is priced for the footer and the lifetime tally.
//!
//! Pure: times come from the events (the dashboard's event clock is the sampler's clock) and
//! the wall time used for time-of-use prices is an argument. The shell feeds it the same
//! events it gives the app and builds run cards from it (`session_card`).

use crate::app::{CostLine, SessionEnergy};
use crate::energy::{EnergyAccumulator, EnergyReport, IdleBaseline, Window};
use crate::engine::{EngineEvent, Phase, ReplyStats};
use crate::event::Event;
use crate::pricing::{Tariff, format_co2};
use crate::runcard::SeriesPoint;
use crate::sensors::Sample;
use crate::tally::{Tally, TallyDelta};

/// The last ten minutes stay at full resolution; older samples and series points are thinned
/// to one per ten seconds, every minute, so a dashboard left running for days stays small.
const FULL_RESOLUTION_S: f64 = 600.0;
const THINNED_GAP_S: f64 = 10.0;
const THIN_EVERY_S: f64 = 60.0;

/// One finished reply and when it ran, sampler clock seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplySpan {
    pub t0: f64,
    pub t1: f64,
    pub stats: ReplyStats,
}

/// Where the idle measurement stands.
#[derive(Debug, Clone, PartialEq)]
enum Idle {
    /// The model has not loaded yet.
    WaitingForLoad,
    /// Loaded at `from`, nothing generated since.
    Measuring { from: f64 },
    /// Measured (`None`: the sensors gave no system total over the window).
    Done(Option<IdleBaseline>),
    /// Generation started before the window was over, or the window is 0.
    Skipped,
}

pub struct SessionRecorder {
    /// Every sample of the session, for the run card's reports.
    full: EnergyAccumulator,
    /// Only the latest samples: the per-sample energy in constant time.
    recent: EnergyAccumulator,
    first_t: Option<f64>,
    last_t: Option<f64>,
    energy_j: f64,
    estimated: bool,
    cost: f64,
    co2_g: Option<f64>,
    tariff: Tariff,
    idle_window_s: f64,
    idle: Idle,
    load_ms: Option<f64>,
    replies: Vec<ReplySpan>,
    /// J per generated token of the last reply, once the samples covering it have arrived.
    last_j_per_token: Option<f64>,
    j_per_token_pending: bool,
    series: Vec<SeriesPoint>,
    last_series_second: Option<i64>,
    last_thin_t: f64,
}

impl SessionRecorder {
    /// `tariff` prices the energy; `idle_window_s` is how long to average idle power after the
    /// model loads (0 skips the baseline).
    pub fn new(tariff: Tariff, idle_window_s: f64) -> Self {
        Self {
            full: EnergyAccumulator::new(),
            recent: EnergyAccumulator::new(),
            first_t: None,
            last_t: None,
            energy_j: 0.0,
            estimated: false,
            cost: 0.0,
            co2_g: None,
            tariff,
            idle_window_s: if idle_window_s.is_finite() {
                idle_window_s.max(0.0)
            } else {
                0.0
            },
            idle: Idle::WaitingForLoad,
            load_ms: None,
            replies: Vec::new(),
            last_j_per_token: None,
            j_per_token_pending: false,
            series: Vec::new(),
            last_series_second: None,
            last_thin_t: f64::NEG_INFINITY,
        }
    }

    /// Follow the engine: load time, the start of generation (ends the idle window), replies.
    /// Samples go through [`Self::push_sample`], which needs more than the event.
    /// Returns the tally increment for a finished reply (tokens, reply count).
    pub fn observe(&mut self, ev: &Event) -> Option<TallyDelta> {
        let Event::Engine { event, now } = ev else {
            return None;
        };
        match event {
            EngineEvent::Loaded(info) => {
                self.load_ms = Some(info.load_ms);
                if self.idle == Idle::WaitingForLoad {
                    self.idle = if self.idle_window_s > 0.0 {
                        Idle::Measuring { from: *now }
                    } else {
                        Idle::Skipped
                    };
                }
            }
            EngineEvent::Phase(Phase::Prefill | Phase::Generating) | EngineEvent::Token(_) => {
                if matches!(self.idle, Idle::Measuring { .. }) {
                    self.idle = Idle::Skipped;
                }
            }
            EngineEvent::ReplyDone(stats) => {
                // The engine times the reply from the moment it took the message.
                let t0 = (now - stats.wall_s.max(0.0)).max(0.0);
                self.replies.push(ReplySpan {
                    t0,
                    t1: *now,
                    stats: stats.clone(),
                });
                self.last_j_per_token = None;
                self.j_per_token_pending = true;
                return Some(TallyDelta {
                    generated_tokens: u64::from(stats.generated_tokens),
                    prompt_tokens: u64::from(stats.prompt_tokens),
                    replies: 1,
                    ..TallyDelta::default()
                });
            }
            _ => {}
        }
        None
    }

    /// Take in one sample: `tok_s` is the live generation rate for the series (None when
    /// idle), `wall` prices the energy at its time of day. Returns the sample's energy since
    /// the previous one, priced, for the lifetime tally.
    pub fn push_sample(
        &mut self,
        s: &Sample,
        tok_s: Option<f64>,
        wall: jiff::Timestamp,
    ) -> TallyDelta {
        self.full.push(s);
        self.recent.push(s);
        let first = *self.first_t.get_or_insert(s.t);
        let second = (s.t - first).floor() as i64;
        if self.last_series_second != Some(second) {
            self.last_series_second = Some(second);
            self.series.push(SeriesPoint::from_sample(s, first, tok_s));
        }
        let mut delta = TallyDelta::default();
        if let Some(prev) = self.last_t.filter(|&p| s.t > p) {
            let r = self.recent.report(&Window {
                t0: prev,
                t1: s.t,
                ..Window::default()
            });
            if let Some(total) = r.total {
                let j = total.energy_j.max(0.0);
                self.energy_j += j;
                self.estimated |= total.estimated;
                let cost = self.tariff.cost(j, wall);
                self.cost += cost;
                let co2 = self.tariff.co2_g(j);
                if let Some(g) = co2 {
                    *self.co2_g.get_or_insert(0.0) += g;
                }
                delta.energy_j = j;
                delta
                    .cost
                    .insert(self.tariff.currency.code().to_string(), cost);
                delta.co2_g = co2.unwrap_or(0.0);
            }
            self.recent.prune_before(s.t);
        }
        if self.last_t.is_none_or(|p| s.t > p) {
            self.last_t = Some(s.t);
        }
        if s.t - self.last_thin_t >= THIN_EVERY_S {
            self.last_thin_t = s.t;
            let cutoff = s.t - FULL_RESOLUTION_S;
            self.full.thin_before(cutoff, THINNED_GAP_S);
            let series_cutoff = cutoff - first;
            let gap = THINNED_GAP_S as i64;
            self.series
                .retain(|p| p.t_s >= series_cutoff || (p.t_s.floor() as i64) % gap == 0);
        }
        if let Idle::Measuring { from } = self.idle
            && s.t >= from + self.idle_window_s
        {
            self.idle = Idle::Done(self.full.idle_baseline(from, from + self.idle_window_s));
        }
        if self.j_per_token_pending
            && let Some(span) = self.replies.last()
            && s.t >= span.t1
        {
            self.j_per_token_pending = false;
            self.last_j_per_token = self.last_reply_report().and_then(|r| r.j_per_token);
        }
        delta
    }

    /// The idle baseline, once measured.
    pub fn idle_baseline(&self) -> Option<&IdleBaseline> {
        match &self.idle {
            Idle::Done(b) => b.as_ref(),
            _ => None,
        }
    }

    pub fn load_ms(&self) -> Option<f64> {
        self.load_ms
    }

    pub fn replies(&self) -> &[ReplySpan] {
        &self.replies
    }

    /// One point per second of the session, for the run card.
    pub fn series(&self) -> &[SeriesPoint] {
        &self.series
    }

    /// Energy, J, of the session so far (counters first, trapezoid where none).
    pub fn energy_j(&self) -> f64 {
        self.energy_j
    }

    /// Energy over the last reply's span (with its tokens and the idle baseline), when the
    /// sensors gave a system total over it.
    pub fn last_reply_report(&self) -> Option<EnergyReport> {
        let span = self.replies.last()?;
        let r = self.full.report(&Window {
            t0: span.t0,
            t1: span.t1,
            tokens: Some(u64::from(span.stats.generated_tokens)),
            phase_boundary: Some(span.t0 + span.stats.prefill_end_s),
            idle: self.idle_baseline().cloned(),
        });
        r.total.is_some().then_some(r)
    }

    /// Energy over the whole session so far, with all generated tokens and the idle baseline.
    pub fn session_report(&self) -> Option<EnergyReport> {
        let (t0, t1) = (self.first_t?, self.last_t?);
        let tokens = self
            .replies
            .iter()
            .map(|r| u64::from(r.stats.generated_tokens))
            .sum();
        let r = self.full.report(&Window {
            t0,
            t1,
            tokens: Some(tokens),
            phase_boundary: None,
            idle: self.idle_baseline().cloned(),
        });
        r.total.is_some().then_some(r)
    }

    /// What the footer shows: session energy, its cost and CO2 in the configured region, J per
    /// token of the last reply, and the lifetime tally.
    pub fn footer(&self, lifetime: Option<&Tally>) -> (SessionEnergy, CostLine) {
        let energy = SessionEnergy {
            wh: self.energy_j / crate::energy::J_PER_WH,
            estimated: self.estimated,
        };
        let currency = self.tariff.currency.code();
        let cost = CostLine {
            session: Some(self.tariff.format(self.cost)),
            region: Some(self.tariff.label.clone()),
            co2: self.co2_g.map(format_co2),
            j_per_token: self.last_j_per_token,
            lifetime_wh: lifetime.map(Tally::energy_wh),
            lifetime_cost: lifetime
                .and_then(|t| t.cost.get(currency))
                .map(|&c| self.tariff.format(c)),
        };
        (energy, cost)
    }
}
