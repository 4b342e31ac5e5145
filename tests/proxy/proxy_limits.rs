//! The proxy on the one HTTP server: its limits, seen from a client, against upstreams served
//! by the test. Idle clients do not starve streams; a stalled upstream or a client that stops
//! reading lets go after the idle limit (not a total cap: a long stream with short gaps
//! passes); a client that leaves while the upstream thinks is still reported; a stop lets
//! exchanges finish for its grace period, then cuts and reports the rest.

use super::proxy_hostile::{SSE_HEAD, chunk, fake, sse_line};
use super::{RawProxy, finished, post};
use llmtop::net::server::{Limits, Mode};
use llmtop::proxy::tap::Outcome;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `n` SSE tokens, `gap` apart, then `[DONE]`: the body the client must get byte for byte.
fn sse_stream(n: usize, gap: Duration) -> (super::proxy_hostile::Handler, Vec<u8>) {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(sse_line(&format!("t{i}")).as_bytes());
    }
    body.extend_from_slice(b"data: [DONE]\n\n");
    let handler: super::proxy_hostile::Handler = Arc::new(move |_, s| {
        let _ = s.write_all(SSE_HEAD.as_bytes());
        for i in 0..n {
            std::thread::sleep(gap);
            if chunk(s, sse_line(&format!("t{i}")).as_bytes()).is_err() {
                return;
            }
        }
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    });
    (handler, body)
}

/// Limits with a short idle limit, the rest as the proxy runs.
fn idle_after(idle: Duration) -> Limits {
    Limits {
        mode: Mode::Streaming { idle },
        ..Limits::STREAMING
    }
}

#[test]
fn five_hundred_idle_connections_never_starve_a_hundred_streams() {
    let (handler, want) = sse_stream(20, Duration::from_millis(20));
    let up = fake(handler);
    let mut p = RawProxy::start(&format!("http://{up}"));
    let addr = p.addr();
    // 500 clients that connect and never send a byte (they are held for the 30 s a client
    // has to send its request head).
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let t = Instant::now();
    let streams: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                post(
                    addr,
                    "/v1/chat/completions",
                    "{\"model\":\"m\",\"stream\":true}",
                )
            })
        })
        .collect();
    for s in streams {
        let got = s.join().expect("stream thread");
        assert_eq!(got.status, 200);
        assert!(!got.truncated);
        assert_eq!(got.body, want, "byte for byte");
    }
    // A server that served one connection at a time would reach the first stream after the
    // idle clients' 500 × 30 s; concurrently, the streams take their 0.4 s plus the load.
    let took = t.elapsed();
    assert!(took < Duration::from_secs(20), "100 streams took {took:?}");
    for _ in 0..100 {
        let ex = p.finished(Duration::from_secs(10));
        assert_eq!(ex.outcome, Outcome::Complete);
        assert_eq!(ex.tokens_seen, 20);
        assert_eq!(ex.requested_model.as_deref(), Some("m"));
    }
    // The idle clients are still held: nothing was read or closed on them.
    for mut c in &idle {
        c.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 1];
        let e = c.read(&mut b).expect_err("no answer, no close");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}

#[test]
fn a_stalled_upstream_is_let_go_after_the_idle_limit_and_said_so() {
    let up = fake(Arc::new(|_, s| {
        let _ = s.write_all(SSE_HEAD.as_bytes());
        let _ = chunk(s, sse_line("Hel").as_bytes());
        // Then nothing for far longer than the limit.
        std::thread::sleep(Duration::from_secs(8));
    }));
    let mut p = RawProxy::start_with(
        &format!("http://{up}"),
        idle_after(Duration::from_millis(600)),
    );
    let t = Instant::now();
    let got = post(p.addr(), "/v1/chat/completions", "{\"stream\":true}");
    let took = t.elapsed();
    assert_eq!(got.status, 200);
    assert!(got.truncated, "the client sees the stream cut");
    assert_eq!(got.text(), sse_line("Hel"));
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(
        took < Duration::from_secs(6),
        "let go at the limit, not the upstream's end: {took:?}"
    );
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(
        ex.outcome,
        Outcome::UpstreamBroke("the upstream sent nothing for 0.6 s".into())
    );
    assert_eq!(ex.tokens_seen, 1);
}

#[test]
fn the_idle_limit_is_not_a_total_cap() {
    // Eight tokens 250 ms apart: 2 s in all, four times the 500 ms limit, never idle that long.
    let (handler, want) = sse_stream(8, Duration::from_millis(250));
    let up = fake(handler);
    let mut p = RawProxy::start_with(
        &format!("http://{up}"),
        idle_after(Duration::from_millis(500)),
    );
    let got = post(p.addr(), "/v1/chat/completions", "{\"stream\":true}");
    assert_eq!(got.status, 200);
    assert!(!got.truncated);
    assert_eq!(got.body, want);
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.outcome, Outcome::Complete);
    assert!(ex.t1 - ex.t0 > 1.5, "{} s", ex.t1 - ex.t0);
}

#[test]
fn a_client_that_stops_reading_is_let_go_and_said_so() {
    // An upstream with far more to say than the socket buffers on the way hold.
    let up = fake(Arc::new(|_, s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..2000 {
            if chunk(s, &block).is_err() {
                return;
            }
        }
    }));
    let mut p = RawProxy::start_with(
        &format!("http://{up}"),
        idle_after(Duration::from_millis(500)),
    );
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut head = [0u8; 12];
    c.read_exact(&mut head).expect("the answer starts");
    assert_eq!(&head, b"HTTP/1.1 200");
    // Read nothing more: buffers fill, nothing moves, the proxy lets go.
    let ex = p.finished(Duration::from_secs(20));
    assert_eq!(
        ex.outcome,
        Outcome::Cut("the client took nothing for 0.5 s".into())
    );
    assert!(ex.bytes_out < 2000 * 64 * 1024, "{}", ex.bytes_out);
}

#[test]
fn a_client_that_leaves_while_the_upstream_thinks_is_still_reported() {
    // The upstream answers after 3 s (a non-streaming reply being generated).
    let up = fake(Arc::new(|_, s| {
        std::thread::sleep(Duration::from_secs(3));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let mut c = TcpStream::connect(p.addr()).expect("connect");
    let body = "{\"model\":\"slow\"}";
    write!(
        c,
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    drop(c);
    // Reported when the client left, not when the upstream answered (before, never).
    let ex = p.finished(Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(ex.outcome, Outcome::ClientClosed);
    assert_eq!(ex.requested_model.as_deref(), Some("slow"));
    assert_eq!(ex.status, 0, "no answer came");
}

#[test]
fn a_stop_lets_exchanges_finish_within_its_grace_then_cuts_the_rest() {
    // Ten tokens 100 ms apart: 1 s.
    let (handler, want) = sse_stream(10, Duration::from_millis(100));
    let up = fake(handler);
    for (grace, whole) in [
        (Duration::from_secs(5), true),
        (Duration::from_millis(200), false),
    ] {
        let RawProxy { proxy, mut events } = RawProxy::start(&format!("http://{up}"));
        let addr = proxy.local_addr();
        let client =
            std::thread::spawn(move || post(addr, "/v1/chat/completions", "{\"stream\":true}"));
        // Stop once the stream is under way.
        let started = Instant::now();
        while !matches!(
            events.try_recv(),
            Ok(llmtop::proxy::tap::ProxyEvent::Started { .. })
        ) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no request came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(150));
        let t = Instant::now();
        proxy.stop(grace);
        let stopping = t.elapsed();
        let got = client.join().expect("client");
        let ex = finished(&mut events, Duration::from_secs(5));
        if whole {
            assert!(!got.truncated);
            assert_eq!(got.body, want);
            assert_eq!(ex.outcome, Outcome::Complete);
            assert!(stopping < Duration::from_secs(4), "{stopping:?}");
        } else {
            assert!(got.truncated, "cut at the end of the grace");
            assert_eq!(ex.outcome, Outcome::Cut("the proxy stopped".into()));
            assert!(stopping < Duration::from_millis(900), "{stopping:?}");
        }
        // Stopped: nothing listens there any more.
        assert!(TcpStream::connect(addr).is_err(), "still accepting");
    }
}
