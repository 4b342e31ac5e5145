//! `llmtop bench` end to end: real binary, real model, JSON through its schema.

mod common;

use llmtop::bench::{BenchResult, SCHEMA};
use llmtop::engine::StopReason;
use std::process::Command;

#[test]
fn bench_json_round_trips_through_its_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("bench.json");
    let model = common::model_path();
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args([
            "bench",
            "--reps",
            "2",
            "--no-warmup",
            "--max-tokens",
            "12",
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
    assert!(stderr.contains("run 2/2: 12 tokens"), "{stderr}");

    let text = std::fs::read_to_string(&json).expect("json written");
    let r: BenchResult = serde_json::from_str(&text).expect("matches the schema");
    // Nothing is lost or invented going through the typed schema: byte-identical re-render.
    assert_eq!(serde_json::to_string_pretty(&r).expect("ser"), text);
    assert_eq!(r.schema, SCHEMA);
    assert_eq!(r.runs.len(), 2);
    assert!(!r.warmup);
    for run in &r.runs {
        assert_eq!(run.generated_tokens, 12);
        assert_eq!(run.stop, StopReason::MaxTokens);
        assert!(run.gen_tok_s > 0.0);
    }
    assert_eq!(r.summary.generated_tokens.median, 12.0);
    let g: Vec<f64> = r.runs.iter().map(|x| x.gen_tok_s).collect();
    assert!(r.summary.gen_tok_s.min <= r.summary.gen_tok_s.median);
    assert_eq!(
        r.summary.gen_tok_s.max,
        g.iter().copied().fold(f64::MIN, f64::max)
    );
    assert_eq!(r.model.quantization, "Q4_1");
    assert_eq!(r.settings.threads, 2);
    assert_eq!(r.settings.temperature, 0.0, "bench defaults to greedy");
    assert!(r.host.logical_cores >= 1);
    assert_eq!(r.build.llmtop_version, env!("CARGO_PKG_VERSION"));
}
