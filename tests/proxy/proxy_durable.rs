//! Records are never lost or corrupt: a data dir that cannot be written (read-only, disk full by
//! a file-size limit) keeps them in memory until it can; kill -9 leaves only whole lines and a
//! restart appends after them; rotation under load splits and loses no line.

use super::post;
use super::proxy_cli::{Kill, llmtop};
use super::proxy_hostile::{SSE_HEAD, chunk, fake};
use llmtop::accounting::ledger::Ledger;
use llmtop::proxy::books::{ProxyBooks, RETRY_S};
use llmtop::proxy::record::{RequestLog, RequestRecord};
use llmtop::proxy::tap::{Exchange, Outcome, ProxyEvent};
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn plug(j: f64) -> Reading {
    Reading {
        id: "plug:shelly:energy".into(),
        device: "shelly".into(),
        label: "wall".into(),
        quantity: Quantity::Energy,
        value: Some(j),
        limit: None,
        source: Source::Plug,
        covers: Covers::Wall,
        method: Method::Counter,
        rejected: None,
        via: None,
    }
}

/// Request `id` over `[id, id + 0.5]`, 5 tokens.
fn exchange(id: u64) -> Exchange {
    let t0 = id as f64;
    Exchange {
        id,
        client: "127.0.0.1:5000".parse().expect("addr"),
        method: "POST".into(),
        endpoint: "/api/chat".into(),
        status: 200,
        outcome: Outcome::Complete,
        t0,
        t1: t0 + 0.5,
        requested_model: Some("m".into()),
        first_byte: Some(t0 + 0.1),
        token_times: (1..=5).map(|i| t0 + 0.1 * f64::from(i)).collect(),
        tokens_seen: 5,
        figures: None,
        wire_errors: Vec::new(),
        bytes_in: 10,
        bytes_out: 100,
    }
}

/// The records in `files`, every line parsed (a line that is not a whole record fails).
pub fn read_records(files: &[PathBuf]) -> Vec<RequestRecord> {
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}: a partial last line",
            f.display()
        );
        for (i, line) in text.lines().enumerate() {
            let r: RequestRecord = serde_json::from_str(line).unwrap_or_errno(f, i + 1, line);
            out.push(r);
        }
    }
    out
}

trait OrLine<T> {
    fn unwrap_or_errno(self, f: &Path, n: usize, line: &str) -> T;
}
impl<T> OrLine<T> for Result<T, serde_json::Error> {
    fn unwrap_or_errno(self, f: &Path, n: usize, line: &str) -> T {
        self.unwrap_or_else(|e| {
            panic!(
                "{} line {n} is not a whole record ({e}): {line:?}",
                f.display()
            )
        })
    }
}

/// Make `dir` unwritable (`true`) or writable again: `chattr +i` as root (root writes through
/// permissions), mode 0555 otherwise. `None` when neither works here.
fn lock_dir(dir: &Path, locked: bool) -> Option<()> {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let ok = std::process::Command::new("chattr")
            .arg(if locked { "+i" } else { "-i" })
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = if locked { 0o555 } else { 0o755 };
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).ok()
    }
}

#[test]
fn a_read_only_data_dir_keeps_records_in_memory_and_they_are_written_when_it_is_writable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    if lock_dir(&dir, true).is_none() || std::fs::write(dir.join("probe"), "x").is_ok() {
        let _ = lock_dir(&dir, false);
        crate::skip::skipped("cannot make a directory read-only here (chattr +i / chmod 0555)");
        return;
    }
    let path = dir.join("requests.jsonl");
    // As `llmtop proxy` starts: the log cannot be opened, the proxy goes on.
    let e = RequestLog::open(&path, 1 << 20, 5).expect_err("read-only");
    let mut books = ProxyBooks::new(0.0, Some(RequestLog::closed(&path, 1 << 20, 5)));
    books.log_failed(&e);
    // A wall plug at 100 W, sampled each second; request i over [i, i + 0.5].
    let mut ledger = Ledger::new();
    let mut notices = Vec::new();
    let mut settled = Vec::new();
    let push = |ledger: &mut Ledger, books: &mut ProxyBooks, t: u32| {
        ledger.push(&Sample {
            t: f64::from(t),
            readings: vec![plug(100.0 * f64::from(t))],
        });
        if (1..=30).contains(&t) {
            let id = u64::from(t);
            books.event(ProxyEvent::Started { id, t0: id as f64 });
            books.event(ProxyEvent::Finished(Box::new(exchange(id))));
        }
        books.settle(ledger, f64::from(t))
    };
    for t in 0..=15 {
        settled.extend(push(&mut ledger, &mut books, t));
        notices.extend(books.take_notices());
    }
    assert!(settled.len() >= 12, "{}", settled.len());
    assert_eq!(books.queued(), settled.len(), "every record kept");
    assert!(!path.exists());
    assert_eq!(notices.len(), 1, "said once: {notices:?}");
    assert!(
        notices[0].contains("cannot write request records"),
        "{notices:?}"
    );
    assert!(notices[0].contains("keeping up to"), "{notices:?}");
    let status = books.log_status().expect("a status while failing");
    assert!(
        status.starts_with(&format!(
            "records not being written ({} kept",
            settled.len()
        )),
        "{status}"
    );
    // Writable again: the next try (each RETRY_S) writes them, oldest first, and says so once.
    lock_dir(&dir, false).expect("unlock");
    const { assert!(RETRY_S <= 1.0) };
    for t in 16..=40 {
        settled.extend(push(&mut ledger, &mut books, t));
        notices.extend(books.take_notices());
    }
    assert_eq!(settled.len(), 30);
    assert_eq!(books.queued(), 0);
    assert_eq!(books.log_status(), None);
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[1].contains("written again"), "{notices:?}");
    let file = read_records(&[path]);
    let ids: Vec<u64> = file.iter().map(|r| r.id).collect();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>());
    assert!(file.iter().all(|r| r.generated_tokens == Some(5)));
    // Each alone for its half second at 100 W.
    let sum: f64 = file
        .iter()
        .map(|r| r.energy.as_ref().expect("energy").joules)
        .sum();
    assert!((sum - 30.0 * 50.0).abs() < 1e-6, "{sum}");
}

#[test]
fn a_partial_last_line_from_a_crash_is_cut_off_when_the_log_opens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("requests.jsonl");
    let mut books = ProxyBooks::new(
        0.0,
        Some(RequestLog::open(&path, 1 << 20, 5).expect("open")),
    );
    let l = Ledger::new();
    for id in 1..=3 {
        books.event(ProxyEvent::Finished(Box::new(exchange(id))));
    }
    assert_eq!(books.flush(&l).len(), 3);
    drop(books);
    // A crash in the middle of the fourth line.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(b"{\"schema\":\"llmtop.request/1\",\"id\":4,\"ti")
        .expect("write");
    drop(f);
    let mut books = ProxyBooks::new(
        0.0,
        Some(RequestLog::open(&path, 1 << 20, 5).expect("reopen")),
    );
    books.event(ProxyEvent::Finished(Box::new(exchange(5))));
    books.flush(&l);
    let ids: Vec<u64> = read_records(&[path]).iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 5]);
}

/// An upstream streaming 3 SSE tokens at once, one request a connection (said, so the
/// proxy's pool does not reuse a connection it is closing).
fn quick_upstream() -> SocketAddr {
    fake(Arc::new(|_req: &str, s: &mut TcpStream| {
        let head = SSE_HEAD.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(head.as_bytes());
        for i in 0..3 {
            let line = format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{"content":format!("t{i}")}}],"model":"quick"})
            );
            if chunk(s, line.as_bytes()).is_err() {
                return;
            }
        }
        let _ = chunk(s, b"data: [DONE]\n\n");
        let _ = s.write_all(b"0\r\n\r\n");
    }))
}

/// `llmtop proxy` in `data` in front of `up`; its stderr lines gathered; its listen address.
pub struct Binary {
    pub child: Kill,
    pub addr: SocketAddr,
    pub err: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    pub fn start(data: &Path, up: SocketAddr, extra: &[&str], fsize: Option<u64>) -> Self {
        let upstream = format!("http://{up}");
        let mut args = vec![
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--sysfs-root",
            "tests/fixtures/sysfs/laptop",
        ];
        args.extend_from_slice(extra);
        let mut cmd = llmtop(&args, data);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(limit) = fsize {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child yet.
            unsafe {
                cmd.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = Kill(cmd.spawn().expect("spawn"));
        let mut err = BufReader::new(child.0.stderr.take().expect("stderr"));
        let mut line = String::new();
        err.read_line(&mut line).expect("first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("listen address in {line:?}"));
        let lines = Arc::new(Mutex::new(vec![line]));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in err.lines() {
                let Ok(line) = line else { break };
                l.lock().expect("lines").push(line);
            }
        });
        Self {
            child,
            addr,
            err: lines,
        }
    }

    fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// Wait until a stderr line contains `what`.
    pub fn said(&self, what: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(l) = self
                .err
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(what))
            {
                return l.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no {what:?} on stderr within {limit:?}: {:?}",
            self.err.lock().expect("lines")
        )
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.child.0.wait().expect("wait")
    }
}

fn ask(addr: SocketAddr) -> u16 {
    post(
        addr,
        "/v1/chat/completions",
        "{\"model\":\"quick\",\"stream\":true}",
    )
    .status
}

/// Lines of `path` now (whole or not).
fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_disk_full_by_a_file_size_limit_keeps_records_in_memory_until_it_is_raised() {
    let up = quick_upstream();
    let data = tempfile::tempdir().expect("tempdir");
    let path = data.path().join("requests.jsonl");
    // Room for about four records.
    let b = Binary::start(data.path(), up, &[], Some(4000));
    for _ in 0..20 {
        assert_eq!(ask(b.addr), 200, "the proxy keeps forwarding");
    }
    let said = b.said("cannot write request records", Duration::from_secs(30));
    assert!(said.contains("keeping up to"), "{said}");
    let before = read_records(std::slice::from_ref(&path));
    assert!(
        before.len() < 20 && !before.is_empty(),
        "{} written",
        before.len()
    );
    assert!(std::fs::metadata(&path).expect("file").len() <= 4000);
    // Room again.
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: our own child's pid, a valid rlimit.
    let ok = unsafe { libc::prlimit(b.pid(), libc::RLIMIT_FSIZE, &r, std::ptr::null_mut()) };
    assert_eq!(ok, 0, "prlimit: {}", std::io::Error::last_os_error());
    b.said("written again", Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(ask(b.addr), 200);
    }
    let end = Instant::now() + Duration::from_secs(30);
    while lines_in(&path) < 25 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = b.err.clone();
    let status = b.stop();
    assert!(
        status.success(),
        "{status}: {:?}",
        err.lock().expect("lines")
    );
    let recs = read_records(&[path]);
    let ids: Vec<u64> = recs.iter().map(|r| r.id).collect();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>(), "each once, in order");
    assert!(
        recs.iter()
            .all(|r| r.generated_tokens == Some(3) && r.status == 200)
    );
    let said_once = err
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.contains("cannot write request records"))
        .count();
    assert_eq!(said_once, 1, "{:?}", err.lock().expect("lines"));
}

#[test]
fn kill_9_leaves_whole_lines_and_a_restart_appends_after_them() {
    let up = quick_upstream();
    let data = tempfile::tempdir().expect("tempdir");
    let path = data.path().join("requests.jsonl");
    let b = Binary::start(data.path(), up, &[], None);
    // Requests until the kill; the time each one ended, by its client port.
    let mut ended: Vec<(String, Instant)> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        let g = post(
            b.addr,
            "/v1/chat/completions",
            "{\"model\":\"quick\",\"stream\":true}",
        );
        assert_eq!(g.status, 200);
        ended.push((g.local.to_string(), Instant::now()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = b;
    b.child.0.kill().expect("kill -9");
    let killed = Instant::now();
    b.child.0.wait().expect("wait");
    let first = read_records(std::slice::from_ref(&path));
    let have: std::collections::BTreeSet<String> = first.iter().map(|r| r.client.clone()).collect();
    let lost: Vec<f64> = ended
        .iter()
        .filter(|(c, _)| !have.contains(c))
        .map(|(_, t)| killed.duration_since(*t).as_secs_f64())
        .collect();
    println!(
        "kill -9: {} of {} recorded; the lost ended {lost:?} s before",
        first.len(),
        ended.len()
    );
    // Only requests that ended in the last second or so are lost: each is settled once the
    // ledger covers its end plus SETTLE_AFTER_S, at the next sample (4 Hz here), and written
    // as it settles. Two sampling intervals of slack for a busy machine.
    let bound = llmtop::accounting::attribution::SETTLE_AFTER_S + 0.5;
    assert!(lost.iter().all(|&s| s < bound), "{lost:?}");
    assert!(first.len() + lost.len() == ended.len());
    // Restart: the file goes on after the last whole line.
    let b = Binary::start(data.path(), up, &[], None);
    for _ in 0..5 {
        assert_eq!(ask(b.addr), 200);
    }
    let end = Instant::now() + Duration::from_secs(30);
    while lines_in(&path) < first.len() + 5 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(b.stop().success());
    let all = read_records(&[path]);
    assert_eq!(all.len(), first.len() + 5);
    assert_eq!(&all[..first.len()], &first[..]);
    let ids: Vec<u64> = all[first.len()..].iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "the new run's requests");
}

#[test]
fn rotation_under_load_splits_and_loses_no_line() {
    let up = quick_upstream();
    let data = tempfile::tempdir().expect("tempdir");
    let path = data.path().join("requests.jsonl");
    let b = Binary::start(data.path(), up, &["--log-max-mib", "1"], None);
    let addr = b.addr;
    let n_threads = 8;
    let per = 300;
    let clients: Vec<_> = (0..n_threads)
        .map(|_| {
            std::thread::spawn(move || {
                (0..per)
                    .map(|_| ask(addr))
                    .filter(|&s| s != 200)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let failed: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    let total = n_threads * per;
    assert!(failed.is_empty(), "statuses not 200: {failed:?}");
    let files: Vec<PathBuf> = (0..=5)
        .map(|n| {
            if n == 0 {
                path.clone()
            } else {
                PathBuf::from(format!("{}.{n}", path.display()))
            }
        })
        .collect();
    let count = |files: &[PathBuf]| files.iter().map(|f| lines_in(f)).sum::<usize>();
    let end = Instant::now() + Duration::from_secs(60);
    while count(&files) < total && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(b.stop().success());
    assert!(
        files[1].exists() && files[2].exists(),
        "rotated at least twice"
    );
    for f in files.iter().filter(|f| f.exists()) {
        assert!(
            std::fs::metadata(f).expect("meta").len() <= 1 << 20,
            "{}",
            f.display()
        );
    }
    let recs = read_records(&files);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &recs {
        *seen.entry(r.id).or_default() += 1;
        assert_eq!(r.generated_tokens, Some(3));
    }
    let missing: Vec<u64> = (1..=total as u64)
        .filter(|i| !seen.contains_key(i))
        .collect();
    let per_file: Vec<usize> = files.iter().map(|f| lines_in(f)).collect();
    assert_eq!(
        recs.len(),
        total,
        "missing {missing:?}; lines per file {per_file:?}"
    );
    assert!(seen.values().all(|&n| n == 1), "an id twice");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>()
    );
}
