//! Throttling on a live machine, through the whole dashboard: a sysfs tree whose CPU clocks
//! halve and whose thermal throttle counters start to advance at a known moment, read by the
//! real sampler thread; tokens that slow to half at that same moment; the real event loop,
//! shell, session and header, drawn into a TestBackend on the real clock. The mark must appear
//! after that moment, within the detector's window, and in no frame before it.

use crate::dashboard_loop::{Recorder, Shot};
use crate::{live, support};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::accounting::session::SessionRecorder;
use llmtop::accounting::throttle::Signal;
use llmtop::config::{RawConfig, SensorsSection};
use llmtop::dashboard::card::{self, CardContext};
use llmtop::dashboard::event::Event;
use llmtop::dashboard::shell::{Shell, event_loop};
use llmtop::dashboard::theme::Theme;
use llmtop::engine::scripted::ScriptedEngine;
use llmtop::engine::{Command, Engine, EngineEvent, StopReason};
use llmtop::metering::Metering;
use llmtop::sensors::host::HostInfo;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Sample, Sampler, discover_with};
use llmtop::term::event::{Events, Wake};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Machine seconds at which the CPU throttles; tokens run from the start to 4 s after. Set-up
/// (discovery, threads) must leave the detector at least 3 s of fast tokens before it, even on
/// a busy machine running the other tests.
const THROTTLE_AT: f64 = 6.0;
const FAST_TOK_S: f64 = 40.0;
const SLOW_TOK_S: f64 = 20.0;

/// What the token thread reports, on the sampler's clock.
enum Gen {
    Token(f64),
    Done(f64, u32),
}

/// The loop's events: the startup events, then samples and tokens as they come, and Ctrl-Q
/// once the reply is over.
struct LiveEvents {
    startup: VecDeque<Event>,
    samples: UnboundedReceiver<Sample>,
    tokens: UnboundedReceiver<Gen>,
    quit: bool,
}

impl LiveEvents {
    fn event(&mut self, g: Gen) -> Event {
        match g {
            Gen::Token(t) => Event::Engine {
                event: EngineEvent::Tokens {
                    text: "tok ".into(),
                    count: 1,
                },
                now: t,
            },
            Gen::Done(t, n) => {
                self.quit = true;
                let mut stats = support::stats(n, StopReason::EndOfGeneration);
                stats.wall_s = t;
                Event::Engine {
                    event: EngineEvent::ReplyDone(stats),
                    now: t,
                }
            }
        }
    }
}

impl Events for LiveEvents {
    type Event = Event;

    async fn next(&mut self, frame_at: Option<tokio::time::Instant>) -> Wake<Event> {
        if let Some(e) = self.startup.pop_front() {
            return Wake::Event(e);
        }
        if self.quit {
            return Wake::Event(Event::Key(KeyEvent::new(
                KeyCode::Char('q'),
                KeyModifiers::CONTROL,
            )));
        }
        let frame = async move {
            match frame_at {
                Some(f) => tokio::time::sleep_until(f).await,
                None => std::future::pending().await,
            }
        };
        enum Got {
            Sample(Sample),
            Gen(Gen),
            Frame,
        }
        let got = tokio::select! {
            biased;
            Some(s) = self.samples.recv() => Got::Sample(s),
            Some(g) = self.tokens.recv() => Got::Gen(g),
            () = frame => Got::Frame,
        };
        match got {
            Got::Sample(s) => Wake::Event(Event::Sample(s)),
            Got::Gen(g) => Wake::Event(self.event(g)),
            Got::Frame => Wake::Frame,
        }
    }

    fn try_next_queued(&mut self) -> Option<Event> {
        if let Ok(s) = self.samples.try_recv() {
            return Some(Event::Sample(s));
        }
        let g = self.tokens.try_recv().ok()?;
        Some(self.event(g))
    }
}

/// An engine that does nothing: the tokens come from the test's thread.
struct Silent;

impl Engine for Silent {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        _events: UnboundedSender<EngineEvent>,
    ) {
        while let Some(cmd) = commands.blocking_recv() {
            if cmd == Command::Shutdown {
                break;
            }
        }
    }
}

/// Tokens at 40 tok/s, at 20 tok/s from `slow_from`, until `end`; times on `origin`'s clock.
fn tokens(origin: Instant, slow_from: Instant, end: Instant, tx: UnboundedSender<Gen>) {
    let secs = |i: Instant| i.duration_since(origin).as_secs_f64();
    let mut next = Instant::now();
    let mut n = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            let _ = tx.send(Gen::Done(secs(now), n));
            return;
        }
        if tx.send(Gen::Token(secs(now))).is_err() {
            return;
        }
        n += 1;
        let rate = if now >= slow_from {
            SLOW_TOK_S
        } else {
            FAST_TOK_S
        };
        // On schedule, but never a burst to catch up after a stall (the box may be busy).
        next = (next + Duration::from_secs_f64(1.0 / rate)).max(now);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn first_marked(frames: &[Shot]) -> Option<&Shot> {
    frames.iter().find(|f| f.text.contains("throttled"))
}

#[tokio::test]
async fn the_mark_appears_when_clocks_fall_with_the_rate_and_not_before() {
    let m = live::LiveMachine::start(
        live::Profile::flat(40.0, 120.0, 30.0).throttled_from(THROTTLE_AT),
    );
    let throttle = m.throttle_instant().expect("throttle instant");
    let tmp = tempfile::tempdir().expect("tempdir");
    let stat = tmp.path().join("stat");
    std::fs::write(
        &stat,
        crate::proc_files::proc_stat("cpu  100 0 100 800 0 0 0 0 0 0"),
    )
    .expect("stat");
    let d = discover_with(
        &SensorsSection::default(),
        &DiscoverOptions {
            sysfs: Sysfs::new(&m.root),
            nvml: false,
            system: false,
            probe_plugs: false,
            proc_stat: stat,
        },
    );
    assert!(
        d.statuses
            .iter()
            .any(|s| s.detail.contains("clock of 2 CPU(s)")),
        "{:?}",
        d.statuses
    );
    let (stx, srx) = unbounded_channel();
    let sampler = Sampler::spawn(d.sensors, 4.0, stx);
    let origin = sampler.start();
    let (ttx, trx) = unbounded_channel();
    let end = throttle + Duration::from_secs(4);
    let lead = throttle.saturating_duration_since(Instant::now());
    assert!(
        lead >= Duration::from_secs(3),
        "set-up took too long: only {lead:?} of fast tokens before the throttling"
    );
    let token_thread = std::thread::spawn(move || tokens(origin, throttle, end, ttx));

    let mut events = LiveEvents {
        startup: VecDeque::from([Event::Engine {
            event: EngineEvent::Loaded(ScriptedEngine::model_info()),
            now: 0.0,
        }]),
        samples: srx,
        tokens: trx,
        quit: false,
    };
    let rec_start = tokio::time::Instant::now();
    let mut terminal = Terminal::new(Recorder {
        inner: TestBackend::new(80, 24),
        start: rec_start,
        frames: Vec::new(),
    })
    .expect("test terminal");
    let tariff = Tariff::preset("US").expect("US preset");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let cfg = RawConfig::default();
    let mut shell = Shell {
        handle: llmtop::engine::spawn(Box::new(Silent)).expect("engine thread"),
        metering: Metering::new(Ledger::new().priced(tariff.clone(), wall)),
        session: SessionRecorder::new(0.0),
        tally: None,
        metrics: None,
        cfg: &cfg,
        tariff: &tariff,
        compare: &[],
        pace: llmtop::dashboard::pace::Pace::default(),
        server: None,
        proxy: None,
    };
    let mut app = support::new_app(80, 24);
    let themes = [Theme::dark()];
    tokio::time::timeout(
        Duration::from_secs(60),
        event_loop(&mut terminal, &mut events, &mut app, &themes, &mut shell),
    )
    .await
    .expect("the loop did not end")
    .expect("loop result");
    token_thread.join().expect("token thread");
    sampler.stop();

    // On screen: not one frame before the CPU throttled, and soon after it.
    let frames = std::mem::take(&mut terminal.backend_mut().frames);
    let when = |f: &Shot| rec_start.into_std() + f.at;
    eprintln!(
        "{} frames; episodes {:?}; throttle at {:.2} s on the sampler clock",
        frames.len(),
        shell.session.throttle_episodes(),
        throttle.duration_since(origin).as_secs_f64()
    );
    let first = first_marked(&frames).expect("no frame showed the mark");
    assert!(
        when(first) >= throttle,
        "marked {:?} before the throttling began",
        throttle.duration_since(when(first))
    );
    let late = when(first).duration_since(throttle);
    assert!(late <= Duration::from_secs(3), "marked {late:?} after it");
    let header = first.text.lines().next().unwrap_or_default();
    assert!(header.contains("▼ throttled −"), "{header}");
    let unmarked_before = frames
        .iter()
        .filter(|f| {
            when(f) < throttle
                && f.text
                    .lines()
                    .next()
                    .is_some_and(|h| h.contains("generating"))
        })
        .count();
    assert!(unmarked_before > 0, "no frame of the fast part was drawn");

    // The evidence: the clocks at half their maximum and the counters, since the throttling.
    let t_throttle = throttle.duration_since(origin).as_secs_f64();
    let episodes = shell.session.throttle_episodes();
    let e = episodes.first().expect("an episode");
    assert!(e.since >= t_throttle, "{e:?} vs {t_throttle}");
    assert!(e.until.is_some(), "closed with the reply: {e:?}");
    assert!(
        e.rate_low_tok_s < 0.8 * e.rate_before_tok_s,
        "{} -> {} tok/s",
        e.rate_before_tok_s,
        e.rate_low_tok_s
    );
    let clock = e
        .evidence
        .iter()
        .find(|x| x.signal == Signal::ClockBelowMax)
        .expect("clock evidence");
    assert_eq!(
        (clock.id.as_str(), clock.value, clock.limit),
        ("cpu:clock", 2400.0, Some(4900.0))
    );
    assert!(clock.since >= t_throttle - 0.01, "{clock:?}");
    let count = e
        .evidence
        .iter()
        .find(|x| x.id == "cpu:core_throttles")
        .expect("counter evidence");
    assert_eq!(count.signal, Signal::ThrottleCount);
    assert!(count.value >= 1.0, "{count:?}");

    // The run card carries it, and its Markdown says it.
    let ctx = CardContext {
        host: HostInfo::detect(Vec::new()),
        tariff: &tariff,
        compare: &[],
        snapshot: &cfg.snapshot,
        now: wall,
    };
    let card = card::card(&app, &shell.session, shell.metering.ledger(), ctx).expect("card");
    let t = card.session.throttle.first().expect("card throttle");
    assert_eq!(t.evidence[0].signal, "clock_below_max");
    assert!(
        t.evidence[0].text.contains("2400 of 4900 MHz (49 %)"),
        "{t:?}"
    );
    let last = card.last_reply.as_ref().expect("last reply");
    assert_eq!(last.throttle.len(), card.session.throttle.len());
    let md = llmtop::report::snapshot::markdown_summary(&card);
    assert!(md.contains("**Throttled**"), "{md}");
    assert!(md.contains("2400 of 4900 MHz"), "{md}");
    drop(shell);
}
