//! Which process owns a listening socket: hand-made procfs trees (`net/tcp{,6}` rows and
//! `fd` symlinks), then real listeners in child processes this test starts, found in the
//! real /proc.

use crate::proc_files::{pid_stat, proc_stat};
use llmtop::accounting::share::{ServerMeter, ShareError};
use llmtop::sensors::process::{ProcError, Procfs};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

/// A `/proc/net/tcp` row: `addr` as the kernel prints it (hex words, host order).
fn row(sl: u32, addr: &str, port: u16, st: &str, inode: u64) -> String {
    format!(
        "{sl:4}: {addr}:{port:04X} 00000000:0000 {st} 00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
    )
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn fd(root: &Path, pid: u32, n: u32, target: &str) {
    let dir = root.join(format!("{pid}/fd"));
    std::fs::create_dir_all(&dir).expect("mkdir fd");
    symlink(target, dir.join(n.to_string())).expect("symlink");
}

/// 8080: LISTEN (inode 4242) held by pid 311 `llama-server`, plus an ESTABLISHED
/// connection on 8080 (inode 555, pid 200) that is not the listener; 9090: LISTEN held by
/// nobody visible; 8081: IPv6 LISTEN held by pid 400; 7000: only ESTABLISHED. Pid 250's fds
/// are mode 000 (unreadable to anyone but root).
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    let lo = "0100007F"; // 127.0.0.1 on a little-endian host
    let mut tcp = TCP_HEADER.to_string();
    tcp += &row(0, lo, 8080, "01", 555);
    tcp += &row(1, lo, 8080, "0A", 4242);
    tcp += &row(2, "00000000", 9090, "0A", 777);
    tcp += &row(3, lo, 7000, "01", 888);
    write(r, "net/tcp", &tcp);
    let mut tcp6 = TCP_HEADER.to_string();
    tcp6 += &row(0, "00000000000000000000000001000000", 8081, "0A", 99);
    write(r, "net/tcp6", &tcp6);
    write(r, "1/comm", "init\n");
    fd(r, 1, 0, "/dev/null");
    write(r, "200/comm", "curl\n");
    fd(r, 200, 3, "socket:[555]");
    write(r, "311/comm", "llama-server\n");
    fd(r, 311, 0, "/dev/null");
    fd(r, 311, 1, "pipe:[12]");
    fd(r, 311, 7, "socket:[4242]");
    // Its own 750 + 250 ticks; a worker of 311 (as `ollama runner` is of `ollama serve`) and
    // a grandchild; curl, not in the tree. A name with a space and parentheses, as comm may
    // have.
    write(
        r,
        "311/stat",
        &pid_stat(311, "llama (srv) x", 1, [700, 250, 40, 10]),
    );
    write(r, "312/stat", &pid_stat(312, "worker", 311, [80, 20, 0, 0]));
    write(r, "313/stat", &pid_stat(313, "helper", 312, [5, 5, 0, 0]));
    write(r, "200/stat", &pid_stat(200, "curl", 1, [999, 999, 0, 0]));
    write(r, "400/comm", "ollama\n");
    fd(r, 400, 5, "socket:[99]");
    std::fs::create_dir_all(r.join("250/fd")).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("250/fd"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    write(r, "stat", &proc_stat("cpu  3000 0 1000 6000 0 0 0 0 0 0"));
    // Not pids: must be ignored.
    write(r, "self/comm", "x\n");
    write(r, "meminfo", "MemTotal: 1 kB\n");
    dir
}

#[test]
fn the_listener_not_a_connection_on_the_same_port_names_the_owner() {
    let t = tree();
    let p = Procfs::new(t.path());
    let o = p.socket_owner(8080).expect("owner of 8080");
    assert_eq!((o.pid, o.name.as_str()), (311, "llama-server"));
    let o6 = p.socket_owner(8081).expect("owner of 8081 (IPv6)");
    assert_eq!((o6.pid, o6.name.as_str()), (400, "ollama"));
    let ls = p.listeners(8080).expect("listeners");
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(ls[0].inode, 4242);
    if cfg!(target_endian = "little") {
        assert_eq!(ls[0].addr.to_string(), "127.0.0.1");
    }
    // The server's CPU time is its own and its workers': 1000 + 100 + 10 ticks.
    let (c, pids) = p.cpu_ticks_tree(311).expect("ticks");
    assert_eq!((c.process, c.busy, c.total), (1110, 4000, 10000));
    assert_eq!(pids, [311, 312, 313]);
    assert_eq!(p.process_ticks(311).expect("own"), 1000);
}

#[test]
fn no_listener_and_no_visible_owner_are_one_line_reasons() {
    let t = tree();
    let p = Procfs::new(t.path());
    // Only an established connection on 7000; nothing at all on 7001.
    for port in [7000, 7001] {
        let e = p.socket_owner(port).expect_err("no listener");
        assert_eq!(e, ProcError::NoListener { port });
        assert!(e.to_string().contains("nothing listens on TCP port"), "{e}");
    }
    // 9090 is listening but no fd we can see holds it; pid 250's fds are unreadable unless
    // we are root, and then the count says so.
    let denied = usize::from(std::fs::read_dir(t.path().join("250/fd")).is_err());
    let e = p.socket_owner(9090).expect_err("no owner");
    assert_eq!(e, ProcError::NoOwner { port: 9090, denied });
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    if denied == 1 {
        assert!(
            line.contains("1 processes of other users could not be inspected; run llmtop as the server's user or as root"),
            "{line}"
        );
    } else {
        assert!(
            line.contains("another container or network namespace"),
            "{line}"
        );
    }
    assert_eq!(
        p.process_ticks(999).expect_err("gone"),
        ProcError::Gone { pid: 999 }
    );
}

#[test]
fn a_garbled_tcp_table_or_a_missing_tree_is_an_error_not_a_panic() {
    let t = tree();
    write(t.path(), "net/tcp", &format!("{TCP_HEADER}garbage line\n"));
    let e = Procfs::new(t.path())
        .socket_owner(8080)
        .expect_err("malformed");
    assert!(
        matches!(e, ProcError::Malformed { .. }) && e.to_string().contains("is"),
        "{e}"
    );
    let e = Procfs::new("/nonexistent-procfs")
        .socket_owner(80)
        .expect_err("missing");
    assert!(
        e.to_string()
            .contains("/nonexistent-procfs/net/tcp: cannot read"),
        "{e}"
    );
    // IPv6 off (no tcp6) is fine.
    let t = tree();
    std::fs::remove_file(t.path().join("net/tcp6")).expect("rm");
    assert_eq!(
        Procfs::new(t.path())
            .socket_owner(8080)
            .expect("v4 only")
            .pid,
        311
    );
}

/// A child process listening on 127.0.0.1 (or ::1) port chosen by the kernel; killed by PID
/// and reaped when dropped.
struct Listening {
    child: Child,
    port: u16,
}

impl Listening {
    fn start(host: &str) -> Self {
        let family = if host.contains(':') {
            "socket.AF_INET6"
        } else {
            "socket.AF_INET"
        };
        let script = format!(
            "import socket,sys,time\ns=socket.socket({family})\ns.bind(('{host}',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)\n"
        );
        let mut child = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("port");
        Self { child, port }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_listener_in_a_child_process_is_found_in_the_real_proc() {
    let v4 = Listening::start("127.0.0.1");
    let o = Procfs::default().socket_owner(v4.port).expect("owner");
    assert_eq!(o.pid, v4.child.id());
    assert!(o.name.starts_with("python"), "{o:?}");
    // Through the URL the dashboard has.
    let m = ServerMeter::for_url_with(
        &format!("http://127.0.0.1:{}/v1", v4.port),
        Procfs::default(),
        None,
    )
    .expect("meter");
    assert_eq!(m.pid(), v4.child.id());
    let m = ServerMeter::for_url_with(
        &format!("http://localhost:{}", v4.port),
        Procfs::default(),
        None,
    )
    .expect("localhost");
    assert_eq!(m.pid(), v4.child.id());
    // IPv6 loopback, where the host has it.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let v6 = Listening::start("::1");
        let o = Procfs::default().socket_owner(v6.port).expect("v6 owner");
        assert_eq!(o.pid, v6.child.id());
    }
    // Gone: nothing listens once the child is killed.
    let port = v4.port;
    drop(v4);
    let e = ServerMeter::for_url_with(&format!("http://127.0.0.1:{port}"), Procfs::default(), None)
        .expect_err("nothing listens");
    assert!(
        matches!(e, ShareError::Proc(ProcError::NoListener { .. })),
        "{e}"
    );
    // A server elsewhere has no share we can find here.
    let e = ServerMeter::for_url_with("http://192.0.2.7:8080", Procfs::default(), None)
        .expect_err("remote");
    assert!(e.to_string().contains("not on this machine"), "{e}");
}
