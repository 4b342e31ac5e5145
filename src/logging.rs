//! Logs go to a file under the data dir, never to the terminal: the TUI owns the screen, and
//! llama.cpp is chatty. `LLMTOP_LOG=debug|info|warn|error|off` sets the level (default info).

use std::path::PathBuf;
use tracing_subscriber::filter::LevelFilter;

/// Start logging to `<data dir>/llmtop.log`; returns the path, or None if it cannot be opened
/// (then nothing is logged: better silent than a garbled screen).
pub fn init() -> Option<PathBuf> {
    let level = match std::env::var("LLMTOP_LOG").as_deref() {
        Ok("off") => return None,
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        _ => LevelFilter::INFO,
    };
    let path = crate::util::paths::log_file();
    std::fs::create_dir_all(path.parent()?).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_max_level(level)
        .try_init()
        .ok()?;
    Some(path)
}
