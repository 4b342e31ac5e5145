//! The SVG charts, parsed as XML: `compare --svg` (one group per machine holding its bars),
//! the sweep's frontier on a constructed sweep whose frontier is known, the run card's chart,
//! and hostile names escaped.

use llmtop::accounting::pricing::Tariff;
use llmtop::engine::ModelInfo;
use llmtop::report::bench::{BenchResult, SCHEMA as BENCH_SCHEMA, Spread, Summary};
use llmtop::report::compare::{TcoOptions, compare, render_svg};
use llmtop::report::runcard::{CardSettings, RunCard};
use llmtop::report::snapshot;
use llmtop::report::sweep::{self, SweepKey, SweepPoint, SweepResult, SweepValue};
use llmtop::sensors::host::{BuildInfo, HostInfo};
use roxmltree::{Document, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runcards")
        .join(name)
}

const THREE: [&str; 3] = ["mac-mini.json", "nuc.json", "rtx4090.json"];

/// `llmtop compare` run in `cwd` with an empty config (regions US, DE, DK).
fn compare_in(cwd: &Path, extra: &[&str]) -> Output {
    let cfg = cwd.join("config.toml");
    std::fs::write(&cfg, "").expect("config");
    Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .current_dir(cwd)
        .arg("--config")
        .arg(&cfg)
        .arg("compare")
        .args(THREE.iter().map(|n| fixture(n)))
        .args(extra)
        .env("LLMTOP_DATA_DIR", cwd)
        .output()
        .expect("run llmtop")
}

fn has_class(n: &Node, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|x| x == class))
}

fn groups<'a>(doc: &'a Document, class: &str) -> Vec<Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("g") && has_class(n, class))
        .collect()
}

/// The bar of `panel` (and `bar`, for panels with several) inside a machine's group.
fn bar<'a>(machine: &Node<'a, 'a>, panel: &str, which: Option<&str>) -> Node<'a, 'a> {
    machine
        .descendants()
        .find(|n| {
            has_class(n, "bar")
                && n.attribute("data-panel") == Some(panel)
                && which.is_none_or(|w| n.attribute("data-bar") == Some(w))
        })
        .unwrap_or_else(|| panic!("no bar {panel} {which:?}"))
}

fn value(n: &Node) -> f64 {
    n.attribute("data-value")
        .expect("data-value")
        .parse()
        .expect("number")
}

/// The bar's drawn height, px, and the label shown above it.
fn drawn(n: &Node) -> (f64, String) {
    let h = n
        .descendants()
        .find(|c| c.has_tag_name("rect"))
        .and_then(|r| r.attribute("height"))
        .map(|h| h.parse::<f64>().expect("height"))
        .unwrap_or(0.0);
    let text = n
        .descendants()
        .find(|c| c.has_tag_name("text"))
        .and_then(|t| t.text())
        .unwrap_or("")
        .trim()
        .to_string();
    (h, text)
}

#[test]
fn compare_svg_has_one_group_per_machine_with_its_figures() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("pics")).expect("mkdir");
    let o = compare_in(
        dir.path(),
        &[
            "--markdown",
            "--svg",
            "pics/cmp.svg",
            "--hardware-price",
            "fixture-nuc=699",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.trim_end()
            .ends_with("![llmtop compare charts](pics/cmp.svg)"),
        "{md}"
    );
    let text = std::fs::read_to_string(dir.path().join("pics/cmp.svg")).expect("svg written");
    let doc = Document::parse(&text).expect("well-formed XML");
    let machines = groups(&doc, "machine");
    let names: Vec<&str> = machines
        .iter()
        .map(|m| m.attribute("data-name").expect("name"))
        .collect();
    assert_eq!(
        names,
        ["fixture-mac-mini", "fixture-nuc", "fixture-rtx4090"]
    );
    assert_eq!(
        machines[1].attribute("id"),
        Some("machine-2-fixture-nuc"),
        "ids are unique and name the machine"
    );
    // The table's figures (see compare.rs), bar by bar.
    let expect: [(&str, Option<&str>, [f64; 3]); 8] = [
        ("gen_tok_s", None, [30.2, 8.1, 99.5]),
        ("ttft_cold_ms", None, [1800.0, 2500.0, 6500.0]),
        ("ttft_warm_ms", None, [350.0, 900.0, 120.0]),
        ("power_w", Some("idle"), [15.0, 10.0, 60.0]),
        ("power_w", Some("load"), [50.0, 40.0, 300.0]),
        ("j_per_token", None, [2.0, 5.0, 3.0]),
        // 3 y x 8 h x 365 at 50, 40, 300 W x 0.175 USD/kWh.
        ("tco_US", Some("electricity"), [76.65, 61.32, 459.9]),
        // + 1299 (card), 699 (flag), 3200 (card).
        (
            "tco_US",
            Some("hardware + electricity"),
            [1375.65, 760.32, 3659.9],
        ),
    ];
    for (panel, which, want) in expect {
        let bars: Vec<Node> = machines.iter().map(|m| bar(m, panel, which)).collect();
        for (b, w) in bars.iter().zip(want) {
            assert!(
                (value(b) - w).abs() < 1e-9,
                "{panel} {which:?}: {} != {w}",
                value(b)
            );
        }
        // Drawn to scale against the panel's tallest bar (plotters rounds to whole px).
        let top = want.iter().copied().fold(0.0, f64::max);
        let all_in_panel: Vec<(f64, f64)> = machines
            .iter()
            .flat_map(|m| {
                m.descendants()
                    .filter(|n| has_class(n, "bar") && n.attribute("data-panel") == Some(panel))
                    .map(|n| (value(&n), drawn(&n).0))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (vmax, hmax) = all_in_panel
            .iter()
            .copied()
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        assert!(
            vmax >= top && hmax > 50.0,
            "{panel}: tallest {vmax} at {hmax} px"
        );
        for (b, w) in bars.iter().zip(want) {
            let h = drawn(b).0;
            assert!(
                (h - w / vmax * hmax).abs() <= 1.5,
                "{panel} {which:?}: {w} drawn {h} px, tallest {vmax} at {hmax} px"
            );
        }
    }
    // Labels as the table prints them: money by the one money formatter.
    assert_eq!(drawn(&bar(&machines[0], "gen_tok_s", None)).1, "30.2");
    assert_eq!(
        drawn(&bar(&machines[1], "cost_per_story_DE", None)).1,
        "0.063 €ct"
    );
    assert_eq!(
        drawn(&bar(&machines[2], "tco_US", Some("hardware + electricity"))).1,
        "$3,660"
    );
    // 2400 J per story: Wh 0.667.
    assert!((value(&bar(&machines[0], "wh_per_story", None)) - 2400.0 / 3600.0).abs() < 1e-12);
    // Every bar lies in a machine's group: 7 figures (power twice), the memory roofline twice
    // (n/a on these cards, written before it) + 3 regions x (story, 2 TCO).
    let all = groups(&doc, "bar");
    assert_eq!(all.len(), 3 * (10 + 3 * 3), "{text}");
    assert!(all.iter().all(|b| {
        b.ancestors()
            .any(|a| a.has_tag_name("g") && has_class(&a, "machine"))
    }));
}

#[test]
fn compare_markdown_links_an_absolute_svg_path_relatively() {
    let dir = tempfile::tempdir().expect("dir");
    let cwd = dir.path().canonicalize().expect("canon");
    std::fs::create_dir(cwd.join("out")).expect("mkdir");
    let abs = cwd.join("out/my chart.svg");
    let o = compare_in(&cwd, &["--markdown", "--svg", abs.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(
        md.contains("![llmtop compare charts](<out/my chart.svg>)"),
        "{md}"
    );
    assert!(abs.is_file());
    // Into a directory that does not exist: one line, before anything is printed.
    let o = compare_in(&cwd, &["--svg", "nope/c.svg"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("--svg nope/c.svg: directory nope does not exist"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn hostile_machine_names_are_escaped_in_the_svg() {
    let evil = "<script>alert(1)</script>&\"x'\u{1b}[31m\n<g class=\"machine\">";
    let mut cards = Vec::new();
    for name in THREE {
        let mut c = RunCard::load(&fixture(name)).expect("fixture");
        c.host.hostname = format!("{}{evil}", c.host.hostname);
        c.model.name = format!("model {evil}");
        cards.push((fixture(name), c));
    }
    let tariffs = [Tariff::preset("US").expect("US")];
    let c = compare(
        &cards,
        &tariffs,
        TcoOptions {
            hours_per_day: 8.0,
            years: 3.0,
            hardware: BTreeMap::new(),
        },
        Vec::new(),
    );
    let svg = render_svg(&c).expect("drawn").svg;
    let doc = Document::parse(&svg).expect("still well-formed XML");
    assert!(!doc.descendants().any(|n| n.has_tag_name("script")));
    // The injected `<g class="machine">` stayed text: still exactly three machine groups.
    let machines = groups(&doc, "machine");
    assert_eq!(machines.len(), 3);
    // The name reads back as written, control characters dropped.
    let clean = "<script>alert(1)</script>&\"x'[31m<g class=\"machine\">";
    assert_eq!(
        machines[0].attribute("data-name"),
        Some(format!("fixture-mac-mini{clean}").as_str())
    );
    let id = machines[0].attribute("id").expect("id");
    assert!(
        id.starts_with("machine-1-fixture-mac-mini_script_alert_1_"),
        "{id}"
    );
    assert!(
        id.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{id}"
    );
    // Legend text shows the literal markup (shortened), never live elements.
    assert!(
        doc.descendants()
            .filter_map(|n| n.text())
            .any(|t| t.contains("fixture-mac-mini<script>")),
        "{svg}"
    );
    assert!(!svg.contains('\u{1b}') && !svg.contains('\u{1}'));
}

fn bench(gen_tok_s: f64, j_per_token: Option<f64>, threads: u32) -> BenchResult {
    let model = ModelInfo {
        name: "SmolLM2".into(),
        path: PathBuf::from("m.gguf"),
        architecture: "llama".into(),
        n_params: 1,
        file_size: 1,
        quantization: "Q4_1".into(),
        n_ctx_train: 8192,
        n_ctx: 512,
        chat_template: "model".into(),
        load_ms: 100.0,
        in_effect: Box::default(),
        backend: None,
        traffic: None,
    };
    let one = |v: f64| Spread {
        median: v,
        min: v,
        max: v,
    };
    let mut settings = CardSettings::from_model_info(&model);
    settings.threads = threads;
    BenchResult {
        schema: BENCH_SCHEMA.into(),
        started_unix: 1,
        host: HostInfo {
            hostname: "h".into(),
            cpu_model: "cpu".into(),
            physical_cores: 2,
            logical_cores: 2,
            ram_bytes: 1,
            gpus: vec![],
            os: "linux".into(),
            kernel: "6".into(),
            arch: "x86_64".into(),
        },
        build: BuildInfo::current(),
        model,
        settings,
        prompt: "p".into(),
        warmup: false,
        sensors: vec![],
        idle: None,
        memory: None,
        ceiling: None,
        contended: false,
        runs: vec![],
        summary: Summary {
            load_ms: 100.0,
            ttft_ms: one(50.0),
            prefill_tok_s: one(400.0),
            gen_tok_s: one(gen_tok_s),
            generated_tokens: one(8.0),
            wall_s: one(1.0),
            energy_wh: j_per_token.map(|j| one(j * 8.0 / 3600.0)),
            avg_w: None,
            peak_w: None,
            j_per_token: j_per_token.map(one),
            net_j_per_token: None,
            memory_gb_s: None,
            roofline_share: None,
            energy_band: None,
            net_band: None,
        },
    }
}

/// Five settings whose frontier is known: (tok/s, J/token) = (10, 2.0) beaten by (20, 1.5);
/// (25, 3.0) beaten by (30, 2.5); (40, 2.6) faster than everything; (50, none) unplaceable.
fn constructed() -> SweepResult {
    let pts = [
        (10.0, Some(2.0)),
        (20.0, Some(1.5)),
        (25.0, Some(3.0)),
        (30.0, Some(2.5)),
        (40.0, Some(2.6)),
        (50.0, None),
    ];
    let points = pts
        .iter()
        .enumerate()
        .map(|(i, (x, y))| {
            let t = i as u32 + 1;
            SweepPoint::of(
                vec![SweepValue {
                    key: SweepKey::Threads,
                    value: t.to_string(),
                }],
                bench(*x, *y, t),
            )
        })
        .collect();
    let axes = sweep::parse_axes(&["threads=1,2,3,4,5,6".into()]).expect("axes");
    SweepResult::new(1, axes, points)
}

#[test]
fn constructed_sweep_marks_its_known_frontier() {
    let r = constructed();
    let front: Vec<&str> = r
        .points
        .iter()
        .filter(|p| p.frontier)
        .map(|p| p.label.as_str())
        .collect();
    assert_eq!(front, ["threads=2", "threads=4", "threads=5"]);
    let svg = sweep::render_svg(&r).expect("drawn").svg;
    let doc = Document::parse(&svg).expect("XML");
    let labels = |class: &str| -> Vec<(String, f64, f64)> {
        let g = groups(&doc, class);
        assert_eq!(g.len(), 1, "one {class} group");
        g[0].descendants()
            .filter(|n| has_class(n, "point"))
            .map(|n| {
                (
                    n.attribute("data-label").expect("label").to_string(),
                    n.attribute("data-x").expect("x").parse().expect("x"),
                    n.attribute("data-y").expect("y").parse().expect("y"),
                )
            })
            .collect()
    };
    let mut f = labels("frontier");
    f.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        f,
        [
            ("threads=2".to_string(), 20.0, 1.5),
            ("threads=4".to_string(), 30.0, 2.5),
            ("threads=5".to_string(), 40.0, 2.6)
        ]
    );
    let d: Vec<String> = labels("dominated").into_iter().map(|p| p.0).collect();
    assert_eq!(d, ["threads=1", "threads=3"]);
    // The frontier is joined by a line through its points, slowest to fastest.
    let frontier = groups(&doc, "frontier")[0];
    assert!(
        frontier.descendants().any(|n| n.has_tag_name("polyline")),
        "{svg}"
    );
    // The setting without an energy figure is said to be left out, not drawn at 0.
    assert!(svg.contains("1 setting(s) without an energy figure left out"));
    // The table marks the same rows.
    let table = sweep::render_table(&r);
    let marked: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_end().ends_with('*'))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(marked, ["threads=2", "threads=4", "threads=5"], "{table}");
}

#[test]
fn sweep_json_round_trips() {
    let r = constructed();
    let text = serde_json::to_string_pretty(&r).expect("ser");
    let back: SweepResult = serde_json::from_str(&text).expect("de");
    assert_eq!(back, r);
    assert_eq!(serde_json::to_string_pretty(&back).expect("ser"), text);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["schema"], "llmtop.sweep/1");
    assert_eq!(v["axes"][0]["key"], "threads");
    assert_eq!(v["points"][1]["setting"][0]["value"], "2");
    assert_eq!(v["points"][1]["frontier"], true);
    assert_eq!(v["points"][5]["j_per_token"], serde_json::Value::Null);
    assert_eq!(v["points"][3]["result"]["settings"]["threads"], 4);
}

#[test]
fn bad_sweep_specs_name_the_key_the_cause_and_the_fix() {
    let err = |s: &[&str]| {
        sweep::parse_axes(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
            .expect_err("bad")
            .to_string()
    };
    assert_eq!(
        err(&["thread=1,2"]),
        "--sweep \"thread=1,2\": unknown key \"thread\"; use threads, gpu-layers, ctx, model or power-cap, e.g. --sweep threads=1,2,4"
    );
    assert_eq!(
        err(&["threads=1,zero"]),
        "--sweep threads: \"zero\" is not a whole number of 1 or more; e.g. --sweep threads=1,2,4"
    );
    assert_eq!(
        err(&["threads=0"]),
        "--sweep threads: \"0\" is not a whole number of 1 or more; e.g. --sweep threads=1,2,4"
    );
    assert_eq!(
        err(&["gpu-layers=-1"]),
        "--sweep gpu-layers: \"-1\" is not a whole number of 0 or more; e.g. --sweep gpu-layers=0,16,99"
    );
    assert_eq!(
        err(&["ctx="]),
        "--sweep ctx: no values; list them after '=', e.g. --sweep ctx=512,2048"
    );
    assert_eq!(
        err(&["threads"]),
        "--sweep \"threads\": no '='; write KEY=V1,V2,... e.g. --sweep threads=1,2,4"
    );
    assert_eq!(
        err(&["threads=1", "threads=2"]),
        "--sweep threads is given twice; put every value in one --sweep threads=..."
    );
    assert_eq!(
        err(&["threads=2,02"]),
        "--sweep threads: \"02\" is listed twice; list each value once"
    );
    assert!(!err(&["thread\u{1b}[2J=1"]).contains('\u{1b}'));
}

#[test]
fn run_card_svg_charts_power_and_speed_under_the_screen() {
    let card = RunCard::load(&fixture("mac-mini.json")).expect("fixture");
    let power: Vec<f64> = card.series.iter().filter_map(|p| p.power_w).collect();
    assert!(power.len() > 2);
    // No screen (bench --snapshot): the chart alone.
    let alone = snapshot::card_svg(&card, None).expect("a chart");
    let doc = Document::parse(&alone).expect("XML");
    let series: Vec<(&str, &str)> = groups(&doc, "series")
        .iter()
        .map(|g| {
            (
                g.attribute("data-series").expect("key"),
                g.attribute("data-points").expect("n"),
            )
        })
        .collect();
    let n = power.len().to_string();
    let n_tok = card
        .series
        .iter()
        .filter(|p| p.tok_s.is_some())
        .count()
        .to_string();
    assert_eq!(series, [("power_w", n.as_str()), ("tok_s", n_tok.as_str())]);
    // Each series is one line with a vertex per point.
    for g in groups(&doc, "series") {
        let line = g
            .descendants()
            .find(|n| n.has_tag_name("polyline"))
            .expect("a line");
        let vertices = line
            .attribute("points")
            .expect("points")
            .split_whitespace()
            .count();
        assert_eq!(vertices.to_string(), g.attribute("data-points").expect("n"));
    }
    // With a screen: the screen, then the chart below it, in one document.
    let screen = ratatui::buffer::Buffer::with_lines(["tok/s 42"]);
    let both = snapshot::card_svg(&card, Some(&screen)).expect("svg");
    let doc = Document::parse(&both).expect("XML");
    let root = doc.root_element();
    assert_eq!(
        root.attribute("height"),
        Some("297"),
        "17 px screen + 280 px chart"
    );
    assert!(
        groups(&doc, "screen")[0]
            .descendants()
            .any(|n| n.text() == Some("tok/s 42"))
    );
    assert_eq!(
        groups(&doc, "run-chart")[0].attribute("transform"),
        Some("translate(0,17)")
    );
    assert_eq!(groups(&doc, "series").len(), 2);
    // A card without a series keeps the plain screen picture, and without a screen has none.
    let mut bare = card.clone();
    bare.series.clear();
    assert_eq!(
        snapshot::card_svg(&bare, Some(&screen)),
        Some(snapshot::buffer_to_svg(&screen))
    );
    assert_eq!(snapshot::card_svg(&bare, None), None);
}

/// Not a check: writes the pictures for a look by eye (`LLMTOP_CHART_DUMP=dir`).
#[test]
#[ignore = "not a check: writes the charts for a look by eye; LLMTOP_CHART_DUMP=dir cargo test --test report dump_pictures -- --ignored"]
fn dump_pictures() {
    let dir = std::env::var_os("LLMTOP_CHART_DUMP")
        .expect("set LLMTOP_CHART_DUMP to the folder the pictures go to");
    let dir = PathBuf::from(dir);
    let card = RunCard::load(&fixture("mac-mini.json")).expect("fixture");
    std::fs::write(
        dir.join("card.svg"),
        snapshot::card_svg(&card, None).expect("svg"),
    )
    .expect("w");
    let screen = ratatui::buffer::Buffer::with_lines(["tok/s 42 ".repeat(12)]);
    std::fs::write(
        dir.join("card-screen.svg"),
        snapshot::card_svg(&card, Some(&screen)).expect("svg"),
    )
    .expect("w");
    std::fs::write(
        dir.join("sweep.svg"),
        sweep::render_svg(&constructed()).expect("svg").svg,
    )
    .expect("w");
    print!("{}", sweep::render_table(&constructed()));
    // A real sweep's JSON, when one was left there, drawn again.
    if let Ok(text) = std::fs::read_to_string(dir.join("s.json")) {
        let r: SweepResult = serde_json::from_str(&text).expect("sweep JSON");
        std::fs::write(
            dir.join("real-sweep.svg"),
            sweep::render_svg(&r).expect("svg").svg,
        )
        .expect("w");
    }
}

/// A real ledger's report on a CPU at `watts` for 4 s and 100 tokens, read as `source`
/// (a RAPL counter or the utilisation estimate), as one bench run.
fn bench_run_on(source: llmtop::sensors::Source, watts: f64) -> llmtop::report::bench::BenchRun {
    use llmtop::accounting::energy::Window;
    use llmtop::accounting::ledger::Ledger;
    use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample};
    let counter = source == llmtop::sensors::Source::Rapl;
    let mut ledger = Ledger::new();
    for i in 0..=40 {
        let t = f64::from(i) * 0.25;
        let (quantity, value, method) = if counter {
            (Quantity::Energy, 1000.0 + watts * t, Method::Counter)
        } else {
            (Quantity::Power, watts, Method::Estimated)
        };
        ledger.push(&Sample {
            t,
            readings: vec![Reading {
                id: "cpu:package-0".into(),
                device: "cpu".into(),
                label: "package-0".into(),
                quantity,
                value: Some(value),
                limit: None,
                source,
                covers: Covers::CpuPackage,
                method,
                rejected: None,
                via: counter.then(|| "energy_uj".into()),
            }],
        });
    }
    let energy = ledger.report(&Window {
        t0: 2.0,
        t1: 6.0,
        tokens: Some(100),
        ..Window::default()
    });
    llmtop::report::bench::BenchRun {
        stats: llmtop::engine::ReplyStats {
            prompt_tokens: 12,
            conversation_tokens: 12,
            generated_tokens: 100,
            ttft_ms: 84.0,
            prefill_ms: 40.0,
            prefill_tok_s: 300.0,
            gen_ms: 3960.0,
            gen_tok_s: 25.3,
            gen_wall_tok_s: 25.0,
            wall_s: 4.0,
            stop: llmtop::engine::StopReason::MaxTokens,
            prefill_end_s: 0.04,
            load_ms: None,
            origins: Default::default(),
        },
        energy: Some(energy),
        costs: vec![],
        throttle: vec![],
        roofline: None,
        contention: vec![],
    }
}

#[test]
fn bench_table_shows_each_energy_row_with_its_band_at_80_columns() {
    use llmtop::report::bench::render_table;
    use llmtop::sensors::Source;
    let table = |source| {
        let mut r = bench(25.3, None, 2);
        r.runs = vec![bench_run_on(source, 30.0)];
        r.summary = Summary::of(100.0, &r.runs);
        (r.summary.clone(), render_table(&r))
    };
    // A RAPL counter: ±5 % and a millisecond step at each edge, digits only.
    let (s, rapl) = table(Source::Rapl);
    let band = s.energy_band.expect("band");
    assert!(band.hi >= 0.05 && band.hi < 0.051, "{band:?}");
    let row = rapl
        .lines()
        .find(|l| l.starts_with("energy/token (J)"))
        .expect("row");
    assert!(row.ends_with("  ±5 %"), "{rapl}");
    assert!(!rapl.contains("could be"), "{rapl}");
    // The estimate: CodeCarbon's band, in digits on each row and in words under the table.
    let (s, est) = table(Source::Estimate);
    assert_eq!(
        s.energy_band.map(|b| b.text()).as_deref(),
        Some("−67…+163 %")
    );
    assert!(est.contains("the energy could be −67 %…+163 %"), "{est}");
    let text = format!("{rapl}\n{est}");
    // The table's rows; the heading and the notes under it are prose a terminal wraps.
    let prose = |l: &str| l.starts_with("power:") || l.contains(" threads, GPU layers ");
    for line in text.lines().filter(|l| !prose(l)) {
        assert!(
            unicode_width::UnicodeWidthStr::width(line) <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    insta::assert_snapshot!("bench_table_bands", text);
}

#[test]
fn compare_svg_draws_each_band_and_says_within_error() {
    let dir = tempfile::tempdir().expect("dir");
    let cards = crate::compare::banded_cards(dir.path());
    std::fs::write(dir.path().join("config.toml"), "").expect("config");
    let o = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .current_dir(dir.path())
        .args(["--config", "config.toml", "compare"])
        .args(&cards)
        .args(["--svg", "cmp.svg"])
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("run llmtop");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.path().join("cmp.svg")).expect("svg");
    let doc = Document::parse(&text).expect("XML");
    let machines = groups(&doc, "machine");
    let attr = |n: &Node, a: &str| -> f64 {
        n.attribute(a)
            .unwrap_or_else(|| panic!("no {a}"))
            .parse()
            .expect("number")
    };
    // (story Wh, band) per machine, as in banded_cards.
    let want = [
        (2400.0 / 3600.0, -0.05, 0.05),
        (6000.0 / 3600.0, -0.05, 0.05),
        (1.0, -0.672_413_793_103_448_3, 1.625),
    ];
    // The whisker spans the band on the bar's own scale: the bar's px per Wh.
    for (m, (wh, lo, hi)) in machines.iter().zip(want) {
        let b = bar(m, "wh_per_story", None);
        assert!((attr(&b, "data-lower") - wh * (1.0 + lo)).abs() < 1e-9);
        assert!((attr(&b, "data-upper") - wh * (1.0 + hi)).abs() < 1e-9);
        let rect = b
            .descendants()
            .find(|c| c.has_tag_name("rect"))
            .expect("rect");
        let (y, h) = (attr(&rect, "y"), attr(&rect, "height"));
        let px_per_wh = h / wh;
        let ys: Vec<f64> = b
            .descendants()
            .filter(|c| c.has_tag_name("polyline"))
            .flat_map(|p| {
                p.attribute("points")
                    .expect("points")
                    .split_whitespace()
                    .map(|xy| xy.split(',').nth(1).expect("y").parse::<f64>().expect("y"))
                    .collect::<Vec<_>>()
            })
            .collect();
        let bottom = y + h;
        let top_y = ys.iter().copied().fold(f64::MAX, f64::min);
        let low_y = ys.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            (bottom - top_y - wh * (1.0 + hi) * px_per_wh).abs() <= 2.0,
            "whisker top {top_y} for {wh} Wh +{hi}"
        );
        assert!(
            (bottom - low_y - wh * (1.0 + lo) * px_per_wh).abs() <= 2.0,
            "whisker bottom {low_y} for {wh} Wh {lo}"
        );
    }
    // Only the RTX box's band overlaps the lowest machine's: its bars say so.
    let notes: Vec<Option<&str>> = machines
        .iter()
        .map(|m| bar(m, "wh_per_story", None).attribute("data-note"))
        .collect();
    assert_eq!(notes, [None, None, Some("within error")]);
    let rtx = bar(&machines[2], "j_per_token", None);
    assert!(
        rtx.descendants()
            .any(|t| t.has_tag_name("text") && t.text().map(str::trim) == Some("within error")),
        "{text}"
    );
}

#[test]
fn compare_svg_money_panels_have_one_unit() {
    // Cost per story is under a cent here: the panel's title, its axis (the bars' values) and
    // its labels are all in cents; the TCO panels in the main unit.
    let dir = tempfile::tempdir().expect("dir");
    let o = compare_in(dir.path(), &["--svg", "cmp.svg"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.path().join("cmp.svg")).expect("svg");
    assert!(text.contains("cost per story, US (¢)"), "{text}");
    assert!(text.contains("cost per story, DE (€ct)"), "{text}");
    let doc = Document::parse(&text).expect("XML");
    let machines = groups(&doc, "machine");
    // 2400, 6000, 3600 J at 0.175 USD and 0.38 EUR per kWh, in cents.
    for (panel, price, unit) in [
        ("cost_per_story_US", 17.5, "¢"),
        ("cost_per_story_DE", 38.0, "€ct"),
    ] {
        for (m, j) in machines.iter().zip([2400.0, 6000.0, 3600.0]) {
            let b = bar(m, panel, None);
            let cents = j / 3.6e6 * price;
            assert!((value(&b) - cents).abs() < 1e-12, "{panel}: {}", value(&b));
            let label = drawn(&b).1;
            let shown: f64 = label
                .strip_suffix(&format!(" {unit}"))
                .unwrap_or_else(|| panic!("{label} not in {unit}"))
                .parse()
                .expect("number");
            assert!(
                (shown - cents).abs() < 0.0006,
                "{panel}: {label} for {cents}"
            );
        }
    }
    // Dollars stay dollars: $460 over 3 years for the RTX box, its bar at 459.9.
    let tco = bar(&machines[2], "tco_US", None);
    assert!((value(&tco) - 459.9).abs() < 1e-9);
    assert_eq!(drawn(&tco).1, "$460");
}

/// A power-cap sweep kept with --allow-contention: the table names the caps whose decode runs
/// were contended, since their speeds moved with the other work too; a clean sweep says nothing.
#[test]
fn a_power_cap_table_names_its_contended_caps() {
    use llmtop::report::power_cap::{CapFigures, CapSweep, CurvePoint, PhaseFigures, knee};
    use llmtop::sensors::powerlimit::{Applied, CapKind};
    let phase = |tok_s: f64| PhaseFigures {
        settle_runs: 0,
        runs: 1,
        window_s: 10.0,
        tokens: 100,
        tok_s: Spread::of(&[tok_s]),
        energy_j: Some(100.0),
        j_per_token: Some(1.0),
        tokens_per_j: Some(1.0),
        avg_w: Some(50.0),
        device_w: Some(50.0),
    };
    let sweep = |contended: &[bool]| {
        let points: Vec<SweepPoint> = [(65.0, 50.0), (45.0, 49.0), (30.0, 20.0)]
            .iter()
            .zip(contended)
            .map(|((w, dec), c)| {
                let mut result = bench(*dec, Some(1.0), 1);
                result.contended = *c;
                let mut p = SweepPoint::of(
                    vec![SweepValue {
                        key: SweepKey::PowerCap,
                        value: w.to_string(),
                    }],
                    result,
                );
                p.power_cap = Some(CapFigures {
                    cap_w: *w,
                    applied: vec![Applied {
                        device: "CPU package-0 (intel-rapl:0)".into(),
                        requested_w: *w,
                        in_effect_w: Some(*w),
                    }],
                    prefill: phase(500.0),
                    decode: phase(*dec),
                    prefill_runs: Vec::new(),
                });
                p
            })
            .collect();
        let axes = sweep::parse_axes(&["power-cap=65,45,30".into()]).expect("axes");
        let mut r = SweepResult::new(1, axes, points);
        let curve: Vec<CurvePoint> = r.caps().iter().map(|c| CurvePoint::of(c)).collect();
        r.power_cap = Some(CapSweep {
            kind: CapKind::CpuPackage,
            rule: "--cap-device cpu".into(),
            devices: vec!["CPU package-0 (intel-rapl:0)".into()],
            originals: vec!["CPU package-0 (intel-rapl:0) long_term 65 W".into()],
            stock_w: Some(65.0),
            cooldown_s: 0.0,
            settle_s: 0.0,
            window_s: 10.0,
            tolerance_pct: 5.0,
            knee: knee(&curve, 5.0),
            commands: Vec::new(),
        });
        sweep::render_table(&r)
    };
    let table = sweep(&[false, true, true]);
    let line = table
        .lines()
        .find(|l| l.starts_with("CONTENDED"))
        .unwrap_or_else(|| panic!("no contention line:\n{table}"));
    assert!(
        line.starts_with("CONTENDED: other programs took llama.cpp's CPUs while it decoded at 45 W, 30 W (kept by --allow-contention)"),
        "{line}"
    );
    assert!(table.contains("decode knee 45 W"), "{table}");
    let clean = sweep(&[false, false, false]);
    assert!(!clean.contains("CONTENDED"), "{clean}");
}
