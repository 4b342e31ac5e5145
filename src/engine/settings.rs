//! The `[model]`, `[sampling]` and `[backend]` sections of the config file.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Path to a GGUF file; when unset, llmtop searches (see `llmtop models`).
    pub path: Option<PathBuf>,
    /// Default: the model's training context, capped at 4096.
    pub n_ctx: Option<u32>,
    /// Default: all physical cores.
    pub threads: Option<u32>,
    /// Default: 0 (CPU only).
    pub gpu_layers: Option<u32>,
    pub max_tokens: Option<u32>,
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingSection {
    pub temperature: Option<f32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<u32>,
}

/// `[backend]`: chat through a server that is already running instead of loading a GGUF here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendSection {
    /// The server's address, e.g. "http://127.0.0.1:11434" (Ollama). Unset: llmtop runs the
    /// model itself. `--attach` overrides it.
    pub attach: Option<String>,
    /// The server's model to use; unset: what it has loaded, else its first. `--model`
    /// overrides it when attached.
    pub model: Option<String>,
    /// "ollama", "llama-server", "lmstudio" or "openai"; unset: detected.
    pub kind: Option<String>,
}
