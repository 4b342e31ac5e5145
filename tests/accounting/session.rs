//! The dashboard's session accounting and its run card, on scripted samples with hand-computed
//! energies. The scripted sensor draws GPU 20 + 160 L and CPU 12 + 30 L watts with
//! L(t) = 0.5 + 0.5 sin(2 pi t / 20), so the system total (no wall plug) is 32 + 190 L.
use crate::support;

use llmtop::accounting::energy::{EnergyReport, IdleBaseline, SeriesPoint};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::lifetime::Settled;
use llmtop::accounting::pricing::Tariff;
use llmtop::accounting::session::{CostLine, ReplyFigures, SessionEnergy, SessionRecorder};
use llmtop::accounting::tally::{Tally, TallyDelta};
use llmtop::config::{PricingSection, SnapshotSection};
use llmtop::dashboard::card::{self, CardContext};
use llmtop::dashboard::event::Event;
use llmtop::engine::scripted::ScriptedEngine;
use llmtop::engine::{EngineEvent, Phase, StopReason};
use llmtop::metering::Metering;
use llmtop::report::runcard::RunCard;
use llmtop::sensors::host::HostInfo;
use llmtop::sensors::scripted::ScriptedSensor;
use llmtop::sensors::{Sample, Sensor};
use std::f64::consts::PI;
use support::stats;

/// EUR 0.30 per kWh, 400 g CO2 per kWh.
fn tariff() -> Tariff {
    Tariff::from_config(&PricingSection {
        region: String::new(),
        price_per_kwh: Some(0.30),
        currency: Some("EUR".into()),
        co2_g_per_kwh: Some(400.0),
        ..PricingSection::default()
    })
    .expect("tariff")
}

/// The session's ledger, priced in [`tariff`] from noon UTC.
fn ledger() -> Ledger {
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    Ledger::new().priced(tariff(), wall)
}

/// Exact energy of the scripted total over [a, b], J.
fn exact_j(a: f64, b: f64) -> f64 {
    let k = 2.0 * PI / 20.0;
    // integral of 32 + 190 (0.5 + 0.5 sin(k t)) = 127 (b - a) + 95 (cos(k a) - cos(k b)) / k
    127.0 * (b - a) + 95.0 * ((k * a).cos() - (k * b).cos()) / k
}

/// The session as the dashboard runs it: the metering runtime's fold into the recorder, and
/// the lifetime tally's share of what the ledger settles.
struct Rec {
    m: Metering,
    rec: SessionRecorder,
    settled: Settled,
}

impl Rec {
    fn new(idle_window_s: f64) -> Self {
        Self {
            m: Metering::new(ledger()),
            rec: SessionRecorder::new(idle_window_s),
            settled: Settled::default(),
        }
    }

    fn push_sample(&mut self, s: &Sample, tok_s: Option<f64>) -> TallyDelta {
        self.rec.set_rate(tok_s);
        self.m.fold(s, &mut [&mut self.rec]);
        self.settled.take(self.m.ledger())
    }

    fn observe(&mut self, event: &EngineEvent, now: f64) -> Option<TallyDelta> {
        self.rec.observe(event, now)
    }

    fn energy_j(&self) -> f64 {
        self.m.ledger().totals().energy_j
    }

    fn session_report(&self) -> Option<EnergyReport> {
        self.rec.session_report(self.m.ledger())
    }

    fn last_reply_report(&self) -> Option<EnergyReport> {
        self.rec.last_reply_report(self.m.ledger())
    }

    fn footer(&self, lifetime: Option<&Tally>) -> (SessionEnergy, CostLine) {
        self.rec.footer(self.m.ledger(), lifetime)
    }

    fn idle_baseline(&self) -> Option<&IdleBaseline> {
        self.rec.idle_baseline()
    }

    fn take_reply_figures(&mut self) -> Vec<ReplyFigures> {
        self.rec.take_reply_figures()
    }

    fn series(&self) -> &[SeriesPoint] {
        self.rec.series()
    }
}

fn feed(rec: &mut Rec, from: f64, to: f64) -> TallyDelta {
    let mut sensor = ScriptedSensor::default();
    let mut sum = TallyDelta::default();
    let mut i = 0;
    loop {
        let t = from + 0.25 * f64::from(i);
        if t > to + 1e-9 {
            return sum;
        }
        let d = rec.push_sample(
            &Sample {
                t,
                readings: sensor.read(t),
            },
            None,
        );
        sum.merge(&d);
        i += 1;
    }
}

fn engine(rec: &mut Rec, event: EngineEvent, now: f64) -> Option<TallyDelta> {
    rec.observe(&event, now)
}

#[test]
fn session_energy_cost_and_co2_add_up_per_sample() {
    let mut rec = Rec::new(10.0);
    let sum = feed(&mut rec, 0.0, 60.0);
    // Three whole periods: 127 W x 60 s = 7620 J (trapezoid is exact for a sampled sine
    // over whole periods).
    assert!((rec.energy_j() - 7620.0).abs() < 1e-6, "{}", rec.energy_j());
    assert!((sum.energy_j - 7620.0).abs() < 1e-6);
    // 7620 J = 0.00211667 kWh: EUR 0.000635 and 0.8467 g.
    assert!((sum.cost["EUR"] - 0.000_635).abs() < 1e-9, "{:?}", sum.cost);
    assert!((sum.co2_g - 0.846_667).abs() < 1e-5, "{}", sum.co2_g);
    // The per-sample sum agrees with the report over the whole session.
    let session = rec.session_report().expect("session report");
    let total = session.total.expect("total");
    assert!((total.energy_j - 7620.0).abs() < 1e-6);
    assert!(total.components_only);
    // One series point per second.
    assert_eq!(rec.series().len(), 61);
    assert_eq!(rec.series()[60].t_s, 60.0);

    let (energy, cost) = rec.footer(None);
    assert!((energy.wh - 2.116_667).abs() < 1e-5);
    assert!(!energy.estimated);
    assert_eq!(cost.session.as_deref(), Some("0.064 €ct"));
    assert_eq!(cost.region.as_deref(), Some("own"));
    assert_eq!(cost.co2.as_deref(), Some("0.85 g CO2e"));
    assert_eq!(cost.lifetime_wh, None);
}

#[test]
fn idle_baseline_is_the_mean_power_after_load_and_feeds_net_energy() {
    let mut rec = Rec::new(10.0);
    feed(&mut rec, 0.0, 1.75);
    engine(
        &mut rec,
        EngineEvent::Loaded(ScriptedEngine::model_info()),
        2.0,
    );
    feed(&mut rec, 2.0, 11.75);
    assert!(rec.idle_baseline().is_none(), "window not over yet");
    feed(&mut rec, 12.0, 26.0);
    let idle = rec.idle_baseline().expect("baseline").watts;
    // Mean of the total over [2, 12]: 175.93 W.
    let want = exact_j(2.0, 12.0) / 10.0;
    assert!((want - 175.93).abs() < 0.01, "{want}");
    assert!((idle - want).abs() < 0.05, "{idle} vs {want}");

    // A reply of 40 tokens that took 4 s and ended at t = 30.
    engine(&mut rec, EngineEvent::Phase(Phase::Prefill), 26.0);
    let mut s = stats(40, StopReason::EndOfGeneration);
    s.wall_s = 4.0;
    let d = engine(&mut rec, EngineEvent::ReplyDone(s), 30.0).expect("tally delta");
    assert_eq!(
        (d.generated_tokens, d.prompt_tokens, d.replies),
        (40, 12, 1)
    );
    feed(&mut rec, 26.25, 29.75);
    assert_eq!(
        rec.footer(None).1.j_per_token,
        None,
        "reply not covered yet"
    );
    feed(&mut rec, 30.0, 31.0);
    let reply_j = exact_j(26.0, 30.0);
    let jpt = rec.footer(None).1.j_per_token.expect("J/token");
    assert!(
        (jpt - reply_j / 40.0).abs() < 0.05,
        "{jpt} vs {}",
        reply_j / 40.0
    );
    let r = rec.last_reply_report().expect("reply report");
    let net = r.net_j.expect("net of idle");
    assert!((net - (reply_j - idle * 4.0)).abs() < 1.0, "{net}");
}

#[test]
fn generating_before_the_idle_window_ends_skips_the_baseline() {
    let mut rec = Rec::new(10.0);
    engine(
        &mut rec,
        EngineEvent::Loaded(ScriptedEngine::model_info()),
        0.0,
    );
    feed(&mut rec, 0.0, 3.0);
    engine(&mut rec, EngineEvent::Phase(Phase::Prefill), 3.1);
    feed(&mut rec, 3.25, 20.0);
    assert!(rec.idle_baseline().is_none());
    assert_eq!(rec.session_report().expect("report").net_j, None);
}

#[test]
fn session_card_has_cold_and_warm_ttft_sums_energy_and_transcript() {
    let mut app = support::new_app(80, 24);
    let mut rec = Rec::new(0.0);
    support::loaded(&mut app);
    engine(
        &mut rec,
        EngineEvent::Loaded(ScriptedEngine::model_info()),
        0.5,
    );
    support::typ(&mut app, "first question");
    support::key(
        &mut app,
        crossterm::event::KeyCode::Enter,
        crossterm::event::KeyModifiers::NONE,
    );
    feed(&mut rec, 0.0, 20.0);
    for (i, ttft) in [(0, 900.0), (1, 80.0), (2, 120.0), (3, 100.0)] {
        let mut s = stats(50, StopReason::EndOfGeneration);
        s.ttft_ms = ttft;
        s.gen_tok_s = 40.0 + 10.0 * f64::from(i);
        s.wall_s = 2.0;
        let ev = EngineEvent::ReplyDone(s);
        let now = 4.0 + 4.0 * f64::from(i);
        engine(&mut rec, ev.clone(), now);
        app.update(Event::Engine { event: ev, now });
    }
    let m = card::session_metrics(&rec.rec, rec.m.ledger());
    assert_eq!(m.replies, 4);
    assert_eq!(m.ttft_cold_ms, Some(900.0));
    assert_eq!(m.ttft_warm_ms, Some(100.0)); // median of 80, 120, 100
    assert_eq!(m.gen_tok_s, Some(55.0)); // mean of 40, 50, 60, 70
    assert_eq!((m.prompt_tokens, m.generated_tokens), (48, 200));
    assert_eq!(m.wall_s, 8.0);
    let e = m.energy.expect("session energy");
    assert!((e.total_j - exact_j(0.0, 20.0)).abs() < 1e-6);
    assert!((e.j_per_token.expect("J/token") - exact_j(0.0, 20.0) / 200.0).abs() < 1e-6);

    let host = HostInfo::detect(Vec::new());
    let compare = vec![Tariff::preset("DE").expect("DE")];
    let make = |section: &SnapshotSection| {
        card::card(
            &app,
            &rec.rec,
            rec.m.ledger(),
            CardContext {
                host: host.clone(),
                tariff: &tariff(),
                compare: &compare,
                snapshot: section,
                now: "2025-06-01T12:00:00Z".parse().expect("time"),
            },
        )
        .expect("card")
    };
    let card = make(&SnapshotSection::default());
    assert_eq!(card.prompt.as_deref(), Some("first question"));
    assert_eq!(card.model.quantization, "Q4_1");
    // The demo model has no file: no fingerprint, but a card all the same.
    assert_eq!(card.model.sha256_first_mib, "");
    // The settings are the engine's report at load, not the request.
    assert_eq!(
        card.settings.threads,
        ScriptedEngine::model_info().in_effect.threads
    );
    let last = card.last_reply.as_ref().expect("last reply");
    assert_eq!(last.ttft_ms, 100.0);
    let le = last.energy.as_ref().expect("reply energy");
    assert!(
        (le.total_j - exact_j(14.0, 16.0)).abs() < 0.5,
        "{}",
        le.total_j
    );
    assert_eq!(card.cost.len(), 2);
    assert_eq!(card.cost[0].region, "own");
    assert_eq!(card.cost[1].region, "DE");
    let transcript = card.transcript.as_ref().expect("transcript");
    assert_eq!(transcript[0].role, "user");
    assert_eq!(transcript[0].text, "first question");
    assert_eq!(card.series.len(), 21);
    let back = RunCard::from_json(&card.to_json(), "card.json".as_ref()).expect("round trip");
    assert_eq!(back.session.replies, 4);

    let private = make(&SnapshotSection {
        transcript: false,
        ..SnapshotSection::default()
    });
    assert_eq!(private.transcript, None);
}

#[test]
fn no_card_before_the_model_loaded() {
    let app = support::new_app(80, 24);
    let rec = Rec::new(0.0);
    let err = card::card(
        &app,
        &rec.rec,
        rec.m.ledger(),
        CardContext {
            host: HostInfo::detect(Vec::new()),
            tariff: &tariff(),
            compare: &[],
            snapshot: &SnapshotSection::default(),
            now: jiff::Timestamp::now(),
        },
    )
    .expect_err("not loaded");
    assert!(err.to_string().contains("not loaded yet"), "{err}");
}

#[test]
fn a_two_hour_session_is_thinned_but_its_energy_stays_right() {
    let mut rec = Rec::new(0.0);
    let sum = feed(&mut rec, 0.0, 7_200.0);
    // Per-sample accounting is untouched by thinning: within the trapezoid's error of the
    // exact integral of the scripted curve (0.25 s steps on a 20 s period).
    let exact = exact_j(0.0, 7_200.0);
    assert!(
        (sum.energy_j - exact).abs() < 1e-3 * exact,
        "{} vs {exact}",
        sum.energy_j
    );
    // The session report over thinned history: the scripted source is power (no counter), so
    // the old part is integrated over the first point of each 10 s interval. Those fall on the
    // 20 s sine's mean, so the estimate holds; a counter would be exact whatever the phase
    // (tests/energy.rs checks that).
    let report = rec.session_report().expect("report");
    let total = report.total.expect("total").energy_j;
    assert!((total - exact).abs() < 0.01 * exact, "{total} vs {exact}");
    // One series point per second for the last 10 minutes, one per 10 s before: not 7200.
    let n = rec.series().len();
    assert!((1_250..=1_330).contains(&n), "{n} series points");
}

#[test]
fn each_reply_gets_its_own_figures_once_the_ledger_has_settled_past_its_end() {
    let mut rec = Rec::new(10.0);
    engine(
        &mut rec,
        EngineEvent::Loaded(ScriptedEngine::model_info()),
        0.0,
    );
    feed(&mut rec, 0.0, 12.0);
    let idle = rec.idle_baseline().expect("baseline").watts;

    // Two replies: 40 tokens over [14, 18], then 10 tokens over [20, 21].
    engine(&mut rec, EngineEvent::Phase(Phase::Prefill), 14.0);
    let mut a = stats(40, StopReason::EndOfGeneration);
    a.wall_s = 4.0;
    engine(&mut rec, EngineEvent::ReplyDone(a), 18.0);
    feed(&mut rec, 12.25, 17.75);
    assert!(rec.take_reply_figures().is_empty(), "not settled yet");
    let mut b = stats(10, StopReason::Cancelled);
    b.wall_s = 1.0;
    engine(&mut rec, EngineEvent::ReplyDone(b), 21.0);
    feed(&mut rec, 18.0, 20.0);
    let first = rec.take_reply_figures();
    assert_eq!(first.len(), 1, "{first:?}");
    let f = &first[0];
    assert_eq!((f.seq, f.tokens), (0, 40));
    let want_j = exact_j(14.0, 18.0);
    assert!(
        (f.energy_j - want_j).abs() < 0.5,
        "{} vs {want_j}",
        f.energy_j
    );
    assert!((f.j_per_token.expect("J/tok") - want_j / 40.0).abs() < 0.02);
    // EUR 0.30 per kWh, priced when drawn (a flat tariff: the reply's energy x price).
    let want_cost = f.energy_j / 3.6e6 * 0.30;
    assert!(
        (f.cost.expect("cost") - want_cost).abs() < 1e-12,
        "{:?} vs {want_cost}",
        f.cost
    );
    assert_eq!(f.currency.as_ref().map(|c| c.code()), Some("EUR"));
    // The idle window caught the sine's high half and the reply its low one: the reply drew
    // less than idle, and its net figure is floored at 0 (the ledger's one rule), where it
    // once read a negative number of joules.
    let net = f.net_j.expect("net of idle");
    let want_net = (want_j - idle * 4.0).max(0.0);
    assert!(want_j < idle * 4.0, "{want_j} J vs idle {idle} W");
    assert!((net - want_net).abs() < 1.0, "{net} vs {want_net}");
    assert!((f.net_cost.expect("net cost") - net / 3.6e6 * 0.30).abs() < 1e-9);
    assert!((f.cost_per_token().expect("per token") - want_cost / 40.0).abs() < 1e-10);
    assert!(!f.estimated);
    // The footer's J/token waits for the last reply.
    assert_eq!(rec.footer(None).1.j_per_token, None);

    feed(&mut rec, 20.25, 22.0);
    let second = rec.take_reply_figures();
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].seq, second[0].tokens), (1, 10));
    let want_j = exact_j(20.0, 21.0);
    assert!((second[0].energy_j - want_j).abs() < 0.5);
    assert_eq!(rec.footer(None).1.j_per_token, second[0].j_per_token);
    // Handed over once.
    feed(&mut rec, 22.25, 23.0);
    assert!(rec.take_reply_figures().is_empty());
}

#[test]
fn estimated_energy_marks_the_reply_figures() {
    let mut rec = Rec::new(0.0);
    let mut sensor = ScriptedSensor {
        with_wall: false,
        cpu_estimated: true,
    };
    let mut t = 0.0;
    while t <= 6.0 {
        rec.push_sample(
            &Sample {
                t,
                readings: sensor.read(t),
            },
            None,
        );
        if t == 3.0 {
            let mut s = stats(20, StopReason::EndOfGeneration);
            s.wall_s = 2.0;
            engine(&mut rec, EngineEvent::ReplyDone(s), 3.0);
        }
        t += 0.25;
    }
    let f = rec.take_reply_figures();
    assert_eq!(f.len(), 1);
    assert!(f[0].estimated, "{f:?}");
    // No idle baseline (window 0): nothing net.
    assert_eq!(f[0].net_j, None);
    assert_eq!(f[0].net_cost, None);
}

#[test]
fn the_footer_projects_the_sessions_pace_over_a_month_and_a_year() {
    let mut rec = Rec::new(0.0);
    feed(&mut rec, 0.0, 40.0);
    assert_eq!(
        rec.footer(None).1.per_month,
        None,
        "under a minute: no projection"
    );
    feed(&mut rec, 40.25, 120.0);
    // 127 W on average (six whole periods) is EUR 0.0381 an hour at EUR 0.30 per kWh:
    // 730.5 h a month is EUR 27.83, 8766 h a year EUR 333.98.
    let (_, cost) = rec.footer(None);
    assert_eq!(cost.per_month.as_deref(), Some("€27.83"));
    assert_eq!(cost.per_year.as_deref(), Some("€334"));

    let tally: llmtop::accounting::tally::Tally = serde_json::from_str(
        r#"{"schema":"llmtop.tally/1","energy_j":4444200,"generated_tokens":90000,
            "prompt_tokens":1000,"replies":300,"cost":{"EUR":0.21},"co2_g":1500,
            "since":"2025-05-01T08:00:00Z","updated":"2025-06-01T00:00:00Z"}"#,
    )
    .expect("tally JSON");
    let (_, cost) = rec.footer(Some(&tally));
    assert_eq!(cost.lifetime_since.as_deref(), Some("2025-05-01"));
    assert_eq!(cost.lifetime_replies, Some(300));
    // EUR 0.21 over 300 replies: EUR 0.0007 each, 70 ct per 1000.
    assert_eq!(
        cost.lifetime_per_1000_replies.as_deref(),
        Some("€0.70 / 1000 replies")
    );
}

/// A wall plug reading `watts(t)` at 4 Hz from `from` to `to`.
fn feed_wall(rec: &mut Rec, from: f64, to: f64, watts: impl Fn(f64) -> f64) {
    let mut i = 0;
    loop {
        let t = from + 0.25 * f64::from(i);
        if t > to + 1e-9 {
            return;
        }
        let r = vec![llmtop::sensors::Reading {
            id: "plug:p:power".into(),
            device: "shelly-gen2 p".into(),
            label: "wall".into(),
            quantity: llmtop::sensors::Quantity::Power,
            value: Some(watts(t)),
            limit: None,
            source: llmtop::sensors::Source::Plug,
            covers: llmtop::sensors::Covers::Wall,
            method: llmtop::sensors::Method::Measured,
            rejected: None,
            via: None,
        }];
        rec.push_sample(&Sample { t, readings: r }, None);
        i += 1;
    }
}

/// An Ollama model loaded at 0, a reply from 10 to 15 s, `keep_alive` ending at 30 s: the
/// machine draws 100 W with it loaded and 80 W once the server unloads it. Waiting is 25 s
/// at 100 W, answering 5 s, the idle without the model 80 W: unloading saves 20 W around
/// the clock, priced as the waiting joules were.
#[test]
fn a_server_that_unloads_the_model_shows_what_unloading_saves() {
    use llmtop::accounting::pricing::HOURS_PER_MONTH;
    use llmtop::engine::{BackendStatus, LoadedModel};
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let mut rec = Rec::new(0.0);
    engine(
        &mut rec,
        EngineEvent::Loaded(ScriptedEngine::model_info()),
        0.0,
    );
    let watts = |t: f64| if t < 30.0 { 100.0 } else { 80.0 };
    feed_wall(&mut rec, 0.0, 10.0, watts);
    engine(&mut rec, EngineEvent::Phase(Phase::Prefill), 10.0);
    feed_wall(&mut rec, 10.25, 15.0, watts);
    let mut s = stats(40, StopReason::EndOfGeneration);
    s.wall_s = 5.0;
    engine(&mut rec, EngineEvent::ReplyDone(s), 15.0);
    // After the reply the server says when it will unload the model.
    let expires = wall
        .checked_add(jiff::SignedDuration::from_secs(30))
        .expect("time");
    let status = BackendStatus {
        current: "llama3.2:latest".into(),
        loaded: vec![LoadedModel {
            name: "llama3.2:latest".into(),
            expires_at: Some(expires.to_string()),
            ..LoadedModel::default()
        }],
        ..BackendStatus::default()
    };
    engine(&mut rec, EngineEvent::Backend(Box::new(status)), 15.0);
    feed_wall(&mut rec, 15.25, 25.0, watts);
    let a = rec.rec.at_rest(rec.m.ledger()).expect("at rest");
    assert_eq!(a.unloads_at, Some(30.0));
    assert!(a.unloaded.is_none());
    feed_wall(&mut rec, 25.25, 60.0, watts);
    let a = rec.rec.at_rest(rec.m.ledger()).expect("at rest");
    assert_eq!(a.unloads_at, None, "past its expiry");
    assert!((a.waiting.seconds - 25.0).abs() < 1e-9, "{a:?}");
    // The plug's step at 30 s falls between two readings: a quarter second of ramp.
    assert!((a.waiting.watts().expect("w") - 100.0).abs() < 0.1, "{a:?}");
    assert!((a.answering.seconds - 5.0).abs() < 1e-9, "{a:?}");
    let unloaded = a.unloaded.expect("the idle without the model");
    assert!((unloaded.seconds - 30.0).abs() < 1e-9, "{unloaded:?}");
    assert!(
        (unloaded.watts().expect("w") - 80.0).abs() < 0.1,
        "{unloaded:?}"
    );
    // The waiting cost is the ledger's energy over the waiting spans at EUR 0.30/kWh.
    let cost = a.waiting.cost.expect("cost");
    let priced = a.waiting.energy_j / 3.6e6 * 0.30;
    assert!((cost - priced).abs() < 1e-12, "{cost} vs {priced}");
    // Unloading saves the difference, around the clock, at that price.
    let saves = a.saving_per_month().expect("saving");
    let saved_w = a.waiting.watts().expect("w") - unloaded.watts().expect("w");
    assert!((saved_w - 20.0).abs() < 0.2, "{saved_w}");
    let want = saved_w * 3600.0 * HOURS_PER_MONTH / 3.6e6 * 0.30;
    assert!((saves - want).abs() < 1e-9 * want, "{saves} vs {want}");
    // The footer's projection: the waiting part of the pace; F1's line, formatted.
    let (_, line) = rec.footer(None);
    let at = line.at_rest.as_ref().expect("at-rest line");
    assert_eq!(at.unloaded_w.map(|w| (w * 10.0).round()), Some(800.0));
    assert_eq!(at.saving_per_month, Some(tariff().format(want)));
    assert!(line.waiting_per_month.is_some(), "{line:?}");
    // A request after the unload loads the model again: the idle stretch ends there.
    engine(&mut rec, EngineEvent::Phase(Phase::Prefill), 62.0);
    feed_wall(
        &mut rec,
        60.25,
        64.0,
        |t| if t <= 62.0 { 80.0 } else { 100.0 },
    );
    let a = rec.rec.at_rest(rec.m.ledger()).expect("at rest");
    assert!(
        (a.unloaded.expect("unloaded").seconds - 32.0).abs() < 1e-9,
        "{a:?}"
    );
    assert!((a.answering.seconds - 7.0).abs() < 1e-9, "{a:?}");
    assert!((a.waiting.seconds - 25.0).abs() < 1e-9, "{a:?}");
}
