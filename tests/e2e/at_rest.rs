//! The cost of a loaded model at rest, through the real binary in tmux on a live synthetic
//! machine (a flat 100 W at the wall plug) with a tariff of 0.50 USD/kWh: one reply, then 20 s
//! with the model loaded and no request, once with the in-process engine and once attached to
//! a real llama-server. F1 shows the waiting watts and money an hour; the run card's waiting
//! cost is the ledger's energy over the waiting spans priced by the tariff, and the energy is
//! the machine's true joules.
use crate::live::{self, LiveMachine, Profile};
use crate::servers::LlamaServer;
use crate::tmux::Tmux;

use llmtop::accounting::pricing::{Currency, format_money};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PRICE_PER_KWH: f64 = 0.5;

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMTOP_E2E_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    Path::new(&home).join(".local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The F1 line that starts with `key`, as shown.
fn help_line<'a>(screen: &'a str, key: &str) -> &'a str {
    screen
        .lines()
        .find_map(|l| {
            let i = l.find(&format!(" {key} "))?;
            Some(l[i..].trim_end_matches(|c: char| c == '│' || c.is_whitespace()))
        })
        .unwrap_or_else(|| panic!("no {key} line in {screen}"))
}

fn waits_at_rest(name: &str, engine_args: &str) {
    let m = LiveMachine::start(Profile::flat(20.0, 50.0, 30.0));
    let watts = m.profile.wall_w(0.0);
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = data.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[pricing]\nregion = \"US\"\nprice_per_kwh = {PRICE_PER_KWH}\n",
            m.plug_config()
        ),
    )
    .expect("config");
    let script = format!(
        "LLMTOP_DATA_DIR='{d}' '{bin}' --config '{cfg}' --sysfs-root '{root}' {engine_args} --max-tokens 24 --temperature 0; echo LLMTOP-EXIT:$?; sleep 60",
        d = data.path().display(),
        bin = env!("CARGO_BIN_EXE_llmtop"),
        cfg = cfg.display(),
        root = m.root.display(),
    );
    let tmux = Tmux::start(name, 120, 50, &script);
    tmux.wait_for("model loaded", Duration::from_secs(120), |s| {
        s.contains("● idle") && s.contains("W wall plug")
    });
    tmux.type_text("Name three colours.");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the reply", Duration::from_secs(120), |s| {
        s.contains("tok/s") && s.contains("● idle") && s.contains(" J/tok")
    });
    // The model sits loaded with nothing to do.
    std::thread::sleep(Duration::from_secs(20));

    tmux.keys(&["F1"]);
    let help = tmux.wait_for("the waiting line", Duration::from_secs(10), |s| {
        s.contains(" Waiting ")
    });
    let usd = Currency::new("USD").expect("USD");
    let waiting = help_line(&help, "Waiting");
    // The watts are the ledger's over the waiting spans: the machine's 100 W, give or take
    // the plug's counter read a moment before or after its sample's time (a loaded machine
    // delays the reply by tens of ms: 100.3 W seen at a load of 14 on 2 cores).
    let shown_w: f64 = waiting
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no watts in {waiting}"));
    live::assert_within("F1 waiting power", shown_w, watts, 0.01);
    // The money an hour is those watts at the tariff.
    let per_hour = format_money(shown_w / 1000.0 * PRICE_PER_KWH, &usd);
    assert!(
        waiting.contains(&format!(
            "{shown_w:.1} W with the model loaded and no request, {per_hour} an hour"
        )),
        "{waiting}\n{help}"
    );
    assert!(
        help_line(&help, "Answering").contains("of replies"),
        "{help}"
    );
    // Nothing here unloads the model: what that would save is not known, and F1 says so.
    assert!(
        help_line(&help, "Unloading")
            .contains("the machine's idle without the model was not measured"),
        "{help}"
    );
    tmux.keys(&["Escape"]);
    // F1 lists "snapshot: write the run card": wait until it is gone.
    tmux.wait_for("F1 closed", Duration::from_secs(10), |s| {
        !s.contains(" Waiting ")
    });

    tmux.keys(&["C-s"]);
    tmux.wait_for("the snapshot path", Duration::from_secs(20), |s| {
        s.contains("snapshot: /")
    });
    let json = std::fs::read_dir(data.path().join("snapshots"))
        .expect("snapshots")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("card json");
    let card = llmtop::report::runcard::RunCard::load(&json).expect("card");
    let a = card.session.at_rest.as_ref().expect("at_rest on the card");
    eprintln!("{name}: {a:?}");
    assert_eq!(a.currency.as_deref(), Some("USD"));
    assert!(a.waiting_s >= 20.0, "{a:?}");
    let reply_s = card.last_reply.as_ref().expect("reply").wall_s;
    assert!((a.answering_s - reply_s).abs() < 0.01, "{a:?} vs {reply_s}");
    // The waiting cost is the ledger's energy over those spans at the tariff's price...
    let cost = a.waiting_cost.expect("waiting cost");
    let priced = a.waiting_j / 3.6e6 * PRICE_PER_KWH;
    assert!((cost - priced).abs() <= 1e-9 * priced, "{cost} vs {priced}");
    // ... and that energy is the machine's: 100 W over the seconds waited.
    live::assert_within("waiting power", a.waiting_j / a.waiting_s, watts, 0.01);
    live::assert_within(
        "waiting cost an hour",
        a.waiting_cost_per_hour.expect("per hour"),
        watts / 1000.0 * PRICE_PER_KWH,
        0.01,
    );
    // The footer's projection (once the session is a minute old) says how much is waiting.
    tmux.wait_for(
        "the waiting part of the pace",
        Duration::from_secs(60),
        |s| s.contains(" waiting), "),
    );

    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(30), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}

#[test]
fn an_in_process_model_at_rest_costs_the_ledgers_energy_at_the_tariff() {
    waits_at_rest(
        "at-rest-local",
        &format!("--model '{}' --threads 1", model_path().display()),
    );
}

#[test]
fn a_llama_server_model_at_rest_costs_the_ledgers_energy_at_the_tariff() {
    let server = LlamaServer::start();
    waits_at_rest("at-rest-server", &format!("--attach {}", server.url()));
}
