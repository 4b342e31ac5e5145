//! The events of every screen (the dashboard, `--remote`, `sensors --watch`), and the one
//! `select!` that produces them from the terminal (key presses, pastes, resizes, its hangup),
//! the tick, the terminating signals and the screen's own feeds (the engine and the sensor
//! sampler for the dashboard, the scrapes for `--remote`, the samples for `sensors --watch`).
//!
//! Time enters here: events carry `now`, seconds since the screen started.

use crate::metering::signals::Signals;
use crossterm::event::{Event as TermEvent, EventStream, KeyEvent, KeyEventKind};
use futures_util::FutureExt;
use futures_util::stream::{self, Stream, StreamExt};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// What the terminal says: the part of every screen's events that comes from the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Key(KeyEvent),
    Paste(String),
    Resize { width: u16, height: u16 },
}

/// The events of a screen, as the event source makes them from the terminal, the tick and
/// the terminating signals.
pub trait ScreenEvent: Sized {
    fn input(i: Input) -> Self;
    fn tick(now: f64) -> Self;
    fn terminate(signal: &'static str) -> Self;
}

/// What woke the loop: an event for the screen, or the moment a deferred frame is due.
// Returned by value once per wake and never stored: boxing the event would cost an allocation
// per token for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Wake<E> {
    Event(E),
    Frame,
    /// The terminal input stream ended or failed, or the terminal hung up: nothing more can
    /// be read from the user. Reported once.
    InputClosed,
}

/// Where the event loop's events come from: [`EventSource`] in the program, a script in tests.
pub trait Events {
    type Event;

    /// Wait for the next event, or for `frame_at` (a deferred redraw), whichever comes first.
    /// An event that is ready wins over a frame due at the same moment.
    fn next(
        &mut self,
        frame_at: Option<tokio::time::Instant>,
    ) -> impl Future<Output = Wake<Self::Event>>;

    /// Wait until `until` (then [`Wake::Frame`]) or for input from the user or a signal, and
    /// nothing else: the feeds' events stay queued for [`Events::try_next_queued`]. The
    /// dashboard sleeps this way between frames while a reply streams, so the engine's text,
    /// the samples and the tick do not each wake it on a CPU that llama.cpp needs.
    fn hold_until(
        &mut self,
        until: tokio::time::Instant,
    ) -> impl Future<Output = Wake<Self::Event>> {
        self.next(Some(until))
    }

    /// A feed's event that is already waiting, without blocking: lets the loop fold a burst
    /// of tokens into one frame.
    fn try_next_queued(&mut self) -> Option<Self::Event>;
}

/// One of a screen's own sources of events, in the order they are polled.
pub type Feed<E> = Pin<Box<dyn Stream<Item = E>>>;

/// A channel's messages as a feed, each made into an event by `f`.
pub fn channel<T: 'static, E: 'static>(
    mut rx: UnboundedReceiver<T>,
    f: impl FnMut(T) -> E + 'static,
) -> impl Stream<Item = E> + 'static {
    stream::poll_fn(move |cx| rx.poll_recv(cx)).map(f)
}

/// The sources a screen listens to: the terminal and its hangup, the tick, the terminating
/// signals, and the screen's feeds.
pub struct EventSource<E> {
    start: Instant,
    /// `None` once the input ended: never polled again (a closed terminal reads as EOF
    /// forever).
    terminal: Option<EventStream>,
    hangup: Option<crate::term::hangup::Hangup>,
    tick: Option<tokio::time::Interval>,
    feeds: Vec<Feed<E>>,
    /// The terminating signals, once [`EventSource::listen_for_signals`] was called.
    signals: Signals,
}

impl<E: ScreenEvent + 'static> EventSource<E> {
    /// The terminal (and its hangup, when stdin is one) and a tick at `tick_hz`, if any.
    pub fn new(start: Instant, tick_hz: Option<f64>) -> Self {
        let tick = tick_hz.map(|hz| {
            let period = Duration::from_secs_f64(1.0 / hz.clamp(0.1, 60.0));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick
        });
        Self {
            start,
            terminal: Some(EventStream::new()),
            hangup: crate::term::hangup::Hangup::watch(),
            tick,
            feeds: Vec::new(),
            signals: Signals::none(),
        }
    }

    /// A feed, polled after those added before it.
    pub fn with_feed(mut self, feed: impl Stream<Item = E> + 'static) -> Self {
        self.feeds.push(Box::pin(feed));
        self
    }

    /// Turn every terminating signal (`metering::signals`: SIGHUP when the terminal closes
    /// or SSH drops, SIGTERM, SIGINT from `kill`, ...) into a terminate event, so the screen
    /// ends the run the way every mode does instead of the process dying mid-write. Must be
    /// called inside the runtime. Err only when SIGTERM itself cannot be caught.
    pub fn listen_for_signals(&mut self) -> std::io::Result<()> {
        self.signals = Signals::listen()?;
        Ok(())
    }

    /// Seconds since the screen started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// What a terminal event wakes the loop with; `None` for those screens ignore (key
/// releases, focus, mouse).
fn from_terminal<E: ScreenEvent>(term: Option<std::io::Result<TermEvent>>) -> Option<Wake<E>> {
    let input = match term {
        Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => Input::Key(k),
        Some(Ok(TermEvent::Paste(s))) => Input::Paste(s),
        Some(Ok(TermEvent::Resize(width, height))) => Input::Resize { width, height },
        Some(Ok(_)) => return None,
        Some(Err(_)) | None => return Some(Wake::InputClosed),
    };
    Some(Wake::Event(E::input(input)))
}

/// The next terminal event, or never once the input ended.
async fn terminal_event(terminal: &mut Option<EventStream>) -> Option<std::io::Result<TermEvent>> {
    match terminal.as_mut() {
        Some(t) => t.next().await,
        None => std::future::pending().await,
    }
}

/// The first feed with an event ready, in order; a feed that ended is dropped.
async fn any_feed<E>(feeds: &mut Vec<Feed<E>>) -> E {
    std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < feeds.len() {
            match feeds[i].as_mut().poll_next(cx) {
                Poll::Ready(Some(e)) => return Poll::Ready(e),
                Poll::Ready(None) => {
                    drop(feeds.remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        Poll::Pending
    })
    .await
}

/// At `at`, or never.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn tick(tick: &mut Option<tokio::time::Interval>) {
    match tick.as_mut() {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn hung_up(hangup: &mut Option<crate::term::hangup::Hangup>) {
    match hangup.as_mut() {
        Some(h) => h.wait().await,
        None => std::future::pending().await,
    }
}

impl<E: ScreenEvent + 'static> EventSource<E> {
    /// The terminal input is over (ended, failed or hung up): stop listening to it.
    fn input_closed(&mut self) -> Wake<E> {
        self.terminal = None;
        self.hangup = None;
        Wake::InputClosed
    }

    /// The terminal's next event, its end, or a signal; `None` for terminal events screens
    /// ignore.
    async fn user(&mut self, until: Option<tokio::time::Instant>) -> Option<Wake<E>> {
        tokio::select! {
            // A signal first (it ends the run, and is rare), then the user: keys must never
            // starve behind a fast token stream.
            biased;
            name = self.signals.recv() => Some(Wake::Event(E::terminate(name))),
            () = hung_up(&mut self.hangup) => Some(self.input_closed()),
            term = terminal_event(&mut self.terminal) => match from_terminal(term) {
                Some(Wake::InputClosed) => Some(self.input_closed()),
                other => other,
            },
            () = sleep_until(until) => Some(Wake::Frame),
        }
    }
}

impl<E: ScreenEvent + 'static> Events for EventSource<E> {
    type Event = E;

    async fn next(&mut self, frame_at: Option<tokio::time::Instant>) -> Wake<E> {
        loop {
            let start = self.start;
            tokio::select! {
                biased;
                name = self.signals.recv() => return Wake::Event(E::terminate(name)),
                () = hung_up(&mut self.hangup) => return self.input_closed(),
                term = terminal_event(&mut self.terminal) => match from_terminal(term) {
                    Some(Wake::InputClosed) => return self.input_closed(),
                    Some(wake) => return wake,
                    None => continue,
                },
                e = any_feed(&mut self.feeds) => return Wake::Event(e),
                () = tick(&mut self.tick) => return Wake::Event(E::tick(start.elapsed().as_secs_f64())),
                () = sleep_until(frame_at) => return Wake::Frame,
            }
        }
    }

    async fn hold_until(&mut self, until: tokio::time::Instant) -> Wake<E> {
        loop {
            if let Some(wake) = self.user(Some(until)).await {
                return wake;
            }
        }
    }

    fn try_next_queued(&mut self) -> Option<E> {
        let mut i = 0;
        while i < self.feeds.len() {
            match self.feeds[i].next().now_or_never() {
                Some(Some(e)) => return Some(e),
                Some(None) => {
                    drop(self.feeds.remove(i));
                }
                None => i += 1,
            }
        }
        None
    }
}
