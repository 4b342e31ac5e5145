//! The proxy under load, with the books on a live synthetic machine, as `llmtop proxy` runs
//! them: 200 streams at once against an upstream that streams at a set pace, and 2 000 short
//! requests one after another. Every request is recorded exactly once, with the tokens the
//! upstream sent, and the records' energies add up to the ledger's energy over the span.

use super::live::{LiveMachine, Profile, assert_within};
use super::proxy_hostile::{Handler, chunk, fake, sse_line};
use super::proxy_llama::{ledger_energy, meter};
use super::{BookedProxy, request};
use llmtop::accounting::ledger_for;
use llmtop::accounting::pricing::Tariff;
use llmtop::proxy::record::RequestRecord;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The prompt tokens every answer's usage reports.
const PROMPT: u64 = 11;

/// Tokens the client asks for, in an `X-Tokens` header (the stand-in reads heads only).
fn wanted(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-tokens")
                .then(|| v.trim().parse().ok())?
        })
        .expect("X-Tokens header passed through")
}

/// The SSE body of an `n`-token answer, usage last, byte for byte.
fn sse_body(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(sse_line(&format!("t{i}")).as_bytes());
    }
    body.extend_from_slice(usage_line(n).as_bytes());
    body.extend_from_slice(b"data: [DONE]\n\n");
    body
}

fn usage_line(n: usize) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"model":"fake",
            "usage":{"prompt_tokens":PROMPT,"completion_tokens":n,"total_tokens":PROMPT + n as u64}})
    )
}

/// An OpenAI-style upstream streaming `X-Tokens` tokens `gap` apart, once `together`
/// requests have arrived (so that many are in flight at once, each on its own connection).
fn paced_sse(gap: Duration, together: usize) -> Handler {
    let arrived = Arc::new(AtomicUsize::new(0));
    Arc::new(move |head, s| {
        let n = wanted(head);
        arrived.fetch_add(1, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(120);
        while arrived.load(Ordering::SeqCst) < together && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        // One request a connection, and said so: the proxy must not pool it.
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        for i in 0..n {
            std::thread::sleep(gap);
            if chunk(s, sse_line(&format!("t{i}")).as_bytes()).is_err() {
                return;
            }
        }
        let _ = chunk(s, usage_line(n).as_bytes());
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    })
}

/// A plain JSON answer of `X-Tokens` completion tokens, with its usage.
fn short_json() -> Handler {
    Arc::new(|head, s| {
        let n = wanted(head);
        let body = serde_json::json!({"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],
            "model":"fake","usage":{"prompt_tokens":PROMPT,"completion_tokens":n,"total_tokens":PROMPT + n as u64}})
        .to_string();
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

/// A booked proxy on a flat 40 W + 100 W machine in front of `handler`.
fn booked(handler: Handler) -> (BookedProxy, LiveMachine) {
    let up = fake(handler);
    let machine = LiveMachine::start(Profile::flat(40.0, 100.0, 0.0));
    let m = meter(&machine);
    let ledger = ledger_for(&m, Tariff::preset("DE").expect("DE"));
    (
        BookedProxy::start(&format!("http://{up}"), m, ledger),
        machine,
    )
}

/// Exactly `n` records settle, none twice, and no more come; the ledger when done.
fn settle_exactly(
    proxy: BookedProxy,
    n: usize,
) -> (
    Vec<RequestRecord>,
    llmtop::accounting::ledger::Ledger,
    Vec<(f64, f64)>,
) {
    proxy.wait_records(n, Duration::from_secs(120));
    // Anything late (a second record of one request) would come with the next samples.
    std::thread::sleep(Duration::from_millis(1500));
    let records = proxy.records.lock().expect("records").clone();
    let spans = proxy.spans.lock().expect("spans").clone();
    let ledger = proxy.stop();
    assert_eq!(records.len(), n, "one record a request");
    let ids: HashSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), n, "no request recorded twice");
    assert_eq!(spans.len(), n);
    (records, ledger, spans)
}

/// The records' energies add up to the ledger's over the requests' spans; the ledger is right
/// about the 140 W machine.
fn energies_add_up(
    records: &[RequestRecord],
    ledger: &llmtop::accounting::ledger::Ledger,
    spans: &[(f64, f64)],
) {
    let sum: f64 = records
        .iter()
        .map(|r| {
            let e = r
                .energy
                .as_ref()
                .unwrap_or_else(|| panic!("energy settled: {r:?}"));
            assert!(e.joules >= 0.0, "{r:?}");
            e.joules
        })
        .sum();
    let (want, covered) = ledger_energy(ledger, spans);
    assert!(covered > 0.0);
    assert_within("records' J vs the ledger's J", sum, want, 0.01);
    assert_within("ledger J vs true J", want, 140.0 * covered, 0.03);
}

#[test]
fn two_hundred_concurrent_streams_are_each_recorded_once_with_their_tokens_and_energy() {
    const N: usize = 200;
    let t = Instant::now();
    let (proxy, _machine) = booked(paced_sse(Duration::from_millis(20), N));
    let addr = proxy.addr();
    // 5 to 34 tokens each, 20 ms apart: 0.1 to 0.7 s of streaming once all 200 are in.
    let tokens = |i: usize| 5 + i % 30;
    let clients: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || {
                let n = tokens(i).to_string();
                let got = request(
                    addr,
                    "POST",
                    "/v1/chat/completions",
                    "{\"model\":\"m\",\"stream\":true}",
                    &[("X-Tokens", &n)],
                    true,
                );
                (i, got)
            })
        })
        .collect();
    let mut by_client = HashMap::new();
    for c in clients {
        let (i, got) = c.join().expect("client");
        assert_eq!(got.status, 200, "{}", got.text());
        assert!(!got.truncated);
        assert_eq!(got.body, sse_body(tokens(i)), "byte for byte");
        // All 200 were connected at once: no two share a client address.
        assert!(by_client.insert(got.local.to_string(), i).is_none());
    }
    let streamed = t.elapsed();
    let (records, ledger, spans) = settle_exactly(proxy, N);
    for r in &records {
        let i = by_client[&r.client];
        assert_eq!(r.status, 200);
        assert_eq!(r.outcome, "complete", "{r:?}");
        assert_eq!(r.generated_tokens, Some(tokens(i) as u64), "{r:?}");
        assert_eq!(r.prompt_tokens, Some(PROMPT), "{r:?}");
        assert_eq!(r.bytes_out, sse_body(tokens(i)).len() as u64);
        assert!(r.ttft_s.is_some_and(|f| f > 0.0 && f <= r.wall_s), "{r:?}");
    }
    // They overlapped: the energy of shared intervals was split.
    assert!(
        records
            .iter()
            .filter(|r| r.energy.as_ref().is_some_and(|e| e.shared_s > 0.0))
            .count()
            > N / 2
    );
    energies_add_up(&records, &ledger, &spans);
    eprintln!(
        "{N} concurrent streams: streamed in {streamed:.2?}, settled and checked in {:.2?}",
        t.elapsed()
    );
}

#[test]
fn two_thousand_short_requests_in_sequence_are_each_recorded_once() {
    const N: usize = 2000;
    let t = Instant::now();
    let (proxy, _machine) = booked(short_json());
    let addr = proxy.addr();
    let tokens = |i: usize| 1 + i % 7;
    for i in 0..N {
        let n = tokens(i).to_string();
        let got = request(
            addr,
            "POST",
            "/v1/chat/completions",
            "{\"model\":\"m\"}",
            &[("X-Tokens", &n)],
            true,
        );
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
    }
    let sent = t.elapsed();
    let (mut records, ledger, spans) = settle_exactly(proxy, N);
    // One at a time: the proxy numbers them in the order they came.
    records.sort_by_key(|r| r.id);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.outcome, "complete", "{r:?}");
        assert_eq!(
            r.generated_tokens,
            Some(tokens(i) as u64),
            "request {i}: {r:?}"
        );
        assert_eq!(r.prompt_tokens, Some(PROMPT), "{r:?}");
    }
    energies_add_up(&records, &ledger, &spans);
    eprintln!(
        "{N} short requests in sequence: sent in {sent:.2?} ({:.2} ms each), settled and checked in {:.2?}",
        sent.as_secs_f64() * 1000.0 / N as f64,
        t.elapsed()
    );
}

#[test]
fn the_real_llama_server_at_parallel_four_gets_each_of_eight_streams_recorded_once() {
    use super::proxy_llama::timings;
    use super::servers::{LlamaServer, Options};
    const N: usize = 8;
    let t = Instant::now();
    let server = LlamaServer::start_with(Options {
        parallel: 4,
        ..Options::default()
    });
    let machine = LiveMachine::start(Profile::flat(40.0, 100.0, 0.0));
    let m = meter(&machine);
    let ledger = ledger_for(&m, Tariff::preset("DE").expect("DE"));
    let proxy = BookedProxy::start(&server.url(), m, ledger);
    let addr = proxy.addr();
    let clients: Vec<_> = (0..N)
        .map(|i| {
            std::thread::spawn(move || {
                let body = serde_json::json!({
                    "model": "smol", "stream": true, "temperature": 0, "seed": 42,
                    "max_tokens": 8 + i,
                    "messages": [{"role": "user", "content": format!("Name {} animals.", i + 2)}],
                })
                .to_string();
                super::post(addr, "/v1/chat/completions", &body)
            })
        })
        .collect();
    let got: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let (records, ledger, spans) = settle_exactly(proxy, N);
    for g in &got {
        assert_eq!(g.status, 200, "{}", g.text());
        assert!(!g.truncated);
        let r = records
            .iter()
            .find(|r| r.client == g.local.to_string())
            .unwrap_or_else(|| panic!("a record for client {}", g.local));
        let (prompt_n, cache_n, predicted_n) = timings(&g.text());
        assert_eq!(r.prompt_tokens, Some(prompt_n), "{r:?}");
        assert_eq!(r.cached_tokens, Some(cache_n), "{r:?}");
        assert_eq!(r.generated_tokens, Some(predicted_n), "{r:?}");
        assert_eq!(r.outcome, "complete");
        assert_eq!(r.bytes_out, g.body.len() as u64);
    }
    energies_add_up(&records, &ledger, &spans);
    eprintln!(
        "{N} streams on llama-server --parallel 4: {:.2?} with the server's start",
        t.elapsed()
    );
}
