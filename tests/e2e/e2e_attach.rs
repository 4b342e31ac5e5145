//! `llmtop --attach URL`: the real binary in tmux, chatting through the real llama-server and
//! through the stand-in Ollama (model picker, what is loaded where); `llmtop models --attach`;
//! bad addresses and dead servers as one line.
use crate::servers::LlamaServer;
use crate::servers::ollama::FakeOllama;
use crate::tmux::Tmux;

use std::process::Command;
use std::time::Duration;

fn script(data: &std::path::Path, args: &str) -> String {
    format!(
        "LLMTOP_DATA_DIR='{}' '{}' {args}; echo LLMTOP-EXIT:$?; sleep 60",
        data.display(),
        env!("CARGO_BIN_EXE_llmtop"),
    )
}

#[test]
fn chat_through_a_real_llama_server_in_a_real_terminal() {
    let server = LlamaServer::start();
    let data = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(
        "attach-llama",
        120,
        40,
        &script(
            data.path(),
            &format!("--attach {} --max-tokens 24 --seed 7", server.url()),
        ),
    );
    let backend = format!("llama-server at {}", server.addr);
    let screen = tmux.wait_for("attached and idle", Duration::from_secs(60), |s| {
        s.contains("● idle") && s.contains(&backend)
    });
    assert!(
        screen.lines().next().unwrap_or("").contains(&backend),
        "header: {screen}"
    );

    tmux.type_text("Name three colours.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the reply and its figures", Duration::from_secs(120), |s| {
        s.contains("tok/s (server)") && s.contains("● idle")
    });
    // The token count is the server's, the TTFT measured here, and both say so.
    assert!(screen.contains("tok (server)"), "{screen}");
    assert!(screen.contains("(measured here)"), "{screen}");
    // Some reply text between the question and the figures.
    let lines: Vec<&str> = screen.lines().collect();
    let q = lines
        .iter()
        .position(|l| l.contains("Name three colours."))
        .expect("question on screen");
    let f = lines
        .iter()
        .position(|l| l.contains("tok/s (server)"))
        .expect("figures");
    assert!(
        lines[q + 1..f].iter().any(|l| l
            .trim_matches(|c: char| c == '│' || c.is_whitespace())
            .chars()
            .any(char::is_alphanumeric)),
        "no reply text: {screen}"
    );

    // The server runs here: its process (found by its listening socket) has a share of the
    // machine's energy beside the total, and F1 names its pid and the method.
    let screen = tmux.wait_for("the server's share", Duration::from_secs(30), |s| {
        s.contains(" server ") && s.contains("attrib.") && !s.contains("server … W")
    });
    assert!(screen.contains(" W · "), "{screen}");
    tmux.keys(&["F1"]);
    let pid = format!("Server share (pid {}):", server.pid());
    let help = tmux.wait_for("the share in the help", Duration::from_secs(10), |s| {
        s.contains(&pid)
    });
    assert!(help.contains("attribution"), "{help}");
    tmux.keys(&["Escape"]);

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    assert_eq!(tmux.terminal_flags(), "0 1");
}

#[test]
fn ollama_shows_what_is_loaded_where_and_the_picker_switches_model() {
    let fake = FakeOllama::start();
    let data = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(
        "attach-ollama",
        120,
        40,
        &script(data.path(), &format!("--attach {}", fake.url())),
    );
    let screen = tmux.wait_for("attached", Duration::from_secs(30), |s| {
        s.contains("● idle") && s.contains("62 % on GPU")
    });
    assert!(screen.contains("llama3.2:latest Q4_K_M"), "{screen}");
    assert!(screen.contains("Ollama 0.5.7 at 127.0.0.1"), "{screen}");

    // F2: the server's models, the one in use marked and where it is loaded.
    tmux.keys(&["F2"]);
    let screen = tmux.wait_for("the picker", Duration::from_secs(10), |s| {
        s.contains("qwen2.5:0.5b") && s.contains("Enter picks")
    });
    assert!(
        screen.contains("● llama3.2:latest  (loaded, 62 % on GPU)"),
        "{screen}"
    );
    tmux.keys(&["Down"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the switch", Duration::from_secs(10), |s| {
        s.contains("qwen2.5:0.5b Q4_K_M")
    });

    tmux.type_text("What colour is the sky?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the reply", Duration::from_secs(30), |s| {
        s.contains("The sky is blue") && s.contains("tok/s (server)")
    });
    // Ollama's load_duration: the cold load, from the server.
    assert!(screen.contains("model load 1500 ms (server)"), "{screen}");
    assert_eq!(fake.chats()[0]["model"], "qwen2.5:0.5b");

    // The run card says which server ran the model.
    tmux.keys(&["C-s"]);
    tmux.wait_for("the snapshot path", Duration::from_secs(20), |s| {
        s.contains("snapshot: /")
    });
    let card = std::fs::read_dir(data.path().join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("card");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&card).expect("read")).expect("JSON");
    assert_eq!(card["model"]["name"], "qwen2.5:0.5b");
    assert!(
        card["model"]["backend"]
            .as_str()
            .is_some_and(|b| b.starts_with("Ollama 0.5.7 at 127.0.0.1:")),
        "{}",
        card["model"]
    );
    assert_eq!(card["last_reply"]["generated_tokens"], 6);

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}

#[test]
fn a_server_that_is_not_there_is_shown_not_hung() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let data = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::start(
        "attach-down",
        120,
        40,
        &script(data.path(), &format!("--attach http://127.0.0.1:{port}")),
    );
    tmux.wait_for("the failure on screen", Duration::from_secs(30), |s| {
        s.contains("nothing answers")
    });
    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}

fn llmtop(args: &[&str]) -> (i32, String, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args(args)
        .env("LLMTOP_DATA_DIR", data.path())
        .output()
        .expect("run llmtop");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_attach_lists_the_servers_models_and_bad_addresses_are_one_line() {
    let fake = FakeOllama::start();
    let (code, out, err) = llmtop(&["models", "--attach", &fake.url()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Ollama 0.5.7 at 127.0.0.1:"), "{out}");
    let llama = lines
        .iter()
        .find(|l| l.starts_with("llama3.2:latest"))
        .expect("llama row");
    assert!(
        llama.contains("3.2B")
            && llama.contains("Q4_K_M")
            && llama.contains("2.0 GB")
            && llama.ends_with("62 % on GPU"),
        "{out}"
    );
    let qwen = lines
        .iter()
        .find(|l| l.starts_with("qwen2.5:0.5b"))
        .expect("qwen row");
    assert!(qwen.contains("494M") && !qwen.contains("GPU"), "{out}");

    let (code, out, _) = llmtop(&["models", "--attach", &fake.url(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["kind"], "ollama");
    assert_eq!(v["loaded"][0]["size_vram"], 1_860_000_000u64);

    for (args, what) in [
        (vec!["--attach", "ftp://box:1"], "bad URL"),
        (vec!["--attach", "http://h:99999"], "port"),
        (
            vec!["models", "--attach", "http://127.0.0.1:1"],
            "nothing answers",
        ),
        (vec!["--attach", &fake.url(), "--kind", "tgi"], "--kind tgi"),
    ] {
        let (code, _, err) = llmtop(&args);
        assert_ne!(code, 0, "{args:?}");
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}
