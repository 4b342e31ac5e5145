//! `llmtop --proxy` in a real terminal: requests through it appear in the table, newest first,
//! with the model the server named (sanitised), tokens from its final object, and energy.

use super::tmux::Tmux;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

#[test]
fn the_dashboard_shows_proxied_requests_newest_first() {
    // An Ollama-shaped upstream, one request a connection (said with `Connection: close`, or
    // the proxy may send the second on the first's closed connection); the model name carries
    // an escape sequence.
    let up = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up_addr = up.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut n = 0;
        for s in up.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            // The proxy's health probe connects and sends nothing: not a request.
            if s.read(&mut buf).unwrap_or(0) == 0 {
                continue;
            }
            n += 1;
            let n = n - 1;
            let model = if n == 0 {
                "first\u{1b}[2Jmodel"
            } else {
                "second-model"
            };
            let body = format!(
                "{}\n{}\n",
                serde_json::json!({"model": model, "message": {"role": "assistant", "content": "Hi"}, "done": false}),
                serde_json::json!({"model": model, "message": {"role": "assistant", "content": ""}, "done": true,
                    "prompt_eval_count": 12, "prompt_eval_duration": 100_000_000u64,
                    "eval_count": 7 + n, "eval_duration": 200_000_000u64})
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = data.path().join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\n").expect("config");
    let script = format!(
        "LLMTOP_DATA_DIR='{}' '{}' --config '{}' --proxy --listen 127.0.0.1:{port} --upstream http://{up_addr} --sysfs-root tests/fixtures/sysfs/laptop; echo LLMTOP-EXIT:$?; sleep 30",
        data.path().display(),
        env!("CARGO_BIN_EXE_llmtop"),
        cfg.display(),
    );
    let tmux = Tmux::start("proxy", 120, 30, &script);
    tmux.wait_for("the request table", Duration::from_secs(20), |s| {
        s.contains("Requests") && s.contains("Gauges") && s.contains(&format!("127.0.0.1:{port}"))
    });
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    for _ in 0..2 {
        let got = super::post(addr, "/api/chat", "{\"model\":\"asked\",\"messages\":[]}");
        assert_eq!(got.status, 200);
    }
    let screen = tmux.wait_for("two settled rows", Duration::from_secs(30), |s| {
        s.contains("2 done")
    });
    let first = screen.find("first").expect("first row");
    let second = screen.find("second-model").expect("second row");
    assert!(second < first, "newest first:\n{screen}");
    assert!(screen.contains("first\\x1b[2Jmodel"), "escaped:\n{screen}");
    assert!(
        screen.contains("12→8") && screen.contains("12→7"),
        "{screen}"
    );
    assert!(screen.contains(" J "), "energy column:\n{screen}");
    tmux.keys(&["C-q"]);
    tmux.wait_for("exit", Duration::from_secs(20), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    let file = std::fs::read_to_string(data.path().join("requests.jsonl")).expect("records");
    assert_eq!(file.lines().count(), 2);
}

#[test]
fn the_request_tables_header_says_when_the_upstream_is_down_and_when_it_answers_again() {
    // A port with nothing listening yet.
    let up_addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = data.path().join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\n").expect("config");
    let script = format!(
        "LLMTOP_DATA_DIR='{}' '{}' --config '{}' --proxy --listen 127.0.0.1:0 --upstream http://{up_addr} --sysfs-root tests/fixtures/sysfs/laptop; echo LLMTOP-EXIT:$?; sleep 30",
        data.path().display(),
        env!("CARGO_BIN_EXE_llmtop"),
        cfg.display(),
    );
    let tmux = Tmux::start("proxy-down", 160, 30, &script);
    let screen = tmux.wait_for(
        "the upstream down in the header",
        Duration::from_secs(20),
        |s| s.contains("upstream down, retrying"),
    );
    let header = screen
        .lines()
        .find(|l| l.contains("Requests"))
        .expect("the table's header");
    assert!(header.contains("upstream down, retrying"), "{header}");
    // The status line has the whole reason.
    assert!(screen.contains("not answering"), "{screen}");
    // The server comes up: the next probe (within 2 s here) clears the header.
    let l = TcpListener::bind(up_addr).expect("the port again");
    std::thread::spawn(move || for _ in l.incoming() {});
    tmux.wait_for("the header cleared", Duration::from_secs(10), |s| {
        s.contains("Requests") && !s.contains("upstream down, retrying")
    });
    tmux.keys(&["C-q"]);
    tmux.wait_for("exit", Duration::from_secs(20), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}
