//! End to end: the real binary with the real default model in a real pseudo-terminal (tmux).
//! Types a prompt, waits for streamed text and a non-zero tok/s, cancels with Esc, writes a
//! snapshot with Ctrl-S, quits with Ctrl-Q and checks the terminal was restored.
//!
//! Needs tmux and the model from scripts/fetch-model.sh (or LLMTOP_E2E_MODEL); fails with a
//! clear message when either is missing rather than passing without testing anything.
use crate::live;
use crate::tmux;

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
        s.contains("snapshot: /")
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

/// The parts of the last reply's energy line in the chat pane: ["41 J", "0.17 J/tok",
/// "0.00020 ¢", ...] ("est." first when estimated).
fn reply_figures(screen: &str) -> Vec<String> {
    let line = screen
        .lines()
        .rfind(|l| l.starts_with('│') && l.contains(" J/tok") && !l.contains("net of idle"))
        .unwrap_or_else(|| panic!("no reply figures on the screen:\n{screen}"));
    // The chat pane is the first box on the line: "│  41 J · ... │".
    let inner = line.trim_start_matches('│');
    let inner = &inner[..inner.find('│').unwrap_or(inner.len())];
    inner
        .trim()
        .trim_start_matches("est. ")
        .split(" · ")
        // A band too wide for digits alone is said in words beside the joules.
        .filter(|part| !part.starts_with("could be"))
        .map(str::to_string)
        .collect()
}

/// `GET /metrics` over loopback: the value of the first line of `name`.
fn scrape(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The dashboard on a live synthetic machine at a flat 190 W with a Shelly plug on
/// 127.0.0.1: the gauge, the exporter, the run card and the tally all read the wall, never
/// the components, and the exporter keeps the last reply's rate after it ends.
#[test]
fn dashboard_reads_the_wall_plug_on_every_surface() {
    let m = live::LiveMachine::start(live::Profile::flat(40.0, 120.0, 30.0));
    let watts = m.profile.wall_w(0.0);
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = data.path().join("config.toml");
    std::fs::write(&cfg, m.plug_config()).expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let script = format!(
        "LLMTOP_DATA_DIR='{d}' '{bin}' --config '{cfg}' --sysfs-root '{root}' --model '{model}' --max-tokens 300 --temperature 0 --metrics-addr 127.0.0.1:{port}; echo LLMTOP-EXIT:$?; sleep 60",
        d = data.path().display(),
        bin = env!("CARGO_BIN_EXE_llmtop"),
        cfg = cfg.display(),
        root = m.root.display(),
        model = model_path().display(),
    );
    let tmux = Tmux::start("live", 120, 40, &script);
    let screen = tmux.wait_for("the wall plug on the gauge", Duration::from_secs(60), |s| {
        s.contains("W wall plug")
    });
    let gauge: f64 = screen
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("Power ")? + 6..];
            rest[..rest.find(" W wall plug")?].parse().ok()
        })
        .expect("the gauge's watts");
    // The counter's rate over the plug's last step: the wall's 190 W.
    live::assert_within("gauge", gauge, watts, 0.01);
    tmux.wait_for("model loaded", Duration::from_secs(120), |s| {
        s.contains("● idle")
    });
    // The exporter's system energy grows at the wall's rate.
    let (e0, t0) = (
        scrape(port, "llmtop_system_energy_joules_total").expect("energy"),
        std::time::Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(4));
    let (e1, t1) = (
        scrape(port, "llmtop_system_energy_joules_total").expect("energy"),
        std::time::Instant::now(),
    );
    // Scrapes land between 1 Hz plug steps (up to a step late at either end); wall plus the
    // parts (350 W) would be far outside.
    let rate = (e1 - e0) / (t1 - t0).as_secs_f64();
    assert!(
        (rate - watts).abs() <= watts * 0.3,
        "exporter rate {rate} W vs {watts} W"
    );
    // The system power is the wall's (not wall plus the parts).
    let system_w = scrape(port, "llmtop_system_power_watts").expect("system power");
    live::assert_within("exporter system power", system_w, watts, 0.01);

    // A reply of a few seconds, so it spans several 1 Hz plug steps (a 0.3 s one sat inside
    // one step, whose shape the ledger takes from the component counters: off by 2 % in CI).
    tmux.type_text("Write a long story about a lighthouse keeper.");
    tmux.keys(&["Enter"]);
    // The wait is a guard against a hang, not a speed test: other tests of this binary run
    // models beside this one, and a busy 2-CPU machine gives 1-2 tok/s (300 tokens: minutes).
    tmux.wait_for("the reply", Duration::from_secs(300), |s| {
        s.contains("tok/s · TTFT")
    });
    // Its energy and money once the ledger has the plug's reading past its end.
    tmux.wait_for("the reply's figures", Duration::from_secs(20), |s| {
        s.contains(" J/tok")
    });
    // Samples keep arriving after the reply: the exporter still shows its rate.
    std::thread::sleep(Duration::from_millis(1500));
    let rate = scrape(port, "llmtop_generation_tokens_per_second").expect("rate");
    assert!(rate > 0.0, "tok/s after the reply: {rate}");

    tmux.keys(&["C-s"]);
    tmux.wait_for("the snapshot path", Duration::from_secs(20), |s| {
        s.contains("snapshot: /")
    });
    let dir = data.path().join("snapshots");
    let json = std::fs::read_dir(&dir)
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("card json");
    let card = llmtop::report::runcard::RunCard::load(&json).expect("card");
    let session = card.session.energy.as_ref().expect("session energy");
    assert_eq!(session.basis.as_deref(), Some("wall"));
    assert!(
        session.basis_changes.is_empty(),
        "{:?}",
        session.basis_changes
    );
    live::assert_within("card session power", session.avg_w, watts, 0.01);
    let reply = card
        .last_reply
        .as_ref()
        .and_then(|r| r.energy.as_ref())
        .expect("reply energy");
    // The reply's ends fall inside 1 Hz plug steps, which the ledger shapes by the 4 Hz
    // component counters; when the machine is busy (the other tests) the thread rewriting the
    // live tree falls behind and those counters advance in bursts. Over a reply of a few seconds
    // that stays within 2 % (a 0.3 s reply read -1.8 % and +2.1 % in CI). The wall plus the
    // parts would be +84 %.
    live::assert_within("card reply power", reply.avg_w, watts, 0.02);

    // The real reply ends with its own energy, J/token and money, the same figures the card
    // has (both from the ledger), in the configured region's money (US, no [pricing]).
    let figures = reply_figures(&tmux.screen());
    assert!(figures.len() >= 3, "reply figures {figures:?}");
    use llmtop::accounting::pricing::{Currency, format_j_per_token, format_money};
    let usd = Currency::new("USD").expect("USD");
    let jpt = reply.j_per_token.expect("card J/token");
    assert_eq!(figures[1], format_j_per_token(jpt), "{figures:?}");
    let cost = card.cost[0].last_reply.expect("card reply cost");
    assert_eq!(card.cost[0].currency, "USD");
    assert_eq!(figures[2], format_money(cost, &usd), "{figures:?}");
    // And the money is the wall's joules at the US price: 190 W over the reply.
    eprintln!("reply figures on screen: {figures:?}");
    live::assert_within(
        "reply cost (micro-USD)",
        cost * 1e6,
        reply.total_j / 3.6e6 * 0.175 * 1e6,
        1e-6,
    );

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
    let tally: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("tally.json")).expect("tally"))
            .expect("tally JSON");
    let tally_j = tally["energy_j"].as_f64().expect("energy_j");
    // At least the card's session (the tally goes on until exit), all at the wall's rate.
    assert!(
        tally_j >= session.total_j,
        "{tally_j} < {}",
        session.total_j
    );
}
