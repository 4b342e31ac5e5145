//! `llmtop share URL` through the real binary: the process listening at URL found in the real
//! /proc, its share on a live synthetic machine, and, as another user, the processes it may not
//! inspect given as the reason (real permission denials from /proc, via setpriv).

use crate::live::{LiveMachine, Profile};

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A python3 child listening on 127.0.0.1 (kernel-chosen port); killed by PID on drop.
struct Listening {
    child: Child,
    port: u16,
}

impl Listening {
    fn start() -> Self {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)\n",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        Self {
            port: line.trim().parse().expect("port"),
            child,
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn llmtop(dir: &Path) -> Command {
    let config = dir.join("config.toml");
    std::fs::write(&config, "").expect("config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_llmtop"));
    c.arg("--config")
        .arg(&config)
        .env("LLMTOP_DATA_DIR", dir)
        .env_remove("LLMTOP_MODEL");
    c
}

#[test]
fn share_finds_the_listener_and_prints_its_attributed_share() {
    let l = Listening::start();
    let m = LiveMachine::start(Profile::flat(30.0, 50.0, 20.0));
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("http://127.0.0.1:{}", l.port);
    let out = llmtop(dir.path())
        .args(["share", &url, "--seconds", "2", "--json", "--sysfs-root"])
        .arg(&m.root)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).expect("json");
    assert_eq!(v["pid"], l.child.id());
    assert_eq!(v["name"], "python3");
    assert!(
        v["method"]
            .as_str()
            .expect("method")
            .starts_with("attribution")
    );
    assert!(
        v["covers"]
            .as_str()
            .expect("covers")
            // No idle window in `share` and no idle figure of RAPL's own: split gross, and
            // the line says so (idle taken as the lowest power seen once read "above idle").
            .contains(
                "CPU package rapl:package-0:energy gross (no idle baseline measured); GPU board hwmon"
            ),
        "{v}"
    );
    // A sleeping listener on a flat machine: no active energy and no CPU time to share.
    assert!(v["joules"].as_f64().expect("joules") < 0.5, "{v}");
    // The machine's total over the same stretch, 80 W.
    let machine = v["machine_joules"].as_f64().expect("machine");
    assert!(machine > 40.0, "{v}");
}

#[test]
fn as_another_user_the_uninspectable_processes_are_the_reason() {
    // SAFETY: geteuid only reads this process's credentials.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        crate::skip::skipped("needs root and setpriv to run llmtop as another user");
        return;
    }
    let l = Listening::start();
    let dir = tempfile::tempdir().expect("dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let url = format!("http://127.0.0.1:{}", l.port);
    let cmd = llmtop(dir.path());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .args(["share", &url, "--seconds", "1"])
        .env("LLMTOP_DATA_DIR", dir.path())
        .output()
        .expect("setpriv llmtop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "llmtop: TCP port {} is open but no process found holding it: ",
            l.port
        )) && err.contains("processes of other users could not be inspected; run llmtop as the server's user or as root"),
        "{err}"
    );
}
