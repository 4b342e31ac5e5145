//! The tap: what one request's bytes say, learned as they pass.
//!
//! The response body goes through [`TapBody`] chunk by chunk, unchanged; each chunk is also
//! fed to the one wire-format parser (`engine::remote::protocol`), whose events give the
//! time each generated token was seen and, at the end, the server's own figures. The request
//! body goes through [`SniffBody`], which keeps at most [`SNIFF_CAP`] bytes of it to read the
//! model asked for. Nothing holds a whole body: the parser caps its line, the sniffer its
//! prefix, and [`BUFFERED`] counts the bytes held at any moment (tests read it).

use crate::engine::remote::protocol::{Event, Figures, Framing, Parser};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// The request body's first bytes kept to find `"model"` in (a model name sits near the
/// start of every chat body; a 10 MB prompt is not kept).
pub const SNIFF_CAP: usize = 64 * 1024;
/// Token times kept per request (8 bytes each): a reply longer than this keeps counting but
/// stops timing.
pub const MAX_TOKEN_TIMES: usize = 1 << 20;

/// Bytes the proxy holds right now in taps (sniff prefixes); the parser's own line buffer is
/// capped at its `MAX_LINE`.
pub static BUFFERED: AtomicUsize = AtomicUsize::new(0);

/// What the proxy tells its books.
#[derive(Debug, Clone)]
pub enum ProxyEvent {
    /// A request arrived (the attribution holds back overlapping requests until it ends).
    Started { id: u64, t0: f64 },
    /// A request ended, one way or another.
    Finished(Box<Exchange>),
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response passed.
    Complete,
    /// The client went away before the end.
    ClientClosed,
    /// The upstream broke off mid-body.
    UpstreamBroke(String),
    /// The upstream could not be reached or sent no response: the client got a 502.
    Unreachable(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamBroke(_) => "upstream_broke",
            Outcome::Unreachable(_) => "upstream_unreachable",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::UpstreamBroke(r) | Outcome::Unreachable(r) => Some(r),
            _ => None,
        }
    }
}

/// Everything the proxy saw of one request, on the sampler clock (seconds).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub id: u64,
    pub client: SocketAddr,
    pub method: String,
    /// The path, without the query.
    pub endpoint: String,
    pub status: u16,
    pub outcome: Outcome,
    pub t0: f64,
    pub t1: f64,
    /// The model the request asked for.
    pub requested_model: Option<String>,
    /// The response's first body byte.
    pub first_byte: Option<f64>,
    /// Each generated token's time on the stream (the first is the time to first token).
    pub token_times: Vec<f64>,
    /// Generated tokens seen on the stream (beyond [`MAX_TOKEN_TIMES`] too).
    pub tokens_seen: u64,
    /// The server's own figures, from the parser's `Done`.
    pub figures: Option<Figures>,
    /// What the parser could not read (first few).
    pub wire_errors: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Shared between the request's body (which learns the model) and the response's tap.
#[derive(Debug, Default)]
pub struct Sniff {
    prefix: Vec<u8>,
    pub bytes: u64,
}

impl Sniff {
    fn feed(&mut self, b: &[u8]) {
        self.bytes += b.len() as u64;
        let room = SNIFF_CAP.saturating_sub(self.prefix.len());
        let take = room.min(b.len());
        if take > 0 {
            self.prefix.extend_from_slice(&b[..take]);
            BUFFERED.fetch_add(take, Ordering::Relaxed);
        }
    }

    /// The `"model"` string of a JSON body, from its first bytes.
    pub fn model(&self) -> Option<String> {
        model_in(&self.prefix)
    }
}

impl Drop for Sniff {
    fn drop(&mut self) {
        BUFFERED.fetch_sub(self.prefix.len(), Ordering::Relaxed);
    }
}

/// The value of the first `"model": "..."` in `json` (which may be cut short).
pub fn model_in(json: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(json);
    let mut rest: &str = &text;
    while let Some(i) = rest.find("\"model\"") {
        rest = &rest[i + 7..];
        let after = rest.trim_start();
        if let Some(v) = after.strip_prefix(':') {
            let v = v.trim_start();
            if v.starts_with('"') {
                let mut de = serde_json::Deserializer::from_str(v).into_iter::<String>();
                if let Some(Ok(s)) = de.next() {
                    return Some(s);
                }
            }
        }
    }
    None
}

/// The request body, passed through frame by frame, its first bytes sniffed.
pub struct SniffBody {
    inner: Incoming,
    sniff: Arc<Mutex<Sniff>>,
}

impl SniffBody {
    pub fn new(inner: Incoming, sniff: Arc<Mutex<Sniff>>) -> Self {
        Self { inner, sniff }
    }
}

impl Body for SniffBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(d) = frame.data_ref()
            && let Ok(mut s) = this.sniff.lock()
        {
            s.feed(d);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request's tap; it reports the exchange once, when the body ends or is dropped.
pub struct Tap {
    ex: Option<Exchange>,
    clock: Instant,
    parser: Option<Parser>,
    events: Vec<Event>,
    sniff: Arc<Mutex<Sniff>>,
    tx: UnboundedSender<ProxyEvent>,
}

impl Tap {
    /// `framing`: how to read the body (`None`: a body the parser does not read; it passes
    /// untouched and only its size and timing are kept).
    pub fn new(
        ex: Exchange,
        clock: Instant,
        framing: Option<Framing>,
        sniff: Arc<Mutex<Sniff>>,
        tx: UnboundedSender<ProxyEvent>,
    ) -> Self {
        Self {
            ex: Some(ex),
            clock,
            parser: framing.map(Parser::new),
            events: Vec::new(),
            sniff,
            tx,
        }
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// A chunk passed.
    pub fn chunk(&mut self, bytes: &[u8]) {
        let now = self.now();
        if let Some(ex) = self.ex.as_mut() {
            ex.first_byte.get_or_insert(now);
            ex.bytes_out += bytes.len() as u64;
        }
        if let Some(p) = self.parser.as_mut() {
            p.feed(bytes, &mut self.events);
        }
        self.drain(now);
    }

    fn drain(&mut self, now: f64) {
        let Some(ex) = self.ex.as_mut() else {
            self.events.clear();
            return;
        };
        for e in self.events.drain(..) {
            match e {
                Event::Content { tokens, .. } => {
                    let n = u64::from(tokens.unwrap_or(1));
                    ex.tokens_seen += n;
                    for _ in 0..n {
                        if ex.token_times.len() < MAX_TOKEN_TIMES {
                            ex.token_times.push(now);
                        }
                    }
                }
                Event::Done(f) => ex.figures = Some(*f),
                Event::Error(w) => {
                    if ex.wire_errors.len() < 4 {
                        ex.wire_errors.push(w.to_string());
                    }
                }
            }
        }
    }

    /// The exchange ended: read what the parser still holds and report it.
    pub fn end(&mut self, outcome: Outcome) {
        let now = self.now();
        if let Some(p) = self.parser.as_mut() {
            // A stream cut short is said by the outcome; the parser's "truncated" adds nothing.
            if outcome == Outcome::Complete {
                p.finish(&mut self.events);
            }
            if !p.is_done() && self.events.is_empty() {
                // Keep the figures a stream gave before it broke off (usage, timings).
                let f = p.figures().clone();
                if f != Figures::default()
                    && let Some(ex) = self.ex.as_mut()
                {
                    ex.figures.get_or_insert(f);
                }
            }
        }
        self.drain(now);
        let Some(mut ex) = self.ex.take() else {
            return;
        };
        ex.t1 = now;
        ex.outcome = outcome;
        if let Ok(s) = self.sniff.lock() {
            ex.requested_model = s.model();
            ex.bytes_in = s.bytes;
        }
        let _ = self.tx.send(ProxyEvent::Finished(Box::new(ex)));
    }
}

/// The response body, passed through frame by frame; the tap sees each data frame as it is
/// handed on.
pub struct TapBody {
    inner: Incoming,
    tap: Tap,
}

impl TapBody {
    pub fn new(inner: Incoming, tap: Tap) -> Self {
        Self { inner, tap }
    }
}

impl Body for TapBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.tap.chunk(d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.tap.end(Outcome::UpstreamBroke(cause(&e)));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.tap.end(Outcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TapBody {
    fn drop(&mut self) {
        // Dropped before its end was read: the client went away (or the body was empty and
        // never polled).
        let outcome = if self.inner.is_end_stream() {
            Outcome::Complete
        } else {
            Outcome::ClientClosed
        };
        self.tap.end(outcome);
    }
}

/// The cause of a hyper error, its whole chain on one line.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}
