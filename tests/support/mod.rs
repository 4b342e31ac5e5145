//! Shared helpers for the app and UI tests: build `App`s in known states from plain events.
#![allow(dead_code)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use llmtop::config::keys::KeyMap;
use llmtop::dashboard::event::Event;
use llmtop::dashboard::state::{App, Effect};
use llmtop::engine::scripted::ScriptedEngine;
use llmtop::engine::{EngineEvent, Phase, ReplyStats, StopReason};
use llmtop::sensors::scripted::ScriptedSensor;
use llmtop::sensors::{Sample, Sensor};

pub fn new_app(width: u16, height: u16) -> App {
    let mut app = App::new(
        KeyMap::default(),
        vec![
            "dark".into(),
            "light".into(),
            "high-contrast".into(),
            "mono".into(),
        ],
        0,
        "SmolLM2-135M-Instruct.Q4_1".into(),
    );
    app.device = "CPU 4 threads".into();
    app.update(Event::Resize { width, height });
    app
}

pub fn key(app: &mut App, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    app.update(Event::Key(KeyEvent::new(code, mods)))
}

pub fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c), KeyModifiers::NONE);
    }
}

pub fn engine(app: &mut App, event: EngineEvent, now: f64) -> Vec<Effect> {
    app.update(Event::Engine { event, now })
}

pub fn loaded(app: &mut App) {
    engine(app, EngineEvent::Loaded(ScriptedEngine::model_info()), 0.5);
    engine(app, EngineEvent::Phase(Phase::Idle), 0.5);
}

/// Feed scripted-sensor samples at 4 Hz from `from` to `to` seconds, as the shell does: each
/// through a ledger, whose power view reaches the app before the sample.
pub fn samples(app: &mut App, from: f64, to: f64) {
    samples_of(app, ScriptedSensor::default(), from, to);
}

/// [`samples`] from a given sensor.
pub fn samples_of(app: &mut App, mut s: impl Sensor, from: f64, to: f64) {
    let mut ledger = llmtop::accounting::ledger::Ledger::new();
    let mut t = from;
    while t <= to + 1e-9 {
        let sample = Sample {
            t,
            readings: s.read(t),
        };
        ledger.push(&sample);
        app.update(Event::Power(ledger.power_view()));
        app.update(Event::Sample(sample));
        t += 0.25;
    }
}

pub fn stats(generated: u32, stop: StopReason) -> ReplyStats {
    ReplyStats {
        prompt_tokens: 12,
        conversation_tokens: 12,
        generated_tokens: generated,
        ttft_ms: 84.0,
        prefill_ms: 40.0,
        prefill_tok_s: 300.0,
        gen_ms: 1000.0,
        gen_tok_s: 52.5,
        gen_wall_tok_s: 51.9,
        wall_s: 1.1,
        stop,
        prefill_end_s: 0.04,
        load_ms: None,
        origins: Default::default(),
    }
}

/// What the shell does with samples: account them in a `SessionRecorder` (US tariff, with
/// `lifetime` as the tally) and hand the app the footer figures.
pub fn shell_footer(
    app: &mut App,
    mut sensor: ScriptedSensor,
    from: f64,
    to: f64,
    lifetime: Option<&llmtop::accounting::tally::Tally>,
) {
    let tariff = llmtop::accounting::pricing::Tariff::preset("US").expect("US preset");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let ledger = llmtop::accounting::ledger::Ledger::new().priced(tariff, wall);
    let mut metering = llmtop::metering::Metering::new(ledger);
    let mut rec = llmtop::accounting::session::SessionRecorder::new(0.0);
    let mut t = from;
    while t <= to + 1e-9 {
        let readings = sensor.read(t);
        metering.fold(&Sample { t, readings }, &mut [&mut rec]);
        t += 0.25;
    }
    let (energy, cost) = rec.footer(metering.ledger(), lifetime);
    app.update(Event::Footer { energy, cost });
}

/// A lifetime tally of 1234.5 Wh and $0.21.
pub fn lifetime() -> llmtop::accounting::tally::Tally {
    serde_json::from_str(
        r#"{"schema":"llmtop.tally/1","energy_j":4444200,"generated_tokens":90000,
            "prompt_tokens":1000,"replies":300,"cost":{"USD":0.21},"co2_g":1500,
            "since":"2025-05-01T00:00:00Z","updated":"2025-06-01T00:00:00Z"}"#,
    )
    .expect("tally JSON")
}

/// Idle with one finished exchange and a minute of sensor history.
pub fn idle_app(width: u16, height: u16) -> App {
    let mut app = new_app(width, height);
    engine(&mut app, EngineEvent::LoadProgress(0.5), 0.2);
    loaded(&mut app);
    samples(&mut app, 0.0, 60.0);
    typ(&mut app, "Write one sentence about a mini PC.");
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 61.0);
    for (i, w) in "A tiny mini PC hums on the desk, sipping watts while it writes."
        .split_inclusive(' ')
        .enumerate()
    {
        engine(
            &mut app,
            EngineEvent::Tokens {
                text: w.into(),
                count: 1,
            },
            61.1 + 0.02 * i as f64,
        );
    }
    engine(
        &mut app,
        EngineEvent::ReplyDone(stats(13, StopReason::EndOfGeneration)),
        61.5,
    );
    engine(&mut app, EngineEvent::Phase(Phase::Idle), 61.5);
    samples(&mut app, 60.25, 70.0);
    shell_reply_figures(
        &mut app,
        &[(stats(13, StopReason::EndOfGeneration), 61.5)],
        70.0,
    );
    shell_footer(
        &mut app,
        ScriptedSensor::default(),
        0.0,
        70.0,
        Some(&lifetime()),
    );
    app.update(Event::Tick { now: 80.0 }); // status messages expired
    app
}

/// Mid-reply: the second answer is streaming at a known rate.
pub fn generating_app(width: u16, height: u16) -> App {
    let mut app = idle_app(width, height);
    typ(&mut app, "Now tell me a longer story about energy.");
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 81.0);
    // 21 tokens over 0.5 s: 40 tok/s live.
    let words = "Once upon a time a small model ran on a quiet machine and counted every joule it spent while the fans";
    for (i, w) in words.split_inclusive(' ').take(21).enumerate() {
        engine(
            &mut app,
            EngineEvent::Tokens {
                text: w.into(),
                count: 1,
            },
            81.0 + 0.025 * i as f64,
        );
    }
    samples(&mut app, 70.25, 82.0);
    shell_footer(
        &mut app,
        ScriptedSensor::default(),
        0.0,
        82.0,
        Some(&lifetime()),
    );
    app
}

/// A laptop-like machine with one power source: an estimated CPU package (utilisation x TDP)
/// and a CPU temperature, nothing else.
#[derive(Debug, Clone, Default)]
pub struct OneSourceSensor;

impl Sensor for OneSourceSensor {
    fn name(&self) -> String {
        "one-source".into()
    }

    fn read(&mut self, now: f64) -> Vec<llmtop::sensors::Reading> {
        use llmtop::sensors::{Covers, Method, Quantity, Reading, Source};
        let load = llmtop::sensors::scripted::load_at(now);
        let r = |id: &str, q, v: f64, limit, source, method| Reading {
            id: id.into(),
            device: "Laptop CPU".into(),
            label: "package-0".into(),
            quantity: q,
            value: Some(v),
            limit,
            source,
            covers: Covers::CpuPackage,
            method,
            rejected: None,
            via: None,
        };
        vec![
            r(
                "estimate:cpu:power",
                Quantity::Power,
                4.0 + 11.0 * load,
                None,
                Source::Estimate,
                Method::Estimated,
            ),
            r(
                "hwmon:k10temp:temp1",
                Quantity::Temperature,
                48.0 + 40.0 * load,
                Some(95.0),
                Source::Hwmon,
                Method::Measured,
            ),
        ]
    }
}

/// Two and a half minutes of a session from `sensor`, fed as the shell feeds it: samples at
/// 4 Hz through a ledger, with a sensor stall from 95 s to 103 s (no samples: a gap in the
/// charts), two finished replies (40 tok/s from 20 s to 30 s, 24 tok/s from 60 s to 75 s)
/// and a third streaming at 48 tok/s from 140 s to the end (150 s).
pub fn timeline_app(width: u16, height: u16, mut sensor: impl Sensor) -> App {
    let mut app = new_app(width, height);
    loaded(&mut app);
    let replies: [(f64, f64, f64); 3] =
        [(20.0, 30.0, 40.0), (60.0, 75.0, 24.0), (140.0, 151.0, 48.0)];
    let mut ledger = llmtop::accounting::ledger::Ledger::new();
    let mut tokens = 0u32;
    for step in 0..=600 {
        let t = f64::from(step) * 0.25;
        for (i, (start, end, rate)) in replies.iter().enumerate() {
            if (t - start).abs() < 1e-9 {
                typ(&mut app, &format!("Question {}", i + 1));
                key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
                engine(&mut app, EngineEvent::Phase(Phase::Generating), t);
                tokens = 0;
            }
            if t > *start && t <= *end {
                // The tokens of the last quarter second, evenly spaced.
                let n = (rate * 0.25).round() as u32;
                for k in 1..=n {
                    let at = t - 0.25 + 0.25 * f64::from(k) / f64::from(n);
                    engine(
                        &mut app,
                        EngineEvent::Tokens {
                            text: "word ".into(),
                            count: 1,
                        },
                        at,
                    );
                    tokens += 1;
                }
            }
            if (t - end).abs() < 1e-9 {
                let mut st = stats(tokens, StopReason::EndOfGeneration);
                st.gen_tok_s = *rate;
                engine(&mut app, EngineEvent::ReplyDone(st), t);
                engine(&mut app, EngineEvent::Phase(Phase::Idle), t);
            }
        }
        if t > 95.0 && t < 103.0 {
            continue;
        }
        let sample = Sample {
            t,
            readings: sensor.read(t),
        };
        ledger.push(&sample);
        app.update(Event::Power(ledger.power_view()));
        app.update(Event::Sample(sample));
    }
    app.update(Event::Tick { now: 150.0 });
    app
}

/// What the shell does for replies: a recorder (US tariff, a 20 s idle baseline after the load
/// at 0.5 s: one period of the scripted load) takes the scripted samples from 0 to `to` and each reply's end, `(stats, done
/// at)`; the figures it settles go to the app, as the shell sends them.
pub fn shell_reply_figures(app: &mut App, replies: &[(ReplyStats, f64)], to: f64) {
    let tariff = llmtop::accounting::pricing::Tariff::preset("US").expect("US preset");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let ledger = llmtop::accounting::ledger::Ledger::new().priced(tariff, wall);
    let mut metering = llmtop::metering::Metering::new(ledger);
    let mut rec = llmtop::accounting::session::SessionRecorder::new(20.0);
    rec.observe(&EngineEvent::Loaded(ScriptedEngine::model_info()), 0.5);
    let mut sensor = ScriptedSensor::default();
    let mut pending = replies.iter();
    let mut next = pending.next();
    let mut t = 0.0;
    while t <= to + 1e-9 {
        while let Some((stats, at)) = next.filter(|(_, at)| *at <= t) {
            rec.observe(&EngineEvent::ReplyDone(stats.clone()), *at);
            next = pending.next();
        }
        let readings = sensor.read(t);
        metering.fold(&Sample { t, readings }, &mut [&mut rec]);
        for f in rec.take_reply_figures() {
            app.update(Event::ReplyFigures(f));
        }
        t += 0.25;
    }
}
