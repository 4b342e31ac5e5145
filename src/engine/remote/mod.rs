//! Attach: the engine as a client of a server people already run (Ollama, llama-server,
//! LM Studio, any OpenAI-compatible endpoint).
//!
//! - [`protocol`]: the one parser of their streamed answers, and their request bodies.

pub mod protocol;
