//! Faults around the proxy: a client that leaves mid-stream (the upstream's request is
//! cancelled: the stand-in sees its connection close, the real llama-server stops generating),
//! an upstream that answers garbage or nothing at all, requests too big for the proxy's limits
//! (431, 413, documented in the README), and a slow-loris client.

use super::proxy_hostile::fake;
use super::servers::ollama::{FakeOllama, MODELS, Mode};
use super::{RawProxy, post, request};
use llmtop::proxy::tap::Outcome;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wait until `cond` holds, up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

#[test]
fn a_client_that_leaves_mid_stream_cancels_the_upstreams_request() {
    let server = FakeOllama::start();
    // 40 pieces, 50 ms apart: 2 s of stream if nobody left.
    let pieces: Vec<String> = (0..40).map(|i| format!(" w{i}")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    server.set_reply(&refs);
    server.set_mode(Mode::Slow(Duration::from_millis(50)));
    let mut p = RawProxy::start(&server.url());
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    let body = format!(
        "{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}",
        MODELS[0]
    );
    write!(
        c,
        "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    // Read until three pieces have come through, then leave.
    let mut r = BufReader::new(c.try_clone().expect("clone"));
    let mut seen = String::new();
    while seen.matches("\" w").count() < 3 {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("read") > 0, "{seen}");
        seen.push_str(&line);
    }
    let left = Instant::now();
    c.shutdown(std::net::Shutdown::Both).expect("shutdown");
    drop((c, r));
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.outcome, Outcome::ClientClosed, "{ex:?}");
    assert!(
        (3..40).contains(&ex.tokens_seen),
        "the tokens so far: {}",
        ex.tokens_seen
    );
    assert_eq!(ex.status, 200);
    assert_eq!(ex.requested_model.as_deref(), Some(MODELS[0]));
    // The upstream's own connection was closed: one of its writes failed. Had the proxy read
    // on to the end, or held the connection without reading (the 40 lines fit the socket
    // buffers), every write would have succeeded.
    assert!(
        wait_for(Duration::from_secs(10), || server.client_gone()),
        "the stand-in never saw the proxy leave"
    );
    eprintln!(
        "the stand-in saw the proxy leave within {:.2?}",
        left.elapsed()
    );
}

#[test]
fn an_upstream_that_answers_garbage_or_nothing_is_a_502_with_one_line() {
    for (what, reply) in [
        (
            "garbage",
            &b"\x00\x1b[31mSSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n"[..],
        ),
        ("nothing", &b""[..]),
        ("a bad status line", &b"HTTP/1.1 twohundred OK\r\n\r\n"[..]),
    ] {
        let up = fake(Arc::new(move |_, s| {
            let _ = s.write_all(reply);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }));
        let mut p = RawProxy::start(&format!("http://{up}"));
        let got = post(p.addr(), "/v1/chat/completions", "{\"model\":\"m\"}");
        assert_eq!(got.status, 502, "{what}: {}", got.text());
        let text = got.text();
        assert_eq!(text.lines().count(), 1, "{what}: {text}");
        assert!(
            text.starts_with(&format!("llmtop proxy: http://{up}/v1/chat/completions: ")),
            "{what}: {text}"
        );
        assert!(!text.contains('\u{1b}'), "{what}: {text:?}");
        assert_eq!(got.header("x-llmtop-proxy").as_deref(), Some("error"));
        let ex = p.finished(Duration::from_secs(10));
        assert_eq!(ex.status, 502, "{what}");
        assert!(
            matches!(ex.outcome, Outcome::Unreachable(_)),
            "{what}: {:?}",
            ex.outcome
        );
        eprintln!("{what}: {}", text.trim());
    }
}

/// Send `head` then `body_len` bytes of JSON-ish body; the status the proxy answered.
fn send_raw(addr: std::net::SocketAddr, head: &str, body_len: usize) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let _ = s.write_all(head.as_bytes());
    let block = vec![b'x'; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let k = left.min(block.len());
        // The proxy may answer and close before taking it all.
        if s.write_all(&block[..k]).is_err() {
            break;
        }
        left -= k;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {text:?}"));
    (status, text)
}

#[test]
fn oversized_heads_are_431_and_oversized_bodies_413() {
    use llmtop::net::server::{MAX_HEAD_BYTES, MAX_HEADERS};
    use llmtop::proxy::forward::MAX_BODY_BYTES;
    use std::sync::atomic::{AtomicU64, Ordering};
    // An upstream that takes a chunked body to its end before answering, counting requests
    // and the body bytes it got.
    let (calls, got_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, g) = (calls.clone(), got_bytes.clone());
    let up = fake(Arc::new(move |head, s| {
        c.fetch_add(1, Ordering::SeqCst);
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        g.fetch_add(n as u64, Ordering::SeqCst);
                        tail.extend_from_slice(&buf[..n]);
                        let keep = tail.len().saturating_sub(8);
                        tail.drain(..keep);
                        if tail.ends_with(b"0\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let addr = p.addr();
    // One header line over the limit.
    let big = "a".repeat(MAX_HEAD_BYTES + 1);
    let (status, text) = send_raw(
        addr,
        &format!("GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
        0,
    );
    assert_eq!(status, 431, "{text}");
    // Too many header fields.
    let many: String = (0..=MAX_HEADERS)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let (status, text) = send_raw(
        addr,
        &format!("GET /api/tags HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
        0,
    );
    assert_eq!(status, 431, "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing went on");
    // A body declared too big: refused at once, nothing sent on.
    let (status, text) = send_raw(
        addr,
        &format!(
            "POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_BODY_BYTES + 1
        ),
        0,
    );
    assert_eq!(status, 413, "{text}");
    let line = format!(
        "llmtop proxy: the request body is over the proxy's limit of {} MiB; send a smaller one",
        MAX_BODY_BYTES >> 20
    );
    assert!(text.ends_with(&format!("\r\n\r\n{line}\n")), "{text}");
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.status, 413);
    assert!(matches!(ex.outcome, Outcome::Cut(_)), "{:?}", ex.outcome);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing went on");
    // A chunked body that grows past the limit: 413 too; the upstream saw its start, never
    // its end.
    let (status, text) = {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .expect("head");
        let block = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        while sent <= MAX_BODY_BYTES + (4 << 20) {
            if write!(s, "{:x}\r\n", block.len()).is_err()
                || s.write_all(&block).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
            sent += block.len() as u64;
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line in {text:?}"));
        (status, text)
    };
    assert_eq!(status, 413, "{text}");
    assert!(text.ends_with(&format!("{line}\n")), "{text}");
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.status, 413);
    assert!(matches!(ex.outcome, Outcome::Cut(_)), "{:?}", ex.outcome);
    assert!(
        got_bytes.load(Ordering::SeqCst) <= MAX_BODY_BYTES + (1 << 20) + 64,
        "{}",
        got_bytes.load(Ordering::SeqCst)
    );
    // Just under the limits passes, and the proxy still serves.
    let fine = "a".repeat(MAX_HEAD_BYTES / 2);
    let got = request(addr, "GET", "/api/tags", "", &[("X-Fine", &fine)], true);
    assert_eq!(got.status, 200, "{}", got.text());
    let body = "x".repeat(1 << 20);
    let got = request(addr, "POST", "/api/chat", &body, &[], true);
    assert_eq!(got.status, 200, "{}", got.text());
}

#[test]
fn a_slow_loris_client_is_dropped_at_the_header_limit_however_it_trickles() {
    use llmtop::net::server::Limits;
    let server = FakeOllama::start();
    let limits = Limits {
        header: Duration::from_millis(800),
        ..Limits::STREAMING
    };
    let p = RawProxy::start_with(&server.url(), limits);
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let t = Instant::now();
    c.write_all(b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("start");
    // One byte every 50 ms, never the end of the head: each byte is new, the head never done.
    let closed = loop {
        if c.write_all(b"a").is_err() {
            break t.elapsed();
        }
        let mut b = [0u8; 256];
        match c.read(&mut b) {
            Ok(_) => break t.elapsed(),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break t.elapsed(),
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still held after 10 s"
        );
        std::thread::sleep(Duration::from_millis(30));
    };
    assert!(closed >= Duration::from_millis(800), "{closed:?}");
    // Any close proves it: the trickle never stops, so a timer that each byte reset would
    // never fire.
    assert!(closed < Duration::from_secs(10), "{closed:?}");
    // Nothing reached the upstream, and the proxy still serves.
    assert!(server.seen().is_empty());
    let ok = request(p.addr(), "GET", "/api/tags", "", &[], true);
    assert_eq!(ok.status, 200);
}

/// One of llama-server's `/metrics` values, `llamacpp:{name}`.
fn metric(server: &super::servers::LlamaServer, name: &str) -> Option<f64> {
    let (status, body) = super::servers::get(server.addr, "/metrics")?;
    (status == 200).then_some(())?;
    let prefix = format!("llamacpp:{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

fn processing(server: &super::servers::LlamaServer) -> Option<f64> {
    metric(server, "requests_processing")
}

#[test]
fn a_client_that_leaves_mid_stream_stops_the_real_llama_servers_generation() {
    let server = super::servers::LlamaServer::start();
    let mut p = RawProxy::start(&server.url());
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    // Far more tokens than it writes before the client leaves; ignore_eos so it cannot stop
    // early by itself.
    let body = serde_json::json!({
        "model": "smol", "stream": true, "temperature": 0, "seed": 42,
        "max_tokens": 2000, "ignore_eos": true,
        "messages": [{"role": "user", "content": "Tell a very long story."}],
    })
    .to_string();
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut r = BufReader::new(c.try_clone().expect("clone"));
    let mut events = 0;
    while events < 5 {
        let mut line = String::new();
        assert!(r.read_line(&mut line).expect("read") > 0);
        if line.contains("data: {") {
            events += 1;
        }
    }
    assert_eq!(
        processing(&server),
        Some(1.0),
        "generating while the client reads"
    );
    c.shutdown(std::net::Shutdown::Both).expect("shutdown");
    drop((c, r));
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.outcome, Outcome::ClientClosed, "{ex:?}");
    assert!(
        ex.tokens_seen >= 4 && ex.tokens_seen < 2000,
        "{}",
        ex.tokens_seen
    );
    // The server stops generating once its next write finds the proxy gone: its slot is free
    // long before 2000 tokens.
    let left = Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || processing(&server) == Some(0.0)),
        "llama-server still generating 10 s after the client left"
    );
    let stopped = left.elapsed();
    // It decoded a few tokens more than passed (those in flight), nowhere near 2000.
    let decoded = metric(&server, "n_decode_total").expect("n_decode_total");
    assert!(decoded < 500.0, "llama-server decoded {decoded} times");
    eprintln!(
        "llama-server stopped {stopped:.2?} after the proxy reported the client gone ({} tokens passed, {decoded} decodes)",
        ex.tokens_seen
    );
}

/// An upstream that keeps a connection alive for 3 s after its last answer and, when a request
/// comes on one idle longer than that, closes it without answering: what a server's keep-alive
/// timeout does to a request that crosses its close on the wire (llama-server's and Node's is
/// 5 s). The proxy must not send a request on a connection that old: a second request 3.5 s
/// after the first is answered, not a 502.
#[test]
fn a_request_after_the_upstreams_keep_alive_ran_out_is_answered() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut last = Instant::now();
                loop {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => raw.extend_from_slice(&buf[..n]),
                        }
                    }
                    if last.elapsed() > Duration::from_secs(3) {
                        return; // dropped unanswered
                    }
                    let body = "{\"model\":\"m\",\"choices\":[]}";
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    last = Instant::now();
                }
            });
        }
    });
    let mut p = RawProxy::start(&format!("http://{up}"));
    // No body (Content-Length: 0): the stand-in reads heads only.
    let first = request(p.addr(), "GET", "/v1/models", "", &[], true);
    assert_eq!(first.status, 200, "{}", first.text());
    let _ = p.finished(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(3500));
    let second = request(p.addr(), "GET", "/v1/models", "", &[], true);
    assert_eq!(second.status, 200, "{}", second.text());
}
