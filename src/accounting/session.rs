//! The dashboard session's accounting: every sensor sample goes into the [`Ledger`], replies
//! are kept with their spans on the sampler clock, the idle baseline is measured after the model
//! loads, and what the ledger settles is handed to the footer and the lifetime tally.
//!
//! Pure: times come from the events (the dashboard's event clock is the sampler's clock); the
//! wall-clock instant of sampler time zero prices each joule when it was drawn. The shell feeds
//! it the same events it gives the app and builds run cards from it (`dashboard::card`).

use crate::accounting::energy::SeriesPoint;
use crate::accounting::energy::{BasisChange, EnergyReport, IdleBaseline, TotalBasis, Window};
use crate::accounting::ledger::{Ledger, Totals};
use crate::accounting::pricing::format_co2;
use crate::accounting::tally::{Tally, TallyDelta};
use crate::accounting::throttle::{Episode, ThrottleDetector, ThrottleSettings};
use crate::engine::{EngineEvent, Phase, ReplyStats};
use crate::sensors::{Quantity, Sample};
use std::collections::BTreeMap;

use crate::accounting::ledger::{FULL_RESOLUTION_S, THINNED_GAP_S};

/// The run card's series is thinned like the ledger (one point per ten seconds beyond the last
/// ten minutes), once a minute, so a dashboard left running for days stays small.
const THIN_EVERY_S: f64 = 60.0;

/// Energy of this session as the footer shows it; the shell's energy accounting
/// (`session::SessionRecorder`: counters first, trapezoid only without a counter) fills it in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionEnergy {
    pub wh: f64,
    /// Some part of the total is an estimate (utilisation x TDP), not a measurement.
    pub estimated: bool,
    /// What the total is measured from now.
    pub basis: Option<TotalBasis>,
    /// The latest change of basis after the first (a source went silent or came back).
    pub last_change: Option<BasisChange>,
}

/// The footer's money line, formatted by the pricing module.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostLine {
    /// Session cost with its currency, e.g. "$0.0012".
    pub session: Option<String>,
    /// Region code of the tariff, e.g. "US", or "own".
    pub region: Option<String>,
    /// Session CO2, e.g. "0.41 g CO2e", when the grid intensity is known.
    pub co2: Option<String>,
    /// Joules per generated token of the last reply.
    pub j_per_token: Option<f64>,
    /// Energy over all sessions on this machine, Wh.
    pub lifetime_wh: Option<f64>,
    /// Money over all sessions in the tariff's currency, e.g. "$1.20".
    pub lifetime_cost: Option<String>,
}

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
    ledger: Ledger,
    first_t: Option<f64>,
    idle_window_s: f64,
    idle: Idle,
    load_ms: Option<f64>,
    replies: Vec<ReplySpan>,
    /// J per generated token of the last reply, once the ledger has settled past its end.
    last_j_per_token: Option<f64>,
    j_per_token_pending: bool,
    series: Vec<SeriesPoint>,
    last_series_second: Option<i64>,
    last_thin_t: f64,
    /// What the tally has been given so far.
    tallied: Totals,
    /// Latest temperatures and fans by "device label": plug samples carry none, so a
    /// series point keeps the local sensors' last values.
    temps: BTreeMap<String, f64>,
    fans: BTreeMap<String, f64>,
    /// Whether a slower reply is the hardware holding itself back.
    throttle: ThrottleDetector,
}

impl SessionRecorder {
    /// `ledger` prices and totals the energy (see [`Ledger::priced`], [`Ledger::expecting`]);
    /// `idle_window_s` is how long to average idle power after the model loads (0 skips it).
    pub fn new(ledger: Ledger, idle_window_s: f64) -> Self {
        Self {
            ledger,
            first_t: None,
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
            tallied: Totals::default(),
            temps: BTreeMap::new(),
            fans: BTreeMap::new(),
            throttle: ThrottleDetector::new(ThrottleSettings::default()),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Follow the engine: load time, the start of generation (ends the idle window), replies.
    /// Returns the tally increment for a finished reply (tokens, reply count).
    pub fn observe(&mut self, event: &EngineEvent, now: f64) -> Option<TallyDelta> {
        match event {
            EngineEvent::Loaded(info) => {
                self.load_ms = Some(info.load_ms);
                if self.idle == Idle::WaitingForLoad {
                    self.idle = if self.idle_window_s > 0.0 {
                        Idle::Measuring { from: now }
                    } else {
                        Idle::Skipped
                    };
                }
            }
            EngineEvent::Phase(Phase::Prefill | Phase::Generating) | EngineEvent::Tokens { .. } => {
                if matches!(self.idle, Idle::Measuring { .. }) {
                    self.idle = Idle::Skipped;
                }
                if let EngineEvent::Tokens { count, .. } = event {
                    self.throttle.tokens(now, *count);
                }
            }
            EngineEvent::ReplyDone(stats) => {
                self.throttle.reply_done(now);
                return Some(self.reply_done(stats, now));
            }
            _ => {}
        }
        None
    }

    /// A reply ended at `now` (finished, cancelled, or cut short by a signal).
    fn reply_done(&mut self, stats: &ReplyStats, now: f64) -> TallyDelta {
        // The engine times the reply from the moment it took the message.
        let t0 = (now - stats.wall_s.max(0.0)).max(0.0);
        self.replies.push(ReplySpan {
            t0,
            t1: now,
            stats: stats.clone(),
        });
        self.last_j_per_token = None;
        self.j_per_token_pending = true;
        TallyDelta {
            generated_tokens: u64::from(stats.generated_tokens),
            prompt_tokens: u64::from(stats.prompt_tokens),
            replies: 1,
            ..TallyDelta::default()
        }
    }

    /// Take in one sample: `tok_s` is the live generation rate for the series (None when
    /// idle). Returns what the ledger settled since the previous call, for the lifetime tally.
    pub fn push_sample(&mut self, s: &Sample, tok_s: Option<f64>) -> TallyDelta {
        self.ledger.push(s);
        self.throttle.sample(s);
        for r in &s.readings {
            let Some(v) = r.value.filter(|v| v.is_finite()) else {
                continue;
            };
            let map = match r.quantity {
                Quantity::Temperature => &mut self.temps,
                Quantity::FanRpm => &mut self.fans,
                _ => continue,
            };
            map.insert(format!("{} {}", r.device, r.label), v);
        }
        let first = *self.first_t.get_or_insert(s.t);
        let second = (s.t - first).floor() as i64;
        if self.last_series_second != Some(second) {
            self.last_series_second = Some(second);
            self.series.push(SeriesPoint {
                t_s: s.t - first,
                power_w: self.ledger.total_power().map(|p| p.watts),
                tok_s,
                temps_c: self.temps.clone(),
                fans_rpm: self.fans.clone(),
            });
        }
        let delta = self.take_settled();
        if s.t - self.last_thin_t >= THIN_EVERY_S {
            self.last_thin_t = s.t;
            // The ledger thins itself; the series follows the same rule.
            let cutoff = s.t - FULL_RESOLUTION_S;
            let series_cutoff = cutoff - first;
            let gap = THINNED_GAP_S as i64;
            self.series
                .retain(|p| p.t_s >= series_cutoff || (p.t_s.floor() as i64) % gap == 0);
        }
        if let Idle::Measuring { from } = self.idle
            && self
                .ledger
                .settled_until()
                .is_some_and(|t| t >= from + self.idle_window_s)
        {
            self.idle = Idle::Done(self.ledger.idle_baseline(from, from + self.idle_window_s));
        }
        if self.j_per_token_pending
            && let Some(span) = self.replies.last()
            && self.ledger.settled_until().is_some_and(|t| t >= span.t1)
        {
            self.j_per_token_pending = false;
            self.last_j_per_token = self.last_reply_report().and_then(|r| r.j_per_token);
        }
        delta
    }

    /// What the ledger settled since the tally was last given its share.
    fn take_settled(&mut self) -> TallyDelta {
        let now = self.ledger.totals();
        let j = now.energy_j - self.tallied.energy_j;
        if j <= 0.0 {
            return TallyDelta::default();
        }
        let mut delta = TallyDelta {
            energy_j: j,
            co2_g: now.co2_g - self.tallied.co2_g,
            ..TallyDelta::default()
        };
        if let Some(t) = self.ledger.tariff() {
            delta
                .cost
                .insert(t.currency.code().to_string(), now.cost - self.tallied.cost);
        }
        self.tallied = now;
        delta
    }

    /// The throttling episode in progress, if any: the header's mark.
    pub fn throttled(&self) -> Option<&Episode> {
        self.throttle.current()
    }

    /// Throttling episodes that overlap `[t0, t1]` (sampler clock), the one in progress too.
    pub fn throttle_between(&self, t0: f64, t1: f64) -> Vec<Episode> {
        self.throttle.episodes_between(t0, t1)
    }

    /// Every throttling episode of the session (the oldest dropped past 64).
    pub fn throttle_episodes(&self) -> Vec<Episode> {
        self.throttle.episodes()
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

    /// One point per second of the session, for the run card; `t_s` counts from
    /// [`Self::series_origin`].
    pub fn series(&self) -> &[SeriesPoint] {
        &self.series
    }

    /// Sampler time of the first sample, where the series' `t_s` is 0.
    pub fn series_origin(&self) -> Option<f64> {
        self.first_t
    }

    /// Energy, J, of the session so far, as far as the ledger has settled.
    pub fn energy_j(&self) -> f64 {
        self.ledger.totals().energy_j
    }

    /// Energy over a reply's span (with its tokens and the idle baseline), when the ledger
    /// had a total over it.
    pub fn reply_report(&self, span: &ReplySpan) -> Option<EnergyReport> {
        let r = self.ledger.report(&Window {
            t0: span.t0,
            t1: span.t1,
            tokens: Some(u64::from(span.stats.generated_tokens)),
            phase_boundary: Some(span.t0 + span.stats.prefill_end_s),
            idle: self.idle_baseline().cloned(),
        });
        r.total.is_some().then_some(r)
    }

    /// [`Self::reply_report`] of the last reply.
    pub fn last_reply_report(&self) -> Option<EnergyReport> {
        self.reply_report(self.replies.last()?)
    }

    /// What the session's total covers: from where the ledger's total began to where it has
    /// settled. (Samples from the plug's thread and the local one arrive in either order, so
    /// the first sample received is not always the earliest.)
    pub fn session_span(&self) -> Option<(f64, f64)> {
        self.ledger.span()
    }

    /// Energy over the whole session so far, with all generated tokens and the idle baseline.
    pub fn session_report(&self) -> Option<EnergyReport> {
        let (t0, t1) = self.session_span()?;
        let tokens = self
            .replies
            .iter()
            .map(|r| u64::from(r.stats.generated_tokens))
            .sum();
        let r = self.ledger.report(&Window {
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
        let totals = self.ledger.totals();
        let energy = SessionEnergy {
            wh: totals.energy_j / crate::accounting::energy::J_PER_WH,
            estimated: totals.estimated,
            basis: self.ledger.basis(),
            last_change: self.ledger.changes().iter().skip(1).last().cloned(),
        };
        let Some(tariff) = self.ledger.tariff() else {
            return (energy, CostLine::default());
        };
        let currency = tariff.currency.code();
        let cost = CostLine {
            session: Some(tariff.format(totals.cost)),
            region: Some(tariff.label.clone()),
            co2: tariff.co2_g_per_kwh.map(|_| format_co2(totals.co2_g)),
            j_per_token: self.last_j_per_token,
            lifetime_wh: lifetime.map(Tally::energy_wh),
            lifetime_cost: lifetime
                .and_then(|t| t.cost.get(currency))
                .map(|&c| tariff.format(c)),
        };
        (energy, cost)
    }
}
