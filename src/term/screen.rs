//! The loop every screen runs on ([`run_screen`]: the dashboard, `--remote`, `sensors
//! --watch`): events are folded into the screen in batches, frames are coalesced and paced, and
//! the loop ends on quit, on a terminating signal, or when the terminal goes away; and the one
//! way the real terminal is taken over and put back around it ([`in_terminal`]).
//!
//! Generic over the terminal backend and the event source, as bandwhich's `start` is: the
//! program passes the crossterm terminal and [`EventSource`](super::event::EventSource), tests
//! pass ratatui's `TestBackend` and a script.

use super::event::{Events, Input, ScreenEvent, Wake};
use super::guard::{self, FrameBackend, Tui};
use anyhow::Context;
use ratatui::{Frame, Terminal};
use std::time::Duration;

/// Events folded into one frame at most, so keys stay responsive during a token burst.
pub const MAX_BATCH: usize = 512;
/// The fastest any screen draws: one frame per 16 ms.
pub const MIN_FRAME: Duration = Duration::from_millis(16);

/// What a screen is to the event loop: it takes in events, says when it changed, and draws.
pub trait Screen {
    type Event;

    /// Take in one event; `true`: quit.
    fn update(&mut self, ev: Self::Event) -> bool;

    /// After a batch of events, before drawing (figures that depend on the batch as a whole).
    fn batch_done(&mut self) {}

    /// Something changed since the last frame.
    fn dirty(&self) -> bool;

    /// A frame was drawn.
    fn drawn(&mut self);

    /// Pure: the screen as it stands.
    fn draw(&self, f: &mut Frame);

    /// The least time between frames now, how early a frame may be drawn when the loop is
    /// awake anyway, and whether, after a frame, only the user may wake the loop until the
    /// next is due (the dashboard while a reply streams on every CPU: `pace.rs`).
    fn pacing(&self) -> Pacing {
        Pacing {
            min_frame: MIN_FRAME,
            slack: Duration::ZERO,
            hold: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub min_frame: Duration,
    pub slack: Duration,
    pub hold: bool,
}

/// Fold events into `screen` and draw it until it quits, a signal arrives or the input ends.
pub async fn run_screen<B, S>(
    terminal: &mut Terminal<B>,
    events: &mut impl Events<Event = S::Event>,
    screen: &mut S,
) -> anyhow::Result<()>
where
    B: FrameBackend,
    B::Error: Send + Sync + 'static,
    S: Screen,
    S::Event: ScreenEvent,
{
    let size = terminal.size()?;
    screen.update(S::Event::input(Input::Resize {
        width: size.width,
        height: size.height,
    }));
    guard::draw(terminal, |f| screen.draw(f))?;
    screen.drawn();
    let mut last_frame = tokio::time::Instant::now();
    let mut frame_due: Option<tokio::time::Instant> = None;
    // Set after a frame drawn at a held pace: until the next frame is due, only the user (or
    // a signal) wakes the loop; what arrives meanwhile is folded in when it is (pace.rs).
    let mut hold: Option<tokio::time::Instant> = None;

    loop {
        let mut batch = Vec::new();
        let wake = match hold {
            Some(until) => events.hold_until(until).await,
            None => events.next(frame_due).await,
        };
        match wake {
            Wake::Event(ev) => batch.push(ev),
            Wake::Frame => {
                frame_due = None;
                hold = None;
            }
            Wake::InputClosed => return Ok(()),
        }
        while batch.len() < MAX_BATCH {
            match events.try_next_queued() {
                Some(ev) => batch.push(ev),
                None => break,
            }
        }
        let mut quit = false;
        for ev in batch {
            quit |= screen.update(ev);
        }
        screen.batch_done();
        if quit {
            return Ok(());
        }
        if screen.dirty() {
            let now = tokio::time::Instant::now();
            let pacing = screen.pacing();
            // At a slow pace a frame nearly due is drawn now, with the text that woke the
            // loop, rather than by a timer wake of its own a few ms later (pace.rs).
            if now + pacing.slack >= last_frame + pacing.min_frame {
                guard::draw(terminal, |f| screen.draw(f))?;
                screen.drawn();
                last_frame = now;
                frame_due = None;
                hold = pacing.hold.then(|| now + pacing.min_frame);
            } else if frame_due.is_none() {
                frame_due = Some(last_frame + pacing.min_frame);
            }
        }
    }
}

/// Take the real terminal over (stderr to `log`, so nothing but frames reaches the screen),
/// run `body` on it, and put it back, whatever happened. A terminal that hung up meanwhile is
/// no error: drawing to it failed because it is gone.
pub async fn in_terminal<T>(
    log: &std::path::Path,
    body: impl AsyncFnOnce(&mut guard::Term) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    let mut tui = Tui::enter().context("cannot set up the terminal")?;
    // From here on nothing may reach the screen but frames.
    let _ = guard::redirect_stderr(log);
    let result = body(&mut tui.terminal).await;
    drop(tui);
    match result {
        Ok(v) => Ok(Some(v)),
        Err(_) if super::hangup::hung_up() => Ok(None),
        Err(e) => Err(e),
    }
}
