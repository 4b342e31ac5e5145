//! Prometheus export: sensor samples and token counts folded into a small state, served as the
//! text exposition format (version 0.0.4) on `GET /metrics` by a tiny std-only HTTP server.
//!
//! Names follow Prometheus conventions: base units (`_watts`, `_joules_total`, `_celsius`,
//! `_ratio`), counters end in `_total`. Energy counters are built from deltas, so they start at
//! 0 with the process and only go up, even when a hardware counter wraps or resets.

use crate::pricing::Tariff;
use crate::sensors::{Covers, Quantity, Reading, Sample};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// What a scrape shows. Feed it samples and replies; render on demand.
#[derive(Debug, Clone)]
pub struct MetricsState {
    power_w: BTreeMap<Channel, (f64, String)>,
    temps_c: BTreeMap<Channel, f64>,
    fans_rpm: BTreeMap<Channel, f64>,
    fans_ratio: BTreeMap<Channel, f64>,
    util_ratio: BTreeMap<Channel, f64>,
    /// Counter deltas summed since start, J.
    energy_counter_j: BTreeMap<Channel, f64>,
    /// Power integrated over time (trapezoid) since start, J.
    energy_integrated_j: BTreeMap<Channel, f64>,
    last_counter: BTreeMap<String, f64>,
    last_power: BTreeMap<String, (f64, f64)>,
    tokens_generated: u64,
    tok_s: f64,
    system_energy_j: f64,
    tariff: Option<Tariff>,
    cost: f64,
    co2_g: f64,
    samples: u64,
}

impl MetricsState {
    /// `tariff` prices the system energy (`None`: no cost metric).
    pub fn new(tariff: Option<Tariff>) -> Self {
        Self {
            power_w: BTreeMap::new(),
            temps_c: BTreeMap::new(),
            fans_rpm: BTreeMap::new(),
            fans_ratio: BTreeMap::new(),
            util_ratio: BTreeMap::new(),
            energy_counter_j: BTreeMap::new(),
            energy_integrated_j: BTreeMap::new(),
            last_counter: BTreeMap::new(),
            last_power: BTreeMap::new(),
            tokens_generated: 0,
            tok_s: 0.0,
            system_energy_j: 0.0,
            tariff,
            cost: 0.0,
            co2_g: 0.0,
            samples: 0,
        }
    }

    /// Fold one sampler tick in. Cost is priced at `now` (the tariff's local hour).
    pub fn apply_sample(&mut self, s: &Sample, now: jiff::Timestamp) {
        self.samples += 1;
        // Energy this tick by what it covers, from counters and from integrated power.
        let mut by_counter: HashMap<Covers, f64> = HashMap::new();
        let mut by_power: HashMap<Covers, f64> = HashMap::new();
        for r in &s.readings {
            let ch = Channel::of(r);
            let Some(v) = r.value.filter(|v| v.is_finite()) else {
                continue;
            };
            match r.quantity {
                Quantity::Power => {
                    let method = snake(&r.method);
                    self.power_w.insert(ch.clone(), (v, method));
                    if let Some((t0, p0)) = self.last_power.insert(r.id.clone(), (s.t, v))
                        && s.t > t0
                    {
                        let j = (p0 + v) / 2.0 * (s.t - t0);
                        *self.energy_integrated_j.entry(ch).or_default() += j;
                        *by_power.entry(r.covers).or_default() += j;
                    }
                }
                Quantity::Energy => {
                    let prev = self.last_counter.insert(r.id.clone(), v);
                    let total = self.energy_counter_j.entry(ch).or_default();
                    // A drop means the counter wrapped or reset: skip that interval rather
                    // than count a huge or negative amount.
                    if let Some(p) = prev
                        && v >= p
                    {
                        *total += v - p;
                        *by_counter.entry(r.covers).or_default() += v - p;
                    }
                }
                Quantity::Temperature => {
                    self.temps_c.insert(ch, v);
                }
                Quantity::FanRpm => {
                    self.fans_rpm.insert(ch, v);
                }
                Quantity::FanPercent => {
                    self.fans_ratio.insert(ch, v / 100.0);
                }
                Quantity::Utilization => {
                    self.util_ratio.insert(ch, v / 100.0);
                }
                _ => {}
            }
        }
        let j = system_energy(&by_counter, &by_power);
        self.system_energy_j += j;
        if let Some(t) = &self.tariff {
            self.cost += t.cost(j, now);
            self.co2_g += t.co2_g(j).unwrap_or(0.0);
        }
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
            self.power_w
                .iter()
                .map(|(c, (v, m))| (labels(c, Some(m)), *v)),
        );
        family(
            &mut o,
            "llmtop_energy_joules_total",
            "counter",
            "Energy since llmtop started, from hardware energy counters (method=\"counter\") or power integrated over time (method=\"integrated\"). Do not add wall, platform and component channels together.",
            self.energy_counter_j
                .iter()
                .map(|(c, v)| (labels(c, Some("counter")), *v))
                .chain(
                    self.energy_integrated_j
                        .iter()
                        .map(|(c, v)| (labels(c, Some("integrated")), *v)),
                ),
        );
        family(
            &mut o,
            "llmtop_system_energy_joules_total",
            "counter",
            "Energy of the whole machine since llmtop started: wall, else battery, else platform, else the sum of components.",
            std::iter::once((String::new(), self.system_energy_j)),
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
                std::iter::once((l.clone(), self.cost)),
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
                    std::iter::once((format!("{{region=\"{}\"}}", escape(&t.label)), self.co2_g)),
                );
            }
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

/// Whole-machine energy of one tick, without double counting (SENSORS.md): a wall plug wins,
/// then the battery, then RAPL psys (platform), else GPU board + CPU package + DRAM. Counters
/// win over integrated power for the same part.
fn system_energy(counter: &HashMap<Covers, f64>, power: &HashMap<Covers, f64>) -> f64 {
    let part = |c: Covers| counter.get(&c).or_else(|| power.get(&c)).copied();
    for whole in [Covers::Wall, Covers::Battery, Covers::Platform] {
        if let Some(j) = part(whole) {
            return j;
        }
    }
    [Covers::GpuBoard, Covers::CpuPackage, Covers::Dram]
        .into_iter()
        .filter_map(part)
        .sum()
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

/// `llmtop serve`: serve metrics from `samples` until the stream ends.
pub fn serve(
    args: &crate::cli::ServeArgs,
    cfg: &crate::config::RawConfig,
    mut samples: tokio::sync::mpsc::UnboundedReceiver<Sample>,
) -> anyhow::Result<()> {
    let tariff = Tariff::from_config(&cfg.pricing)?;
    let state = Arc::new(Mutex::new(MetricsState::new(Some(tariff))));
    let server = MetricsServer::start(&args.metrics_addr, state.clone())?;
    eprintln!(
        "llmtop: serving Prometheus metrics on http://{}/metrics (Ctrl-C to stop)",
        server.local_addr()
    );
    while let Some(sample) = samples.blocking_recv() {
        let now = jiff::Timestamp::now();
        match state.lock() {
            Ok(mut s) => s.apply_sample(&sample, now),
            Err(poisoned) => poisoned.into_inner().apply_sample(&sample, now),
        }
    }
    drop(server);
    Ok(())
}

/// The `serve` dispatch: discover this machine's sensors and serve what they read.
pub fn run(args: &crate::cli::ServeArgs, cfg: &crate::config::RawConfig) -> anyhow::Result<()> {
    let section = args
        .sensors
        .apply(&cfg.sensors)
        .map_err(anyhow::Error::msg)?;
    let found = crate::sensors::discover(&section);
    let (tx, samples) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    // The sampler's threads hold the sender and run for the life of the process.
    let _sampler = crate::sensors::sampler::Sampler::spawn(found.sensors, section.rate_hz, tx);
    serve(args, cfg, samples)
}
