//! config.example.toml documents every key with its default, and bad configs give one line
//! with file, line and key.

use llmtop::config::keys::KeyMap;
use llmtop::config::{self, RawConfig};
use std::path::Path;

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    std::fs::read_to_string(p).expect("config.example.toml")
}

#[test]
fn example_parses_to_exactly_the_defaults() {
    let text = example();
    let mut cfg = config::parse(&text, Path::new("config.example.toml")).expect("parses");
    // The [keys] table spells out the default bindings.
    assert_eq!(
        KeyMap::from_config(&cfg.keys).expect("keys"),
        KeyMap::default()
    );
    assert_eq!(
        cfg.keys.len(),
        llmtop::config::keys::Action::ALL.len(),
        "every action listed"
    );
    cfg.keys.clear();
    assert_eq!(cfg, RawConfig::default());
}

#[test]
fn commented_examples_are_valid_too() {
    // Uncomment every `# key = value` and `# [[table]]` line: the result must still parse,
    // so the examples in the file are not lies.
    let uncommented: String = example()
        .lines()
        .map(|l| {
            let body = l.strip_prefix("# ").unwrap_or(l);
            let is_key = body.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            if l.starts_with("# ") && (is_key || body.starts_with("[[")) {
                body.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = config::parse(&uncommented, Path::new("uncommented.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert_eq!(cfg.sensors.plugs.len(), 2);
    assert_eq!(cfg.pricing.bands.len(), 2);
    assert_eq!(cfg.sampling.top_k, Some(40));
    assert_eq!(cfg.metrics.addr.as_deref(), Some("127.0.0.1:9464"));
}

#[test]
fn bad_values_name_file_line_and_key() {
    let cases: [(&str, &str); 8] = [
        (
            "[ui]\ntheme = \"dark\"\ncolor = \"sometimes\"\n",
            "bad.toml:3: ui.color: `sometimes` is not one of auto, always, never",
        ),
        (
            "[ui]\nrefresh_hz = 0.0\n",
            "bad.toml:2: ui.refresh_hz: 0 is out of range; use 0.1 to 60 (default 4)",
        ),
        (
            "[keys]\nquit = \"ctrl-q\"\nsnapshot = \"s\"\n",
            "bad.toml:3: keys.snapshot: `s` would steal a letter from the input line; add a modifier, e.g. \"ctrl-s\"",
        ),
        (
            "[keys]\nhelp = \"ctrl-s\"\n",
            "bad.toml:2: keys.help: `Ctrl-S` is bound to both snapshot and help",
        ),
        (
            "[sampling]\n\ntop_p = 1.5\n",
            "bad.toml:3: sampling.top_p: 1.5 is out of range; use (0, 1]",
        ),
        (
            "[sensors]\nidle_watts = 80.0\ntdp_watts = 65.0\n",
            "bad.toml:3: sensors.tdp_watts: must be above idle_watts (80 W) and idle_watts must be >= 0",
        ),
        (
            "[[sensors.plugs]]\nkind = \"shelly-gen2\"\nurl = \"http://a\"\n\n[[sensors.plugs]]\nkind = \"zigbee\"\nurl = \"http://b\"\n",
            "bad.toml:6: sensors.plugs[1].kind: `zigbee` is not one of shelly-gen2, shelly-pm1, shelly-gen1, tasmota, home-assistant",
        ),
        (
            // A typo is a parse error at its line.
            "[ui]\ntheme = \"dark\"\nthem = \"light\"\n",
            "bad.toml:3: unknown field `them`",
        ),
    ];
    for (text, want) in cases {
        let e = config::parse(text, Path::new("bad.toml")).expect_err(want);
        let msg = e.to_string();
        assert!(msg.starts_with(want), "got: {msg}\nwant: {want}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn a_missing_explicit_config_file_is_an_error_not_defaults() {
    let e = config::load(Some(Path::new("/nonexistent/llmtop.toml"))).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/llmtop.toml: cannot read config")
    );
}
