//! `llmtop bench` end to end: real binary, real model, JSON through its schema.
use crate::common;
use crate::live;

use llmtop::engine::StopReason;
use llmtop::report::bench::{BenchResult, SCHEMA};
use std::process::Command;

#[test]
fn bench_json_round_trips_through_its_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("bench.json");
    let model = common::model_path();
    // A short idle window and a fast sampler keep the test quick.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 1.0\nrate_hz = 20.0\n").expect("cfg");
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "bench",
            // Other tests of this binary run llama.cpp beside it: contention is real here.
            "--allow-contention",
            "--reps",
            "2",
            "--no-warmup",
            "--snapshot",
            "--max-tokens",
            "48",
            "--threads",
            "2",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--json")
        .arg(&json)
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for row in [
        "cold load (ms)",
        "TTFT (ms)",
        "prefill (tok/s)",
        "generation (tok/s)",
        "tokens generated",
    ] {
        assert!(stdout.contains(row), "table lacks {row}:\n{stdout}");
    }
    assert!(stderr.contains("run 2/2: 48 tokens"), "{stderr}");

    let text = std::fs::read_to_string(&json).expect("json written");
    let r: BenchResult = serde_json::from_str(&text).expect("matches the schema");
    // Nothing is lost or invented going through the typed schema: byte-identical re-render.
    assert_eq!(serde_json::to_string_pretty(&r).expect("ser"), text);
    assert_eq!(r.schema, SCHEMA);
    assert_eq!(r.runs.len(), 2);
    assert!(!r.warmup);
    for run in &r.runs {
        assert_eq!(run.stats.generated_tokens, 48);
        assert_eq!(run.stats.stop, StopReason::MaxTokens);
        assert!(run.stats.gen_tok_s > 0.0);
        // Every machine has at least the utilisation estimate, so every run has energy, and
        // its figures agree with each other.
        let e = run.energy.as_ref().expect("energy for each run");
        let total = e.total.as_ref().expect("a system total");
        assert!(total.energy_j > 0.0);
        assert_eq!(e.tokens, Some(48));
        let jpt = e.j_per_token.expect("J/token");
        assert!((jpt * 48.0 - total.energy_j).abs() < 1e-9 * total.energy_j.max(1.0));
        assert!(
            (e.duration_s - run.stats.wall_s).abs() < 0.05,
            "{} vs {}",
            e.duration_s,
            run.stats.wall_s
        );
        let (pre, dec) = (
            e.prefill_j.expect("prefill J"),
            e.decode_j.expect("decode J"),
        );
        assert!((pre + dec - total.energy_j).abs() < 1e-6 * total.energy_j.max(1.0));
        assert_eq!(stdout.contains("ESTIMATED"), total.estimated, "{stdout}");
        // Net of idle only when the idle baseline was measured on the same basis.
        // It is the total less idle power over the run, floored at 0 as a whole.
        if let (Some(idle), Some(net)) = (&r.idle, e.net_j) {
            let want = (total.energy_j - idle.watts * e.duration_s).max(0.0);
            assert!((want - net).abs() < 1e-6, "{net} vs {want}");
        }
    }
    let idle = r.idle.as_ref().expect("idle baseline measured");
    assert!(
        idle.watts > 0.0 && (idle.window_s - 1.0).abs() < 0.2,
        "{idle:?}"
    );
    assert!(!r.sensors.is_empty(), "sensor statuses recorded");
    assert_eq!(r.summary.generated_tokens.median, 48.0);
    assert!(r.summary.energy_wh.is_some() && r.summary.j_per_token.is_some());
    let g: Vec<f64> = r.runs.iter().map(|x| x.stats.gen_tok_s).collect();
    assert!(r.summary.gen_tok_s.min <= r.summary.gen_tok_s.median);
    assert_eq!(
        r.summary.gen_tok_s.max,
        g.iter().copied().fold(f64::MIN, f64::max)
    );
    assert_eq!(r.model.quantization, "Q4_1");
    // The settings are the engine's report: the same in `settings`, `model`, the table and
    // the card; n_ctx as allocated (the model's 8192 capped at 4096), not the 0 asked for.
    assert_eq!(r.settings.threads, 2);
    assert_eq!(r.model.in_effect.threads, 2);
    assert_eq!((r.settings.n_ctx, r.model.n_ctx), (4096, 4096));
    assert_eq!(r.settings.gpu_layers, 0);
    assert_eq!(r.settings.temperature, 0.0, "bench defaults to greedy");
    assert_eq!(r.settings.sampler, "greedy");
    assert_eq!(r.settings.top_k, None, "greedy ignores top_k: not recorded");
    assert!(!text.contains("\"top_k\""), "top_k in the bench JSON");
    assert_eq!(
        r.settings.system_prompt.as_deref(),
        Some("You are a helpful assistant.")
    );
    assert!(
        stdout.contains("2 threads, GPU layers 0, n_ctx 4096, sampler greedy"),
        "{stdout}"
    );
    assert!(r.host.logical_cores >= 1);
    assert_eq!(r.build.llmtop_version, env!("CARGO_PKG_VERSION"));

    // --snapshot: a run card of the same figures, which compare reads.
    let snaps: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let card = llmtop::report::runcard::RunCard::load(&snaps[0]).expect("valid card");
    assert_eq!(card.settings, r.settings);
    assert_eq!(card.session.gen_tok_s, Some(r.summary.gen_tok_s.median));
    assert_eq!(card.session.generated_tokens, 96);
    let last = card.last_reply.as_ref().expect("last reply");
    let last_run = r.runs.last().expect("run");
    assert_eq!(last.generated_tokens, last_run.stats.generated_tokens);
    let card_j = last.energy.as_ref().expect("energy").total_j;
    let run_j = last_run
        .energy
        .as_ref()
        .and_then(|e| e.total.as_ref())
        .expect("t")
        .energy_j;
    assert_eq!(card_j, run_j);
    let regions: Vec<_> = card.cost.iter().map(|c| c.region.as_str()).collect();
    assert_eq!(regions, ["US", "DE", "DK"]);

    // The decode roofline on the real model. SmolLM2-135M Q4_1 has no output.weight (its
    // output matrix is the token embedding), so a token reads every tensor whole: 96 576 768
    // bytes (BENCHMARKS.md works it out from the tensor table), plus 30 layers x 3 KV heads x
    // (64 + 64) dims x 2 bytes = 23 040 bytes of F16 KV cache per token of context.
    let t = r.model.traffic.as_ref().expect("traffic from the GGUF");
    assert!(t.tied_output);
    assert_eq!(t.weight_bytes, 96_576_768);
    assert_eq!(t.weight_bytes, t.file_tensor_bytes);
    assert_eq!(t.kv_bytes_per_position, 23_040);
    let ceiling = r.ceiling.as_ref().expect("RAM measured by the probe");
    assert_eq!(
        Some(ceiling.gb_s),
        r.memory
            .as_ref()
            .and_then(|m| m.cpu.as_ref())
            .map(|b| b.read_gb_s)
    );
    for run in &r.runs {
        let roof = run.roofline.as_ref().expect("roofline for each run");
        let depth = f64::from(run.stats.conversation_tokens) + 48.0 / 2.0;
        assert_eq!(roof.depth, depth);
        assert_eq!(roof.bytes_per_token, 96_576_768.0 + 23_040.0 * depth);
        assert_eq!(roof.tok_s, run.stats.gen_tok_s);
        assert!((roof.gb_s - roof.bytes_per_token * roof.tok_s / 1e9).abs() < 1e-12);
        assert!((roof.share.expect("share") - roof.gb_s / ceiling.gb_s).abs() < 1e-12);
    }
    // The card carries the last run's very figure, and the table its median.
    assert_eq!(last.roofline, last_run.roofline);
    let gb: Vec<f64> = r
        .runs
        .iter()
        .filter_map(|x| x.roofline.as_ref())
        .map(|x| x.gb_s)
        .collect();
    let median = r.summary.memory_gb_s.expect("median GB/s").median;
    assert_eq!(median, (gb[0] + gb[1]) / 2.0);
    assert!(stdout.contains("memory read (GB/s)"), "{stdout}");
    assert!(
        stdout.contains(&format!("{median:.2}")),
        "the table shows the median {median:.2}: {stdout}"
    );
    let us = &card.cost[0];
    assert!((us.last_reply.expect("cost") - card_j / 3.6e6 * 0.175).abs() < 1e-12);
    let cmp = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args(["compare", "--csv"])
        .arg(&snaps[0])
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("compare");
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let csv = String::from_utf8_lossy(&cmp.stdout);
    assert!(csv.contains(&card.host.hostname), "{csv}");
}

/// The real binary on a live synthetic machine with a wall plug on 127.0.0.1, at a flat
/// 190 W at the wall: every run's energy is the plug's, over the whole run, and the net of
/// idle is nothing (the load is the idle here). The run card says the same.
#[test]
fn bench_on_a_live_machine_with_a_wall_plug_matches_the_true_joules() {
    let m = live::LiveMachine::start(live::Profile::flat(40.0, 120.0, 30.0));
    let watts = m.profile.wall_w(0.0);
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("bench.json");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, m.plug_config()).expect("cfg");
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "bench",
            // Other tests of this binary run llama.cpp beside it: contention is real here.
            "--allow-contention",
            "--reps",
            "3",
            "--no-warmup",
            "--snapshot",
            "--max-tokens",
            "64",
            "--threads",
            "2",
        ])
        .arg("--sysfs-root")
        .arg(&m.root)
        .arg("--model")
        .arg(common::model_path())
        .arg("--json")
        .arg(&json)
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: BenchResult =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("schema");
    let idle = r.idle.as_ref().expect("idle baseline");
    live::assert_within("idle", idle.watts, watts, 0.01);
    for run in &r.runs {
        let e = run.energy.as_ref().expect("run energy");
        let total = e.total.as_ref().expect("total");
        assert_eq!(total.basis, llmtop::accounting::energy::TotalBasis::Wall);
        assert!(total.changes.is_empty(), "{:?}", total.changes);
        // The whole run, not the part the plug happened to cover.
        live::assert_within("run energy", total.energy_j, watts * e.duration_s, 0.01);
        let net = e.net_j.expect("net of idle");
        assert!(
            net.abs() <= 0.01 * total.energy_j,
            "net {net} of {}",
            total.energy_j
        );
        // Priced by the ledger, in the configured region (US by default) and the others.
        let us = run
            .costs
            .iter()
            .find(|c| c.region == "US")
            .expect("US cost");
        live::assert_within("run cost", us.amount, total.energy_j / 3.6e6 * 0.175, 1e-9);
        // The plug's band: its ±5 %, plus what its Wh counter allows at the window's edges
        // (it moves once a second: up to a second of power each side, and one 3.6 J step of
        // resolution; the interpolation between readings of a flat power adds a few joules).
        // It holds the true joules.
        let band = total.band.expect("run band");
        assert!(
            band.contains(total.energy_j, watts * e.duration_s, 0.0),
            "{band:?} around {} for {}",
            total.energy_j,
            watts * e.duration_s
        );
        let allowed = 0.05 + (watts * 1.0 + 3.6 + 10.0) / total.energy_j;
        assert!(
            band.hi >= 0.05 && band.hi <= allowed && band.lo <= -0.05 && -band.lo <= allowed,
            "{band:?} wider than {allowed} for {} J over {} s",
            total.energy_j,
            e.duration_s,
        );
    }
    // The summary carries the widest run's band; the table shows it on the energy rows.
    let widest = r
        .runs
        .iter()
        .filter_map(|x| x.energy.as_ref()?.total.as_ref()?.band)
        .fold(0.0f64, |a, b| a.max(b.hi));
    let summary_band = r.summary.energy_band.expect("summary band");
    assert_eq!(summary_band.hi, widest);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cost per run, US"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("energy/token (J)"))
        .expect("J/token row");
    assert!(
        row.ends_with(&format!("  {}", summary_band.text())),
        "{stdout}"
    );
    // The run card holds the last run's figures.
    let card_path = stderr
        .lines()
        .find_map(|l| l.strip_prefix("bench: run card "))
        .expect("card path");
    let card = llmtop::report::runcard::RunCard::load(std::path::Path::new(card_path.trim()))
        .expect("card");
    let last = r.runs.last().and_then(|x| x.energy.as_ref()).expect("last");
    let card_j = card
        .last_reply
        .as_ref()
        .and_then(|x| x.energy.as_ref())
        .map(|e| e.total_j)
        .expect("card energy");
    live::assert_within(
        "card = bench",
        card_j,
        last.total.as_ref().expect("t").energy_j,
        1e-9,
    );
    // ... and its band.
    let card_band = card
        .last_reply
        .as_ref()
        .and_then(|x| x.energy.as_ref())
        .and_then(|e| e.uncertainty)
        .map(|b| b.band());
    assert_eq!(card_band, last.total.as_ref().and_then(|t| t.band));
}

/// `bench --sweep` on the real model through the binary: each setting really runs at its value
/// (the engine reports it), the JSON round-trips through its schema, its figures are the
/// bench's own, and the SVG marks the same frontier.
#[test]
fn bench_sweep_over_threads_on_the_real_model() {
    use llmtop::report::sweep::{SweepResult, pareto};
    let dir = tempfile::tempdir().expect("dir");
    let (json, svg) = (dir.path().join("sweep.json"), dir.path().join("sweep.svg"));
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[sensors]\nrate_hz = 20.0\n").expect("cfg");
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "bench",
            // Other tests of this binary run llama.cpp beside it: contention is real here.
            "--allow-contention",
            "--sweep",
            "threads=1,2",
            "--reps",
            "1",
            "--no-warmup",
            "--no-idle",
            "--max-tokens",
            "8",
        ])
        .arg("--model")
        .arg(common::model_path())
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("bench: sweep of 2 settings, 1 run(s) each"),
        "{stderr}"
    );
    assert!(stderr.contains("bench: setting 1/2: threads=1"), "{stderr}");
    assert!(stderr.contains("bench: setting 2/2: threads=2"), "{stderr}");
    assert!(!stderr.contains("measuring idle"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("threads="))
        .collect();
    assert_eq!(rows, ["threads=1", "threads=2"], "{stdout}");

    let text = std::fs::read_to_string(&json).expect("json written");
    let r: SweepResult = serde_json::from_str(&text).expect("matches the schema");
    assert_eq!(serde_json::to_string_pretty(&r).expect("ser"), text);
    assert_eq!(r.schema, "llmtop.sweep/1");
    assert_eq!(r.points.len(), 2);
    for (p, threads) in r.points.iter().zip([1u32, 2]) {
        assert_eq!(p.label, format!("threads={threads}"));
        // The engine's own report of what it ran with.
        assert_eq!(p.result.settings.threads, threads);
        assert_eq!(p.result.model.in_effect.threads, threads);
        assert!(p.result.idle.is_none() && !p.result.warmup);
        assert_eq!(p.result.runs.len(), 1);
        let run = &p.result.runs[0];
        assert_eq!(run.stats.generated_tokens, 8);
        // One run: the point's figures are that run's, as the bench and the ledger gave them.
        assert_eq!(p.gen_tok_s, run.stats.gen_tok_s);
        let e = run.energy.as_ref().expect("energy (at least the estimate)");
        assert_eq!(p.j_per_token, e.j_per_token);
        assert!(!run.costs.is_empty());
        assert_eq!(p.costs, run.costs);
    }
    let front = pareto(
        &r.points
            .iter()
            .map(|p| (p.gen_tok_s, p.j_per_token))
            .collect::<Vec<_>>(),
    );
    let marked: Vec<bool> = r.points.iter().map(|p| p.frontier).collect();
    assert_eq!(marked, front);
    assert!(front.contains(&true));

    let svg = std::fs::read_to_string(&svg).expect("svg written");
    let doc = roxmltree::Document::parse(&svg).expect("XML");
    let in_group = |class: &str| -> Vec<(String, f64)> {
        doc.descendants()
            .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some(class))
            .flat_map(|g| g.descendants())
            .filter(|n| n.attribute("class") == Some("point"))
            .map(|n| {
                (
                    n.attribute("data-label").expect("label").to_string(),
                    n.attribute("data-x").expect("x").parse().expect("x"),
                )
            })
            .collect()
    };
    let mut on_front = in_group("frontier");
    on_front.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, f64)> = r
        .points
        .iter()
        .filter(|p| p.frontier)
        .map(|p| (p.label.clone(), p.gen_tok_s))
        .collect();
    assert_eq!(on_front, want);
    assert_eq!(in_group("dominated").len(), 2 - want.len());
}

/// A bad sweep is refused before any model loads: one line naming the key, cause and fix.
#[test]
fn bad_sweeps_are_one_line_errors_before_any_run() {
    let dir = tempfile::tempdir().expect("dir");
    let model = common::model_path();
    let run = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args(["bench", "--reps", "1", "--no-idle", "--max-tokens", "4"])
            .args(extra)
            .env("LLMTOP_DATA_DIR", dir.path())
            .output()
            .expect("run");
        assert!(!o.status.success(), "{extra:?} should fail");
        assert!(o.stdout.is_empty(), "{extra:?}: nothing printed");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let one_line = |err: &str, needles: &[&str]| {
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    };
    let m = model.to_str().expect("utf8");
    one_line(
        &run(&["--model", m, "--sweep", "thread=1,2"]),
        &[
            "\"thread\"",
            "use threads, gpu-layers, ctx, model or power-cap",
        ],
    );
    one_line(
        &run(&["--model", m, "--sweep", "threads=1,x"]),
        &["--sweep threads", "\"x\"", "whole number"],
    );
    one_line(
        &run(&["--model", m, "--threads", "2", "--sweep", "threads=1,2"]),
        &["--sweep threads and --threads", "drop --threads"],
    );
    one_line(
        &run(&["--sweep", "model=/no/such/model.gguf"]),
        &["--sweep model=model.gguf", "/no/such/model.gguf"],
    );
    let svg = dir.path().join("nope/s.svg");
    one_line(
        &run(&[
            "--model",
            m,
            "--sweep",
            "threads=1",
            "--svg",
            svg.to_str().expect("utf8"),
        ]),
        &["--svg", "does not exist"],
    );
    // --svg draws a sweep; --snapshot writes one card, not one per setting.
    assert!(run(&["--model", m, "--svg", "x.svg"]).contains("--sweep"));
    assert!(run(&["--model", m, "--sweep", "threads=1", "--snapshot"]).contains("--snapshot"));
}
