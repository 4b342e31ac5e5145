//! `llmtop proxy` through the real binary: bad addresses are one line; a request through it
//! becomes a record on stdout and in requests.jsonl.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn llmtop(args: &[&str], data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llmtop"));
    let cfg = data.join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\n").expect("config");
    c.arg("--config")
        .arg(&cfg)
        .args(args)
        .env("LLMTOP_DATA_DIR", data)
        .stdin(Stdio::null());
    c
}

fn one_line(args: &[&str], what: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = llmtop(args, dir.path()).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    for w in what {
        assert!(err.contains(w), "{err:?} should mention {w:?}");
    }
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_addresses_are_one_line_each() {
    one_line(
        &["proxy", "--upstream", "https://127.0.0.1:1"],
        &["--upstream", "https"],
    );
    one_line(
        &["proxy", "--upstream", "ftp://x"],
        &["--upstream", "http://"],
    );
    one_line(&["proxy", "--upstream", "not a url"], &["--upstream"]);
    one_line(
        &["proxy", "--listen", "localhost"],
        &["--listen", "HOST:PORT"],
    );
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    one_line(
        &[
            "proxy",
            "--listen",
            &addr,
            "--sysfs-root",
            "tests/fixtures/sysfs/laptop",
        ],
        &["cannot serve the proxy on", "--listen"],
    );
    // The metrics address: one flag name on every command, the old one still understood, and
    // the error names the flag that was used.
    for flag in ["--metrics-addr", "--metrics"] {
        one_line(
            &[
                "proxy",
                "--listen",
                "127.0.0.1:0",
                flag,
                &addr,
                "--sysfs-root",
                "tests/fixtures/sysfs/laptop",
            ],
            &[
                &format!("cannot serve metrics on {addr}"),
                &format!("pick a free address with {flag},"),
            ],
        );
        one_line(
            &["proxy", flag, "nowhere"],
            &[&format!("{flag} nowhere: no port"), "HOST:PORT"],
        );
    }
}

#[test]
fn the_listen_address_may_be_a_host_name() {
    // `localhost` as the exporter takes it: the proxy answers there.
    let dir = tempfile::tempdir().expect("tempdir");
    let child = llmtop(
        &[
            "proxy",
            "--listen",
            "localhost:0",
            "--upstream",
            "http://127.0.0.1:9",
            "--sysfs-root",
            "tests/fixtures/sysfs/laptop",
        ],
        dir.path(),
    )
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut child = Kill(child);
    let mut err = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("listen address in {line:?}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    let got = super::post(addr, "/api/chat", "{}");
    assert_eq!(got.status, 502, "the dead upstream, said by the proxy");
}

pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_request_through_the_binary_is_recorded_and_printed() {
    // An upstream that answers one Ollama-shaped stream.
    let up = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up_addr = up.local_addr().expect("addr");
    std::thread::spawn(move || {
        use std::io::Read;
        for s in up.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let lines = [
                "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
                "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"!\"},\"done\":false}\n",
                "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"total_duration\":500000000,\"load_duration\":1000000,\"prompt_eval_count\":12,\"prompt_eval_duration\":100000000,\"eval_count\":2,\"eval_duration\":200000000}\n",
            ];
            let body: String = lines.concat();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = format!("http://{up_addr}");
    let child = llmtop(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--sysfs-root",
            "tests/fixtures/sysfs/laptop",
            "--print",
            "--exit-after",
            "1",
        ],
        dir.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut child = Kill(child);
    let mut err = BufReader::new(child.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("listen address in {line:?}"))
        .to_string();
    let got = super::post(
        addr.parse().expect("addr"),
        "/api/chat",
        "{\"model\":\"llama3\",\"messages\":[]}",
    );
    assert_eq!(got.status, 200);
    let mut out = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut rec = String::new();
    let start = Instant::now();
    out.read_line(&mut rec).expect("a record");
    assert!(start.elapsed() < Duration::from_secs(30));
    let r: serde_json::Value = serde_json::from_str(&rec).expect("record JSON");
    assert_eq!(r["schema"], "llmtop.request/1");
    assert_eq!(r["model"], "llama3");
    assert_eq!(r["backend"], "ollama");
    assert_eq!(r["prompt_tokens"], 12);
    assert_eq!(r["generated_tokens"], 2);
    assert_eq!(r["tokens_from"], "Ollama's final object");
    // Ollama's nanoseconds: 2 tokens in 0.2 s, 12 in 0.1 s.
    assert_eq!(r["decode_tok_s"], 10.0);
    assert_eq!(r["prefill_tok_s"], 120.0);
    assert_eq!(r["energy"]["method"], "attributed");
    let status = child.0.wait().expect("exit");
    assert!(status.success(), "{status}");
    let file = std::fs::read_to_string(dir.path().join("requests.jsonl")).expect("jsonl");
    assert_eq!(file.lines().count(), 1);
    assert_eq!(file.trim(), rec.trim());
}
