//! The proxy: the real llama-server behind the real proxy (three streaming clients, token
//! counts against the server's own timings, energy against the ledger on a live synthetic
//! machine), hostile upstreams served by the test itself, and the command's errors; under load
//! (200 streams at once, 2 000 requests in a row), faults (clients leaving, garbage, 431/413,
//! slow loris), and real client libraries (the `openai` and `ollama` Python packages).
//!
//! One test binary per layer: each links llama.cpp once.

#[path = "../common/mod.rs"]
mod common;
#[path = "../live/mod.rs"]
mod live;
#[path = "../servers/mod.rs"]
mod servers;
#[path = "../common/skip.rs"]
mod skip;
#[path = "../tmux/mod.rs"]
mod tmux;

mod proxy_books;
mod proxy_cli;
mod proxy_clients;
mod proxy_dashboard;
mod proxy_durable;
mod proxy_faults;
mod proxy_hostile;
mod proxy_limits;
mod proxy_llama;
mod proxy_load;
mod proxy_records;
mod proxy_recovery;
mod proxy_signals;

use llmtop::accounting::ledger::Ledger;
use llmtop::net::server::Limits;
use llmtop::proxy::books::ProxyBooks;
use llmtop::proxy::forward::{ProxyServer, Upstream, parse_listen};
use llmtop::proxy::record::RequestRecord;
use llmtop::proxy::tap::{Exchange, ProxyEvent};
use llmtop::sensors::Meter;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// A proxy whose exchanges the test reads directly.
pub struct RawProxy {
    pub proxy: ProxyServer,
    pub events: UnboundedReceiver<ProxyEvent>,
}

impl RawProxy {
    pub fn start(upstream: &str) -> Self {
        Self::start_with(upstream, Limits::STREAMING)
    }

    /// With the server's `limits` (short ones, to see them act).
    pub fn start_with(upstream: &str, limits: Limits) -> Self {
        let (tx, events) = unbounded_channel();
        let up = Upstream::parse(upstream).expect("upstream");
        let listen = parse_listen("127.0.0.1:0").expect("listen");
        let proxy =
            ProxyServer::start_with(&listen, limits, up, Instant::now(), tx).expect("proxy");
        Self { proxy, events }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The next finished exchange (skipping starts), within `limit`.
    pub fn finished(&mut self, limit: Duration) -> Exchange {
        finished(&mut self.events, limit)
    }
}

/// The next finished exchange on `events` (skipping starts), within `limit`.
pub fn finished(events: &mut UnboundedReceiver<ProxyEvent>, limit: Duration) -> Exchange {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match events.try_recv() {
            Ok(ProxyEvent::Finished(ex)) => return *ex,
            Ok(_) => continue,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("no exchange finished within {limit:?}")
}

/// A proxy with the books running on a live meter, as `llmtop proxy` runs them.
pub struct BookedProxy {
    pub proxy: ProxyServer,
    stop: Arc<AtomicBool>,
    pub records: Arc<Mutex<Vec<RequestRecord>>>,
    /// (t0, t1) of every finished exchange, sampler clock.
    pub spans: Arc<Mutex<Vec<(f64, f64)>>>,
    thread: Option<JoinHandle<Ledger>>,
    _sampler: llmtop::sensors::sampler::SamplerHandle,
}

impl BookedProxy {
    pub fn start(upstream: &str, meter: Meter, ledger: Ledger) -> Self {
        let (tx, mut events) = unbounded_channel();
        let up = Upstream::parse(upstream).expect("upstream");
        let proxy = ProxyServer::start("127.0.0.1:0", up, meter.handle.start(), tx).expect("proxy");
        let (sampler, mut samples) = meter.into_parts();
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (s, r, sp) = (stop.clone(), records.clone(), spans.clone());
        let thread = std::thread::spawn(move || {
            let mut ledger = ledger;
            let mut books = ProxyBooks::new(0.0, None);
            while !s.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok(e) = events.try_recv() {
                    if let ProxyEvent::Finished(ex) = &e {
                        sp.lock().expect("spans").push((ex.t0, ex.t1));
                    }
                    books.event(e);
                    idle = false;
                }
                while let Ok(sample) = samples.try_recv() {
                    ledger.push(&sample);
                    let got = books.settle(&ledger, sample.t);
                    r.lock().expect("records").extend(got);
                    idle = false;
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            ledger
        });
        Self {
            proxy,
            stop,
            records,
            spans,
            thread: Some(thread),
            _sampler: sampler,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Wait until `n` records are settled; returns them.
    pub fn wait_records(&self, n: usize, limit: Duration) -> Vec<RequestRecord> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let r = self.records.lock().expect("records").clone();
            if r.len() >= n {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{n} records not settled within {limit:?}")
    }

    /// Stop the books and hand back the ledger.
    pub fn stop(mut self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("books thread")
    }
}

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Got {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub local: SocketAddr,
    /// Seconds from sending to each body piece's arrival (de-chunked pieces as read).
    pub arrivals: Vec<(f64, usize)>,
    /// The connection ended before the body did.
    pub truncated: bool,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POST `body` as JSON to `addr` `path` over HTTP/1.1 (`Connection: close`), reading the
/// whole answer, de-chunked.
pub fn post(addr: SocketAddr, path: &str, body: &str) -> Got {
    request(addr, "POST", path, body, &[], true)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
    keep_body: bool,
) -> Got {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .expect("timeout");
    let local = s.local_addr().expect("local");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let t0 = Instant::now();
    s.write_all(head.as_bytes()).expect("write head");
    s.write_all(body.as_bytes()).expect("write body");
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Read the head.
    let head_end = loop {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed before the head");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut rest = raw[head_end..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut got = Got {
        status,
        head,
        body: Vec::new(),
        local,
        arrivals: Vec::new(),
        truncated: false,
    };
    let mut dechunk = Dechunk::default();
    let mut feed = |bytes: &[u8], got: &mut Got| {
        let t = t0.elapsed().as_secs_f64();
        let piece = if chunked {
            dechunk.feed(bytes)
        } else {
            bytes.to_vec()
        };
        if !piece.is_empty() {
            got.arrivals.push((t, piece.len()));
            if keep_body {
                got.body.extend_from_slice(&piece);
            }
        }
    };
    if !rest.is_empty() {
        feed(&rest, &mut got);
        rest.clear();
    }
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => feed(&buf[..n], &mut got),
            Err(_) => {
                got.truncated = true;
                break;
            }
        }
    }
    if chunked && !dechunk.done {
        got.truncated = true;
    }
    got
}

/// Undo `Transfer-Encoding: chunked` incrementally.
#[derive(Default)]
struct Dechunk {
    buf: Vec<u8>,
    /// Bytes left in the current chunk's data (plus its CRLF).
    left: usize,
    done: bool,
}

impl Dechunk {
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.done {
                return out;
            }
            if self.left > 0 {
                let take = self.left.min(self.buf.len());
                // The last two bytes of `left` are the chunk's CRLF.
                let data = take.min(self.left.saturating_sub(2));
                out.extend_from_slice(&self.buf[..data]);
                self.buf.drain(..take);
                self.left -= take;
                if self.left > 0 {
                    return out;
                }
                continue;
            }
            let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                return out;
            };
            let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            self.buf.drain(..i + 2);
            if size == 0 {
                self.done = true;
                return out;
            }
            self.left = size + 2;
        }
    }
}

/// SSE `data:` payloads of a body, `[DONE]` excluded, as JSON.
pub fn sse_json(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("SSE JSON"))
        .collect()
}

/// The streamed reply text of an OpenAI chat stream.
pub fn sse_content(body: &str) -> String {
    sse_json(body)
        .iter()
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// This process's resident memory, bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
