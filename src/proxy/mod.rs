//! The proxy: a transparent streaming reverse proxy in front of the servers people already
//! run (Ollama, llama-server, LM Studio, any OpenAI-compatible endpoint). Every body passes
//! chunk by chunk, unchanged; a tap reads each chunk as it passes (`tap`), and the books fold
//! what it learned with the ledger into one record per request, its energy attributed
//! (`books`, `record`).

pub mod books;
pub mod feed;
pub mod forward;
pub mod health;
pub mod record;
pub mod tap;
