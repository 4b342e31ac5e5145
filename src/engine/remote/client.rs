//! The HTTP side of attach, on `ureq` (blocking: the engine owns a thread).
//!
//! Small JSON GETs for probing and listing, with one deadline each; and a streaming POST whose
//! request runs on a reader thread that hands the body over in chunks as they arrive, so the
//! engine thread stays free to notice Esc between them. Cancelling shuts the request's own
//! agent down, which closes the socket at once: the server sees the client go and stops.

use serde_json::Value;
use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// Largest JSON answer read from a probe or a listing (an Ollama with hundreds of models
/// answers `/api/tags` in well under this).
pub const MAX_JSON: u64 = 8 << 20;
/// Largest error body kept from a failed request.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// A probe or listing that takes longer than this is a server that is not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why talking to the server failed: one line, naming the server, the cause and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "--attach {url}: bad URL: {why}; give the server's address, e.g. http://127.0.0.1:11434"
    )]
    BadUrl { url: String, why: String },
    #[error(
        "{server}: nothing answers ({why}); is the server running? (ollama serve, llama-server --port N, LM Studio's server tab)"
    )]
    Unreachable { server: String, why: String },
    #[error("{server}: no answer to {path} within {secs} s; the server is busy or stuck")]
    Timeout {
        server: String,
        path: String,
        secs: u64,
    },
    #[error("{server}{path}: HTTP {status}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        server: String,
        path: String,
        status: u16,
        message: Option<String>,
    },
    #[error("{server}{path}: not the JSON expected ({why})")]
    NotJson {
        server: String,
        path: String,
        why: String,
    },
    /// The server answers, but not as expected (wrong kind, unknown model).
    #[error("{server}: {why}")]
    Unrecognised { server: String, why: String },
    #[error("{server}: connection lost: {why}")]
    Lost { server: String, why: String },
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

    fn agent(timeout: Option<Duration>, per_read: Option<Duration>) -> ureq::Agent {
        ureq::Agent::config_builder()
            // Status codes are read here, with the server's own message.
            .http_status_as_error(false)
            // The server is usually on this machine or the LAN.
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(timeout)
            .timeout_per_read(per_read)
            .user_agent(concat!("llmtop/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent()
    }

    fn error(&self, path: &str, secs: u64, e: ureq::Error) -> RemoteError {
        let server = self.base.clone();
        match e {
            ureq::Error::Timeout(_) => RemoteError::Timeout {
                server,
                path: path.into(),
                secs,
            },
            ureq::Error::Io(io) => RemoteError::Unreachable {
                server,
                why: io.kind().to_string().replace('_', " "),
            },
            ureq::Error::HostNotFound => RemoteError::Unreachable {
                server,
                why: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => RemoteError::Unreachable {
                server,
                why: "connection failed".into(),
            },
            other => RemoteError::Lost {
                server,
                why: other.to_string(),
            },
        }
    }

    /// GET `path`: the status and the body (at most [`MAX_JSON`] bytes).
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), RemoteError> {
        let secs = PROBE_TIMEOUT.as_secs();
        let agent = Self::agent(Some(PROBE_TIMEOUT), None);
        let mut resp = agent
            .get(self.url(path))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.error(path, secs, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => RemoteError::NotJson {
                    server: self.base.clone(),
                    path: path.into(),
                    why: format!("answer over {} MiB", MAX_JSON >> 20),
                },
                e => self.error(path, secs, e),
            })?;
        Ok((status, body))
    }

    /// GET `path` and parse a 2xx answer as JSON; anything else is an error with the server's
    /// message when it gives one.
    pub fn get_json(&self, path: &str) -> Result<Value, RemoteError> {
        let (status, body) = self.get(path)?;
        if !(200..300).contains(&status) {
            return Err(RemoteError::Status {
                server: self.base.clone(),
                path: path.into(),
                status,
                message: super::protocol::error_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| RemoteError::NotJson {
            server: self.base.clone(),
            path: path.into(),
            why: e.to_string(),
        })
    }

    /// POST `body` as JSON to `path` and stream the answer. The request runs on its own
    /// thread; this returns at once. `stall`: the longest wait for any byte before the
    /// request fails as stuck.
    pub fn post_stream(&self, path: &str, body: &Value, stall: Duration) -> Stream {
        let (tx, rx) = sync_channel(64);
        let agent = Self::agent(None, Some(stall));
        let stopper = agent.clone();
        let url = self.url(path);
        let me = self.clone();
        let path = path.to_string();
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let started = std::thread::Builder::new()
            .name("llmtop-attach-read".into())
            .spawn(move || me.read_stream(agent, &url, &path, bytes, stall, tx));
        let failed = started.err().map(|e| RemoteError::Lost {
            server: self.base.clone(),
            why: format!("cannot start a thread: {e}"),
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
        path: &str,
        body: Vec<u8>,
        stall: Duration,
        tx: SyncSender<Piece>,
    ) {
        let secs = stall.as_secs();
        let resp = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header(
                "Accept",
                "application/x-ndjson, text/event-stream, application/json",
            )
            .send(&body[..]);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Piece::Failed(self.error(path, secs, e)));
                return;
            }
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY)
                .read_to_vec()
                .unwrap_or_default();
            let message = super::protocol::error_message(&body).or_else(|| {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                (!text.is_empty() && text.len() < 300).then_some(text)
            });
            let _ = tx.send(Piece::Failed(RemoteError::Status {
                server: self.base.clone(),
                path: path.into(),
                status,
                message,
            }));
            return;
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if tx.send(Piece::Head { content_type }).is_err() {
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
                    // The receiver gone (the reply was cancelled): stop reading.
                    if tx.send(Piece::Bytes(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let why = if e.kind() == std::io::ErrorKind::TimedOut {
                        RemoteError::Timeout {
                            server: self.base.clone(),
                            path: path.into(),
                            secs,
                        }
                    } else {
                        RemoteError::Lost {
                            server: self.base.clone(),
                            why: e.to_string(),
                        }
                    };
                    let _ = tx.send(Piece::Failed(why));
                    return;
                }
            }
        }
    }
}

/// What the reader thread hands over.
#[derive(Debug)]
pub enum Piece {
    /// A 2xx answer's headers arrived.
    Head {
        content_type: Option<String>,
    },
    Bytes(Vec<u8>),
    /// The body ended.
    End,
    /// The request failed (before or during the body).
    Failed(RemoteError),
}

/// A streaming request in flight.
#[derive(Debug)]
pub struct Stream {
    rx: Receiver<Piece>,
    agent: Option<ureq::Agent>,
    failed: Option<RemoteError>,
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
