//! The real engine: llama.cpp through `llama-cpp-2`, on one OS thread.
//!
//! The thread owns model, context and sampler for their whole life (`LlamaContext` is not
//! `Send`). The KV cache is kept between turns: each new prompt is compared token by token with
//! what the cache holds and only the new suffix is decoded.

use super::effective::{self, InEffect, SamplerChain, SamplerStep};
use super::stream::TokenBatch;
use super::utf8::Utf8Stream;
use super::{
    Command, Engine, EngineEvent, EngineSettings, ModelInfo, Phase, ReplyStats, StopReason,
};
use crate::engine::gguf;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Prompt tokens decoded per llama_decode call; cancel is checked between chunks.
const PREFILL_CHUNK: usize = 512;
/// Default context when the model's is larger: enough for long chats, modest on memory.
const DEFAULT_MAX_CTX: u32 = 4096;

pub struct LlamaEngine {
    pub settings: EngineSettings,
}

/// The process-wide llama.cpp backend. llama.cpp may be initialised once per process; engines
/// come and go (tests run several), so it lives for the whole process. Its logs go to
/// `tracing` (and so to llmtop's log file), never to the terminal.
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Check settings against the model file before loading anything: one clear error line.
pub fn validate(settings: &EngineSettings) -> Result<gguf::GgufInfo, String> {
    let (limit, cpus) = effective::thread_limit();
    if settings.threads > limit {
        return Err(format!(
            "--threads {}: more than {limit} ({} per logical CPU, {cpus} CPUs); use --threads {limit} or less, or leave it out for the physical cores",
            settings.threads,
            effective::THREADS_PER_CPU
        ));
    }
    let info = gguf::read(&settings.model).map_err(|e| e.to_string())?;
    let train = info.context_length().unwrap_or(u64::from(u32::MAX));
    if u64::from(settings.n_ctx) > train {
        return Err(format!(
            "n_ctx {}: above the model's training context of {train} tokens ({}); use --n-ctx {train} or less",
            settings.n_ctx,
            settings.model.display()
        ));
    }
    Ok(info)
}

impl Engine for LlamaEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        events: UnboundedSender<EngineEvent>,
    ) {
        // Wait for Load: a caller may spawn first and decide later.
        loop {
            match commands.blocking_recv() {
                Some(Command::Load) => break,
                Some(Command::Shutdown) | None => return,
                Some(_) => {
                    let _ = events.send(EngineEvent::Failed("the model is not loaded yet".into()));
                }
            }
        }
        let _ = events.send(EngineEvent::Phase(Phase::Loading));
        let started = Instant::now();
        let gguf_info = match validate(&self.settings) {
            Ok(i) => i,
            Err(e) => {
                let _ = events.send(EngineEvent::Failed(e));
                return;
            }
        };
        let backend = match backend() {
            Ok(b) => b,
            Err(e) => {
                let _ = events.send(EngineEvent::Failed(e));
                return;
            }
        };
        let progress = events.clone();
        let params = LlamaModelParams::default()
            .with_n_gpu_layers(self.settings.gpu_layers)
            .with_progress_callback(move |p| {
                let _ = progress.send(EngineEvent::LoadProgress(p));
                true
            });
        let model = match LlamaModel::load_from_file(backend, &self.settings.model, &params) {
            Ok(m) => m,
            Err(e) => {
                let _ = events.send(EngineEvent::Failed(format!(
                    "{}: llama.cpp could not load the model ({e}); see {} for its reason",
                    self.settings.model.display(),
                    crate::util::paths::log_file().display()
                )));
                return;
            }
        };
        let n_ctx = effective_ctx(self.settings.n_ctx, model.n_ctx_train());
        // The one place the "0 = default" thread count is resolved; everyone else reads the
        // report below.
        let threads = effective::threads(self.settings.threads);
        let n_threads = i32::try_from(threads).unwrap_or(i32::MAX);
        // llama.cpp caps the batch at the context it was asked for, then pads the context to a
        // multiple of 256: a batch of the full chunk would pass our length checks and trip its
        // `n_tokens_all <= n_batch` assert. Ask for a batch that fits and chunk by what it took.
        let n_batch = batch_size(n_ctx);
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(n_threads)
            .with_n_threads_batch(n_threads)
            .with_no_perf(false);
        let ctx = match model.new_context(backend, ctx_params) {
            Ok(c) => c,
            Err(e) => {
                let _ = events.send(EngineEvent::Failed(format!(
                    "cannot create a context of {n_ctx} tokens: {e}; try a smaller --n-ctx"
                )));
                return;
            }
        };
        let (template, template_name) = match model.chat_template(None) {
            Ok(t) => (t, "model".to_string()),
            Err(_) => match LlamaChatTemplate::new("chatml") {
                Ok(t) => (t, "chatml (fallback)".to_string()),
                Err(e) => {
                    let _ = events.send(EngineEvent::Failed(format!("chat template: {e}")));
                    return;
                }
            },
        };
        let sampler = SamplerChain::for_settings(&self.settings);
        let info = ModelInfo {
            name: gguf_info
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| file_stem(&self.settings.model)),
            path: self.settings.model.clone(),
            architecture: gguf_info.architecture().unwrap_or("unknown").to_string(),
            n_params: model.n_params(),
            file_size: gguf_info.file_size,
            quantization: gguf_info.quantization(),
            n_ctx_train: model.n_ctx_train(),
            // What llama.cpp allocated, which may differ from what was asked.
            n_ctx: ctx.n_ctx(),
            chat_template: template_name,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            in_effect: Box::new(InEffect {
                threads,
                gpu_layers: effective::offloaded_layers(
                    self.settings.gpu_layers,
                    model.n_layer(),
                    backend.supports_gpu_offload(),
                ),
                sampler: sampler.clone(),
                max_tokens: self.settings.max_tokens,
                system_prompt: self.settings.system_prompt.trim().to_string(),
                chat_template_text: template.to_string().unwrap_or_default(),
            }),
            backend: None,
            traffic: super::traffic::DecodeTraffic::from_gguf(&gguf_info).map(Box::new),
        };
        let _ = events.send(EngineEvent::Loaded(info));
        let _ = events.send(EngineEvent::Phase(Phase::Idle));

        let mut session = Session {
            settings: &self.settings,
            model: &model,
            chunk: (ctx.n_batch() as usize).clamp(1, PREFILL_CHUNK),
            ctx,
            template,
            sampler,
            messages: Vec::new(),
            cached: Vec::new(),
            events: &events,
            shutdown: false,
        };
        while let Some(cmd) = commands.blocking_recv() {
            match cmd {
                Command::Send(text) => {
                    session.reply(text, &mut commands);
                    let _ = events.send(EngineEvent::Phase(Phase::Idle));
                    // A Shutdown consumed mid-reply must still end the thread, or whoever
                    // joins it waits forever.
                    if session.shutdown {
                        break;
                    }
                }
                Command::Reset => session.reset(),
                Command::UseModel(_) => {
                    let _ = events.send(EngineEvent::Failed(
                        "this model runs in llmtop itself: start llmtop with --model PATH to use another (or --attach a server to pick from its models)".into(),
                    ));
                }
                Command::Cancel | Command::Load => {}
                Command::Shutdown => break,
            }
        }
    }
}

/// Tokens per `llama_decode` call: the prefill chunk, or the whole context when that is smaller.
fn batch_size(n_ctx: u32) -> u32 {
    n_ctx.clamp(1, PREFILL_CHUNK as u32)
}

fn effective_ctx(requested: u32, train: u32) -> u32 {
    let train = train.max(1);
    if requested == 0 {
        train.min(DEFAULT_MAX_CTX)
    } else {
        requested.min(train)
    }
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

#[derive(Clone)]
struct Message {
    role: &'static str,
    content: String,
}

/// One conversation with its KV cache.
struct Session<'m> {
    settings: &'m EngineSettings,
    model: &'m LlamaModel,
    /// Prompt tokens per decode: what llama.cpp accepted as its batch size.
    chunk: usize,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    /// The chain reported in `Loaded`; a fresh llama.cpp sampler is built from it per reply.
    sampler: SamplerChain,
    /// User and assistant turns; the system prompt is added when rendering.
    messages: Vec<Message>,
    /// Tokens whose keys/values are in the KV cache, in position order.
    cached: Vec<LlamaToken>,
    events: &'m UnboundedSender<EngineEvent>,
    /// Shutdown arrived (or the program went away) during a reply: stop after it.
    shutdown: bool,
}

enum Interrupt {
    Cancel,
    Shutdown,
}

impl Session<'_> {
    fn reset(&mut self) {
        self.messages.clear();
        self.cached.clear();
        self.ctx.clear_kv_cache();
    }

    fn send(&self, ev: EngineEvent) {
        let _ = self.events.send(ev);
    }

    /// Render the conversation with the chat template and tokenize it.
    fn render(&self, messages: &[Message]) -> Result<Vec<LlamaToken>, String> {
        let mut chat = Vec::with_capacity(messages.len() + 1);
        let system = self.settings.system_prompt.trim();
        let all = (!system.is_empty())
            .then(|| Message {
                role: "system",
                content: system.to_string(),
            })
            .into_iter()
            .chain(messages.iter().cloned());
        for m in all {
            chat.push(
                LlamaChatMessage::new(m.role.to_string(), m.content)
                    .map_err(|e| format!("message: {e}"))?,
            );
        }
        let prompt = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| format!("chat template: {e}"))?;
        // The template already wrote special tokens as text: parse them, and add BOS only if
        // the model wants one.
        Ok(self.model.vocab().tokenize(prompt.as_bytes(), true, true))
    }

    /// Generate a reply to `text`, streaming tokens as events.
    fn reply(&mut self, text: String, commands: &mut UnboundedReceiver<Command>) {
        let start = Instant::now();
        self.messages.push(Message {
            role: "user",
            content: text,
        });
        let n_ctx = self.ctx.n_ctx() as usize;
        // Leave room for the reply: at most half the context, at most max_tokens.
        let reserve = (self.settings.max_tokens as usize).clamp(1, n_ctx / 2);
        let mut tokens = match self.render(&self.messages) {
            Ok(t) => t,
            Err(e) => {
                self.messages.pop();
                self.send(EngineEvent::Failed(e));
                return;
            }
        };
        let mut dropped = 0;
        while tokens.len() + reserve > n_ctx && self.messages.len() > 1 {
            // Drop the oldest turn (a user message and the reply after it).
            let n = if self.messages.len() >= 3 { 2 } else { 1 };
            self.messages.drain(..n);
            dropped += n;
            tokens = match self.render(&self.messages) {
                Ok(t) => t,
                Err(e) => {
                    self.send(EngineEvent::Failed(e));
                    return;
                }
            };
        }
        if dropped > 0 {
            self.send(EngineEvent::ContextTrimmed {
                dropped_messages: dropped,
            });
        }
        if tokens.is_empty() {
            self.messages.pop();
            self.send(EngineEvent::Failed(
                "the chat template rendered an empty prompt; try another model".into(),
            ));
            return;
        }
        if tokens.len() + 1 > n_ctx {
            self.messages.pop();
            self.send(EngineEvent::Failed(format!(
                "message too long: {} tokens, the context holds {n_ctx}; use a larger --n-ctx",
                tokens.len()
            )));
            return;
        }

        // Reuse the longest common prefix with what is cached; always decode at least the last
        // prompt token so there are logits to sample from.
        let mut keep = common_prefix(&self.cached, &tokens).min(tokens.len() - 1);
        if !matches!(
            self.ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None),
            Ok(true)
        ) {
            // Some caches (recurrent models) cannot drop a suffix: start over.
            self.ctx.clear_kv_cache();
            keep = 0;
        }
        self.cached.truncate(keep);

        self.ctx.reset_timings();
        self.send(EngineEvent::Phase(Phase::Prefill));
        let new = &tokens[keep..];
        let mut batch = LlamaBatch::new(self.chunk, 1);
        let mut interrupted = None;
        for (ci, chunk) in new.chunks(self.chunk).enumerate() {
            if let Some(i) = poll_interrupt(commands) {
                self.shutdown |= matches!(i, Interrupt::Shutdown);
                interrupted = Some(i);
                break;
            }
            batch.clear();
            let base = keep + ci * self.chunk;
            let last_chunk = base + chunk.len() == tokens.len();
            for (j, tok) in chunk.iter().enumerate() {
                let is_last = last_chunk && j + 1 == chunk.len();
                if let Err(e) = batch.add(*tok, (base + j) as i32, &[0], is_last) {
                    self.send(EngineEvent::Failed(format!("batch: {e}")));
                    return;
                }
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.send(EngineEvent::Failed(format!("prompt decode failed: {e}")));
                self.ctx.clear_kv_cache();
                self.cached.clear();
                return;
            }
            self.cached.extend_from_slice(chunk);
        }
        let prefill_end = start.elapsed();
        let prompt_tokens = (tokens.len() - keep) as u32;

        let mut sampler = self.sampler();
        let mut utf8 = Utf8Stream::default();
        let mut piece = Vec::with_capacity(32);
        let mut reply = String::new();
        let mut generated: u32 = 0;
        let mut first_token_at = None;
        let mut out = TokenBatch::new(self.settings.stream_every);
        let mut stop = StopReason::EndOfGeneration;
        let mut logits_idx = batch.n_tokens() - 1;
        if interrupted.is_some() {
            stop = StopReason::Cancelled;
        } else {
            self.send(EngineEvent::ContextDepth(self.cached.len() as u32));
            self.send(EngineEvent::Phase(Phase::Generating));
            loop {
                if let Some(i) = poll_interrupt(commands) {
                    self.shutdown |= matches!(i, Interrupt::Shutdown);
                    stop = StopReason::Cancelled;
                    break;
                }
                // `sample` also accepts the token into the sampler chain: no second accept.
                let token = sampler.sample(&self.ctx, logits_idx);
                if self.model.vocab().is_eog(token) {
                    break;
                }
                piece.clear();
                self.model
                    .vocab()
                    .token_to_piece_into(token, &mut piece, false, None);
                let text = utf8.push(&piece).unwrap_or_default();
                reply.push_str(&text);
                if let Some(ev) = out.push(&text, Instant::now()) {
                    self.send(ev);
                }
                generated += 1;
                first_token_at.get_or_insert_with(|| start.elapsed());
                if generated >= self.settings.max_tokens {
                    stop = StopReason::MaxTokens;
                    break;
                }
                if self.cached.len() + 1 >= n_ctx {
                    stop = StopReason::ContextFull;
                    break;
                }
                batch.clear();
                if let Err(e) = batch.add(token, self.cached.len() as i32, &[0], true) {
                    self.send(EngineEvent::Failed(format!("batch: {e}")));
                    break;
                }
                if let Err(e) = self.ctx.decode(&mut batch) {
                    self.send(EngineEvent::Failed(format!("decode failed: {e}")));
                    break;
                }
                self.cached.push(token);
                logits_idx = 0;
            }
        }
        let tail = utf8.finish();
        reply.push_str(&tail);
        if let Some(ev) = out.finish(&tail) {
            self.send(ev);
        }
        let wall = start.elapsed();
        self.messages.push(Message {
            role: "assistant",
            content: reply,
        });

        let t = self.ctx.timings();
        let prefill_ms = if t.n_p_eval() > 0 {
            t.t_p_eval_ms()
        } else {
            prefill_end.as_secs_f64() * 1000.0
        };
        // llama.cpp counts a decode per generated token after the first sample.
        let gen_ms = t.t_eval_ms();
        let ttft = first_token_at.unwrap_or(wall);
        let gen_wall = wall.saturating_sub(ttft).as_secs_f64();
        let stats = ReplyStats {
            prompt_tokens,
            conversation_tokens: tokens.len() as u32,
            generated_tokens: generated,
            ttft_ms: ttft.as_secs_f64() * 1000.0,
            prefill_ms,
            prefill_tok_s: rate(f64::from(prompt_tokens), prefill_ms / 1000.0),
            gen_ms,
            gen_tok_s: rate(f64::from(t.n_eval().max(0)), gen_ms / 1000.0),
            gen_wall_tok_s: rate(f64::from(generated.saturating_sub(1)), gen_wall),
            wall_s: wall.as_secs_f64(),
            stop,
            prefill_end_s: prefill_end.as_secs_f64(),
            load_ms: None,
            origins: Default::default(),
        };
        self.send(EngineEvent::ReplyDone(stats));
    }

    /// llama.cpp's sampler for the chain reported at load, step for step.
    fn sampler(&self) -> LlamaSampler {
        let steps: Vec<LlamaSampler> = self
            .sampler
            .steps
            .iter()
            .map(|step| match *step {
                SamplerStep::Greedy => LlamaSampler::greedy(),
                SamplerStep::TopK { k } => LlamaSampler::top_k(k),
                SamplerStep::TopP { p } => LlamaSampler::top_p(p, 1),
                SamplerStep::MinP { p } => LlamaSampler::min_p(p, 1),
                SamplerStep::Temperature { t } => LlamaSampler::temp(t),
                SamplerStep::Dist { seed } => LlamaSampler::dist(seed),
            })
            .collect();
        LlamaSampler::chain(steps, false)
    }
}

fn poll_interrupt(commands: &mut UnboundedReceiver<Command>) -> Option<Interrupt> {
    loop {
        match commands.try_recv() {
            Ok(Command::Cancel) => return Some(Interrupt::Cancel),
            Ok(Command::Shutdown) => return Some(Interrupt::Shutdown),
            // Other commands during a reply make no sense to queue; ignore them.
            Ok(_) => continue,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return None,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                return Some(Interrupt::Shutdown);
            }
        }
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_defaults_to_train_capped() {
        assert_eq!(effective_ctx(0, 8192), 4096);
        assert_eq!(effective_ctx(0, 2048), 2048);
        assert_eq!(effective_ctx(1024, 8192), 1024);
        assert_eq!(effective_ctx(9000, 8192), 8192);
    }

    #[test]
    fn batch_never_exceeds_the_requested_context() {
        assert_eq!(batch_size(16), 16);
        assert_eq!(batch_size(128), 128);
        assert_eq!(batch_size(4096), PREFILL_CHUNK as u32);
        assert_eq!(batch_size(0), 1);
    }

    #[test]
    fn prefix_of_tokens() {
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        assert_eq!(common_prefix(&t(&[1, 2, 3]), &t(&[1, 2, 4, 5])), 2);
        assert_eq!(common_prefix(&t(&[]), &t(&[1])), 0);
        assert_eq!(common_prefix(&t(&[1, 2]), &t(&[1, 2])), 2);
    }
}
