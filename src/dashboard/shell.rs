//! The dashboard as a screen of the terminal loop (`term::screen::run_screen`): the app's
//! effects reach the engine, the snapshot writer and the loop's end, every sample goes through
//! the metering runtime's fold, and the run ends as every mode's does: the reply in progress
//! counted, then the metering runtime's drain and flush.
//!
//! Generic over the terminal backend and the event source: the program passes the crossterm
//! terminal and the dashboard's event source, tests pass ratatui's `TestBackend` and a script.

use crate::accounting::lifetime::LifetimeTally;
use crate::accounting::pricing::Tariff;
use crate::accounting::session::SessionRecorder;
use crate::accounting::subscriber::{ServerFeed, Subscriber};
use crate::config::RawConfig;
use crate::dashboard::card::{self, CardContext};
use crate::dashboard::event::Event;
use crate::dashboard::pace::Pace;
use crate::dashboard::state::{App, Effect};
use crate::dashboard::theme::Theme;
use crate::engine::{Command, EngineEvent, EngineHandle};
use crate::export::feed::MetricsFeed;
use crate::metering::{self, Metering};
use crate::proxy::feed::ProxyFeed;
use crate::proxy::forward::ProxyServer;
use crate::sensors::host::HostInfo;
use crate::term::event::{Events, Wake};
use crate::term::guard::FrameBackend;
use crate::term::screen::MIN_FRAME;
use crate::term::screen::{Pacing, Screen, run_screen};
use ratatui::{Frame, Terminal};
use std::time::Duration;
/// How long the loop's end waits for a reply in progress to stop after it is cancelled: the
/// engine checks between tokens and prompt chunks, so this is generous.
pub const REPLY_GRACE: Duration = Duration::from_secs(3);

/// `--proxy`: the proxy, and its books fed by the metering runtime.
pub struct DashProxy {
    pub feed: ProxyFeed,
    /// Taken and stopped when the run ends, before the drain: its streams end and reach the
    /// books.
    pub server: Option<ProxyServer>,
    /// Whether the upstream answers: its lines for the status line, each once per change.
    pub health: Option<(
        crate::proxy::health::HealthWatch,
        std::sync::mpsc::Receiver<(crate::proxy::health::Health, String)>,
    )>,
}

/// What the event loop owns besides the app: the engine's command side, the metering
/// runtime and its subscribers (the session, the lifetime tally, the metrics endpoint, the
/// attached server's share, the proxy's books) and what snapshots need.
pub struct Shell<'a> {
    pub handle: EngineHandle,
    pub metering: Metering,
    pub session: SessionRecorder,
    pub tally: Option<LifetimeTally<'a>>,
    pub metrics: Option<MetricsFeed>,
    pub cfg: &'a RawConfig,
    pub tariff: &'a Tariff,
    pub compare: &'a [Tariff],
    pub pace: Pace,
    /// The attached server's process, when it runs on this machine.
    pub server: Option<ServerFeed>,
    pub proxy: Option<DashProxy>,
}

impl<'a> Shell<'a> {
    /// The metering runtime and the subscribers this dashboard has, in the order the fold
    /// hands them each sample (the proxy's records reach the metrics before its sample does).
    fn subscribers(&mut self) -> (&mut Metering, Vec<&mut (dyn Subscriber + 'a)>) {
        let mut subs: Vec<&mut (dyn Subscriber + 'a)> = vec![&mut self.session];
        if let Some(t) = self.tally.as_mut() {
            subs.push(t);
        }
        if let Some(s) = self.server.as_mut() {
            subs.push(s);
        }
        if let Some(p) = self.proxy.as_mut() {
            subs.push(&mut p.feed);
        }
        if let Some(m) = self.metrics.as_mut() {
            subs.push(m);
        }
        (&mut self.metering, subs)
    }

    /// Account for an event before the app sees it. Returns whether the footer's figures
    /// may have changed.
    fn observe(&mut self, app: &mut App, ev: &Event) -> bool {
        match ev {
            Event::Sample(s) => {
                let live = app.live_tok_s();
                self.session.set_rate(live);
                // The server's share is net of the session's idle baseline, once measured.
                if let Some(server) = self.server.as_mut() {
                    server.idle = self.session.idle_baseline().cloned();
                }
                let (metering, mut subs) = self.subscribers();
                metering.fold(s, &mut subs);
                drop(subs);
                if let Some(w) = self.tally.as_mut().and_then(LifetimeTally::take_warning) {
                    app.update(Event::Status(w));
                }
                for f in self.session.take_reply_figures() {
                    app.update(Event::ReplyFigures(f));
                }
                app.update(Event::Power(self.metering.ledger().power_view()));
                app.update(Event::Throttle(self.session.throttled().cloned()));
                app.update(Event::Contention(self.session.contended().cloned()));
                if let Some(server) = self.server.as_ref() {
                    app.update(Event::ServerShare(server.meter.tracker().share()));
                }
                // Between replies the rate stays that of the last one.
                if let (Some(m), Some(r)) = (self.metrics.as_ref(), live) {
                    m.with(|m| m.set_tok_s(r));
                }
                // The proxy's requests settle on samples: that is when the ledger moves.
                if let Some(p) = self.proxy.as_mut() {
                    let records = p.feed.take_records();
                    let pending = p.feed.pending();
                    app.update(Event::Requests { records, pending });
                    let health = p
                        .health
                        .as_ref()
                        .map(|(_, rx)| rx.try_iter().collect::<Vec<_>>())
                        .unwrap_or_default();
                    let mut lines = p.feed.take_notices();
                    for (h, line) in health {
                        app.update(Event::UpstreamHealth(match h {
                            crate::proxy::health::Health::Down { why, .. } => Some(why),
                            crate::proxy::health::Health::Up => None,
                        }));
                        lines.push(line);
                    }
                    for line in lines {
                        app.update(Event::Status(
                            crate::util::sanitize::terminal(&line).into_owned(),
                        ));
                    }
                }
                true
            }
            Event::Engine { event, now } => {
                if let EngineEvent::Loaded(info) = event {
                    tracing::info!(
                        "model loaded: {} in {:.0} ms",
                        crate::util::sanitize::terminal(&info.name),
                        info.load_ms
                    );
                    // The settings in effect, as the engine reported them.
                    if let Some(m) = &self.metrics {
                        m.with(|m| m.set_engine(info));
                    }
                }
                let Some(delta) = self.session.observe(event, *now) else {
                    return false;
                };
                if let Some(t) = self.tally.as_mut() {
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
                    if let Some(m) = &self.metrics {
                        m.with(|m| {
                            m.record_reply(u64::from(stats.generated_tokens), stats.gen_tok_s);
                        });
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn footer(&self) -> Event {
        let (energy, cost) = self.session.footer(
            self.metering.ledger(),
            self.tally.as_ref().map(LifetimeTally::tally),
        );
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
        card::write(
            &dir,
            app,
            &self.session,
            self.metering.ledger(),
            ctx,
            &screen,
        )
        .map(|p| p.json.display().to_string())
        .map_err(|e| e.to_string())
    }
}

/// The dashboard as a screen: the app, its themes, and the shell that accounts for events and
/// carries out the app's effects.
struct Dashboard<'s, 'a> {
    app: &'s mut App,
    themes: &'s [Theme],
    fallback: Theme,
    shell: &'s mut Shell<'a>,
    figures_changed: bool,
}

impl Dashboard<'_, '_> {
    fn theme(&self) -> &Theme {
        self.themes.get(self.app.theme).unwrap_or(&self.fallback)
    }
}

impl Screen for Dashboard<'_, '_> {
    type Event = Event;

    fn update(&mut self, ev: Event) -> bool {
        self.figures_changed |= self.shell.observe(self.app, &ev);
        let mut quit = false;
        for effect in self.app.update(ev) {
            match effect {
                Effect::Engine(cmd) => self.shell.handle.send(cmd),
                Effect::Quit => quit = true,
                Effect::Snapshot => {
                    let r = self.shell.snapshot(self.app, self.theme());
                    self.app.update(Event::SnapshotWritten(r));
                }
            }
        }
        quit
    }

    fn batch_done(&mut self) {
        if std::mem::take(&mut self.figures_changed) {
            self.app.update(self.shell.footer());
        }
    }

    fn dirty(&self) -> bool {
        self.app.dirty
    }

    fn drawn(&mut self) {
        self.app.dirty = false;
    }

    fn draw(&self, f: &mut Frame) {
        crate::dashboard::ui::draw(self.app, self.theme(), f);
    }

    fn pacing(&self) -> Pacing {
        let busy = self.app.engine.busy();
        let min_frame = self.shell.pace.frame_for(busy);
        Pacing {
            min_frame,
            slack: self.shell.pace.slack(min_frame),
            hold: min_frame > MIN_FRAME && busy,
        }
    }
}

/// Fold events into `app` and draw it until the app quits, a signal arrives or the input
/// ends; then, whatever ended the loop (quit, signal, lost terminal, error), the reply in
/// progress is cancelled and counted, the proxy stops taking requests, and the metering
/// runtime drains and flushes (the lifetime tally, the proxy's records). The engine keeps
/// running until `shell` is dropped, so the caller can put the terminal back first.
pub async fn event_loop<B>(
    terminal: &mut Terminal<B>,
    events: &mut impl Events<Event = Event>,
    app: &mut App,
    themes: &[Theme],
    shell: &mut Shell<'_>,
) -> anyhow::Result<()>
where
    B: FrameBackend,
    B::Error: Send + Sync + 'static,
{
    let result = run_screen(
        terminal,
        events,
        &mut Dashboard {
            app,
            themes,
            fallback: Theme::dark(),
            shell,
            figures_changed: false,
        },
    )
    .await;
    // The engine stops between tokens, so the wait is one token's time.
    finish_reply(events, app, shell).await;
    if let Some(p) = shell.proxy.as_mut() {
        drop(p.server.take());
    }
    let (metering, mut subs) = shell.subscribers();
    let (_, flushed) = metering.finish(&mut DrainFeed(events), &mut subs).await;
    result.and(flushed.map_err(anyhow::Error::msg))
}

/// The samples and signals of a dashboard's events, for the drain: the run is over, the rest
/// is let go.
struct DrainFeed<'e, E>(&'e mut E);

impl<E: Events<Event = Event>> metering::Feed for DrainFeed<'_, E> {
    async fn next(&mut self) -> metering::Wake {
        loop {
            match self.0.next(None).await {
                Wake::Event(Event::Sample(s)) => return metering::Wake::Sample(s),
                Wake::Event(Event::Terminate(name)) => return metering::Wake::Signal(name),
                _ => {}
            }
        }
    }
}

/// A reply still running when the loop ends (quit, a signal, a lost terminal) is cancelled
/// and waited for, at most [`REPLY_GRACE`], so its tokens, its energy and the reply itself
/// reach the session and the lifetime tally exactly as an Esc-cancelled reply's do: through
/// the engine's `ReplyDone`. A second terminating signal stops the wait.
async fn finish_reply(
    events: &mut impl Events<Event = Event>,
    app: &mut App,
    shell: &mut Shell<'_>,
) {
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
