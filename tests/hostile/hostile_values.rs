//! Hostile input, through the real binary: run cards, sysfs trees and a GGUF file whose
//! strings hold terminal escapes, and sensors that report impossible values. Nothing foreign
//! may reach the terminal raw, no table may lose its shape, and no impossible value may be
//! shown as measured or reach the energy books.

use crate::common;

use llmtop::accounting::ledger::Ledger;
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Sampler, Sensor, Source};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TITLE: &str = "\u{1b}]0;pwned\u{7}";
const CLEAR: &str = "\u{1b}[2J";

/// Run llmtop with an empty config and a private data dir.
fn llmtop(dir: &Path, args: &[&str], extra: &[&Path]) -> Output {
    let cfg = dir.join("config.toml");
    if !cfg.exists() {
        std::fs::write(&cfg, "").expect("config");
    }
    Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .args(extra)
        .env("LLMTOP_DATA_DIR", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("HOME", dir)
        .output()
        .expect("run llmtop")
}

/// No byte a terminal acts on: C0 other than newline, DEL, C1 (as UTF-8 or raw).
fn assert_clean(what: &str, bytes: &[u8]) {
    assert_no_c0(what, bytes);
    assert!(!bytes.contains(&0x7f), "{what}: raw DEL");
    let text = String::from_utf8_lossy(bytes);
    if let Some(c) = text.chars().find(|c| ('\u{80}'..='\u{9f}').contains(c)) {
        panic!("{what}: raw C1 control {c:?} in\n{text}");
    }
}

/// JSON keeps strings exact: serde escapes C0 (ESC is `\u001b`) but writes DEL and C1 as
/// they are.
fn assert_no_c0(what: &str, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        assert!(
            !(b < 0x20 && b != b'\n'),
            "{what}: raw control byte {b:#04x} at {i} in\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn fixture_card(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runcards")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

/// The three fixture cards, with hostile hostnames and model names, written into `dir`.
fn hostile_cards(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let names = [
        (
            "mac-mini.json",
            format!("{TITLE}mac{CLEAR}"),
            format!("Llama|2\nrow{CLEAR}"),
        ),
        (
            "nuc.json",
            "nuc|pipe\nsecond line\r".to_string(),
            "=HYPERLINK(\"x\")\u{9b}31m".to_string(),
        ),
        (
            "rtx4090.json",
            "\u{7}bell\u{7f}".to_string(),
            format!("Qwen{TITLE}"),
        ),
    ];
    let mut files = Vec::new();
    let mut hosts = Vec::new();
    for (file, host, model) in names {
        let mut card = fixture_card(file);
        card["host"]["hostname"] = host.clone().into();
        card["model"]["name"] = model.into();
        let p = dir.join(file);
        std::fs::write(&p, serde_json::to_string_pretty(&card).expect("ser")).expect("write");
        files.push(p);
        hosts.push(host);
    }
    (files, hosts)
}

fn clean_cards() -> Vec<PathBuf> {
    ["mac-mini.json", "nuc.json", "rtx4090.json"]
        .iter()
        .map(|n| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/runcards")
                .join(n)
        })
        .collect()
}

fn refs(files: &[PathBuf]) -> Vec<&Path> {
    files.iter().map(PathBuf::as_path).collect()
}

/// `|` not escaped as `\|`.
fn cell_bars(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\'))
        .count()
}

/// Fields of one CSV record (RFC 4180 quoting).
fn csv_fields(line: &str) -> usize {
    let mut n = 1;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => n += 1,
            _ => {}
        }
    }
    assert!(!quoted, "unbalanced quotes in {line:?}");
    n
}

#[test]
fn compare_prints_hostile_cards_safely_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, hosts) = hostile_cards(dir.path());
    let files = refs(&files);
    let clean = clean_cards();
    let clean = refs(&clean);

    // Terminal table: one line per row, the same shape as the clean fixtures' table.
    let out = llmtop(dir.path(), &["compare"], &files);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("table stdout", &out.stdout);
    assert_clean("table stderr", &out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    let base = llmtop(dir.path(), &["compare"], &clean);
    let base_text = String::from_utf8_lossy(&base.stdout);
    let rows = |t: &str| t.lines().take_while(|l| !l.is_empty()).count();
    assert_eq!(rows(&text), rows(&base_text), "table rows:\n{text}");
    // Shown, visibly escaped, not dropped.
    assert!(text.contains("\\x1b]0;pwned\\x07mac\\x1b[2J"), "{text}");
    assert!(text.contains("nuc|pipe\\x0asecond line\\x0d"), "{text}");
    // The model names differ: the mismatch warning names them, escaped too.
    assert!(text.contains("warning:"), "{text}");
    assert!(text.contains("Qwen\\x1b]0;pwned\\x07"), "{text}");

    // Markdown: every table row has the header's number of cells.
    let out = llmtop(dir.path(), &["compare", "--markdown"], &files);
    assert!(out.status.success());
    assert_clean("markdown stdout", &out.stdout);
    assert_clean("markdown stderr", &out.stderr);
    let md = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = md.lines().take_while(|l| l.starts_with('|')).collect();
    let base = llmtop(dir.path(), &["compare", "--markdown"], &clean);
    let base_md = String::from_utf8_lossy(&base.stdout);
    let base_rows = base_md.lines().take_while(|l| l.starts_with('|')).count();
    assert_eq!(table.len(), base_rows, "{md}");
    // 3 machines: a label cell and 3 value cells = 5 bars.
    for row in &table {
        assert_eq!(cell_bars(row), 5, "row {row:?} in\n{md}");
    }
    assert!(md.contains("nuc\\|pipe\\x0asecond line"), "{md}");

    // CSV: a header and one record per machine, each with the header's field count; the
    // warnings go to stderr, escaped.
    let out = llmtop(dir.path(), &["compare", "--csv"], &files);
    assert!(out.status.success());
    assert_clean("csv stdout", &out.stdout);
    assert_clean("csv stderr", &out.stderr);
    let csv = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    let width = csv_fields(lines[0]);
    for l in &lines[1..] {
        assert_eq!(csv_fields(l), width, "{l:?}");
    }
    // A model name that a spreadsheet would run as a formula is neutralised.
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\\x9b31m"), "{csv}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning:"));

    // JSON stays exact: the strings round-trip byte for byte, escaped by serde.
    let out = llmtop(dir.path(), &["compare", "--json"], &files);
    assert!(out.status.success());
    assert_no_c0("json stdout", &out.stdout);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let machines: Vec<&str> = v["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .filter_map(|m| m["machine"].as_str())
        .collect();
    for h in &hosts {
        assert!(machines.contains(&h.as_str()), "{h:?} not in {machines:?}");
    }
}

#[test]
fn compare_errors_name_hostile_hosts_safely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, _) = hostile_cards(dir.path());
    let mut args: Vec<&Path> = refs(&files);
    // A card that cannot be read, and a hardware price for a host that is not there: both
    // are reported on stderr with the hosts listed.
    let bad = dir.path().join(format!("bad{CLEAR}.json"));
    std::fs::write(&bad, format!("{{\"host\": \"{TITLE}")).expect("write");
    args.push(&bad);
    let out = llmtop(dir.path(), &["compare"], &args);
    assert!(!out.status.success());
    assert_clean("bad card stdout", &out.stdout);
    assert_clean("bad card stderr", &out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad\\x1b[2J.json"));

    let out = llmtop(
        dir.path(),
        &["compare", "--hardware-price", "nohost=100"],
        &refs(&files),
    );
    assert!(!out.status.success());
    assert_clean("unknown host stderr", &out.stderr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\\x1b]0;pwned\\x07mac"), "{err}");
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// hwmon chips whose names and labels hold escapes, and impossible values everywhere.
fn hostile_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path();
    // Discovery skips a chip whose name is garbled; labels are shown, so they must be safe.
    write(r, "class/hwmon/hwmon0/name", "nct6775\n");
    write(
        r,
        "class/hwmon/hwmon0/temp3_label",
        &format!("evil{TITLE}\n"),
    );
    write(
        r,
        "class/hwmon/hwmon0/temp1_label",
        &format!("Core{CLEAR} 0\n"),
    );
    write(r, "class/hwmon/hwmon0/temp1_input", "-273000\n");
    write(r, "class/hwmon/hwmon0/temp2_label", "hot\u{9b}1m\n");
    write(r, "class/hwmon/hwmon0/temp2_input", "1000000000000\n");
    write(r, "class/hwmon/hwmon0/temp3_input", "45000\n");
    write(r, "class/hwmon/hwmon0/fan1_input", "-1200\n");
    write(r, "class/hwmon/hwmon1/name", "amdgpu\n");
    write(r, "class/hwmon/hwmon1/power1_average", "-50000000\n");
    write(r, "class/hwmon/hwmon2/name", "acpi_power\n");
    write(r, "class/hwmon/hwmon2/power1_input", "1000000000000000\n");
    write(r, "class/power_supply/BAT0/type", "Battery\n");
    write(r, "class/power_supply/BAT0/status", "Discharging\n");
    write(
        r,
        "class/power_supply/BAT0/power_now",
        "500000000000000000000\n",
    );
    t
}

#[test]
fn sensors_shows_impossible_values_as_rejected_and_labels_escaped() {
    let tree = hostile_tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = tree.path().display().to_string();
    let out = llmtop(dir.path(), &["sensors", "--sysfs-root", &root], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("sensors stdout", &out.stdout);
    assert_clean("sensors stderr", &out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
            .to_string()
    };
    for (needle, why) in [
        ("Core\\x1b[2J 0", "-273 °C is below the plausible -50 °C"),
        ("hot\\x9b1m", "1e9 °C is above the plausible 150 °C"),
        ("fan1", "-1200 RPM is below the plausible 0 RPM"),
        ("amdgpu", "-50 W is below the plausible 0 W"),
        (
            "BAT0",
            "above the plausible 500 W (raise [sensors] max_battery_watts if real)",
        ),
    ] {
        let l = line(needle);
        assert!(l.contains("rejected") && l.contains(why), "{needle}: {l}");
        assert!(!l.contains("measured"), "{l}");
    }
    // The 1e15 µW chip: 1e9 W, above the whole-system ceiling.
    assert!(
        text.lines()
            .any(|l| l.contains("acpi_power") && l.contains("rejected") && l.contains("max_watts")),
        "{text}"
    );
    // The plausible one is still a measurement.
    assert!(line("45.0 °C").contains("measured"));
    // The plausible reading's label is shown escaped.
    assert!(line("45.0 °C").contains("evil\\x1b]0;pwned\\x07"), "{text}");

    let out = llmtop(
        dir.path(),
        &["sensors", "--json", "--sysfs-root", &root],
        &[],
    );
    assert!(out.status.success());
    assert_no_c0("sensors json", &out.stdout);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let readings = v["readings"].as_array().expect("readings");
    let rejected: Vec<&serde_json::Value> = readings
        .iter()
        .filter(|r| r.get("rejected").is_some())
        .collect();
    assert_eq!(rejected.len(), 6, "{rejected:#?}");
    for r in &rejected {
        assert!(r["value"].is_null(), "{r}");
        assert!(
            r["rejected"]
                .as_str()
                .is_some_and(|s| s.contains("plausible")),
            "{r}"
        );
    }
    let bat = readings
        .iter()
        .find(|r| r["id"] == "battery:BAT0:power")
        .expect("battery");
    assert!(
        bat["rejected"]
            .as_str()
            .is_some_and(|s| s.starts_with("5e14 W is above"))
    );
    // JSON keeps the label exact.
    assert!(
        readings
            .iter()
            .any(|r| r["label"].as_str() == Some(format!("evil{TITLE}").as_str())),
        "no exact label in JSON"
    );
    // No impossible power, temperature or fan figure is left among the values.
    for r in readings {
        if ["power", "temperature", "fan_rpm"].contains(&r["quantity"].as_str().unwrap_or("")) {
            let v = r["value"].as_f64();
            assert!(v.is_none_or(|x| (0.0..=5000.0).contains(&x)), "{r}");
        }
    }
}

#[test]
fn a_raised_ceiling_in_the_config_lets_a_big_server_through() {
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), "class/hwmon/hwmon0/name", "acpi_power\n");
    write(t.path(), "class/hwmon/hwmon0/power1_input", "9000000000\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = t.path().display().to_string();
    let run = |dir: &Path| {
        let out = llmtop(dir, &["sensors", "--json", "--sysfs-root", &root], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["readings"]
            .as_array()
            .expect("readings")
            .iter()
            .find(|r| r["id"].as_str().is_some_and(|id| id.contains("acpi_power")))
            .cloned()
            .expect("row")
    };
    let r = run(dir.path());
    assert!(r["value"].is_null() && r["rejected"].is_string(), "{r}");
    let big = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        big.path().join("config.toml"),
        "[sensors]\nmax_watts = 20000\n",
    )
    .expect("cfg");
    let r = run(big.path());
    assert_eq!(r["value"], 9000.0, "{r}");
    // A nonsense ceiling is refused with the key named.
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        bad.path().join("config.toml"),
        "[sensors]\nmax_watts = -1\n",
    )
    .expect("cfg");
    let out = llmtop(bad.path(), &["sensors", "--sysfs-root", &root], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_watts"));
}

/// A wall plug at 100 W that once reports f64::MAX W, and a battery at 5e14 W.
struct Liar {
    tick: u32,
}

impl Sensor for Liar {
    fn name(&self) -> String {
        "liar".into()
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        self.tick += 1;
        let row = |id: &str, covers, source, w| Reading {
            id: id.into(),
            device: "liar".into(),
            label: id.into(),
            quantity: Quantity::Power,
            value: Some(w),
            limit: None,
            source,
            covers,
            method: Method::Measured,
            rejected: None,
            via: None,
        };
        vec![
            row(
                "plug:liar:power",
                Covers::Wall,
                Source::Plug,
                if self.tick.is_multiple_of(3) {
                    f64::MAX
                } else {
                    100.0
                },
            ),
            row("battery:BAT0:power", Covers::Battery, Source::Battery, 5e14),
        ]
    }
}

#[test]
fn the_sampler_rejects_impossible_power_and_the_ledger_stays_plausible() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = Sampler::spawn(vec![Box::new(Liar { tick: 0 })], 50.0, tx);
    let mut samples: Vec<Sample> = Vec::new();
    while samples.len() < 12 {
        match rx.blocking_recv() {
            Some(s) => samples.push(s),
            None => break,
        }
    }
    h.stop();
    let mut ledger = Ledger::new();
    let mut rejected = 0;
    for s in &samples {
        for r in &s.readings {
            if r.rejected.is_some() {
                assert_eq!(r.value, None);
                rejected += 1;
            }
        }
        ledger.push(s);
    }
    // Every battery reading and every third plug reading.
    assert_eq!(rejected, 12 + 4);
    // The total runs from the plug's first good reading to its last.
    let good: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.readings
                .iter()
                .any(|r| r.id == "plug:liar:power" && r.value.is_some())
        })
        .map(|s| s.t)
        .collect();
    let span = good.last().copied().unwrap_or(0.0) - good[0];
    let totals = ledger.totals();
    assert!(totals.energy_j.is_finite());
    // 100 W over the span (the wall is the basis; the battery never reported a value).
    assert!(
        (totals.energy_j - 100.0 * span).abs() < 1e-6 * span.max(1.0) + 1e-9,
        "{} J over {span} s",
        totals.energy_j
    );
    assert_eq!(ledger.total_power().map(|p| p.watts), Some(100.0));
}

/// Copy the default model and set its `general.name` to escapes, same length, in place.
fn hostile_model(dir: &Path, file: &str) -> PathBuf {
    let src = common::model_path();
    let mut bytes = std::fs::read(&src).expect("model");
    let key = b"general.name";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("general.name in the GGUF header");
    // key, then u32 type (8 = string), then u64 length, then the bytes.
    let ty = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().expect("4 bytes"));
    assert_eq!(ty, 8, "general.name is a string");
    let len = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().expect("8 bytes")) as usize;
    let evil = format!("{TITLE}{CLEAR}\u{9b}2J");
    assert!(len >= evil.len(), "name too short to patch");
    let mut name = evil.into_bytes();
    name.resize(len, b'x');
    bytes[at + 24..at + 24 + len].copy_from_slice(&name);
    let dst = dir.join(file);
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(&dst, bytes).expect("write model");
    dst
}

#[test]
fn bench_and_models_print_a_hostile_gguf_name_safely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    let model = hostile_model(&models, &format!("evil{CLEAR}.Q4_1.gguf"));
    std::fs::write(
        dir.path().join("config.toml"),
        "[sensors]\nidle_window_s = 0.5\nrate_hz = 20.0\n",
    )
    .expect("cfg");
    let out = llmtop(
        dir.path(),
        &[
            "bench",
            // Other tests of this binary run beside it: contention is real here.
            "--allow-contention",
            "--reps",
            "1",
            "--no-warmup",
            "--no-idle",
            "--max-tokens",
            "8",
            "--threads",
            "2",
            "--model",
        ],
        &[model.as_path()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_clean("bench stdout", &out.stdout);
    assert_clean("bench stderr", &out.stderr);
    // The name is shown, escaped, in the table's head and the load line.
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("\\x1b]0;pwned\\x07\\x1b[2J\\x9b2J"),
        "{table}"
    );
    assert!(err.contains("bench: loaded \\x1b]0;pwned\\x07"), "{err}");

    let out = llmtop(dir.path(), &["models"], &[]);
    assert!(out.status.success());
    assert_clean("models stdout", &out.stdout);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("evil\\x1b[2J.Q4_1"), "{text}");
}

#[test]
fn the_snapshot_markdown_escapes_a_hostile_card() {
    let mut card = fixture_card("mac-mini.json");
    card["host"]["hostname"] = format!("{TITLE}host|x\ny").into();
    card["model"]["name"] = format!("m{CLEAR}\u{9b}").into();
    card["host"]["cpu_model"] = "cpu\u{7f}|\r".into();
    let card: llmtop::report::runcard::RunCard = serde_json::from_value(card).expect("card");
    let md = llmtop::report::snapshot::markdown_summary(&card);
    assert_clean("snapshot markdown", md.as_bytes());
    assert!(
        md.starts_with("## llmtop run card: m\\x1b[2J\\x9b on \\x1b]0;pwned\\x07host\\|x\\x0ay\n"),
        "{md}"
    );
    assert!(md.contains("cpu\\x7f\\|\\x0d"), "{md}");
    // Every table keeps its header's cell count.
    let mut width = None;
    for l in md.lines() {
        if l.starts_with('|') {
            let n = cell_bars(l);
            let w = *width.get_or_insert(n);
            assert_eq!(n, w, "{l:?}");
        } else {
            width = None;
        }
    }
}
