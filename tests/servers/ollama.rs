//! A stand-in Ollama on 127.0.0.1 (Ollama cannot be installed here): std TCP, HTTP/1.1, the
//! shapes of Ollama's documented API (docs/api.md): `/api/version`, `/api/tags`, `/api/ps`,
//! `/api/chat` and `/api/generate` streamed (NDJSON, chunked) or not, errors as
//! `{"error": "..."}`, and `/v1/models`. Misbehaviour on demand ([`Mode`]). Every request it
//! answered is kept for the test to look at.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the next chats are answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Close the connection after this many content chunks, without the final object.
    DropAfter(usize),
    /// A line of garbage after the first chunk; the stream goes on.
    MalformedLine,
    /// A line of this many bytes after the first chunk; the stream goes on.
    HugeLine(usize),
    /// Wait this long before each chunk.
    Slow(Duration),
    /// Answer every chat with this status and an Ollama error body.
    Status(u16),
    /// An `{"error": ...}` line in the middle of a 200 stream (what Ollama does when a runner
    /// dies mid-reply).
    ErrorMidStream,
    /// Accept, read the request, then say nothing at all.
    Silent,
    /// A 200 web page (a web UI or a proxy's landing page at the address).
    Html,
}

/// The figures the final object reports (nanoseconds, as Ollama sends them).
pub const LOAD_NS: u64 = 1_500_000_000;
pub const PROMPT_EVAL_NS: u64 = 250_000_000;
pub const EVAL_NS: u64 = 2_000_000_000;
pub const TOTAL_NS: u64 = 4_000_000_000;
pub const PROMPT_EVAL_COUNT: u64 = 26;

/// The models `/api/tags` lists; the first is loaded (`/api/ps`), 62 % in VRAM.
pub const MODELS: [&str; 2] = ["llama3.2:latest", "qwen2.5:0.5b"];
pub const LOADED_SIZE: u64 = 3_000_000_000;
pub const LOADED_VRAM: u64 = 1_860_000_000;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Default)]
struct Shared {
    mode: Mutex<Option<Mode>>,
    reply: Mutex<Vec<String>>,
    seen: Mutex<Vec<Seen>>,
    /// A write to a client failed: it went away mid-stream.
    client_gone: AtomicBool,
    stop: AtomicBool,
}

/// The running fake; stopped when dropped.
pub struct FakeOllama {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FakeOllama {
    pub fn start() -> FakeOllama {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        *shared.reply.lock().expect("lock") = ["The", " sky", " is", " blue", " 😀", "."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || handle(conn, &s));
            }
        });
        FakeOllama {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, m: Mode) {
        *self.shared.mode.lock().expect("lock") = Some(m);
    }

    /// The pieces of every reply.
    pub fn set_reply(&self, pieces: &[&str]) {
        *self.shared.reply.lock().expect("lock") = pieces.iter().map(|s| s.to_string()).collect();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// The chat requests, in order.
    pub fn chats(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == "/api/chat")
            .map(|s| s.body)
            .collect()
    }

    pub fn client_gone(&self) -> bool {
        self.shared.client_gone.load(Ordering::SeqCst)
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut w = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });
    let mode = s.mode.lock().expect("lock").clone().unwrap_or(Mode::Normal);
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/version") => respond(&mut w, 200, &json!({"version": "0.5.7"})),
        ("GET", "/api/tags") => respond(&mut w, 200, &tags()),
        ("GET", "/api/ps") => respond(&mut w, 200, &ps()),
        ("GET", "/v1/models") => respond(
            &mut w,
            200,
            &json!({"object": "list", "data": MODELS.iter().map(|m| json!({"id": m, "object": "model", "owned_by": "library"})).collect::<Vec<_>>()}),
        ),
        ("POST", "/api/chat" | "/api/generate") => chat(&mut w, s, &path, &body, mode),
        _ => respond(&mut w, 404, &json!({"error": "404 page not found"})),
    }
}

fn tags() -> Value {
    json!({"models": [
        {"name": MODELS[0], "model": MODELS[0], "modified_at": "2024-10-01T10:00:00Z", "size": 2019393189u64,
         "digest": "a80c4f17acd5", "details": {"parent_model": "", "format": "gguf", "family": "llama",
         "families": ["llama"], "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
        {"name": MODELS[1], "model": MODELS[1], "modified_at": "2024-10-01T10:00:00Z", "size": 397821319u64,
         "digest": "a8b0c5157701", "details": {"format": "gguf", "family": "qwen2", "families": ["qwen2"],
         "parameter_size": "494.03M", "quantization_level": "Q4_K_M"}}
    ]})
}

fn ps() -> Value {
    json!({"models": [
        {"name": MODELS[0], "model": MODELS[0], "size": LOADED_SIZE, "digest": "a80c4f17acd5",
         "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
         "expires_at": "2099-01-01T00:00:00Z", "size_vram": LOADED_VRAM, "context_length": 4096}
    ]})
}

fn respond(w: &mut TcpStream, status: u16, v: &Value) {
    let body = v.to_string();
    let _ = write!(
        w,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// One HTTP chunk; false when the client is gone.
fn chunk(w: &mut TcpStream, s: &Shared, data: &[u8]) -> bool {
    let ok = write!(w, "{:x}\r\n", data.len()).is_ok()
        && w.write_all(data).is_ok()
        && w.write_all(b"\r\n").is_ok()
        && w.flush().is_ok();
    if !ok {
        s.client_gone.store(true, Ordering::SeqCst);
    }
    ok
}

fn chat(w: &mut TcpStream, s: &Shared, path: &str, body: &Value, mode: Mode) {
    let model = body["model"].as_str().unwrap_or("");
    if !MODELS.contains(&model) {
        return respond(
            w,
            404,
            &json!({"error": format!("model \"{model}\" not found, try pulling it first")}),
        );
    }
    match mode {
        Mode::Status(code) => {
            return respond(
                w,
                code,
                &json!({"error": "llama runner process has terminated: exit status 2"}),
            );
        }
        Mode::Silent => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Mode::Html => {
            let page = "<html><body>It works!</body></html>";
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            return;
        }
        _ => {}
    }
    let pieces = s.reply.lock().expect("lock").clone();
    let generate = path == "/api/generate";
    let piece_obj = |p: &str, done: bool| {
        let mut o = if generate {
            json!({"model": model, "created_at": "2024-10-01T10:00:00Z", "response": p, "done": done})
        } else {
            json!({"model": model, "created_at": "2024-10-01T10:00:00Z",
                   "message": {"role": "assistant", "content": p}, "done": done})
        };
        if done {
            let m = o.as_object_mut().expect("object");
            m.insert("done_reason".into(), json!("stop"));
            m.insert("total_duration".into(), json!(TOTAL_NS));
            m.insert("load_duration".into(), json!(LOAD_NS));
            m.insert("prompt_eval_count".into(), json!(PROMPT_EVAL_COUNT));
            m.insert("prompt_eval_duration".into(), json!(PROMPT_EVAL_NS));
            m.insert("eval_count".into(), json!(pieces.len()));
            m.insert("eval_duration".into(), json!(EVAL_NS));
        }
        o
    };
    if body["stream"] == json!(false) {
        return respond(w, 200, &piece_obj(&pieces.concat(), true));
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    for (i, p) in pieces.iter().enumerate() {
        if let Mode::Slow(d) = mode {
            std::thread::sleep(d);
        }
        if mode == Mode::DropAfter(i) {
            let _ = w.shutdown(std::net::Shutdown::Both);
            return;
        }
        let mut line = piece_obj(p, false).to_string().into_bytes();
        line.push(b'\n');
        // Cut each line in two chunks, the cut inside the multi-byte character where there is
        // one: a client must not assume a chunk holds whole lines or whole characters.
        let cut = line
            .iter()
            .position(|b| *b >= 0x80)
            .map_or(line.len() / 2, |i| i + 1);
        if !chunk(w, s, &line[..cut]) || !chunk(w, s, &line[cut..]) {
            return;
        }
        if i == 0 {
            match mode {
                Mode::MalformedLine => {
                    let _ = chunk(w, s, b"{\"message\": {\"content\": \"broken\n");
                }
                Mode::HugeLine(n) => {
                    let big = vec![b'x'; 64 << 10];
                    let mut left = n;
                    let _ = chunk(w, s, b"{\"message\":{\"content\":\"");
                    while left > 0 {
                        let k = left.min(big.len());
                        if !chunk(w, s, &big[..k]) {
                            return;
                        }
                        left -= k;
                    }
                    let _ = chunk(w, s, b"\"},\"done\":false}\n");
                }
                Mode::ErrorMidStream => {
                    let _ = chunk(w, s, b"{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n");
                    let _ = chunk(w, s, b"");
                    return;
                }
                _ => {}
            }
        }
    }
    let mut last = piece_obj("", true).to_string().into_bytes();
    last.push(b'\n');
    if chunk(w, s, &last) {
        let _ = chunk(w, s, b"");
    }
}
