//! Smart plugs against a real HTTP or HTTPS server on 127.0.0.1 started by each test,
//! answering the documented JSON shapes, plus timeouts, HTTP 500, malformed JSON, a huge body
//! and untrusted certificates. Nothing else is contacted.

use llmtop::config::PlugConfig;
use llmtop::net::client::{Cause, NetError};
use llmtop::sensors::plug::{PlugError, PlugSensor};
use llmtop::sensors::{Covers, Method, Quantity, Sample, Sampler, Sensor, Source};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
enum Reply {
    Json(&'static str),
    Status(u16),
    Chunked(&'static str),
    /// Accept, read the request, never answer.
    Hang,
    /// JSON only when the Host header is exactly the listening `127.0.0.1:PORT`; else 400.
    RequireHost(&'static str),
    /// Announce a 10 MiB body, send a little over 1 MiB of it, then hold the rest back for
    /// 10 s: a client that stops at its cap answers at once, one that reads on waits.
    Huge,
}

type Log = Arc<Mutex<Vec<String>>>;

struct Server {
    url: String,
    requests: Log,
}

/// Serve `reply` to every connection, recording each request's head.
fn serve(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let url = format!("http://{addr}");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let reply = reply.clone();
            let log = Arc::clone(&log);
            let addr = addr.clone();
            std::thread::spawn(move || answer(stream, reply, &addr, &log));
        }
    });
    Server { url, requests }
}

/// Value of header `name` (any case, as HTTP allows) in a request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Read one request head from `stream`, log it, write `reply`.
fn answer<S: Read + Write>(mut stream: S, reply: Reply, addr: &str, log: &Log) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    log.lock().expect("lock").push(head.clone());
    let json = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let resp = match reply {
        Reply::Json(body) => json(body),
        Reply::RequireHost(body) => {
            if header(&head, "host").as_deref() == Some(addr) {
                json(body)
            } else {
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 10\r\n\r\nwrong Host".to_string()
            }
        }
        Reply::Huge => {
            const TOTAL: usize = 10 << 20;
            let first = (1 << 20) + (64 << 10);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL}\r\n\r\n");
            let pad = vec![b' '; first];
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&pad).is_err() {
                return;
            }
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(10));
            let _ = stream.write_all(&vec![b' '; TOTAL - first]);
            return;
        }
        Reply::Status(code) => {
            format!("HTTP/1.1 {code} Internal Server Error\r\nContent-Length: 5\r\n\r\noops!")
        }
        Reply::Chunked(body) => {
            let (a, b) = body.split_at(body.len() / 2);
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            )
        }
        Reply::Hang => {
            std::thread::sleep(Duration::from_secs(10));
            return;
        }
    };
    let _ = stream.write_all(resp.as_bytes());
    let _ = stream.flush();
}

/// A test CA and a server certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki(name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// Like `serve`, over TLS with `pki`'s server certificate.
fn serve_tls(reply: Reply, pki: &Pki) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .expect("server certificate"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let url = format!("https://{addr}");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
                continue;
            };
            let (reply, log, addr) = (reply.clone(), Arc::clone(&log), addr.clone());
            // The handshake runs on the first read; a client that rejects the certificate
            // ends it there.
            std::thread::spawn(move || {
                answer(rustls::StreamOwned::new(conn, tcp), reply, &addr, &log)
            });
        }
    });
    Server { url, requests }
}

fn plug(kind: &str, url: &str) -> PlugSensor {
    plug_cfg(PlugConfig {
        kind: kind.into(),
        url: url.into(),
        entity: None,
        token: None,
        rate_hz: 1.0,
        ca_file: None,
    })
}

fn plug_cfg(cfg: PlugConfig) -> PlugSensor {
    PlugSensor::new(&cfg).expect("valid plug config")
}

fn request_line(s: &Server) -> String {
    let reqs = s.requests.lock().expect("lock");
    reqs.last()
        .expect("a request")
        .lines()
        .next()
        .expect("line")
        .to_string()
}

const SHELLY_GEN2: &str = r#"{"id":0,"source":"init","output":true,"apower":12.5,"voltage":231.8,"current":0.081,"aenergy":{"total":11.679,"by_minute":[208.3,208.3,210.1],"minute_ts":1700000000},"temperature":{"tC":41.2,"tF":106.2}}"#;

#[test]
fn shelly_gen2_switch_status() {
    let s = serve(Reply::Json(SHELLY_GEN2));
    let mut p = plug("shelly-gen2", &s.url);
    let v = p.fetch().expect("fetch");
    assert_eq!(v.watts, Some(12.5));
    // 11.679 Wh.
    assert!((v.energy_j.expect("energy") - 11.679 * 3600.0).abs() < 1e-9);
    assert_eq!(request_line(&s), "GET /rpc/Switch.GetStatus?id=0 HTTP/1.1");
    let rows = p.read(0.0);
    let host = s.url.trim_start_matches("http://").replace(':', "-");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].id, format!("plug:{host}:power"));
    assert_eq!(
        (rows[0].covers, rows[0].source, rows[0].value),
        (Covers::Wall, Source::Plug, Some(12.5))
    );
    assert_eq!(
        (rows[1].quantity, rows[1].method),
        (Quantity::Energy, Method::Counter)
    );
    assert_eq!(p.poll_rate_hz(), Some(1.0));
}

#[test]
fn shelly_pm1_status() {
    let s = serve(Reply::Json(
        r#"{"id":0,"voltage":240.2,"current":6.473,"apower":1327.4,"freq":50,"aenergy":{"total":2.5,"by_minute":[0,0,0],"minute_ts":1700000000},"ret_aenergy":{"total":0,"by_minute":[0,0,0],"minute_ts":1700000000}}"#,
    ));
    let v = plug("shelly-pm1", &s.url).fetch().expect("fetch");
    assert_eq!(v.watts, Some(1327.4));
    assert_eq!(v.energy_j, Some(9000.0));
    assert_eq!(request_line(&s), "GET /rpc/PM1.GetStatus?id=0 HTTP/1.1");
}

#[test]
fn shelly_gen1_totals_are_watt_minutes() {
    let s = serve(Reply::Json(
        r#"{"wifi_sta":{"connected":true},"relays":[{"ison":true}],"meters":[{"power":73.2,"overpower":0.0,"is_valid":true,"timestamp":1700000000,"counters":[73.1,72.9,73.4],"total":1200}],"uptime":3600}"#,
    ));
    let v = plug("shelly-gen1", &s.url).fetch().expect("fetch");
    assert_eq!(v.watts, Some(73.2));
    assert_eq!(v.energy_j, Some(72_000.0)); // 1200 W·min = 20 Wh
    assert_eq!(request_line(&s), "GET /status HTTP/1.1");

    let s = serve(Reply::Json(
        r#"{"meters":[{"power":0,"is_valid":false,"total":5}]}"#,
    ));
    let e = plug("shelly-gen1", &s.url)
        .fetch()
        .expect_err("invalid meter");
    assert!(e.to_string().contains("is_valid=false"), "{e}");
}

#[test]
fn tasmota_status_8_power_only() {
    let s = serve(Reply::Json(
        r#"{"StatusSNS":{"Time":"2024-01-01T12:00:00","ENERGY":{"TotalStartTime":"2023-01-01T00:00:00","Total":12.345,"Yesterday":0.8,"Today":0.031,"Power":13,"ApparentPower":20,"ReactivePower":15,"Factor":0.65,"Voltage":234,"Current":0.085}}}"#,
    ));
    let mut p = plug("tasmota", &s.url);
    let v = p.fetch().expect("fetch");
    assert_eq!(v.watts, Some(13.0));
    assert_eq!(
        v.energy_j, None,
        "0.001 kWh totals are too coarse to be a counter"
    );
    assert_eq!(request_line(&s), "GET /cm?cmnd=Status%208 HTTP/1.1");
    let rows = p.read(0.0);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].quantity, Quantity::Power);
}

fn ha(url: &str, entity: &str) -> PlugSensor {
    ha_with_ca(url, entity, None)
}

fn ha_with_ca(url: &str, entity: &str, ca_file: Option<&Path>) -> PlugSensor {
    plug_cfg(PlugConfig {
        kind: "home-assistant".into(),
        url: url.into(),
        entity: Some(entity.into()),
        token: Some("abc.def.ghi".into()),
        rate_hz: 1.0,
        ca_file: ca_file.map(Path::to_path_buf),
    })
}

fn last_request(s: &Server) -> String {
    s.requests
        .lock()
        .expect("lock")
        .last()
        .expect("a request")
        .clone()
}

const HA_POWER: &str = r#"{"entity_id":"sensor.desk_plug_power","state":"123.4","attributes":{"unit_of_measurement":"W","device_class":"power","friendly_name":"Desk plug power"},"last_changed":"2024-01-01T12:00:00+00:00"}"#;

#[test]
fn home_assistant_power_entity_with_bearer_token() {
    let s = serve(Reply::Json(HA_POWER));
    let mut p = ha(&s.url, "sensor.desk_plug_power");
    let rows = p.read(0.0);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].quantity, rows[0].value),
        (Quantity::Power, Some(123.4))
    );
    let req = last_request(&s);
    assert!(
        req.starts_with("GET /api/states/sensor.desk_plug_power HTTP/1.1\r\n"),
        "{req}"
    );
    assert_eq!(
        header(&req, "authorization").as_deref(),
        Some("Bearer abc.def.ghi"),
        "{req}"
    );
}

#[test]
fn the_host_header_carries_the_port() {
    // Home Assistant on a port of its own (8123 in real life): a Host without the port is
    // answered 400 by this server, as by a reverse proxy routing on it.
    let s = serve(Reply::RequireHost(HA_POWER));
    let v = ha(&s.url, "sensor.desk_plug_power")
        .fetch()
        .expect("the server accepts the Host header");
    assert_eq!(v.watts, Some(123.4));
    let addr = s.url.trim_start_matches("http://");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert_eq!(header(&last_request(&s), "host").as_deref(), Some(addr));
}

#[test]
fn home_assistant_energy_entity_and_unavailable_state() {
    let s = serve(Reply::Json(
        r#"{"entity_id":"sensor.desk_energy","state":"1.25","attributes":{"unit_of_measurement":"kWh","device_class":"energy"}}"#,
    ));
    let mut p = ha(&s.url, "sensor.desk_energy");
    let rows = p.read(0.0);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].quantity, rows[0].method, rows[0].value),
        (Quantity::Energy, Method::Counter, Some(4.5e6))
    );

    let s = serve(Reply::Json(
        r#"{"entity_id":"sensor.x","state":"unavailable","attributes":{"unit_of_measurement":"W"}}"#,
    ));
    let e = ha(&s.url, "sensor.x").fetch().expect_err("unavailable");
    assert!(e.to_string().contains("\"unavailable\""), "{e}");
}

#[test]
fn home_assistant_needs_entity_and_token() {
    let e = PlugSensor::new(&PlugConfig {
        kind: "home-assistant".into(),
        url: "http://127.0.0.1:8123".into(),
        entity: None,
        token: Some("t".into()),
        rate_hz: 1.0,
        ca_file: None,
    })
    .expect_err("no entity");
    assert!(e.to_string().contains("needs `entity`"), "{e}");
    let e = PlugSensor::new(&PlugConfig {
        kind: "zigbee-thing".into(),
        url: "http://127.0.0.1".into(),
        entity: None,
        token: None,
        rate_hz: 1.0,
        ca_file: None,
    })
    .expect_err("bad kind");
    assert!(e.to_string().contains("kinds: shelly-gen2"), "{e}");
}

#[test]
fn chunked_answers_are_decoded() {
    let s = serve(Reply::Chunked(SHELLY_GEN2));
    assert_eq!(
        plug("shelly-gen2", &s.url).fetch().expect("fetch").watts,
        Some(12.5)
    );
}

#[test]
fn http_500_is_an_error_and_the_row_goes_na() {
    let s = serve(Reply::Status(500));
    let mut p = plug("shelly-gen2", &s.url);
    let e = p.fetch().expect_err("500");
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::Status { status: 500, .. },
                ..
            })
        ),
        "{e:?}"
    );
    let rows = p.read(0.0);
    assert!(rows.iter().all(|r| r.value.is_none()));
    assert!(p.last_error().expect("error kept").contains("HTTP 500"));
}

#[test]
fn malformed_json_is_an_error() {
    let s = serve(Reply::Json(r#"{"apower": 12.5, "aenergy": {"#));
    let e = plug("shelly-gen2", &s.url).fetch().expect_err("malformed");
    assert!(matches!(e, PlugError::Json { .. }), "{e:?}");
    let s = serve(Reply::Json(r#"{"voltage": 230}"#));
    let e = plug("shelly-gen2", &s.url).fetch().expect_err("no apower");
    assert!(e.to_string().contains("no apower"), "{e}");
}

#[test]
fn a_silent_plug_times_out_quickly() {
    let s = serve(Reply::Hang);
    let p = plug("shelly-gen2", &s.url).with_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let e = p.fetch().expect_err("timeout");
    let took = t.elapsed();
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::Timeout(_),
                ..
            })
        ),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn connection_refused_is_an_error() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let e = plug("tasmota", &format!("http://127.0.0.1:{port}"))
        .fetch()
        .expect_err("refused");
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::Refused(_),
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn a_huge_answer_is_refused_at_the_cap_not_read_whole() {
    let s = serve(Reply::Huge);
    let p = plug("shelly-gen2", &s.url).with_timeout(Duration::from_secs(5));
    let t = Instant::now();
    let e = p.fetch().expect_err("10 MiB");
    let took = t.elapsed();
    // Reading on would wait for the held-back rest and end in a timeout instead.
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::TooLarge(_),
                ..
            })
        ),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}/rpc/Switch.GetStatus?id=0: ", s.url)),
        "{msg}"
    );
    assert!(msg.contains("over 1 MiB"), "{msg}");
}

/// `pki`'s CA certificate written to a PEM file in `dir`.
fn ca_file(dir: &Path, pki: &Pki) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, &pki.ca_pem).expect("write ca.pem");
    path
}

#[test]
fn home_assistant_over_https_with_its_own_ca() {
    let pki = pki("llmtop test CA");
    let s = serve_tls(Reply::RequireHost(HA_POWER), &pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_file(dir.path(), &pki);
    let mut p = ha_with_ca(&s.url, "sensor.desk_plug_power", Some(&ca))
        .with_timeout(Duration::from_secs(3));
    let rows = p.read(0.0);
    assert_eq!(p.last_error(), None);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].quantity, rows[0].value, rows[0].covers),
        (Quantity::Power, Some(123.4), Covers::Wall)
    );
    // Not the scheme's default port, so the port is part of the key.
    let key = s.url.trim_start_matches("https://").replace(':', "-");
    assert_eq!(rows[0].id, format!("plug:{key}:power"));
    let req = last_request(&s);
    assert!(
        req.starts_with("GET /api/states/sensor.desk_plug_power HTTP/1.1\r\n"),
        "{req}"
    );
    assert_eq!(
        header(&req, "authorization").as_deref(),
        Some("Bearer abc.def.ghi")
    );
}

#[test]
fn https_without_ca_file_names_the_url_and_the_certificate_problem() {
    let pki = pki("llmtop test CA");
    let s = serve_tls(Reply::Json(HA_POWER), &pki);
    let mut p = ha(&s.url, "sensor.desk_plug_power").with_timeout(Duration::from_secs(3));
    let e = p.fetch().expect_err("untrusted certificate");
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::Tls { hint: Some(_), .. },
                ..
            })
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}/api/states/sensor.desk_plug_power: ", s.url)),
        "{msg}"
    );
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    assert!(msg.contains("set ca_file"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    // Nothing was sent: the request (and its token) never left the client.
    assert!(s.requests.lock().expect("lock").is_empty());
    let rows = p.read(0.0);
    assert_eq!(rows[0].value, None);
    assert_eq!(p.last_error(), Some(msg.as_str()));
}

#[test]
fn https_with_the_wrong_ca_file_says_to_check_it() {
    let server = pki("llmtop server CA");
    let other = pki("some other CA");
    let s = serve_tls(Reply::Json(HA_POWER), &server);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_file(dir.path(), &other);
    let e = ha_with_ca(&s.url, "sensor.desk_plug_power", Some(&ca))
        .with_timeout(Duration::from_secs(3))
        .fetch()
        .expect_err("wrong CA");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            PlugError::Http(NetError {
                cause: Cause::Tls { hint: Some(_), .. },
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        msg.contains(&format!("check that ca_file {}", ca.display())),
        "{msg}"
    );
}

#[test]
fn ca_file_problems_are_caught_before_any_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let cfg = |url: &str| PlugConfig {
        kind: "home-assistant".into(),
        url: url.into(),
        entity: Some("sensor.x".into()),
        token: Some("t".into()),
        rate_hz: 1.0,
        ca_file: Some(missing.clone()),
    };
    let e = PlugSensor::new(&cfg("https://127.0.0.1:8123")).expect_err("missing file");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot use as ca_file: ", missing.display())),
        "{msg}"
    );
    let e = PlugSensor::new(&cfg("http://127.0.0.1:8123")).expect_err("plain http");
    assert!(
        e.to_string().contains("ca_file only applies to https://"),
        "{e}"
    );

    // The config file says the same, at the line of the key.
    let text = "[[sensors.plugs]]\nkind = \"home-assistant\"\nurl = \"http://ha:8123\"\nentity = \"sensor.x\"\ntoken = \"t\"\nca_file = \"/etc/ca.pem\"\n";
    let e = llmtop::config::parse(text, Path::new("c.toml")).expect_err("ca_file on http");
    assert!(
        e.to_string()
            .starts_with("c.toml:6: sensors.plugs[0].ca_file: is only used with https:// URLs"),
        "{e}"
    );
    let text = "[[sensors.plugs]]\nkind = \"tasmota\"\nurl = \"http://ha:port\"\n";
    let e = llmtop::config::parse(text, Path::new("c.toml")).expect_err("bad port");
    assert!(
        e.to_string()
            .starts_with("c.toml:3: sensors.plugs[0].url: http://ha:port: bad URL: "),
        "{e}"
    );
}

/// A local sensor that counts its reads.
struct Local;
impl Sensor for Local {
    fn name(&self) -> String {
        "local".into()
    }
    fn read(&mut self, _now: f64) -> Vec<llmtop::sensors::Reading> {
        vec![llmtop::sensors::Reading {
            id: "hwmon:fake:temp1".into(),
            device: "fake".into(),
            label: "temp1".into(),
            quantity: Quantity::Temperature,
            value: Some(40.0),
            limit: None,
            source: Source::Hwmon,
            covers: Covers::Other,
            method: Method::Measured,
            rejected: None,
            via: None,
        }]
    }
}

#[test]
fn a_dead_plug_never_delays_local_sensors() {
    let s = serve(Reply::Hang);
    let dead = plug("shelly-gen2", &s.url).with_timeout(Duration::from_millis(1500));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let handle = Sampler::spawn(vec![Box::new(dead), Box::new(Local)], 20.0, tx);
    std::thread::sleep(Duration::from_millis(1000));
    let mut local = 0;
    let mut plug_samples = 0;
    while let Ok(s) = rx.try_recv() {
        if s.readings.iter().any(|r| r.source == Source::Plug) {
            plug_samples += 1;
        } else {
            local += 1;
        }
    }
    // 20 Hz for 1 s: about 21 ticks; the plug is still stuck in its first request.
    assert!(local >= 15, "only {local} local samples in 1 s");
    assert_eq!(plug_samples, 0);
    handle.stop();
}
