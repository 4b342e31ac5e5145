//! `llmtop compare` over three fixture machines, through the real binary, in every format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runcards")
        .join(name)
}

fn three() -> Vec<PathBuf> {
    ["mac-mini.json", "nuc.json", "rtx4090.json"]
        .iter()
        .map(|n| fixture(n))
        .collect()
}

/// Run `llmtop compare` with an empty config (defaults: US, DE, DK) so the user's file is ignored.
fn compare(files: &[PathBuf], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "").expect("config");
    Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .arg("compare")
        .args(files)
        .args(extra)
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("run llmtop")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8")
}

/// The cells of the terminal-table row starting with `label`.
fn table_row(out: &str, label: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.starts_with(label) && l[label.len()..].starts_with("  "))
        .unwrap_or_else(|| panic!("no row {label:?} in\n{out}"));
    line[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

const TCO_ARGS: [&str; 4] = [
    "--hardware-price",
    "fixture-nuc=699",
    "--hardware-price",
    "fixture-mac-mini=1399EUR",
];

#[test]
fn terminal_table_has_the_videos_rows() {
    let o = compare(&three(), &TCO_ARGS);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(table_row(&out, "TTFT cold (ms)"), ["1800", "2500", "6500"]);
    assert_eq!(table_row(&out, "TTFT warm (ms)"), ["350", "900", "120"]);
    assert_eq!(
        table_row(&out, "generation (tok/s)"),
        ["30.2", "8.1", "99.5"]
    );
    assert_eq!(table_row(&out, "idle (W)"), ["15.0", "10.0", "60.0"]);
    assert_eq!(table_row(&out, "load (W)"), ["50.0", "40.0", "300.0"]);
    assert_eq!(table_row(&out, "peak (W)"), ["57.0", "65.0", "320.0"]);
    // 2400 J, 6000 J, 3600 J per story.
    assert_eq!(table_row(&out, "Wh per story"), ["0.667", "1.667", "1.000"]);
    assert_eq!(table_row(&out, "J per token"), ["2.00", "5.00", "3.00"]);
    // 2400 J = 1/1500 kWh x 0.38 = 0.000253; 6000 J = 1/600 kWh x 0.38 = 0.000633;
    // 3600 J = 0.001 kWh x 0.38 = 0.00038.
    assert_eq!(
        table_row(&out, "cost per story, DE"),
        ["0.025 €ct", "0.063 €ct", "0.038 €ct"]
    );
    // 1M tokens at 2, 5, 3 J = 0.556, 1.389, 0.833 kWh x 0.175 USD.
    assert_eq!(
        table_row(&out, "cost per 1M tokens, US"),
        ["9.7 ¢", "$0.24", "$0.15"]
    );
    assert_eq!(table_row(&out, "peak temp (°C)"), ["68", "92", "81"]);
    assert_eq!(table_row(&out, "max fan (RPM)"), ["1700", "4200", "1900"]);
    // 3 years x 8 h/day x 365 at 50, 40, 300 W = 438, 350.4, 2628 kWh x 0.175 USD (whole
    // units from 100: $459.90 is $460).
    assert_eq!(
        table_row(&out, "electricity 3y x 8h/day, US"),
        ["$76.65", "$61.32", "$460"]
    );
    // Mac: 1299 USD from its card; NUC: 699 from the flag (first region's currency, USD);
    // RTX: 3200 USD from its card.
    assert_eq!(
        table_row(&out, "hardware + electricity, US"),
        ["$1,376", "$760", "$3,660"]
    );
    // Only the Mac has a EUR price (flag): 1399 + 438 kWh x 0.38 = 1565.44.
    assert_eq!(
        table_row(&out, "hardware + electricity, DE"),
        ["€1,565", "n/a", "n/a"]
    );
    assert!(
        out.contains("warning: energy scope differs: fixture-rtx4090 measured components only"),
        "{out}"
    );
    assert!(!out.contains("models differ"), "{out}");
}

#[test]
fn markdown_has_the_same_figures() {
    let o = compare(&three(), &["--markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with(
        "| | fixture-mac-mini | fixture-nuc | fixture-rtx4090 |\n|---|---:|---:|---:|\n"
    ));
    assert!(
        out.contains("\n| J per token | 2.00 | 5.00 | 3.00 |\n"),
        "{out}"
    );
    assert!(
        out.contains("\n| cost per story, DK | 0.023 €ct | 0.058 €ct | 0.035 €ct |\n"),
        "{out}"
    );
    // No hardware price for the NUC and no flags: TCO rows still appear for cards that have one.
    assert!(
        out.contains("\n| hardware + electricity, US | $1,376 | n/a | $3,660 |\n"),
        "{out}"
    );
    assert!(out.contains("> **Warning:** energy scope differs"), "{out}");
}

#[test]
fn csv_has_one_record_per_machine_with_raw_numbers() {
    let o = compare(
        &three(),
        &[
            "--csv",
            "--regions",
            "US,JP",
            "--years",
            "1",
            "--hours-per-day",
            "4",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    let val = |row: usize, name: &str| -> f64 { rows[row][col(name)].parse().expect(name) };
    assert_eq!(rows[0][col("machine")], "fixture-mac-mini");
    assert_eq!(rows[2][col("energy_scope")], "components");
    assert_eq!(val(1, "j_per_token"), 5.0);
    assert_eq!(val(2, "gen_tok_s"), 99.5);
    // JP: 31 JPY/kWh. NUC story 6000 J = 1/600 kWh -> 0.051667 JPY.
    assert!((val(1, "cost_per_story_JP_JPY") - 31.0 / 600.0).abs() < 1e-9);
    // RTX, 1 year x 4 h/day x 365 at 300 W = 438 kWh x 0.175 = 76.65 USD, + 3200 USD.
    assert!((val(2, "electricity_US_USD") - 76.65).abs() < 1e-9);
    assert!((val(2, "tco_US_USD") - 3276.65).abs() < 1e-9);
    // No JPY hardware price anywhere: empty fields, not zero.
    assert_eq!(rows[2][col("tco_JP_JPY")], "");
    assert!(stderr(&o).contains("warning: energy scope differs"));
}

#[test]
fn json_round_trips_the_numbers() {
    let o = compare(&three(), &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["schema"], "llmtop.compare/1");
    assert_eq!(v["regions"][1]["code"], "DE");
    assert_eq!(v["regions"][1]["price_per_kwh"], 0.38);
    let m = &v["machines"];
    assert_eq!(m.as_array().map(Vec::len), Some(3));
    assert_eq!(m[0]["machine"], "fixture-mac-mini");
    assert_eq!(m[0]["ttft_cold_ms"], 1800.0);
    assert_eq!(m[2]["load_w"], 300.0);
    let de_story = m[0]["costs"][1]["per_story"].as_f64().expect("number");
    assert!((de_story - 2400.0 / 3.6e6 * 0.38).abs() < 1e-15);
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0));
}

#[test]
fn mismatched_models_and_prompts_are_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("nuc.json")).expect("read"))
            .expect("json");
    v["model"]["name"] = "Mistral-7B-Instruct".into();
    v["model"]["sha256_first_mib"] = "00aa".repeat(16).into();
    v["prompt"] = "Write a haiku.".into();
    let other = dir.path().join("other.json");
    std::fs::write(&other, v.to_string()).expect("write");
    let o = compare(&[fixture("mac-mini.json"), other], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("warning: models differ, so speed and energy are not like for like (fixture-mac-mini: Llama-2-7B-Chat Q4_0 [5f0c1f7a3b9e]; fixture-nuc: Mistral-7B-Instruct Q4_0 [00aa00aa00aa])"), "{out}");
    assert!(out.contains("warning: prompts differ"), "{out}");
    assert!(out.contains("fixture-nuc: \"Write a haiku.\""), "{out}");
}

#[test]
fn bad_files_get_one_line_each_and_the_rest_still_compare() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v2 = dir.path().join("v2.json");
    std::fs::write(
        &v2,
        std::fs::read_to_string(fixture("nuc.json"))
            .expect("read")
            .replace("llmtop.runcard/1", "llmtop.runcard/2"),
    )
    .expect("write");
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"schema\": \"llmtop.runcard/1\", \"host\": ").expect("write");
    let missing = dir.path().join("missing.json");
    let o = compare(
        &[
            fixture("mac-mini.json"),
            v2.clone(),
            corrupt.clone(),
            missing.clone(),
            fixture("rtx4090.json"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        format!(
            "llmtop compare: {}: run card schema \"llmtop.runcard/2\" is not supported; this llmtop reads \"llmtop.runcard/1\" (a newer llmtop wrote it? upgrade llmtop)",
            v2.display()
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "llmtop compare: {}: not valid JSON at line 1",
            corrupt.display()
        )),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "llmtop compare: {}: cannot read run card:",
            missing.display()
        )),
        "{err}"
    );
    assert_eq!(
        lines[3],
        "llmtop: 3 of 5 run cards could not be read (see above); the others were compared"
    );
    let out = stdout(&o);
    assert_eq!(table_row(&out, "J per token"), ["2.00", "3.00"]);
}

#[test]
fn bad_flags_are_one_line_errors() {
    // A bad --regions is a usage error, caught with the config before anything runs.
    let o = compare(&three(), &["--regions", "US,XX"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).trim_end(),
        "llmtop: --regions XX: unknown region \"XX\"; valid regions: US, DE, DK, FR, UK, JP, EU"
    );
    let o = compare(&three(), &["--hardware-price", "nobody=100"]);
    assert_eq!(
        stderr(&o).trim_end(),
        "llmtop: --hardware-price: no run card comes from host \"nobody\"; hosts in these cards: fixture-mac-mini, fixture-nuc, fixture-rtx4090"
    );
    let o = compare(&three(), &["--hardware-price", "fixture-nuc=cheap"]);
    assert!(
        stderr(&o).contains("the amount is not a number"),
        "{}",
        stderr(&o)
    );
    let o = compare(&three(), &["--hours-per-day", "25"]);
    assert_eq!(
        stderr(&o).trim_end(),
        "llmtop: --hours-per-day = 25 must be a positive number"
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
}

/// The three fixture cards with error bands added to their energy (as a card written now
/// carries them): the Mac and the NUC at a wall plug's ±5 %, the RTX box's from the CPU
/// estimate (−67 %…+163 %). Story energy: 0.667, 1.667 and 1.000 Wh.
pub fn banded_cards(dir: &Path) -> Vec<PathBuf> {
    let bands = [
        ("mac-mini", -0.05, 0.05),
        ("nuc", -0.05, 0.05),
        ("rtx4090", -0.672_413_793_103_448_3, 1.625),
    ];
    bands
        .iter()
        .map(|(name, lower, upper)| {
            let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).expect("fixture");
            let mut card: serde_json::Value = serde_json::from_str(&text).expect("json");
            for part in ["last_reply", "session"] {
                card[part]["energy"]["uncertainty"] =
                    serde_json::json!({ "lower": lower, "upper": upper });
            }
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, card.to_string()).expect("write");
            path
        })
        .collect()
}

#[test]
fn machines_whose_bands_overlap_are_within_error_not_ranked() {
    let dir = tempfile::tempdir().expect("dir");
    let cards = banded_cards(dir.path());
    let o = compare(&cards, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        table_row(&out, "Wh per story"),
        ["0.667 ±5 %", "1.667 ±5 %", "1.000 −67…+163 %"]
    );
    assert_eq!(
        table_row(&out, "J per token"),
        ["2.00 ±5 %", "5.00 ±5 %", "3.00 −67…+163 %"]
    );
    // The NUC's 1.583 Wh at best is above the Mac's 0.700 at worst: ranked, 150 % more. The
    // RTX box could be as low as 0.328 Wh: within error of the Mac, not ranked.
    assert_eq!(
        table_row(&out, "story energy vs lowest"),
        ["lowest", "+150 %", "within error"]
    );
    assert!(
        out.contains("warning: fixture-rtx4090: its story energy could be −67 %…+163 %"),
        "{out}"
    );
    // The same in the CSV, as numbers.
    let o = compare(&cards, &["--csv"]);
    let csv = stdout(&o);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let rtx: Vec<&str> = lines.nth(2).expect("rtx").split(',').collect();
    assert_eq!(rtx[col("vs_lowest")], "within error");
    assert_eq!(
        rtx[col("energy_band_upper")].parse::<f64>().ok(),
        Some(1.625)
    );
    // Cards written before the bands: ranked on their figures alone, as before.
    let o = compare(&three(), &[]);
    assert_eq!(
        table_row(&stdout(&o), "story energy vs lowest"),
        ["lowest", "+150 %", "+50 %"]
    );
    assert_eq!(
        table_row(&stdout(&o), "Wh per story"),
        ["0.667", "1.667", "1.000"]
    );
}

#[test]
fn two_machines_with_bands_fit_80_columns() {
    let dir = tempfile::tempdir().expect("dir");
    let cards = banded_cards(dir.path());
    let o = compare(&[cards[0].clone(), cards[2].clone()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The grid is for the terminal; the price note and the warnings under it are prose.
    let grid = out.split("\n\n").next().expect("grid");
    for line in grid.lines() {
        assert!(
            unicode_width::UnicodeWidthStr::width(line) <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    insta::assert_snapshot!("compare_two_banded", out);
}
