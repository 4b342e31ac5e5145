//! The one event type the dashboard reacts to, and the one `select!` that produces it from the
//! terminal (key presses, pastes, resizes), the gauge tick, the engine and the sensor sampler.
//!
//! Time enters here and nowhere else: events carry `now`, seconds since the dashboard started,
//! so `App::update` never reads a clock.

use crate::engine::EngineEvent;
use crate::sensors::Sample;
use crossterm::event::{Event as TermEvent, EventStream, KeyEvent, KeyEventKind};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};
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
}

/// What the app is told when the engine's channel closes while the dashboard runs.
pub const ENGINE_GONE: &str =
    "the engine thread ended unexpectedly; restart llmtop (details in the log file)";

/// What woke the loop: an event for the app, or the moment a deferred frame is due.
// Returned by value once per wake and never stored: boxing the event would cost an allocation
// per token for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Wake {
    Event(Event),
    Frame,
    /// The terminal input stream ended or failed: nothing more can be read from the user.
    InputClosed,
}

/// Where the event loop's events come from: [`EventSource`] in the program, a script in tests.
pub trait Events {
    /// Wait for the next event, or for `frame_at` (a deferred redraw), whichever comes first.
    /// An event that is ready wins over a frame due at the same moment.
    fn next(&mut self, frame_at: Option<tokio::time::Instant>) -> impl Future<Output = Wake>;

    /// Wait until `until` (then [`Wake::Frame`]) or for input from the user or a signal, and
    /// nothing else: engine and sensor events stay queued for [`Events::try_next_queued`]. The
    /// loop sleeps this way between frames while a reply streams, so the engine's text, the
    /// samples and the tick do not each wake it on a CPU that llama.cpp needs.
    fn hold_until(&mut self, until: tokio::time::Instant) -> impl Future<Output = Wake> {
        self.next(Some(until))
    }

    /// An engine or sensor event that is already waiting, without blocking: lets the shell fold
    /// a burst of tokens into one frame.
    fn try_next_queued(&mut self) -> Option<Event>;
}

/// The sources the dashboard listens to.
pub struct EventSource {
    start: Instant,
    terminal: EventStream,
    tick: tokio::time::Interval,
    engine: Option<UnboundedReceiver<EngineEvent>>,
    samples: Option<UnboundedReceiver<Sample>>,
    /// The terminating signals, once [`EventSource::listen_for_signals`] was called.
    signals: Vec<(&'static str, Signal)>,
}

/// The terminating signals, listed once for every mode.
pub(crate) use crate::util::signals::TERMINATING;

/// The first of `signals` to arrive, or never when there are none.
async fn any_signal(signals: &mut [(&'static str, Signal)]) -> &'static str {
    std::future::poll_fn(|cx| {
        for (name, s) in signals.iter_mut() {
            // Ready(None) only when the runtime shuts down: not a signal.
            if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                return std::task::Poll::Ready(*name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl EventSource {
    pub fn new(
        start: Instant,
        tick_hz: f64,
        engine: UnboundedReceiver<EngineEvent>,
        samples: UnboundedReceiver<Sample>,
    ) -> Self {
        let period = Duration::from_secs_f64(1.0 / tick_hz.clamp(0.1, 60.0));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Self {
            start,
            terminal: EventStream::new(),
            tick,
            engine: Some(engine),
            samples: Some(samples),
            signals: Vec::new(),
        }
    }

    /// Turn every terminating signal (SIGHUP when the terminal closes or SSH drops, SIGTERM,
    /// SIGINT from `kill`, SIGQUIT, SIGUSR1, SIGALRM, the real-time signals, ...) into
    /// [`Event::Terminate`], so the shell flushes the tally and restores the terminal instead
    /// of the process dying mid-write. Must be called inside the runtime. Err only when
    /// SIGTERM itself cannot be caught; other signals that cannot be are skipped.
    pub fn listen_for_signals(&mut self) -> std::io::Result<()> {
        let mut signals = Vec::new();
        for &(sig, name) in TERMINATING {
            match signal(SignalKind::from_raw(sig)) {
                Ok(s) => signals.push((name, s)),
                Err(e) if sig == libc::SIGTERM => return Err(e),
                Err(_) => {}
            }
        }
        for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            if let Ok(s) = signal(SignalKind::from_raw(sig)) {
                signals.push(("a real-time signal", s));
            }
        }
        self.signals = signals;
        Ok(())
    }

    /// Seconds since the dashboard started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// What a terminal event wakes the loop with; `None` for those the app ignores (key
/// releases, focus, mouse).
fn from_terminal(term: Option<std::io::Result<TermEvent>>) -> Option<Wake> {
    match term {
        Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => {
            Some(Wake::Event(Event::Key(k)))
        }
        Some(Ok(TermEvent::Paste(s))) => Some(Wake::Event(Event::Paste(s))),
        Some(Ok(TermEvent::Resize(width, height))) => {
            Some(Wake::Event(Event::Resize { width, height }))
        }
        Some(Ok(_)) => None,
        Some(Err(_)) | None => Some(Wake::InputClosed),
    }
}

impl Events for EventSource {
    async fn next(&mut self, frame_at: Option<tokio::time::Instant>) -> Wake {
        loop {
            let frame = async {
                match frame_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let engine = async {
                match self.engine.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let signals = any_signal(&mut self.signals);
            let samples = async {
                match self.samples.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Input first: keys must never starve behind a fast token stream.
                biased;
                term = self.terminal.next() => match from_terminal(term) {
                    Some(wake) => return wake,
                    None => continue,
                },
                ev = engine => match ev {
                    Some(event) => return Wake::Event(Event::Engine { event, now: self.now() }),
                    // The engine thread ended. It reports every failure before it ends; if it
                    // died without a word the app must still learn that no model is coming.
                    None => {
                        self.engine = None;
                        return Wake::Event(Event::Engine {
                            event: EngineEvent::Failed(ENGINE_GONE.into()),
                            now: self.now(),
                        });
                    }
                },
                s = samples => match s {
                    Some(s) => return Wake::Event(Event::Sample(s)),
                    None => self.samples = None,
                },
                name = signals => return Wake::Event(Event::Terminate(name)),
                _ = self.tick.tick() => return Wake::Event(Event::Tick { now: self.now() }),
                _ = frame => return Wake::Frame,
            }
        }
    }

    async fn hold_until(&mut self, until: tokio::time::Instant) -> Wake {
        loop {
            let signals = any_signal(&mut self.signals);
            tokio::select! {
                biased;
                term = self.terminal.next() => match from_terminal(term) {
                    Some(wake) => return wake,
                    None => continue,
                },
                name = signals => return Wake::Event(Event::Terminate(name)),
                _ = tokio::time::sleep_until(until) => return Wake::Frame,
            }
        }
    }

    fn try_next_queued(&mut self) -> Option<Event> {
        let now = self.now();
        if let Some(rx) = self.engine.as_mut()
            && let Ok(event) = rx.try_recv()
        {
            return Some(Event::Engine { event, now });
        }
        if let Some(rx) = self.samples.as_mut()
            && let Ok(s) = rx.try_recv()
        {
            return Some(Event::Sample(s));
        }
        None
    }
}
