//! The GPU proof kit up to where a GPU is needed: the random-weight GGUF that
//! scripts/gpu-proof/gguf_tool.py writes (with the default model's tokenizer) loads in the real
//! llama.cpp through the real binary, with every tensor of the shape it declares, and generates.
//! (The whole kit's CPU dry run, `scripts/gpu-proof.sh --cpu-dry-run`, compiles llama.cpp and
//! is run by hand: BENCHMARKS.md, GPU.)

use crate::common::model_path;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

fn tool(args: &[&OsStr]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-proof/gguf_tool.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "gguf_tool.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_random_tiny_llama_loads_and_generates_in_llama_cpp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vocab = dir.path().join("vocab.gguf");
    let model = dir.path().join("tiny.gguf");
    let default_model = model_path();
    tool(&[
        OsStr::new("vocab"),
        default_model.as_os_str(),
        vocab.as_os_str(),
    ]);
    tool(&[
        OsStr::new("model"),
        vocab.as_os_str(),
        model.as_os_str(),
        OsStr::new("--shape"),
        OsStr::new("tiny"),
    ]);
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args([
            "bench",
            "--max-tokens",
            "16",
            "--reps",
            "1",
            "--no-warmup",
            "--no-idle",
            // Other tests of this binary run models beside it: this checks that the file
            // loads and generates, not how fast.
            "--allow-contention",
        ])
        .args(["--threads", "2", "--temperature", "0", "--model"])
        .arg(&model)
        .arg("--json")
        .arg(&json)
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .output()
        .expect("run llmtop bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("bench json")).expect("json");
    let m = &v["model"];
    // 64-wide, 2 blocks, 2 heads of 32, 1 KV head, FFN 128, SmolLM2's 49152 tokens, tied head:
    // embedding 64 x 49152 + norm 64 + 2 x (norms 2 x 64, q 64 x 64, k and v 64 x 32 each,
    // o 64 x 64, gate/up/down 3 x 64 x 128) = 3 145 728 + 64 + 2 x 36 992.
    assert_eq!(m["n_params"], 3_219_776, "{m}");
    assert_eq!(m["architecture"], "llama", "{m}");
    assert_eq!(m["quantization"], "Q8_0", "{m}");
    assert_eq!(m["n_ctx_train"], 512, "{m}");
    // Its tokenizer is the default model's: the chat template came with it.
    assert_eq!(m["chat_template"], "model", "{m}");
    let run = &v["runs"][0];
    let generated = run["generated_tokens"].as_u64().expect("generated_tokens");
    assert!(
        (1..=16).contains(&generated),
        "generated {generated} tokens: {run}"
    );
    assert!(run["prompt_tokens"].as_u64().expect("prompt_tokens") > 10);
}
