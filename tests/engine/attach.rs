//! `AttachEngine`: the Engine trait over HTTP, against a stand-in Ollama (its documented shapes
//! and misbehaviour on demand) and against the real llama-server on the default model.
use crate::servers::ollama::{self, FakeOllama, Mode};
use crate::servers::{self, LlamaServer};

use llmtop::engine::remote::engine::{AttachEngine, AttachSettings};
use llmtop::engine::remote::kind::Kind;
use llmtop::engine::{
    self, BackendStatus, Command, EngineEvent, EngineHandle, EngineSettings, ModelInfo, Origin,
    Phase, ReplyStats, StopReason,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn settings() -> EngineSettings {
    let mut s = EngineSettings::with_model(PathBuf::new());
    s.temperature = 0.0;
    s.max_tokens = 32;
    s.stream_every = Duration::ZERO;
    s
}

fn spawn(url: &str, f: impl FnOnce(&mut AttachSettings)) -> EngineHandle {
    let mut a = AttachSettings::new(url);
    f(&mut a);
    let h = engine::spawn(Box::new(AttachEngine {
        attach: a,
        settings: settings(),
    }))
    .expect("spawn");
    h.send(Command::Load);
    h
}

fn next(h: &mut EngineHandle, limit: Duration) -> EngineEvent {
    llmtop::commands::bench::recv_timeout(h, limit)
        .unwrap_or_else(|| panic!("no engine event within {limit:?}"))
}

/// Load (or a model switch): the model info and the server's report once the engine is idle,
/// or the failure line.
fn load(h: &mut EngineHandle) -> Result<(ModelInfo, BackendStatus), String> {
    let (mut info, mut backend) = (None, None);
    loop {
        match next(h, Duration::from_secs(30)) {
            EngineEvent::Loaded(i) => info = Some(i),
            EngineEvent::Backend(b) => backend = Some(*b),
            EngineEvent::Phase(Phase::Idle) => {
                return Ok((
                    info.expect("Loaded before idle"),
                    backend.expect("Backend before idle"),
                ));
            }
            EngineEvent::Failed(e) => return Err(e),
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
struct Turn {
    text: String,
    tokens: u32,
    stats: Option<ReplyStats>,
    failed: Vec<String>,
    backend: Option<BackendStatus>,
    /// When Cancel was sent, and when the reply was over (ReplyDone).
    cancel_at: Option<Instant>,
    done_at: Option<Instant>,
}

/// Events until the engine is idle again; `cancel_after`: send Cancel once this many tokens
/// have arrived.
fn turn(h: &mut EngineHandle, msg: &str, cancel_after: Option<u32>) -> Turn {
    h.send(Command::Send(msg.into()));
    let mut t = Turn::default();
    let mut cancelled = false;
    loop {
        match next(h, Duration::from_secs(120)) {
            EngineEvent::Tokens { text, count } => {
                t.text.push_str(&text);
                t.tokens += count;
                if !cancelled && cancel_after.is_some_and(|n| t.tokens >= n) {
                    cancelled = true;
                    t.cancel_at = Some(Instant::now());
                    h.send(Command::Cancel);
                }
            }
            EngineEvent::ReplyDone(s) => {
                t.done_at = Some(Instant::now());
                t.stats = Some(s);
            }
            EngineEvent::Failed(e) => t.failed.push(e),
            EngineEvent::Backend(b) => t.backend = Some(*b),
            EngineEvent::Phase(Phase::Idle) => return t,
            _ => {}
        }
    }
}

#[test]
fn fake_ollama_reply_with_the_servers_figures_in_seconds() {
    let fake = FakeOllama::start();
    let mut h = spawn(&fake.url(), |_| {});
    let (info, backend) = load(&mut h).expect("attached");
    // No --model: the one the server has loaded.
    assert_eq!(info.name, "llama3.2:latest");
    assert_eq!(
        info.backend.as_deref(),
        Some(format!("Ollama 0.5.7 at {}", fake.addr).as_str())
    );
    assert_eq!(info.quantization, "Q4_K_M");
    assert_eq!(info.n_params, 3_200_000_000);
    assert_eq!(info.n_ctx, 4096, "Ollama's context_length from /api/ps");
    assert_eq!(backend.models, ollama::MODELS);
    assert_eq!(
        backend.loaded[0].placement().as_deref(),
        Some("62 % on GPU")
    );
    // When Ollama unloads it (/api/ps expires_at): the at-rest cost ends there.
    assert_eq!(
        backend.loaded[0].expires(),
        Some("2099-01-01T00:00:00Z".parse().expect("time"))
    );

    let t = turn(&mut h, "What colour is the sky?", None);
    assert!(t.failed.is_empty(), "{:?}", t.failed);
    assert_eq!(t.text, "The sky is blue 😀.");
    assert_eq!(t.tokens, 6, "one token per chunk");
    let s = t.stats.expect("ReplyDone");
    // Ollama's counts and nanoseconds, converted once.
    assert_eq!(s.generated_tokens, 6);
    assert_eq!(s.prompt_tokens, ollama::PROMPT_EVAL_COUNT as u32);
    assert_eq!(s.gen_ms, 2000.0);
    assert_eq!(s.gen_tok_s, 3.0);
    assert_eq!(s.prefill_ms, 250.0);
    assert_eq!(s.prefill_tok_s, 104.0);
    assert_eq!(s.load_ms, Some(1500.0));
    assert_eq!(s.stop, StopReason::EndOfGeneration);
    assert_eq!(s.origins.tokens, Origin::Server);
    assert_eq!(s.origins.generation, Origin::Server);
    // Ollama does not report TTFT: measured here, and said so.
    assert_eq!(s.origins.ttft, Origin::Client);
    assert!(s.ttft_ms > 0.0 && s.ttft_ms < 5000.0, "{}", s.ttft_ms);
    assert!(t.backend.is_some(), "the server's report after the reply");

    // The conversation is sent whole each turn, with the settings.
    let t2 = turn(&mut h, "And at night?", None);
    assert!(t2.stats.is_some());
    let chats = fake.chats();
    assert_eq!(chats.len(), 2);
    let msgs = chats[1]["messages"].as_array().expect("messages");
    let roles: Vec<&str> = msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(msgs[2]["content"], "The sky is blue 😀.");
    assert_eq!(chats[1]["stream"], true);
    assert_eq!(chats[1]["model"], "llama3.2:latest");
    assert_eq!(chats[1]["options"]["num_predict"], 32);
    assert_eq!(chats[1]["options"]["temperature"], 0.0);
    assert_eq!(chats[1]["options"]["seed"], 42);

    // Reset forgets it.
    h.send(Command::Reset);
    turn(&mut h, "Hello", None);
    let chats = fake.chats();
    assert_eq!(chats[2]["messages"].as_array().map(Vec::len), Some(2));
}

#[test]
fn model_by_name_switching_and_an_unknown_name() {
    let fake = FakeOllama::start();
    // Ollama's implied :latest tag.
    let mut h = spawn(&fake.url(), |a| a.model = Some("llama3.2".into()));
    assert_eq!(load(&mut h).expect("attached").0.name, "llama3.2:latest");
    h.send(Command::UseModel("qwen2.5:0.5b".into()));
    let (info, status) = load(&mut h).expect("switched");
    assert_eq!(info.name, "qwen2.5:0.5b");
    assert_eq!(status.current, "qwen2.5:0.5b");
    turn(&mut h, "hi", None);
    assert_eq!(fake.chats()[0]["model"], "qwen2.5:0.5b");

    let mut h = spawn(&fake.url(), |a| a.model = Some("mistral".into()));
    let e = load(&mut h).expect_err("unknown model");
    assert!(
        e.contains("no model \"mistral\"") && e.contains("llama3.2:latest, qwen2.5:0.5b"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn server_down_at_start_wrong_kind_and_http_errors_are_one_line() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let started = Instant::now();
    let mut h = spawn(&format!("http://127.0.0.1:{port}"), |_| {});
    let e = load(&mut h).expect_err("nothing there");
    assert!(
        e.contains("nothing answers") && e.contains("is the server running"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let fake = FakeOllama::start();
    let mut h = spawn(&fake.url(), |a| a.kind = Some(Kind::LlamaServer));
    let e = load(&mut h).expect_err("wrong kind");
    assert!(e.contains("looks like Ollama"), "{e}");

    let mut h = spawn(&fake.url(), |_| {});
    load(&mut h).expect("attached");
    fake.set_mode(Mode::Status(500));
    let t = turn(&mut h, "hi", None);
    assert!(t.stats.is_none());
    assert_eq!(t.failed.len(), 1, "{:?}", t.failed);
    assert!(
        t.failed[0].contains("HTTP 500")
            && t.failed[0].contains("llama runner process has terminated"),
        "{:?}",
        t.failed
    );
    // A model deleted since it was listed: Ollama's 404 and its message.
    fake.set_mode(Mode::Status(404));
    let t = turn(&mut h, "hi", None);
    assert!(
        t.failed.iter().any(|f| f.contains("HTTP 404")),
        "{:?}",
        t.failed
    );
    fake.set_mode(Mode::Html);
    let t = turn(&mut h, "hi", None);
    assert!(
        t.failed
            .iter()
            .any(|f| f.contains("answered with a web page")),
        "{:?}",
        t.failed
    );
    assert_eq!(t.failed.len(), 1, "{:?}", t.failed);
    // The failed questions are not kept in the conversation.
    fake.set_mode(Mode::Normal);
    turn(&mut h, "again", None);
    let last = fake.chats().pop().expect("chat");
    assert_eq!(last["messages"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_stream_that_breaks_is_a_visible_failure_with_what_arrived() {
    let fake = FakeOllama::start();
    let mut h = spawn(&fake.url(), |_| {});
    load(&mut h).expect("attached");

    fake.set_mode(Mode::DropAfter(3));
    let t = turn(&mut h, "hi", None);
    assert_eq!(t.text, "The sky is");
    let s = t.stats.expect("the part that arrived is a reply");
    assert_eq!(s.generated_tokens, 3);
    assert_eq!(
        s.origins.tokens,
        Origin::Client,
        "counted here: no final figures"
    );
    assert!(
        t.failed
            .iter()
            .any(|f| f.contains("cut short") || f.contains("closed the stream")),
        "{:?}",
        t.failed
    );

    fake.set_mode(Mode::ErrorMidStream);
    let t = turn(&mut h, "hi", None);
    assert!(
        t.failed
            .iter()
            .any(|f| f.contains("the server says: an error was encountered")),
        "{:?}",
        t.failed
    );

    fake.set_mode(Mode::MalformedLine);
    let t = turn(&mut h, "hi", None);
    assert_eq!(t.text, "The sky is blue 😀.", "the stream goes on");
    assert_eq!(t.stats.map(|s| s.generated_tokens), Some(6));
    assert!(
        t.failed.iter().any(|f| f.contains("unreadable line")),
        "{:?}",
        t.failed
    );

    // 10 MB in one line: dropped as it arrives, one line says so, the reply completes.
    fake.set_mode(Mode::HugeLine(10 << 20));
    let t = turn(&mut h, "hi", None);
    assert_eq!(t.text, "The sky is blue 😀.");
    assert_eq!(t.failed.len(), 1, "{:?}", t.failed);
    assert!(t.failed[0].contains("over 4 MiB"), "{:?}", t.failed);
}

#[test]
fn esc_on_a_slow_server_stops_at_once_and_closes_the_connection() {
    let fake = FakeOllama::start();
    fake.set_mode(Mode::Slow(Duration::from_millis(400)));
    let mut h = spawn(&fake.url(), |_| {});
    load(&mut h).expect("attached");
    let t = turn(&mut h, "hi", Some(1));
    let s = t.stats.expect("ReplyDone");
    assert_eq!(s.stop, StopReason::Cancelled);
    let took = t.done_at.expect("done") - t.cancel_at.expect("cancelled");
    assert!(took < Duration::from_millis(300), "cancel took {took:?}");
    // The server sees the client leave at its next write.
    let start = Instant::now();
    while !fake.client_gone() && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fake.client_gone(), "the connection was not closed");
}

#[test]
fn a_silent_server_is_given_up_after_the_stall_limit() {
    let fake = FakeOllama::start();
    let mut h = spawn(&fake.url(), |a| a.stall = Duration::from_secs(1));
    load(&mut h).expect("attached");
    fake.set_mode(Mode::Silent);
    let start = Instant::now();
    let t = turn(&mut h, "hi", None);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        t.failed
            .iter()
            .any(|f| f.contains("no answer within 1000 ms; the server is busy or stuck")),
        "{:?}",
        t.failed
    );
}

/// A counter from llama-server's /metrics.
fn metric(server: &LlamaServer, name: &str) -> f64 {
    let (_, body) = servers::get(server.addr, "/metrics").expect("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[test]
fn real_llama_server_counts_and_cancel() {
    let server = LlamaServer::start();
    let mut h = spawn(&server.url(), |_| {});
    let (info, _) = load(&mut h).expect("attached");
    assert_eq!(
        info.backend.as_deref(),
        Some(format!("llama-server at {}", server.addr).as_str())
    );
    assert_eq!(info.name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    // The server runs here and names its model file: the decode roofline reads its tensors.
    assert_eq!(
        info.traffic
            .as_ref()
            .map(|t| (t.weight_bytes, t.kv_bytes_per_position)),
        Some((96_576_768, 23_040))
    );
    assert_eq!(
        info.n_ctx, 2048,
        "llama-server's /props: the context per slot"
    );

    let before = metric(&server, "llamacpp:tokens_predicted_total");
    let t = turn(&mut h, "Name three colours.", None);
    assert!(t.failed.is_empty(), "{:?}", t.failed);
    let s = t.stats.expect("ReplyDone");
    let after = metric(&server, "llamacpp:tokens_predicted_total");
    // The server's own count (timings.predicted_n), checked against its /metrics counter and
    // against the chunks that arrived here (one token each).
    assert_eq!(s.origins.tokens, Origin::Server);
    assert_eq!(f64::from(s.generated_tokens), after - before);
    // llama-server counts the end-of-generation token it decoded (no text, no chunk) in
    // predicted_n: one more than the chunks when the reply ended by itself.
    let eog = u32::from(s.stop == StopReason::EndOfGeneration);
    assert_eq!(
        s.generated_tokens,
        t.tokens + eog,
        "{:?} {:?}",
        s.stop,
        t.text
    );
    assert!(s.generated_tokens > 0 && !t.text.trim().is_empty());
    assert_eq!(s.origins.generation, Origin::Server);
    assert!(s.gen_tok_s > 0.0 && s.prefill_tok_s > 0.0);
    assert!(s.prompt_tokens > 0);

    // Cancel mid-reply: the slot is free again within a second or two.
    let mut long = settings();
    long.max_tokens = 4000;
    let mut a = AttachSettings::new(server.url());
    a.kind = Some(Kind::LlamaServer);
    let mut h = engine::spawn(Box::new(AttachEngine {
        attach: a,
        settings: long,
    }))
    .expect("spawn");
    h.send(Command::Load);
    load(&mut h).expect("attached");
    let t = turn(
        &mut h,
        "Write a very long story about a lighthouse keeper.",
        Some(3),
    );
    assert_eq!(t.stats.expect("ReplyDone").stop, StopReason::Cancelled);
    let took = t.done_at.expect("done") - t.cancel_at.expect("cancelled");
    assert!(took < Duration::from_millis(500), "cancel took {took:?}");
    let start = Instant::now();
    loop {
        let (_, slots) = servers::get(server.addr, "/slots").expect("/slots");
        let v: serde_json::Value = serde_json::from_str(&slots).expect("slots JSON");
        let busy = v
            .as_array()
            .expect("slots array")
            .iter()
            .any(|s| s["is_processing"] == true);
        if !busy {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "slot still processing {:?} after cancel: {slots}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Text leaves the engine at most once per `stream_every` (the first piece at once), like the
/// llama engine's, with every chunk's token counted.
#[test]
fn text_leaves_at_the_stream_pace() {
    let fake = FakeOllama::start();
    fake.set_mode(Mode::Slow(Duration::from_millis(40)));
    let mut s = settings();
    s.stream_every = Duration::from_millis(150);
    let mut h = engine::spawn(Box::new(AttachEngine {
        attach: AttachSettings::new(fake.url()),
        settings: s,
    }))
    .expect("spawn");
    h.send(Command::Load);
    load(&mut h).expect("attached");
    h.send(Command::Send("hi".into()));
    let mut events = Vec::new();
    loop {
        match next(&mut h, Duration::from_secs(30)) {
            EngineEvent::Tokens { text, count } => events.push((Instant::now(), text, count)),
            EngineEvent::Phase(Phase::Idle) => break,
            _ => {}
        }
    }
    assert_eq!(events[0].1, "The", "the first piece goes at once");
    assert_eq!(events[0].2, 1);
    let text: String = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(text, "The sky is blue 😀.");
    assert_eq!(events.iter().map(|e| e.2).sum::<u32>(), 6);
    // Six chunks 40 ms apart, sent at most every 150 ms: the first, then a batch or two.
    assert!(events.len() <= 4, "{} events", events.len());
    for w in events.windows(2) {
        // The last batch goes at the end of the reply, whenever that is.
        if w[1].1.ends_with('.') {
            continue;
        }
        assert!(
            w[1].0 - w[0].0 >= Duration::from_millis(140),
            "{:?}",
            w[1].0 - w[0].0
        );
    }
}

#[test]
fn an_idle_attach_engine_re_reads_what_the_server_holds_on_a_timer() {
    use llmtop::engine::remote::engine::PS_EVERY;
    let fake = FakeOllama::start();
    let mut h = spawn(&fake.url(), |_| {});
    load(&mut h).expect("attached");
    let ps = |f: &FakeOllama| f.seen().iter().filter(|s| s.path == "/api/ps").count();
    let before = ps(&fake);
    let t0 = Instant::now();
    // Nothing asked: two re-reads, each a Backend event with what the server holds.
    let mut backends = 0;
    while backends < 2 {
        if let EngineEvent::Backend(b) = next(&mut h, PS_EVERY * 3) {
            backends += 1;
            assert_eq!(b.loaded[0].name, ollama::MODELS[0]);
            assert_eq!(b.loaded[0].placement().as_deref(), Some("62 % on GPU"));
        }
    }
    let took = t0.elapsed();
    assert!(
        took >= PS_EVERY * 2 - Duration::from_millis(100)
            && took < PS_EVERY * 2 + Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(ps(&fake), before + 2);
    // A reply still goes through between re-reads.
    let t = turn(&mut h, "What colour is the sky?", None);
    assert!(t.failed.is_empty(), "{:?}", t.failed);
    assert_eq!(t.text, "The sky is blue 😀.");
}
