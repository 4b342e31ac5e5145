//! End to end: the real binary with the real default model in a real pseudo-terminal (tmux).
//! Types a prompt, waits for streamed text and a non-zero tok/s, cancels with Esc, writes a
//! snapshot with Ctrl-S, quits with Ctrl-Q and checks the terminal was restored.
//!
//! Needs tmux and the model from scripts/fetch-model.sh (or LLMTOP_E2E_MODEL); fails with a
//! clear message when either is missing rather than passing without testing anything.

mod tmux;

use std::path::{Path, PathBuf};
use std::time::Duration;
use tmux::Tmux;

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMTOP_E2E_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    Path::new(&home).join(".local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The live rate on the gauges' "now" line, if one is shown.
fn live_rate(screen: &str) -> Option<f64> {
    screen.lines().find_map(|l| {
        let i = l.find(" now ")?;
        let rest = l[i + 5..].trim_start();
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if rest[num.len()..].starts_with(" tok/s") {
            num.parse().ok()
        } else {
            None
        }
    })
}

#[test]
fn real_model_in_a_real_terminal() {
    let model = model_path();
    assert!(
        model.is_file(),
        "model {} not found: run scripts/fetch-model.sh",
        model.display()
    );
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_llmtop");
    // The shell keeps the pane alive after llmtop exits so the restored terminal can be checked.
    let script = format!(
        "LLMTOP_DATA_DIR='{}' '{}' --model '{}' --max-tokens 2000 --seed 7; echo LLMTOP-EXIT:$?; sleep 60",
        data.path().display(),
        bin,
        model.display()
    );
    let tmux = Tmux::start("dash", 120, 40, &script);

    // The first frame comes before the model has loaded; then it reports idle.
    tmux.wait_for("the dashboard", Duration::from_secs(20), |s| {
        s.contains("Gauges") && s.contains("Message")
    });
    tmux.wait_for("model loaded", Duration::from_secs(120), |s| {
        s.contains("● idle")
    });

    tmux.type_text("Tell me a long story about a lighthouse keeper and his cat.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(
        "streamed text and a live tok/s",
        Duration::from_secs(120),
        |s| s.contains("● generating") && live_rate(s).is_some_and(|r| r > 0.0),
    );
    assert!(screen.contains("Tell me a long story"), "{screen}");

    // Esc cancels mid-reply: the reply's stats line says so and the header shows it.
    tmux.keys(&["Escape"]);
    let screen = tmux.wait_for("the reply cancelled", Duration::from_secs(30), |s| {
        s.contains("● cancelled")
    });
    assert!(screen.contains("tok/s · TTFT"), "stats line: {screen}");
    assert!(screen.contains("· cancelled"), "{screen}");

    tmux.keys(&["C-s"]);
    tmux.wait_for("the snapshot path", Duration::from_secs(20), |s| {
        s.contains("snapshot: ")
    });
    // JSON, Markdown and the SVG of the screen, named by time and host.
    let dir = data.path().join("snapshots");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let ext = |p: &PathBuf| p.extension().map(|e| e.to_string_lossy().into_owned());
    let exts: Vec<_> = files.iter().filter_map(ext).collect();
    assert_eq!(exts, ["json", "md", "svg"], "{files:?}");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read card")).expect("JSON");
    assert_eq!(card["schema"], "llmtop.runcard/1");
    assert_eq!(card["model"]["quantization"], "Q4_1");
    assert_eq!(
        card["model"]["sha256_first_mib"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(
        card["prompt"],
        "Tell me a long story about a lighthouse keeper and his cat."
    );
    assert!(card["last_reply"]["generated_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(card["session"]["replies"], 1);
    assert!(card["session"]["load_ms"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(!card["series"].as_array().expect("series").is_empty());
    assert!(!card["cost"].as_array().expect("cost").is_empty());
    assert_eq!(
        card["transcript"][0]["text"],
        "Tell me a long story about a lighthouse keeper and his cat."
    );
    assert_eq!(card["transcript"][1]["role"], "assistant");
    // The card is readable by `llmtop compare`.
    llmtop::report::runcard::RunCard::load(&files[0]).expect("valid run card");
    let svg = std::fs::read_to_string(&files[2]).expect("svg");
    assert!(
        svg.contains("<svg") && svg.contains("Gauges"),
        "screen in the SVG"
    );

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    // Terminal restored: no alternate screen, cursor visible.
    assert_eq!(tmux.terminal_flags(), "0 1");
    // The lifetime tally was written on the way out.
    let tally: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("tally.json")).expect("tally"))
            .expect("tally JSON");
    assert_eq!(tally["replies"], 1);
}
