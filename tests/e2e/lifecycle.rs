//! A closed terminal ends every terminal mode: the dashboard, `--remote`, `--proxy` and
//! `sensors --watch`, each 20 times in its own tmux session, the session killed as an SSH drop
//! or a closed window does (`tmux kill-session`: the pty's other end closes, the terminal hangs
//! up). Every process must be gone within a second and use at most 5 % of a CPU over that
//! second (`--remote` used to spin at 40-100 % forever after its terminal closed). The
//! terminal's restoration, where it still exists, is e2e_signals' subject.

use crate::tmux::Tmux;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 20;
/// How long a process may take to end after its terminal closed.
const END_WITHIN: Duration = Duration::from_secs(1);
/// The CPU it may use over that second.
const CPU_SHARE: f64 = 0.05;

pub(crate) fn fixture() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sysfs/laptop").to_string()
}

/// utime + stime of `pid`, seconds, and whether it is still running (not gone nor a zombie).
fn cpu_of(pid: u32) -> Option<(f64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state(0) ... utime(11) stime(12).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((ticks as f64 / hz, f.first() != Some(&"Z")))
}

/// One mode: its arguments and what its first screen shows.
struct Mode {
    name: &'static str,
    args: String,
    ready: &'static str,
}

/// Start `mode` in sessions s0..s19 of one tmux server, each with its own data and config
/// dirs; close each session's terminal in turn and watch its process end.
fn close_twenty(mode: &Mode) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmux = Tmux::new(&format!("life-{}", mode.name));
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is not installed (apt-get install tmux)"
    );
    for i in 0..RUNS {
        let d = dir.path().join(i.to_string());
        std::fs::create_dir_all(&d).expect("dir");
        let script = format!(
            "cd '{d}' && sh -c \"echo \\$\\$ > pid; LLMTOP_DATA_DIR='{d}/data' XDG_CONFIG_HOME='{d}/config' exec '{bin}' {args}\"; sleep 60",
            d = d.display(),
            bin = env!("CARGO_BIN_EXE_llmtop"),
            args = mode.args,
        );
        tmux.cmd(&[
            "new-session",
            "-d",
            "-s",
            &format!("s{i}"),
            "-x",
            "100",
            "-y",
            "30",
            "sh",
            "-c",
            &script,
        ]);
    }
    let began = Instant::now();
    let mut pids = Vec::new();
    for i in 0..RUNS {
        loop {
            let screen = tmux.cmd(&["capture-pane", "-p", "-t", &format!("s{i}")]);
            if screen.contains(mode.ready) {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(90),
                "{} #{i} never showed {:?}:\n{screen}",
                mode.name,
                mode.ready
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let pid: u32 = std::fs::read_to_string(dir.path().join(i.to_string()).join("pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        pids.push(pid);
    }
    // One at a time, a tenth of a second apart: the ends do not queue for the CPU behind each
    // other, and each process is timed from its own terminal's close. Those closed are
    // watched every 10 ms meanwhile.
    let mut closed: Vec<(Instant, f64)> = Vec::new();
    let mut ended: Vec<Option<f64>> = vec![None; RUNS];
    // When each was last seen running, since its terminal closed.
    let mut running_at = vec![Duration::ZERO; RUNS];
    let mut next_close = Instant::now();
    loop {
        if closed.len() < RUNS && Instant::now() >= next_close {
            let i = closed.len();
            let (cpu, running) = cpu_of(pids[i]).expect("the process is there");
            assert!(
                running,
                "{} #{i} ended before its terminal closed",
                mode.name
            );
            tmux.cmd(&["kill-session", "-t", &format!("s{i}")]);
            closed.push((Instant::now(), cpu));
            next_close += Duration::from_millis(100);
        }
        for (i, &(at, cpu0)) in closed.iter().enumerate() {
            if ended[i].is_some() {
                continue;
            }
            match cpu_of(pids[i]) {
                Some((cpu, true)) => {
                    running_at[i] = at.elapsed();
                    let used = cpu - cpu0;
                    assert!(
                        used <= CPU_SHARE * END_WITHIN.as_secs_f64(),
                        "{} #{i}: {used:.2} s of CPU in the {:?} since its terminal closed",
                        mode.name,
                        at.elapsed()
                    );
                }
                Some((cpu, false)) => ended[i] = Some(cpu - cpu0),
                // Gone and reaped: its last CPU figure was read while it ran.
                None => ended[i] = Some(0.0),
            }
        }
        let all_closed = closed.len() == RUNS;
        let overdue = closed
            .iter()
            .zip(&ended)
            .any(|((at, _), e)| e.is_none() && at.elapsed() > END_WITHIN + Duration::from_secs(2));
        if all_closed && (ended.iter().all(Option::is_some) || overdue) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, e) in ended.iter().enumerate() {
        let used = e.unwrap_or_else(|| {
            panic!(
                "{} #{i} (pid {}) still runs {:?} after its terminal closed",
                mode.name,
                pids[i],
                closed[i].0.elapsed()
            )
        });
        assert!(
            running_at[i] < END_WITHIN,
            "{} #{i} still ran {:?} after its terminal closed",
            mode.name,
            running_at[i]
        );
        assert!(
            used <= CPU_SHARE * END_WITHIN.as_secs_f64(),
            "{} #{i}: {used:.2} s of CPU on the way out",
            mode.name
        );
    }
    let slowest = running_at.iter().max().copied().unwrap_or_default();
    let most = ended.iter().flatten().copied().fold(0.0, f64::max);
    eprintln!(
        "{}: {RUNS} terminals closed; the slowest was last seen running {slowest:?} after; at most {most:.2} CPU s after the close",
        mode.name
    );
}

/// `llmtop serve` on the laptop fixture, for `--remote` to scrape; killed when dropped.
pub(crate) struct Serve(Child, pub(crate) String);

impl Serve {
    pub(crate) fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmtop"))
            .args(["serve", "--metrics-addr", "127.0.0.1:0", "--sysfs-root"])
            .arg(fixture())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn llmtop serve");
        let mut line = String::new();
        BufReader::new(child.stderr.take().expect("stderr"))
            .read_line(&mut line)
            .expect("serve's first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("address in {line:?}"))
            .to_string();
        Serve(child, addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_closed_terminal_ends_the_dashboard_within_a_second() {
    close_twenty(&Mode {
        name: "dashboard",
        args: "--demo".into(),
        ready: "● idle",
    });
}

#[test]
fn a_closed_terminal_ends_the_remote_view_within_a_second() {
    let serve = Serve::start();
    close_twenty(&Mode {
        name: "remote",
        args: format!("--remote http://{}", serve.1),
        ready: "1 of 1 hosts up",
    });
}

#[test]
fn a_closed_terminal_ends_the_proxy_dashboard_within_a_second() {
    close_twenty(&Mode {
        name: "proxy",
        args: format!(
            "--proxy --listen 127.0.0.1:0 --upstream http://127.0.0.1:9 --sysfs-root '{}'",
            fixture()
        ),
        ready: "Requests",
    });
}

#[test]
fn a_closed_terminal_ends_sensors_watch_within_a_second() {
    close_twenty(&Mode {
        name: "sensors",
        args: format!("sensors --watch --sysfs-root '{}'", fixture()),
        ready: "llmtop sensors (sysfs root",
    });
}
