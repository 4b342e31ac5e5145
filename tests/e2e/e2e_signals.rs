//! End to end in tmux with `--demo` (scripted model and sensors): SIGTERM and SIGHUP flush the
//! lifetime tally and leave a restored terminal; so do they for the other terminal modes
//! (`--remote`, `--proxy`, `sensors --watch`), which run on the same loop; `--metrics-addr`
//! serves Prometheus metrics while the dashboard runs.
use crate::tmux;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use tmux::Tmux;

/// Start `llmtop --demo <extra>` with its own data and config dirs; the shell writes llmtop's
/// pid to `<dir>/pid` and prints its exit status after it, and keeps the pane open.
fn start_demo(name: &str, dir: &Path, extra: &str) -> (Tmux, u32) {
    let script = format!(
        "cd '{d}' && sh -c \"echo \\$\\$ > pid; LLMTOP_DATA_DIR='{d}/data' XDG_CONFIG_HOME='{d}/config' exec '{bin}' --demo {extra}\"; echo LLMTOP-EXIT:$?; sleep 60",
        d = dir.display(),
        bin = env!("CARGO_BIN_EXE_llmtop"),
    );
    let tmux = Tmux::start(name, 100, 30, &script);
    tmux.wait_for("the demo model loaded", Duration::from_secs(20), |s| {
        s.contains("● idle")
    });
    let pid = std::fs::read_to_string(dir.join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    (tmux, pid)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn signal_flushes_and_restores(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tmux, pid) = start_demo(&signal.to_lowercase(), dir.path(), "");
    // Let a few samples (4 Hz) add energy to the session.
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let screen = tmux.wait_for("llmtop to exit", Duration::from_secs(15), |s| {
        s.contains("LLMTOP-EXIT:")
    });
    assert!(
        screen.contains("LLMTOP-EXIT:0"),
        "clean exit on {signal}: {screen}"
    );
    assert!(!alive(pid), "process {pid} still running");
    assert_eq!(
        tmux.terminal_flags(),
        "0 1",
        "terminal restored on {signal}"
    );
    let tally: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("data/tally.json")).expect("tally.json written"),
    )
    .expect("tally JSON");
    assert_eq!(tally["schema"], "llmtop.tally/1");
    // The demo machine draws at least 32 W: over a second and more that is well above 30 J.
    let j = tally["energy_j"].as_f64().expect("energy_j");
    assert!(j > 30.0, "energy in the tally: {j}");
}

#[test]
fn sigterm_flushes_the_tally_and_restores_the_terminal() {
    signal_flushes_and_restores("TERM");
}

#[test]
fn sighup_flushes_the_tally_and_restores_the_terminal() {
    signal_flushes_and_restores("HUP");
}

/// Every other terminal mode, ended by `signal` while its terminal lives: exit status 0 and
/// the terminal put back (main screen, cursor shown).
fn other_modes_restore_the_terminal(signal: &str) {
    let serve = crate::lifecycle::Serve::start();
    let fixture = crate::lifecycle::fixture();
    let modes = [
        (
            "remote",
            format!("--remote http://{}", serve.1),
            "1 of 1 hosts up",
        ),
        (
            "proxy",
            format!(
                "--proxy --listen 127.0.0.1:0 --upstream http://127.0.0.1:9 --sysfs-root '{fixture}'"
            ),
            "Requests",
        ),
        (
            "sensors",
            format!("sensors --watch --sysfs-root '{fixture}'"),
            "llmtop sensors (sysfs root",
        ),
    ];
    for (name, args, ready) in modes {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = format!(
            "cd '{d}' && sh -c \"echo \\$\\$ > pid; LLMTOP_DATA_DIR='{d}/data' XDG_CONFIG_HOME='{d}/config' exec '{bin}' {args}\"; echo LLMTOP-EXIT:$?; sleep 60",
            d = dir.path().display(),
            bin = env!("CARGO_BIN_EXE_llmtop"),
        );
        let tmux = Tmux::start(
            &format!("{name}-{}", signal.to_lowercase()),
            100,
            30,
            &script,
        );
        tmux.wait_for(ready, Duration::from_secs(30), |s| s.contains(ready));
        assert!(
            tmux.terminal_flags().starts_with("1 "),
            "{name}: the TUI is on the alternate screen"
        );
        let pid = std::fs::read_to_string(dir.path().join("pid")).expect("pid file");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success());
        let screen = tmux.wait_for("llmtop to exit", Duration::from_secs(5), |s| {
            s.contains("LLMTOP-EXIT:")
        });
        assert!(
            screen.contains("LLMTOP-EXIT:0"),
            "{name}: clean exit on {signal}: {screen}"
        );
        assert_eq!(
            tmux.terminal_flags(),
            "0 1",
            "{name}: terminal restored on {signal}"
        );
    }
}

#[test]
fn sigterm_ends_every_other_terminal_mode_with_the_terminal_restored() {
    other_modes_restore_the_terminal("TERM");
}

#[test]
fn sighup_ends_every_other_terminal_mode_with_the_terminal_restored() {
    other_modes_restore_the_terminal("HUP");
}

/// `GET /metrics` over loopback: the body.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of the first sample line of `name` (with or without labels).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_addr_serves_power_and_tokens_from_the_dashboard() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let (tmux, _pid) = start_demo(
        "metrics",
        dir.path(),
        &format!("--metrics-addr 127.0.0.1:{port}"),
    );
    std::thread::sleep(Duration::from_millis(600));
    let body = scrape(port);
    let gpu_w = metric(&body, "llmtop_power_watts").expect("a power gauge");
    assert!(gpu_w >= 20.0, "demo GPU draws 20 W or more: {body}");
    assert_eq!(metric(&body, "llmtop_tokens_generated_total"), Some(0.0));

    tmux.type_text("hello");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the demo reply", Duration::from_secs(30), |s| {
        s.contains("tok/s · TTFT")
    });
    let body = scrape(port);
    let tokens = metric(&body, "llmtop_tokens_generated_total").expect("tokens");
    assert!(tokens > 0.0, "{body}");
    tmux.keys(&["C-q"]);
    tmux.wait_for("llmtop to exit", Duration::from_secs(15), |s| {
        s.contains("LLMTOP-EXIT:0")
    });
}
