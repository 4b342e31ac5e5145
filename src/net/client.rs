//! The one HTTP(S) client, blocking, on `ureq` with rustls, and the one way a network failure
//! is said.
//!
//! Every request has a deadline (a small GET: one deadline for name lookup, connect, TLS,
//! headers and body; a stream: a connect deadline and a limit on the wait for each read), and
//! every body read is capped, so a dead or misbehaving peer costs at most its timeout and never
//! memory. Redirects are not followed (a token must not follow one to another host) and
//! `HTTP_PROXY` is ignored: the peers are on this machine or the LAN.
//!
//! Every failure is a [`NetError`]: the URL, the [`Cause`] (refused, timeout, DNS, TLS, HTTP
//! status, body too large, malformed, lost mid-answer) and the fix, which depends on what
//! should answer there ([`Peer`]). Text from the network is passed through
//! `util::sanitize` before it is put in a line.

use crate::util::sanitize::terminal;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// What should answer at a URL: it decides the fix an error line gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A smart plug or Home Assistant (`[[sensors.plugs]]`).
    Plug,
    /// A model server attached to: Ollama, llama-server, LM Studio, OpenAI-compatible.
    ModelServer,
    /// llama-server's `/metrics` (`llmtop watch`).
    LlamaMetrics,
    /// `llmtop serve` on another host (`--remote`, `compare URL`).
    Llmtop,
}

impl Peer {
    /// How to give a good URL.
    fn url_fix(self) -> &'static str {
        match self {
            Peer::Plug => "use http://HOST[:PORT] or https://HOST[:PORT]",
            Peer::ModelServer => "give the server's address, e.g. http://127.0.0.1:11434",
            Peer::LlamaMetrics => "give llama-server's address, e.g. http://127.0.0.1:8080",
            Peer::Llmtop => "give llmtop serve's address, e.g. http://gpu-box:9464",
        }
    }

    /// What to check when nothing answers.
    fn down_fix(self) -> &'static str {
        match self {
            Peer::Plug => "check the plug is on and the host and port in url",
            Peer::ModelServer => {
                "is the server running? (ollama serve, llama-server --port N, LM Studio's server tab)"
            }
            Peer::LlamaMetrics => "is llama-server running there? Check the host and port",
            Peer::Llmtop => {
                "is `llmtop serve --metrics-addr 0.0.0.0:9464` running there and the port open?"
            }
        }
    }

    /// What to check when an answer does not come in time.
    fn slow_fix(self) -> &'static str {
        match self {
            Peer::Plug => "check the plug is on and reachable",
            Peer::ModelServer => "the server is busy or stuck",
            Peer::LlamaMetrics => "is llama-server running there? Check the host and port",
            Peer::Llmtop => "is `llmtop serve` running there?",
        }
    }

    /// What to check when an answer is not what this peer gives.
    fn wrong_fix(self) -> &'static str {
        match self {
            Peer::Plug => "check url points at the plug's API",
            Peer::ModelServer => "check the address is the model server's",
            Peer::LlamaMetrics => {
                "watch reads llama-server's /metrics (for Ollama or other servers, put llmtop proxy in front)"
            }
            Peer::Llmtop => "is this an llmtop endpoint (llmtop serve) and the path right?",
        }
    }

    /// The fix for an HTTP status; `None`: the status (and the server's message) says it.
    fn status_fix(self, status: u16) -> Option<&'static str> {
        match (self, status) {
            (_, 300..=399) => Some("redirects are not followed: give the final address"),
            (Peer::Plug, 401 | 403) => {
                Some("check token (a Home Assistant long-lived access token)")
            }
            (Peer::Plug, 404) => Some("check url (and entity for Home Assistant)"),
            (Peer::Plug, 500..=599) => {
                Some("the device reports a fault: check it in its own web page, or restart it")
            }
            // llama-server answers 501 "Start it with `--metrics`" when metrics are off.
            (Peer::LlamaMetrics, 501) => Some(
                "llama-server has no /metrics: it was started without --metrics; restart it with --metrics (e.g. llama-server -m MODEL --metrics)",
            ),
            (Peer::LlamaMetrics, 503) => {
                Some("the server is still loading its model; wait until it is ready")
            }
            (Peer::LlamaMetrics | Peer::Llmtop, _) => Some(self.wrong_fix()),
            _ => None,
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    BadUrl(String),
    /// Nothing answers: refused, reset, unreachable.
    Refused(String),
    Timeout(Duration),
    /// The host name does not resolve.
    Dns,
    /// TLS failed; `hint` when the certificate was rejected.
    Tls {
        why: String,
        hint: Option<String>,
    },
    /// A status outside 2xx, with the server's own message when it gave one.
    Status {
        status: u16,
        message: Option<String>,
    },
    /// The answer is over this many bytes.
    TooLarge(u64),
    /// The answer is not what it should be (framing, encoding, content).
    Malformed(String),
    /// The connection broke in the middle of the answer.
    Lost(String),
}

/// A network failure: one line naming the URL, the cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    /// Sanitised.
    pub url: String,
    pub peer: Peer,
    pub cause: Cause,
}

impl NetError {
    pub fn new(url: &str, peer: Peer, cause: Cause) -> Self {
        Self {
            url: terminal(url).into_owned(),
            peer,
            cause,
        }
    }

    /// A status outside 2xx; `message`: the server's own words, if any (sanitised here).
    pub fn status(url: &str, peer: Peer, status: u16, message: Option<&str>) -> Self {
        let message = message.map(|m| one_line(m, 300)).filter(|m| !m.is_empty());
        Self::new(url, peer, Cause::Status { status, message })
    }

    /// A failure of another client (the proxy's hyper client to its upstream), read from its
    /// error chain: an io error's kind says refused or timed out (`timeout`: the connect
    /// timeout it was given), a failed lookup says DNS; anything else broke off.
    pub fn from_chain(
        url: &str,
        peer: Peer,
        e: &(dyn std::error::Error + 'static),
        timeout: Duration,
    ) -> Self {
        use std::io::ErrorKind as K;
        let mut chain = Vec::new();
        let mut io_kind = None;
        let mut io_text = String::new();
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = src {
            let t = err.to_string();
            if !chain.iter().any(|c: &String| c.contains(&t)) {
                chain.push(t);
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io_kind.is_none()
            {
                io_kind = Some(io.kind());
                io_text = text(io);
            }
            src = err.source();
        }
        let all = text(&chain.join(": "));
        let cause = match io_kind {
            _ if all.contains("dns error") || all.contains("failed to lookup address") => {
                Cause::Dns
            }
            Some(K::TimedOut) => Cause::Timeout(timeout),
            Some(
                K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::AddrNotAvailable
                | K::HostUnreachable
                | K::NetworkUnreachable,
            ) => Cause::Refused(io_text),
            _ => Cause::Lost(all),
        };
        Self::new(url, peer, cause)
    }

    /// The HTTP status, when that is the cause.
    pub fn http_status(&self) -> Option<u16> {
        match self.cause {
            Cause::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    fn line(&self) -> String {
        let (url, peer) = (&self.url, self.peer);
        match &self.cause {
            Cause::BadUrl(why) => format!("{url}: bad URL: {why}; {}", peer.url_fix()),
            Cause::Refused(why) => format!("{url}: nothing answers ({why}); {}", peer.down_fix()),
            Cause::Timeout(d) => format!(
                "{url}: no answer within {} ms; {}",
                d.as_millis(),
                peer.slow_fix()
            ),
            Cause::Dns => format!("{url}: host not found; check the host name"),
            Cause::Tls {
                why,
                hint: Some(hint),
            } => format!("{url}: TLS certificate rejected: {why}; {hint}"),
            Cause::Tls { why, hint: None } => {
                format!("{url}: TLS failed: {why}; check the server speaks https on that port")
            }
            Cause::Status { status, message } => {
                let mut s = format!("{url}: HTTP {status}");
                if let Some(m) = message {
                    s.push_str(": ");
                    s.push_str(m);
                }
                if let Some(fix) = peer.status_fix(*status) {
                    s.push_str("; ");
                    s.push_str(fix);
                }
                s
            }
            Cause::TooLarge(limit) => format!(
                "{url}: answer over {}, refused; {}",
                size(*limit),
                peer.wrong_fix()
            ),
            Cause::Malformed(why) => {
                format!("{url}: malformed answer ({why}); {}", peer.wrong_fix())
            }
            Cause::Lost(why) => {
                format!("{url}: connection lost ({why}); the server may have stopped: check it")
            }
        }
    }
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

impl std::error::Error for NetError {}

/// `n` bytes as the largest whole unit that fits.
fn size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Foreign text for one line: sanitised, its lines joined, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = joined.chars().take(max).collect();
    terminal(&cut).into_owned()
}

/// Check `url` is an absolute http:// or https:// URL with a host; the reason otherwise, as
/// this peer's error line.
pub fn check_url(url: &str, peer: Peer) -> Result<crate::util::url::Parsed, NetError> {
    crate::util::url::parse(url).map_err(|why| NetError::new(url, peer, Cause::BadUrl(why)))
}

/// A `ca_file` that cannot be used: a setting's error, found before any request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: cannot use as ca_file: {why}; give the CA certificate as a PEM file")]
pub struct CaFileError {
    pub path: String,
    pub why: String,
}

/// A status and a body, whatever the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An HTTP(S) client for one kind of peer.
#[derive(Debug, Clone)]
pub struct Client {
    peer: Peer,
    tls: TlsConfig,
    ca_file: Option<PathBuf>,
    /// One connection per request, as cheap embedded servers expect.
    fresh: bool,
    /// For the small GETs (each sets its own deadline); a stream gets an agent of its own, so
    /// that cancelling it closes only its socket.
    agent: ureq::Agent,
}

impl Client {
    /// Trusts the public (webpki) roots for https.
    pub fn new(peer: Peer) -> Self {
        Self::with_tls(
            peer,
            TlsConfig::builder().root_certs(RootCerts::WebPki).build(),
            None,
        )
    }

    fn with_tls(peer: Peer, tls: TlsConfig, ca_file: Option<PathBuf>) -> Self {
        let fresh = peer == Peer::Plug;
        let agent = agent(&tls, fresh, None);
        Self {
            peer,
            tls,
            ca_file,
            fresh,
            agent,
        }
    }

    /// Trusts only the certificates in the PEM file `ca_file` for https (a self-signed Home
    /// Assistant), or the public roots when `None`.
    pub fn with_ca_file(peer: Peer, ca_file: Option<&Path>) -> Result<Self, CaFileError> {
        let Some(path) = ca_file else {
            return Ok(Self::new(peer));
        };
        let roots = RootCerts::Specific(Arc::new(read_ca_file(path)?));
        Ok(Self::with_tls(
            peer,
            TlsConfig::builder().root_certs(roots).build(),
            Some(path.to_path_buf()),
        ))
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// GET `url` with extra headers: the status and at most `limit` bytes of body, within
    /// `timeout` in all.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
        limit: u64,
    ) -> Result<Answer, NetError> {
        let accept = match self.peer {
            Peer::Plug | Peer::ModelServer => "application/json",
            Peer::LlamaMetrics | Peer::Llmtop => "text/plain, */*",
        };
        let mut req = self.agent.get(url).header("Accept", accept);
        if self.fresh {
            req = req.header("Connection", "close");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| self.error(url, timeout, e, false))?;
        let status = resp.status().as_u16();
        let content_type = content_type(resp.headers());
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.error(url, timeout, e, true))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// GET `url`: the body of a 2xx answer as text; any other status is an error.
    pub fn get_text(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
        limit: u64,
    ) -> Result<String, NetError> {
        let a = self.get(url, headers, timeout, limit)?;
        if !a.ok() {
            return Err(NetError::status(url, self.peer, a.status, None));
        }
        String::from_utf8(a.body).map_err(|_| {
            NetError::new(url, self.peer, Cause::Malformed("body is not UTF-8".into()))
        })
    }

    /// POST `body` to `url` and stream the answer. The request runs on a thread of its own and
    /// this returns at once. `stall`: the longest wait for any byte before the request fails
    /// as stuck.
    pub fn post_stream(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        stall: Duration,
    ) -> Stream {
        let (tx, rx) = sync_channel(64);
        let agent = agent(&self.tls, self.fresh, Some(stall));
        let stopper = agent.clone();
        let me = self.clone();
        let target = url.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let started = std::thread::Builder::new()
            .name("llmtop-http-read".into())
            .spawn(move || me.read_stream(agent, &target, &headers, body, stall, tx));
        let failed = started.err().map(|e| {
            NetError::new(
                url,
                self.peer,
                Cause::Lost(format!("cannot start a thread: {e}")),
            )
        });
        Stream {
            rx,
            agent: Some(stopper),
            failed,
        }
    }

    fn read_stream(
        &self,
        agent: ureq::Agent,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        stall: Duration,
        tx: SyncSender<Piece>,
    ) {
        let mut req = agent.post(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = match req.send(&body[..]) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Piece::Failed(self.error(url, stall, e, false)));
                return;
            }
        };
        let status = resp.status().as_u16();
        let content_type = content_type(resp.headers());
        if tx
            .send(Piece::Head {
                status,
                content_type,
            })
            .is_err()
        {
            return;
        }
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.send(Piece::End);
                    return;
                }
                Ok(n) => {
                    // The receiver gone (the request was cancelled): stop reading.
                    if tx.send(Piece::Bytes(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let cause = if e.kind() == std::io::ErrorKind::TimedOut {
                        Cause::Timeout(stall)
                    } else {
                        Cause::Lost(terminal(&e.to_string()).into_owned())
                    };
                    let _ = tx.send(Piece::Failed(NetError::new(url, self.peer, cause)));
                    return;
                }
            }
        }
    }

    /// The one mapping of a `ureq` failure to a cause. `reading`: the headers had come, the
    /// body was being read.
    fn error(&self, url: &str, timeout: Duration, e: ureq::Error, reading: bool) -> NetError {
        let cause = match e {
            ureq::Error::Timeout(_) => Cause::Timeout(timeout),
            ureq::Error::Io(io) => {
                use std::io::ErrorKind as K;
                match io.kind() {
                    K::TimedOut | K::WouldBlock => Cause::Timeout(timeout),
                    _ => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                        // A failed handshake comes back as an io::Error around rustls's.
                        Some(tls) => self.tls(tls),
                        None if reading => {
                            Cause::Lost(format!("the answer was cut short: {}", text(&io)))
                        }
                        None => Cause::Refused(text(&io)),
                    },
                }
            }
            ureq::Error::Rustls(tls) => self.tls(&tls),
            ureq::Error::Tls(why) => Cause::Tls {
                why: why.into(),
                hint: None,
            },
            ureq::Error::HostNotFound => Cause::Dns,
            ureq::Error::ConnectionFailed => Cause::Refused("connection failed".into()),
            ureq::Error::BodyExceedsLimit(limit) => Cause::TooLarge(limit),
            ureq::Error::BadUri(why) => Cause::BadUrl(terminal(&why).into_owned()),
            ureq::Error::Http(e) => Cause::BadUrl(format!("cannot send the request: {}", text(&e))),
            ureq::Error::LargeResponseHeader(..) => Cause::Malformed("headers too large".into()),
            other => Cause::Malformed(text(&other)),
        };
        NetError::new(url, self.peer, cause)
    }

    fn tls(&self, e: &rustls::Error) -> Cause {
        use rustls::CertificateError as C;
        let why = text(e);
        let rustls::Error::InvalidCertificate(cert) = e else {
            return Cause::Tls { why, hint: None };
        };
        let hint = match (cert, &self.ca_file) {
            (C::NotValidForName | C::NotValidForNameContext { .. }, _) => {
                "use the host name the certificate was issued for in the URL".to_string()
            }
            (
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
                _,
            ) => "renew the server's certificate, or check this machine's clock".to_string(),
            (_, Some(ca)) => format!(
                "check that ca_file {} holds the CA that signed the server's certificate",
                terminal(&ca.display().to_string())
            ),
            (_, None) if self.peer == Peer::Plug => {
                "for a self-signed certificate, set ca_file (the CA as PEM) in this plug's \
                 [[sensors.plugs]]"
                    .to_string()
            }
            (_, None) => "the certificate is not from a public CA; use http:// on the LAN, or a \
                          certificate this machine trusts"
                .to_string(),
        };
        Cause::Tls {
            why,
            hint: Some(hint),
        }
    }
}

/// An agent: no redirects, no HTTP_PROXY, statuses left to the caller. `stall`: for a stream,
/// the longest wait for any read (and a connect deadline); without it each request sets its
/// own deadline.
fn agent(tls: &TlsConfig, fresh: bool, stall: Option<Duration>) -> ureq::Agent {
    let mut b = ureq::Agent::config_builder()
        .tls_config(tls.clone())
        // Non-2xx is the caller's to read, with the server's own message.
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(concat!("llmtop/", env!("CARGO_PKG_VERSION")));
    if let Some(stall) = stall {
        b = b
            .timeout_per_read(Some(stall))
            .timeout_connect(Some(Duration::from_secs(5)));
    }
    if fresh {
        b = b.max_idle_connections(0).max_idle_connections_per_host(0);
    }
    b.build().new_agent()
}

fn content_type(h: &ureq::http::HeaderMap) -> Option<String> {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An error's text, sanitised for a line.
fn text(e: &dyn std::fmt::Display) -> String {
    terminal(&e.to_string()).into_owned()
}

/// Every certificate in a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, CaFileError> {
    let bad = |why: String| CaFileError {
        path: terminal(&path.display().to_string()).into_owned(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(text(&e)))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("no BEGIN CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// What a streaming request hands over, in order.
#[derive(Debug)]
pub enum Piece {
    /// The answer's head arrived (any status: the body of an error says why).
    Head {
        status: u16,
        content_type: Option<String>,
    },
    Bytes(Vec<u8>),
    /// The body ended.
    End,
    /// The request failed (before or during the body).
    Failed(NetError),
}

/// A streaming request in flight. Dropping it cancels it.
#[derive(Debug)]
pub struct Stream {
    rx: Receiver<Piece>,
    agent: Option<ureq::Agent>,
    failed: Option<NetError>,
}

impl Stream {
    /// The next piece, waiting at most `wait`; `None` when nothing came in time.
    pub fn next(&mut self, wait: Duration) -> Option<Piece> {
        if let Some(e) = self.failed.take() {
            return Some(Piece::Failed(e));
        }
        match self.rx.recv_timeout(wait) {
            Ok(p) => Some(p),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Piece::End),
        }
    }

    /// Stop the request now: its socket is closed, so the server sees the client leave.
    pub fn cancel(&mut self) {
        if let Some(a) = self.agent.take() {
            a.shutdown();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(peer: Peer, cause: Cause) -> String {
        NetError::new("http://h:1/x", peer, cause).to_string()
    }

    #[test]
    fn every_line_names_the_url_the_cause_and_the_fix() {
        use Peer::*;
        let all = [Plug, ModelServer, LlamaMetrics, Llmtop];
        let causes = [
            Cause::BadUrl("no host".into()),
            Cause::Refused("connection refused".into()),
            Cause::Timeout(Duration::from_millis(2000)),
            Cause::Dns,
            Cause::Tls {
                why: "invalid peer certificate: UnknownIssuer".into(),
                hint: Some("set ca_file".into()),
            },
            Cause::Status {
                status: 404,
                message: None,
            },
            Cause::TooLarge(1 << 20),
            Cause::Malformed("body is not UTF-8".into()),
            Cause::Lost("reset by peer".into()),
        ];
        for peer in all {
            for cause in &causes {
                let l = line(peer, cause.clone());
                assert!(l.starts_with("http://h:1/x: "), "{l}");
                assert!(!l.contains('\n'), "{l}");
                // A fix follows the cause, except where the status is the whole story.
                let plain_status = matches!(cause, Cause::Status { .. }) && peer == ModelServer;
                assert!(plain_status || l.contains("; "), "{peer:?} {l}");
            }
        }
        assert_eq!(
            line(Llmtop, Cause::Timeout(Duration::from_millis(2000))),
            "http://h:1/x: no answer within 2000 ms; is `llmtop serve` running there?"
        );
        assert!(
            line(ModelServer, Cause::Refused("connection refused".into()))
                .contains("nothing answers (connection refused); is the server running?")
        );
        assert_eq!(
            line(Plug, Cause::TooLarge(1 << 20)),
            "http://h:1/x: answer over 1 MiB, refused; check url points at the plug's API"
        );
        let s = |peer, status| {
            NetError::status("http://h/x", peer, status, Some("no\x1b[2J such\nmodel")).to_string()
        };
        assert_eq!(
            s(ModelServer, 404),
            "http://h/x: HTTP 404: no\\x1b[2J such model"
        );
        assert!(
            s(Plug, 500).ends_with(
                "the device reports a fault: check it in its own web page, or restart it"
            )
        );
        assert!(s(Plug, 401).ends_with("check token (a Home Assistant long-lived access token)"));
        assert!(
            s(LlamaMetrics, 501).contains("started without --metrics; restart it with --metrics")
        );
        assert!(s(Plug, 301).contains("redirects are not followed"));
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size(8 << 20), "8 MiB");
        assert_eq!(size(1000), "1000 bytes");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = Client::with_ca_file(Peer::Plug, Some(&path)).expect_err("no certs");
        assert!(e.to_string().contains("no BEGIN CERTIFICATE"), "{e}");
        let e = Client::with_ca_file(Peer::Plug, Some(&dir.path().join("missing.pem")))
            .expect_err("missing");
        assert!(e.path.ends_with("missing.pem"), "{e:?}");
    }

    #[test]
    fn bad_urls_are_the_peers_line() {
        let e = check_url("ftp://x", Peer::Plug).expect_err("scheme");
        assert!(matches!(e.cause, Cause::BadUrl(_)));
        assert!(e.to_string().starts_with("ftp://x: bad URL: "), "{e}");
        let e = check_url("http://\u{1b}[2J:0", Peer::Llmtop).expect_err("port");
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }
}
