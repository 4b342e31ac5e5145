//! [`AttachEngine`]: the [`Engine`] trait over HTTP. The dashboard talks to it exactly as to the
//! in-process engine; the server does the inference.
//!
//! The conversation is kept here and sent whole each turn (the servers' chat APIs are
//! stateless; their prompt caches make the repeated prefix cheap). Figures come from the
//! server where it gives them, measured here otherwise, each marked with its [`Origin`].

use super::catalog::{self, RemoteModel};
use super::client::{Piece, RemoteError, Server};
use super::kind::{self, Detected, Kind};
use super::protocol::{Event, Figures, Framing, Message, Parser, Sampling, WireError, chat_body};
use crate::engine::effective::{InEffect, SamplerChain};
use crate::engine::stream::TokenBatch;
use crate::engine::{
    BackendStatus, Command, Engine, EngineEvent, EngineSettings, ModelInfo, Origin, Origins, Phase,
    ReplyStats, StopReason,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Where to attach and what to ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachSettings {
    /// The server's address as given (`--attach` or `[backend] attach`).
    pub url: String,
    /// `None`: detect.
    pub kind: Option<Kind>,
    /// `None`: the model the server has loaded, else its first.
    pub model: Option<String>,
    /// The longest wait for any byte of a reply before it is given up as stuck.
    pub stall: Duration,
}

impl AttachSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            kind: None,
            model: None,
            stall: Duration::from_secs(120),
        }
    }
}

/// The engine for `--attach`.
pub struct AttachEngine {
    pub attach: AttachSettings,
    /// Sampling, max tokens, system prompt and stream pace; the model path is not used.
    pub settings: EngineSettings,
}

/// How often the engine looks at its commands while it waits for the server.
const POLL: Duration = Duration::from_millis(20);

/// The server, as found at load.
struct Attached {
    server: Server,
    detected: Detected,
    models: Vec<RemoteModel>,
    model: String,
}

/// How often an idle attach engine re-reads what the server holds (`/api/ps`).
pub const PS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One line for a model that is not on the server, listing what is.
pub fn unknown_model(server: &Server, wanted: &str, models: &[RemoteModel]) -> String {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let has = if names.is_empty() {
        "no models".to_string()
    } else {
        names.join(", ")
    };
    format!(
        "{}: no model {wanted:?}; it has {has} (pick one with --model NAME, or `llmtop models --attach {}`)",
        server.base, server.base
    )
}

impl AttachEngine {
    /// Find the server, its kind and the model to use.
    fn attach(&self) -> Result<Attached, String> {
        let server = Server::parse(&self.attach.url).map_err(|e| e.to_string())?;
        let detected = match self.attach.kind {
            Some(k) => kind::confirm(&server, k),
            None => kind::detect(&server),
        }
        .map_err(|e| e.to_string())?;
        let models = catalog::list(&server, detected.kind).map_err(|e| e.to_string())?;
        let model = match &self.attach.model {
            Some(wanted) => match catalog::find(&models, wanted) {
                Some(m) => m.name.clone(),
                // A generic server may not list what it serves: trust the name.
                None if detected.kind == Kind::OpenAi && models.is_empty() => wanted.clone(),
                None => return Err(unknown_model(&server, wanted, &models)),
            },
            None => {
                let loaded = catalog::loaded(&server, detected.kind).unwrap_or_default();
                let first_loaded = loaded
                    .iter()
                    .find_map(|l| models.iter().find(|m| m.name == l.name));
                match first_loaded.or(models.first()) {
                    Some(m) => m.name.clone(),
                    None if detected.kind == Kind::LlamaServer => String::new(),
                    None => {
                        return Err(format!(
                            "{}: {} has no models; {}",
                            server.base,
                            detected.kind.name(),
                            if detected.kind == Kind::Ollama {
                                "pull one first, e.g. `ollama pull llama3.2`"
                            } else {
                                "load one in the server first"
                            }
                        ));
                    }
                }
            }
        };
        Ok(Attached {
            server,
            detected,
            models,
            model,
        })
    }

    fn model_info(&self, a: &Attached) -> ModelInfo {
        let m = catalog::find(&a.models, &a.model);
        let s = &self.settings;
        ModelInfo {
            name: display_name(a.detected.kind, &a.model),
            // llama-server names its model by its path on this machine: a run card can then
            // fingerprint the file; other names are not files and the card says so.
            path: PathBuf::from(&a.model),
            architecture: m.and_then(|m| m.family.clone()).unwrap_or_default(),
            n_params: m.and_then(|m| m.n_params).unwrap_or(0),
            file_size: m.and_then(|m| m.size).unwrap_or(0),
            quantization: m.and_then(|m| m.quantization.clone()).unwrap_or_default(),
            n_ctx_train: m.and_then(|m| m.n_ctx_train).unwrap_or(0),
            n_ctx: catalog::context_size(&a.server, a.detected.kind, &a.model).unwrap_or(0),
            chat_template: "the server's".into(),
            load_ms: 0.0,
            in_effect: Box::new(InEffect {
                threads: 0,
                gpu_layers: 0,
                sampler: SamplerChain::for_settings(s),
                max_tokens: s.max_tokens,
                system_prompt: s.system_prompt.trim().to_string(),
                chat_template_text: String::new(),
            }),
            backend: Some(a.detected.describe(&a.server)),
            traffic: model_file(a).and_then(|p| {
                let info = crate::engine::gguf::read(&p).ok()?;
                crate::engine::traffic::DecodeTraffic::from_gguf(&info).map(Box::new)
            }),
        }
    }

    fn status(&self, a: &Attached) -> BackendStatus {
        BackendStatus {
            description: a.detected.describe(&a.server),
            models: a.models.iter().map(|m| m.name.clone()).collect(),
            current: a.model.clone(),
            loaded: catalog::loaded(&a.server, a.detected.kind).unwrap_or_default(),
        }
    }

    fn sampling(&self) -> Sampling {
        let s = &self.settings;
        Sampling {
            max_tokens: Some(s.max_tokens),
            temperature: Some(s.temperature),
            seed: Some(s.seed),
            top_k: Some(s.top_k),
            top_p: Some(s.top_p),
            min_p: Some(s.min_p),
        }
    }
}

impl Engine for AttachEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        events: UnboundedSender<EngineEvent>,
    ) {
        let send = |e: EngineEvent| {
            let _ = events.send(e);
        };
        let mut attached: Option<Attached> = None;
        let mut history: Vec<Message> = Vec::new();
        // While attached and idle, what the server holds (`/api/ps`: a model loaded or
        // unloaded by another client, its VRAM) is re-read every PS_EVERY, not only after a
        // reply.
        let timer = crate::util::runtime::current_thread().ok();
        loop {
            let next = match (&timer, &attached) {
                (Some(rt), Some(_)) => {
                    rt.block_on(async { tokio::time::timeout(PS_EVERY, commands.recv()).await })
                }
                _ => Ok(commands.blocking_recv()),
            };
            let cmd = match next {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(_) => {
                    if let Some(a) = &attached {
                        send(EngineEvent::Backend(Box::new(self.status(a))));
                    }
                    continue;
                }
            };
            match cmd {
                Command::Load => {
                    send(EngineEvent::Phase(Phase::Loading));
                    send(EngineEvent::LoadProgress(0.1));
                    match self.attach() {
                        Ok(a) => {
                            tracing::info!(
                                "attached to {} ({}), model {:?}",
                                a.server.base,
                                a.detected.kind.name(),
                                a.model
                            );
                            send(EngineEvent::LoadProgress(1.0));
                            send(EngineEvent::Loaded(self.model_info(&a)));
                            send(EngineEvent::Backend(Box::new(self.status(&a))));
                            send(EngineEvent::Phase(Phase::Idle));
                            attached = Some(a);
                        }
                        Err(e) => send(EngineEvent::Failed(e)),
                    }
                }
                Command::Send(text) => {
                    let Some(a) = &attached else {
                        send(EngineEvent::Failed("not attached to a server yet".into()));
                        continue;
                    };
                    history.push(Message::new("user", text));
                    let mut turn = Turn::new(&self, a, &events);
                    let outcome = turn.run(&history, &mut commands);
                    match outcome.reply {
                        Some(reply) => history.push(Message::new("assistant", reply)),
                        // Nothing came back: the question is not part of the conversation.
                        None => {
                            history.pop();
                        }
                    }
                    if outcome.reset {
                        history.clear();
                    }
                    // What the server holds now; not asked of a server that just failed (a
                    // stuck one would hold the engine for the probe's timeout).
                    if !outcome.failed
                        && let Some(a) = &attached
                    {
                        send(EngineEvent::Backend(Box::new(self.status(a))));
                    }
                    send(EngineEvent::Phase(Phase::Idle));
                    if outcome.shutdown {
                        break;
                    }
                }
                Command::UseModel(name) => match attached.as_mut() {
                    Some(a) => match catalog::find(&a.models, &name) {
                        Some(m) => {
                            a.model = m.name.clone();
                            send(EngineEvent::Loaded(self.model_info(a)));
                            send(EngineEvent::Backend(Box::new(self.status(a))));
                            send(EngineEvent::Phase(Phase::Idle));
                        }
                        None => send(EngineEvent::Failed(unknown_model(
                            &a.server, &name, &a.models,
                        ))),
                    },
                    None => send(EngineEvent::Failed("not attached to a server yet".into())),
                },
                Command::Reset => history.clear(),
                Command::Cancel => {}
                Command::Shutdown => break,
            }
        }
    }
}

/// How a turn ended, for the conversation.
struct Outcome {
    /// The reply text to keep in the conversation (a cancelled reply keeps what arrived).
    reply: Option<String>,
    /// The request failed (the server is down, stuck or confused).
    failed: bool,
    /// A Reset came in during the reply.
    reset: bool,
    shutdown: bool,
}

/// One message and its streamed reply.
struct Turn<'a> {
    engine: &'a AttachEngine,
    a: &'a Attached,
    events: &'a UnboundedSender<EngineEvent>,
    start: Instant,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// Content events seen: about one token each when the server does not count.
    chunks: u32,
    counted: u32,
    reply: String,
    batch: TokenBatch,
    figures: Option<Figures>,
    /// Problems worth a line once the reply is over (malformed or overlong lines).
    warnings: Vec<String>,
}

impl<'a> Turn<'a> {
    fn new(
        engine: &'a AttachEngine,
        a: &'a Attached,
        events: &'a UnboundedSender<EngineEvent>,
    ) -> Self {
        Self {
            engine,
            a,
            events,
            start: Instant::now(),
            first_at: None,
            last_at: None,
            chunks: 0,
            counted: 0,
            reply: String::new(),
            batch: TokenBatch::new(engine.settings.stream_every),
            figures: None,
            warnings: Vec::new(),
        }
    }

    fn send(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    fn run(&mut self, history: &[Message], commands: &mut UnboundedReceiver<Command>) -> Outcome {
        let mut messages = Vec::with_capacity(history.len() + 1);
        let system = self.engine.settings.system_prompt.trim();
        if !system.is_empty() {
            messages.push(Message::new("system", system));
        }
        messages.extend_from_slice(history);
        let api = self.a.detected.kind.chat_api();
        let body = chat_body(api, &self.a.model, &messages, &self.engine.sampling(), true);
        self.send(EngineEvent::Phase(Phase::Prefill));
        let mut stream = self
            .a
            .server
            .post_stream(api.path(), &body, self.engine.attach.stall);
        let mut parser = Parser::new(api.framing(true));
        let mut out = Vec::new();
        let mut stop = None;
        let mut shutdown = false;
        let mut reset = false;
        let mut failure: Option<String> = None;
        loop {
            // Esc or quit between chunks: the request is dropped at once.
            match commands.try_recv() {
                Ok(Command::Cancel) => {
                    stop = Some(StopReason::Cancelled);
                    break;
                }
                Ok(Command::Shutdown) => {
                    stop = Some(StopReason::Cancelled);
                    shutdown = true;
                    break;
                }
                Ok(Command::Reset) => reset = true,
                Ok(Command::Load | Command::Send(_) | Command::UseModel(_)) => {
                    self.send(EngineEvent::Failed(
                        "still replying: wait for the reply or cancel it first".into(),
                    ));
                }
                Err(_) => {}
            }
            let Some(piece) = stream.next(POLL) else {
                continue;
            };
            match piece {
                Piece::Head { content_type } => {
                    let ct = content_type.as_deref().unwrap_or("");
                    // A web page where a stream should be: a web UI or a proxy at the address.
                    if ct.contains("html") {
                        failure = Some(format!(
                            "{}{}: answered with a web page, not a chat stream; check the address (a web UI or a proxy?)",
                            self.a.server.base,
                            api.path()
                        ));
                        break;
                    }
                    // The server's own stream framing wins.
                    if let Some(f) = Framing::from_content_type(ct)
                        && f != api.framing(true)
                        && f != Framing::Body
                    {
                        parser = Parser::new(f);
                    }
                }
                Piece::Bytes(b) => {
                    parser.feed(&b, &mut out);
                    if self.take(&mut out, &mut failure) {
                        break;
                    }
                }
                Piece::End => {
                    parser.finish(&mut out);
                    self.take(&mut out, &mut failure);
                    break;
                }
                Piece::Failed(e) => {
                    failure = Some(lost(&e, self.chunks > 0));
                    break;
                }
            }
        }
        stream.cancel();
        drop(stream);
        if let Some(ev) = self.batch.finish("") {
            self.send(ev);
        }
        let got_any = self.chunks > 0;
        if got_any || stop == Some(StopReason::Cancelled) {
            let stats = self.stats(stop);
            self.send(EngineEvent::ReplyDone(stats));
        }
        let failed = failure.is_some();
        if let Some(f) = failure {
            self.send(EngineEvent::Failed(f));
        }
        for w in std::mem::take(&mut self.warnings) {
            self.send(EngineEvent::Failed(w));
        }
        Outcome {
            reply: got_any.then(|| std::mem::take(&mut self.reply)),
            failed,
            reset,
            shutdown,
        }
    }

    /// Handle parsed events; true when the reply is over.
    fn take(&mut self, out: &mut Vec<Event>, failure: &mut Option<String>) -> bool {
        let mut over = false;
        for ev in out.drain(..) {
            match ev {
                Event::Content { text, tokens, .. } => {
                    let now = Instant::now();
                    if self.first_at.is_none() {
                        self.first_at = Some(now);
                        self.send(EngineEvent::Phase(Phase::Generating));
                    }
                    self.last_at = Some(now);
                    self.chunks += 1;
                    let n = tokens.unwrap_or(1);
                    self.counted += n;
                    self.reply.push_str(&text);
                    if let Some(e) = self.batch.push_counted(&text, n, now) {
                        self.send(e);
                    }
                }
                Event::Done(f) => {
                    self.figures = Some(*f);
                    over = true;
                }
                Event::Error(WireError::Server(m)) => {
                    *failure = Some(format!("{}: the server says: {m}", self.a.server.base));
                    over = true;
                }
                Event::Error(WireError::Truncated) => {
                    *failure = Some(format!(
                        "{}: the server closed the stream before the reply ended",
                        self.a.server.base
                    ));
                    over = true;
                }
                Event::Error(e) => {
                    tracing::warn!("{}: {e}", self.a.server.base);
                    if self.warnings.len() < 3 {
                        self.warnings.push(format!("{}: {e}", self.a.server.base));
                    }
                }
            }
        }
        over
    }

    /// The reply's figures: the server's where it gave them, measured here otherwise.
    fn stats(&self, stop: Option<StopReason>) -> ReplyStats {
        let f = self.figures.clone().unwrap_or_default();
        let wall = self.start.elapsed().as_secs_f64();
        let ttft_here = self
            .first_at
            .map_or(wall, |t| t.duration_since(self.start).as_secs_f64());
        let stream_s = match (self.first_at, self.last_at) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let mut origins = Origins {
            tokens: Origin::Client,
            ttft: Origin::Client,
            prefill: Origin::Client,
            generation: Origin::Client,
        };
        let generated = match f.generated_tokens {
            Some(r) if stop != Some(StopReason::Cancelled) => {
                origins.tokens = Origin::Server;
                r.value
            }
            _ => self.counted,
        };
        let prompt_eval = f
            .prompt_eval_tokens
            .or(f.prompt_tokens)
            .map_or(0, |r| r.value);
        let conversation = f
            .prompt_tokens
            .or(f.prompt_eval_tokens)
            .map_or(0, |r| r.value);
        let ttft_s = match f.ttft_s {
            Some(r) => {
                origins.ttft = Origin::Server;
                r.value
            }
            None => ttft_here,
        };
        let (prefill_ms, prefill_tok_s) = match f.prompt_s {
            Some(r) => {
                origins.prefill = Origin::Server;
                let rate = f.server_prompt_tok_s().unwrap_or(0.0);
                (r.value * 1000.0, rate)
            }
            None => (ttft_here * 1000.0, rate(f64::from(prompt_eval), ttft_here)),
        };
        // Over the stream: the first chunk starts the clock, so it is not counted in the rate.
        let wall_rate = rate(f64::from(self.counted.saturating_sub(1)), stream_s);
        let (gen_ms, gen_tok_s) = match (f.generation_s, f.server_gen_tok_s()) {
            (Some(s), Some(r)) if stop != Some(StopReason::Cancelled) => {
                origins.generation = Origin::Server;
                (s.value * 1000.0, r)
            }
            _ => (stream_s * 1000.0, wall_rate),
        };
        let stop = stop.unwrap_or(if f.hit_token_limit() {
            StopReason::MaxTokens
        } else {
            StopReason::EndOfGeneration
        });
        ReplyStats {
            prompt_tokens: prompt_eval,
            conversation_tokens: conversation,
            generated_tokens: generated,
            ttft_ms: ttft_s * 1000.0,
            prefill_ms,
            prefill_tok_s,
            gen_ms,
            gen_tok_s,
            gen_wall_tok_s: wall_rate,
            wall_s: wall,
            stop,
            prefill_end_s: ttft_here,
            load_ms: f.load_s.map(|r| r.value * 1000.0),
            origins,
        }
    }
}

/// The model's GGUF file on this machine, when the server runs here and says which file it
/// is: llama-server's model path (`/props` `model_path`, or the path it lists the model by),
/// Ollama's blob for the model's name. `None` for a server elsewhere or one that does not say.
fn model_file(a: &Attached) -> Option<std::path::PathBuf> {
    let host = a
        .server
        .host_port
        .rsplit_once(':')
        .map_or(a.server.host_port.as_str(), |(h, _)| h);
    let local =
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") || host.starts_with("127.");
    if !local {
        return None;
    }
    let is_file = |p: &std::path::Path| p.is_file().then(|| p.to_path_buf());
    match a.detected.kind {
        Kind::LlamaServer => is_file(std::path::Path::new(&a.model)).or_else(|| {
            let v = a.server.get_json("/props").ok()?;
            is_file(std::path::Path::new(v.get("model_path")?.as_str()?))
        }),
        Kind::Ollama => crate::engine::models::ollama_model_file(
            &crate::engine::models::SearchRoots::from_env().ollama,
            &a.model,
        ),
        Kind::LmStudio | Kind::OpenAi => None,
    }
}

/// A model as the header shows it: llama-server lists its model by path, shown by file name
/// (Ollama's names may hold a `/` and are shown whole).
fn display_name(kind: Kind, id: &str) -> String {
    if id.is_empty() {
        return "(the server's model)".into();
    }
    if kind == Kind::LlamaServer {
        let file = id.rsplit(['/', '\\']).next().unwrap_or(id);
        if !file.is_empty() {
            return file.to_string();
        }
    }
    id.to_string()
}

fn rate(n: f64, s: f64) -> f64 {
    if s > 0.0 { n / s } else { 0.0 }
}

/// A request that failed: before any text, the cause; during the reply, that it was cut.
fn lost(e: &RemoteError, mid_reply: bool) -> String {
    if mid_reply {
        format!("{e} (the reply was cut short)")
    } else {
        e.to_string()
    }
}
