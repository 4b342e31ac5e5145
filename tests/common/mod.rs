//! Shared helpers for tests that run the real engine on the real default model.
#![allow(dead_code)]

use llmtop::engine::llama::LlamaEngine;
use llmtop::engine::{
    self, Command, EngineEvent, EngineHandle, EngineSettings, ModelInfo, ReplyStats,
};
use std::path::PathBuf;
use std::time::Duration;

/// The default model, installed by scripts/fetch-model.sh (the README's test command runs it).
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMTOP_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let p = llmtop::config::models_dir().join(llmtop::engine::models::DEFAULT_MODEL_FILE);
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-model.sh first (the test command does)",
        p.display()
    );
    p
}

pub fn settings() -> EngineSettings {
    let mut s = EngineSettings::with_model(model_path());
    s.temperature = 0.0;
    s.n_ctx = 2048;
    s.threads = 2;
    s.max_tokens = 48;
    s
}

pub struct Running {
    pub handle: EngineHandle,
    pub info: ModelInfo,
}

/// Generous: a loaded CI machine can be slow, and a hang must fail rather than block forever.
pub const TIMEOUT: Duration = Duration::from_secs(300);

pub fn next(handle: &mut EngineHandle) -> EngineEvent {
    llmtop::commands::bench::recv_timeout(handle, TIMEOUT).expect("engine event within the timeout")
}

pub fn start(settings: EngineSettings) -> Running {
    let mut handle = engine::spawn(Box::new(LlamaEngine { settings })).expect("spawn");
    handle.send(Command::Load);
    loop {
        match next(&mut handle) {
            EngineEvent::Loaded(info) => return Running { handle, info },
            EngineEvent::Failed(e) => panic!("load failed: {e}"),
            _ => {}
        }
    }
}

/// Everything one reply produced.
#[derive(Debug, Default)]
pub struct Reply {
    pub pieces: Vec<String>,
    /// Tokens the stream's events counted.
    pub tokens: u32,
    /// Tokens seen when `collect`'s callback asked for a cancel.
    pub cancelled_at: Option<u32>,
    pub stats: Option<ReplyStats>,
    pub trimmed: usize,
    pub failed: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
    pub fn stats(&self) -> &ReplyStats {
        self.stats.as_ref().expect("reply finished")
    }
}

impl Running {
    pub fn ask(&mut self, prompt: &str) -> Reply {
        self.handle.send(Command::Send(prompt.to_string()));
        self.collect(|_| false)
    }

    /// Collect events until ReplyDone; `on_tokens` (given the tokens so far) may return true
    /// to send Cancel, once.
    pub fn collect(&mut self, mut on_tokens: impl FnMut(u32) -> bool) -> Reply {
        let mut r = Reply::default();
        loop {
            match next(&mut self.handle) {
                EngineEvent::Tokens { text, count } => {
                    r.pieces.push(text);
                    r.tokens += count;
                    if r.cancelled_at.is_none() && on_tokens(r.tokens) {
                        r.cancelled_at = Some(r.tokens);
                        self.handle.send(Command::Cancel);
                    }
                }
                EngineEvent::ContextTrimmed { dropped_messages } => r.trimmed += dropped_messages,
                EngineEvent::Failed(e) => r.failed.push(e),
                EngineEvent::ReplyDone(s) => {
                    r.stats = Some(s);
                    return r;
                }
                _ => {}
            }
        }
    }
}
