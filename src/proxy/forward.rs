//! The reverse proxy itself, on hyper: each request goes to the upstream with its headers
//! (hop-by-hop ones dropped, `Host` set to the upstream's) and its body streamed; the
//! response comes back the same way through the [`TapBody`]. An upstream that cannot be
//! reached gets the client a 502 with one line saying why; the proxy itself stays up.

use super::tap::{Exchange, Outcome, ProxyEvent, Sniff, SniffBody, Tap, TapBody, cause};
use crate::engine::remote::protocol::Framing;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

/// A client must have sent its request head within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the upstream gives up after this (a reply may then take as long as it
/// takes: a slow model is not an error).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start: one line with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "cannot listen on {addr}: {err}; pick a free address with --listen, e.g. 127.0.0.1:11435"
    )]
    Bind { addr: String, err: std::io::Error },
    #[error("--listen {addr}: {why}; give HOST:PORT, e.g. 127.0.0.1:11435")]
    Listen { addr: String, why: String },
    #[error("--upstream {url}: {why}; give the server's http address, e.g. http://127.0.0.1:11434")]
    Upstream { url: String, why: String },
}

/// Where requests go: `http://host:port`, and a path prefix that every request path is put
/// under (`http://box:8080/llama` sends `/v1/models` to `/llama/v1/models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub authority: String,
    pub prefix: String,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let bad = |why: &str| ProxyError::Upstream {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https upstreams are not supported (local servers speak http)",
                ));
            }
            Some(_) => return Err(bad("the scheme must be http://")),
            None => return Err(bad("no scheme")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_string();
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a query is not allowed here"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Self { authority, prefix })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    fn uri_for(&self, path_and_query: &str) -> Result<Uri, hyper::http::Error> {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.as_str())
            .path_and_query(format!("{}{}", self.prefix, path_and_query))
            .build()
    }
}

/// Check a listen address: `HOST:PORT` with a literal IP (names resolve late and ambiguously).
pub fn parse_listen(addr: &str) -> Result<SocketAddr, ProxyError> {
    addr.trim().parse().map_err(|_| ProxyError::Listen {
        addr: addr.to_string(),
        why: "not an IP address and port".into(),
    })
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1): never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// `headers` without the hop-by-hop ones, those the `Connection` header names included, and
/// without `Transfer-Encoding` (hyper frames the body for each side itself).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (k, v) in headers {
        let name = k.as_str();
        if HOP_BY_HOP.contains(&name)
            || k == header::TRANSFER_ENCODING
            || named.iter().any(|n| n == name)
        {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    out
}

type Body = Either<TapBody, Full<Bytes>>;

struct Ctx {
    upstream: Upstream,
    client: Client<HttpConnector, SniffBody>,
    clock: Instant,
    next_id: AtomicU64,
    tx: UnboundedSender<ProxyEvent>,
}

impl Ctx {
    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }
}

/// A running proxy. Dropping it stops accepting; streams in flight end with it.
pub struct ProxyServer {
    addr: SocketAddr,
    upstream: Upstream,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyServer {
    /// Listen on `listen` (port 0 for any) and forward to `upstream`. Times are seconds
    /// since `clock` (the sampler's origin, so they line up with the ledger's); what each
    /// request did goes to `tx`.
    pub fn start(
        listen: &str,
        upstream: Upstream,
        clock: Instant,
        tx: UnboundedSender<ProxyEvent>,
    ) -> Result<Self, ProxyError> {
        let addr = parse_listen(listen)?;
        let bind_err = |err| ProxyError::Bind {
            addr: listen.to_string(),
            err,
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let local = std_listener.local_addr().map_err(bind_err)?;
        let runtime = crate::util::runtime::current_thread().map_err(bind_err)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let up = upstream.clone();
        let thread = std::thread::Builder::new()
            .name("llmtop-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut connector = HttpConnector::new();
                    connector.set_nodelay(true);
                    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                    let client = Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(30))
                        .build(connector);
                    let ctx = Arc::new(Ctx {
                        upstream: up,
                        client,
                        clock,
                        next_id: AtomicU64::new(1),
                        tx,
                    });
                    serve(std_listener, ctx, stop_rx).await;
                })
            })
            .map_err(bind_err)?;
        Ok(Self {
            addr: local,
            upstream,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    std_listener: std::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
        return;
    };
    loop {
        let (stream, client) = tokio::select! {
            _ = &mut stop => return,
            s = listener.accept() => match s {
                Ok(s) => s,
                // Out of file descriptors and the like: wait a little, keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, client, &ctx).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, client: SocketAddr, ctx: &Ctx) -> Response<Body> {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let t0 = ctx.now();
    let _ = ctx.tx.send(ProxyEvent::Started { id, t0 });
    let (mut parts, body) = req.into_parts();
    let endpoint = parts.uri.path().to_string();
    let mut ex = Exchange {
        id,
        client,
        method: parts.method.to_string(),
        endpoint,
        status: 0,
        outcome: Outcome::Complete,
        t0,
        t1: t0,
        requested_model: None,
        first_byte: None,
        token_times: Vec::new(),
        tokens_seen: 0,
        figures: None,
        wire_errors: Vec::new(),
        bytes_in: 0,
        bytes_out: 0,
    };
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let sniff = Arc::new(Mutex::new(Sniff::default()));
    let uri = match ctx.upstream.uri_for(&pq) {
        Ok(u) => u,
        Err(e) => return fail(ex, &sniff, ctx, StatusCode::BAD_REQUEST, e.to_string()),
    };
    parts.uri = uri;
    parts.headers = end_to_end(&parts.headers);
    if let Ok(h) = HeaderValue::from_str(&ctx.upstream.authority) {
        parts.headers.insert(header::HOST, h);
    }
    let out = Request::from_parts(parts, SniffBody::new(body, sniff.clone()));
    let resp = match ctx.client.request(out).await {
        Ok(r) => r,
        Err(e) => {
            let why = format!(
                "upstream {} did not answer: {}",
                ctx.upstream.url(),
                cause(&e)
            );
            return fail(ex, &sniff, ctx, StatusCode::BAD_GATEWAY, why);
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    ex.status = rparts.status.as_u16();
    let framing = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Framing::from_content_type);
    rparts.headers = end_to_end(&rparts.headers);
    let tap = Tap::new(ex, ctx.clock, framing, sniff, ctx.tx.clone());
    Response::from_parts(rparts, Either::Left(TapBody::new(rbody, tap)))
}

/// Answer the client with `status` and one line, and report the exchange.
fn fail(
    mut ex: Exchange,
    sniff: &Arc<Mutex<Sniff>>,
    ctx: &Ctx,
    status: StatusCode,
    why: String,
) -> Response<Body> {
    let line = format!("llmtop proxy: {why}\n");
    ex.status = status.as_u16();
    ex.t1 = ctx.now();
    if let Ok(s) = sniff.lock() {
        ex.requested_model = s.model();
        ex.bytes_in = s.bytes;
    }
    ex.outcome = Outcome::Unreachable(why);
    let _ = ctx.tx.send(ProxyEvent::Finished(Box::new(ex)));
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(line))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        HeaderName::from_static("x-llmtop-proxy"),
        HeaderValue::from_static("error"),
    );
    r
}
