//! The HTTP side of attach, on the one client (`net::client`, blocking: the engine owns a
//! thread).
//!
//! Small JSON GETs for probing and listing, with one deadline each; and a streaming POST whose
//! request runs on a reader thread that hands the body over in chunks as they arrive, so the
//! engine thread stays free to notice Esc between them. Cancelling closes the request's socket
//! at once: the server sees the client go and stops.

use crate::net::client::{self, Cause, Client, NetError, Peer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Largest JSON answer read from a probe or a listing (an Ollama with hundreds of models
/// answers `/api/tags` in well under this).
pub const MAX_JSON: u64 = 8 << 20;
/// Largest error body kept from a failed request.
const MAX_ERROR_BODY: usize = 64 << 10;
/// How long a failed request's error body is waited for.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);
/// A probe or listing that takes longer than this is a server that is not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the server failed: one line, naming the server, the cause and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "--attach {url}: bad URL: {why}; give the server's address, e.g. http://127.0.0.1:11434"
    )]
    BadUrl { url: String, why: String },
    /// The network's one vocabulary: down, slow, an HTTP status, not the JSON expected, lost.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server answers, but not as expected (wrong kind, unknown model).
    #[error("{server}: {why}")]
    Unrecognised { server: String, why: String },
}

/// A server's base URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `http://host:port` plus any base path, without a trailing slash.
    pub base: String,
    /// `host:port`, for labels ("llama-server at 127.0.0.1:8080").
    pub host_port: String,
}

impl Server {
    /// Check `url`: http or https (a bare `host:port` means http), a host, no user:password,
    /// query or fragment. A trailing `/v1` (how OpenAI clients are usually configured) is
    /// dropped: the API paths add it.
    pub fn parse(url: &str) -> Result<Server, RemoteError> {
        let bad = |why: &str| RemoteError::BadUrl {
            url: crate::util::sanitize::terminal(url).into_owned(),
            why: why.into(),
        };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        let full = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let parsed = crate::util::url::parse(&full).map_err(|why| bad(&why))?;
        if parsed.query || full.contains('#') {
            return Err(bad(
                "a query or fragment (? or #) has no place in a server address",
            ));
        }
        let (https, host, port) = (parsed.https, parsed.host, parsed.port);
        let mut path = parsed.path.trim_end_matches('/').to_string();
        if let Some(p) = path.strip_suffix("/v1") {
            path = p.to_string();
        }
        let scheme = if https { "https" } else { "http" };
        Ok(Server {
            base: format!("{scheme}://{host}:{port}{path}"),
            host_port: format!("{host}:{port}"),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn client() -> Client {
        Client::new(Peer::ModelServer)
    }

    /// `path`'s answer is not the JSON expected.
    pub fn not_json(&self, path: &str, why: impl std::fmt::Display) -> RemoteError {
        NetError::new(
            &self.url(path),
            Peer::ModelServer,
            Cause::Malformed(format!("not the JSON expected: {why}")),
        )
        .into()
    }

    /// GET `path`: the status and the body (at most [`MAX_JSON`] bytes).
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), RemoteError> {
        let a = Self::client().get(&self.url(path), &[], PROBE_TIMEOUT, MAX_JSON)?;
        Ok((a.status, a.body))
    }

    /// GET `path` and parse a 2xx answer as JSON; anything else is an error with the server's
    /// message when it gives one.
    pub fn get_json(&self, path: &str) -> Result<Value, RemoteError> {
        let (status, body) = self.get(path)?;
        if !(200..300).contains(&status) {
            let message = super::protocol::error_message(&body);
            return Err(NetError::status(
                &self.url(path),
                Peer::ModelServer,
                status,
                message.as_deref(),
            )
            .into());
        }
        serde_json::from_slice(&body).map_err(|e| self.not_json(path, e))
    }

    /// POST `body` as JSON to `path` and stream the answer. The request runs on its own
    /// thread; this returns at once. `stall`: the longest wait for any byte before the
    /// request fails as stuck.
    pub fn post_stream(&self, path: &str, body: &Value, stall: Duration) -> Stream {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let inner = Self::client().post_stream(
            &url,
            &[
                ("Content-Type", "application/json"),
                (
                    "Accept",
                    "application/x-ndjson, text/event-stream, application/json",
                ),
            ],
            bytes,
            stall,
        );
        Stream { inner, url }
    }
}

/// What a streaming request hands over.
#[derive(Debug)]
pub enum Piece {
    /// A 2xx answer's headers arrived.
    Head {
        content_type: Option<String>,
    },
    Bytes(Vec<u8>),
    /// The body ended.
    End,
    /// The request failed (before or during the body); a status outside 2xx with the
    /// server's own message.
    Failed(RemoteError),
}

/// A streaming request in flight. Dropping it cancels it.
#[derive(Debug)]
pub struct Stream {
    inner: client::Stream,
    url: String,
}

impl Stream {
    /// The next piece, waiting at most `wait`; `None` when nothing came in time.
    pub fn next(&mut self, wait: Duration) -> Option<Piece> {
        Some(match self.inner.next(wait)? {
            client::Piece::Head {
                status,
                content_type,
            } if (200..300).contains(&status) => Piece::Head { content_type },
            client::Piece::Head { status, .. } => Piece::Failed(self.status(status)),
            client::Piece::Bytes(b) => Piece::Bytes(b),
            client::Piece::End => Piece::End,
            client::Piece::Failed(e) => Piece::Failed(e.into()),
        })
    }

    /// A status outside 2xx: the error, with the message the server's body gives.
    fn status(&mut self, status: u16) -> RemoteError {
        let mut body = Vec::new();
        let until = Instant::now() + ERROR_BODY_WAIT;
        while body.len() < MAX_ERROR_BODY {
            let left = until.saturating_duration_since(Instant::now());
            match self.inner.next(left) {
                Some(client::Piece::Bytes(b)) => body.extend_from_slice(&b),
                _ => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        let message = super::protocol::error_message(&body).or_else(|| {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            (!text.is_empty() && text.len() < 300).then_some(text)
        });
        NetError::status(&self.url, Peer::ModelServer, status, message.as_deref()).into()
    }

    /// Stop the request now: its socket is closed, so the server sees the client leave.
    pub fn cancel(&mut self) {
        self.inner.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalised() {
        let s = Server::parse("http://127.0.0.1:11434/").expect("ok");
        assert_eq!(s.base, "http://127.0.0.1:11434");
        assert_eq!(s.host_port, "127.0.0.1:11434");
        assert_eq!(
            Server::parse("localhost:8080").expect("ok").base,
            "http://localhost:8080"
        );
        assert_eq!(
            Server::parse("https://box.lan/llm/v1").expect("ok").base,
            "https://box.lan:443/llm"
        );
        assert_eq!(
            Server::parse("http://[::1]:1234").expect("ok").host_port,
            "[::1]:1234"
        );
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h:8o",
            "http://u:p@h",
            "http://h/?q=1",
            "http://h/#x",
        ] {
            let e = Server::parse(bad).expect_err(bad).to_string();
            assert!(
                e.starts_with("--attach ") && e.contains("bad URL"),
                "{bad}: {e}"
            );
        }
        // Control characters in a bad URL are escaped in the message.
        let e = Server::parse("ftp://\u{1b}[2J")
            .expect_err("bad")
            .to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
    }
}
