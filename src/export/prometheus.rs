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
use super::server::{Handler, HttpServer, Reply, ServerError};
use crate::accounting::ledger::{Ledger, TotalPower, Totals};
use crate::accounting::pricing::Tariff;
use crate::engine::ModelInfo;
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
    system: Totals,
    system_power: Option<TotalPower>,
    tokens_generated: u64,
    tok_s: f64,
    tariff: Option<Tariff>,
    samples: u64,
    /// Labels of `llmtop_engine_info`, once the model has loaded.
    engine: Option<String>,
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
            system: Totals::default(),
            system_power: None,
            tokens_generated: 0,
            tok_s: 0.0,
            tariff,
            samples: 0,
            engine: None,
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
        self.energy = ledger
            .channels()
            .into_iter()
            .map(|c| {
                let method = match c.method {
                    Method::Counter => "counter",
                    Method::Measured => "integrated",
                    Method::Estimated => "estimated",
                };
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
    /// Bind `addr` (e.g. "127.0.0.1:9464", or port 0 for any) and serve `state`.
    pub fn start(addr: &str, state: Arc<Mutex<MetricsState>>) -> Result<Self, MetricsError> {
        Self::start_with_cards(addr, state, None)
    }

    /// As [`MetricsServer::start`], and the run cards in `cards` under `/runcards/`.
    pub fn start_with_cards(
        addr: &str,
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
        Ok(Self(HttpServer::start(addr, handler)?))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
}
