//! Hostile input against the engine, through the real binary: settings llama.cpp would assert
//! on, corrupt GGUF metadata, a model file truncated while mapped, fatal and terminating
//! signals. Each case must end with one clear line (or a working reply), the right exit code,
//! no panic or assert text, and a restored terminal; terminating signals flush the tally.
//!
//! Needs tmux and the default model (scripts/fetch-model.sh, or LLMTOP_TEST_MODEL).

use crate::common;
use crate::support;
use crate::tmux;

use llmtop::engine::gguf;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tmux::Tmux;

const BIN: &str = env!("CARGO_BIN_EXE_llmtop");

/// Text that must never reach the user: a Rust panic, a llama.cpp assert. (The shell's own
/// "Segmentation fault" after a fatal signal is its report of the exit status, not ours.)
const FORBIDDEN: &[&str] = &[
    "panicked",
    "GGML_ASSERT",
    "RUST_BACKTRACE",
    "stack backtrace",
];

fn assert_clean(what: &str, text: &str) {
    for f in FORBIDDEN {
        assert!(!text.contains(f), "{what} shows {f:?}:\n{text}");
    }
}

/// A copy of the default model in `dir` with the u32 metadata value `key` set to `value`,
/// patched in place at the offset the reader found.
fn patched_model(dir: &Path, key: &str, value: u32) -> PathBuf {
    let src = common::model_path();
    let info = gguf::read(&src).expect("the default model reads");
    let at = *info.value_offsets.get(key).expect("key in the model") as usize;
    let mut bytes = std::fs::read(&src).expect("read model");
    // The type tag before the value: 4 is GGUF's uint32.
    assert_eq!(&bytes[at - 4..at], &4u32.to_le_bytes(), "{key} is a u32");
    let before = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(Some(u64::from(before)), info.metadata[key].as_u64());
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let out = dir.join(format!("patched-{}-{value}.gguf", key.replace('.', "_")));
    std::fs::write(&out, bytes).expect("write patched model");
    let reread = gguf::read(&out);
    assert!(
        reread.is_err(),
        "{key}={value} must be refused by the reader"
    );
    out
}

/// The binary run directly (no terminal): exit code, stdout, stderr.
fn run_plain(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("LLMTOP_DATA_DIR", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .output()
        .expect("run llmtop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// llmtop in a tmux pane with its own data and config dirs. The shell writes llmtop's pid to
/// `<dir>/pid` and its stderr to `<dir>/stderr`; after it ends, the shell prints the exit
/// status and saves `stty -a` of the pane. Killed on drop if it is still running.
struct Pane {
    tmux: Tmux,
    dir: PathBuf,
}

/// What a finished run left behind.
struct Outcome {
    code: i32,
    screen: String,
    stderr: String,
    flags: String,
    stty: String,
}

impl Pane {
    fn start(name: &str, dir: &Path, args: &str) -> Pane {
        let script = format!(
            "cd '{d}' && sh -c \"echo \\$\\$ > pid; LLMTOP_DATA_DIR='{d}/data' XDG_CONFIG_HOME='{d}/config' exec '{BIN}' {args} 2>'{d}/stderr'\"; echo LLMTOP-EXIT:$?; stty -a > '{d}/stty'; echo STTY-SAVED; sleep 120",
            d = dir.display(),
        );
        let tmux = Tmux::start(name, 120, 40, &script);
        Pane {
            tmux,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        let path = self.dir.join("pid");
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no pid file");
    }

    fn alive(&self) -> bool {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                // A zombie or a reused pid of another program is not ours.
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains("llmtop"))
            })
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn wait_idle(&self) {
        self.tmux
            .wait_for("the model loaded", Duration::from_secs(120), |s| {
                s.contains("● idle")
            });
    }

    fn finish(&self, timeout: Duration) -> Outcome {
        let screen = self
            .tmux
            .wait_for("llmtop to exit", timeout, |s| s.contains("STTY-SAVED"));
        let code = screen
            .split("LLMTOP-EXIT:")
            .nth(1)
            .and_then(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            })
            .expect("exit status on screen");
        assert!(!self.alive(), "llmtop still running after it reported exit");
        Outcome {
            code,
            screen,
            stderr: std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default(),
            flags: self.tmux.terminal_flags(),
            stty: std::fs::read_to_string(self.dir.join("stty")).expect("stty saved"),
        }
    }

    fn tally(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.dir.join("data/tally.json")).expect("tally.json written"),
        )
        .expect("tally JSON")
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        if self.alive() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid().to_string()])
                .status();
        }
    }
}

impl Outcome {
    /// The pane is back in the normal screen with the cursor shown, the line discipline
    /// cooked and echoing, and nothing forbidden was shown or logged to stderr.
    fn assert_restored(&self, what: &str) {
        assert_eq!(self.flags, "0 1", "{what}: alternate screen / cursor");
        let words: Vec<&str> = self.stty.split_whitespace().collect();
        for flag in ["icanon", "echo", "isig"] {
            assert!(
                words.contains(&flag),
                "{what}: {flag} off after exit:\n{}",
                self.stty
            );
        }
        assert_clean(what, &self.screen);
        assert_clean(what, &self.stderr);
    }

    /// The single non-empty stderr line.
    fn one_line(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        lines[0]
    }
}

fn model_arg() -> String {
    common::model_path().display().to_string()
}

// ---- settings llama.cpp asserts on ------------------------------------------------------

#[test]
fn absurd_thread_count_is_one_line_naming_the_flag_and_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limit = llmtop::engine::effective::thread_limit().0;
    let pane = Pane::start(
        "threads",
        dir.path(),
        &format!("--model '{}' --threads 100000", model_arg()),
    );
    let out = pane.finish(Duration::from_secs(30));
    assert_eq!(out.code, 1, "{}", out.stderr);
    out.assert_restored("--threads 100000");
    let line = out.one_line();
    assert!(line.starts_with("llmtop: --threads 100000: "), "{line}");
    assert!(
        line.contains(&format!("use --threads {limit} or less")),
        "{line}"
    );

    // bench refuses the same way, before loading anything.
    let (code, _, err) = run_plain(
        dir.path(),
        &["bench", "--model", &model_arg(), "--threads", "100000"],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("use --threads {limit} or less")),
        "{err}"
    );
    assert_clean("bench --threads", &err);

    // The limit itself is allowed: the dashboard loads with it.
    let ok_dir = tempfile::tempdir().expect("tempdir");
    let pane = Pane::start(
        "threads-ok",
        ok_dir.path(),
        &format!("--model '{}' --threads {limit}", model_arg()),
    );
    pane.wait_idle();
    pane.tmux.keys(&["C-q"]);
    let out = pane.finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.assert_restored("--threads at the limit");
}

/// A dashboard with a tiny context gets a prompt: it must answer (the batch sized to the
/// context) or say in the chat that the message is too long, and quit cleanly.
fn small_context_dashboard(name: &str, n_ctx: u32, prompt: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pane = Pane::start(
        name,
        dir.path(),
        &format!(
            "--model '{}' --n-ctx {n_ctx} --max-tokens 8 --temperature 0",
            model_arg()
        ),
    );
    pane.wait_idle();
    pane.tmux.type_text(prompt);
    pane.tmux.keys(&["Enter"]);
    let screen = pane
        .tmux
        .wait_for("a reply or an error", Duration::from_secs(120), |s| {
            s.contains("tok/s · TTFT") || s.contains("error:")
        });
    if screen.contains("error:") {
        assert!(
            screen.contains("message too long") && screen.contains("--n-ctx"),
            "the error names the cause and the fix:\n{screen}"
        );
    }
    // Still usable: a process that died would not take the quit key.
    pane.tmux.keys(&["C-q"]);
    let out = pane.finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, out.screen);
    out.assert_restored(name);
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| ["tell", "me", "about", "the", "sea", "and", "ships"][i % 7])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn context_of_16_with_a_prompt_answers_or_refuses() {
    small_context_dashboard("ctx16", 16, "hi");
}

#[test]
fn context_of_128_with_a_180_word_prompt_answers_or_refuses() {
    small_context_dashboard("ctx128", 128, &words(180));
}

#[test]
fn bench_with_a_tiny_context_answers_or_refuses_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = words(180);
    for (n_ctx, prompt) in [("16", "hi"), ("128", long.as_str())] {
        let (code, stdout, err) = run_plain(
            dir.path(),
            &[
                "bench",
                "--allow-contention",
                "--model",
                &model_arg(),
                "--n-ctx",
                n_ctx,
                "--prompt",
                prompt,
                "--reps",
                "1",
                "--no-warmup",
                "--no-idle",
                "--max-tokens",
                "4",
            ],
        );
        assert_clean("bench", &err);
        assert_clean("bench", &stdout);
        match code {
            0 => assert!(stdout.contains("tok/s"), "{stdout}"),
            1 => {
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(err.contains("--n-ctx"), "names the fix: {err}");
            }
            other => panic!("n_ctx {n_ctx}: exit {other}: {err}"),
        }
    }
}

// ---- corrupt metadata -----------------------------------------------------------------

fn corrupt_metadata_is_refused(key: &str, value: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = patched_model(dir.path(), key, value);
    let pane = Pane::start(
        &format!("meta-{}-{value}", key.replace('.', "-")),
        dir.path(),
        &format!("--model '{}'", model.display()),
    );
    let out = pane.finish(Duration::from_secs(30));
    assert_eq!(out.code, 1, "{}", out.stderr);
    out.assert_restored(key);
    let line = out.one_line();
    assert!(
        line.contains(&format!("metadata {key} = {value} is out of range")),
        "{line}"
    );
    assert!(line.contains(&model.display().to_string()), "{line}");
    assert!(line.contains("re-download"), "{line}");

    let (code, _, err) = run_plain(
        dir.path(),
        &[
            "bench",
            "--model",
            &model.display().to_string(),
            "--prompt",
            "hi",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{key} = {value}")), "{err}");
    assert_clean("bench", &err);
}

#[test]
fn block_count_zero_is_refused() {
    corrupt_metadata_is_refused("llama.block_count", 0);
}

#[test]
fn block_count_100000_is_refused() {
    corrupt_metadata_is_refused("llama.block_count", 100_000);
}

#[test]
fn context_length_zero_is_refused() {
    corrupt_metadata_is_refused("llama.context_length", 0);
}

#[test]
fn context_length_u32_max_is_refused() {
    corrupt_metadata_is_refused("llama.context_length", u32::MAX);
}

// ---- the engine thread dying -------------------------------------------------------------

struct Panicking;

impl llmtop::engine::Engine for Panicking {
    fn run(
        self: Box<Self>,
        _commands: tokio::sync::mpsc::UnboundedReceiver<llmtop::engine::Command>,
        _events: tokio::sync::mpsc::UnboundedSender<llmtop::engine::EngineEvent>,
    ) {
        panic!("n_ctx_train fits into an u32");
    }
}

#[test]
fn an_engine_that_panics_reports_failed_instead_of_going_silent() {
    let mut handle = llmtop::engine::spawn(Box::new(Panicking)).expect("spawn");
    let ev = llmtop::commands::bench::recv_timeout(&mut handle, Duration::from_secs(10));
    match ev {
        Some(llmtop::engine::EngineEvent::Failed(msg)) => {
            assert!(
                msg.starts_with("the engine stopped: n_ctx_train fits into an u32"),
                "{msg}"
            );
            assert!(msg.contains("re-download"), "{msg}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn an_engine_gone_while_loading_is_a_failure_not_an_endless_loading() {
    use llmtop::dashboard::event::ENGINE_GONE;
    use llmtop::dashboard::state::{EngineState, Role};
    use llmtop::engine::EngineEvent;
    let mut app = support::new_app(80, 24);
    support::engine(&mut app, EngineEvent::LoadProgress(1.0), 0.5);
    support::typ(&mut app, "hi");
    support::key(
        &mut app,
        crossterm::event::KeyCode::Enter,
        crossterm::event::KeyModifiers::NONE,
    );
    assert_eq!(app.pending.as_deref(), Some("hi"), "queued while loading");
    // The engine panicked: spawn reports it, then the channel closes (the event source's
    // ENGINE_GONE). The first cause is shown, once; the queued message is dropped.
    let cause = "the engine stopped: boom (the model file is probably corrupt; re-download it, details in the log file)";
    support::engine(&mut app, EngineEvent::Failed(cause.into()), 0.6);
    support::engine(&mut app, EngineEvent::Failed(ENGINE_GONE.into()), 0.7);
    assert_eq!(app.engine, EngineState::Failed(cause.into()));
    assert_eq!(app.pending, None);
    let notices: Vec<&str> = app
        .messages
        .iter()
        .filter(|m| m.role == Role::Notice)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(notices, vec![format!("error: {cause}").as_str()]);

    // Gone after loading: no reply can come, so the state is failed too, not idle.
    let mut app = support::idle_app(80, 24);
    support::engine(&mut app, EngineEvent::Failed(ENGINE_GONE.into()), 9.0);
    assert_eq!(app.engine, EngineState::Failed(ENGINE_GONE.into()));
}

// ---- fatal signals: the terminal survives what cannot be prevented --------------------------

fn fatal_signal_restores_the_terminal(sig: &str, number: i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pane = Pane::start(
        &format!("fatal-{sig}"),
        dir.path(),
        &format!("--model '{}'", model_arg()),
    );
    pane.wait_idle();
    pane.signal(sig);
    let out = pane.finish(Duration::from_secs(30));
    // The shell's status for a process killed by a signal: 128 + its number.
    assert_eq!(out.code, 128 + number, "SIG{sig}: {}", out.screen);
    out.assert_restored(sig);
}

#[test]
fn sigabrt_restores_the_terminal_and_dies_by_the_signal() {
    fatal_signal_restores_the_terminal("ABRT", libc::SIGABRT);
}

#[test]
fn sigsegv_restores_the_terminal_and_dies_by_the_signal() {
    fatal_signal_restores_the_terminal("SEGV", libc::SIGSEGV);
}

#[test]
fn sigbus_restores_the_terminal_and_dies_by_the_signal() {
    fatal_signal_restores_the_terminal("BUS", libc::SIGBUS);
}

#[test]
fn model_truncated_while_mapped_does_not_leave_the_terminal_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("victim.gguf");
    std::fs::copy(common::model_path(), &model).expect("copy model");
    let pane = Pane::start(
        "truncated",
        dir.path(),
        &format!("--model '{}' --max-tokens 64", model.display()),
    );
    pane.wait_idle();
    // Drop the cached pages too, so the next touch of the weights faults on a hole.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .expect("open model");
    f.set_len(4096).expect("truncate");
    drop(f);
    pane.tmux.type_text("hello there");
    pane.tmux.keys(&["Enter"]);
    let out = pane.finish(Duration::from_secs(60));
    // SIGBUS kills it (135); had every page still been resident it would have answered, and
    // the quit below never came: either way the terminal is back.
    assert_eq!(out.code, 128 + libc::SIGBUS, "{}", out.screen);
    out.assert_restored("truncated model");
}

// ---- terminating signals: flush the tally, restore the terminal --------------------------------

fn terminating_signal_flushes_and_restores(sig: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pane = Pane::start(&format!("term-{sig}"), dir.path(), "--demo");
    pane.wait_idle();
    // A few samples (4 Hz) add energy to the session.
    std::thread::sleep(Duration::from_millis(1500));
    pane.signal(sig);
    let out = pane.finish(Duration::from_secs(15));
    assert_eq!(out.code, 0, "clean exit on SIG{sig}: {}", out.screen);
    out.assert_restored(sig);
    let tally = pane.tally();
    // The demo machine draws at least 32 W: over a second and more that is well above 30 J.
    let j = tally["energy_j"].as_f64().expect("energy_j");
    assert!(j > 30.0, "energy in the tally after SIG{sig}: {j}");
}

#[test]
fn sigint_from_outside_flushes_and_restores() {
    terminating_signal_flushes_and_restores("INT");
}

#[test]
fn sigquit_flushes_and_restores() {
    terminating_signal_flushes_and_restores("QUIT");
}

#[test]
fn sigusr1_flushes_and_restores() {
    terminating_signal_flushes_and_restores("USR1");
}

#[test]
fn sigalrm_flushes_and_restores() {
    terminating_signal_flushes_and_restores("ALRM");
}

#[test]
fn sigrtmin_flushes_and_restores() {
    terminating_signal_flushes_and_restores("RTMIN");
}

fn mid_reply_signal_counts_the_reply(sig: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pane = Pane::start(
        &format!("midreply-{sig}"),
        dir.path(),
        &format!("--model '{}' --max-tokens 2000 --seed 7", model_arg()),
    );
    pane.wait_idle();
    pane.tmux
        .type_text("Tell me a long story about a lighthouse keeper and his cat.");
    pane.tmux.keys(&["Enter"]);
    pane.tmux
        .wait_for("tokens streaming", Duration::from_secs(120), |s| {
            s.contains("● generating")
        });
    // Let some tokens through so there is a partial reply to count.
    std::thread::sleep(Duration::from_millis(800));
    pane.signal(sig);
    let out = pane.finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "clean exit on SIG{sig}: {}", out.screen);
    out.assert_restored(sig);
    let tally = pane.tally();
    assert_eq!(tally["replies"], 1, "the cut reply counts: {tally}");
    let generated = tally["generated_tokens"]
        .as_u64()
        .expect("generated_tokens");
    assert!(generated > 0, "its tokens count: {tally}");
    assert!(
        generated < 2000,
        "cut short, not run to the end: {generated}"
    );
    assert!(
        tally["prompt_tokens"].as_u64().is_some_and(|p| p > 10),
        "the prompt counts: {tally}"
    );
}

#[test]
fn sigterm_mid_reply_adds_the_reply_to_the_tally() {
    mid_reply_signal_counts_the_reply("TERM");
}

#[test]
fn sighup_mid_reply_adds_the_reply_to_the_tally() {
    mid_reply_signal_counts_the_reply("HUP");
}
