//! Records: the JSONL log rotates by size and keeps N files; the per-model Prometheus
//! families carry exactly the names and labels agreed with the dashboards (split10.md).

use llmtop::accounting::pricing::Tariff;
use llmtop::export::prometheus::{MetricsState, RequestMetrics};
use llmtop::proxy::record::{RequestLog, RequestRecord, SCHEMA};
use llmtop::proxy::tap::model_in;

fn record(id: u64) -> RequestRecord {
    RequestRecord {
        schema: SCHEMA.into(),
        id,
        time: None,
        client: "127.0.0.1:1".into(),
        method: "POST".into(),
        endpoint: "/api/chat".into(),
        status: 200,
        outcome: "complete".into(),
        error: None,
        model: Some("llama3".into()),
        backend: "ollama".into(),
        prompt_tokens: Some(10),
        cached_tokens: None,
        generated_tokens: Some(5),
        tokens_from: "Ollama's final object".into(),
        ttft_s: None,
        prefill_tok_s: None,
        decode_tok_s: None,
        rates_from: "server".into(),
        wall_s: 1.0,
        bytes_in: 1,
        bytes_out: 2,
        energy: None,
        cost: None,
        cost_text: None,
        currency: None,
        region: None,
        co2_g: None,
        wire_errors: Vec::new(),
    }
}

#[test]
fn the_log_rotates_by_size_and_keeps_n_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("requests.jsonl");
    let line = serde_json::to_string(&record(1)).expect("json").len() as u64 + 1;
    // Four records a file, three old files kept.
    let mut log = RequestLog::open(&path, 4 * line + 4, 3).expect("open");
    for id in 0..30 {
        log.append(&record(id)).expect("append");
    }
    let ids = |p: &std::path::Path| -> Vec<u64> {
        std::fs::read_to_string(p)
            .expect("read")
            .lines()
            .map(|l| {
                let r: RequestRecord = serde_json::from_str(l).expect("a whole record a line");
                r.id
            })
            .collect()
    };
    assert_eq!(ids(&path), vec![28, 29]);
    assert_eq!(
        ids(&dir.path().join("requests.jsonl.1")),
        vec![24, 25, 26, 27]
    );
    assert_eq!(
        ids(&dir.path().join("requests.jsonl.3")),
        vec![16, 17, 18, 19]
    );
    assert!(!dir.path().join("requests.jsonl.4").exists());
    // Reopened, it appends and counts what is there.
    drop(log);
    let mut log = RequestLog::open(&path, 4 * line + 4, 3).expect("reopen");
    log.append(&record(30)).expect("append");
    log.append(&record(31)).expect("append");
    log.append(&record(32)).expect("append");
    assert_eq!(ids(&path), vec![32]);
    assert_eq!(
        ids(&dir.path().join("requests.jsonl.1")),
        vec![28, 29, 30, 31]
    );
}

#[test]
fn the_model_is_read_from_a_request_bodys_first_bytes() {
    assert_eq!(
        model_in(br#"{"stream":true, "model" : "llama3:8b","messages":[]}"#).as_deref(),
        Some("llama3:8b")
    );
    assert_eq!(
        model_in(br#"{"messages":[{"content":"the \"model\" word"}],"model":"m\u00e9"}"#)
            .as_deref(),
        Some("m\u{e9}")
    );
    // Cut short inside the name, or none at all.
    assert_eq!(model_in(br#"{"model":"llam"#), None);
    assert_eq!(model_in(b"not json"), None);
}

#[test]
fn per_model_metrics_have_the_agreed_names_and_labels() {
    let tariff = Tariff::preset("DE").expect("DE");
    let mut m = MetricsState::new(Some(tariff));
    let one = RequestMetrics {
        model: "llama3".into(),
        backend: "ollama".into(),
        status: "200".into(),
        prompt_tokens: 10,
        cached_tokens: 4,
        generated_tokens: 20,
        energy_j: Some(30.0),
        cost: Some(0.001),
        co2_g: Some(2.0),
        ttft_s: Some(0.3),
        gen_tok_s: Some(42.0),
    };
    m.record_request(&one);
    m.record_request(&one);
    m.record_request(&RequestMetrics {
        model: "we\"ird\nname".into(),
        status: "502".into(),
        ttft_s: None,
        gen_tok_s: None,
        energy_j: None,
        ..one.clone()
    });
    let text = m.render();
    for line in [
        "llmtop_requests_total{model=\"llama3\",backend=\"ollama\",status=\"200\"} 2",
        "llmtop_requests_total{model=\"we\\\"ird\\nname\",backend=\"ollama\",status=\"502\"} 1",
        "llmtop_model_tokens_total{model=\"llama3\",backend=\"ollama\",kind=\"prompt\"} 20",
        "llmtop_model_tokens_total{model=\"llama3\",backend=\"ollama\",kind=\"cached\"} 8",
        "llmtop_model_tokens_total{model=\"llama3\",backend=\"ollama\",kind=\"generated\"} 40",
        "llmtop_model_energy_joules_total{model=\"llama3\",backend=\"ollama\",method=\"attributed\"} 60",
        "llmtop_model_cost_total{model=\"llama3\",backend=\"ollama\",currency=\"EUR\",region=\"DE\"} 0.002",
        "llmtop_model_co2_grams_total{model=\"llama3\",backend=\"ollama\",region=\"DE\"} 4",
        "llmtop_request_ttft_seconds_bucket{model=\"llama3\",backend=\"ollama\",le=\"0.25\"} 0",
        "llmtop_request_ttft_seconds_bucket{model=\"llama3\",backend=\"ollama\",le=\"0.5\"} 2",
        "llmtop_request_ttft_seconds_bucket{model=\"llama3\",backend=\"ollama\",le=\"+Inf\"} 2",
        "llmtop_request_ttft_seconds_count{model=\"llama3\",backend=\"ollama\"} 2",
        "llmtop_request_ttft_seconds_sum{model=\"llama3\",backend=\"ollama\"} 0.6",
        "llmtop_request_generation_tokens_per_second_bucket{model=\"llama3\",backend=\"ollama\",le=\"50\"} 2",
        "# TYPE llmtop_request_generation_tokens_per_second histogram",
        "# TYPE llmtop_model_energy_joules_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Without requests the families are absent (serve and the dashboard show none).
    let empty = MetricsState::new(None).render();
    assert!(!empty.contains("llmtop_requests_total"));
}

#[test]
fn a_request_the_ledger_never_covers_is_recorded_without_energy() {
    use llmtop::accounting::ledger::Ledger;
    use llmtop::proxy::books::{GIVE_UP_S, ProxyBooks};
    use llmtop::proxy::tap::{Exchange, Outcome, ProxyEvent};
    let ex = Exchange {
        id: 7,
        client: "127.0.0.1:9".parse().expect("addr"),
        method: "POST".into(),
        endpoint: "/api/chat".into(),
        status: 200,
        outcome: Outcome::Complete,
        t0: 1.0,
        t1: 2.0,
        requested_model: Some("llama3".into()),
        first_byte: Some(1.5),
        token_times: vec![1.5, 1.8],
        tokens_seen: 2,
        figures: None,
        wire_errors: Vec::new(),
        bytes_in: 10,
        bytes_out: 20,
    };
    let ledger = Ledger::new(); // no energy source ever reports
    let mut books = ProxyBooks::new(0.0, None);
    books.event(ProxyEvent::Started { id: 7, t0: 1.0 });
    books.event(ProxyEvent::Finished(Box::new(ex)));
    assert!(books.settle(&ledger, 2.0 + GIVE_UP_S - 1.0).is_empty());
    let got = books.settle(&ledger, 2.0 + GIVE_UP_S + 1.0);
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.energy, None);
    assert_eq!(r.model.as_deref(), Some("llama3"));
    assert_eq!(r.generated_tokens, Some(2));
    assert_eq!(r.tokens_from, "counted on the stream");
    assert_eq!(r.ttft_s, Some(0.5));
    assert_eq!(books.pending(), 0);
}
