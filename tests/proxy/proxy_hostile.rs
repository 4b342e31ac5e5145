//! Hostile upstreams, served by the test on 127.0.0.1: a malformed stream, a 10 MB line, a
//! slow server, an upstream down at start and one that breaks off mid-stream, HTTP errors.
//! The proxy passes what it gets, never crashes, never holds a whole stream.

use super::{RawProxy, post, request, rss_bytes};
use llmtop::proxy::tap::{BUFFERED, Outcome};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub type Handler = Arc<dyn Fn(&str, &mut TcpStream) + Send + Sync>;

/// A fake upstream: each connection's request head (and body) is read, then `handler`
/// writes whatever it likes.
pub fn fake(handler: Handler) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind fake");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let h = handler.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&raw).into_owned();
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let head_len = text.find("\r\n\r\n").map_or(0, |i| i + 4);
                let mut have = raw.len() - head_len;
                while have < len {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => have += n,
                    }
                }
                h(&text, &mut s);
            });
        }
    });
    addr
}

pub fn chunk(s: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    write!(s, "{:x}\r\n", data.len())?;
    s.write_all(data)?;
    s.write_all(b"\r\n")?;
    s.flush()
}

pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

pub fn sse_line(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices":[{"index":0,"delta":{"content":content}}],"model":"fake"})
    )
}

#[test]
fn a_malformed_stream_passes_unchanged_and_is_reported() {
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = sent.clone();
    let up = fake(Arc::new(move |_, s| {
        let mut all = Vec::new();
        let _ = s.write_all(SSE_HEAD.as_bytes());
        for piece in [
            sse_line("Hel"),
            "data: {not json at all\n\n".to_string(),
            "\u{1b}[31mgarbage\u{7} line\n\n".to_string(),
            sse_line("lo"),
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\ndata: [DONE]\n\n".to_string(),
        ] {
            all.extend_from_slice(piece.as_bytes());
            let _ = chunk(s, piece.as_bytes());
        }
        let _ = s.write_all(b"0\r\n\r\n");
        *keep.lock().expect("sent") = all;
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let got = post(
        p.addr(),
        "/v1/chat/completions",
        "{\"model\":\"m\",\"stream\":true}",
    );
    assert_eq!(got.status, 200);
    assert!(!got.truncated);
    assert_eq!(got.body, *sent.lock().expect("sent"), "byte for byte");
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.outcome, Outcome::Complete);
    assert_eq!(ex.tokens_seen, 2);
    assert!(!ex.wire_errors.is_empty(), "{ex:?}");
    let f = ex.figures.expect("usage read");
    assert_eq!(f.generated_tokens.map(|n| n.value), Some(2));
    assert_eq!(ex.requested_model.as_deref(), Some("m"));
    // Still serving.
    let again = post(p.addr(), "/v1/chat/completions", "{}");
    assert_eq!(again.status, 200);
}

#[test]
fn a_ten_megabyte_line_streams_through_without_being_held() {
    const LINE: usize = 30 * 1024 * 1024;
    let up = fake(Arc::new(|_, s| {
        let _ = s.write_all(SSE_HEAD.as_bytes());
        let _ = chunk(s, sse_line("a").as_bytes());
        let _ = chunk(s, b"data: {\"x\":\"");
        let block = vec![b'A'; 64 * 1024];
        let mut n = 0;
        while n < LINE {
            if chunk(s, &block).is_err() {
                return;
            }
            n += block.len();
        }
        let _ = chunk(s, b"\"}\n\n");
        let _ = chunk(s, sse_line("b").as_bytes());
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(before));
    let max_buffered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, mb) = (peak.clone(), done.clone(), max_buffered.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                mb.fetch_max(BUFFERED.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // The client counts the bytes and keeps none.
    let got = request(p.addr(), "POST", "/v1/chat/completions", "{}", &[], false);
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let received: usize = got.arrivals.iter().map(|(_, n)| n).sum();
    assert_eq!(got.status, 200);
    assert!(!got.truncated);
    assert!(received > LINE, "{received}");
    let ex = p.finished(Duration::from_secs(30));
    assert_eq!(ex.bytes_out as usize, received);
    assert_eq!(ex.tokens_seen, 2, "the lines after the long one still read");
    assert!(
        ex.wire_errors
            .iter()
            .any(|e| e.contains("line over") && e.contains("dropped")),
        "{:?}",
        ex.wire_errors
    );
    let grew = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "30 MiB line: RSS grew {:.1} MiB at most, taps held {} bytes at most",
        grew as f64 / 1048576.0,
        max_buffered.load(Ordering::Relaxed)
    );
    assert!(
        grew < 12 * 1024 * 1024,
        "RSS grew {grew} bytes for a 30 MiB line"
    );
    assert!(max_buffered.load(Ordering::Relaxed) <= 64 * 1024);
}

#[test]
fn a_slow_server_streams_each_chunk_as_it_comes() {
    let up = fake(Arc::new(|_, s| {
        let _ = s.write_all(SSE_HEAD.as_bytes());
        for w in ["one", " two", " three", " four"] {
            let _ = chunk(s, sse_line(w).as_bytes());
            std::thread::sleep(Duration::from_millis(400));
        }
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let got = post(p.addr(), "/v1/chat/completions", "{}");
    assert_eq!(got.status, 200);
    let first = got.arrivals.first().expect("a first piece").0;
    let last = got.arrivals.last().expect("a last piece").0;
    assert!(first < 0.3, "first chunk after {first:.3} s: buffered");
    assert!(last > 1.2, "{last}");
    assert!(got.arrivals.len() >= 4, "{:?}", got.arrivals);
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.tokens_seen, 4);
    let gaps: Vec<f64> = ex.token_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g > 0.3), "token times {gaps:?}");
}

#[test]
fn an_upstream_down_at_start_is_a_502_with_one_line_and_the_proxy_stays_up() {
    // A port with nothing listening.
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut p = RawProxy::start(&format!("http://{dead}"));
    for _ in 0..3 {
        let got = post(p.addr(), "/api/chat", "{\"model\":\"llama3\"}");
        assert_eq!(got.status, 502);
        let text = got.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        // The network's one vocabulary: the URL asked, the cause, the fix.
        assert!(
            text.starts_with(&format!(
                "llmtop proxy: http://{dead}/api/chat: nothing answers ("
            )),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(text.contains("is the server running?"), "{text}");
        let ex = p.finished(Duration::from_secs(10));
        assert!(matches!(ex.outcome, Outcome::Unreachable(_)));
        assert_eq!(ex.status, 502);
    }
}

#[test]
fn an_upstream_that_dies_mid_stream_cuts_the_client_and_the_proxy_stays_up() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let up = fake(Arc::new(move |_, s| {
        if c.fetch_add(1, Ordering::Relaxed) == 0 {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let _ = chunk(
                s,
                b"{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
            );
            std::thread::sleep(Duration::from_millis(100));
            // Gone, mid-chunk, without the final chunk.
            let _ = s.write_all(b"40\r\n{\"model\":");
            let _ = s.shutdown(std::net::Shutdown::Both);
        } else {
            let body = "{\"models\":[]}";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let got = post(p.addr(), "/api/chat", "{\"model\":\"llama3\"}");
    assert_eq!(got.status, 200);
    assert!(got.truncated, "the client must see the stream was cut");
    let ex = p.finished(Duration::from_secs(10));
    assert!(
        matches!(ex.outcome, Outcome::UpstreamBroke(_)),
        "{:?}",
        ex.outcome
    );
    assert_eq!(ex.tokens_seen, 1);
    let next = request(p.addr(), "GET", "/api/tags", "", &[], true);
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "{\"models\":[]}");
}

#[test]
fn http_errors_pass_through_with_their_body_and_hop_by_hop_headers_do_not() {
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let keep = seen.clone();
    let up = fake(Arc::new(move |head, s| {
        *keep.lock().expect("seen") = head.to_string();
        let body = "{\"error\":\"model \\\"nope\\\" not found, try pulling it first\"}";
        let _ = write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-Upstream: yes\r\nKeep-Alive: timeout=5\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }));
    let mut p = RawProxy::start(&format!("http://{up}"));
    let got = request(
        p.addr(),
        "POST",
        "/api/generate?x=1",
        "{\"model\":\"nope\"}",
        &[
            ("X-Client", "kept"),
            ("X-Secret-Hop", "dropped"),
            ("Proxy-Authorization", "Basic eA=="),
            ("TE", "trailers"),
        ],
        true,
    );
    assert_eq!(got.status, 404);
    assert_eq!(
        got.text(),
        "{\"error\":\"model \\\"nope\\\" not found, try pulling it first\"}"
    );
    assert_eq!(got.header("x-upstream").as_deref(), Some("yes"));
    assert_eq!(got.header("keep-alive"), None);
    let head = seen.lock().expect("seen").to_lowercase();
    assert!(
        head.starts_with("post /api/generate?x=1 http/1.1"),
        "{head}"
    );
    assert!(head.contains("x-client: kept"));
    assert!(!head.contains("proxy-authorization"));
    assert!(!head.contains("\r\nte:"));
    assert!(head.contains(&format!("host: {up}")), "{head}");
    let ex = p.finished(Duration::from_secs(10));
    assert_eq!(ex.status, 404);
    assert!(
        ex.wire_errors.iter().any(|e| e.contains("not found")),
        "{:?}",
        ex.wire_errors
    );
    // Connection names a header as hop-by-hop: it is not forwarded either.
    let _ = request(
        p.addr(),
        "GET",
        "/api/tags",
        "",
        &[
            ("X-Secret-Hop", "dropped"),
            ("Connection", "close, X-Secret-Hop"),
        ],
        true,
    );
    let head = seen.lock().expect("seen").to_lowercase();
    assert!(!head.contains("x-secret-hop"), "{head}");
}
