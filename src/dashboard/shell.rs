//! The event loop and the effects it carries out: events are folded into the app in batches,
//! frames are coalesced, and the app's effects reach the engine, the snapshot writer and the
//! loop's end.
//!
//! Generic over the terminal backend and the event source, as bandwhich's `start` is: the
//! program passes the crossterm terminal and [`EventSource`](super::event::EventSource), tests
//! pass ratatui's `TestBackend` and a script. Taking over and restoring the real terminal
//! happens around the loop, in `dashboard::run`.

use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::accounting::share::ServerMeter;
use crate::accounting::tally::TallyStore;
use crate::config::RawConfig;
use crate::dashboard::card::{self, CardContext};
use crate::dashboard::event::{Event, Events, Wake};
use crate::dashboard::pace::{MIN_FRAME, Pace};
use crate::dashboard::state::{App, Effect};
use crate::dashboard::theme::Theme;
use crate::dashboard::tui::{self, FrameBackend};
use crate::engine::{Command, EngineEvent, EngineHandle};
use crate::export::prometheus::MetricsState;
use crate::proxy::books::{ProxyBooks, metrics};
use crate::proxy::tap::ProxyEvent;
use crate::sensors::host::HostInfo;
use ratatui::Terminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// Events folded into one frame at most, so keys stay responsive during a token burst.
pub const MAX_BATCH: usize = 512;
/// How long the loop's end waits for a reply in progress to stop after it is cancelled: the
/// engine checks between tokens and prompt chunks, so this is generous.
pub const REPLY_GRACE: Duration = Duration::from_secs(3);

/// What the event loop owns besides the app: the engine's command side, the session's
/// accounting, the lifetime tally, the metrics endpoint and what snapshots need.
pub struct Shell<'a> {
    pub handle: EngineHandle,
    pub session: SessionRecorder,
    pub tally: Option<&'a mut TallyStore>,
    pub metrics: Option<Arc<Mutex<MetricsState>>>,
    pub cfg: &'a RawConfig,
    pub tariff: &'a Tariff,
    pub compare: &'a [Tariff],
    pub pace: Pace,
    /// The attached server's process, when it runs on this machine.
    pub server: Option<ServerMeter>,
    /// `--proxy`: the proxy's events and the books that make records of them.
    pub proxy: Option<ProxyFeed>,
}

/// What the shell needs of a running proxy: its events, and the books that fold them with
/// the session's ledger into records.
pub struct ProxyFeed {
    pub books: ProxyBooks,
    pub events: UnboundedReceiver<ProxyEvent>,
}

fn with_metrics(m: &Option<Arc<Mutex<MetricsState>>>, f: impl FnOnce(&mut MetricsState)) {
    if let Some(m) = m {
        match m.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Shell<'_> {
    /// Account for an event before the app sees it. Returns whether the footer's figures
    /// may have changed.
    fn observe(&mut self, app: &mut App, ev: &Event) -> bool {
        let wall = jiff::Timestamp::now();
        match ev {
            Event::Sample(s) => {
                let live = app.live_tok_s();
                let delta = self.session.push_sample(s, live);
                if let Some(t) = self.tally.as_deref_mut() {
                    t.add(&delta);
                }
                for f in self.session.take_reply_figures() {
                    app.update(Event::ReplyFigures(f));
                }
                let ledger = self.session.ledger();
                app.update(Event::Power(ledger.power_view()));
                app.update(Event::Throttle(self.session.throttled().cloned()));
                app.update(Event::Contention(self.session.contended().cloned()));
                if let Some(server) = self.server.as_mut() {
                    let idle = self.session.idle_baseline();
                    app.update(Event::ServerShare(server.on_sample(s.t, ledger, idle)));
                }
                with_metrics(&self.metrics, |m| {
                    m.apply_sample(s);
                    m.apply_ledger(ledger);
                    // Between replies the rate stays that of the last one.
                    if let Some(r) = live {
                        m.set_tok_s(r);
                    }
                });
                // The proxy's requests settle on samples: that is when the ledger moves.
                if let Some(p) = self.proxy.as_mut() {
                    while let Ok(e) = p.events.try_recv() {
                        p.books.event(e);
                    }
                    let records = p.books.settle(self.session.ledger(), s.t);
                    with_metrics(&self.metrics, |m| {
                        for r in &records {
                            m.record_request(&metrics(r));
                        }
                    });
                    let pending = p.books.pending();
                    app.update(Event::Requests { records, pending });
                }
                true
            }
            Event::Tick { now } => {
                if let Some(t) = self.tally.as_deref_mut()
                    && let Err(e) = t.tick(*now, wall)
                {
                    app.update(Event::Status(e.to_string()));
                }
                false
            }
            Event::Engine { event, now } => {
                if let EngineEvent::Loaded(info) = event {
                    tracing::info!(
                        "model loaded: {} in {:.0} ms",
                        crate::util::sanitize::terminal(&info.name),
                        info.load_ms
                    );
                    // The settings in effect, as the engine reported them.
                    with_metrics(&self.metrics, |m| m.set_engine(info));
                }
                let Some(delta) = self.session.observe(event, *now) else {
                    return false;
                };
                if let Some(t) = self.tally.as_deref_mut() {
                    t.add(&delta);
                }
                if let EngineEvent::ReplyDone(stats) = event {
                    tracing::info!(
                        "reply done: {} tokens, {:.1} tok/s, TTFT {:.0} ms, {}",
                        stats.generated_tokens,
                        stats.gen_tok_s,
                        stats.ttft_ms,
                        stats.stop
                    );
                    with_metrics(&self.metrics, |m| {
                        m.record_reply(u64::from(stats.generated_tokens), stats.gen_tok_s);
                    });
                }
                true
            }
            _ => false,
        }
    }

    fn footer(&self) -> Event {
        let (energy, cost) = self
            .session
            .footer(self.tally.as_deref().map(TallyStore::tally));
        Event::Footer { energy, cost }
    }

    /// Ctrl-S: the run card, its Markdown and the screen as SVG. Ok: the JSON path.
    fn snapshot(&self, app: &App, theme: &Theme) -> Result<String, String> {
        let ctx = CardContext {
            host: HostInfo::detect(crate::sensors::nvml::gpu_names()),
            tariff: self.tariff,
            compare: self.compare,
            snapshot: &self.cfg.snapshot,
            now: jiff::Timestamp::now(),
        };
        let screen = crate::dashboard::ui::render_buffer(app, theme, app.width, app.height);
        let dir = crate::report::snapshot::default_dir(&self.cfg.snapshot);
        card::write(&dir, app, &self.session, ctx, &screen)
            .map(|p| p.json.display().to_string())
            .map_err(|e| e.to_string())
    }

    /// Write what the lifetime tally gained since its last write.
    fn flush_tally(&mut self) -> anyhow::Result<()> {
        match self.tally.as_deref_mut() {
            Some(t) => Ok(t.flush(jiff::Timestamp::now())?),
            None => Ok(()),
        }
    }
}

/// Fold events into `app` and draw it until the app quits or the input ends, then flush the
/// lifetime tally, whatever ended the loop (quit, signal, lost terminal, error). The engine
/// keeps running until `shell` is dropped, so the caller can put the terminal back first.
pub async fn event_loop<B>(
    terminal: &mut Terminal<B>,
    events: &mut impl Events,
    app: &mut App,
    themes: &[Theme],
    shell: &mut Shell<'_>,
) -> anyhow::Result<()>
where
    B: FrameBackend,
    B::Error: Send + Sync + 'static,
{
    let result = fold_and_draw(terminal, events, app, themes, shell).await;
    // However the loop ended (the quit key, a signal, a lost terminal, an error), the reply
    // being generated is cancelled and counted, not lost: the engine stops between tokens,
    // so the wait is one token's time.
    finish_reply(events, app, shell).await;
    let flushed = shell.flush_tally();
    result.and(flushed)
}

/// A reply still running when the loop ends (quit, a signal, a lost terminal) is cancelled
/// and waited for, at most [`REPLY_GRACE`], so its tokens, its energy and the reply itself
/// reach the session and the lifetime tally exactly as an Esc-cancelled reply's do: through
/// the engine's `ReplyDone`. A second terminating signal stops the wait.
async fn finish_reply(events: &mut impl Events, app: &mut App, shell: &mut Shell<'_>) {
    if !app.engine.busy() {
        return;
    }
    shell.handle.send(Command::Cancel);
    let deadline = tokio::time::Instant::now() + REPLY_GRACE;
    while app.engine.busy() && tokio::time::Instant::now() < deadline {
        let ev = match tokio::time::timeout_at(deadline, events.next(None)).await {
            Err(_) => return,
            Ok(Wake::Event(Event::Terminate(_))) => return,
            Ok(Wake::Event(ev)) => ev,
            Ok(Wake::Frame) => continue,
            // No terminal any more: the engine's events are still queued for us.
            Ok(Wake::InputClosed) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match events.try_next_queued() {
                    Some(ev) => ev,
                    None => continue,
                }
            }
        };
        if matches!(
            ev,
            Event::Engine { .. } | Event::Sample(_) | Event::Tick { .. }
        ) {
            shell.observe(app, &ev);
            // Nothing more is carried out: the program is on its way out.
            let _ = app.update(ev);
        }
    }
}

async fn fold_and_draw<B>(
    terminal: &mut Terminal<B>,
    events: &mut impl Events,
    app: &mut App,
    themes: &[Theme],
    shell: &mut Shell<'_>,
) -> anyhow::Result<()>
where
    B: FrameBackend,
    B::Error: Send + Sync + 'static,
{
    let size = terminal.size()?;
    app.update(Event::Resize {
        width: size.width,
        height: size.height,
    });
    let fallback = Theme::dark();
    let theme_of = |app: &App| themes.get(app.theme).unwrap_or(&fallback);
    tui::draw(terminal, |f| {
        crate::dashboard::ui::draw(app, theme_of(app), f)
    })?;
    app.dirty = false;
    let mut last_frame = tokio::time::Instant::now();
    let mut frame_due: Option<tokio::time::Instant> = None;
    // Set after a frame drawn at the generating pace: until the next frame is due, only the
    // user (or a signal) wakes the loop; the text and samples that arrive meanwhile are
    // folded in when it is (pace.rs).
    let mut hold: Option<tokio::time::Instant> = None;

    let mut quit = false;
    while !quit {
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
            Wake::InputClosed => break,
        }
        while batch.len() < MAX_BATCH {
            match events.try_next_queued() {
                Some(ev) => batch.push(ev),
                None => break,
            }
        }
        let mut figures_changed = false;
        for ev in batch {
            figures_changed |= shell.observe(app, &ev);
            for effect in app.update(ev) {
                match effect {
                    Effect::Engine(cmd) => shell.handle.send(cmd),
                    Effect::Quit => quit = true,
                    Effect::Snapshot => {
                        let r = shell.snapshot(app, theme_of(app));
                        app.update(Event::SnapshotWritten(r));
                    }
                }
            }
        }
        if figures_changed {
            app.update(shell.footer());
        }
        if quit {
            break;
        }
        if app.dirty {
            let now = tokio::time::Instant::now();
            let min_frame = shell.pace.frame_for(app.engine.busy());
            // At the slow pace a frame nearly due is drawn now, with the text that woke the
            // loop, rather than by a timer wake of its own a few ms later (pace.rs).
            let slack = shell.pace.slack(min_frame);
            if now + slack >= last_frame + min_frame {
                tui::draw(terminal, |f| {
                    crate::dashboard::ui::draw(app, theme_of(app), f)
                })?;
                app.dirty = false;
                last_frame = now;
                frame_due = None;
                hold = (min_frame > MIN_FRAME && app.engine.busy()).then(|| now + min_frame);
            } else if frame_due.is_none() {
                frame_due = Some(last_frame + min_frame);
            }
        }
    }
    Ok(())
}
