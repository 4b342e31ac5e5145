//! Reading other llmtop hosts: their `/metrics` read back into figures (for
//! `llmtop --remote`) and their run cards fetched (for `llmtop compare http://host:9464`).
//!
//! Rates (J/token, cost per hour) come from the host's own counters over a window, as
//! deploy/'s recording rules compute them; nothing here integrates power or prices energy.

use crate::net::client::{Client, Peer};
use crate::net::exposition::{self, Series};
use crate::report::runcard::RunCard;
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

/// A scrape or a card fetch gives up after this: an unreachable host is a status, not a hang.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from a host (an exposition or a run card).
pub const MAX_BODY: u64 = 8 << 20;
/// At most this many cards are fetched from one list (a host could list thousands).
pub const MAX_LISTED_CARDS: usize = 100;
/// Window of the rates, seconds (the rules' `[1m]`).
pub const RATE_WINDOW_S: f64 = 60.0;

/// A client for other llmtop hosts: its errors say to check `llmtop serve` there.
pub fn client() -> Client {
    Client::new(Peer::Llmtop)
}

/// GET `base` + `path` with [`TIMEOUT`]; `Err` is one line: what, where, how to fix.
pub fn get(client: &Client, base: &str, path: &str) -> Result<String, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    client
        .get_text(&url, &[], TIMEOUT, MAX_BODY)
        .map_err(|e| e.to_string())
}

/// Scrape `base`'s `/metrics` once.
pub fn scrape(client: &Client, base: &str) -> Result<Scrape, String> {
    let text = get(client, base, "/metrics")?;
    parse(&text).map_err(|why| {
        format!(
            "{}/metrics: {why}",
            crate::util::sanitize::terminal(base.trim_end_matches('/'))
        )
    })
}

/// Run cards named by a URL: `http://host:9464` is its latest card, a URL ending in
/// `/runcards/` every card it lists, any other URL that one card.
pub fn fetch_cards(url: &str) -> Result<Vec<(String, RunCard)>, String> {
    let after_host = url
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("", |i| &rest[i..]))
        .unwrap_or("");
    let base = &url[..url.len() - after_host.len()];
    crate::net::client::check_url(base, Peer::Llmtop).map_err(|e| e.to_string())?;
    let client = client();
    let card = |path: &str| -> Result<(String, RunCard), String> {
        let full = format!("{base}{path}");
        let text = get(&client, base, path)?;
        let card = RunCard::from_json(&text, Path::new(&full)).map_err(|e| e.to_string())?;
        Ok((full, card))
    };
    match after_host {
        "" | "/" => Ok(vec![card("/runcards/latest.json")?]),
        p if p.ends_with('/') => {
            let text = get(&client, base, p)?;
            let list: super::runcards::CardList = serde_json::from_str(&text).map_err(|e| {
                format!("{url}: not a run card list ({e}); give http://HOST:PORT or a card's URL")
            })?;
            if list.cards.is_empty() {
                return Err(format!(
                    "{url}: no run cards there; write one with `llmtop bench --snapshot` on that machine"
                ));
            }
            if list.cards.len() > MAX_LISTED_CARDS {
                return Err(format!(
                    "{url}: lists {} run cards, more than {MAX_LISTED_CARDS}; name the cards to compare by their URLs",
                    list.cards.len()
                ));
            }
            list.cards.iter().map(|c| card(&c.url)).collect()
        }
        p => Ok(vec![card(p)?]),
    }
}

/// One energy channel as the host reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteChannel {
    pub label: String,
    pub device: String,
    pub source: String,
    pub covers: String,
    pub method: String,
    pub watts: f64,
}

/// What one scrape of a host's `/metrics` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Whole-machine power now, W, and its basis (wall, battery, platform, components).
    pub system_w: Option<(f64, String)>,
    pub channels: Vec<RemoteChannel>,
    /// (device label, °C).
    pub temps: Vec<(String, f64)>,
    /// (device label, RPM).
    pub fans: Vec<(String, f64)>,
    /// The streaming reply's rate (0 when idle).
    pub tok_s: Option<f64>,
    /// Whole-machine joules since the host's llmtop started.
    pub energy_j: Option<f64>,
    /// Tokens generated: the in-process engine's plus every proxied request's.
    pub tokens: f64,
    /// Electricity cost since start, with currency and region.
    pub cost: Option<(f64, String, String)>,
    pub version: Option<String>,
    pub model: Option<String>,
}

/// Parse llmtop's exposition (label values unescaped); families it does not know are
/// ignored.
pub fn parse(text: &str) -> Result<Scrape, String> {
    let exp = exposition::parse(text)
        .map_err(|why| format!("{why}; is this an llmtop endpoint (llmtop serve)?"))?;
    let mut s = Scrape::default();
    let name = |m: &Series| {
        let (d, lb) = (m.label("device"), m.label("label"));
        if lb.is_empty() || lb == d {
            d.to_string()
        } else {
            format!("{d} {lb}")
        }
    };
    for m in exp.series.iter().filter(|m| m.value.is_finite()) {
        let (v, l) = (m.value, |k: &str| m.label(k).to_string());
        match m.name.as_str() {
            "llmtop_system_power_watts" => s.system_w = Some((v, l("basis"))),
            "llmtop_power_watts" => s.channels.push(RemoteChannel {
                label: l("label"),
                device: l("device"),
                source: l("source"),
                covers: l("covers"),
                method: l("method"),
                watts: v,
            }),
            "llmtop_temperature_celsius" => s.temps.push((name(m), v)),
            "llmtop_fan_rpm" => s.fans.push((name(m), v)),
            "llmtop_generation_tokens_per_second" => s.tok_s = Some(v),
            "llmtop_system_energy_joules_total" => s.energy_j = Some(v),
            "llmtop_tokens_generated_total" => s.tokens += v,
            "llmtop_model_tokens_total" if m.label("kind") == "generated" => s.tokens += v,
            "llmtop_electricity_cost_total" => s.cost = Some((v, l("currency"), l("region"))),
            "llmtop_build_info" => s.version = Some(l("version")),
            "llmtop_engine_info" => s.model = Some(l("model")),
            _ => {}
        }
    }
    if s.version.is_none() && s.system_w.is_none() && s.energy_j.is_none() {
        return Err("no llmtop metrics in the answer; is this an llmtop endpoint?".into());
    }
    Ok(s)
}

/// Where a host stands.
#[derive(Debug, Clone, PartialEq)]
pub enum HostStatus {
    /// Not answered yet.
    Waiting,
    Up,
    /// The last scrape failed: why, in one line.
    Down(String),
}

/// A host followed over time: its latest scrape and a minute of counters for the rates.
#[derive(Debug, Clone)]
pub struct RemoteHost {
    pub url: String,
    pub status: HostStatus,
    pub last: Option<Scrape>,
    /// (t, whole-machine J, tokens, cost) per scrape, the last [`RATE_WINDOW_S`].
    counters: VecDeque<(f64, f64, f64, f64)>,
    /// (t, W, tok/s) per scrape, for the charts (the last ten minutes).
    pub history: VecDeque<(f64, f64, f64)>,
}

/// How long the charts look back, seconds.
pub const HISTORY_S: f64 = 600.0;

impl RemoteHost {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            status: HostStatus::Waiting,
            last: None,
            counters: VecDeque::new(),
            history: VecDeque::new(),
        }
    }

    /// Fold one scrape's outcome in, at time `t` (seconds, monotonic).
    pub fn apply(&mut self, t: f64, outcome: Result<Scrape, String>) {
        match outcome {
            Ok(s) => {
                if let Some(j) = s.energy_j {
                    let cost = s.cost.as_ref().map_or(0.0, |c| c.0);
                    // A restarted llmtop starts its counters at 0 again: start over.
                    if self
                        .counters
                        .back()
                        .is_some_and(|b| j < b.1 || s.tokens < b.2)
                    {
                        self.counters.clear();
                    }
                    self.counters.push_back((t, j, s.tokens, cost));
                    while self
                        .counters
                        .front()
                        .is_some_and(|f| t - f.0 > RATE_WINDOW_S)
                    {
                        self.counters.pop_front();
                    }
                }
                let w = s.system_w.as_ref().map_or(f64::NAN, |p| p.0);
                self.history.push_back((t, w, s.tok_s.unwrap_or(0.0)));
                while self.history.front().is_some_and(|f| t - f.0 > HISTORY_S) {
                    self.history.pop_front();
                }
                self.status = HostStatus::Up;
                self.last = Some(s);
            }
            Err(why) => self.status = HostStatus::Down(why),
        }
    }

    /// (seconds, J, tokens, cost) between the first and last scrape of the window.
    fn deltas(&self) -> Option<(f64, f64, f64, f64)> {
        let (a, b) = (self.counters.front()?, self.counters.back()?);
        let dt = b.0 - a.0;
        (dt > 0.0).then_some((dt, b.1 - a.1, b.2 - a.2, b.3 - a.3))
    }

    /// Generated tokens per second over the window.
    pub fn tok_s(&self) -> Option<f64> {
        self.deltas().map(|(dt, _, n, _)| n / dt)
    }

    /// Whole-machine joules per generated token over the window; `None` while none were.
    pub fn j_per_token(&self) -> Option<f64> {
        self.deltas()
            .and_then(|(_, j, n, _)| (n > 0.0).then(|| j / n))
    }

    /// Electricity cost per hour over the window, in the host's currency.
    pub fn cost_per_hour(&self) -> Option<(f64, String)> {
        let currency = self.last.as_ref()?.cost.as_ref()?.1.clone();
        self.deltas()
            .map(|(dt, _, _, c)| (c / dt * 3600.0, currency))
    }

    /// The hottest sensor now.
    pub fn hottest(&self) -> Option<(String, f64)> {
        self.last
            .as_ref()?
            .temps
            .iter()
            .cloned()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}
