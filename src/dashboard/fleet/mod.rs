//! `llmtop --remote URL [URL...]`: the dashboard's gauges and charts for other hosts, read
//! from their `/metrics` (`llmtop serve`, or a dashboard or proxy with `--metrics-addr`). No
//! chat in this mode. With several hosts a host table comes first, like all-smi's
//! `view --hosts`; the selected host's gauges and charts below it.
//!
//! Each host is scraped once a second by a thread of its own, with a short timeout, so an
//! unreachable host is a status in its row and never holds up the others or the screen.

pub mod view;

use crate::cli::DashboardArgs;
use crate::config::Config;
use crate::dashboard::theme;
use crate::dashboard::tui::Tui;
use crate::export::remote::{self, RemoteHost};
use crate::sensors::http::Client;
use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the screen shows: every host, which one is selected.
#[derive(Debug, Clone)]
pub struct RemoteView {
    pub hosts: Vec<RemoteHost>,
    pub selected: usize,
    /// Seconds since start, for the charts' time axis.
    pub now: f64,
}

impl RemoteView {
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
    crate::sensors::http::parse_url(&base).map_err(|e| {
        format!(
            "--remote {}",
            crate::util::sanitize::terminal(&e.to_string())
        )
    })?;
    Ok(base)
}

/// Scrape `base` every second until `stop`, sending (host index, time, outcome).
fn poll(
    index: usize,
    base: String,
    start: Instant,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<(usize, f64, Result<remote::Scrape, String>)>,
) {
    let client = match Client::new(None) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send((index, 0.0, Err(e.to_string())));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let outcome = remote::get(&client, &base, "/metrics")
            .and_then(|text| remote::parse(&text).map_err(|why| format!("{base}/metrics: {why}")));
        if tx
            .send((index, start.elapsed().as_secs_f64(), outcome))
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(began.elapsed()));
    }
}

/// Set `quit` on SIGTERM, SIGHUP and the other signals that would kill the process with the
/// terminal still raw (as the dashboard does), from a thread of its own.
fn watch_signals(quit: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("llmtop-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let mut streams: Vec<_> = crate::dashboard::event::TERMINATING
                    .iter()
                    .filter_map(|&(sig, _)| signal(SignalKind::from_raw(sig)).ok())
                    .collect();
                if streams.is_empty() {
                    return;
                }
                let any = futures_util::future::select_all(
                    streams.iter_mut().map(|s| Box::pin(s.recv())),
                );
                any.await;
                quit.store(true, Ordering::SeqCst);
            });
        });
}

/// Run the remote view until the user quits.
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

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    for (i, base) in urls.iter().enumerate() {
        let (stop, tx, base) = (stop.clone(), tx.clone(), base.clone());
        std::thread::Builder::new()
            .name(format!("llmtop-remote-{i}"))
            .spawn(move || poll(i, base, start, stop, tx))
            .context("cannot start a scraping thread")?;
    }
    drop(tx);
    let mut view = RemoteView::new(&urls);
    let quit = Arc::new(AtomicBool::new(false));
    watch_signals(quit.clone());
    let log = crate::util::paths::log_file();
    let mut tui = Tui::enter().context("cannot set up the terminal")?;
    let _ = crate::dashboard::tui::redirect_stderr(&log);
    let result = (|| -> anyhow::Result<()> {
        let mut dirty = true;
        loop {
            if quit.load(Ordering::SeqCst) {
                return Ok(());
            }
            while let Ok((i, t, outcome)) = rx.try_recv() {
                if let Some(h) = view.hosts.get_mut(i) {
                    h.apply(t, outcome);
                    dirty = true;
                }
            }
            if dirty {
                view.now = start.elapsed().as_secs_f64();
                crate::dashboard::tui::draw(&mut tui.terminal, |f| view::draw(&view, &theme, f))?;
                dirty = false;
            }
            if event::poll(Duration::from_millis(200))? {
                match event::read()? {
                    Event::Key(k) if k.kind == KeyEventKind::Press => {
                        if view.key(k.code, k.modifiers) {
                            return Ok(());
                        }
                        dirty = true;
                    }
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
        }
    })();
    // The scraping threads end at their next tick; a request in flight times out on its own.
    stop.store(true, Ordering::Relaxed);
    drop(tui);
    result
}
