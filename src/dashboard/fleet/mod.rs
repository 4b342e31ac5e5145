//! `llmtop --remote URL [URL...]`: the fleet view, the dashboard's gauges and charts for other
//! hosts, read from their `/metrics` (`llmtop serve`, or a dashboard or proxy with
//! `--metrics-addr`). No chat in this mode. With several hosts a host table comes first, like
//! all-smi's `view --hosts`; the selected host's gauges and charts below it.
//!
//! Each host is scraped once a second by a thread of its own, with a short timeout, so an
//! unreachable host is a status in its row and never holds up the others or the screen. The
//! view runs on the dashboard's event loop (`shell::run_screen`): keys, resizes, the terminal
//! closing and the terminating signals are handled there, once for every screen.

pub mod view;

use crate::cli::DashboardArgs;
use crate::config::Config;
use crate::dashboard::theme::{self, Theme};
use crate::export::scrape::{self, RemoteHost};
use crate::term::event::{self, EventSource, Input, ScreenEvent};
use crate::term::screen::{Screen, in_terminal, run_screen};
use anyhow::Context;
use crossterm::event::{KeyCode, KeyModifiers};
use ratatui::Frame;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// What the screen shows: every host, which one is selected.
#[derive(Debug, Clone)]
pub struct FleetView {
    pub hosts: Vec<RemoteHost>,
    pub selected: usize,
    /// Seconds since start, for the charts' time axis.
    pub now: f64,
}

impl FleetView {
    pub fn new(urls: &[String]) -> Self {
        Self {
            hosts: urls.iter().map(|u| RemoteHost::new(u)).collect(),
            selected: 0,
            now: 0.0,
        }
    }

    /// A key: `true` to quit.
    pub fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> bool {
        let n = self.hosts.len().max(1);
        match code {
            KeyCode::Char('q') | KeyCode::Esc => return true,
            KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => return true,
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.selected = (self.selected + 1) % n
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.selected = (self.selected + n - 1) % n
            }
            _ => {}
        }
        false
    }
}

/// `http://host:9464`, `host:9464` or `http://host:9464/metrics`: the base URL to scrape.
pub fn normalise(url: &str) -> Result<String, String> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let base = with_scheme
        .trim_end_matches('/')
        .trim_end_matches("/metrics")
        .to_string();
    // The error names the URL already: "--remote http://x:99999: bad URL: ...".
    crate::net::client::check_url(&base, crate::net::client::Peer::Llmtop).map_err(|e| {
        format!(
            "--remote {}",
            crate::util::sanitize::terminal(&e.to_string())
        )
    })?;
    Ok(base)
}

/// One host's scrape: (host index, seconds since start, outcome).
pub type Scrape = (usize, f64, Result<scrape::Scrape, String>);

/// Scrape `base` every second until `stop`, sending each outcome.
fn poll(
    index: usize,
    base: String,
    start: Instant,
    stop: Arc<AtomicBool>,
    tx: UnboundedSender<Scrape>,
) {
    let client = scrape::client();
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let outcome = scrape::scrape(&client, &base);
        if tx
            .send((index, start.elapsed().as_secs_f64(), outcome))
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(began.elapsed()));
    }
}

/// What the fleet view reacts to.
#[derive(Debug)]
pub enum FleetEvent {
    Input(Input),
    /// Boxed: a scrape is large, and comes once a second per host.
    Scrape(Box<Scrape>),
    /// Redraw the charts' time axis.
    Tick(f64),
    Terminate,
}

impl ScreenEvent for FleetEvent {
    fn input(i: Input) -> Self {
        FleetEvent::Input(i)
    }

    fn tick(now: f64) -> Self {
        FleetEvent::Tick(now)
    }

    fn terminate(_signal: &'static str) -> Self {
        FleetEvent::Terminate
    }
}

/// The view on the event loop, with its theme.
pub struct FleetScreen {
    pub view: FleetView,
    pub theme: Theme,
    pub dirty: bool,
}

impl Screen for FleetScreen {
    type Event = FleetEvent;

    fn update(&mut self, ev: FleetEvent) -> bool {
        match ev {
            FleetEvent::Input(Input::Key(k)) => {
                if self.view.key(k.code, k.modifiers) {
                    return true;
                }
            }
            FleetEvent::Input(Input::Resize { .. } | Input::Paste(_)) => {}
            FleetEvent::Scrape(scrape) => {
                let (i, t, outcome) = *scrape;
                let Some(h) = self.view.hosts.get_mut(i) else {
                    return false;
                };
                h.apply(t, outcome);
                self.view.now = t;
            }
            FleetEvent::Tick(now) => self.view.now = now,
            FleetEvent::Terminate => return true,
        }
        self.dirty = true;
        false
    }

    fn dirty(&self) -> bool {
        self.dirty
    }

    fn drawn(&mut self) {
        self.dirty = false;
    }

    fn draw(&self, f: &mut Frame) {
        view::draw(&self.view, &self.theme, f);
    }
}

/// Run the fleet view until the user quits, a signal arrives or the terminal closes.
pub fn run(args: &DashboardArgs, cfg: &Config) -> anyhow::Result<()> {
    let urls = args
        .remote
        .iter()
        .map(|u| normalise(u))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let depth = theme::detect_depth(cfg.color, |k| std::env::var(k).ok());
    let name = args
        .theme
        .clone()
        .unwrap_or_else(|| cfg.raw.ui.theme.clone());
    let user_dir = crate::config::config_dir().map(|d| d.join("themes"));
    let theme = theme::load(&name, user_dir.as_deref())?.degrade(depth);

    let runtime =
        crate::util::runtime::current_thread().context("cannot start the async runtime")?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, base) in urls.iter().enumerate() {
        let (stop, tx, base) = (stop.clone(), tx.clone(), base.clone());
        std::thread::Builder::new()
            .name(format!("llmtop-remote-{i}"))
            .spawn(move || poll(i, base, start, stop, tx))
            .context("cannot start a scraping thread")?;
    }
    drop(tx);
    let mut screen = FleetScreen {
        view: FleetView::new(&urls),
        theme,
        dirty: true,
    };
    let log = crate::util::paths::log_file();
    let result = runtime.block_on(in_terminal(&log, async |terminal| {
        // The charts' time axis moves once a second even when no host answers.
        let mut events = EventSource::new(start, Some(1.0))
            .with_feed(event::channel(rx, |s| FleetEvent::Scrape(Box::new(s))));
        events
            .listen_for_signals()
            .context("cannot catch SIGTERM/SIGHUP")?;
        run_screen(terminal, &mut events, &mut screen).await
    }));
    // The scraping threads end at their next tick; a request in flight times out on its own.
    stop.store(true, Ordering::Relaxed);
    result.map(|_| ())
}
