//! The lifetime tally: write interval, merging writers, corrupt files kept aside, a real
//! `kill -9` mid-write, and a full disk (file-size limit) leaving the old file intact.

use llmtop::accounting::tally::{SCHEMA, Tally, TallyDelta, TallyStore};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn t0() -> jiff::Timestamp {
    "2025-06-01T10:00:00Z".parse().expect("time")
}

fn read(path: &Path) -> Tally {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("parses")
}

fn joules(j: f64) -> TallyDelta {
    TallyDelta {
        energy_j: j,
        generated_tokens: 10,
        replies: 1,
        cost: [("EUR".to_string(), j / 3.6e6 * 0.38)].into(),
        ..TallyDelta::default()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_at_most_every_five_seconds_and_on_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let (mut s, warn) = TallyStore::open(&p, t0()).expect("open");
    assert_eq!(warn, None);
    assert!(!s.tick(0.0, t0()).expect("tick"), "nothing to write yet");
    s.add(&joules(3600.0));
    assert!(
        s.tick(0.0, t0()).expect("tick"),
        "first change is written at once"
    );
    s.add(&joules(7200.0));
    assert!(!s.tick(4.9, t0()).expect("tick"));
    assert_eq!(read(&p).totals.energy_j, 3600.0, "not yet written");
    assert_eq!(s.tally().totals.energy_j, 10800.0, "but counted in memory");
    assert!(s.tick(5.0, t0()).expect("tick"));
    let t = read(&p);
    assert_eq!(t.schema, SCHEMA);
    assert_eq!(
        (
            t.totals.energy_j,
            t.totals.generated_tokens,
            t.totals.replies
        ),
        (10800.0, 20, 2)
    );
    // 10800 J = 0.003 kWh x 0.38 = 0.00114 EUR.
    assert!((t.totals.cost["EUR"] - 0.00114).abs() < 1e-15);
    assert!((t.energy_wh() - 3.0).abs() < 1e-12);
    s.add(&joules(1.0));
    s.flush(t0()).expect("flush on exit");
    assert_eq!(read(&p).totals.energy_j, 10801.0);
    assert_eq!(names(dir.path()), ["tally.json"]);
}

#[test]
fn two_writers_add_up_instead_of_overwriting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let (mut a, _) = TallyStore::open(&p, t0()).expect("a");
    let (mut b, _) = TallyStore::open(&p, t0()).expect("b");
    a.add(&joules(10.0));
    a.flush(t0()).expect("a writes");
    b.add(&joules(5.0));
    b.flush(t0()).expect("b writes");
    let t = read(&p);
    assert_eq!((t.totals.energy_j, t.totals.replies), (15.0, 2));
    assert_eq!(b.tally().totals.energy_j, 15.0);
}

#[test]
fn corrupt_file_is_kept_aside_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    std::fs::write(&p, "{\"schema\": \"llmtop.tally/1\", \"energy_j\": 12").expect("write");
    let (mut s, warn) = TallyStore::open(&p, t0()).expect("open");
    let aside = dir.path().join("tally.json.corrupt-20250601T100000Z");
    let warn = warn.expect("reported");
    assert!(
        warn.starts_with(&format!("lifetime tally {} was unreadable (", p.display())),
        "{warn}"
    );
    assert!(
        warn.ends_with(&format!(
            "kept it as {} and started a new tally",
            aside.display()
        )),
        "{warn}"
    );
    assert_eq!(
        std::fs::read_to_string(&aside).expect("kept"),
        "{\"schema\": \"llmtop.tally/1\", \"energy_j\": 12"
    );
    assert_eq!(s.tally().totals.energy_j, 0.0);
    s.add(&joules(1.0));
    s.flush(t0()).expect("flush");
    assert_eq!(read(&p).totals.energy_j, 1.0);
    // A second corrupt file the same second gets its own name.
    std::fs::write(&p, "garbage").expect("write");
    let (_s, warn) = TallyStore::open(&p, t0()).expect("open");
    assert!(
        warn.expect("reported")
            .contains("corrupt-20250601T100000Z-2")
    );
    // An unknown schema version is not ours to overwrite either.
    std::fs::write(&p, r#"{"schema":"llmtop.tally/9","energy_j":1,"generated_tokens":0,"prompt_tokens":0,"replies":0,"since":"x","updated":"x"}"#).expect("write");
    let (_s, warn) = TallyStore::open(&p, t0()).expect("open");
    assert!(
        warn.expect("reported")
            .contains("unknown schema \"llmtop.tally/9\"")
    );
    // Nothing was written since: all three unreadable files are kept, none overwritten.
    assert_eq!(
        names(dir.path()),
        [
            "tally.json.corrupt-20250601T100000Z",
            "tally.json.corrupt-20250601T100000Z-2",
            "tally.json.corrupt-20250601T100000Z-3"
        ]
    );
}

fn llmtop(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_llmtop"));
    c.env("LLMTOP_DATA_DIR", dir).env("LLMTOP_LOG", "off");
    c
}

#[test]
fn survives_kill_9_of_a_real_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let mut last = 0.0;
    // Different kill points: right after the first writes, and later in the stream.
    for (round, delay_ms) in [0u64, 3, 17, 40, 95].into_iter().enumerate() {
        let mut child = llmtop(dir.path())
            .args(["__tally-writer", "--path"])
            .arg(&p)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        // Wait until this writer has written at least once past what the last one left.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&p)
                && let Ok(t) = serde_json::from_str::<Tally>(&text)
                && t.totals.energy_j > last
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writer made no progress in round {round}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix.
        let status = child.wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");

        // Whatever moment the kill hit, the tally parses and holds one written state:
        // every round adds 1 J, 2 tokens, 1 reply, so they must agree.
        let t = read(&p);
        assert_eq!(t.totals.energy_j.fract(), 0.0);
        assert_eq!(
            t.totals.generated_tokens as f64,
            2.0 * t.totals.energy_j,
            "round {round}"
        );
        assert_eq!(t.totals.replies as f64, t.totals.energy_j, "round {round}");
        assert!(
            t.totals.energy_j > last,
            "round {round}: {} <= {last}",
            t.totals.energy_j
        );
        last = t.totals.energy_j;

        // A temp file may be left by the kill, but never under the tally's name, and the
        // next open clears it.
        let left = names(dir.path()).len() > 1;
        eprintln!(
            "round {round}: {} J, temp file left by the kill: {left}",
            t.totals.energy_j
        );
        let (s, warn) = TallyStore::open(&p, t0()).expect("reopen");
        assert_eq!(warn, None);
        assert_eq!(s.tally().totals.energy_j, last);
        assert_eq!(names(dir.path()), ["tally.json"], "round {round}");
    }
}

#[test]
fn full_disk_leaves_the_old_tally_and_no_temp() {
    // A real ENOSPC needs a small mounted filesystem (root + mount), which CI containers do
    // not allow. A file-size limit fails writes the same way (EFBIG instead of ENOSPC) through
    // the same code path: `ulimit -f 0`, with SIGXFSZ ignored so the write returns an error
    // instead of killing the process.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let (mut s, _) = TallyStore::open(&p, t0()).expect("open");
    s.add(&joules(7.0));
    s.flush(t0()).expect("flush");
    let before = std::fs::read_to_string(&p).expect("read");
    let script = format!(
        "trap '' XFSZ; ulimit -f 0 && exec \"{}\" __tally-writer --count 1 --path \"{}\"",
        env!("CARGO_BIN_EXE_llmtop"),
        p.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("LLMTOP_DATA_DIR", dir.path())
        .env("LLMTOP_LOG", "off")
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "llmtop: cannot write lifetime tally {}: File too large",
            p.display()
        )),
        "{err}"
    );
    assert!(
        err.trim_end()
            .ends_with("set LLMTOP_DATA_DIR to a writable directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&p).expect("read"), before);
    assert_eq!(names(dir.path()), ["tally.json"]);
}

#[test]
fn unwritable_place_is_one_clear_error() {
    // Root ignores permission bits, so use a path below a regular file (ENOTDIR).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let p = file.join("tally.json");
    let e = TallyStore::open(&p, t0()).expect_err("cannot read under a file");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot read lifetime tally {}: ", p.display())),
        "{e}"
    );
}
