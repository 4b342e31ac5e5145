//! Bad input through the real binary: one clear line on stderr, a non-zero exit, no panic.
use crate::common;

use std::path::Path;
use std::process::Command;

struct Outcome {
    code: i32,
    stderr: String,
}

fn llmtop(args: &[&str], data_dir: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args(args)
        .env("LLMTOP_DATA_DIR", data_dir)
        .env_remove("LLMTOP_MODEL")
        .output()
        .expect("run llmtop");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Exactly one line, naming `what`, and nothing that looks like a crash.
fn assert_one_line(o: &Outcome, what: &[&str]) {
    assert_ne!(o.code, 0, "must fail: {}", o.stderr);
    let lines: Vec<_> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{}", o.stderr);
    for w in what {
        assert!(o.stderr.contains(w), "{:?} should mention {w:?}", o.stderr);
    }
    assert!(!o.stderr.contains("panicked") && !o.stderr.contains("backtrace"));
}

fn bench_with_model(model: &Path, dir: &Path) -> Outcome {
    let m = model.to_str().expect("utf8 path");
    llmtop(
        &["bench", "--model", m, "--reps", "1", "--max-tokens", "4"],
        dir,
    )
}

#[test]
fn model_file_problems_name_the_file_and_the_cause() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();

    let missing = d.join("missing.gguf");
    assert_one_line(
        &bench_with_model(&missing, d),
        &["missing.gguf", "no such file"],
    );

    assert_one_line(&bench_with_model(d, d), &["is a directory"]);

    let text = d.join("notes.gguf");
    std::fs::write(&text, "just some text, not weights").expect("write");
    assert_one_line(
        &bench_with_model(&text, d),
        &["notes.gguf", "not a GGUF file"],
    );

    let empty = d.join("empty.gguf");
    std::fs::write(&empty, b"").expect("write");
    assert_one_line(
        &bench_with_model(&empty, d),
        &["empty.gguf", "file is empty"],
    );

    // The real model cut to its first 2 MiB: header intact, tensors missing.
    let real = std::fs::read(common::model_path()).expect("model");
    let cut = d.join("truncated.gguf");
    std::fs::write(&cut, &real[..2 << 20]).expect("write");
    assert_one_line(
        &bench_with_model(&cut, d),
        &["truncated.gguf", "truncated or corrupt", "re-download"],
    );

    // Unreadable: a path through a regular file fails for every user, root included.
    let through_file = text.join("model.gguf");
    assert_one_line(
        &bench_with_model(&through_file, d),
        &["model.gguf", "cannot read"],
    );
}

#[test]
#[ignore = "needs a non-root user (root reads mode-000 files) and CI runs as root: cargo test --test e2e unreadable_model -- --ignored"]
fn unreadable_model_for_an_ordinary_user() {
    // SAFETY: geteuid only reads this process's credentials.
    let uid = unsafe { libc::geteuid() };
    assert_ne!(
        uid, 0,
        "run this test as an ordinary user: root reads mode-000 files"
    );
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("locked.gguf");
    std::fs::write(&p, b"GGUF").expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    assert_one_line(
        &bench_with_model(&p, dir.path()),
        &["locked.gguf", "permission denied"],
    );
}

#[test]
fn bad_numbers_and_flags() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let model = common::model_path();
    let m = model.to_str().expect("utf8");
    let run = |extra: &[&str]| {
        let mut a = vec!["bench", "--model", m, "--reps", "1", "--max-tokens", "4"];
        a.extend_from_slice(extra);
        llmtop(&a, d)
    };
    assert_one_line(&run(&["--n-ctx", "0"]), &["--n-ctx 0", "at least 1"]);
    assert_one_line(
        &run(&["--n-ctx", "9000"]),
        &["n_ctx 9000", "training context of 8192", "--n-ctx 8192"],
    );
    assert_one_line(&run(&["--threads", "0"]), &["--threads 0", "at least 1"]);
    assert_one_line(&run(&["--frobnicate"]), &["--frobnicate", "--help"]);
    let o = run(&["--json", d.join("nope/out.json").to_str().expect("utf8")]);
    assert_one_line(&o, &["nope/out.json", "does not exist"]);
    let o = llmtop(&["bench", "--model", m, "--reps", "0"], d);
    assert_one_line(&o, &["--reps 0"]);
}

#[test]
fn bad_config_file_is_one_line_with_file_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[model]\nthreads = 2\nfrobnicate = true\n").expect("write");
    let o = llmtop(
        &["--config", cfg.to_str().expect("utf8"), "models"],
        dir.path(),
    );
    assert_one_line(&o, &["config.toml:3", "frobnicate"]);
}
