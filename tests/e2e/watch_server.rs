//! `llmtop watch --server URL` through the real binary, against a real llama-server on
//! 127.0.0.1 with the default model, on a live synthetic machine: the tokens it reports equal
//! the sum of the responses' own `timings`, and J/token is the ledger's energy over them.
//! Then the one-line errors: no --metrics, nothing listening, not llama-server.

use crate::common;
use crate::live::{LiveMachine, Profile, assert_within};
use crate::servers::{self, LlamaServer};

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed by PID and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn llmtop(args: &[&str], dir: &Path) -> Command {
    let config = dir.join("config.toml");
    std::fs::write(&config, "").expect("config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_llmtop"));
    c.arg("--config")
        .arg(&config)
        .args(args)
        .env("LLMTOP_DATA_DIR", dir)
        .env_remove("LLMTOP_MODEL");
    c
}

/// POST a JSON body; the parsed JSON answer.
fn post(addr: SocketAddr, path: &str, body: &str) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (_, body) = text.split_once("\r\n\r\n").expect("headers");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn watch_counts_the_servers_tokens_and_prices_them_with_the_ledger() {
    let server = LlamaServer::start();
    // 30 W package + 50 W GPU, flat: the ledger's total over any interval is 80 W x its length.
    let m = LiveMachine::start(Profile::flat(30.0, 50.0, 20.0));
    let dir = tempfile::tempdir().expect("dir");
    let url = server.url();
    let root = m.root.display().to_string();
    let child = llmtop(
        &[
            "watch",
            "--server",
            &url,
            "--interval",
            "2",
            "--json",
            "--sysfs-root",
            &root,
        ],
        dir.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn llmtop watch");
    let mut watch = Guard(child);
    std::thread::sleep(Duration::from_millis(1500));
    // Three clients, one after another, straight to the server (no proxy).
    let (mut prompt, mut generated) = (0u64, 0u64);
    for (i, p) in [
        "Name three colours.",
        "What is 2+2?",
        "Say hello in French.",
    ]
    .iter()
    .enumerate()
    {
        let body = serde_json::json!({
            "prompt": p, "n_predict": 6 + i, "temperature": 0.0, "cache_prompt": false,
        })
        .to_string();
        let r = post(server.addr, "/completion", &body);
        let t = &r["timings"];
        prompt += t["prompt_n"].as_u64().expect("prompt_n");
        generated += t["predicted_n"].as_u64().expect("predicted_n");
    }
    assert!(prompt > 0 && generated > 0);
    // Two more intervals, then Ctrl-C: the totals.
    std::thread::sleep(Duration::from_millis(4500));
    // SAFETY: signalling the child this test started, by its PID.
    unsafe { libc::kill(watch.0.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = watch.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "watch did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    watch
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let mut err = String::new();
    watch
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "{status}: {err}\n{out}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let head = &lines[0];
    assert_eq!(head["watch"], format!("{url}/metrics"));
    assert_eq!(head["server_pid"], server.pid());
    assert!(
        head["note"]
            .as_str()
            .expect("note")
            .contains("an attribution, not a per-request measurement"),
        "{head}"
    );
    let intervals: Vec<&Value> = lines[1..].iter().filter(|v| v["total"] == false).collect();
    let total = lines.last().expect("total");
    assert_eq!(total["total"], true, "{out}");
    let sum = |k: &str| -> u64 { intervals.iter().map(|v| v[k].as_u64().expect(k)).sum() };
    assert!(intervals.len() >= 3, "{out}");
    // The tokens are the server's own: the sum of the responses' timings.
    assert_eq!(
        (sum("prompt_tokens"), sum("generated_tokens")),
        (prompt, generated),
        "{out}"
    );
    assert_eq!(total["prompt_tokens"].as_u64(), Some(prompt));
    assert_eq!(total["generated_tokens"].as_u64(), Some(generated));
    // The energy is the ledger's, which on this machine is 80 W flat: each whole interval
    // (the first may start before the sensors' first reading; the last, cut short by Ctrl-C,
    // may last a fraction of a second, where a few ms of read jitter are several %) and the
    // whole.
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    for v in intervals.iter().skip(1) {
        let dt = f(v, "t1") - f(v, "t0");
        if dt < 1.9 {
            continue;
        }
        // A sample read a few ms late on this loaded machine is ~1 % of 2 s.
        assert_within("interval energy", f(v, "energy_j"), 80.0 * dt, 0.02);
        assert_eq!(v["basis"], "sum of parts");
        assert_eq!(v["server_pid"], server.pid());
    }
    let e = f(total, "energy_j");
    let dt = f(total, "t1") - f(total, "t0");
    assert_within("watch energy", e, 80.0 * dt, 0.01);
    // J/token is that energy over the tokens.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    assert!(
        close(f(total, "j_per_generated_token"), e / generated as f64),
        "{total}"
    );
    assert!(
        close(f(total, "j_per_token"), e / (prompt + generated) as f64),
        "{total}"
    );
    // The server process is on this machine: its share is labelled as an attribution.
    let s = &total["server"];
    assert_eq!(s["pid"], server.pid());
    assert!(
        s["method"]
            .as_str()
            .expect("method")
            .starts_with("attribution"),
        "{s}"
    );
    assert!(
        s["covers"]
            .as_str()
            .expect("covers")
            .contains("rapl:package-0"),
        "{s}"
    );
    assert!(f(s, "joules") >= 0.0);
}

/// Answers every connection with `status` and `body`, until dropped.
struct Canned {
    addr: SocketAddr,
    _thread: std::thread::JoinHandle<()>,
}

impl Canned {
    fn start(status: &'static str, body: &'static str) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let thread = std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            addr,
            _thread: thread,
        }
    }
}

fn one_line_error(args: &[&str], dir: &Path) -> String {
    let out = llmtop(args, dir).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    err
}

#[test]
fn a_server_without_metrics_down_or_not_llama_server_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("dir");
    // The real llama-server, started without --metrics.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("probe")
        .local_addr()
        .expect("addr")
        .port();
    let plain = Guard(
        Command::new(servers::binary())
            .arg("-m")
            .arg(common::model_path())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "512", "-t", "1", "--no-webui"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn llama-server"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while servers::get(addr, "/health").map(|r| r.0) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "llama-server not healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}");
    let e = one_line_error(&["watch", "--server", &url], dir.path());
    assert!(
        e.contains(&format!("{url}/metrics: HTTP 501"))
            && e.contains("; llama-server has no /metrics: it was started without --metrics; restart it with --metrics"),
        "{e}"
    );
    drop(plain);
    // Nothing listening there now.
    let e = one_line_error(&["watch", "--server", &url], dir.path());
    assert!(
        e.contains("nothing answers (") && e.contains("; is llama-server running there?"),
        "{e}"
    );
    // Another kind of server: a 404, or Prometheus text without llama-server's counters.
    let web = Canned::start("404 Not Found", "no such page");
    let e = one_line_error(
        &["watch", "--server", &format!("http://{}", web.addr)],
        dir.path(),
    );
    assert!(
        e.contains("/metrics: HTTP 404") && e.contains("; watch reads llama-server's /metrics"),
        "{e}"
    );
    let vllm = Canned::start(
        "200 OK",
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n",
    );
    let e = one_line_error(
        &["watch", "--server", &format!("http://{}", vllm.addr)],
        dir.path(),
    );
    assert!(
        e.contains("not llama-server: /metrics has no llamacpp:prompt_tokens_total (metrics such as vllm:num_requests_running)"),
        "{e}"
    );
    // A server that accepts and never answers, and one whose /metrics is 2 MiB.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let e = one_line_error(
        &[
            "watch",
            "--server",
            &format!("http://{}", silent.local_addr().expect("addr")),
        ],
        dir.path(),
    );
    assert!(
        e.contains("/metrics: no answer within 2000 ms; is llama-server running there?"),
        "{e}"
    );
    let huge: &'static str = Box::leak("# padding\n".repeat(200_000).into_boxed_str());
    let big = Canned::start("200 OK", huge);
    let e = one_line_error(
        &["watch", "--server", &format!("http://{}", big.addr)],
        dir.path(),
    );
    assert!(
        e.contains("/metrics: answer over 1 MiB, refused; watch reads llama-server's /metrics"),
        "{e}"
    );
    let e = one_line_error(&["watch", "--server", "ftp://x"], dir.path());
    assert_eq!(
        e.trim_end(),
        "llmtop: ftp://x: bad URL: the scheme must be http:// or https://; give llama-server's address, e.g. http://127.0.0.1:8080"
    );
}
