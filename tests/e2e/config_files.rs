//! config.example.toml documents every key with its default, and bad configs give one line
//! with file, line and key. The fixtures in tests/fixtures/config/{valid,invalid} go through
//! the real binary: the config is checked once, for every command.

use llmtop::cli::ColorMode;
use llmtop::config::keys::KeyMap;
use llmtop::config::{self, Config, Overrides, RawConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let cases: [(&str, &str); 9] = [
        (
            "[ui]\ntheme = \"dark\"\ncolor = \"sometimes\"\n",
            "bad.toml:3: ui.color: `sometimes` is not one of auto, always, never",
        ),
        (
            "[ui]\nrefresh_hz = 0.0\n",
            "bad.toml:2: ui.refresh_hz: 0 is out of range; use 0.1 to 60 (default 4)",
        ),
        (
            "[ui]\ngenerating_fps = 120\n",
            "bad.toml:2: ui.generating_fps: 120 is out of range; use 1 to 60 (default 10)",
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
    let e = config::load(
        Some(Path::new("/nonexistent/llmtop.toml")),
        &Overrides::default(),
    )
    .expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/llmtop.toml: cannot read config")
    );
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// The first line of an invalid fixture: `# expect: LINE: KEY: MESSAGE`.
fn expected_error(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("fixture");
    let want = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
    format!("{}:{want}", path.display())
}

fn runcard() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runcards/nuc.json")
}

fn llmtop(config: &Path, args: &[&str]) -> Output {
    let data = tempfile::tempdir().expect("dir");
    Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("LLMTOP_DATA_DIR", data.path())
        .env_remove("LLMTOP_MODEL")
        .output()
        .expect("run llmtop")
}

#[test]
fn invalid_pricing_stops_every_command_with_file_and_line() {
    let card = runcard();
    let card = card.to_str().expect("utf8");
    let sysfs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysfs/laptop");
    let sysfs = sysfs.to_str().expect("utf8");
    for file in fixtures("invalid") {
        let want = format!("llmtop: {}", expected_error(&file));
        // Not only the dashboard: commands that never price anything refuse it too, and
        // bench refuses it before looking for a model.
        let runs: [(&str, Vec<&str>); 3] = [
            ("sensors", vec!["sensors", "--sysfs-root", sysfs]),
            ("compare", vec!["compare", card]),
            ("bench", vec!["bench", "--reps", "1"]),
        ];
        for (name, args) in runs {
            let o = llmtop(&file, &args);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(2),
                "{name} {}: {stderr}",
                file.display()
            );
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{name}: one line, got:\n{stderr}");
            assert!(
                lines[0].starts_with(&want),
                "{name}:\n got: {}\nwant: {want}",
                lines[0]
            );
            assert!(o.stdout.is_empty(), "{name} printed before failing");
        }
    }
}

#[test]
fn valid_fixtures_reach_the_commands_parsed() {
    for file in fixtures("valid") {
        let text = std::fs::read_to_string(&file).expect("fixture");
        let cfg =
            Config::parse(&text, &file, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<String> = cfg.raw.pricing.compare_regions.clone();
        // compare prices in the config's compare regions, parsed once in main.
        let o = llmtop(
            &file,
            &["compare", "--json", runcard().to_str().expect("utf8")],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let codes: Vec<&str> = v["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .map(|r| r["code"].as_str().expect("code"))
            .collect();
        assert_eq!(codes, want, "{}", file.display());
        // --regions overrides the file.
        let o = llmtop(
            &file,
            &[
                "compare",
                "--json",
                "--regions",
                "DK",
                runcard().to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["regions"][0]["code"], "DK");
        assert_eq!(v["regions"].as_array().map(Vec::len), Some(1));
    }
}

#[test]
fn config_carries_the_parsed_values() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/valid/time-of-use.toml");
    let text = std::fs::read_to_string(&file).expect("fixture");
    let cfg = Config::parse(&text, &file, &Overrides::default()).expect("valid");
    // Night band 22-6 at 0.12, day band at 0.32, in the preset's currency.
    assert_eq!(cfg.tariff.price_in_hour(23), 0.12);
    assert_eq!(cfg.tariff.price_in_hour(5), 0.12);
    assert_eq!(cfg.tariff.price_in_hour(6), 0.32);
    assert_eq!(cfg.tariff.currency.code(), "EUR");
    assert_eq!(cfg.tariff.label, "own");
    let codes: Vec<&str> = cfg.compare.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(codes, ["FR", "JP"]);
    assert_eq!(cfg.keys, KeyMap::default());
    assert_eq!(cfg.color, ColorMode::Auto);
    assert_eq!(cfg.path.as_deref(), Some(file.as_path()));

    // The file's colour, and --color over it.
    let never = "[ui]\ncolor = \"never\"\n";
    let c = Config::parse(never, Path::new("c.toml"), &Overrides::default()).expect("ok");
    assert_eq!(c.color, ColorMode::Never);
    let cli = Overrides {
        color: Some(ColorMode::Always),
        ..Overrides::default()
    };
    let c = Config::parse(never, Path::new("c.toml"), &cli).expect("ok");
    assert_eq!(c.color, ColorMode::Always);
    // A rebinding is parsed into the map.
    let c = Config::parse(
        "[keys]\nquit = \"f10\"\n",
        Path::new("k.toml"),
        &Overrides::default(),
    )
    .expect("ok");
    assert_ne!(c.keys, KeyMap::default());

    // No file: the defaults, priced in the US and compared with US, DE and DK.
    let d = Config::defaults(&Overrides::default()).expect("defaults");
    assert_eq!(d.tariff.label, "US");
    let codes: Vec<&str> = d.compare.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(codes, ["US", "DE", "DK"]);
    assert_eq!(d.path, None);
}

#[test]
fn inline_bands_point_at_the_bands_key_and_a_bad_flag_names_the_flag() {
    let text = "[pricing]\nregion = \"DE\"\nbands = [\n  { from_hour = 0, to_hour = 30, price_per_kwh = 0.1 },\n]\n";
    let e = Config::parse(text, Path::new("inline.toml"), &Overrides::default())
        .expect_err("to_hour 30");
    assert_eq!(
        e.to_string(),
        "inline.toml:3: pricing.bands[0].to_hour: to_hour = 30 is not an hour; use 0 to 24 (exclusive end)"
    );
    let cli = Overrides {
        compare_regions: vec!["US".into(), "MARS".into()],
        ..Overrides::default()
    };
    let e = Config::defaults(&cli).expect_err("MARS");
    assert_eq!(
        e.to_string(),
        "--regions MARS: unknown region \"MARS\"; valid regions: US, DE, DK, FR, UK, JP, EU"
    );
}
