//! Smart plugs against a real HTTP server on 127.0.0.1 started by each test, answering the
//! documented JSON shapes, plus timeouts, HTTP 500, malformed JSON. Nothing else is contacted.

use llmtop::config::PlugConfig;
use llmtop::sensors::http::HttpError;
use llmtop::sensors::plug::{PlugError, PlugSensor};
use llmtop::sensors::{Covers, Method, Quantity, Sample, Sampler, Sensor, Source};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
enum Reply {
    Json(&'static str),
    Status(u16),
    Chunked(&'static str),
    /// Accept, read the request, never answer.
    Hang,
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Serve `reply` to every connection, recording each request's head.
fn serve(reply: Reply) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let reply = reply.clone();
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let resp = match reply {
                    Reply::Json(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    Reply::Status(code) => {
                        format!(
                            "HTTP/1.1 {code} Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"
                        )
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
    plug_cfg(PlugConfig {
        kind: "home-assistant".into(),
        url: url.into(),
        entity: Some(entity.into()),
        token: Some("abc.def.ghi".into()),
        rate_hz: 1.0,
    })
}

#[test]
fn home_assistant_power_entity_with_bearer_token() {
    let s = serve(Reply::Json(
        r#"{"entity_id":"sensor.desk_plug_power","state":"123.4","attributes":{"unit_of_measurement":"W","device_class":"power","friendly_name":"Desk plug power"},"last_changed":"2024-01-01T12:00:00+00:00"}"#,
    ));
    let mut p = ha(&s.url, "sensor.desk_plug_power");
    let rows = p.read(0.0);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].quantity, rows[0].value),
        (Quantity::Power, Some(123.4))
    );
    let req = s
        .requests
        .lock()
        .expect("lock")
        .last()
        .expect("req")
        .clone();
    assert!(
        req.starts_with("GET /api/states/sensor.desk_plug_power HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(
        req.contains("\r\nAuthorization: Bearer abc.def.ghi\r\n"),
        "{req}"
    );
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
    })
    .expect_err("no entity");
    assert!(e.to_string().contains("needs `entity`"), "{e}");
    let e = PlugSensor::new(&PlugConfig {
        kind: "zigbee-thing".into(),
        url: "http://127.0.0.1".into(),
        entity: None,
        token: None,
        rate_hz: 1.0,
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
        matches!(e, PlugError::Http(HttpError::Status { status: 500, .. })),
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
        matches!(e, PlugError::Http(HttpError::Timeout { .. })),
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
    assert!(matches!(e, PlugError::Http(HttpError::Io { .. })), "{e:?}");
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
