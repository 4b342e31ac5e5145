//! A real llama.cpp `llama-server` on 127.0.0.1 for the attach and proxy tests: built by
//! scripts/llama-server.sh (the test command runs it first), serving the default model.
#![allow(dead_code)]

/// A stand-in Ollama (Ollama cannot be installed here).
pub mod ollama;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary: `LLMTOP_LLAMA_SERVER`, else where scripts/llama-server.sh caches its build.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMTOP_LLAMA_SERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("LLMTOP_BUILD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("llmtop")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/llmtop")
        });
    let p = cache.join("llama-server-0.3.36/build/bin/llama-server");
    assert!(
        p.is_file(),
        "{} missing: run scripts/llama-server.sh first (the test command does)",
        p.display()
    );
    p
}

/// A running llama-server; killed (by its PID) and reaped when dropped.
pub struct LlamaServer {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start one.
#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent request slots (`--parallel`); the context is split between them.
    pub parallel: u32,
    pub ctx: u32,
    pub threads: u32,
    /// Extra arguments, e.g. `["--no-slots"]`.
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            parallel: 1,
            ctx: 2048,
            threads: 2,
            extra: Vec::new(),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a probe port")
        .local_addr()
        .expect("probe addr")
        .port()
}

impl LlamaServer {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Start on a free port with `/metrics` on, and wait (up to 120 s) until `/health` says ok.
    pub fn start_with(o: Options) -> Self {
        let model = super::common::model_path();
        // A port can be taken between the probe and the bind; retry a few times.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("llama-server.log");
            let port = free_port();
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let mut cmd = Command::new(binary());
            cmd.arg("-m")
                .arg(&model)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["-c", &(o.ctx * o.parallel).to_string()])
                .args(["--parallel", &o.parallel.to_string()])
                .args(["-t", &o.threads.to_string()])
                .args(["--metrics", "--no-webui"])
                .args(&o.extra)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            let child = cmd.spawn().expect("spawn llama-server");
            let mut s = LlamaServer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log: log.clone(),
                _dir: dir,
            };
            match s.wait_healthy(Duration::from_secs(120)) {
                Ok(()) => return s,
                Err(e) if e.contains("address already in use") || e.contains("bind") => drop(s),
                Err(e) => panic!("llama-server did not start: {e}"),
            }
        }
        panic!("llama-server: no free port after 5 tries")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_text().to_lowercase();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(format!("exited with {status}: {tail}"));
            }
            if let Some((200, _)) = get(self.addr, "/health") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "not healthy after {limit:?}; log {}",
            self.log.display()
        ))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (status, body), for readiness checks without a client library.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}
