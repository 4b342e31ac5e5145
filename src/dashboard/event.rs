//! The one event type the dashboard reacts to, and its event source: the terminal, the tick
//! and the signals as every screen has them (`term::event`), plus the engine and the sensor
//! sampler.
//!
//! Time enters here and nowhere else: events carry `now`, seconds since the dashboard started,
//! so `App::update` never reads a clock.

use crate::engine::EngineEvent;
use crate::sensors::Sample;
use crate::term::event::{EventSource, Input, ScreenEvent, channel};
use crossterm::event::KeyEvent;
use futures_util::StreamExt;
use futures_util::stream;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A key press (releases and repeats-as-release are dropped).
    Key(KeyEvent),
    /// Bracketed paste: the whole pasted text at once, newlines included.
    Paste(String),
    Resize {
        width: u16,
        height: u16,
    },
    /// The gauge-rate tick.
    Tick {
        now: f64,
    },
    Engine {
        event: EngineEvent,
        now: f64,
    },
    Sample(Sample),
    /// The ledger's power figures after a sample (the shell sends it before the sample).
    Power(crate::accounting::ledger::PowerView),
    /// The shell finished writing a snapshot (Ok: where it went).
    SnapshotWritten(Result<String, String>),
    /// The session's energy and money figures changed (from the shell's accounting).
    Footer {
        energy: crate::accounting::session::SessionEnergy,
        cost: crate::accounting::session::CostLine,
    },
    /// The throttling episode in progress after a sample (`None`: not throttled), from the
    /// session's detector; the shell sends it before the sample.
    Throttle(Option<crate::accounting::throttle::Episode>),
    /// CPU contention in progress after a sample (`None`: none), from the session's detector;
    /// the shell sends it before the sample.
    Contention(Option<crate::accounting::contention::Contention>),
    /// The attached server's share of the machine's energy after a sample (the shell sends it
    /// before the sample), when the server runs on this machine.
    ServerShare(crate::accounting::share::ServerShare),
    /// A finished reply's energy and money, settled by the session's accounting.
    ReplyFigures(crate::accounting::session::ReplyFigures),
    /// A one-line message from the shell for the status line (a tally warning, an error).
    Status(String),
    /// `--proxy`: requests the books settled since the last sample (oldest first), and how
    /// many are still in flight or waiting for the ledger.
    Requests {
        records: Vec<crate::proxy::record::RequestRecord>,
        pending: usize,
    },
    /// A signal whose default action ends the process (SIGTERM, SIGHUP, SIGINT, SIGQUIT,
    /// SIGUSR1, ...): flush and quit (the name of the signal).
    Terminate(&'static str),
    /// `--proxy`: the upstream stopped answering (why) or answers again (`None`).
    UpstreamHealth(Option<String>),
}

impl ScreenEvent for Event {
    fn input(i: Input) -> Self {
        match i {
            Input::Key(k) => Event::Key(k),
            Input::Paste(s) => Event::Paste(s),
            Input::Resize { width, height } => Event::Resize { width, height },
        }
    }

    fn tick(now: f64) -> Self {
        Event::Tick { now }
    }

    fn terminate(signal: &'static str) -> Self {
        Event::Terminate(signal)
    }
}

/// What the app is told when the engine's channel closes while the dashboard runs.
pub const ENGINE_GONE: &str =
    "the engine thread ended unexpectedly; restart llmtop (details in the log file)";

/// The dashboard's event source: the engine (its channel closing is an engine failure the app must
/// hear of) and the sensor samples, ticking at `tick_hz`.
pub fn source(
    start: Instant,
    tick_hz: f64,
    engine: UnboundedReceiver<EngineEvent>,
    samples: UnboundedReceiver<Sample>,
) -> EventSource<Event> {
    let now = move || start.elapsed().as_secs_f64();
    // The engine thread ended. It reports every failure before it ends; if it died
    // without a word the app must still learn that no model is coming.
    let gone = stream::once(async move {
        Event::Engine {
            event: EngineEvent::Failed(ENGINE_GONE.into()),
            now: now(),
        }
    });
    let engine = channel(engine, move |event| Event::Engine { event, now: now() }).chain(gone);
    EventSource::new(start, Some(tick_hz))
        .with_feed(engine)
        .with_feed(channel(samples, Event::Sample))
}
