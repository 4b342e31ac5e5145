//! The dashboard session's accounting: a subscriber of the metering runtime, which pushes
//! every sample into the [`Ledger`] first; replies are kept with their spans on the sampler
//! clock, the idle baseline is measured after the model loads, and what the ledger settles
//! about each reply is handed to the footer.
//!
//! Pure: times come from the events (the dashboard's event clock is the sampler's clock); the
//! wall-clock instant of sampler time zero prices each joule when it was drawn. The shell feeds
//! it the same events it gives the app and builds run cards from it and the ledger
//! (`dashboard::card`).

use crate::accounting::at_rest::{AtRest, AtRestLine, Span, subtract};
use crate::accounting::contention::{Contention, ContentionDetector, ContentionSettings};
use crate::accounting::energy::SeriesPoint;
use crate::accounting::energy::{BasisChange, EnergyReport, IdleBaseline, TotalBasis, Window};
use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::{Currency, format_co2, format_per_1000, project};
use crate::accounting::remainder::{RemainderTracker, RemainderView};
use crate::accounting::subscriber::Subscriber;
use crate::accounting::tally::{Tally, TallyDelta};
use crate::accounting::throttle::{Episode, ThrottleDetector, ThrottleSettings};
use crate::accounting::uncertainty::Band;
use crate::engine::{EngineEvent, Phase, ReplyStats};
use crate::sensors::{Quantity, Sample};
use std::collections::BTreeMap;

use crate::accounting::ledger::{FULL_RESOLUTION_S, THINNED_GAP_S};

/// The run card's series is thinned like the ledger (one point per ten seconds beyond the last
/// ten minutes), once a minute, so a dashboard left running for days stays small.
const THIN_EVERY_S: f64 = 60.0;

/// How far past a reply's end the ledger must have settled before the reply's figures are
/// taken. A slow source's step across the end (a plug at 1 Hz) is shaped by the fast sensors
/// only once they have reported past that step; a second more lets both arrive, so the figures
/// a reply keeps are the ones a run card taken later reports.
const SETTLE_AFTER_S: f64 = 1.0;

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
    /// The wall's remainder (what no component explains), with a plug and component sensors.
    pub remainder: Option<Box<RemainderView>>,
    /// Where the truth of `wh` (and of the session's cost and CO2) lies.
    pub band: Option<Band>,
}

/// The footer's money line, formatted by the pricing module.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostLine {
    /// Session cost with its currency, e.g. "0.12 ¢".
    pub session: Option<String>,
    /// At this session's pace (its average draw so far, around the clock), a month and a
    /// year: "$1.20", "$14.61". `None` for the first [`MIN_PROJECTION_S`] seconds.
    ///
    /// [`MIN_PROJECTION_S`]: crate::accounting::pricing::MIN_PROJECTION_S
    pub per_month: Option<String>,
    pub per_year: Option<String>,
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
    /// Replies over all sessions, and the day the tally began ("2025-05-01").
    pub lifetime_replies: Option<u64>,
    pub lifetime_since: Option<String>,
    /// The lifetime money over its replies (idle time between them included), per 1000:
    /// "$0.70 / 1000 replies".
    pub lifetime_per_1000_replies: Option<String>,
    /// Of [`Self::per_month`], the part spent with the model loaded and no request: "$1.10".
    pub waiting_per_month: Option<String>,
    /// The model loaded at rest: its watts and money, and what unloading would save.
    pub at_rest: Option<Box<AtRestLine>>,
}

/// One reply's energy and money, settled once the ledger has data past the reply's end.
/// The dashboard keeps it with the message, so an old reply keeps its own figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyFigures {
    /// The reply's place among the session's replies (0: the first), in the order
    /// [`SessionRecorder::observe`] saw their `ReplyDone`.
    pub seq: usize,
    pub tokens: u32,
    /// Whole-system energy over the reply, J.
    pub energy_j: f64,
    pub j_per_token: Option<f64>,
    /// Above the idle baseline, once one is measured on the same basis.
    pub net_j: Option<f64>,
    pub net_j_per_token: Option<f64>,
    /// In `currency`, each joule priced when it was drawn; `None` without a tariff.
    pub cost: Option<f64>,
    /// The net energy priced over the reply's span.
    pub net_cost: Option<f64>,
    pub currency: Option<Currency>,
    /// Some part of the energy is an estimate (utilisation x TDP), not a measurement.
    pub estimated: bool,
    /// The reply was shorter than two steps of a quantised counter (NVML's, ~100 ms): its
    /// energy is apportioned from the steps around it, not a difference of its own.
    pub apportioned: bool,
    /// Where the truth of `energy_j` lies, and so of `j_per_token` and `cost`.
    pub band: Option<Band>,
    /// ... and of `net_j`, `net_j_per_token` and `net_cost`.
    pub net_band: Option<Band>,
    /// Each GPU board's share of the reply (boards in the total, in id order).
    pub boards: Vec<BoardShare>,
}

/// One GPU board's part of a reply's energy.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardShare {
    /// Reading id of the board's energy channel, e.g. "nvml:1:energy".
    pub id: String,
    /// "NVIDIA H100 80GB HBM3".
    pub device: String,
    pub energy_j: f64,
}

impl ReplyFigures {
    /// Money per generated token, for the per-million-tokens figure.
    pub fn cost_per_token(&self) -> Option<f64> {
        self.cost
            .filter(|_| self.tokens > 0)
            .map(|c| c / f64::from(self.tokens))
    }
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
    first_t: Option<f64>,
    idle_window_s: f64,
    idle: Idle,
    load_ms: Option<f64>,
    replies: Vec<ReplySpan>,
    /// J per generated token of the last reply, once the ledger has settled past its end.
    last_j_per_token: Option<f64>,
    /// Replies (indices into `replies`) whose end the ledger has not settled yet.
    pending: Vec<usize>,
    /// Figures of replies settled since [`Self::take_reply_figures`] was last called.
    settled: Vec<ReplyFigures>,
    series: Vec<SeriesPoint>,
    last_series_second: Option<i64>,
    last_thin_t: f64,
    /// The live generation rate for the series (`None` when idle), set before each sample.
    tok_s: Option<f64>,
    /// Latest temperatures and fans by "device label": plug samples carry none, so a
    /// series point keeps the local sensors' last values.
    temps: BTreeMap<String, f64>,
    fans: BTreeMap<String, f64>,
    /// Whether a slower reply is the hardware holding itself back.
    throttle: ThrottleDetector,
    /// Whether other programs take the CPUs llama.cpp generates on.
    contention: ContentionDetector,
    /// The wall's remainder, fitted idle and loaded apart.
    remainder: RemainderTracker,
    /// A reply in progress since (sampler time).
    busy_since: Option<f64>,
    /// The model loaded at (the engine's `Loaded`).
    loaded_at: Option<f64>,
    /// When the server will unload the model (Ollama's `expires_at`), as it said, until the
    /// next sample puts it on the sampler clock (`None` inside: it said none).
    expiry_said: Option<Option<jiff::Timestamp>>,
    /// The server will unload the model at this sampler time.
    unloads_at: Option<f64>,
    /// Stretches the server had the model unloaded before the next request reloaded it.
    unloaded: Vec<Span>,
}

impl SessionRecorder {
    /// `idle_window_s` is how long to average idle power after the model loads (0 skips it).
    /// The ledger that prices and totals the energy is the metering runtime's (see
    /// [`Ledger::priced`], [`Ledger::expecting`]); every call that reads figures takes it.
    pub fn new(idle_window_s: f64) -> Self {
        Self {
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
            pending: Vec::new(),
            settled: Vec::new(),
            series: Vec::new(),
            last_series_second: None,
            last_thin_t: f64::NEG_INFINITY,
            tok_s: None,
            temps: BTreeMap::new(),
            fans: BTreeMap::new(),
            throttle: ThrottleDetector::new(ThrottleSettings::default()),
            contention: ContentionDetector::new(ContentionSettings::default()),
            remainder: RemainderTracker::new(),
            busy_since: None,
            loaded_at: None,
            expiry_said: None,
            unloads_at: None,
            unloaded: Vec::new(),
        }
    }

    /// Follow the engine: load time, the start of generation (ends the idle window), replies.
    /// Returns the tally increment for a finished reply (tokens, reply count).
    pub fn observe(&mut self, event: &EngineEvent, now: f64) -> Option<TallyDelta> {
        match event {
            EngineEvent::Loaded(info) => {
                self.load_ms = Some(info.load_ms);
                self.loaded_at.get_or_insert(now);
                // Only llama.cpp in this process has threads of ours to contend with.
                if info.backend.is_none() {
                    self.contention.engine_threads(info.in_effect.threads);
                }
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
                if self.busy_since.is_none() {
                    self.busy_since = Some(now);
                    // A request after the server unloaded the model loads it again.
                    if let Some(e) = self.unloads_at.take_if(|e| *e < now) {
                        self.unloaded.push((e, now));
                    }
                }
                if let EngineEvent::Tokens { count, .. } = event {
                    self.throttle.tokens(now, *count);
                    self.contention.tokens(now, *count);
                }
            }
            EngineEvent::Backend(status) => {
                // When the server unloads the model in use (Ollama's keep_alive).
                self.expiry_said = Some(
                    status
                        .loaded
                        .iter()
                        .find(|m| m.name == status.current)
                        .and_then(|m| m.expires()),
                );
            }
            EngineEvent::ReplyDone(stats) => {
                self.busy_since = None;
                self.throttle.reply_done(now);
                self.contention.reply_done(now);
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
        self.pending.push(self.replies.len() - 1);
        TallyDelta {
            generated_tokens: u64::from(stats.generated_tokens),
            prompt_tokens: u64::from(stats.prompt_tokens),
            replies: 1,
            ..TallyDelta::default()
        }
    }

    /// The live generation rate the next samples' series points carry (`None` when idle).
    pub fn set_rate(&mut self, tok_s: Option<f64>) {
        self.tok_s = tok_s;
    }

    /// Take in one sample that `ledger` has just taken in.
    fn take_sample(&mut self, s: &Sample, ledger: &Ledger) {
        self.throttle.sample(s);
        if let Some(said) = self.expiry_said.take() {
            self.unloads_at = said.and_then(|at| ledger.t_of(at));
        }
        let (replies, busy_since) = (&self.replies, self.busy_since);
        self.remainder.update(ledger, |a, b| {
            busy_since.is_some_and(|t| t < b) || replies.iter().any(|r| r.t0 < b && r.t1 > a)
        });
        self.contention.sample(s);
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
                power_w: ledger.total_power().map(|p| p.watts),
                tok_s: self.tok_s,
                temps_c: self.temps.clone(),
                fans_rpm: self.fans.clone(),
            });
        }
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
            && ledger
                .settled_until()
                .is_some_and(|t| t >= from + self.idle_window_s)
        {
            self.idle = Idle::Done(ledger.idle_baseline(from, from + self.idle_window_s));
        }
        self.settle_replies(ledger);
    }

    /// Figures for every pending reply the ledger has now settled past.
    fn settle_replies(&mut self, ledger: &Ledger) {
        let Some(until) = ledger.settled_until() else {
            return;
        };
        let (ready, waiting): (Vec<usize>, Vec<usize>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|&i| {
                self.replies
                    .get(i)
                    .is_none_or(|r| r.t1 + SETTLE_AFTER_S <= until)
            });
        self.pending = waiting;
        for i in ready {
            let Some(f) = self.reply_figures(ledger, i) else {
                continue;
            };
            if i + 1 == self.replies.len() {
                self.last_j_per_token = f.j_per_token;
            }
            self.settled.push(f);
        }
    }

    /// The figures of reply `i`, from the ledger's report and prices over its span; `None`
    /// when the ledger had no total over it.
    fn reply_figures(&self, ledger: &Ledger, i: usize) -> Option<ReplyFigures> {
        let span = self.replies.get(i)?;
        let r = self.reply_report(ledger, span)?;
        let total = r.total.as_ref()?;
        let tariff = ledger.tariff();
        let cost = tariff.and_then(|t| ledger.window_cost(t, span.t0, span.t1));
        let net_cost = match (tariff, r.net_j) {
            (Some(t), Some(net)) => ledger.cost_spread(t, net, span.t0, span.t1),
            _ => None,
        };
        Some(ReplyFigures {
            seq: i,
            tokens: span.stats.generated_tokens,
            energy_j: total.energy_j,
            j_per_token: r.j_per_token,
            net_j: r.net_j,
            net_j_per_token: r.net_j_per_token,
            cost,
            net_cost,
            currency: tariff.map(|t| t.currency.clone()),
            estimated: total.estimated,
            apportioned: total.apportioned,
            band: total.band,
            net_band: r.net_band,
            boards: r
                .sources
                .iter()
                .filter(|s| s.in_total && s.covers == crate::sensors::Covers::GpuBoard)
                .map(|s| BoardShare {
                    id: s.id.clone(),
                    device: s.device.clone(),
                    energy_j: s.energy_j,
                })
                .collect(),
        })
    }

    /// Figures of the replies settled since the last call, oldest first (the shell hands
    /// them to the dashboard, which keeps each with its message).
    pub fn take_reply_figures(&mut self) -> Vec<ReplyFigures> {
        std::mem::take(&mut self.settled)
    }

    /// The throttling episode in progress, if any: the header's mark.
    pub fn throttled(&self) -> Option<&Episode> {
        self.throttle.current()
    }

    /// CPU contention in progress, if any: the header's mark.
    pub fn contended(&self) -> Option<&Contention> {
        self.contention.current()
    }

    /// Contention that overlaps `[t0, t1]` (sampler clock), the one in progress too.
    pub fn contention_between(&self, t0: f64, t1: f64) -> Vec<Contention> {
        self.contention.episodes_between(t0, t1)
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

    /// Energy over a reply's span (with its tokens and the idle baseline), when the ledger
    /// had a total over it.
    pub fn reply_report(&self, ledger: &Ledger, span: &ReplySpan) -> Option<EnergyReport> {
        let r = ledger.report(&Window {
            t0: span.t0,
            t1: span.t1,
            tokens: Some(u64::from(span.stats.generated_tokens)),
            phase_boundary: Some(span.t0 + span.stats.prefill_end_s),
            idle: self.idle_baseline().cloned(),
            // A reply stands alone: too short for the counter's steps, it is apportioned.
            apportion: true,
        });
        r.total.is_some().then_some(r)
    }

    /// [`Self::reply_report`] of the last reply.
    pub fn last_reply_report(&self, ledger: &Ledger) -> Option<EnergyReport> {
        self.reply_report(ledger, self.replies.last()?)
    }

    /// Energy over the whole session so far (what the ledger's total covers: from where it
    /// began to where it has settled), with all generated tokens and the idle baseline.
    pub fn session_report(&self, ledger: &Ledger) -> Option<EnergyReport> {
        let (t0, t1) = ledger.span()?;
        let tokens = self
            .replies
            .iter()
            .map(|r| u64::from(r.stats.generated_tokens))
            .sum();
        let r = ledger.report(&Window {
            t0,
            t1,
            tokens: Some(tokens),
            phase_boundary: None,
            idle: self.idle_baseline().cloned(),
            apportion: true,
        });
        r.total.is_some().then_some(r)
    }

    /// The wall's remainder now, its idle and loaded fits and its shifts (`None` without a
    /// wall plug and component sensors).
    pub fn remainder(&self, ledger: &Ledger) -> Option<RemainderView> {
        self.remainder.view(ledger)
    }

    /// Replies' spans, the one in progress up to `until`.
    fn busy_spans(&self, until: f64) -> Vec<Span> {
        let mut busy: Vec<Span> = self.replies.iter().map(|r| (r.t0, r.t1)).collect();
        busy.extend(self.busy_since.map(|t| (t, until.max(t))));
        busy
    }

    /// The model loaded at rest: waiting (loaded, no request) against answering, and the
    /// machine's idle without the model where a server unloaded it. `None` before the model
    /// loaded or the ledger settled.
    pub fn at_rest(&self, ledger: &Ledger) -> Option<AtRest> {
        let loaded_at = self.loaded_at?;
        let until = ledger.settled_until()?;
        let mut unloaded = self.unloaded.clone();
        if let Some(e) = self.unloads_at
            && e < until
            && self.busy_since.is_none()
        {
            unloaded.push((e, until));
        }
        let loaded = subtract(&[(loaded_at, until.max(loaded_at))], &unloaded);
        let busy = self.busy_spans(until);
        let mut a = AtRest::measure(ledger, ledger.tariff(), &loaded, &busy, &unloaded);
        a.unloads_at = self.unloads_at.filter(|e| *e >= until);
        Some(a)
    }

    /// What the footer shows: session energy, its cost and CO2 in the configured region, J per
    /// token of the last reply, and the lifetime tally.
    pub fn footer(&self, ledger: &Ledger, lifetime: Option<&Tally>) -> (SessionEnergy, CostLine) {
        let totals = ledger.totals();
        let energy = SessionEnergy {
            wh: totals.energy_j / crate::accounting::energy::J_PER_WH,
            estimated: totals.estimated,
            basis: ledger.basis(),
            last_change: ledger.changes().iter().skip(1).last().cloned(),
            remainder: self.remainder(ledger).map(Box::new),
            band: totals.band,
        };
        let Some(tariff) = ledger.tariff() else {
            return (energy, CostLine::default());
        };
        let currency = tariff.currency.code();
        let pace = ledger
            .span()
            .and_then(|(t0, t1)| project(totals.cost, t1 - t0));
        let at_rest = self.at_rest(ledger);
        let cost = CostLine {
            waiting_per_month: pace
                .zip(at_rest.as_ref().and_then(|a| a.waiting_share(totals.cost)))
                .map(|(p, share)| tariff.format(p.per_month * share)),
            at_rest: at_rest.map(|a| Box::new(AtRestLine::of(&a, tariff, ledger))),
            session: Some(tariff.format(totals.cost)),
            per_month: pace.map(|p| tariff.format(p.per_month)),
            per_year: pace.map(|p| tariff.format(p.per_year)),
            region: Some(tariff.label.clone()),
            co2: tariff.co2_g_per_kwh.map(|_| format_co2(totals.co2_g)),
            j_per_token: self.last_j_per_token,
            lifetime_wh: lifetime.map(Tally::energy_wh),
            lifetime_cost: lifetime
                .and_then(|t| t.totals.cost.get(currency))
                .map(|&c| tariff.format(c)),
            lifetime_replies: lifetime.map(|t| t.totals.replies),
            lifetime_per_1000_replies: lifetime
                .filter(|t| t.totals.replies > 0)
                .and_then(|t| Some((t.totals.cost.get(currency)?, t.totals.replies)))
                .map(|(&c, n)| format_per_1000(c / n as f64, &tariff.currency, "replies")),
            // A date read back from the tally file: only a valid one reaches the screen.
            lifetime_since: lifetime
                .and_then(|t| t.since.parse::<jiff::Timestamp>().ok())
                .map(|ts| ts.strftime("%Y-%m-%d").to_string()),
        };
        (energy, cost)
    }
}

/// The metering runtime's fold hands the session each sample after the ledger took it in.
impl Subscriber for SessionRecorder {
    fn sample(&mut self, s: &Sample, ledger: &Ledger) {
        self.take_sample(s, ledger);
    }
}
