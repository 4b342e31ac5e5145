//! The real llama-server behind the real proxy.

use super::live::{LiveMachine, Profile, assert_within};
use super::servers::{LlamaServer, Options};
use super::{BookedProxy, RawProxy, post, sse_content, sse_json};
use llmtop::accounting::ledger::Ledger;
use llmtop::config::SensorsSection;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Meter, discover_with};
use std::time::Duration;

fn chat(prompt: &str, max_tokens: u32) -> String {
    serde_json::json!({
        "model": "smol",
        "stream": true,
        "temperature": 0,
        "seed": 42,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
}

pub fn meter(m: &LiveMachine) -> Meter {
    let section = SensorsSection {
        sysfs_root: m.root.clone(),
        rate_hz: 4.0,
        ..SensorsSection::default()
    };
    let opts = DiscoverOptions {
        sysfs: Sysfs::new(&m.root),
        nvml: false,
        system: false,
        probe_plugs: false,
        proc_stat: "/proc/stat".into(),
    };
    Meter::discovered(discover_with(&section, &opts), section.rate_hz)
}

/// The final `timings` of an SSE body: (prompt_n, cache_n, predicted_n).
fn timings(body: &str) -> (u64, u64, u64) {
    let t = sse_json(body)
        .into_iter()
        .rev()
        .find_map(|v| v.get("timings").cloned())
        .expect("llama-server sent timings");
    let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("timings.{k}"));
    (n("prompt_n"), n("cache_n"), n("predicted_n"))
}

/// Joules the ledger holds over the union of `spans`.
pub fn ledger_energy(ledger: &Ledger, spans: &[(f64, f64)]) -> (f64, f64) {
    let mut s = spans.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (a, b) in s {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
        .iter()
        .filter_map(|&(a, b)| ledger.energy_between(a, b))
        .fold((0.0, 0.0), |acc, (j, s)| (acc.0 + j, acc.1 + s))
}

#[test]
fn three_streaming_clients_get_records_with_the_servers_counts_and_the_ledgers_energy() {
    let server = LlamaServer::start_with(Options {
        parallel: 3,
        ..Options::default()
    });
    // 40 W CPU + 100 W GPU, flat: the components total is 140 W whatever the load.
    let machine = LiveMachine::start(Profile::flat(40.0, 100.0, 0.0));
    let m = meter(&machine);
    let ledger = llmtop::accounting::ledger_for(
        &m,
        llmtop::accounting::pricing::Tariff::preset("DE").expect("DE"),
    );
    let proxy = BookedProxy::start(&server.url(), m, ledger);
    let addr = proxy.addr();
    let prompts = [
        ("Say hello to the reader.", 24),
        ("Count from one to ten, in words.", 32),
        ("Name three colours of the rainbow.", 16),
    ];
    let clients: Vec<_> = prompts
        .iter()
        .map(|&(p, n)| std::thread::spawn(move || post(addr, "/v1/chat/completions", &chat(p, n))))
        .collect();
    let got: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let records = proxy.wait_records(3, Duration::from_secs(60));
    let spans = proxy.spans.lock().expect("spans").clone();
    let ledger = proxy.stop();
    assert_eq!(records.len(), 3);
    let mut sum = 0.0;
    for g in &got {
        assert_eq!(g.status, 200, "{}", g.text());
        assert!(!g.truncated);
        assert_eq!(
            g.header("content-type").as_deref(),
            Some("text/event-stream")
        );
        let r = records
            .iter()
            .find(|r| r.client == g.local.to_string())
            .unwrap_or_else(|| panic!("a record for client {}", g.local));
        let (prompt_n, cache_n, predicted_n) = timings(&g.text());
        assert_eq!(r.prompt_tokens, Some(prompt_n), "{r:?}");
        assert_eq!(r.cached_tokens, Some(cache_n), "{r:?}");
        assert_eq!(r.generated_tokens, Some(predicted_n), "{r:?}");
        assert_eq!(r.backend, "llama-server");
        assert_eq!(r.endpoint, "/v1/chat/completions");
        assert_eq!(r.bytes_out, g.body.len() as u64);
        assert!(r.ttft_s.is_some_and(|t| t > 0.0 && t < r.wall_s), "{r:?}");
        assert!(r.decode_tok_s.is_some_and(|v| v > 0.0));
        let e = r.energy.as_ref().expect("energy settled");
        assert_eq!(e.method, "attributed");
        assert_eq!(e.covers.as_deref(), Some("sum of parts"));
        assert!(!e.net_of_idle);
        assert!(e.prompt_token_weight > 0.0 && e.weight_from.contains("server timings"));
        assert!(r.cost.is_some_and(|c| c > 0.0) && r.currency.as_deref() == Some("EUR"));
        sum += e.joules;
    }
    // The three overlapped: each got a part of shared intervals.
    assert!(
        records
            .iter()
            .all(|r| r.energy.as_ref().is_some_and(|e| e.shared_s > 0.0))
    );
    let (want, covered) = ledger_energy(&ledger, &spans);
    assert_within("attributed J vs the ledger's J", sum, want, 0.01);
    // And the ledger itself is right about the machine: 140 W over the time it covered.
    assert_within("ledger J vs true J", want, 140.0 * covered, 0.03);
}

#[test]
fn a_proxied_stream_parses_the_same_as_a_direct_one() {
    let server = LlamaServer::start();
    let mut proxy = RawProxy::start(&server.url());
    let body = chat("Write one short sentence about the sea.", 24);
    let direct = post(server.addr, "/v1/chat/completions", &body);
    let via = post(proxy.addr(), "/v1/chat/completions", &body);
    let ex = proxy.finished(Duration::from_secs(30));
    assert_eq!(direct.status, 200);
    assert_eq!(via.status, 200);
    assert_eq!(direct.header("content-type"), via.header("content-type"));
    let (d, v) = (direct.text(), via.text());
    assert!(!sse_content(&d).is_empty());
    assert_eq!(sse_content(&d), sse_content(&v), "temperature 0, same seed");
    let chunks = |b: &str| sse_json(b).len();
    assert_eq!(chunks(&d), chunks(&v));
    let (_, _, pd) = timings(&d);
    let (_, _, pv) = timings(&v);
    assert_eq!(pd, pv);
    // The tap saw every generated token as it passed.
    assert_eq!(ex.tokens_seen, ex.token_times.len() as u64);
    assert!(ex.token_times.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(ex.bytes_out, via.body.len() as u64);
    // Non-streamed too: the same JSON body.
    let plain = body.replace("\"stream\":true", "\"stream\":false");
    let d = post(server.addr, "/v1/chat/completions", &plain);
    let v = post(proxy.addr(), "/v1/chat/completions", &plain);
    let content = |g: &super::Got| {
        let j: serde_json::Value = serde_json::from_slice(&g.body).expect("JSON body");
        j["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    };
    assert_eq!(content(&d), content(&v));
    let ex = proxy.finished(Duration::from_secs(30));
    let f = ex.figures.expect("figures from the body");
    assert!(f.generated_tokens.is_some());
}
