//! End to end: the real binary with the real default model in a real pseudo-terminal (tmux).
//! Types a prompt, waits for streamed text and a non-zero tok/s, cancels with Esc, writes a
//! snapshot with Ctrl-S, quits with Ctrl-Q and checks the terminal was restored.
//!
//! Needs tmux and the model from scripts/fetch-model.sh (or LLMTOP_E2E_MODEL); fails with a
//! clear message when either is missing rather than passing without testing anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One tmux server on its own socket, killed on drop whatever happens.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("llmtop-e2e-{name}-{}", std::process::id()),
        }
    }

    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }

    fn type_text(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "e2e", "-l", text]);
    }

    /// Poll the screen until `pred` holds; panic with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

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
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is not installed (apt-get install tmux)"
    );
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
    let tmux = Tmux::new("dash");
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        "sh",
        "-c",
        &script,
    ]);

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
    let dir = data.path().join("snapshots");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("read card")).expect("JSON");
    assert_eq!(card["kind"], "llmtop-run-card");
    assert_eq!(card["model"]["quantization"], "Q4_1");
    assert_eq!(card["last_reply"]["stop"], "cancelled");
    assert!(card["last_reply"]["generated_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        card["transcript"][0]["text"],
        "Tell me a long story about a lighthouse keeper and his cat."
    );
    assert_eq!(card["transcript"][1]["role"], "assistant");

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    // Terminal restored: no alternate screen, cursor visible.
    let flags = tmux.cmd(&[
        "display",
        "-p",
        "-t",
        "e2e",
        "#{alternate_on} #{cursor_flag}",
    ]);
    assert_eq!(flags.trim(), "0 1");
}
