//! Prometheus export: sensor samples, the ledger's figures and token counts folded into a small
//! state, served as the text exposition format (version 0.0.4) on `GET /metrics`.
//!
//! Names follow Prometheus conventions: base units (`_watts`, `_joules_total`, `_seconds`,
//! `_celsius`, `_grams`, `_ratio`, prices per joule), counters end in `_total`. Labels: `source`
//! (where a figure is read), `covers` (what it measures), `method` (counter, integrated,
//! estimated); the per-model request metrics add `model` and `backend`. No `host` label:
//! Prometheus adds the target's own labels. Energy counters are built from deltas, so they
//! start at 0 with the process and only go up, even when a hardware counter wraps or resets.
//! deploy/'s rules and dashboard are checked against a render of this state plus
//! [`REQUEST_METRIC_NAMES`].

use super::runcards::Shelf;
use super::server::{Handler, METRICS_ADDR, Reply, ServerError};
use crate::accounting::ledger::{Ledger, TotalPower, Totals};
use crate::accounting::pricing::Tariff;
use crate::accounting::uncertainty::Band;
use crate::engine::ModelInfo;
use crate::net::server::{HttpServer, Listen};
use crate::sensors::host::BuildInfo;
use crate::sensors::{Method, Quantity, Reading, Sample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve Prometheus metrics from the dashboard on this address, e.g. "127.0.0.1:9464".
    pub addr: Option<String>,
}

/// The per-model request metrics (recorded by `llmtop proxy`), by the names agreed for them;
/// histograms add `_bucket`, `_sum` and `_count` series.
pub const REQUEST_METRIC_NAMES: [&str; 7] = [
    "llmtop_requests_total",
    "llmtop_model_tokens_total",
    "llmtop_model_energy_joules_total",
    "llmtop_model_cost_total",
    "llmtop_model_co2_grams_total",
    "llmtop_request_ttft_seconds",
    "llmtop_request_generation_tokens_per_second",
];

/// Why the endpoint could not start: one line with the fix.
pub type MetricsError = ServerError;

/// Identity labels of one channel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Channel {
    id: String,
    device: String,
    label: String,
    source: String,
    covers: String,
}

impl Channel {
    fn of(r: &Reading) -> Self {
        Self {
            id: r.id.clone(),
            device: r.device.clone(),
            label: r.label.clone(),
            source: snake(&r.source),
            covers: snake(&r.covers),
        }
    }
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// What a scrape shows. Feed it samples (temperatures, fans, utilisation), the ledger (every
/// energy, power, cost and CO2 figure) and replies; render on demand.
#[derive(Debug, Clone)]
pub struct MetricsState {
    temps_c: BTreeMap<Channel, f64>,
    fans_rpm: BTreeMap<Channel, f64>,
    fans_ratio: BTreeMap<Channel, f64>,
    util_ratio: BTreeMap<Channel, f64>,
    /// Per energy channel from the ledger: power now (W), method, joules since start.
    energy: Vec<(Channel, &'static str, Option<f64>, f64)>,
    /// Per energy channel, the error band of its joules since start.
    bands: Vec<(Channel, &'static str, Band)>,
    system: Totals,
    system_power: Option<TotalPower>,
    tokens_generated: u64,
    tok_s: f64,
    tariff: Option<Tariff>,
    samples: u64,
    /// Labels of `llmtop_engine_info`, once the model has loaded.
    engine: Option<String>,
    /// Per-model request figures from the proxy.
    requests: RequestFamilies,
}

/// One proxied request, settled: what [`MetricsState::record_request`] counts. Strings are
/// the server's (escaped when rendered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestMetrics {
    pub model: String,
    /// "ollama", "llama-server", "lm-studio", "openai-compatible" or "unknown".
    pub backend: String,
    /// The HTTP status the client got, e.g. "200", "502".
    pub status: String,
    /// Prompt tokens the server computed (cached ones excluded).
    pub prompt_tokens: u64,
    /// Prompt tokens it reused from its cache.
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    /// Attributed energy (the split of the ledger's energy between overlapping requests).
    pub energy_j: Option<f64>,
    /// In the tariff's currency (the state's tariff labels it).
    pub cost: Option<f64>,
    pub co2_g: Option<f64>,
    pub ttft_s: Option<f64>,
    pub gen_tok_s: Option<f64>,
}

/// Histogram upper bounds: time to first token, seconds.
const TTFT_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Histogram upper bounds: generation rate, tokens per second.
const TOK_S_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// (model, backend) and the rest of a series' labels.
type ModelKey = (String, String);

#[derive(Debug, Clone, Default)]
struct RequestFamilies {
    requests: BTreeMap<(String, String, String), u64>,
    tokens: BTreeMap<(String, String, &'static str), u64>,
    energy_j: BTreeMap<ModelKey, f64>,
    cost: BTreeMap<ModelKey, f64>,
    co2_g: BTreeMap<ModelKey, f64>,
    ttft: BTreeMap<ModelKey, Histogram>,
    tok_s: BTreeMap<ModelKey, Histogram>,
}

impl MetricsState {
    /// `tariff` labels the cost the ledger computed (`None`: no cost metric).
    pub fn new(tariff: Option<Tariff>) -> Self {
        Self {
            temps_c: BTreeMap::new(),
            fans_rpm: BTreeMap::new(),
            fans_ratio: BTreeMap::new(),
            util_ratio: BTreeMap::new(),
            energy: Vec::new(),
            bands: Vec::new(),
            system: Totals::default(),
            system_power: None,
            tokens_generated: 0,
            tok_s: 0.0,
            tariff,
            samples: 0,
            engine: None,
            requests: RequestFamilies::default(),
        }
    }

    /// A proxied request was settled: count it under its model and backend.
    pub fn record_request(&mut self, m: &RequestMetrics) {
        let r = &mut self.requests;
        let key = (m.model.clone(), m.backend.clone());
        *r.requests
            .entry((m.model.clone(), m.backend.clone(), m.status.clone()))
            .or_default() += 1;
        for (kind, n) in [
            ("prompt", m.prompt_tokens),
            ("cached", m.cached_tokens),
            ("generated", m.generated_tokens),
        ] {
            *r.tokens
                .entry((m.model.clone(), m.backend.clone(), kind))
                .or_default() += n;
        }
        if let Some(j) = m.energy_j.filter(|j| j.is_finite()) {
            *r.energy_j.entry(key.clone()).or_default() += j;
        }
        if let Some(c) = m.cost.filter(|c| c.is_finite()) {
            *r.cost.entry(key.clone()).or_default() += c;
        }
        if let Some(g) = m.co2_g.filter(|g| g.is_finite()) {
            *r.co2_g.entry(key.clone()).or_default() += g;
        }
        if let Some(t) = m.ttft_s {
            r.ttft
                .entry(key.clone())
                .or_default()
                .observe(&TTFT_BUCKETS, t);
        }
        if let Some(v) = m.gen_tok_s {
            r.tok_s.entry(key).or_default().observe(&TOK_S_BUCKETS, v);
        }
    }

    /// The model loaded: its settings in effect, as the engine reported them, become the
    /// labels of `llmtop_engine_info`.
    pub fn set_engine(&mut self, info: &ModelInfo) {
        self.engine = Some(format!(
            "{{model=\"{}\",quantization=\"{}\",threads=\"{}\",n_ctx=\"{}\",gpu_layers=\"{}\",sampler=\"{}\"}}",
            escape(&info.name),
            escape(&info.quantization),
            info.in_effect.threads,
            info.n_ctx,
            info.in_effect.gpu_layers,
            escape(&info.in_effect.sampler.to_string())
        ));
    }

    /// Fold one sampler tick's temperatures, fans and utilisation in.
    pub fn apply_sample(&mut self, s: &Sample) {
        self.samples += 1;
        for r in &s.readings {
            let Some(v) = r.value.filter(|v| v.is_finite()) else {
                continue;
            };
            let map = match r.quantity {
                Quantity::Temperature => &mut self.temps_c,
                Quantity::FanRpm => &mut self.fans_rpm,
                Quantity::FanPercent => &mut self.fans_ratio,
                Quantity::Utilization => &mut self.util_ratio,
                _ => continue,
            };
            let scale = match r.quantity {
                Quantity::FanPercent | Quantity::Utilization => 0.01,
                _ => 1.0,
            };
            map.insert(Channel::of(r), v * scale);
        }
    }

    /// Take every energy figure from the ledger as it stands now.
    pub fn apply_ledger(&mut self, ledger: &Ledger) {
        let channels = ledger.channels();
        self.bands = channels
            .iter()
            .filter_map(|c| {
                let ch = Channel {
                    id: c.id.clone(),
                    device: c.device.clone(),
                    label: c.label.clone(),
                    source: snake(&c.source),
                    covers: snake(&c.covers),
                };
                Some((ch, method_name(c.method), c.band?))
            })
            .collect();
        self.energy = channels
            .into_iter()
            .map(|c| {
                let method = method_name(c.method);
                let ch = Channel {
                    id: c.id,
                    device: c.device,
                    label: c.label,
                    source: snake(&c.source),
                    covers: snake(&c.covers),
                };
                (ch, method, c.watts, c.energy_j)
            })
            .collect();
        self.system = ledger.totals();
        self.system_power = ledger.total_power();
    }

    /// A reply finished: count its tokens and keep its generation rate.
    pub fn record_reply(&mut self, generated_tokens: u64, gen_tok_s: f64) {
        self.tokens_generated += generated_tokens;
        self.tok_s = gen_tok_s;
    }

    /// Live generation rate while a reply streams (0 when idle).
    pub fn set_tok_s(&mut self, tok_s: f64) {
        self.tok_s = tok_s;
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut o = String::new();
        family(
            &mut o,
            "llmtop_power_watts",
            "gauge",
            "Power drawn now, by sensor channel.",
            self.energy
                .iter()
                .filter_map(|(c, m, w, _)| Some((labels(c, Some(m)), (*w)?))),
        );
        family(
            &mut o,
            "llmtop_energy_joules_total",
            "counter",
            "Energy since llmtop started, from hardware energy counters (method=\"counter\") or power integrated over time (method=\"integrated\"). Do not add wall, platform and component channels together.",
            self.energy
                .iter()
                .map(|(c, m, _, j)| (labels(c, Some(m)), *j)),
        );
        let bound = |l: String, side: &str| {
            let l = l.trim_end_matches('}');
            if l.is_empty() {
                format!("{{bound=\"{side}\"}}")
            } else {
                format!("{l},bound=\"{side}\"}}")
            }
        };
        family(
            &mut o,
            "llmtop_energy_relative_uncertainty",
            "gauge",
            "Where the truth of llmtop_energy_joules_total lies, as a fraction of it: between value x (1 + lower) and value x (1 + upper); the channel's method band plus what its sampling adds (README: Error bars).",
            self.bands.iter().flat_map(|(c, m, b)| {
                [
                    (bound(labels(c, Some(m)), "lower"), b.lo),
                    (bound(labels(c, Some(m)), "upper"), b.hi),
                ]
            }),
        );
        family(
            &mut o,
            "llmtop_system_energy_relative_uncertainty",
            "gauge",
            "Where the truth of llmtop_system_energy_joules_total (and of the cost and CO2 from it) lies, as a fraction of it: its sources' bands added (README: Error bars).",
            self.system.band.iter().flat_map(|b| {
                [
                    (bound(String::new(), "lower"), b.lo),
                    (bound(String::new(), "upper"), b.hi),
                ]
            }),
        );
        family(
            &mut o,
            "llmtop_system_energy_joules_total",
            "counter",
            "Energy of the whole machine since llmtop started: wall, else battery, else platform, else the sum of components.",
            std::iter::once((String::new(), self.system.energy_j)),
        );
        family(
            &mut o,
            "llmtop_system_power_watts",
            "gauge",
            "Power of the whole machine now, on the basis labelled (wall, battery, platform or components).",
            self.system_power.iter().map(|p| {
                let basis = snake(&p.basis);
                (format!("{{basis=\"{}\"}}", escape(&basis)), p.watts)
            }),
        );
        family(
            &mut o,
            "llmtop_temperature_celsius",
            "gauge",
            "Temperature now, by sensor.",
            self.temps_c.iter().map(|(c, v)| (labels(c, None), *v)),
        );
        family(
            &mut o,
            "llmtop_fan_rpm",
            "gauge",
            "Fan speed now, revolutions per minute.",
            self.fans_rpm.iter().map(|(c, v)| (labels(c, None), *v)),
        );
        family(
            &mut o,
            "llmtop_fan_speed_ratio",
            "gauge",
            "Fan speed as a fraction of its maximum (may exceed 1), where RPM is not available.",
            self.fans_ratio.iter().map(|(c, v)| (labels(c, None), *v)),
        );
        family(
            &mut o,
            "llmtop_utilization_ratio",
            "gauge",
            "Utilisation now, 0 to 1.",
            self.util_ratio.iter().map(|(c, v)| (labels(c, None), *v)),
        );
        family(
            &mut o,
            "llmtop_tokens_generated_total",
            "counter",
            "Tokens generated since llmtop started.",
            std::iter::once((String::new(), self.tokens_generated as f64)),
        );
        family(
            &mut o,
            "llmtop_generation_tokens_per_second",
            "gauge",
            "Generation rate of the reply streaming now, or of the last reply.",
            std::iter::once((String::new(), self.tok_s)),
        );
        if let Some(t) = &self.tariff {
            let l = format!(
                "{{region=\"{}\",currency=\"{}\"}}",
                escape(&t.label),
                escape(t.currency.code())
            );
            family(
                &mut o,
                "llmtop_electricity_cost_total",
                "counter",
                "Cost of the system energy since llmtop started, in the labelled currency.",
                std::iter::once((l.clone(), self.system.cost)),
            );
            family(
                &mut o,
                "llmtop_electricity_price_per_joule",
                "gauge",
                "Electricity price now, per joule (base unit; times 3.6e6 is per kWh), in the labelled currency.",
                std::iter::once((l.clone(), t.cost(1.0, jiff::Timestamp::now()))),
            );
            if t.co2_g_per_kwh.is_some() {
                family(
                    &mut o,
                    "llmtop_co2_grams_total",
                    "counter",
                    "Grid CO2e of the system energy since llmtop started, grams.",
                    std::iter::once((
                        format!("{{region=\"{}\"}}", escape(&t.label)),
                        self.system.co2_g,
                    )),
                );
            }
        }
        if let Some(labels) = &self.engine {
            family(
                &mut o,
                "llmtop_engine_info",
                "gauge",
                "The loaded model and the settings the engine runs with, as labels; the value is always 1.",
                std::iter::once((labels.clone(), 1.0)),
            );
        }
        let build = BuildInfo::current();
        family(
            &mut o,
            "llmtop_build_info",
            "gauge",
            "The llmtop build: version and Cargo features (GPU backends) compiled in, as labels; the value is always 1.",
            std::iter::once((
                format!(
                    "{{version=\"{}\",features=\"{}\"}}",
                    escape(&build.llmtop_version),
                    escape(&build.features.join(","))
                ),
                1.0,
            )),
        );
        self.render_requests(&mut o);
        family(
            &mut o,
            "llmtop_samples_total",
            "counter",
            "Sensor samples folded in since llmtop started.",
            std::iter::once((String::new(), self.samples as f64)),
        );
        o
    }
}

impl MetricsState {
    /// The per-model request families (only once a request was recorded: `llmtop serve`
    /// and the dashboard without a proxy show none).
    fn render_requests(&self, o: &mut String) {
        let r = &self.requests;
        if r.requests.is_empty() {
            return;
        }
        let mb = |m: &str, b: &str| format!("model=\"{}\",backend=\"{}\"", escape(m), escape(b));
        family(
            o,
            "llmtop_requests_total",
            "counter",
            "Requests through the proxy, by model, backend and the HTTP status the client got.",
            r.requests.iter().map(|((m, b, s), n)| {
                (
                    format!("{{{},status=\"{}\"}}", mb(m, b), escape(s)),
                    *n as f64,
                )
            }),
        );
        family(
            o,
            "llmtop_model_tokens_total",
            "counter",
            "Tokens through the proxy by model: prompt tokens the server computed (kind=\"prompt\"), prompt tokens it reused from its cache (kind=\"cached\"), generated tokens (kind=\"generated\").",
            r.tokens
                .iter()
                .map(|((m, b, k), n)| (format!("{{{},kind=\"{k}\"}}", mb(m, b)), *n as f64)),
        );
        family(
            o,
            "llmtop_model_energy_joules_total",
            "counter",
            "Energy attributed to the model's requests: each sampling interval's system energy split between the requests active in it by the tokens each processed (an attribution, not a measurement).",
            r.energy_j
                .iter()
                .map(|((m, b), j)| (format!("{{{},method=\"attributed\"}}", mb(m, b)), *j)),
        );
        if let Some(t) = &self.tariff {
            let region = escape(&t.label);
            let currency = escape(t.currency.code());
            family(
                o,
                "llmtop_model_cost_total",
                "counter",
                "Electricity cost of the energy attributed to the model's requests, in the labelled currency's main unit.",
                r.cost.iter().map(|((m, b), c)| {
                    (
                        format!(
                            "{{{},currency=\"{currency}\",region=\"{region}\"}}",
                            mb(m, b)
                        ),
                        *c,
                    )
                }),
            );
            if t.co2_g_per_kwh.is_some() {
                family(
                    o,
                    "llmtop_model_co2_grams_total",
                    "counter",
                    "Grid CO2e of the energy attributed to the model's requests, grams.",
                    r.co2_g
                        .iter()
                        .map(|((m, b), g)| (format!("{{{},region=\"{region}\"}}", mb(m, b)), *g)),
                );
            }
        }
        histogram(
            o,
            "llmtop_request_ttft_seconds",
            "Time to first token of proxied requests, seconds.",
            &TTFT_BUCKETS,
            r.ttft.iter().map(|((m, b), h)| (mb(m, b), h)),
        );
        histogram(
            o,
            "llmtop_request_generation_tokens_per_second",
            "Generation rate of proxied requests, tokens per second (the server's timings where it gives them).",
            &TOK_S_BUCKETS,
            r.tok_s.iter().map(|((m, b), h)| (mb(m, b), h)),
        );
    }
}

fn histogram<'a>(
    o: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    series: impl Iterator<Item = (String, &'a Histogram)>,
) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} histogram");
    for (labels, h) in series {
        for (b, c) in bounds.iter().zip(&h.counts) {
            let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{}\"}} {c}", value(*b));
        }
        let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(o, "{name}_sum{{{labels}}} {}", value(h.sum));
        let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count);
    }
}

fn labels(c: &Channel, method: Option<&str>) -> String {
    let mut l = format!(
        "{{id=\"{}\",device=\"{}\",label=\"{}\",source=\"{}\",covers=\"{}\"",
        escape(&c.id),
        escape(&c.device),
        escape(&c.label),
        escape(&c.source),
        escape(&c.covers)
    );
    if let Some(m) = method {
        let _ = write!(l, ",method=\"{}\"", escape(m));
    }
    l.push('}');
    l
}

/// The `method` label: how a channel's joules are taken.
fn method_name(m: Method) -> &'static str {
    match m {
        Method::Counter => "counter",
        Method::Measured => "integrated",
        Method::Estimated => "estimated",
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(
    o: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    series: impl Iterator<Item = (String, f64)>,
) {
    let _ = writeln!(
        o,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(o, "# TYPE {name} {kind}");
    for (labels, v) in series {
        let _ = writeln!(o, "{name}{labels} {}", value(v));
    }
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A running metrics endpoint (`GET /metrics`). Dropping it stops the server.
pub struct MetricsServer(HttpServer);

impl MetricsServer {
    /// Bind `addr` (e.g. "127.0.0.1:9464", or port 0 for any), given with `--metrics-addr`,
    /// and serve `state`.
    pub fn start(addr: &str, state: Arc<Mutex<MetricsState>>) -> Result<Self, MetricsError> {
        Self::start_with_cards(&Listen::parse(addr, METRICS_ADDR)?, state, None)
    }

    /// As [`MetricsServer::start`] on a checked address (its errors name the setting it came
    /// from), and the run cards in `cards` under `/runcards/`.
    pub fn start_with_cards(
        listen: &Listen,
        state: Arc<Mutex<MetricsState>>,
        cards: Option<Shelf>,
    ) -> Result<Self, MetricsError> {
        let handler: Handler = Arc::new(move |path: &str| match path {
            "/metrics" => Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: match state.lock() {
                    Ok(s) => s.render(),
                    Err(poisoned) => poisoned.into_inner().render(),
                },
            },
            "/" => Reply::text(
                200,
                if cards.is_some() {
                    "llmtop: GET /metrics, /runcards/, /runcards/latest.json\n"
                } else {
                    "llmtop metrics: GET /metrics\n"
                },
            ),
            _ => cards
                .as_ref()
                .and_then(|c| c.route(path))
                .unwrap_or_else(|| Reply::text(404, "not found\n")),
        });
        Ok(Self(super::server::start(listen, handler)?))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
}
