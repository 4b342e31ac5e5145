//! The dashboard's event loop without a terminal: ratatui's `TestBackend` behind a recorder that
//! notes every frame, a scripted event source on tokio's paused clock, and an engine that only
//! records the commands it gets. Frame coalescing, effects and the loop's end are checked here;
//! the real terminal, keys and signals are the e2e tests' subject.
use crate::support;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::lifetime::LifetimeTally;
use llmtop::accounting::pricing::Tariff;
use llmtop::accounting::session::SessionRecorder;
use llmtop::accounting::tally::{Tally, TallyStore};
use llmtop::config::RawConfig;
use llmtop::dashboard::event::Event;
use llmtop::dashboard::pace::Pace;
use llmtop::dashboard::shell::{Shell, event_loop};
use llmtop::dashboard::state::App;
use llmtop::dashboard::theme::Theme;
use llmtop::engine::scripted::ScriptedEngine;
use llmtop::engine::{Command, Engine, EngineEvent, Phase, StopReason};
use llmtop::metering::Metering;
use llmtop::sensors::scripted::ScriptedSensor;
use llmtop::sensors::{Sample, Sensor};
use llmtop::term::event::{Events, Wake};
use llmtop::term::guard::FrameBackend;
use llmtop::term::screen::MIN_FRAME;
use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// One frame that reached the terminal: when (since the loop started) and the screen's text.
#[derive(Debug, Clone)]
pub(crate) struct Shot {
    pub(crate) at: Duration,
    pub(crate) text: String,
}

/// A `TestBackend` that keeps every frame. ratatui flushes the backend once at the end of each
/// `Terminal::draw`, so a flush is a frame.
pub(crate) struct Recorder {
    pub(crate) inner: TestBackend,
    pub(crate) start: Instant,
    pub(crate) frames: Vec<Shot>,
}

impl Recorder {
    fn screen(&self) -> String {
        let buf = self.inner.buffer();
        let width = usize::from(buf.area.width).max(1);
        buf.content()
            .chunks(width)
            .map(|row| row.iter().map(Cell::symbol).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Backend for Recorder {
    type Error = <TestBackend as Backend>::Error;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.inner.draw(content)
    }
    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }
    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }
    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }
    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(position)
    }
    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }
    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(clear_type)
    }
    fn size(&self) -> Result<Size, Self::Error> {
        self.inner.size()
    }
    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush()?;
        let text = self.screen();
        self.frames.push(Shot {
            at: self.start.elapsed(),
            text,
        });
        Ok(())
    }
}

impl FrameBackend for Recorder {}

/// Events at fixed moments on tokio's clock, delivered as `EventSource` delivers them: an event
/// that is due wins over a frame due at the same moment, and only engine and sensor events are
/// handed out by `try_next_queued`.
struct Script {
    start: Instant,
    items: VecDeque<(Duration, Event)>,
    /// When the loop was woken (by `next` or `hold_until` returning), since the start.
    wakes: Vec<Duration>,
}

/// Events `EventSource::hold_until` lets through: the user's and signals.
fn wakes_a_held_loop(ev: &Event) -> bool {
    !matches!(
        ev,
        Event::Engine { .. } | Event::Sample(_) | Event::Tick { .. }
    )
}

impl Events for Script {
    type Event = Event;

    async fn next(&mut self, frame_at: Option<Instant>) -> Wake<Event> {
        let wake = self.next_inner(frame_at).await;
        self.wakes.push(self.start.elapsed());
        wake
    }

    async fn hold_until(&mut self, until: Instant) -> Wake<Event> {
        let user = self
            .items
            .iter()
            .position(|(_, ev)| wakes_a_held_loop(ev))
            .filter(|&i| self.start + self.items[i].0 < until);
        let wake = match user {
            Some(i) => {
                tokio::time::sleep_until(self.start + self.items[i].0).await;
                match self.items.remove(i) {
                    Some((_, ev)) => Wake::Event(ev),
                    None => Wake::InputClosed,
                }
            }
            None => {
                tokio::time::sleep_until(until).await;
                Wake::Frame
            }
        };
        self.wakes.push(self.start.elapsed());
        wake
    }

    fn try_next_queued(&mut self) -> Option<Event> {
        match self.items.front() {
            Some((at, Event::Engine { .. } | Event::Sample(_)))
                if self.start + *at <= Instant::now() =>
            {
                self.items.pop_front().map(|(_, ev)| ev)
            }
            _ => None,
        }
    }
}

impl Script {
    async fn next_inner(&mut self, frame_at: Option<Instant>) -> Wake<Event> {
        let due = self.items.front().map(|(at, _)| self.start + *at);
        match (due, frame_at) {
            (Some(at), Some(frame)) if frame < at => {
                tokio::time::sleep_until(frame).await;
                Wake::Frame
            }
            (Some(at), _) => {
                tokio::time::sleep_until(at).await;
                match self.items.pop_front() {
                    Some((_, ev)) => Wake::Event(ev),
                    None => Wake::InputClosed,
                }
            }
            (None, Some(frame)) => {
                tokio::time::sleep_until(frame).await;
                Wake::Frame
            }
            // The script is spent: wait, as a quiet terminal does (the loop must end by itself).
            (None, None) => std::future::pending().await,
        }
    }
}

/// An engine that does nothing but pass on the commands it gets.
struct RecordingEngine(std::sync::mpsc::Sender<Command>);

impl Engine for RecordingEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        _events: UnboundedSender<EngineEvent>,
    ) {
        while let Some(cmd) = commands.blocking_recv() {
            let stop = cmd == Command::Shutdown;
            let _ = self.0.send(cmd);
            if stop {
                break;
            }
        }
    }
}

/// What a run of the loop left behind.
struct Outcome {
    result: anyhow::Result<()>,
    /// When the loop returned, since it started.
    ended_at: Duration,
    frames: Vec<Shot>,
    /// Every command the engine got, the shutdown when the shell was dropped included.
    commands: Vec<Command>,
    /// Scripted events the loop never read.
    unread: usize,
    /// When the loop was woken, since the start.
    wakes: Vec<Duration>,
    session_energy_j: f64,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whole milliseconds: tokio's timer wheel counts in them.
fn secs(t: f64) -> Duration {
    Duration::from_millis((t * 1000.0).round() as u64)
}

fn key(code: KeyCode, mods: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, mods))
}

fn ch(c: char) -> Event {
    key(KeyCode::Char(c), KeyModifiers::NONE)
}

fn ctrl(c: char) -> Event {
    key(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn engine(event: EngineEvent, at: Duration) -> (Duration, Event) {
    (
        at,
        Event::Engine {
            event,
            now: at.as_secs_f64(),
        },
    )
}

/// The model loaded 10 ms in, so replies and snapshots are possible.
fn loaded() -> Vec<(Duration, Event)> {
    vec![
        engine(EngineEvent::Loaded(ScriptedEngine::model_info()), ms(10)),
        engine(EngineEvent::Phase(Phase::Idle), ms(10)),
    ]
}

/// Run the loop over `script` on an 80x24 test terminal with a fresh session, until it returns
/// (or an hour of paused time passes, which fails the test).
async fn drive(
    script: Vec<(Duration, Event)>,
    app: &mut App,
    cfg: &RawConfig,
    tally: Option<&mut TallyStore>,
) -> Outcome {
    drive_paced(script, app, cfg, tally, Pace::default()).await
}

async fn drive_paced(
    script: Vec<(Duration, Event)>,
    app: &mut App,
    cfg: &RawConfig,
    tally: Option<&mut TallyStore>,
    pace: Pace,
) -> Outcome {
    let mut script = script;
    // In time order; events at the same moment keep the order they were written in.
    script.sort_by_key(|(at, _)| *at);
    let start = Instant::now();
    let mut terminal = Terminal::new(Recorder {
        inner: TestBackend::new(80, 24),
        start,
        frames: Vec::new(),
    })
    .expect("test terminal");
    let mut events = Script {
        start,
        items: script.into(),
        wakes: Vec::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = llmtop::engine::spawn(Box::new(RecordingEngine(tx))).expect("engine thread");
    let tariff = Tariff::preset("US").expect("US preset");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let mut shell = Shell {
        handle,
        metering: Metering::new(Ledger::new().priced(tariff.clone(), wall)),
        session: SessionRecorder::new(0.0),
        tally: tally.map(LifetimeTally::new),
        metrics: None,
        cfg,
        tariff: &tariff,
        compare: &[],
        pace,
        server: None,
        proxy: None,
    };
    let themes = [Theme::dark()];
    let ran = tokio::time::timeout(
        Duration::from_secs(3600),
        event_loop(&mut terminal, &mut events, app, &themes, &mut shell),
    )
    .await;
    let ended_at = start.elapsed();
    let result = ran.expect("the loop did not end");
    let session_energy_j = shell.metering.ledger().totals().energy_j;
    // Dropping the shell stops the engine and waits for its thread: every command is in `rx`.
    drop(shell);
    Outcome {
        result,
        ended_at,
        frames: std::mem::take(&mut terminal.backend_mut().frames),
        commands: rx.try_iter().collect(),
        unread: events.items.len(),
        wakes: std::mem::take(&mut events.wakes),
        session_energy_j,
    }
}

fn at(frames: &[Shot]) -> Vec<Duration> {
    frames.iter().map(|f| f.at).collect()
}

#[tokio::test(start_paused = true)]
async fn while_the_engine_takes_every_cpu_a_streaming_reply_is_drawn_at_the_generating_pace() {
    // 2 engine threads on 2 CPUs at 10 fps: 100 tokens over 1 s (one every 10 ms) are drawn
    // in about 10 frames, not 60, each at least 75 ms after the last (a frame due within a
    // quarter of the interval is drawn by the event that woke the loop); once the reply is
    // done, a key is drawn within 16 ms again.
    let pace = Pace::new(10.0, 2, 2);
    let mut script = loaded();
    script.extend([(ms(50), ch('h')), (ms(50), ch('i'))]);
    script.push((ms(50), key(KeyCode::Enter, KeyModifiers::NONE)));
    script.push(engine(EngineEvent::Phase(Phase::Generating), ms(100)));
    for i in 0..100u64 {
        script.push(engine(
            EngineEvent::Tokens {
                text: format!("t{i} "),
                count: 1,
            },
            ms(100 + 10 * i),
        ));
    }
    script.push(engine(
        EngineEvent::ReplyDone(support::stats(100, StopReason::MaxTokens)),
        ms(1095),
    ));
    script.push(engine(EngineEvent::Phase(Phase::Idle), ms(1095)));
    // The sampler at 4 Hz and a key typed mid-reply.
    let mut sensor = ScriptedSensor::default();
    for i in 0..=6u32 {
        let t = f64::from(i) * 0.25;
        let readings = sensor.read(t);
        script.push((secs(t), Event::Sample(Sample { t, readings })));
    }
    script.push((ms(555), ch('y')));
    script.push((ms(1500), ch('x')));
    script.push((ms(1600), ctrl('q')));
    let mut app = support::new_app(80, 24);
    let out = drive_paced(script, &mut app, &RawConfig::default(), None, pace).await;
    out.result.expect("loop result");
    assert_eq!(out.unread, 0, "every event was folded in");
    assert!(
        out.session_energy_j > 0.0,
        "the samples reached the session"
    );
    assert!(
        app.input.text.contains('y'),
        "the key typed mid-reply: {:?}",
        app.input
    );

    let streaming: Vec<Duration> = at(&out.frames)
        .into_iter()
        .filter(|t| *t >= ms(100) && *t < ms(1095))
        .collect();
    assert!(
        (9..=14).contains(&streaming.len()),
        "frames while streaming: {streaming:?}"
    );
    for w in streaming.windows(2) {
        assert!(
            w[1] - w[0] >= ms(75),
            "frames closer than the pace: {streaming:?}"
        );
    }
    // Between frames only the user wakes the loop: 100 token events, 4 samples and the tick
    // wait for the next frame instead of each waking it (about 10 frames + 1 key, not 100+).
    let woken: Vec<Duration> = out
        .wakes
        .iter()
        .copied()
        .filter(|t| *t > ms(100) && *t < ms(1095))
        .collect();
    assert!(
        woken.len() <= streaming.len() + 3,
        "woken {} times for {} frames while streaming: {woken:?}",
        woken.len(),
        streaming.len()
    );
    let last = out.frames.iter().rfind(|f| f.at < ms(1500)).expect("frame");
    assert!(
        last.text.contains("t99"),
        "the reply's end is drawn:\n{}",
        last.text
    );
    let key_frame = out.frames.iter().find(|f| f.at >= ms(1500)).expect("frame");
    assert!(
        key_frame.at <= ms(1500) + MIN_FRAME,
        "at {:?}",
        key_frame.at
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_500_tokens_is_one_frame() {
    let mut script = loaded();
    script.extend([(ms(50), ch('h')), (ms(50), ch('i'))]);
    script.push((ms(50), key(KeyCode::Enter, KeyModifiers::NONE)));
    script.push(engine(EngineEvent::Phase(Phase::Generating), ms(200)));
    for i in 0..500 {
        script.push(engine(
            EngineEvent::Tokens {
                text: format!("t{i} "),
                count: 1,
            },
            ms(200),
        ));
    }
    script.push((ms(1000), ctrl('q')));
    let mut app = support::new_app(80, 24);
    let out = drive(script, &mut app, &RawConfig::default(), None).await;
    out.result.expect("loop result");

    let burst: Vec<&Shot> = out.frames.iter().filter(|f| f.at >= ms(200)).collect();
    assert_eq!(
        burst.len(),
        1,
        "frames after the burst, at {:?}",
        at(&out.frames)
    );
    assert_eq!(
        burst[0].at,
        ms(200),
        "the burst is drawn as soon as it lands"
    );
    assert!(
        burst[0].text.contains("t499"),
        "the one frame shows the last token:\n{}",
        burst[0].text
    );
    let reply = app.messages.last().map(|m| m.text.as_str()).unwrap_or("");
    assert!(reply.starts_with("t0 t1 ") && reply.ends_with("t498 t499 "));
    // Enter became a command to the engine; quitting mid-reply cancels it so the reply is
    // counted (the stand-in engine never ends it: the wait times out); the shutdown is the
    // shell being dropped.
    assert_eq!(
        out.commands,
        vec![
            Command::Send("hi".into()),
            Command::Cancel,
            Command::Shutdown
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_within_16_ms_of_a_frame_is_drawn_by_the_deferred_frame() {
    let script = vec![
        (ms(20), ch('z')),
        // 5 and 10 ms after the frame for `z`: too soon to draw, so one frame is deferred.
        (ms(25), ch('q')),
        (ms(30), ch('j')),
        (ms(1000), ctrl('q')),
    ];
    let mut app = support::new_app(80, 24);
    let out = drive(script, &mut app, &RawConfig::default(), None).await;
    out.result.expect("loop result");

    assert_eq!(
        at(&out.frames),
        vec![ms(0), ms(20), ms(36)],
        "the first frame, `z` at once, then `q` and `j` together 16 ms after `z`"
    );
    assert!(out.frames[1].text.contains('z') && !out.frames[1].text.contains("zq"));
    assert!(
        out.frames[2].text.contains("zqj"),
        "the deferred frame shows both keys:\n{}",
        out.frames[2].text
    );
}

#[tokio::test(start_paused = true)]
async fn ctrl_s_writes_one_snapshot_and_ctrl_q_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = RawConfig::default();
    cfg.snapshot.dir = Some(dir.path().to_path_buf());
    let mut script = loaded();
    script.extend([
        (ms(100), ctrl('s')),
        (ms(200), ctrl('q')),
        // Never read: the loop has returned.
        (ms(300), ch('x')),
    ]);
    let mut app = support::new_app(80, 24);
    let out = drive(script, &mut app, &cfg, None).await;
    out.result.expect("loop result");

    assert_eq!(out.ended_at, ms(200), "the loop returns on Ctrl-Q");
    assert_eq!(out.unread, 1, "nothing after Ctrl-Q is read");
    assert!(app.quitting);
    let mut jsons: Vec<_> = std::fs::read_dir(dir.path())
        .expect("snapshot dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    jsons.sort();
    assert_eq!(jsons.len(), 1, "snapshots written: {jsons:?}");
    let status = app
        .status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    assert_eq!(status, format!("snapshot: {}", jsons[0].display()));
    // The snapshot is written by the shell, not sent to the engine.
    assert_eq!(out.commands, vec![Command::Shutdown]);
}

#[tokio::test(start_paused = true)]
async fn sigterm_ends_the_loop_with_the_tally_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tally.json");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let (mut store, warning) = TallyStore::open(&path, wall).expect("tally");
    assert!(warning.is_none());

    let mut script = loaded();
    let mut sensor = ScriptedSensor::default();
    let sample = |sensor: &mut ScriptedSensor, t: f64| {
        (
            secs(t),
            Event::Sample(Sample {
                t,
                readings: sensor.read(t),
            }),
        )
    };
    // What the gauges should show after the last sample read: the ledger's total power.
    let mut ledger = Ledger::new();
    for i in 0..=40 {
        let t = f64::from(i) * 0.25;
        let s = sample(&mut sensor, t);
        if let Event::Sample(s) = &s.1 {
            ledger.push(s);
        }
        script.push(s);
        if i == 8 {
            script.push(engine(EngineEvent::Phase(Phase::Generating), secs(t)));
        }
        if i == 12 {
            let stats = support::stats(13, StopReason::EndOfGeneration);
            script.push(engine(EngineEvent::ReplyDone(stats), secs(t)));
            script.push(engine(EngineEvent::Phase(Phase::Idle), secs(t)));
        }
    }
    // The tally is written every 5 s of samples; what came after the last write, only when
    // the loop ends.
    script.push((secs(10.1), Event::Terminate("SIGTERM")));
    script.push(sample(&mut sensor, 10.25));
    let mut app = support::new_app(80, 24);
    let out = drive(script, &mut app, &RawConfig::default(), Some(&mut store)).await;
    out.result.expect("loop result");

    assert_eq!(out.ended_at, secs(10.1), "the loop returns on SIGTERM");
    assert_eq!(out.unread, 1, "nothing after SIGTERM is read");
    let status = app
        .status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    assert_eq!(status, "SIGTERM: quitting");
    let text = std::fs::read_to_string(&path).expect("the tally was written on the way out");
    let written: Tally = serde_json::from_str(&text).expect("tally JSON");
    assert_eq!(written.totals.replies, 1);
    assert_eq!(written.totals.generated_tokens, 13);
    assert!(
        written.totals.energy_j > 0.0,
        "energy in the tally: {written:?}"
    );
    assert!(
        (written.totals.energy_j - store.tally().totals.energy_j).abs() < 1e-9,
        "on disk {} J, counted {} J",
        written.totals.energy_j,
        store.tally().totals.energy_j
    );
    // The shell handed the app each sample's power view.
    let total = ledger.power_view().total.map(|t| t.watts);
    assert!(total.is_some());
    assert_eq!(app.gauges.total.as_ref().map(|t| t.watts), total);
    // The footer was told after the samples: the session's energy, as the shell counted it.
    assert!(out.session_energy_j > 0.0);
    assert!(
        (app.energy.wh * 3600.0 - out.session_energy_j).abs() < 1e-6,
        "footer {} Wh, session {} J",
        app.energy.wh,
        out.session_energy_j
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_reply_gets_its_energy_and_money_from_the_session() {
    let mut script = loaded();
    script.extend([(ms(50), ch('h')), (ms(50), ch('i'))]);
    script.push((ms(50), key(KeyCode::Enter, KeyModifiers::NONE)));
    script.push(engine(EngineEvent::Phase(Phase::Generating), secs(2.0)));
    script.push(engine(
        EngineEvent::Tokens {
            text: "Hello.".into(),
            count: 1,
        },
        secs(2.1),
    ));
    let mut stats = support::stats(13, StopReason::EndOfGeneration);
    stats.wall_s = 2.0;
    script.push(engine(EngineEvent::ReplyDone(stats.clone()), secs(3.0)));
    script.push(engine(EngineEvent::Phase(Phase::Idle), secs(3.0)));
    // The same samples and reply through a recorder of our own: what the shell must hand on.
    let tariff = Tariff::preset("US").expect("US preset");
    let wall: jiff::Timestamp = "2025-06-01T12:00:00Z".parse().expect("time");
    let mut metering = Metering::new(Ledger::new().priced(tariff, wall));
    let mut own = SessionRecorder::new(0.0);
    let mut sensor = ScriptedSensor::default();
    let mut want = Vec::new();
    for i in 0..=20 {
        let t = f64::from(i) * 0.25;
        let s = Sample {
            t,
            readings: sensor.read(t),
        };
        if i == 12 {
            own.observe(&EngineEvent::ReplyDone(stats.clone()), 3.0);
        }
        metering.fold(&s, &mut [&mut own]);
        want.extend(own.take_reply_figures());
        script.push((secs(t), Event::Sample(s)));
    }
    script.push((secs(5.5), ctrl('q')));
    let mut app = support::new_app(80, 24);
    let out = drive(script, &mut app, &RawConfig::default(), None).await;
    out.result.expect("loop result");

    assert_eq!(want.len(), 1, "{want:?}");
    let reply = app.messages.last().expect("the reply");
    assert_eq!(reply.text, "Hello.");
    assert_eq!(reply.figures.as_ref(), Some(&want[0]));
    // 13 tokens over [1, 3] s of the scripted machine, priced in USD.
    let f = &want[0];
    assert!(f.energy_j > 100.0, "{f:?}");
    assert_eq!(f.currency.as_ref().map(|c| c.code()), Some("USD"));
    let last = out.frames.last().expect("a frame").text.clone();
    let money = llmtop::accounting::pricing::format_money(
        f.cost.expect("cost"),
        f.currency.as_ref().expect("currency"),
    );
    // The reply's rows as drawn (a line may wrap between a number and its unit).
    let (w, _) = llmtop::dashboard::layout::messages_size(&app);
    let rows: Vec<String> = llmtop::dashboard::layout::rows(&app, w)
        .into_iter()
        .map(|r| r.text.trim().to_string())
        .collect();
    assert!(rows.join(" ").contains(&money), "{money} in {rows:?}");
    assert!(last.contains("J/tok"), "{last}");
}
