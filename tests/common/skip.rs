//! A test that cannot run on this machine says so and is counted, never a silent `ok`.
//! `skipped(reason)` prints `skipped: <test>: <reason>` (shown with `--nocapture`) and appends
//! the line to the file named by `LLMTOP_SKIP_LOG`, which scripts/test.sh sets and sums up at
//! the end of the run. A test that can never run in CI is `#[ignore = "reason"]` instead.

/// Record that the calling test is skipped, and why; the caller then returns.
pub fn skipped(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    let line = format!("skipped: {test}: {reason}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("LLMTOP_SKIP_LOG") {
        use std::io::Write;
        // One short line per write with O_APPEND: parallel tests do not interleave.
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
            Err(e) => panic!("LLMTOP_SKIP_LOG {}: {e}", path.to_string_lossy()),
        }
    }
}
