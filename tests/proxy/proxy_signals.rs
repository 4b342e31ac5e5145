//! `llmtop proxy` (the real binary) stopped by SIGTERM, SIGHUP or SIGINT with 10 streaming
//! requests in flight, in front of the stand-in Ollama (tests/servers: it streams a chunk every
//! 100 ms, so every stream is mid-way when the signal comes; the real llama-server would make
//! the ten streams depend on its slots and speed) on a live synthetic machine: the listener
//! closes, the streams end, and the drain writes all 10 records, each with its energy, which
//! add up to the machine's.

use crate::live::{LiveMachine, Profile, assert_within};
use crate::servers::ollama::{FakeOllama, Mode};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STREAMS: usize = 10;

fn stopped_by(sig: i32) {
    let up = FakeOllama::start();
    let pieces = [" token"; 100];
    up.set_reply(&pieces);
    up.set_mode(Mode::Slow(Duration::from_millis(100)));
    // 30 W package + 50 W GPU, flat: the components' total is 80 W.
    let m = LiveMachine::start(Profile::flat(30.0, 50.0, 20.0));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\nrate_hz = 4.0\n").expect("config");
    let log = dir.path().join("requests.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &up.url()])
        .arg("--log")
        .arg(&log)
        .arg("--sysfs-root")
        .arg(&m.root)
        .env("LLMTOP_DATA_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn llmtop proxy");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("listen address in {line:?}"));
    let clients: Vec<_> = (0..STREAMS)
        .map(|_| {
            std::thread::spawn(move || {
                super::post(
                    addr,
                    "/api/chat",
                    "{\"model\":\"llama3.2:latest\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                )
            })
        })
        .collect();
    // Every stream reached the server and has been flowing a while (10 s each at full length).
    let began = Instant::now();
    while up.chats().len() < STREAMS {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{} streams",
            up.chats().len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling the child this test started, by its PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "llmtop proxy did not stop on signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    let mut rest = String::new();
    for l in err.lines() {
        rest.push_str(&l.unwrap_or_default());
        rest.push('\n');
    }
    assert!(status.success(), "signal {sig}: {status}: {rest}");
    // The drain waits for the ledger (4 Hz) to cover the streams' ends: well under its limit.
    assert!(
        took < Duration::from_secs(3),
        "signal {sig}: stopped after {took:?}"
    );
    for c in clients {
        let got = c.join().expect("client");
        assert_eq!(got.status, 200);
        assert!(
            got.truncated,
            "signal {sig}: a stream ended whole, so was not in flight"
        );
    }
    let text = std::fs::read_to_string(&log).expect("records file");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("record JSON"))
        .collect();
    assert_eq!(records.len(), STREAMS, "signal {sig}: {text}");
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let mut joules = 0.0;
    for r in &records {
        let e = &r["energy"];
        assert!(e.is_object(), "signal {sig}: a record without energy: {r}");
        joules += e["joules"].as_f64().expect("joules");
        assert_eq!(r["model"], "llama3.2:latest");
    }
    // Together the requests drew what the machine did while any of them ran: from the first
    // start to the last end (they all overlap).
    let start = |r: &serde_json::Value| -> f64 {
        let t: jiff::Timestamp = r["time"].as_str().expect("time").parse().expect("RFC 3339");
        t.as_nanosecond() as f64 / 1e9
    };
    let t0 = records.iter().map(start).fold(f64::INFINITY, f64::min);
    let t1 = records
        .iter()
        .map(|r| start(r) + f(r, "wall_s"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert_within("the requests' energy", joules, 80.0 * (t1 - t0), 0.03);
}

#[test]
fn sigterm_with_ten_streams_in_flight_writes_ten_records() {
    stopped_by(libc::SIGTERM);
}

#[test]
fn sighup_with_ten_streams_in_flight_writes_ten_records() {
    stopped_by(libc::SIGHUP);
}

#[test]
fn sigint_with_ten_streams_in_flight_writes_ten_records() {
    stopped_by(libc::SIGINT);
}
