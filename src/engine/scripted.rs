//! A scripted engine: replies with canned text at a fixed rate. For UI tests and `--demo`;
//! never a substitute for tests of the real engine.

use super::effective::{InEffect, SamplerChain, SamplerStep};
use super::{Command, Engine, EngineEvent, ModelInfo, Phase, ReplyStats, StopReason};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

pub struct ScriptedEngine {
    /// Pieces of every reply, streamed one per `token_interval`.
    pub reply: Vec<String>,
    pub token_interval: Duration,
    pub load_steps: u32,
}

impl Default for ScriptedEngine {
    fn default() -> Self {
        let text = "Once upon a time, a small model ran on a quiet mini PC and counted every joule it spent. ";
        Self {
            reply: text.split_inclusive(' ').map(str::to_string).collect(),
            token_interval: Duration::from_millis(30),
            load_steps: 10,
        }
    }
}

/// The scripted conversation's depth when generation starts, tokens.
pub const SCRIPTED_DEPTH: u32 = 10;

/// What a scripted token reads: a model of known size (90 MB of weights read per token, plus
/// 23 040 bytes of F16 KV cache per token of context, as SmolLM2-135M's 30 layers x 3 KV
/// heads x 64 + 64 dims x 2 bytes), so tests can work every roofline figure out by hand.
pub fn scripted_traffic() -> super::traffic::DecodeTraffic {
    super::traffic::DecodeTraffic {
        weight_bytes: 90_000_000,
        file_tensor_bytes: 98_000_000,
        lookup_skipped_bytes: 8_000_000,
        tied_output: false,
        experts: None,
        kv_bytes_per_position: 23_040,
        n_layer: 30,
        kv_layers: 30,
        kv_heads: 3,
        head_dim_k: 64,
        head_dim_v: 64,
        kv_type: "f16".into(),
        unsized_tensors: 0,
    }
}

impl ScriptedEngine {
    pub fn model_info() -> ModelInfo {
        ModelInfo {
            name: "Scripted demo model".into(),
            path: PathBuf::from("demo.gguf"),
            architecture: "demo".into(),
            n_params: 135_000_000,
            file_size: 98_362_432,
            quantization: "Q4_1".into(),
            n_ctx_train: 8192,
            n_ctx: 4096,
            chat_template: "chatml".into(),
            load_ms: 0.0,
            in_effect: Box::new(InEffect {
                threads: 4,
                gpu_layers: 0,
                sampler: SamplerChain {
                    steps: vec![SamplerStep::Greedy],
                },
                max_tokens: 1024,
                system_prompt: "You are a helpful assistant.".into(),
                chat_template_text: "chatml".into(),
            }),
            backend: None,
            traffic: Some(Box::new(scripted_traffic())),
        }
    }
}

impl Engine for ScriptedEngine {
    fn run(
        self: Box<Self>,
        mut commands: UnboundedReceiver<Command>,
        events: UnboundedSender<EngineEvent>,
    ) {
        while let Some(cmd) = commands.blocking_recv() {
            match cmd {
                Command::Load => {
                    for i in 1..=self.load_steps {
                        let _ = events
                            .send(EngineEvent::LoadProgress(i as f32 / self.load_steps as f32));
                    }
                    let _ = events.send(EngineEvent::Loaded(Self::model_info()));
                    let _ = events.send(EngineEvent::Phase(Phase::Idle));
                }
                Command::Send(_) => {
                    let start = Instant::now();
                    let _ = events.send(EngineEvent::ContextDepth(SCRIPTED_DEPTH));
                    let _ = events.send(EngineEvent::Phase(Phase::Generating));
                    let mut stop = StopReason::EndOfGeneration;
                    let mut n = 0u32;
                    for piece in &self.reply {
                        if let Ok(Command::Cancel | Command::Shutdown) = commands.try_recv() {
                            stop = StopReason::Cancelled;
                            break;
                        }
                        std::thread::sleep(self.token_interval);
                        let _ = events.send(EngineEvent::Tokens {
                            text: piece.clone(),
                            count: 1,
                        });
                        n += 1;
                    }
                    let wall = start.elapsed().as_secs_f64();
                    let rate = if wall > 0.0 { f64::from(n) / wall } else { 0.0 };
                    let _ = events.send(EngineEvent::ReplyDone(ReplyStats {
                        prompt_tokens: SCRIPTED_DEPTH,
                        conversation_tokens: SCRIPTED_DEPTH,
                        generated_tokens: n,
                        ttft_ms: self.token_interval.as_secs_f64() * 1000.0,
                        prefill_ms: 1.0,
                        prefill_tok_s: 10_000.0,
                        gen_ms: wall * 1000.0,
                        gen_tok_s: rate,
                        gen_wall_tok_s: rate,
                        wall_s: wall,
                        stop,
                        prefill_end_s: 0.001,
                        load_ms: None,
                        origins: Default::default(),
                    }));
                    let _ = events.send(EngineEvent::Phase(Phase::Idle));
                }
                Command::Cancel | Command::Reset | Command::UseModel(_) => {}
                Command::Shutdown => break,
            }
        }
    }
}
