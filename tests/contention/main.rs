//! What needs the CPUs to itself: CPU contention through the real binary on the real model (a
//! spinning process started beside generation is marked in the header within 2 s and the mark
//! leaves within 2 s of its end; no mark on a quiet machine; bench refuses to report under
//! contention unless asked), and the memory-bandwidth probe against likwid-bench.
//!
//! A binary of its own, its tests one at a time: any other work running beside them (tests of
//! the same binary run in parallel) is real contention, and would be marked or measured.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/skip.rs"]
mod skip;
#[path = "../tmux/mod.rs"]
mod tmux;

mod bandwidth;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tmux::Tmux;

/// One test at a time: each is the other's contention.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A process that keeps one CPU busy until killed.
struct Spinner(Child);

impl Spinner {
    fn start() -> Spinner {
        Spinner(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("start a spinning shell"),
        )
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The header row of the screen.
fn header(screen: &str) -> String {
    screen.lines().next().unwrap_or_default().to_string()
}

/// The dashboard on the real model, every CPU given to llama.cpp (the case that collapses).
fn dashboard(name: &str, data: &Path) -> Tmux {
    let script = format!(
        "LLMTOP_DATA_DIR='{}' exec '{}' --model '{}' --threads {} --max-tokens 100000 --temperature 0",
        data.display(),
        env!("CARGO_BIN_EXE_llmtop"),
        common::model_path().display(),
        cpus()
    );
    let tmux = Tmux::start(name, 150, 40, &script);
    tmux.wait_for("model loaded", Duration::from_secs(120), |s| {
        s.contains("● idle")
    });
    tmux
}

/// A prompt the default model answers at length: at temperature 0 it runs to the token limit
/// (3000 tokens through llama-server), where "count to 5000" stops after 30 lines (191 tokens,
/// under 2 s: the reply would end before the spinner starts).
const PROMPT: &str = "Repeat the word hello 3000 times.";

/// Poll the header every 100 ms until `pred` holds: how long it took, or `None` after `limit`.
/// (Each look is a tmux client and a redraw: runnable threads themselves.)
fn time_until(tmux: &Tmux, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred(&header(&tmux.screen())) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_spinning_process_beside_generation_is_marked_and_unmarked_within_2_s() {
    let _one = serial();
    let data = tempfile::tempdir().expect("tempdir");
    let tmux = dashboard("spin", data.path());
    tmux.type_text(PROMPT);
    tmux.keys(&["Enter"]);
    tmux.wait_for("generation", Duration::from_secs(60), |s| {
        header(s).contains("● generating") && header(s).contains("GB/s")
    });
    let pid = pane_pid(&tmux);
    // Two seconds alone first: the session's uncontended rate. Others already running here
    // (a build) are contention too, and the mark is right: nothing to prove then.
    let busiest = busiest_second(pid, Duration::from_secs(2));
    if busiest >= 0.5 {
        skip::skipped(&format!(
            "other programs kept {busiest:.2} threads runnable before the spinner"
        ));
        tmux.keys(&["C-q"]);
        return;
    }
    assert!(!header(&tmux.screen()).contains("contended"));

    let spinner = Spinner::start();
    let appeared = time_until(&tmux, Duration::from_secs(5), |h| h.contains("contended:"));
    let screen = tmux.screen();
    let appeared = appeared.unwrap_or_else(|| panic!("no contention mark in 5 s:\n{screen}"));
    assert!(
        appeared <= Duration::from_secs(2),
        "marked after {appeared:?}"
    );
    let h = header(&screen);
    assert!(
        h.contains("contended: 1 other runnable thread, generation −"),
        "{h}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(header(&tmux.screen()).contains("● generating"));

    drop(spinner);
    let left = time_until(&tmux, Duration::from_secs(5), |h| !h.contains("contended"));
    let screen = tmux.screen();
    let Some(left) = left else {
        let busiest = busiest_second(pid, Duration::from_secs(1));
        if busiest >= 0.5 {
            skip::skipped(&format!(
                "the mark's end: other programs kept {busiest:.2} threads runnable"
            ));
            return;
        }
        panic!("the mark stayed 5 s after the spinner:\n{screen}");
    };
    assert!(left <= Duration::from_secs(2), "left after {left:?}");
    // Still generating: the mark left because the spinner did, not because the reply ended.
    assert!(header(&screen).contains("● generating"), "{screen}");
    tmux.keys(&["Escape"]);
    // The reply line keeps what happened to it.
    let screen = tmux.wait_for("the reply's lines", Duration::from_secs(30), |s| {
        s.contains("● cancelled")
    });
    assert!(
        screen.contains("contended: 1 other runnable thread, generation −"),
        "{screen}"
    );
    tmux.keys(&["C-q"]);
}

/// Other programs' runnable threads as this test sees them: `procs_running` less llmtop's
/// runnable threads and this thread (running as it reads).
fn others_now(llmtop: u32) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let machine: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("procs_running "))?
        .trim()
        .parse()
        .ok()?;
    let own = std::fs::read_dir(format!("/proc/{llmtop}/task"))
        .ok()?
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let close = s.rfind(')')?;
                    s[close + 1..].split_whitespace().next().map(str::to_string)
                })
                .as_deref()
                == Some("R")
        })
        .count() as f64;
    Some(machine - own - 1.0)
}

/// llmtop's pid: the pane's process (the script `exec`s it).
fn pane_pid(tmux: &Tmux) -> u32 {
    tmux.cmd(&["display", "-p", "-t", "e2e", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("llmtop's pid")
}

/// The highest one-second mean of [`others_now`] over `span`, sampled at 20 Hz.
fn busiest_second(llmtop: u32, span: Duration) -> f64 {
    let start = Instant::now();
    let mut window: std::collections::VecDeque<(Instant, f64)> = Default::default();
    let mut busiest: f64 = 0.0;
    while start.elapsed() < span {
        if let Some(o) = others_now(llmtop) {
            let now = Instant::now();
            window.push_back((now, o));
            while window
                .front()
                .is_some_and(|(t, _)| now - *t > Duration::from_secs(1))
            {
                window.pop_front();
            }
            if window.len() >= 10 {
                busiest =
                    busiest.max(window.iter().map(|(_, o)| o).sum::<f64>() / window.len() as f64);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    busiest
}

#[test]
fn no_mark_during_five_quiet_runs() {
    let _one = serial();
    let data = tempfile::tempdir().expect("tempdir");
    let tmux = dashboard("quiet", data.path());
    let pid = pane_pid(&tmux);
    let free = 0.0; // every CPU is llama.cpp's
    let (mut quiet, mut busy) = (0, 0);
    for _ in 0..10 {
        if quiet == 5 {
            break;
        }
        tmux.keys(&["C-l"]);
        tmux.type_text(PROMPT);
        tmux.keys(&["Enter"]);
        tmux.wait_for("generation", Duration::from_secs(60), |s| {
            header(s).contains("● generating")
        });
        // Three seconds of generation, this machine's runnable threads read at 20 Hz by the
        // detector's own rule (a second's mean against the free CPUs). The screen is not
        // looked at meanwhile: each look is a tmux client and a redraw, runnable threads beside
        // llama.cpp on every CPU, which the detector would rightly count. The reply line keeps
        // any mark the reply had, so it is read once the reply is cancelled.
        let start = Instant::now();
        let mut window: std::collections::VecDeque<(Instant, f64)> = Default::default();
        let mut busiest: f64 = 0.0;
        while start.elapsed() < Duration::from_secs(3) {
            if let Some(o) = others_now(pid) {
                let now = Instant::now();
                window.push_back((now, o));
                while window
                    .front()
                    .is_some_and(|(t, _)| now - *t > Duration::from_secs(1))
                {
                    window.pop_front();
                }
                if window.len() >= 10 {
                    let mean = window.iter().map(|(_, o)| o).sum::<f64>() / window.len() as f64;
                    busiest = busiest.max(mean);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tmux.keys(&["Escape"]);
        let screen = tmux.wait_for("the reply cancelled", Duration::from_secs(30), |s| {
            s.contains("● cancelled")
        });
        let marked = screen
            .lines()
            .find(|l| l.contains("contended"))
            .map(str::to_string);
        if busiest >= free + 0.5 {
            // Something else ran here: a mark would be right, so this run proves nothing.
            busy += 1;
            eprintln!("run not quiet: other programs kept {busiest:.2} threads runnable");
            continue;
        }
        assert_eq!(
            marked, None,
            "marked while other programs kept at most {busiest:.2} threads runnable"
        );
        quiet += 1;
    }
    tmux.keys(&["C-q"]);
    if quiet < 5 {
        skip::skipped(&format!(
            "only {quiet} of 10 runs were quiet ({busy} busy); run on a quiet machine"
        ));
    }
}

#[test]
fn bench_refuses_under_contention_unless_allowed() {
    let _one = serial();
    let data = tempfile::tempdir().expect("tempdir");
    let json = data.path().join("bench.json");
    let threads = cpus().to_string();
    let bench = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args([
                "bench",
                "--reps",
                "1",
                "--no-warmup",
                "--no-idle",
                "--max-tokens",
                "12",
                "--threads",
                &threads,
                "--prompt",
                PROMPT,
            ])
            .arg("--model")
            .arg(common::model_path())
            .args(extra)
            .env("LLMTOP_DATA_DIR", data.path())
            .output()
            .expect("run bench")
    };
    // Measure the memory first, so the probe is not what the spinner slows.
    let quiet = bench(&["--json", json.to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    if !quiet.status.success() {
        assert!(stderr.contains("refusing to report"), "{stderr}");
        skip::skipped(&format!(
            "the quiet bench: this machine was busy ({stderr})"
        ));
    }
    let _spinner = Spinner::start();
    let refused = bench(&["--json", json.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("refusing to report: run 1 was generated while other programs took the CPUs")
            && last.contains("--allow-contention"),
        "{err}"
    );
    assert!(refused.stdout.is_empty(), "no table under contention");
    let _ = std::fs::remove_file(&json);

    let allowed = bench(&["--allow-contention", "--json", json.to_str().expect("utf8")]);
    let err = String::from_utf8_lossy(&allowed.stderr);
    assert!(allowed.status.success(), "{err}");
    assert!(
        err.contains("bench:   contended: ") && err.contains("reported as --allow-contention asks"),
        "{err}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("JSON");
    assert_eq!(r["contended"], true);
    let c = &r["runs"][0]["contention"][0];
    assert!(c["others_max"].as_f64().is_some_and(|o| o >= 0.5), "{c}");
    assert_eq!(c["free_cpus"], 0);
    assert!(
        String::from_utf8_lossy(&allowed.stdout).contains("run 1: contended: "),
        "the table says so too"
    );
}
