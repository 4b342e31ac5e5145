//! Prometheus export: sensor samples and token counts folded into a small state, served as the
//! text exposition format (version 0.0.4) on `GET /metrics` by a tiny std-only HTTP server.
//!
//! Names follow Prometheus conventions: base units (`_watts`, `_joules_total`, `_celsius`,
//! `_ratio`), counters end in `_total`. Energy counters are built from deltas, so they start at
//! 0 with the process and only go up, even when a hardware counter wraps or resets.

use crate::accounting::ledger::{Ledger, TotalPower, Totals};
use crate::accounting::pricing::Tariff;
use crate::engine::ModelInfo;
use crate::sensors::{Method, Quantity, Reading, Sample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve Prometheus metrics from the dashboard on this address, e.g. "127.0.0.1:9464".
    pub addr: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {err}; pick a free address with --metrics-addr, e.g. 127.0.0.1:9464"
    )]
    Bind { addr: String, err: std::io::Error },
}

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
                "llmtop_electricity_price_per_kwh",
                "gauge",
                "Electricity price now, per kWh, in the labelled currency.",
                std::iter::once((l.clone(), t.price_at(jiff::Timestamp::now()))),
            );
            if t.co2_g_per_kwh.is_some() {
                family(
                    &mut o,
                    "llmtop_co2e_grams_total",
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

/// A running metrics endpoint. Dropping it stops the server.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Bind `addr` (e.g. "127.0.0.1:9464", or port 0 for any) and serve `state` on its own thread.
    pub fn start(addr: &str, state: Arc<Mutex<MetricsState>>) -> Result<Self, MetricsError> {
        let bind_err = |err| MetricsError::Bind {
            addr: addr.into(),
            err,
        };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("llmtop-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = conn {
                        // One scrape at a time is plenty for Prometheus; errors only lose that scrape.
                        let _ = handle(stream, &state);
                    }
                }
            })
            .map_err(bind_err)?;
        Ok(Self {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(stream: TcpStream, state: &Mutex<MetricsState>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers (up to the blank line); we need none of them.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            let body = match state.lock() {
                Ok(s) => s.render(),
                Err(poisoned) => poisoned.into_inner().render(),
            };
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "llmtop metrics: GET /metrics\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
