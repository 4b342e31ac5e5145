//! The tap: what one request's bytes say, learned as they pass.
//!
//! Both bodies go through a [`TapBody`] chunk by chunk, unchanged; each tap hands what it saw
//! to a closure. The response's feeds a [`Tap`]: each chunk goes to the one wire-format parser
//! (`engine::remote::protocol`), whose events give the time each generated token was seen
//! and, at the end, the server's own figures. The request's feeds a [`Sniff`], which keeps at
//! most [`SNIFF_CAP`] bytes of it to read the model asked for. Nothing holds a whole body: the
//! parser caps its line, the sniffer its prefix, and [`BUFFERED`] counts the bytes held at any
//! moment (tests read it).

use crate::engine::remote::protocol::{Event, Figures, Framing, Parser};
use crate::net::server::{Conn, Cut};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
    /// A request arrived.
    Started { id: u64, t0: f64 },
    /// An open request's stream showed `n` generated tokens at `t` (the books split the time
    /// it is open in parts, by the tokens seen so far).
    Tokens { id: u64, t: f64, n: u32 },
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
    /// The proxy ended it: it stopped, or the client took nothing for its idle limit.
    Cut(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamBroke(_) => "upstream_broke",
            Outcome::Unreachable(_) => "upstream_unreachable",
            Outcome::Cut(_) => "cut_by_proxy",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::UpstreamBroke(r) | Outcome::Unreachable(r) | Outcome::Cut(r) => Some(r),
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
    pub fn feed(&mut self, b: &[u8]) {
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

/// One request's tap: it learns the exchange as it passes and reports it once, when it ends,
/// or when it is dropped before (the client left, or the server cut the connection: `conn`
/// says which).
pub struct Tap {
    ex: Option<Exchange>,
    clock: Instant,
    parser: Option<Parser>,
    events: Vec<Event>,
    sniff: Arc<Mutex<Sniff>>,
    tx: UnboundedSender<ProxyEvent>,
    conn: Conn,
}

impl Tap {
    /// Open the exchange; nothing is read from the response until [`Tap::read`].
    pub fn new(
        ex: Exchange,
        clock: Instant,
        sniff: Arc<Mutex<Sniff>>,
        tx: UnboundedSender<ProxyEvent>,
        conn: Conn,
    ) -> Self {
        Self {
            ex: Some(ex),
            clock,
            parser: None,
            events: Vec::new(),
            sniff,
            tx,
            conn,
        }
    }

    /// The response's head came with `status`; `framing`: how to read its body (`None`: a
    /// body the parser does not read; it passes untouched and only its size and timing are
    /// kept).
    pub fn read(&mut self, status: u16, framing: Option<Framing>) {
        if let Some(ex) = self.ex.as_mut() {
            ex.status = status;
        }
        self.parser = framing.map(Parser::new);
    }

    /// The client got `status` from the proxy itself, because of `why` (the upstream could
    /// not be reached or sent no response).
    pub fn fail(&mut self, status: u16, why: String) {
        if let Some(ex) = self.ex.as_mut() {
            ex.status = status;
        }
        self.end(Outcome::Unreachable(why));
    }

    /// What the response body's [`TapBody`] saw.
    pub fn seen(&mut self, seen: Seen<'_>) {
        match seen {
            Seen::Chunk(b) => self.chunk(b),
            Seen::End => self.end(Outcome::Complete),
            Seen::Broke(why) => self.end(Outcome::UpstreamBroke(why)),
            Seen::Dropped { waiting } => {
                let outcome = self.dropped(waiting);
                self.end(outcome);
            }
        }
    }

    /// How an exchange dropped before its end ended. `waiting`: on the upstream.
    fn dropped(&self, waiting: bool) -> Outcome {
        let secs = |d: Duration| d.as_secs_f64();
        match self.conn.cut() {
            None => Outcome::ClientClosed,
            Some(Cut::Idle(d)) if waiting => {
                Outcome::UpstreamBroke(format!("the upstream sent nothing for {} s", secs(d)))
            }
            Some(Cut::Idle(d)) => {
                Outcome::Cut(format!("the client took nothing for {} s", secs(d)))
            }
            Some(Cut::Exchange(d)) => Outcome::Cut(format!("the exchange ran over {} s", secs(d))),
            Some(Cut::Stopped) => Outcome::Cut("the proxy stopped".into()),
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
                    let _ = self.tx.send(ProxyEvent::Tokens {
                        id: ex.id,
                        t: now,
                        n: u32::try_from(n).unwrap_or(u32::MAX),
                    });
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

impl Drop for Tap {
    fn drop(&mut self) {
        // Dropped before the response's body took it over: the wait for the upstream's answer
        // ended early.
        if self.ex.is_some() {
            let outcome = self.dropped(true);
            self.end(outcome);
        }
    }
}

/// What a [`TapBody`] saw, handed to its closure as it happens.
#[derive(Debug)]
pub enum Seen<'a> {
    /// A data frame, on its way on unchanged.
    Chunk(&'a [u8]),
    /// The body ended whole.
    End,
    /// The body broke off: the cause's whole chain, one line.
    Broke(String),
    /// The body was dropped before its end. `waiting`: its last poll found nothing to pass
    /// (the side it reads from was silent); otherwise the side it writes to stopped taking.
    Dropped { waiting: bool },
}

/// A body passed through frame by frame, unchanged; `on` sees each frame as it passes and,
/// once, how the body ended. One tap for both directions: the proxy's request body (to sniff
/// the model asked for) and its response body (to time the tokens).
pub struct TapBody<B: Body, F: FnMut(Seen<'_>)> {
    inner: B,
    on: F,
    ended: bool,
    waiting: bool,
}

impl<B: Body, F: FnMut(Seen<'_>)> TapBody<B, F> {
    pub fn new(inner: B, on: F) -> Self {
        Self {
            inner,
            on,
            ended: false,
            waiting: false,
        }
    }
}

impl<B, F> Body for TapBody<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    F: FnMut(Seen<'_>) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        this.waiting = polled.is_pending();
        if this.ended {
            return polled;
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    (this.on)(Seen::Chunk(d));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                (this.on)(Seen::Broke(cause(e)));
            }
            Poll::Ready(None) => {
                this.ended = true;
                (this.on)(Seen::End);
            }
            Poll::Pending => {}
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

impl<B: Body, F: FnMut(Seen<'_>)> Drop for TapBody<B, F> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // An empty body may never be polled: it still ended whole.
        if self.inner.is_end_stream() {
            (self.on)(Seen::End);
        } else {
            (self.on)(Seen::Dropped {
                waiting: self.waiting,
            });
        }
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
