//! The books through the real proxy on a live synthetic machine: a long stream holds back no
//! other record, a 502 names the model asked for, a client that leaves mid-stream is recorded
//! as `client_closed` with its tokens so far and the upstream request is cancelled.

use super::live::{LiveMachine, Profile, assert_within};
use super::proxy_hostile::{SSE_HEAD, chunk, fake, sse_line};
use super::proxy_llama::{ledger_energy, meter};
use super::{BookedProxy, RawProxy, post};
use llmtop::accounting::ledger::Ledger;
use llmtop::proxy::books::record;
use llmtop::proxy::tap::Outcome;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An SSE upstream: `{"n": N, "gap_ms": G}` in the body streams N one-token events G ms apart.
fn pacing_upstream() -> std::net::SocketAddr {
    fake(Arc::new(|req: &str, s: &mut TcpStream| {
        let body = req.split("\r\n\r\n").nth(1).unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let n = v["n"].as_u64().unwrap_or(1);
        let gap = Duration::from_millis(v["gap_ms"].as_u64().unwrap_or(10));
        if s.write_all(SSE_HEAD.as_bytes()).is_err() {
            return;
        }
        for i in 0..n {
            std::thread::sleep(gap);
            if chunk(s, sse_line(&format!("t{i} ")).as_bytes()).is_err() {
                return;
            }
        }
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    }))
}

fn ask(n: u32, gap_ms: u32) -> String {
    serde_json::json!({"model": "pace", "stream": true, "n": n, "gap_ms": gap_ms}).to_string()
}

#[test]
fn a_long_stream_holds_back_no_short_record_and_the_energy_adds_up() {
    let up = pacing_upstream();
    let machine = LiveMachine::start(Profile::flat(40.0, 100.0, 0.0));
    let m = meter(&machine);
    let proxy = BookedProxy::start(&format!("http://{up}"), m, Ledger::new());
    let addr = proxy.addr();
    // 200 tokens, 100 ms apart: open for 20 s.
    let long = std::thread::spawn(move || post(addr, "/v1/chat/completions", &ask(200, 100)));
    std::thread::sleep(Duration::from_millis(500));
    let mut shorts = 0;
    let started = Instant::now();
    for _ in 0..5 {
        let g = post(addr, "/v1/chat/completions", &ask(5, 60));
        assert_eq!(g.status, 200);
        shorts += 1;
        // Its record comes while the long one is still open: the ledger covers the end a
        // second later (the margin), sampled at 4 Hz; on a busy machine it may take longer,
        // but never the long request's 20 s.
        let recs = proxy.wait_records(shorts, Duration::from_secs(8));
        assert!(
            recs.iter().all(|r| r.generated_tokens == Some(5)),
            "{recs:?}"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(
        !long.is_finished(),
        "the long stream ended before the test could see its neighbours recorded ({:?})",
        started.elapsed()
    );
    let g = long.join().expect("long client");
    assert_eq!(g.status, 200);
    let records = proxy.wait_records(6, Duration::from_secs(30));
    let spans = proxy.spans.lock().expect("spans").clone();
    let ledger = proxy.stop();
    assert_eq!(records.len(), 6);
    let long_rec = records
        .iter()
        .find(|r| r.generated_tokens == Some(200))
        .expect("the long record");
    assert_eq!(records.last().map(|r| r.id), Some(long_rec.id));
    let sum: f64 = records
        .iter()
        .map(|r| r.energy.as_ref().expect("energy").joules)
        .sum();
    assert!(records.iter().filter(|r| r.id != long_rec.id).all(|r| {
        r.energy
            .as_ref()
            .is_some_and(|e| e.shared_s > 0.0 && e.joules > 0.0)
    }));
    let (want, covered) = ledger_energy(&ledger, &spans);
    assert_within("attributed J vs the ledger's J", sum, want, 0.001);
    assert_within("ledger J vs true J", want, 140.0 * covered, 0.03);
}

#[test]
fn a_502_record_names_the_model_asked_for() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut p = RawProxy::start(&format!("http://{dead}"));
    let body = "{\"model\":\"llama3:8b\",\"stream\":true}";
    let got = post(p.addr(), "/api/chat", body);
    assert_eq!(got.status, 502);
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.requested_model.as_deref(), Some("llama3:8b"));
    assert_eq!(ex.bytes_in, body.len() as u64);
    let r = record(&ex, None, &Ledger::new());
    assert_eq!(r.model.as_deref(), Some("llama3:8b"));
    assert_eq!(r.outcome, "upstream_unreachable");
    assert_eq!(r.status, 502);
    // A request with no body still gets its 502, with no model.
    let got = super::request(p.addr(), "GET", "/api/tags", "", &[], true);
    assert_eq!(got.status, 502);
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.requested_model, None);
}

#[test]
fn a_client_that_leaves_mid_stream_is_recorded_as_client_closed_and_the_upstream_cancelled() {
    let written = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let (w, c) = (written.clone(), cut.clone());
    let up = fake(Arc::new(move |_req: &str, s: &mut TcpStream| {
        let _ = s.write_all(SSE_HEAD.as_bytes());
        for i in 0..400 {
            std::thread::sleep(Duration::from_millis(25));
            if chunk(s, sse_line(&format!("t{i} ")).as_bytes()).is_err() {
                c.store(true, Ordering::SeqCst);
                return;
            }
            w.fetch_add(1, Ordering::SeqCst);
        }
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let mut s = TcpStream::connect(p.addr()).expect("connect");
    let body = ask(400, 25);
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    // Read until ten tokens passed, then leave.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(5).filter(|w| w == b"data:").count() < 10 {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.outcome, Outcome::ClientClosed);
    // The upstream's write fails soon after: the proxy dropped its request.
    let end = Instant::now() + Duration::from_secs(10);
    while !cut.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cut.load(Ordering::SeqCst), "the upstream was never cut");
    let sent = written.load(Ordering::SeqCst);
    assert!(sent < 400, "the upstream sent all {sent}");
    assert!(
        ex.tokens_seen >= 10 && ex.tokens_seen <= sent,
        "{} of {sent}",
        ex.tokens_seen
    );
    let r = record(&ex, None, &Ledger::new());
    assert_eq!(r.outcome, "client_closed");
    assert_eq!(r.generated_tokens, Some(ex.tokens_seen));
    assert_eq!(r.model.as_deref(), Some("fake"));
}
