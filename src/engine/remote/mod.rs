//! Attach: the engine as a client of a server people already run (Ollama, llama-server,
//! LM Studio, any OpenAI-compatible endpoint).
//!
//! - [`protocol`]: the one parser of their streamed answers, and their request bodies.
//! - [`client`]: HTTP on `ureq`, with a streaming POST that Esc can stop at once.
//! - [`kind`]: which server is at the address.
//! - [`catalog`]: the models it offers and what it has loaded where.
//! - [`engine`]: [`engine::AttachEngine`], the [`crate::engine::Engine`] over HTTP.

pub mod catalog;
pub mod client;
pub mod engine;
pub mod kind;
pub mod protocol;
