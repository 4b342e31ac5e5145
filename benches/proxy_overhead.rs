//! Proxy overhead on a stream from the real llama-server (scripts/bench-proxy.sh runs it).
//!
//! A relay in this process sits in front of llama-server and timestamps each SSE event as it
//! hands it on; the client timestamps each event as it arrives. Direct: client → relay →
//! server; proxied: client → `llmtop proxy` (the release binary) → relay → server. The added
//! latency per chunk is the proxied relay-to-client time minus the direct one (p50, p99);
//! throughput is the stream's events per second from first to last event, proxied over
//! direct; llmtop's CPU time is read from /proc for the proxied requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_path(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_http(addr: SocketAddr, path: &str) {
    for _ in 0..600 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut b = String::new();
            let _ = s.read_to_string(&mut b);
            if b.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{addr}{path} never answered 200");
}

/// Times at which the k-th `data: ` of a stream was seen, scanning reads as they come.
#[derive(Default)]
struct Events {
    carry: Vec<u8>,
    times: Vec<Instant>,
}

impl Events {
    fn feed(&mut self, bytes: &[u8], at: Instant) {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(bytes);
        let pat = b"data: ";
        let mut i = 0;
        while i + pat.len() <= buf.len() {
            if &buf[i..i + pat.len()] == pat {
                self.times.push(at);
                i += pat.len();
            } else {
                i += 1;
            }
        }
        let keep = buf
            .len()
            .saturating_sub(pat.len() - 1)
            .max(i.min(buf.len()));
        self.carry = buf[keep..].to_vec();
    }
}

/// The relay: one upstream connection per client connection; the event times of every
/// response it relays, in order.
fn relay(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<Instant>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("relay");
    let addr = l.local_addr().expect("addr");
    let log: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::default();
    let out = log.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let Ok(mut u) = TcpStream::connect(upstream) else {
                    return;
                };
                let _ = c.set_nodelay(true);
                let _ = u.set_nodelay(true);
                let (mut c2, mut u2) =
                    (c.try_clone().expect("clone"), u.try_clone().expect("clone"));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let mut buf = vec![0u8; 64 * 1024];
                // A response ends at "data: [DONE]": the next event belongs to the next one.
                let mut ev = Events::default();
                let mut tail: Vec<u8> = Vec::new();
                loop {
                    let n = match u.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Stamped as it is handed on: before the write, which the reader may
                    // otherwise beat.
                    let now = Instant::now();
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    ev.feed(&buf[..n], now);
                    // "data: [DONE]" may be split across two reads: look in the joint.
                    tail.extend_from_slice(&buf[..n]);
                    let done = tail.windows(12).any(|w| w == b"data: [DONE]");
                    let cut = tail.len().saturating_sub(11);
                    tail.drain(..cut);
                    if done {
                        tail.clear();
                        log.lock().expect("log").push(std::mem::take(&mut ev.times));
                        ev = Events::default();
                    }
                }
                // The server is done: so is the client (the copy thread holds a clone).
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (addr, out)
}

/// One streamed chat: event arrival times at the client, and the whole request's seconds.
fn chat(addr: SocketAddr, body: &str) -> (Vec<Instant>, f64) {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let _ = s.set_nodelay(true);
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut ev = Events::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => ev.feed(&buf[..n], Instant::now()),
        }
    }
    (ev.times, t0.elapsed().as_secs_f64())
}

fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime, stime: fields 14 and 15 of the whole line; 12 and 13 after the ")".
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let server_bin = env_path(
        "LLMTOP_LLAMA_SERVER",
        home.join(".cache/llmtop/llama-server-0.3.36/build/bin/llama-server"),
    );
    let model = env_path(
        "LLMTOP_TEST_MODEL",
        home.join(".local/share/llmtop/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    );
    let llmtop = std::env::var_os("LLMTOP_BIN")
        .map(PathBuf::from)
        .expect("LLMTOP_BIN: the release llmtop binary");
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tokens: u32 = std::env::var("BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);

    // llama-server's threads: 2 fills both CPUs of the development VM, 1 leaves the proxy one.
    let threads = std::env::var("BENCH_SERVER_THREADS").unwrap_or_else(|_| "2".into());
    let sport = free_port();
    let server = Kill(
        Command::new(&server_bin)
            .arg("-m")
            .arg(&model)
            .args(["--host", "127.0.0.1", "--port", &sport.to_string()])
            .args([
                "-c",
                "2048",
                "--parallel",
                "1",
                "-t",
                &threads,
                "--no-webui",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama-server"),
    );
    let saddr: SocketAddr = ([127, 0, 0, 1], sport).into();
    wait_http(saddr, "/health");
    let (raddr, relayed) = relay(saddr);
    let pport = free_port();
    let data = std::env::temp_dir().join(format!("llmtop-bench-proxy-{}", std::process::id()));
    let proxy = Kill(
        Command::new(&llmtop)
            .args(["proxy", "--listen", &format!("127.0.0.1:{pport}")])
            .args(["--upstream", &format!("http://{raddr}"), "--no-log"])
            .env("LLMTOP_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llmtop proxy"),
    );
    let paddr: SocketAddr = ([127, 0, 0, 1], pport).into();
    wait_http(paddr, "/health");
    let body = format!(
        "{{\"model\":\"m\",\"stream\":true,\"temperature\":0,\"seed\":1,\"max_tokens\":{tokens},\"messages\":[{{\"role\":\"user\",\"content\":\"Tell me about the sea.\"}}]}}"
    );
    // Warm-up: the prompt is cached after the first, for both paths alike.
    for a in [saddr, raddr, paddr] {
        let _ = chat(a, &body);
    }
    relayed.lock().expect("log").clear();
    let cpu0 = cpu_s(proxy.0.id());
    let mut lat = (Vec::new(), Vec::new()); // (direct, proxied) seconds relay -> client
    let mut rate = (Vec::new(), Vec::new()); // events per second, first to last
    let mut proxied_cpu = 0.0;
    let mut untimed = 0;
    for i in 0..2 * n {
        let via_proxy = i % 2 == 1;
        let before = cpu_s(proxy.0.id());
        // Nothing stale can be taken for this response's events.
        relayed.lock().expect("log").clear();
        let (times, _) = chat(if via_proxy { paddr } else { raddr }, &body);
        if via_proxy {
            proxied_cpu += cpu_s(proxy.0.id()) - before;
        }
        // The relay logs a response when it sees [DONE]; wait for it.
        let waited = Instant::now();
        let sent = loop {
            if let Some(t) = relayed.lock().expect("log").pop() {
                break t;
            }
            if waited.elapsed() > Duration::from_secs(10) {
                break Vec::new(); // [DONE] split across reads: this one is not timed
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        // Both sides must have seen the same events, or the pairs are not the same chunks.
        if times.len() != sent.len() {
            untimed += 1;
            continue;
        }
        let k = times.len();
        let l: Vec<f64> = (0..k)
            .map(|j| times[j].duration_since(sent[j]).as_secs_f64())
            .collect();
        let r = if k > 1 {
            (k - 1) as f64 / times[k - 1].duration_since(times[0]).as_secs_f64()
        } else {
            f64::NAN
        };
        if via_proxy {
            lat.1.extend(l);
            rate.1.push(r);
        } else {
            lat.0.extend(l);
            rate.0.push(r);
        }
    }
    let cpu_total = cpu_s(proxy.0.id()) - cpu0;
    let (d50, d99) = (quantile(&mut lat.0, 0.5), quantile(&mut lat.0, 0.99));
    let (p50, p99) = (quantile(&mut lat.1, 0.5), quantile(&mut lat.1, 0.99));
    let (rd, rp) = (quantile(&mut rate.0, 0.5), quantile(&mut rate.1, 0.5));
    println!(
        "proxy overhead, {n} direct + {n} proxied streaming requests, {tokens} tokens each, llama-server -t {threads}"
    );
    println!(
        "chunks timed: {} direct, {} proxied ({untimed} responses not timed: events did not pair up)",
        lat.0.len(),
        lat.1.len()
    );
    println!(
        "relay->client per chunk: direct p50 {:.3} ms p99 {:.3} ms; proxied p50 {:.3} ms p99 {:.3} ms",
        d50 * 1e3,
        d99 * 1e3,
        p50 * 1e3,
        p99 * 1e3
    );
    println!(
        "added latency per chunk: p50 {:.3} ms, p99 {:.3} ms",
        (p50 - d50) * 1e3,
        (p99 - d99) * 1e3
    );
    println!(
        "throughput (median events/s): direct {rd:.1}, proxied {rp:.1}, ratio {:.4}",
        rp / rd
    );
    println!(
        "llmtop CPU: {proxied_cpu:.2} s during the {n} proxied requests ({:.1} ms each), {cpu_total:.2} s over the whole run (sampler and ledger included)",
        proxied_cpu / n as f64 * 1e3
    );
    drop(proxy);
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
