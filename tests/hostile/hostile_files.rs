//! Hostile files through the real binary: FIFOs, devices, huge files, broken links, empty and
//! odd values where llmtop expects a small regular file or a sane number. Every case must end
//! within seconds (a FIFO must never block a read), print exactly one line that names the
//! thing, the cause and the fix, and never panic. The lifetime tally must never be replaced by
//! a worse one. The dashboard's start-up notices are checked on the app, without a terminal.

use crate::support;

use llmtop::accounting::tally::{TallyDelta, TallyError, TallyStore};
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, SourceState, discover_with};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Far more than any case needs; a FIFO read would block forever.
const LIMIT: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {path:?}"
    );
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

fn symlink(target: impl AsRef<Path>, link: &Path) {
    if let Some(d) = link.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// A home of its own: no user config, data dir, model or theme may leak in.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        Home { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn data(&self) -> PathBuf {
        self.path().join("data")
    }
    /// `~/.config/llmtop` (XDG_CONFIG_HOME is the home itself).
    fn config_dir(&self) -> PathBuf {
        self.path().join("llmtop")
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_llmtop"));
        c.args(args)
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path())
            .env("LLMTOP_DATA_DIR", self.data())
            .env("LLMTOP_LOG", "off")
            .env("OLLAMA_MODELS", self.path().join("ollama"))
            .env("HF_HUB_CACHE", self.path().join("hf"))
            .env_remove("LLMTOP_MODEL")
            .env_remove("HF_HOME")
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Outcome {
        run(self.command(args))
    }
}

/// Kills the child on every way out of a test, a failed assertion included.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Run to the end, or kill it after [`LIMIT`] and fail. Output goes to files, so a chatty
/// child never blocks on a full pipe.
fn run(mut cmd: Command) -> Outcome {
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    cmd.stdout(out.reopen().expect("reopen"))
        .stderr(err.reopen().expect("reopen"));
    let started = Instant::now();
    let mut child = Guard(cmd.spawn().expect("spawn llmtop"));
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < LIMIT,
            "llmtop {:?} still running after {LIMIT:?}: it hangs",
            cmd.get_args().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let read = |f: &tempfile::NamedTempFile| {
        let mut s = String::new();
        File::open(f.path())
            .and_then(|mut h| h.read_to_string(&mut s))
            .expect("read output");
        s
    };
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: read(&out),
        stderr: read(&err),
        elapsed,
    }
}

/// Exit `code`, within a few seconds, exactly one line on stderr holding every `needle`,
/// and nothing that looks like a crash. Returns the line.
fn one_line(o: &Outcome, code: i32, needles: &[&str]) -> String {
    assert_eq!(o.code, code, "exit code; stderr:\n{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got:\n{}", o.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "{:?} should mention {n:?}", lines[0]);
    }
    assert!(
        !o.stderr.contains("panicked") && !o.stderr.contains("backtrace"),
        "{}",
        o.stderr
    );
    lines[0].to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

// ---------------------------------------------------------------- class 2: the config file

#[test]
fn config_that_is_a_fifo_a_device_or_huge_is_refused_at_once() {
    let home = Home::new();
    let fifo = home.path().join("fifo.toml");
    mkfifo(&fifo);
    let line = one_line(&home.run(&["--config", s(&fifo), "models"]), 2, &[]);
    assert_eq!(
        line,
        format!(
            "llmtop: {}: cannot read config: is a named pipe (FIFO), not a regular file; give the path of a regular file",
            fifo.display()
        )
    );
    assert!(is_fifo(&fifo), "the FIFO is left alone");

    let line = one_line(&home.run(&["--config", "/dev/zero", "models"]), 2, &[]);
    assert_eq!(
        line,
        "llmtop: /dev/zero: cannot read config: is a character device, not a regular file; give the path of a regular file"
    );
    // A link to /dev/urandom is followed and refused for what it points at.
    let rnd = home.path().join("random.toml");
    symlink("/dev/urandom", &rnd);
    one_line(
        &home.run(&["--config", s(&rnd), "models"]),
        2,
        &["random.toml", "a character device", "regular file"],
    );

    // 10 MB of valid TOML comments: refused by size, not parsed.
    let big = home.path().join("big.toml");
    let mut f = File::create(&big).expect("create");
    let row = format!("# {}\n", "x".repeat(98));
    for _ in 0..100_000 {
        f.write_all(row.as_bytes()).expect("write");
    }
    drop(f);
    let line = one_line(&home.run(&["--config", s(&big), "models"]), 2, &[]);
    assert_eq!(
        line,
        format!(
            "llmtop: {}: cannot read config: larger than 1 MiB (the limit for this file); check that this is the right file",
            big.display()
        )
    );
}

#[test]
fn default_config_that_is_a_fifo_or_a_dangling_link_is_named() {
    let home = Home::new();
    let cfg = home.config_dir().join("config.toml");
    std::fs::create_dir_all(home.config_dir()).expect("mkdir");
    mkfifo(&cfg);
    one_line(
        &home.run(&["models"]),
        2,
        &[s(&cfg), "named pipe (FIFO)", "not a regular file"],
    );
    std::fs::remove_file(&cfg).expect("rm");
    let gone = home.path().join("dotfiles/llmtop.toml");
    symlink(&gone, &cfg);
    let line = one_line(&home.run(&["models"]), 2, &[]);
    assert_eq!(
        line,
        format!(
            "llmtop: {}: config file is a link to {}, which does not exist; fix or remove the link",
            cfg.display(),
            gone.display()
        )
    );
}

// ------------------------------------------------------ class 2: themes, run cards, models

#[test]
fn theme_that_is_a_fifo_is_refused_by_name() {
    let home = Home::new();
    let theme = home.config_dir().join("themes/night.toml");
    std::fs::create_dir_all(theme.parent().expect("parent")).expect("mkdir");
    mkfifo(&theme);
    // The theme is checked before the terminal is touched, so no TTY is needed.
    let line = one_line(&home.run(&["--demo", "--theme", "night"]), 1, &[]);
    assert_eq!(
        line,
        format!(
            "llmtop: {}: cannot read theme: is a named pipe (FIFO), not a regular file; give the path of a regular file",
            theme.display()
        )
    );
}

#[test]
fn run_cards_that_are_fifos_or_devices_are_refused_each_on_its_line() {
    let home = Home::new();
    let fifo = home.path().join("card.json");
    mkfifo(&fifo);
    let zero = home.path().join("zero.json");
    symlink("/dev/zero", &zero);
    let o = home.run(&["compare", s(&fifo), s(&zero)]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(5), "took {:?}", o.elapsed);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!(
                "llmtop compare: {}: cannot read run card: is a named pipe (FIFO), not a regular file; give the path of a regular file",
                fifo.display()
            ),
            format!(
                "llmtop compare: {}: cannot read run card: is a character device, not a regular file; give the path of a regular file",
                zero.display()
            ),
        ]
    );
    assert!(!o.stderr.contains("panicked"));
    // A card far larger than any real one is refused by size.
    let big = home.path().join("big.json");
    let f = File::create(&big).expect("create");
    f.set_len(17 << 20).expect("sparse 17 MiB");
    let o = home.run(&["compare", s(&big)]);
    assert!(
        o.stderr.lines().next().is_some_and(|l| l
            == format!(
                "llmtop compare: {}: cannot read run card: larger than 16 MiB (the limit for this file); check that this is the right file",
                big.display()
            )),
        "{}",
        o.stderr
    );
}

#[test]
fn model_that_is_a_fifo_is_not_called_empty() {
    let home = Home::new();
    let fifo = home.path().join("model.gguf");
    mkfifo(&fifo);
    let line = one_line(
        &home.run(&["bench", "--model", s(&fifo), "--reps", "1"]),
        1,
        &[],
    );
    assert_eq!(
        line,
        format!(
            "llmtop: {}: is a named pipe (FIFO), not a regular file (pass a .gguf model file)",
            fifo.display()
        )
    );
    let line = one_line(
        &home.run(&["bench", "--model", "/dev/zero", "--reps", "1"]),
        1,
        &[],
    );
    assert_eq!(
        line,
        "llmtop: /dev/zero: is a character device, not a regular file (pass a .gguf model file)"
    );
}

// ------------------------------------------------------------------ class 2: sysfs readers

/// A sysfs tree with a FIFO or a /dev/zero link in each reader's path.
fn hostile_sysfs(root: &Path) {
    let rapl = root.join("class/powercap");
    write(&rapl.join("intel-rapl:0/name"), "package-0\n");
    mkfifo(&rapl.join("intel-rapl:0/energy_uj"));
    write(&rapl.join("intel-rapl:1/name"), "package-1\n");
    symlink("/dev/zero", &rapl.join("intel-rapl:1/energy_uj"));
    let hw = root.join("class/hwmon");
    std::fs::create_dir_all(hw.join("hwmon0")).expect("mkdir");
    mkfifo(&hw.join("hwmon0/name"));
    write(&hw.join("hwmon0/temp1_input"), "42000\n");
    write(&hw.join("hwmon1/name"), "coretemp\n");
    mkfifo(&hw.join("hwmon1/temp1_input"));
    write(&hw.join("hwmon2/name"), "nct6775\n");
    symlink("/dev/zero", &hw.join("hwmon2/temp1_input"));
    let bat = root.join("class/power_supply/BAT0");
    write(&bat.join("type"), "Battery\n");
    write(&bat.join("status"), "Discharging\n");
    mkfifo(&bat.join("power_now"));
}

#[test]
fn sensors_on_fifos_and_devices_finish_and_report_them_unreadable() {
    let home = Home::new();
    let root = home.path().join("sys");
    hostile_sysfs(&root);
    let o = home.run(&["sensors", "--sysfs-root", s(&root)]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.elapsed < Duration::from_secs(2), "took {:?}", o.elapsed);
    let line = |needle: &str| {
        o.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", o.stdout))
    };
    let zone = |n: u32| root.join(format!("class/powercap/intel-rapl:{n}/energy_uj"));
    assert_eq!(
        line("rapl intel-rapl:0"),
        format!(
            "rapl intel-rapl:0 (unreadable): package-0: {}: not a sysfs attribute: a named pipe (FIFO), not a regular file",
            zone(0).display()
        )
    );
    assert_eq!(
        line("rapl intel-rapl:1"),
        format!(
            "rapl intel-rapl:1 (unreadable): package-1: {}: not a sysfs attribute: a character device, not a regular file",
            zone(1).display()
        )
    );
    assert_eq!(
        line("hwmon hwmon0"),
        "hwmon hwmon0 (unreadable): no readable `name` file; skipped"
    );
    assert!(line("hwmon hwmon1 (coretemp) (unreadable)").contains("temp1 (unreadable)"));
    assert!(line("hwmon hwmon2 (nct6775) (unreadable)").contains("temp1 (unreadable)"));
    assert_eq!(
        line("battery BAT0"),
        "battery BAT0 (unreadable): neither power_now nor current_now x voltage_now is readable"
    );
    // Nothing was read from the FIFOs: they are still there, untouched.
    assert!(is_fifo(&zone(0)));
}

#[test]
fn serve_starts_on_a_tree_of_fifos() {
    let home = Home::new();
    let root = home.path().join("sys");
    hostile_sysfs(&root);
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let mut cmd = home.command(&[
        "serve",
        "--sysfs-root",
        s(&root),
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    cmd.stdout(Stdio::null())
        .stderr(err.reopen().expect("reopen"));
    let started = Instant::now();
    let mut child = Guard(cmd.spawn().expect("spawn"));
    loop {
        let text = std::fs::read_to_string(err.path()).expect("read");
        if text.contains("serving Prometheus metrics on http://127.0.0.1:") {
            break;
        }
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "serve ended: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "serve blocked before serving: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// --------------------------------------------------------------------- the lifetime tally

#[test]
fn tally_that_is_a_fifo_a_directory_or_a_device_is_one_line_and_left_alone() {
    let home = Home::new();
    let fifo = home.data().join("tally.json");
    mkfifo(&fifo);
    let line = one_line(
        &home.run(&["__tally-writer", "--path", s(&fifo), "--count", "1"]),
        1,
        &[],
    );
    assert_eq!(
        line,
        format!(
            "llmtop: lifetime tally {} is a named pipe (FIFO), not a file; move it away (a new tally is then started) or set LLMTOP_DATA_DIR to another directory",
            fifo.display()
        )
    );
    assert!(is_fifo(&fifo), "not moved, not replaced");

    let dir = home.path().join("tally-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    one_line(
        &home.run(&["__tally-writer", "--path", s(&dir), "--count", "1"]),
        1,
        &[
            "lifetime tally",
            s(&dir),
            "is a directory, not a file",
            "move it away",
        ],
    );
    assert!(dir.is_dir());

    let zero = home.path().join("zero.json");
    symlink("/dev/zero", &zero);
    one_line(
        &home.run(&["__tally-writer", "--path", s(&zero), "--count", "1"]),
        1,
        &["zero.json", "is a character device, not a file"],
    );
}

fn t0() -> jiff::Timestamp {
    "2025-06-01T10:00:00Z".parse().expect("time")
}

fn joules(j: f64) -> TallyDelta {
    TallyDelta {
        energy_j: j,
        ..TallyDelta::default()
    }
}

#[test]
fn tally_refuses_non_finite_and_negative_increments_and_keeps_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let (mut store, warn) = TallyStore::open(&p, t0()).expect("open");
    assert_eq!(warn, None);
    assert!(store.add(&TallyDelta {
        energy_j: 100.0,
        generated_tokens: 5,
        replies: 1,
        cost: [("EUR".to_string(), 0.01)].into(),
        co2_g: 2.0,
        ..TallyDelta::default()
    }));
    store.flush(t0()).expect("flush");
    let before = std::fs::read(&p).expect("read");

    // A plug reporting 1.8e308 W: an infinite delta, NaN, a negative one, a bad cost or CO2.
    let bad = [
        joules(f64::INFINITY),
        joules(f64::NAN),
        joules(-5.0),
        TallyDelta {
            co2_g: f64::NAN,
            ..joules(1.0)
        },
        TallyDelta {
            cost: [("EUR".to_string(), f64::INFINITY)].into(),
            ..joules(1.0)
        },
    ];
    for d in &bad {
        assert!(!store.add(d), "{d:?} must be refused");
    }
    assert_eq!(store.rejected(), 5);
    assert!(!store.tick(100.0, t0()).expect("tick"), "nothing to write");
    store.flush(t0()).expect("flush");
    assert_eq!(std::fs::read(&p).expect("read"), before, "byte-identical");
    assert_eq!(store.tally().totals.energy_j, 100.0);

    // Finite but absurd: counted while the total stays finite, refused once it would not.
    assert!(store.add(&joules(1.7e308)));
    assert!(!store.add(&joules(1.7e308)));
    store.flush(t0()).expect("flush");
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
    assert_eq!(t["energy_j"].as_f64(), Some(100.0 + 1.7e308));
    assert_eq!(t["generated_tokens"].as_u64(), Some(5));

    // A second writer whose sum with the file would overflow: the file is kept as it was.
    let q = dir.path().join("shared.json");
    let (mut a, _) = TallyStore::open(&q, t0()).expect("a");
    let (mut b, _) = TallyStore::open(&q, t0()).expect("b");
    assert!(a.add(&joules(1.0e308)));
    a.flush(t0()).expect("a writes");
    let after_a = std::fs::read(&q).expect("read");
    // b's own view (from before a's write) has room; the file no longer does.
    assert!(b.add(&joules(9.0e307)));
    let e = b.flush(t0()).expect_err("would be infinite");
    assert!(matches!(e, TallyError::NotFinite { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "lifetime tally {} not updated: the new total would be energy_j = inf; the file is kept as it was",
            q.display()
        )
    );
    assert_eq!(std::fs::read(&q).expect("read"), after_a, "byte-identical");
}

#[test]
fn tally_with_a_negative_or_empty_file_is_kept_aside_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("tally.json");
    let negative = r#"{"schema":"llmtop.tally/1","energy_j":-5,"generated_tokens":0,"prompt_tokens":0,"replies":0,"since":"x","updated":"x"}"#;
    std::fs::write(&p, negative).expect("write");
    let (_s, warn) = TallyStore::open(&p, t0()).expect("open");
    let aside = dir.path().join("tally.json.corrupt-20250601T100000Z");
    assert_eq!(
        warn.as_deref(),
        Some(
            format!(
                "lifetime tally {} was unreadable (energy_j = -5); kept it as {} and started a new tally",
                p.display(),
                aside.display()
            )
            .as_str()
        )
    );
    assert_eq!(std::fs::read_to_string(&aside).expect("kept"), negative);
    std::fs::write(&p, "").expect("write");
    let (_s, warn) = TallyStore::open(&p, t0()).expect("open");
    assert!(
        warn.as_deref()
            .is_some_and(|w| w.contains("(empty file)") && w.contains("corrupt-20250601T100000Z-2")),
        "{warn:?}"
    );
}

// ------------------------------------------------- class 7: the dashboard's start-up notices

/// A plug that answers with junk, once per connection, until the test ends.
fn junk_plug() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\nnot json!",
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn dashboard_names_a_moved_tally_and_every_unavailable_source() {
    use llmtop::dashboard::state::Role;
    let dir = tempfile::tempdir().expect("tempdir");
    // A future-schema tally: moved aside, and the dashboard says where to.
    let p = dir.path().join("tally.json");
    std::fs::write(&p, r#"{"schema":"llmtop.tally/9"}"#).expect("write");
    let (_store, note) = TallyStore::open(&p, t0()).expect("open");
    let aside = dir.path().join("tally.json.corrupt-20250601T100000Z");
    assert!(aside.is_file());

    // One plug that refuses connections, one that answers junk; an empty sysfs tree.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let junk = junk_plug();
    let cfg = llmtop::config::parse(
        &format!(
            "[[sensors.plugs]]\nkind = \"shelly-gen2\"\nurl = \"{closed}\"\n\n\
             [[sensors.plugs]]\nkind = \"shelly-gen2\"\nurl = \"{junk}\"\n"
        ),
        Path::new("config.toml"),
    )
    .expect("config");
    let stat = dir.path().join("stat");
    std::fs::write(
        &stat,
        crate::proc_files::proc_stat("cpu  100 0 100 800 0 0 0 0 0 0"),
    )
    .expect("stat");
    let d = discover_with(
        &cfg.sensors,
        &DiscoverOptions {
            sysfs: Sysfs::new(dir.path().join("sys")),
            nvml: false,
            system: false,
            probe_plugs: true,
            proc_stat: stat,
        },
    );
    let plugs: Vec<_> = d
        .statuses
        .iter()
        .filter(|s| s.device.starts_with(&closed) || s.device.starts_with(&junk))
        .collect();
    assert_eq!(plugs.len(), 2, "{:?}", d.statuses);
    assert!(plugs.iter().all(|s| s.state == SourceState::Unreadable));

    let mut app = support::new_app(100, 40);
    llmtop::dashboard::report_startup(&mut app, note, &d.statuses);
    let status = app.status.as_ref().expect("status").text.clone();
    assert!(
        status.starts_with(&format!("lifetime tally {} was unreadable (", p.display()))
            && status.ends_with(&format!(
                "kept it as {} and started a new tally",
                aside.display()
            )),
        "{status}"
    );
    // The chat keeps what the status line soon loses: the tally and both plugs.
    let notices: Vec<&str> = app
        .messages
        .iter()
        .filter(|m| m.role == Role::Notice)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert_eq!(notices[0], status);
    assert!(
        notices[1].starts_with(&format!("sensor: plug {closed}")),
        "{notices:?}"
    );
    assert!(
        notices[1].contains("(unreadable): unreachable now"),
        "{notices:?}"
    );
    assert!(
        notices[2].starts_with(&format!("sensor: plug {junk}")),
        "{notices:?}"
    );
    // The F1 help lists the tally, both plugs, and the sources not found (RAPL, hwmon).
    let notes = &app.startup_notes;
    assert_eq!(notes[0], status);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("sensor: rapl ") && n.contains("(not found)"))
    );
    assert!(notes.iter().any(|n| n.starts_with("sensor: hwmon ")));
    app.show_help = true;
    let theme = llmtop::dashboard::theme::Theme::dark();
    let buf = llmtop::dashboard::ui::render_buffer(&app, &theme, 100, 40);
    let screen: String = buf
        .content()
        .chunks(usize::from(buf.area.width))
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect();
    assert!(
        screen.contains("Not available (see also the log):"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("sensor: plug {closed}")),
        "{screen}"
    );

    // With nothing wrong, nothing is said.
    let mut quiet = support::new_app(80, 24);
    llmtop::dashboard::report_startup(&mut quiet, None, &[]);
    assert_eq!(quiet.status, None);
    assert!(quiet.startup_notes.is_empty() && quiet.messages.is_empty());
}

// ------------------------------------------------------------- class 8: unclear messages

#[test]
fn negative_numbers_for_numeric_flags_say_what_is_wrong() {
    let home = Home::new();
    let cases: [(&[&str], &str); 7] = [
        (
            &["bench", "--threads", "-5"],
            "llmtop: --threads -5: must be a whole number of 1 or more",
        ),
        (
            &["bench", "-t", "-5"],
            "llmtop: --threads -5: must be a whole number of 1 or more",
        ),
        (
            &["bench", "--n-ctx", "-1"],
            "llmtop: --n-ctx -1: must be a whole number of 1 or more",
        ),
        (
            &["bench", "--reps", "-3"],
            "llmtop: --reps -3: must be a whole number of 1 or more",
        ),
        (
            &["bench", "--seed", "-1"],
            "llmtop: --seed -1: must be a whole number of 0 or more",
        ),
        (
            &["--gpu-layers", "-2", "--demo"],
            "llmtop: --gpu-layers -2: must be a whole number of 0 or more",
        ),
        (
            &["bench", "--threads", "2.5"],
            "llmtop: --threads 2.5: must be a whole number of 1 or more",
        ),
    ];
    for (args, want) in cases {
        let line = one_line(&home.run(args), 2, &[]);
        assert_eq!(line, want, "{args:?}");
    }
    // A negative float reaches the range check that explains it.
    let line = one_line(
        &home.run(&[
            "bench",
            "--model",
            "/nonexistent.gguf",
            "--temperature",
            "-1",
        ]),
        1,
        &[],
    );
    assert_eq!(
        line,
        "llmtop: --temperature -1: must be between 0 (greedy) and 5"
    );
    let line = one_line(&home.run(&["compare", "--years", "-2", "a.json"]), 1, &[]);
    assert!(line.starts_with("llmtop: --years = -2"), "{line}");
}

#[test]
fn compare_without_files_names_the_missing_argument() {
    let home = Home::new();
    let line = one_line(&home.run(&["compare"]), 2, &[]);
    assert_eq!(
        line,
        "llmtop: missing <FILE|URL>... (usage: llmtop compare <FILE|URL>...)"
    );
}

#[test]
fn config_values_are_named_by_key_and_line() {
    let home = Home::new();
    let cfg = home.path().join("c.toml");
    let cases = [
        (
            "[model]\nthreads = 0\n",
            "2: model.threads: 0 must be at least 1; remove the key to use all physical cores",
        ),
        (
            "[model]\n# the context\nn_ctx = 0\n",
            "3: model.n_ctx: 0 must be at least 1; remove the key to use the model's context (up to 4096)",
        ),
        (
            "[sensors]\nidle_window_s = -1\n",
            "2: sensors.idle_window_s: -1 is out of range; use 0 (no idle baseline) to 3600 seconds (default 10)",
        ),
        (
            "[sensors]\nidle_window_s = nan\n",
            "2: sensors.idle_window_s: NaN is out of range; use 0 (no idle baseline) to 3600 seconds (default 10)",
        ),
        (
            "[model]\npath = \"\"\n",
            "2: model.path: is empty; give the path of a GGUF file, or remove the key to search for models",
        ),
    ];
    for (text, want) in cases {
        write(&cfg, text);
        let line = one_line(&home.run(&["--config", s(&cfg), "models"]), 2, &[]);
        assert_eq!(line, format!("llmtop: {}:{want}", cfg.display()), "{text}");
    }
}

#[test]
fn empty_llmtop_model_and_a_data_dir_that_is_a_file_are_named() {
    let home = Home::new();
    let line = one_line(
        &home.run_with(&["bench", "--reps", "1"], &[("LLMTOP_MODEL", "")]),
        1,
        &[],
    );
    assert_eq!(
        line,
        "llmtop: LLMTOP_MODEL is set but empty; set it to a GGUF file (LLMTOP_MODEL=/path/model.gguf) or unset it"
    );
    let file = home.path().join("not-a-dir");
    write(&file, "x");
    let line = one_line(
        &home.run_with(&["models"], &[("LLMTOP_DATA_DIR", s(&file))]),
        2,
        &[],
    );
    assert_eq!(
        line,
        format!(
            "llmtop: LLMTOP_DATA_DIR={}: not a directory; point LLMTOP_DATA_DIR at a directory (it is created if missing) or unset it",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "x");
}

impl Home {
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run(c)
    }
}

#[test]
fn models_lists_broken_manifests_dangling_links_and_fifos_with_the_reason() {
    let home = Home::new();
    let lib = home
        .path()
        .join("ollama/manifests/registry.ollama.ai/library");
    write(&lib.join("junk/latest"), "{not json");
    write(
        &lib.join("gone/7b"),
        r#"{"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:dead"}]}"#,
    );
    symlink(
        "../../blobs/feed",
        &home
            .path()
            .join("hf/models--org--tiny/snapshots/rev1/tiny-Q4_0.gguf"),
    );
    let models = home.data().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    mkfifo(&models.join("pipe.gguf"));
    let o = home.run(&["models"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let unusable: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("^ unusable: "))
        .collect();
    assert_eq!(
        unusable,
        [
            "is a named pipe (FIFO), not a regular file (pass a .gguf model file)".to_string(),
            format!(
                "model blob {} is missing; run `ollama pull` for it again, or `ollama rm` it",
                home.path().join("ollama/blobs/sha256-dead").display()
            ),
            "manifest is not valid JSON (key must be a string at line 1 column 2); run `ollama pull` for it again, or `ollama rm` it".to_string(),
            "broken link to ../../blobs/feed (the file it points to is gone; download the model again)".to_string(),
        ],
        "{}",
        o.stdout
    );
    for name in ["pipe ", "gone:7b", "junk:latest", "tiny-Q4_0"] {
        assert!(o.stdout.contains(name), "{name} in:\n{}", o.stdout);
    }
}

/// A GGUF header llmtop reads but llama.cpp refuses (an architecture it does not know).
fn unknown_arch_gguf(path: &Path) {
    let mut v = Vec::new();
    v.extend_from_slice(b"GGUF");
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&1u64.to_le_bytes());
    let key = "general.architecture";
    v.extend_from_slice(&(key.len() as u64).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&8u32.to_le_bytes());
    let arch = "no-such-arch";
    v.extend_from_slice(&(arch.len() as u64).to_le_bytes());
    v.extend_from_slice(arch.as_bytes());
    std::fs::write(path, v).expect("write gguf");
}

#[test]
fn llama_cpp_refusal_names_the_log_file() {
    let home = Home::new();
    let m = home.path().join("odd.gguf");
    unknown_arch_gguf(&m);
    let o = home.run_with(
        &["bench", "--model", s(&m), "--reps", "1", "--no-idle"],
        &[("LLMTOP_LOG", "info")],
    );
    let log = home.data().join("llmtop.log");
    assert_eq!(o.code, 1, "{}", o.stderr);
    // bench announces itself first; the refusal is the one `llmtop:` line.
    let errors: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("llmtop:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", o.stderr);
    assert!(
        errors[0].contains("llama.cpp could not load the model")
            && errors[0].ends_with(&format!("see {} for its reason", log.display())),
        "{}",
        errors[0]
    );
    assert!(log.is_file(), "the log it names exists");
    assert!(!o.stderr.contains("panicked"));
}
