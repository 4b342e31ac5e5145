//! Prometheus endpoint: start the real server on loopback, scrape it over TCP, parse the text
//! format and check the values against hand-computed ones.

use jiff::tz::TimeZone;
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::export::prometheus::{MetricsServer, MetricsState};
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

fn reading(
    id: &str,
    device: &str,
    quantity: Quantity,
    value: f64,
    source: Source,
    covers: Covers,
    method: Method,
) -> Reading {
    Reading {
        id: id.into(),
        device: device.into(),
        label: id.rsplit(':').next().unwrap_or(id).into(),
        quantity,
        value: Some(value),
        limit: None,
        source,
        covers,
        method,
        rejected: None,
        via: None,
    }
}

/// GPU power (no counter), CPU energy counter, a temperature, fans.
fn sample(t: f64, gpu_w: f64, cpu_j: f64, temp: f64) -> Sample {
    Sample {
        t,
        readings: vec![
            reading(
                "nvml:0:power",
                "RTX \"4090\"\nx\\y",
                Quantity::Power,
                gpu_w,
                Source::Nvml,
                Covers::GpuBoard,
                Method::Measured,
            ),
            reading(
                "rapl:package-0:energy",
                "rapl",
                Quantity::Energy,
                cpu_j,
                Source::Rapl,
                Covers::CpuPackage,
                Method::Counter,
            ),
            reading(
                "hwmon:coretemp:temp1",
                "coretemp",
                Quantity::Temperature,
                temp,
                Source::Hwmon,
                Covers::CpuPackage,
                Method::Measured,
            ),
            reading(
                "hwmon:nct6775:fan2",
                "nct6775",
                Quantity::FanRpm,
                1200.0 + t * 100.0,
                Source::Hwmon,
                Covers::Other,
                Method::Measured,
            ),
            reading(
                "nvml:0:fan0",
                "RTX",
                Quantity::FanPercent,
                45.0,
                Source::Nvml,
                Covers::GpuBoard,
                Method::Measured,
            ),
            Reading {
                value: None,
                ..reading(
                    "hwmon:broken:temp9",
                    "broken",
                    Quantity::Temperature,
                    0.0,
                    Source::Hwmon,
                    Covers::Other,
                    Method::Measured,
                )
            },
        ],
    }
}

type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parse the Prometheus text format strictly enough to catch mistakes.
fn parse(text: &str) -> Series {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut out = Series::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(valid_name(name), "bad name {name}");
            helps.insert(name.into(), help.into());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            assert!(helps.contains_key(name), "HELP before TYPE for {name}");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {name}"
            );
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else {
            let (name_labels, value) = line.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match name_labels.find('{') {
                Some(i) => (&name_labels[..i], parse_labels(&name_labels[i..])),
                None => (name_labels, BTreeMap::new()),
            };
            assert!(valid_name(name), "bad metric name {name:?}");
            assert!(types.contains_key(name), "sample before TYPE: {name}");
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
            };
            assert!(
                out.insert((name.into(), labels), v).is_none(),
                "duplicate series {line}"
            );
        }
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .expect("braces");
    let mut map = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert!(
            valid_name(&name) && !name.contains(':'),
            "label name {name}"
        );
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    other => panic!("bad escape {other:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        map.insert(name, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    map
}

fn get(s: &Series, name: &str, want: &[(&str, &str)]) -> f64 {
    let hits: Vec<f64> = s
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(hits.len(), 1, "{name} {want:?}: {hits:?}");
    hits[0]
}

fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case("content-length").then_some(v)
        })
        .expect("content length")
        .parse()
        .expect("number");
    assert_eq!(len, body.len());
    (head.to_string(), body.to_string())
}

/// What the shell does with each sample: the ledger first, then the exporter reads it.
fn feed(st: &mut MetricsState, ledger: &mut Ledger, s: &Sample) {
    ledger.push(s);
    st.apply_sample(s);
    st.apply_ledger(ledger);
}

fn st_tariff() -> Tariff {
    Tariff::preset("DE")
        .expect("DE")
        .with_time_zone(TimeZone::UTC)
}

#[test]
fn scrape_the_real_endpoint() {
    let tariff = st_tariff();
    let state = Arc::new(Mutex::new(MetricsState::new(Some(tariff))));
    let server = MetricsServer::start("127.0.0.1:0", state.clone()).expect("bind");
    let now = jiff::Timestamp::from_second(1_750_000_000).expect("time");
    {
        let mut st = state.lock().expect("lock");
        let mut ledger = Ledger::new().priced(st_tariff(), now);
        feed(&mut st, &mut ledger, &sample(0.0, 100.0, 1000.0, 55.5));
        feed(&mut st, &mut ledger, &sample(1.0, 200.0, 1030.0, 60.0));
        // The counter drops (wrap or reset): that interval is skipped, never negative.
        feed(&mut st, &mut ledger, &sample(2.0, 200.0, 5.0, 61.0));
        feed(&mut st, &mut ledger, &sample(3.0, 100.0, 25.0, 58.25));
        st.record_reply(42, 12.5);
        st.record_reply(8, 20.0);
    }
    // What the ledger says of each channel's band and the total's, to hold the gauges to.
    let (gpu_band, cpu_band, system_band) = {
        let mut ledger = Ledger::new();
        for s in [
            sample(0.0, 100.0, 1000.0, 55.5),
            sample(1.0, 200.0, 1030.0, 60.0),
            sample(2.0, 200.0, 5.0, 61.0),
            sample(3.0, 100.0, 25.0, 58.25),
        ] {
            ledger.push(&s);
        }
        let band = |id: &str| {
            ledger
                .channels()
                .into_iter()
                .find(|c| c.id == id)
                .and_then(|c| c.band)
                .expect("a band")
        };
        (
            band("nvml:0:power"),
            band("rapl:package-0:energy"),
            ledger.totals().band.expect("a total band"),
        )
    };
    let (head, body) = scrape(server.local_addr(), "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let s = parse(&body);

    // GPU power integrated: (100+200)/2 + 200 + (200+100)/2 = 500 J.
    let gpu = [("id", "nvml:0:power"), ("method", "integrated")];
    assert_eq!(get(&s, "llmtop_energy_joules_total", &gpu), 500.0);
    // The device name came through the escaping intact.
    let gpu_labels = s
        .keys()
        .find(|(n, l)| n == "llmtop_power_watts" && l["id"] == "nvml:0:power")
        .map(|(_, l)| l.clone())
        .expect("gpu power");
    assert_eq!(gpu_labels["device"], "RTX \"4090\"\nx\\y");
    assert_eq!(gpu_labels["covers"], "gpu_board");
    assert_eq!(
        get(&s, "llmtop_power_watts", &[("id", "nvml:0:power")]),
        100.0
    );
    // CPU counter: +30, skip the drop, +20 = 50 J.
    let cpu = [("id", "rapl:package-0:energy"), ("method", "counter")];
    assert_eq!(get(&s, "llmtop_energy_joules_total", &cpu), 50.0);
    // System = components (no wall plug): 500 + 50 J.
    assert_eq!(get(&s, "llmtop_system_energy_joules_total", &[]), 550.0);
    let cost = get(
        &s,
        "llmtop_electricity_cost_total",
        &[("region", "DE"), ("currency", "EUR")],
    );
    assert!((cost - 550.0 / 3.6e6 * 0.38).abs() < 1e-15, "{cost}");
    // Error bands, as fractions of the joules above them: the RAPL counter's is its method's
    // ±5 % and a millisecond step at each edge; the GPU's 1 s average adds the power it missed
    // between readings and its lag; the total adds the two linearly, in joules.
    let bound = |name: &str, labels: &[(&str, &str)], side: &str| {
        let mut l = labels.to_vec();
        l.push(("bound", side));
        get(&s, name, &l)
    };
    let unc = "llmtop_energy_relative_uncertainty";
    let (cpu_lo, cpu_hi) = (bound(unc, &cpu, "lower"), bound(unc, &cpu, "upper"));
    assert_eq!((cpu_lo, cpu_hi), (cpu_band.lo, cpu_band.hi));
    assert!((-0.052..=-0.05).contains(&cpu_lo), "{cpu_lo}");
    assert!((0.05..=0.052).contains(&cpu_hi), "{cpu_hi}");
    let (gpu_lo, gpu_hi) = (bound(unc, &gpu, "lower"), bound(unc, &gpu, "upper"));
    assert_eq!((gpu_lo, gpu_hi), (gpu_band.lo, gpu_band.hi));
    assert!(gpu_hi > 0.05 && gpu_lo < -0.05, "{gpu_lo} {gpu_hi}");
    let sys = "llmtop_system_energy_relative_uncertainty";
    let (sys_lo, sys_hi) = (bound(sys, &[], "lower"), bound(sys, &[], "upper"));
    assert_eq!((sys_lo, sys_hi), (system_band.lo, system_band.hi));
    assert!(
        (sys_hi * 550.0 - (gpu_hi * 500.0 + cpu_hi * 50.0)).abs() < 1e-6,
        "{sys_hi} from {gpu_hi} and {cpu_hi}"
    );
    assert!(
        (sys_lo * 550.0 - (gpu_lo * 500.0 + cpu_lo * 50.0)).abs() < 1e-6,
        "{sys_lo} from {gpu_lo} and {cpu_lo}"
    );
    let co2 = get(&s, "llmtop_co2_grams_total", &[("region", "DE")]);
    assert!((co2 - 550.0 / 3.6e6 * 381.0).abs() < 1e-12, "{co2}");
    let price = get(
        &s,
        "llmtop_electricity_price_per_joule",
        &[("region", "DE")],
    );
    assert!((price - 0.38 / 3.6e6).abs() < 1e-18, "{price}");
    let build = s
        .keys()
        .find(|(n, _)| n == "llmtop_build_info")
        .map(|(_, l)| l.clone())
        .expect("build info");
    assert_eq!(build["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(build["features"], "");
    assert_eq!(
        get(
            &s,
            "llmtop_temperature_celsius",
            &[("id", "hwmon:coretemp:temp1")]
        ),
        58.25
    );
    assert_eq!(
        get(&s, "llmtop_fan_rpm", &[("id", "hwmon:nct6775:fan2")]),
        1500.0
    );
    assert_eq!(
        get(&s, "llmtop_fan_speed_ratio", &[("id", "nvml:0:fan0")]),
        0.45
    );
    assert_eq!(get(&s, "llmtop_tokens_generated_total", &[]), 50.0);
    assert_eq!(get(&s, "llmtop_generation_tokens_per_second", &[]), 20.0);
    assert_eq!(get(&s, "llmtop_samples_total", &[]), 4.0);
    // An unreadable sensor is absent, not zero.
    assert!(!body.contains("hwmon:broken:temp9"), "{body}");

    let (head, _) = scrape(server.local_addr(), "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    drop(server);
}

#[test]
fn wall_plug_wins_over_components() {
    let tariff = Tariff::preset("US").expect("US");
    let mut st = MetricsState::new(Some(tariff.clone()));
    let now = jiff::Timestamp::from_second(1_750_000_000).expect("time");
    let mut ledger = Ledger::new().priced(tariff, now);
    let tick = |t: f64, wall_j: f64, cpu_j: f64| Sample {
        t,
        readings: vec![
            reading(
                "plug:shelly:energy",
                "shelly",
                Quantity::Energy,
                wall_j,
                Source::Plug,
                Covers::Wall,
                Method::Counter,
            ),
            reading(
                "rapl:package-0:energy",
                "rapl",
                Quantity::Energy,
                cpu_j,
                Source::Rapl,
                Covers::CpuPackage,
                Method::Counter,
            ),
        ],
    };
    feed(&mut st, &mut ledger, &tick(0.0, 7200.0, 100.0));
    feed(&mut st, &mut ledger, &tick(1.0, 7290.0, 130.0));
    let s = parse(&st.render());
    // The wall saw 90 J (which includes the CPU's 30 J): system energy is 90, not 120.
    assert_eq!(get(&s, "llmtop_system_energy_joules_total", &[]), 90.0);
    let cost = get(&s, "llmtop_electricity_cost_total", &[("currency", "USD")]);
    assert!((cost - 90.0 / 3.6e6 * 0.175).abs() < 1e-15);
}

#[test]
fn busy_address_is_one_clear_error() {
    let state = Arc::new(Mutex::new(MetricsState::new(None)));
    let first = MetricsServer::start("127.0.0.1:0", state.clone()).expect("bind");
    let addr = first.local_addr().to_string();
    let e = MetricsServer::start(&addr, state)
        .err()
        .expect("address in use");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot serve metrics on {addr}: ")),
        "{msg}"
    );
    assert!(msg.ends_with("pick a free address with --metrics-addr, e.g. 127.0.0.1:9464"));
}

#[test]
fn serve_subcommand_answers_on_its_address() {
    // The real binary: `llmtop serve` on a free port, scraped once, then killed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[pricing]\nregion = \"FR\"\n").expect("config");
    /// Kills the server whatever happens, so a failed assertion leaves no process behind.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reap(
        std::process::Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args(["--config"])
            .arg(&cfg)
            .args(["serve", "--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("LLMTOP_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut body = None;
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            body = Some(scrape(addr, "/metrics").1);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(child);
    let s = parse(&body.expect("server came up"));
    let price = get(
        &s,
        "llmtop_electricity_price_per_joule",
        &[("region", "FR"), ("currency", "EUR")],
    );
    assert!((price * 3.6e6 - 0.24).abs() < 1e-12, "{price}");
    assert_eq!(get(&s, "llmtop_tokens_generated_total", &[]), 0.0);
}

/// Samples as the sampler sends them: the local sensors on one thread at 4 Hz, the plug on
/// its own at 1 Hz, each in a sample of its own.
#[test]
fn a_plug_in_samples_of_its_own_is_the_system_energy_never_added_to_the_parts() {
    let tariff = Tariff::preset("US").expect("US");
    let mut st = MetricsState::new(Some(tariff.clone()));
    let now = jiff::Timestamp::from_second(1_750_000_000).expect("time");
    // Discovery found the plug, so the ledger waits for it (as `accounting::ledger_for` does).
    let mut ledger = Ledger::new()
        .priced(tariff, now)
        .expecting(Some(llmtop::accounting::energy::TotalBasis::Wall));
    for i in 0..=40 {
        let t = f64::from(i) * 0.25;
        let local = Sample {
            t,
            readings: vec![reading(
                "rapl:package-0:energy",
                "rapl",
                Quantity::Energy,
                30.0 * t,
                Source::Rapl,
                Covers::CpuPackage,
                Method::Counter,
            )],
        };
        feed(&mut st, &mut ledger, &local);
        if i % 4 == 2 {
            let plug = Sample {
                t: t + 0.01,
                readings: vec![reading(
                    "plug:shelly:energy",
                    "shelly",
                    Quantity::Energy,
                    90.0 * (t + 0.01),
                    Source::Plug,
                    Covers::Wall,
                    Method::Counter,
                )],
            };
            feed(&mut st, &mut ledger, &plug);
        }
    }
    let s = parse(&st.render());
    // 90 W at the wall from its first to its last reading (0.51 to 9.51 s): 810 J; the CPU's
    // 30 W is inside it, not on top.
    let system = get(&s, "llmtop_system_energy_joules_total", &[]);
    assert!((system - 810.0).abs() < 1e-6, "{system}");
    assert_eq!(
        get(&s, "llmtop_system_power_watts", &[("basis", "wall")]),
        90.0
    );
}

#[test]
fn per_channel_counters_survive_wraps_of_two_packages() {
    let mut st = MetricsState::new(None);
    let mut ledger = Ledger::new();
    // Package 0 at 25 W wraps at 20 J, package 1 at 7 W at 4 J: each wraps on its own ticks.
    let wrap = |j: f64, max: f64| j % max;
    for i in 0..=20 {
        let t = f64::from(i) * 0.25;
        let mut a = reading(
            "rapl:package-0:energy",
            "rapl",
            Quantity::Energy,
            wrap(25.0 * t, 20.0),
            Source::Rapl,
            Covers::CpuPackage,
            Method::Counter,
        );
        a.limit = Some(20.0);
        let mut b = reading(
            "rapl:package-1:energy",
            "rapl",
            Quantity::Energy,
            wrap(7.0 * t, 4.0),
            Source::Rapl,
            Covers::CpuPackage,
            Method::Counter,
        );
        b.limit = Some(4.0);
        feed(
            &mut st,
            &mut ledger,
            &Sample {
                t,
                readings: vec![a, b],
            },
        );
    }
    let s = parse(&st.render());
    let p0 = get(
        &s,
        "llmtop_energy_joules_total",
        &[("id", "rapl:package-0:energy")],
    );
    let p1 = get(
        &s,
        "llmtop_energy_joules_total",
        &[("id", "rapl:package-1:energy")],
    );
    assert!((p0 - 125.0).abs() < 1e-9, "package 0 over 5 s: {p0}");
    assert!((p1 - 35.0).abs() < 1e-9, "package 1 over 5 s: {p1}");
    assert!((get(&s, "llmtop_system_energy_joules_total", &[]) - 160.0).abs() < 1e-9);
}

#[test]
fn idle_clients_never_starve_a_scrape() {
    use std::time::{Duration, Instant};
    let state = Arc::new(Mutex::new(MetricsState::new(None)));
    let server = MetricsServer::start("127.0.0.1:0", state).expect("bind");
    let addr = server.local_addr();
    // 500 clients that connect and never send a byte (the old server served one connection at
    // a time: each idle client held every scrape up for seconds).
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let scrapes: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let (head, body) = scrape(addr, "/metrics");
                (head, body, t.elapsed())
            })
        })
        .collect();
    for s in scrapes {
        let (head, body, took) = s.join().expect("scrape thread");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.contains("llmtop_samples_total 0"), "{body}");
        // Served while the idle clients are still held (they are dropped after 2 s).
        assert!(took < Duration::from_millis(1500), "scrape took {took:?}");
    }
    // The idle ones are closed by the server once their time to send a request is up.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut first, &mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn engine_info_carries_the_settings_in_effect_once_loaded() {
    let state = Arc::new(Mutex::new(MetricsState::new(Some(st_tariff()))));
    let server = MetricsServer::start("127.0.0.1:0", state.clone()).expect("bind");
    // Before the model loads there is nothing to say about it.
    let (_, body) = scrape(server.local_addr(), "/metrics");
    assert!(!body.contains("llmtop_engine_info"), "{body}");

    let mut info = llmtop::engine::scripted::ScriptedEngine::model_info();
    info.in_effect.threads = 6;
    info.n_ctx = 3072;
    info.in_effect.gpu_layers = 31;
    info.name = "Smol \"LM\"".into();
    state.lock().expect("lock").set_engine(&info);
    let (_, body) = scrape(server.local_addr(), "/metrics");
    let s = parse(&body);
    let labels = s
        .keys()
        .find(|(n, _)| n == "llmtop_engine_info")
        .map(|(_, l)| l.clone())
        .expect("engine info");
    let want: BTreeMap<String, String> = [
        ("model", "Smol \"LM\""),
        ("quantization", "Q4_1"),
        ("threads", "6"),
        ("n_ctx", "3072"),
        ("gpu_layers", "31"),
        ("sampler", "greedy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, want);
    assert_eq!(get(&s, "llmtop_engine_info", &[("threads", "6")]), 1.0);
    assert!(body.contains("# TYPE llmtop_engine_info gauge"), "{body}");
    drop(server);
}

/// `promtool check metrics` on `text`: its complaints, empty when it has none.
fn promtool_complaints(text: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::deploy::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("exit {:?}: {said}", out.status.code())
    }
}

#[test]
fn promtool_accepts_a_live_scrape_of_serve() {
    // The real binary on a captured sysfs tree, priced (cost and CO2 counters), scraped once
    // its sensors have reported, the body checked by Prometheus's own linter.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[pricing]\nregion = \"DE\"\n").expect("config");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let tree =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/amd-desktop");
    let _child = Reap(
        std::process::Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args(["--config"])
            .arg(&cfg)
            .args(["serve", "--sysfs-root"])
            .arg(&tree)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("LLMTOP_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut body = String::new();
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            body = scrape(addr, "/metrics").1;
            // The error bands come once some energy has been counted.
            if body.contains("llmtop_power_watts{")
                && body.contains("llmtop_temperature_celsius{")
                && body.contains("llmtop_system_energy_relative_uncertainty{")
            {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for family in [
        "llmtop_power_watts{",
        "llmtop_energy_joules_total{",
        "llmtop_temperature_celsius{",
        "llmtop_electricity_cost_total{",
        "llmtop_co2_grams_total{",
        "llmtop_build_info{",
        "llmtop_energy_relative_uncertainty{",
        "llmtop_system_energy_relative_uncertainty{",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert_eq!(promtool_complaints(&body), "", "{body}");
}

#[test]
fn promtool_accepts_label_values_that_need_escaping() {
    // Quotes, a backslash and a newline in a device name, and an engine whose model name has
    // them too: escaped per the text format, or promtool refuses the whole scrape.
    let mut st = MetricsState::new(Some(st_tariff()));
    let mut ledger = Ledger::new().priced(st_tariff(), jiff::Timestamp::now());
    feed(&mut st, &mut ledger, &sample(0.0, 100.0, 1000.0, 55.5));
    feed(&mut st, &mut ledger, &sample(1.0, 200.0, 1030.0, 60.0));
    let mut info = llmtop::engine::scripted::ScriptedEngine::model_info();
    info.name = "a \"b\"\\c\nd".into();
    st.set_engine(&info);
    let text = st.render();
    assert!(text.contains(r#"device="RTX \"4090\"\nx\\y""#), "{text}");
    assert!(text.contains(r#"model="a \"b\"\\c\nd""#), "{text}");
    assert_eq!(promtool_complaints(&text), "", "{text}");
    // The check can fail: a counter without _total is refused.
    assert_ne!(
        promtool_complaints("# HELP x_joules X.\n# TYPE x_joules counter\nx_joules 1\n"),
        ""
    );
}
