//! The inference engine: a dedicated OS thread that owns the model and context.
//!
//! llama.cpp's context is not `Send`, so the engine never leaves its thread. The rest of the
//! program talks to it through two channels: [`Command`]s in, [`EngineEvent`]s out. The UI never
//! blocks on it. Any type implementing [`Engine`] can sit behind the channels: the real llama.cpp
//! engine ([`llama::LlamaEngine`]) and a scripted one for UI tests and `--demo`
//! ([`scripted::ScriptedEngine`]).

pub mod effective;
pub mod gguf;
pub mod llama;
pub mod models;
pub mod remote;
pub mod scripted;
pub mod settings;
pub mod stream;
pub mod traffic;
pub mod utf8;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What the program asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Load the model. Sent once, right after spawning; progress arrives as events.
    Load,
    /// Append a user message to the conversation and generate a reply.
    Send(String),
    /// Stop the generation in progress (no-op when idle).
    Cancel,
    /// Forget the conversation (the system prompt stays).
    Reset,
    /// Answer the next message with this model (from [`BackendStatus::models`]); an engine
    /// with one model says it cannot.
    UseModel(String),
    /// Stop the engine thread.
    Shutdown,
}

/// Where the engine is, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Loading,
    Idle,
    Prefill,
    Generating,
}

/// What the engine reports back.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// Model load progress, 0.0..=1.0.
    LoadProgress(f32),
    /// The model is loaded and ready.
    Loaded(ModelInfo),
    /// The engine moved to another phase (prefill started, first token produced, ...).
    Phase(Phase),
    /// Generation starts with this many tokens in the context: the depth of the KV cache each
    /// generated token reads (the decode roofline counts it). Sent before
    /// `Phase(Generating)` by engines that know it.
    ContextDepth(u32),
    /// Older turns were dropped from the context to make room.
    ContextTrimmed { dropped_messages: usize },
    /// The next piece of the reply: `count` generated tokens (at least 1) and their text, whole
    /// UTF-8 characters only (a token that ends inside a character adds its bytes later).
    Tokens { text: String, count: u32 },
    /// The reply ended.
    ReplyDone(ReplyStats),
    /// Something went wrong; the engine stays usable unless the model failed to load.
    Failed(String),
    /// A server-backed engine's report on its server: what it offers and what it has loaded
    /// where. Sent after loading and after each reply.
    Backend(Box<BackendStatus>),
}

/// What a server-backed engine knows of its server (`--attach`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// "Ollama 0.5.7 at 127.0.0.1:11434", as the server described itself (unsanitised).
    pub description: String,
    /// Models the server offers, for the picker.
    pub models: Vec<String>,
    /// The model the next message goes to.
    pub current: String,
    /// What the server has in memory, and where.
    pub loaded: Vec<LoadedModel>,
}

/// A model a server holds in memory (Ollama `/api/ps`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    pub name: String,
    /// Bytes in memory in all.
    pub size: Option<u64>,
    /// Bytes of it on the GPU.
    pub size_vram: Option<u64>,
    pub context_length: Option<u32>,
    /// When the server will unload it (Ollama's `expires_at`: `keep_alive` after the last
    /// request), RFC 3339 as the server sent it (unsanitised); `None` where it does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl LoadedModel {
    /// [`Self::expires_at`] as an instant, when it parses.
    pub fn expires(&self) -> Option<jiff::Timestamp> {
        self.expires_at.as_deref()?.parse().ok()
    }

    /// Share on the GPU, percent, rounded as `ollama ps` rounds it.
    pub fn gpu_percent(&self) -> Option<u32> {
        let (size, vram) = (self.size?, self.size_vram?);
        if size == 0 {
            return None;
        }
        let cpu = size.saturating_sub(vram) as f64 / size as f64 * 100.0;
        Some(100 - cpu.round().clamp(0.0, 100.0) as u32)
    }

    /// "62 % on GPU", "on CPU"; `None` when the server does not say.
    pub fn placement(&self) -> Option<String> {
        match self.gpu_percent()? {
            0 => Some("on CPU".into()),
            p => Some(format!("{p} % on GPU")),
        }
    }
}

/// Facts about the loaded model, from GGUF metadata and the file, and the settings in effect
/// as the engine resolved them: the one report every surface shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub architecture: String,
    pub n_params: u64,
    pub file_size: u64,
    /// e.g. "Q4_1".
    pub quantization: String,
    pub n_ctx_train: u32,
    /// Context size llama.cpp allocated (never the 0 "use the model's" request).
    pub n_ctx: u32,
    /// Where the chat template came from: "model" (its GGUF metadata) or "chatml (fallback)".
    pub chat_template: String,
    /// Wall time of the cold load (file to ready context), ms.
    pub load_ms: f64,
    /// The other settings in effect. Boxed: `Loaded` rides in every event enum, which this
    /// keeps small.
    #[serde(default)]
    pub in_effect: Box<effective::InEffect>,
    /// Where the model runs when it is not in this process: "llama-server at
    /// 127.0.0.1:8080". `None`: in-process (llama.cpp here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// What one generated token reads from memory, from the GGUF tensor table; `None` when
    /// the model file is not readable here (a remote server's model). Boxed, as `in_effect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Box<traffic::DecodeTraffic>>,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfGeneration,
    MaxTokens,
    Cancelled,
    ContextFull,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::EndOfGeneration => "end of generation",
            StopReason::MaxTokens => "max tokens",
            StopReason::Cancelled => "cancelled",
            StopReason::ContextFull => "context full",
        })
    }
}

/// Measurements of one reply. Rates come from llama.cpp's perf counters when available,
/// cross-checked with the wall clock (`*_wall_*` fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyStats {
    /// Tokens actually decoded for the prompt (what was not already in the KV cache).
    pub prompt_tokens: u32,
    /// Tokens of the whole rendered conversation (what a cache-less engine would decode).
    pub conversation_tokens: u32,
    pub generated_tokens: u32,
    /// From sending the message to the first generated token, ms.
    pub ttft_ms: f64,
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    pub gen_ms: f64,
    pub gen_tok_s: f64,
    /// Generation rate from the wall clock, for cross-checking llama.cpp's counters.
    pub gen_wall_tok_s: f64,
    pub wall_s: f64,
    pub stop: StopReason,
    /// Offsets from the start of the reply, seconds: where prefill ends and decode begins.
    pub prefill_end_s: f64,
    /// Time the server spent loading the model before this reply (Ollama `load_duration`):
    /// the cold-load cost. `None` where nobody says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
    /// Who measured each figure.
    #[serde(default)]
    pub origins: Origins,
}

/// Who measured a figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// llama.cpp in this process (its perf counters and the wall clock here).
    #[default]
    Engine,
    /// The server's own report (Ollama's durations, llama-server `timings`, LM Studio
    /// `stats`, OpenAI `usage`).
    Server,
    /// Measured here, on the client side of an HTTP stream.
    Client,
}

impl Origin {
    /// For labels: "server", "measured here".
    pub fn label(self) -> &'static str {
        match self {
            Origin::Engine => "llama.cpp",
            Origin::Server => "server",
            Origin::Client => "measured here",
        }
    }
}

/// The origin of each of a reply's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Origins {
    /// Token counts (prompt and generated).
    pub tokens: Origin,
    pub ttft: Origin,
    /// Prefill time and rate.
    pub prefill: Origin,
    /// Generation time and rate.
    pub generation: Origin,
}

/// Settings for generation; from CLI and config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSettings {
    pub model: PathBuf,
    /// 0 = the model's training context (capped at 4096 to keep memory modest); what was
    /// allocated is reported in `ModelInfo::n_ctx`.
    pub n_ctx: u32,
    /// 0 = default: resolved by the engine when it loads (`effective::threads`) and
    /// reported in `ModelInfo`; nothing else interprets the 0.
    pub threads: u32,
    pub gpu_layers: u32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u32,
    pub max_tokens: u32,
    pub system_prompt: String,
    /// How often generated text leaves the engine (the first token goes at once): see
    /// [`stream`]. Not a user setting: the dashboard matches it to its frame pace.
    #[serde(skip)]
    pub stream_every: std::time::Duration,
}

impl EngineSettings {
    pub fn with_model(model: PathBuf) -> Self {
        Self {
            model,
            n_ctx: 0,
            threads: 0,
            gpu_layers: 0,
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed: 42,
            max_tokens: 1024,
            system_prompt: "You are a helpful assistant.".to_string(),
            stream_every: stream::SEND_EVERY,
        }
    }
}

/// An engine runs on its own thread until `Shutdown` or until the command channel closes.
pub trait Engine: Send + 'static {
    fn run(
        self: Box<Self>,
        commands: UnboundedReceiver<Command>,
        events: UnboundedSender<EngineEvent>,
    );
}

/// The program's side of a running engine.
pub struct EngineHandle {
    pub commands: UnboundedSender<Command>,
    pub events: UnboundedReceiver<EngineEvent>,
    thread: Option<JoinHandle<()>>,
}

impl EngineHandle {
    /// Ask the engine to stop and wait for its thread (frees the model). Dropping the handle
    /// does the same, so an early return or an error path never leaves the engine running
    /// while the process exits.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Send a command; a stopped engine is reported as an event by the caller's next recv.
    pub fn send(&self, cmd: Command) {
        let _ = self.commands.send(cmd);
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        // The engine checks for this between tokens, so the join waits at most one token
        // (or one prompt chunk).
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine thread's name; its panics are logged, not printed (see [`spawn`]).
pub const THREAD_NAME: &str = "llmtop-engine";

/// Start `engine` on its own thread.
///
/// A panic on that thread (a binding's `expect` on a value llama.cpp returned) is caught and
/// reported as [`EngineEvent::Failed`], so the program shows an error instead of waiting for a
/// model that will never load; its message goes to the log, never over the screen.
pub fn spawn(engine: Box<dyn Engine>) -> std::io::Result<EngineHandle> {
    let (cmd_tx, cmd_rx) = unbounded_channel();
    let (ev_tx, ev_rx) = unbounded_channel();
    log_engine_panics();
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            let report = ev_tx.clone();
            let run = std::panic::AssertUnwindSafe(move || engine.run(cmd_rx, ev_tx));
            if let Err(payload) = std::panic::catch_unwind(run) {
                let _ = report.send(EngineEvent::Failed(panic_line(payload.as_ref())));
            }
        })?;
    Ok(EngineHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
    })
}

/// The one line a caught engine panic becomes.
fn panic_line(payload: &(dyn std::any::Any + Send)) -> String {
    let why = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    format!(
        "the engine stopped: {why} (the model file is probably corrupt; re-download it, details in the log file)"
    )
}

/// Route panics on the engine thread to the log instead of stderr (the terminal), once per
/// process; other threads keep the hook they had.
fn log_engine_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(THREAD_NAME) {
                tracing::error!("engine thread panicked: {info}");
            } else {
                prev(info);
            }
        }));
    });
}
