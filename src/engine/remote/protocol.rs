//! The one wire-format parser for the servers people already run, and the request bodies they
//! take.
//!
//! Bytes in (in chunks cut anywhere, even inside a UTF-8 character), [`Event`]s out:
//!
//! - Ollama `/api/chat` and `/api/generate`: newline-delimited JSON; the last object has
//!   `done: true` and the counts and durations (nanoseconds, converted to seconds here, once).
//! - OpenAI-compatible `/v1/chat/completions` (llama-server, LM Studio, vLLM, Ollama's `/v1`):
//!   server-sent events, `data: {...}` … `data: [DONE]`, with `usage` (and
//!   `prompt_tokens_details.cached_tokens`) near the end.
//! - llama-server's `timings` (in its SSE chunks and in `/completion`), LM Studio's `stats`.
//! - A whole non-streamed JSON body ([`Framing::Body`]).
//!
//! Memory is bounded: a line (or a body) longer than the cap becomes one
//! [`WireError::LineTooLong`] and its bytes are dropped as they arrive, never held.
//!
//! Every string in an event is the server's, unsanitised: whoever prints it sanitises it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest line (or non-streamed body) kept: 4 MiB. Real chunks are well under a kilobyte;
/// the largest thing a sane server sends is the `context` token array in Ollama's last
/// `/api/generate` object, about 7 bytes a token: some 900 KiB at a 128k context, so 1 MiB
/// would drop the final figures of a long conversation.
pub const MAX_LINE: usize = 4 << 20;

/// How the response body is cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON object per line (Ollama's streaming responses, `application/x-ndjson`).
    Ndjson,
    /// Server-sent events: `data: ...` lines (`text/event-stream`).
    Sse,
    /// One JSON document, the whole body (a non-streamed response).
    Body,
}

impl Framing {
    /// The framing a response's `Content-Type` announces; `None` for one this parser does not
    /// read (HTML error pages, plain text).
    pub fn from_content_type(ct: &str) -> Option<Framing> {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "text/event-stream" => Some(Framing::Sse),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Framing::Ndjson)
            }
            "application/json" => Some(Framing::Body),
            _ => None,
        }
    }
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A piece of the reply. `tokens`: how many generated tokens it is, when the server says
    /// (llama-server with per-token timings); `None` when it does not (streaming servers send
    /// about one token per chunk, but may merge several: the final figures are the count).
    /// `thinking`: reasoning text (Ollama `message.thinking`, llama-server `reasoning_content`).
    Content {
        text: String,
        tokens: Option<u32>,
        thinking: bool,
    },
    /// The reply is over (`done: true`, `data: [DONE]`, or the end of a stream that carried a
    /// finish reason): every figure the server gave, in one struct. Sent once.
    Done(Box<Figures>),
    /// Something the server sent is an error or is not readable. The stream may go on.
    Error(WireError),
}

/// What went wrong on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum WireError {
    /// The server said so: `{"error": "..."}` or `{"error": {"message": "..."}}`.
    Server(String),
    /// A line that is not the JSON it should be: why, and its first bytes.
    Malformed { why: String, start: String },
    /// A line (or body) over the cap; its bytes were dropped.
    LineTooLong { cap: usize },
    /// The stream ended before the reply did (no `done`, no `[DONE]`, no finish reason).
    Truncated,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Server(m) => write!(f, "the server says: {m}"),
            WireError::Malformed { why, start } => {
                write!(f, "unreadable line from the server ({why}): {start:?}")
            }
            WireError::LineTooLong { cap } if cap % (1 << 20) == 0 => write!(
                f,
                "the server sent a line over {} MiB; it was dropped",
                cap >> 20
            ),
            WireError::LineTooLong { cap } => write!(
                f,
                "the server sent a line over {} KiB; it was dropped",
                cap / 1024
            ),
            WireError::Truncated => {
                f.write_str("the server closed the stream before the reply ended")
            }
        }
    }
}

/// Which part of a response a figure came from. Every figure in [`Figures`] that is `Some`
/// came from the server; none is measured here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Ollama's final object (`eval_count`, `eval_duration`, ... in nanoseconds).
    Ollama,
    /// llama-server's `timings` (milliseconds).
    LlamaTimings,
    /// llama-server's `/completion` fields (`tokens_predicted`, `stop_type`, ...).
    LlamaCompletion,
    /// LM Studio's `stats` (seconds).
    LmStudioStats,
    /// OpenAI `usage` (token counts only) and `finish_reason`.
    OpenAiUsage,
}

impl Source {
    /// Where the figure came from, for a label or a log line.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Ollama => "Ollama's final object",
            Source::LlamaTimings => "llama-server timings",
            Source::LlamaCompletion => "llama-server /completion",
            Source::LmStudioStats => "LM Studio stats",
            Source::OpenAiUsage => "OpenAI usage",
        }
    }

    /// When two parts of a response give the same figure, the more exact one wins: timings
    /// and Ollama's own figures over LM Studio's stats over OpenAI `usage`.
    fn rank(self) -> u8 {
        match self {
            Source::Ollama | Source::LlamaTimings => 3,
            Source::LmStudioStats | Source::LlamaCompletion => 2,
            Source::OpenAiUsage => 1,
        }
    }
}

/// One figure the server reported, and where in its response it was.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reported<T> {
    pub value: T,
    pub from: Source,
}

/// Everything a server said about one reply. Units are fixed by the field names: counts in
/// tokens, `*_s` in seconds (Ollama's nanoseconds and llama-server's milliseconds converted
/// here), `*_tok_s` in tokens per second. `None`: the server did not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The whole prompt, cached part included (OpenAI `prompt_tokens`; llama-server
    /// `prompt_n + cache_n`; Ollama `prompt_eval_count + prompt_eval_cached_count`).
    pub prompt_tokens: Option<Reported<u32>>,
    /// Prompt tokens the server actually processed (not found in its cache).
    pub prompt_eval_tokens: Option<Reported<u32>>,
    /// Prompt tokens reused from the server's cache.
    pub cached_tokens: Option<Reported<u32>>,
    pub generated_tokens: Option<Reported<u32>>,
    /// Loading the model before the reply (Ollama `load_duration`): the cold-load cost.
    pub load_s: Option<Reported<f64>>,
    /// Processing the prompt (prefill).
    pub prompt_s: Option<Reported<f64>>,
    /// Generating the reply (decode).
    pub generation_s: Option<Reported<f64>>,
    /// The server's whole time for the request (Ollama `total_duration`).
    pub total_s: Option<Reported<f64>>,
    /// Time to first token as the server measured it (LM Studio).
    pub ttft_s: Option<Reported<f64>>,
    pub prompt_tok_s: Option<Reported<f64>>,
    pub gen_tok_s: Option<Reported<f64>>,
    /// Why the reply ended, in the server's words ("stop", "length", "eos", "limit", ...).
    pub stop_reason: Option<Reported<String>>,
    /// The model that answered, as the server names it.
    pub model: Option<String>,
}

impl Figures {
    /// The reply stopped at the token limit.
    pub fn hit_token_limit(&self) -> bool {
        self.stop_reason
            .as_ref()
            .is_some_and(|r| matches!(r.value.as_str(), "length" | "limit" | "max_tokens"))
    }

    /// Generation rate from the server's own count and duration (or its own rate).
    pub fn server_gen_tok_s(&self) -> Option<f64> {
        if let (Some(n), Some(s)) = (self.generated_tokens, self.generation_s)
            && s.value > 0.0
        {
            return Some(f64::from(n.value) / s.value);
        }
        self.gen_tok_s.map(|r| r.value)
    }

    /// Prompt processing rate from the server's own count and duration (or its own rate).
    pub fn server_prompt_tok_s(&self) -> Option<f64> {
        if let (Some(n), Some(s)) = (self.prompt_eval_tokens, self.prompt_s)
            && s.value > 0.0
        {
            return Some(f64::from(n.value) / s.value);
        }
        self.prompt_tok_s.map(|r| r.value)
    }
}

/// Keep `value` unless the slot holds a figure from a more exact part of the response.
fn put<T>(slot: &mut Option<Reported<T>>, value: Option<T>, from: Source) {
    if let Some(value) = value
        && slot.as_ref().is_none_or(|r| r.from.rank() <= from.rank())
    {
        *slot = Some(Reported { value, from });
    }
}

fn ns(v: Option<u64>) -> Option<f64> {
    v.map(|n| n as f64 / 1e9)
}

fn ms(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0).map(|x| x / 1000.0)
}

fn rate(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

fn count(v: Option<i64>) -> Option<u32> {
    v.and_then(|n| u32::try_from(n).ok())
}

// The shapes, as far as this program reads them. Every field is optional and unknown fields
// are ignored, so one struct reads every server's chunks.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Chunk {
    error: Option<Value>,
    model: Option<String>,
    // Ollama
    message: Option<Msg>,
    response: Option<String>,
    thinking: Option<String>,
    done: Option<bool>,
    done_reason: Option<String>,
    total_duration: Option<u64>,
    load_duration: Option<u64>,
    prompt_eval_count: Option<i64>,
    prompt_eval_cached_count: Option<i64>,
    prompt_eval_duration: Option<u64>,
    eval_count: Option<i64>,
    eval_duration: Option<u64>,
    // OpenAI
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    // llama-server
    timings: Option<Timings>,
    content: Option<String>,
    stop: Option<Value>,
    stop_type: Option<String>,
    tokens_predicted: Option<i64>,
    tokens_evaluated: Option<i64>,
    // LM Studio
    stats: Option<Stats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Msg {
    content: Option<String>,
    thinking: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice {
    delta: Option<Msg>,
    message: Option<Msg>,
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Timings {
    cache_n: Option<i64>,
    prompt_n: Option<i64>,
    prompt_ms: Option<f64>,
    prompt_per_second: Option<f64>,
    predicted_n: Option<i64>,
    predicted_ms: Option<f64>,
    predicted_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    tokens_per_second: Option<f64>,
    time_to_first_token: Option<f64>,
    generation_time: Option<f64>,
    stop_reason: Option<String>,
}

/// The message an error value carries: a string, `{"message": ...}`, or the JSON itself.
fn error_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}

/// The error message in a whole (non-2xx) response body, if it is JSON with an `error`.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error").map(error_text)
}

/// The first bytes of a bad line, for the error message.
fn start_of(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    String::from_utf8_lossy(cut).into_owned()
}

/// The incremental parser: feed it bytes as they arrive, take the events.
#[derive(Debug)]
pub struct Parser {
    framing: Framing,
    cap: usize,
    /// The line (or body) so far; never longer than `cap`.
    buf: Vec<u8>,
    /// Inside a line over the cap: drop bytes until its end.
    discarding: bool,
    /// The current SSE event's `event:` name.
    sse_event: Option<String>,
    figures: Figures,
    /// The server gave a finish reason (a stream may still end without `[DONE]`).
    finished: bool,
    done: bool,
    /// The server sent an error: a stream that then ends is not also "cut short".
    errored: bool,
    /// llama-server's running `predicted_n` when it sends per-token timings.
    predicted_so_far: Option<u32>,
}

impl Parser {
    pub fn new(framing: Framing) -> Self {
        Self::with_cap(framing, MAX_LINE)
    }

    pub fn with_cap(framing: Framing, cap: usize) -> Self {
        Self {
            framing,
            cap,
            buf: Vec::new(),
            discarding: false,
            sse_event: None,
            figures: Figures::default(),
            finished: false,
            done: false,
            errored: false,
            predicted_so_far: None,
        }
    }

    /// The reply ended (a `Done` event was produced).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Figures gathered so far (the `Done` event carries the final set).
    pub fn figures(&self) -> &Figures {
        &self.figures
    }

    /// The next bytes of the body; events found are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) {
        if self.framing == Framing::Body {
            self.append(bytes, out);
            return;
        }
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.append(&bytes[..i], out);
                    bytes = &bytes[i + 1..];
                    if self.discarding {
                        self.discarding = false;
                    } else {
                        let line = std::mem::take(&mut self.buf);
                        self.line(&line, out);
                        self.buf = line;
                        self.buf.clear();
                    }
                }
                None => {
                    self.append(bytes, out);
                    bytes = &[];
                }
            }
        }
    }

    /// The body ended: the last line without its newline, and the end of the reply if the
    /// server never said so.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if !self.discarding && !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            match self.framing {
                Framing::Body => self.body(&line, out),
                _ => self.line(&line, out),
            }
        }
        self.discarding = false;
        if !self.done {
            if self.finished {
                self.emit_done(out);
            } else if !self.errored {
                out.push(Event::Error(WireError::Truncated));
            }
        }
    }

    /// Add bytes to the current line, or drop them past the cap.
    fn append(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        if self.discarding {
            return;
        }
        if self.buf.len() + bytes.len() > self.cap {
            self.buf = Vec::new();
            self.discarding = true;
            out.push(Event::Error(WireError::LineTooLong { cap: self.cap }));
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        match self.framing {
            Framing::Ndjson => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    self.json(line, out);
                }
            }
            Framing::Sse => self.sse_line(line, out),
            Framing::Body => {}
        }
    }

    fn body(&mut self, body: &[u8], out: &mut Vec<Event>) {
        if !body.iter().all(u8::is_ascii_whitespace) {
            self.json(body, out);
        }
    }

    /// One SSE line. Each `data:` line is dispatched on its own: the servers here send one
    /// JSON object per `data:` line, and some omit the blank line between events.
    fn sse_line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            self.sse_event = None;
            return;
        }
        if line.starts_with(b":") {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if value == b"[DONE]" {
                    self.emit_done(out);
                } else if self.sse_event.as_deref() == Some("error") {
                    let msg = serde_json::from_slice::<Value>(value)
                        .ok()
                        .map(|v| {
                            v.get("error")
                                .map(error_text)
                                .unwrap_or_else(|| error_text(&v))
                        })
                        .unwrap_or_else(|| String::from_utf8_lossy(value).into_owned());
                    self.errored = true;
                    out.push(Event::Error(WireError::Server(msg)));
                } else {
                    self.json(value, out);
                }
            }
            b"event" => self.sse_event = Some(String::from_utf8_lossy(value).into_owned()),
            // A bare `error: {...}` line (older llama-server builds).
            b"error" => {
                let msg = serde_json::from_slice::<Value>(value)
                    .map(|v| {
                        v.get("error")
                            .map(error_text)
                            .unwrap_or_else(|| error_text(&v))
                    })
                    .unwrap_or_else(|_| String::from_utf8_lossy(value).into_owned());
                self.errored = true;
                out.push(Event::Error(WireError::Server(msg)));
            }
            _ => {} // id:, retry:, unknown fields
        }
    }

    fn json(&mut self, text: &[u8], out: &mut Vec<Event>) {
        let chunk: Chunk = match serde_json::from_slice(text) {
            Ok(c) => c,
            Err(e) => {
                out.push(Event::Error(WireError::Malformed {
                    why: e.to_string(),
                    start: start_of(text),
                }));
                return;
            }
        };
        if self.done {
            return; // nothing counts after the end
        }
        if let Some(err) = &chunk.error {
            self.errored = true;
            out.push(Event::Error(WireError::Server(error_text(err))));
            return;
        }
        self.chunk(chunk, out);
    }

    fn chunk(&mut self, c: Chunk, out: &mut Vec<Event>) {
        let f = &mut self.figures;
        if c.model.is_some() {
            f.model = c.model.clone();
        }
        // Tokens in this chunk, from llama-server's running per-token timings.
        let mut tokens = None;
        if let Some(t) = &c.timings {
            if let Some(n) = count(t.predicted_n) {
                tokens = Some(n.saturating_sub(self.predicted_so_far.unwrap_or(0)));
                self.predicted_so_far = Some(n);
            }
            let (prompt, cache) = (count(t.prompt_n), count(t.cache_n));
            put(&mut f.prompt_eval_tokens, prompt, Source::LlamaTimings);
            put(&mut f.cached_tokens, cache, Source::LlamaTimings);
            let total = prompt.map(|p| p.saturating_add(cache.unwrap_or(0)));
            put(&mut f.prompt_tokens, total, Source::LlamaTimings);
            put(
                &mut f.generated_tokens,
                count(t.predicted_n),
                Source::LlamaTimings,
            );
            put(&mut f.prompt_s, ms(t.prompt_ms), Source::LlamaTimings);
            put(
                &mut f.generation_s,
                ms(t.predicted_ms),
                Source::LlamaTimings,
            );
            put(
                &mut f.prompt_tok_s,
                rate(t.prompt_per_second),
                Source::LlamaTimings,
            );
            put(
                &mut f.gen_tok_s,
                rate(t.predicted_per_second),
                Source::LlamaTimings,
            );
        }
        if let Some(u) = &c.usage {
            let prompt = count(u.prompt_tokens);
            let cached = u
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| count(d.cached_tokens));
            put(&mut f.prompt_tokens, prompt, Source::OpenAiUsage);
            put(&mut f.cached_tokens, cached, Source::OpenAiUsage);
            if let (Some(p), Some(c)) = (prompt, cached) {
                put(
                    &mut f.prompt_eval_tokens,
                    Some(p.saturating_sub(c)),
                    Source::OpenAiUsage,
                );
            }
            put(
                &mut f.generated_tokens,
                count(u.completion_tokens),
                Source::OpenAiUsage,
            );
        }
        if let Some(s) = &c.stats {
            put(
                &mut f.gen_tok_s,
                rate(s.tokens_per_second),
                Source::LmStudioStats,
            );
            put(
                &mut f.ttft_s,
                rate(s.time_to_first_token),
                Source::LmStudioStats,
            );
            put(
                &mut f.generation_s,
                rate(s.generation_time),
                Source::LmStudioStats,
            );
            put(
                &mut f.stop_reason,
                s.stop_reason.clone(),
                Source::LmStudioStats,
            );
        }
        // Ollama's figures ride only on the final object.
        if c.done == Some(true) {
            let eval = count(c.prompt_eval_count);
            let cached = count(c.prompt_eval_cached_count);
            put(&mut f.prompt_eval_tokens, eval, Source::Ollama);
            put(&mut f.cached_tokens, cached, Source::Ollama);
            let total = eval.map(|e| e.saturating_add(cached.unwrap_or(0)));
            put(&mut f.prompt_tokens, total, Source::Ollama);
            put(&mut f.generated_tokens, count(c.eval_count), Source::Ollama);
            put(&mut f.load_s, ns(c.load_duration), Source::Ollama);
            put(&mut f.prompt_s, ns(c.prompt_eval_duration), Source::Ollama);
            put(&mut f.generation_s, ns(c.eval_duration), Source::Ollama);
            put(&mut f.total_s, ns(c.total_duration), Source::Ollama);
            put(&mut f.stop_reason, c.done_reason.clone(), Source::Ollama);
        }
        // llama-server /completion
        if c.stop.as_ref().and_then(Value::as_bool) == Some(true) {
            put(
                &mut f.generated_tokens,
                count(c.tokens_predicted),
                Source::LlamaCompletion,
            );
            put(
                &mut f.prompt_tokens,
                count(c.tokens_evaluated),
                Source::LlamaCompletion,
            );
            put(
                &mut f.stop_reason,
                c.stop_type.clone(),
                Source::LlamaCompletion,
            );
            self.finished = true;
        }

        // The text of this chunk, in the order the server meant it.
        let mut pieces: Vec<(String, bool)> = Vec::new();
        let mut push_msg = |m: &Msg| {
            for t in [&m.thinking, &m.reasoning_content].into_iter().flatten() {
                pieces.push((t.clone(), true));
            }
            if let Some(t) = &m.content {
                pieces.push((t.clone(), false));
            }
        };
        if let Some(m) = &c.message {
            push_msg(m);
        }
        if let Some(first) = c.choices.as_ref().and_then(|v| v.first()) {
            if let Some(m) = first.delta.as_ref().or(first.message.as_ref()) {
                push_msg(m);
            }
            if let Some(t) = &first.text {
                pieces.push((t.clone(), false));
            }
            if let Some(r) = &first.finish_reason {
                put(
                    &mut self.figures.stop_reason,
                    Some(r.clone()),
                    Source::OpenAiUsage,
                );
                self.finished = true;
            }
        }
        if let Some(t) = &c.thinking {
            pieces.push((t.clone(), true));
        }
        for t in [&c.response, &c.content].into_iter().flatten() {
            pieces.push((t.clone(), false));
        }
        let mut first = true;
        for (text, thinking) in pieces {
            if text.is_empty() {
                continue;
            }
            out.push(Event::Content {
                text,
                tokens: if first { tokens } else { Some(0) }.filter(|_| tokens.is_some()),
                thinking,
            });
            first = false;
        }
        if c.done == Some(true) {
            self.emit_done(out);
        }
        // A non-streamed body is the whole reply.
        if self.framing == Framing::Body && !self.done {
            self.emit_done(out);
        }
    }

    fn emit_done(&mut self, out: &mut Vec<Event>) {
        if !self.done {
            self.done = true;
            out.push(Event::Done(Box::new(self.figures.clone())));
        }
    }
}

/// The endpoint a chat goes to, which decides the body's shape and the response's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// Ollama `POST /api/chat`.
    OllamaChat,
    /// Ollama `POST /api/generate` (a bare prompt).
    OllamaGenerate,
    /// llama-server `POST /v1/chat/completions`, with its sampling extensions.
    LlamaChat,
    /// llama-server `POST /completion` (a bare prompt).
    LlamaCompletion,
    /// LM Studio `POST /api/v0/chat/completions` (OpenAI shape plus `stats`).
    LmStudioChat,
    /// Any OpenAI-compatible `POST /v1/chat/completions`: standard fields only.
    OpenAiChat,
}

impl Api {
    pub fn path(self) -> &'static str {
        match self {
            Api::OllamaChat => "/api/chat",
            Api::OllamaGenerate => "/api/generate",
            Api::LlamaChat | Api::OpenAiChat => "/v1/chat/completions",
            Api::LlamaCompletion => "/completion",
            Api::LmStudioChat => "/api/v0/chat/completions",
        }
    }

    /// How the response to a request with `stream` is framed.
    pub fn framing(self, stream: bool) -> Framing {
        match (self, stream) {
            (_, false) => Framing::Body,
            (Api::OllamaChat | Api::OllamaGenerate, true) => Framing::Ndjson,
            (_, true) => Framing::Sse,
        }
    }
}

/// One turn of a conversation, as every chat API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Sampling settings; each is sent only where it is `Some` and the API has it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub seed: Option<u32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
}

/// Insert `key: value` when the value is there.
fn opt<T: Serialize>(obj: &mut serde_json::Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v
        && let Ok(v) = serde_json::to_value(v)
    {
        obj.insert(key.into(), v);
    }
}

/// The prompt for the bare-prompt APIs: the last user message (they keep no conversation).
fn last_user(messages: &[Message]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map_or("", |m| m.content.as_str())
}

/// The request body for a chat of `messages` with `model` on `api`.
pub fn chat_body(api: Api, model: &str, messages: &[Message], s: &Sampling, stream: bool) -> Value {
    let mut body = serde_json::Map::new();
    match api {
        Api::OllamaChat | Api::OllamaGenerate => {
            body.insert("model".into(), json!(model));
            if api == Api::OllamaChat {
                body.insert("messages".into(), json!(messages));
            } else {
                body.insert("prompt".into(), json!(last_user(messages)));
            }
            body.insert("stream".into(), json!(stream));
            let mut o = serde_json::Map::new();
            opt(&mut o, "num_predict", s.max_tokens);
            opt(&mut o, "temperature", s.temperature);
            opt(&mut o, "seed", s.seed);
            opt(&mut o, "top_k", s.top_k);
            opt(&mut o, "top_p", s.top_p);
            opt(&mut o, "min_p", s.min_p);
            if !o.is_empty() {
                body.insert("options".into(), Value::Object(o));
            }
        }
        Api::LlamaCompletion => {
            body.insert("prompt".into(), json!(last_user(messages)));
            body.insert("stream".into(), json!(stream));
            body.insert("cache_prompt".into(), json!(true));
            opt(&mut body, "n_predict", s.max_tokens);
            opt(&mut body, "temperature", s.temperature);
            opt(&mut body, "seed", s.seed);
            opt(&mut body, "top_k", s.top_k);
            opt(&mut body, "top_p", s.top_p);
            opt(&mut body, "min_p", s.min_p);
        }
        Api::LlamaChat | Api::LmStudioChat | Api::OpenAiChat => {
            if !model.is_empty() {
                body.insert("model".into(), json!(model));
            }
            body.insert("messages".into(), json!(messages));
            body.insert("stream".into(), json!(stream));
            if stream {
                body.insert("stream_options".into(), json!({"include_usage": true}));
            }
            opt(&mut body, "max_tokens", s.max_tokens);
            opt(&mut body, "temperature", s.temperature);
            opt(&mut body, "seed", s.seed);
            opt(&mut body, "top_p", s.top_p);
            if matches!(api, Api::LlamaChat | Api::LmStudioChat) {
                opt(&mut body, "top_k", s.top_k);
            }
            if api == Api::LlamaChat {
                opt(&mut body, "min_p", s.min_p);
                body.insert("cache_prompt".into(), json!(true));
            }
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `bytes` in pieces of `step` bytes, then finish.
    fn parse_in(framing: Framing, bytes: &[u8], step: usize) -> Vec<Event> {
        let mut p = Parser::new(framing);
        let mut out = Vec::new();
        for piece in bytes.chunks(step.max(1)) {
            p.feed(piece, &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn text_of(events: &[Event]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Content {
                    text,
                    thinking: false,
                    ..
                } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn done_of(events: &[Event]) -> Figures {
        let done: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Done(f) => Some((**f).clone()),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), 1, "exactly one Done in {events:?}");
        done[0].clone()
    }

    const OLLAMA_CHAT: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"Héllo"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":" wörld 😀"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":5191566416,"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,"eval_duration":4799921000}"#,
        "\n"
    );

    #[test]
    fn ollama_chat_in_every_chunking_gives_the_same_text_and_seconds() {
        for step in [1, 2, 3, 7, 64, 4096] {
            let ev = parse_in(Framing::Ndjson, OLLAMA_CHAT.as_bytes(), step);
            assert_eq!(text_of(&ev), "Héllo wörld 😀", "step {step}");
            let f = done_of(&ev);
            assert_eq!(f.generated_tokens.map(|r| r.value), Some(298));
            assert_eq!(f.generated_tokens.map(|r| r.from), Some(Source::Ollama));
            assert_eq!(f.prompt_eval_tokens.map(|r| r.value), Some(26));
            assert_eq!(f.prompt_tokens.map(|r| r.value), Some(26));
            assert!((f.generation_s.map_or(0.0, |r| r.value) - 4.799921).abs() < 1e-9);
            assert!((f.load_s.map_or(0.0, |r| r.value) - 0.002154458).abs() < 1e-12);
            assert!((f.prompt_s.map_or(0.0, |r| r.value) - 0.383809).abs() < 1e-9);
            assert!((f.total_s.map_or(0.0, |r| r.value) - 5.191566416).abs() < 1e-9);
            let rate = f.server_gen_tok_s().unwrap_or(0.0);
            assert!((rate - 298.0 / 4.799921).abs() < 1e-6, "{rate}");
            assert_eq!(f.stop_reason.clone().map(|r| r.value), Some("stop".into()));
            assert_eq!(f.model.as_deref(), Some("llama3.2"));
            assert!(!ev.iter().any(|e| matches!(e, Event::Error(_))), "{ev:?}");
        }
    }

    #[test]
    fn ollama_generate_cached_count_and_length_stop() {
        let s = concat!(
            r#"{"model":"m","response":"a","done":false}"#,
            "\n",
            r#"{"model":"m","response":"","done":true,"done_reason":"length","context":[1,2,3],"prompt_eval_count":4,"prompt_eval_cached_count":10,"eval_count":1,"eval_duration":1000}"#
        );
        let ev = parse_in(Framing::Ndjson, s.as_bytes(), 5);
        assert_eq!(text_of(&ev), "a");
        let f = done_of(&ev);
        assert_eq!(f.prompt_tokens.map(|r| r.value), Some(14));
        assert_eq!(f.cached_tokens.map(|r| r.value), Some(10));
        assert!(f.hit_token_limit());
        assert_eq!(f.generation_s.map(|r| r.value), Some(1e-6));
    }

    const LLAMA_SSE: &str = concat!(
        "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}],\"object\":\"chat.completion.chunk\"}\n\n",
        "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n",
        "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}],\"model\":\"smol\",\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":30,\"total_tokens\":32,\"prompt_tokens_details\":{\"cached_tokens\":20}},\"timings\":{\"cache_n\":20,\"prompt_n\":10,\"prompt_ms\":12.5,\"prompt_per_token_ms\":1.25,\"prompt_per_second\":800.0,\"predicted_n\":2,\"predicted_ms\":40.0,\"predicted_per_token_ms\":20.0,\"predicted_per_second\":50.0}}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn llama_server_sse_timings_win_over_usage_and_ms_become_seconds() {
        for step in [1, 5, 1000] {
            let ev = parse_in(Framing::Sse, LLAMA_SSE.as_bytes(), step);
            assert_eq!(text_of(&ev), "Hi there");
            let f = done_of(&ev);
            assert_eq!(
                f.generated_tokens.map(|r| (r.value, r.from)),
                Some((2, Source::LlamaTimings))
            );
            assert_eq!(f.prompt_tokens.map(|r| r.value), Some(30));
            assert_eq!(f.prompt_eval_tokens.map(|r| r.value), Some(10));
            assert_eq!(f.cached_tokens.map(|r| r.value), Some(20));
            assert_eq!(f.prompt_s.map(|r| r.value), Some(0.0125));
            assert_eq!(f.generation_s.map(|r| r.value), Some(0.04));
            assert_eq!(f.server_gen_tok_s(), Some(50.0));
            assert_eq!(f.server_prompt_tok_s(), Some(800.0));
            assert!(f.hit_token_limit());
            // The Done comes at [DONE], after all the text.
            assert!(matches!(ev.last(), Some(Event::Done(_))));
        }
    }

    #[test]
    fn openai_usage_alone_with_cached_tokens_and_crlf() {
        let s = concat!(
            ": keep-alive\r\n\r\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":100,\"completion_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\r\n\r\n",
            "data: [DONE]\r\n\r\n"
        );
        let ev = parse_in(Framing::Sse, s.as_bytes(), 3);
        assert_eq!(text_of(&ev), "x");
        let f = done_of(&ev);
        assert_eq!(
            f.generated_tokens.map(|r| (r.value, r.from)),
            Some((7, Source::OpenAiUsage))
        );
        assert_eq!(f.cached_tokens.map(|r| r.value), Some(64));
        assert_eq!(f.prompt_eval_tokens.map(|r| r.value), Some(36));
        assert_eq!(f.generation_s, None, "usage has no durations");
        assert_eq!(f.stop_reason.clone().map(|r| r.value), Some("stop".into()));
    }

    #[test]
    fn lm_studio_stats_are_seconds_already() {
        let s = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9},\"stats\":{\"tokens_per_second\":42.5,\"time_to_first_token\":0.111,\"generation_time\":0.2,\"stop_reason\":\"eosFound\"}}\n\n",
            "data: [DONE]\n\n"
        );
        let f = done_of(&parse_in(Framing::Sse, s.as_bytes(), 4));
        assert_eq!(
            f.ttft_s.map(|r| (r.value, r.from)),
            Some((0.111, Source::LmStudioStats))
        );
        assert_eq!(f.generation_s.map(|r| r.value), Some(0.2));
        // The stats' stop reason is more exact than OpenAI's finish_reason.
        assert_eq!(
            f.stop_reason.clone().map(|r| r.value),
            Some("eosFound".into())
        );
        assert_eq!(f.generated_tokens.map(|r| r.value), Some(9));
    }

    #[test]
    fn llama_completion_stream_ends_without_done_marker() {
        let s = concat!(
            "data: {\"content\":\"A\",\"stop\":false}\n\n",
            "data: {\"content\":\"B\",\"stop\":false}\n\n",
            "data: {\"content\":\"\",\"stop\":true,\"stop_type\":\"limit\",\"tokens_predicted\":2,\"tokens_evaluated\":5,\"timings\":{\"prompt_n\":5,\"prompt_ms\":3.0,\"predicted_n\":2,\"predicted_ms\":10.0}}\n\n",
        );
        let ev = parse_in(Framing::Sse, s.as_bytes(), 2);
        assert_eq!(text_of(&ev), "AB");
        let f = done_of(&ev);
        assert_eq!(
            f.generated_tokens.map(|r| (r.value, r.from)),
            Some((2, Source::LlamaTimings))
        );
        assert_eq!(f.stop_reason.clone().map(|r| r.value), Some("limit".into()));
        assert!(f.hit_token_limit());
    }

    #[test]
    fn per_token_timings_count_tokens_per_chunk() {
        let s = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}],\"timings\":{\"predicted_n\":2}}\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}],\"timings\":{\"predicted_n\":3}}\n",
            "data: [DONE]\n"
        );
        let ev = parse_in(Framing::Sse, s.as_bytes(), 7);
        let counts: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Content { tokens, .. } => Some(*tokens),
                _ => None,
            })
            .collect();
        assert_eq!(counts, vec![Some(2), Some(1)]);
    }

    #[test]
    fn non_streamed_bodies() {
        let ollama = r#"{"model":"m","message":{"role":"assistant","content":"whole"},"done":true,"eval_count":3,"eval_duration":3000000000}"#;
        let ev = parse_in(Framing::Body, ollama.as_bytes(), 4);
        assert_eq!(text_of(&ev), "whole");
        assert_eq!(done_of(&ev).server_gen_tok_s(), Some(1.0));
        // Pretty-printed JSON over several lines is one body.
        let openai = "{\n  \"choices\": [{\"message\": {\"content\": \"hi\"}, \"finish_reason\": \"stop\"}],\n  \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 1}\n}\n";
        let ev = parse_in(Framing::Body, openai.as_bytes(), 3);
        assert_eq!(text_of(&ev), "hi");
        assert_eq!(done_of(&ev).generated_tokens.map(|r| r.value), Some(1));
    }

    #[test]
    fn thinking_is_marked() {
        let s = "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\"},\"done\":false}\n{\"message\":{\"content\":\"yes\"},\"done\":true}\n";
        let ev = parse_in(Framing::Ndjson, s.as_bytes(), 1000);
        assert_eq!(
            ev[0],
            Event::Content {
                text: "hmm".into(),
                tokens: None,
                thinking: true
            }
        );
        assert_eq!(text_of(&ev), "yes");
    }

    #[test]
    fn server_errors_in_every_shape() {
        let ev = parse_in(Framing::Ndjson, b"{\"error\":\"model 'x' not found\"}\n", 3);
        assert_eq!(
            ev[0],
            Event::Error(WireError::Server("model 'x' not found".into()))
        );
        let ev = parse_in(
            Framing::Sse,
            b"data: {\"error\":{\"code\":500,\"message\":\"context full\",\"type\":\"server_error\"}}\n\n",
            3,
        );
        assert_eq!(
            ev[0],
            Event::Error(WireError::Server("context full".into()))
        );
        let ev = parse_in(
            Framing::Sse,
            b"event: error\ndata: {\"message\":\"boom\"}\n\n",
            3,
        );
        assert_eq!(ev[0], Event::Error(WireError::Server("boom".into())));
        let ev = parse_in(Framing::Sse, b"error: {\"message\":\"old\"}\n\n", 3);
        assert_eq!(ev[0], Event::Error(WireError::Server("old".into())));
        assert_eq!(
            error_message(
                br#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#
            ),
            Some("no such model".into())
        );
        assert_eq!(error_message(b"<html>502</html>"), None);
    }

    #[test]
    fn malformed_lines_are_errors_and_the_stream_goes_on() {
        let s = b"{\"message\":{\"content\":\"a\"}}\n{not json\n\xff\xfe\n{\"message\":{\"content\":\"b\"},\"done\":true}\n";
        let ev = parse_in(Framing::Ndjson, s, 2);
        let bad = ev
            .iter()
            .filter(|e| matches!(e, Event::Error(WireError::Malformed { .. })))
            .count();
        assert_eq!(bad, 2, "{ev:?}");
        assert_eq!(text_of(&ev), "ab");
        done_of(&ev);
        // Wrong types in a known field are malformed too, not a panic.
        let ev = parse_in(
            Framing::Ndjson,
            b"{\"eval_count\":\"many\",\"done\":true}\n",
            100,
        );
        assert!(matches!(ev[0], Event::Error(WireError::Malformed { .. })));
    }

    #[test]
    fn a_line_over_the_cap_is_one_error_and_is_never_held() {
        let mut p = Parser::with_cap(Framing::Ndjson, 1024);
        let mut out = Vec::new();
        p.feed(
            b"{\"message\":{\"content\":\"a\"}}\n{\"message\":{\"content\":\"",
            &mut out,
        );
        let big = vec![b'x'; 4096];
        for _ in 0..2560 {
            // 10 MiB in 4 KiB pieces
            p.feed(&big, &mut out);
            assert!(p.buf.capacity() <= 2048, "held {} bytes", p.buf.capacity());
        }
        p.feed(
            b"\"}}\n{\"message\":{\"content\":\"b\"},\"done\":true}\n",
            &mut out,
        );
        p.finish(&mut out);
        let long = out
            .iter()
            .filter(|e| matches!(e, Event::Error(WireError::LineTooLong { cap: 1024 })))
            .count();
        assert_eq!(long, 1, "{out:?}");
        assert_eq!(text_of(&out), "ab");
        done_of(&out);
        // A body over the cap: the same.
        let mut p = Parser::with_cap(Framing::Body, 100);
        let mut out = Vec::new();
        p.feed(&[b' '; 300], &mut out);
        p.finish(&mut out);
        assert_eq!(out[0], Event::Error(WireError::LineTooLong { cap: 100 }));
        assert!(p.buf.capacity() <= 100);
    }

    #[test]
    fn a_stream_cut_short_says_so_and_one_with_a_finish_reason_is_done() {
        let ev = parse_in(
            Framing::Ndjson,
            b"{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"mess",
            4,
        );
        assert_eq!(text_of(&ev), "a");
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Error(WireError::Malformed { .. })))
        );
        assert_eq!(ev.last(), Some(&Event::Error(WireError::Truncated)));
        let ev = parse_in(
            Framing::Sse,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n",
            4,
        );
        done_of(&ev);
    }

    #[test]
    fn nothing_after_done_counts() {
        let s = "{\"message\":{\"content\":\"a\"},\"done\":true}\n{\"message\":{\"content\":\"late\"}}\n";
        let ev = parse_in(Framing::Ndjson, s.as_bytes(), 100);
        assert_eq!(text_of(&ev), "a");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Framing::from_content_type("text/event-stream; charset=utf-8"),
            Some(Framing::Sse)
        );
        assert_eq!(
            Framing::from_content_type("application/x-ndjson"),
            Some(Framing::Ndjson)
        );
        assert_eq!(
            Framing::from_content_type("Application/JSON"),
            Some(Framing::Body)
        );
        assert_eq!(Framing::from_content_type("text/html"), None);
    }

    #[test]
    fn request_bodies() {
        let msgs = [
            Message::new("system", "be brief"),
            Message::new("user", "hi"),
        ];
        let s = Sampling {
            max_tokens: Some(64),
            temperature: Some(0.5),
            seed: Some(7),
            top_k: Some(40),
            top_p: None,
            min_p: Some(0.05),
        };
        let b = chat_body(Api::OllamaChat, "llama3.2", &msgs, &s, true);
        assert_eq!(b["stream"], json!(true));
        assert_eq!(b["messages"][1]["content"], json!("hi"));
        assert_eq!(b["options"]["num_predict"], json!(64));
        assert_eq!(b["options"]["seed"], json!(7));
        assert!(b["options"].get("top_p").is_none());
        let b = chat_body(Api::OllamaGenerate, "m", &msgs, &s, false);
        assert_eq!(b["prompt"], json!("hi"));
        assert_eq!(b["stream"], json!(false));
        let b = chat_body(Api::OpenAiChat, "gpt", &msgs, &s, true);
        assert_eq!(b["max_tokens"], json!(64));
        assert_eq!(b["stream_options"]["include_usage"], json!(true));
        assert!(b.get("top_k").is_none() && b.get("min_p").is_none());
        let b = chat_body(Api::LlamaChat, "", &msgs, &s, true);
        assert!(b.get("model").is_none());
        assert_eq!(b["top_k"], json!(40));
        let b = chat_body(Api::LlamaCompletion, "", &msgs, &s, true);
        assert_eq!(b["n_predict"], json!(64));
        assert_eq!(Api::OllamaChat.framing(true), Framing::Ndjson);
        assert_eq!(Api::LlamaChat.framing(true), Framing::Sse);
        assert_eq!(Api::OllamaChat.framing(false), Framing::Body);
    }
}
