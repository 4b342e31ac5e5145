//! The reverse proxy itself, on the one HTTP server (`net::server`, streaming limits): each
//! request goes to the upstream with its headers (hop-by-hop ones dropped, `Host` set to the
//! upstream's) and its body streamed; the response comes back the same way. Both bodies pass
//! through a [`TapBody`]: the request's to learn the model asked for, the response's to time
//! its tokens. An upstream that cannot be reached gets the client a 502 with one line saying
//! why; the proxy itself stays up. A request body over [`MAX_BODY_BYTES`] gets a 413 (at once
//! when its `Content-Length` says so, else when it grows past the limit, the upstream's
//! request then abandoned).

use super::tap::{Exchange, Outcome, ProxyEvent, Seen, Sniff, Tap, TapBody};
use crate::engine::remote::protocol::Framing;
use crate::net::client::{NetError, Peer};
use crate::net::server::{Conn, HttpServer, Limits, Listen, ServerError, Service, Setting};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Connecting to the upstream gives up after this (a reply may then take as long as it
/// takes: a slow model is not an error).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection to the upstream is kept for the next request.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// A request body larger than this gets `413 Content Too Large`: prompts with a few
/// base64 images fit many times over; a runaway or hostile upload does not reach the server.
pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// `--listen`: where clients connect.
pub const LISTEN: Setting = Setting {
    name: "--listen",
    serves: "the proxy",
    example: "127.0.0.1:11435",
};

/// Why the proxy could not start: one line with the fix.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Server(#[from] ServerError),
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
    /// Check `url` through `util::url` (the port from 1 to 65535), then this proxy's rules:
    /// plain http, no query or fragment.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let bad = |why: &str| ProxyError::Upstream {
            url: crate::util::sanitize::terminal(url).into_owned(),
            why: why.to_string(),
        };
        let p = crate::util::url::parse(url.trim()).map_err(|why| bad(&why))?;
        if p.https {
            return Err(bad(
                "https upstreams are not supported (local servers speak http)",
            ));
        }
        if p.query || url.contains('#') {
            return Err(bad("a query or fragment is not allowed here"));
        }
        Ok(Self {
            authority: format!("{}:{}", p.host, p.port),
            prefix: p.path.trim_end_matches('/').to_string(),
        })
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

/// Check a listen address, `HOST:PORT` with a host name or a literal IP, given with `--listen`.
pub fn parse_listen(addr: &str) -> Result<Listen, ProxyError> {
    Ok(Listen::parse(addr, LISTEN)?)
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

/// A body through the proxy, seen by its closure.
type Tapped = TapBody<Incoming, Box<dyn FnMut(Seen<'_>) + Send>>;
/// A request body through the proxy: capped, then seen.
type TappedIn = TapBody<Capped, Box<dyn FnMut(Seen<'_>) + Send>>;
type Body = Either<Tapped, Full<Bytes>>;

/// Why a request body stopped on its way to the upstream.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Client(#[from] hyper::Error),
    #[error("the request body is over the proxy's limit of {} MiB; send a smaller one", MAX_BODY_BYTES >> 20)]
    TooLarge,
}

/// A request body that errors once more than [`MAX_BODY_BYTES`] have come (for bodies whose
/// size is not said up front).
pub struct Capped {
    inner: Incoming,
    seen: u64,
}

impl hyper::body::Body for Capped {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > MAX_BODY_BYTES {
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e`'s chain holds a body over the limit.
fn too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if matches!(err.downcast_ref::<BodyError>(), Some(BodyError::TooLarge)) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request body whose first frame was read before the upstream was asked (to learn the
/// model even when the upstream cannot be reached), passed on first, then the rest.
pub struct Prefixed<B> {
    first: Option<Frame<Bytes>>,
    rest: B,
}

impl<B> HttpBody for Prefixed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let h = self.rest.size_hint();
        let n = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        // The upper bound first: a lower one above the old upper would panic.
        let mut out = SizeHint::new();
        if let Some(u) = h.upper() {
            out.set_upper(u.saturating_add(n));
        }
        out.set_lower(h.lower().saturating_add(n));
        out
    }
}

struct Ctx {
    upstream: Upstream,
    client: Client<HttpConnector, Prefixed<TappedIn>>,
    clock: Instant,
    next_id: AtomicU64,
    tx: UnboundedSender<ProxyEvent>,
}

impl Ctx {
    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }
}

impl Service for Ctx {
    type Body = Body;

    fn call(
        &self,
        req: Request<Incoming>,
        conn: &Conn,
    ) -> impl Future<Output = Response<Body>> + Send {
        handle(req, conn.clone(), self)
    }
}

/// A running proxy. Dropping it stops accepting; exchanges in flight get the server's grace
/// period, then end with it (each still reported).
pub struct ProxyServer {
    server: HttpServer,
    upstream: Upstream,
}

impl ProxyServer {
    /// Listen on `listen` (port 0 for any), given with `--listen`, and forward to `upstream`.
    /// Times are seconds since `clock` (the sampler's origin, so they line up with the
    /// ledger's); what each request did goes to `tx`.
    pub fn start(
        listen: &str,
        upstream: Upstream,
        clock: Instant,
        tx: UnboundedSender<ProxyEvent>,
    ) -> Result<Self, ProxyError> {
        Self::start_with(
            &parse_listen(listen)?,
            Limits::STREAMING,
            upstream,
            clock,
            tx,
        )
    }

    /// As [`ProxyServer::start`] on a checked address, with the server's `limits`.
    pub fn start_with(
        listen: &Listen,
        limits: Limits,
        upstream: Upstream,
        clock: Instant,
        tx: UnboundedSender<ProxyEvent>,
    ) -> Result<Self, ProxyError> {
        let up = upstream.clone();
        let server = HttpServer::start(listen, limits, "llmtop-proxy", move || {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
            // An idle upstream connection is dropped well before the servers drop theirs
            // (llama-server's and Node's keep-alive: 5 s): reusing one the server is closing
            // at that moment fails the request with a 502.
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .pool_timer(TokioTimer::new())
                .build(connector);
            Ctx {
                upstream: up,
                client,
                clock,
                next_id: AtomicU64::new(1),
                tx,
            }
        })?;
        Ok(Self { server, upstream })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Stop accepting now, let exchanges in flight run for `grace`, cut the rest (each is
    /// reported, as cut by the proxy); returns when all are.
    pub fn stop(self, grace: Duration) {
        self.server.stop(grace);
    }
}

async fn handle(req: Request<Incoming>, conn: Conn, ctx: &Ctx) -> Response<Body> {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let t0 = ctx.now();
    let _ = ctx.tx.send(ProxyEvent::Started { id, t0 });
    let (mut parts, mut body) = req.into_parts();
    let ex = Exchange {
        id,
        client: conn.peer,
        method: parts.method.to_string(),
        endpoint: parts.uri.path().to_string(),
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
    let sniff = Arc::new(Mutex::new(Sniff::default()));
    // From here the exchange is reported however it ends, this future dropped included.
    let mut tap = Tap::new(ex, ctx.clock, sniff.clone(), ctx.tx.clone(), conn);
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri = match ctx.upstream.uri_for(&pq) {
        Ok(u) => u,
        Err(e) => return fail(&mut tap, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let target = uri.to_string();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return refuse(&mut tap, BodyError::TooLarge.to_string());
    }
    parts.uri = uri;
    parts.headers = end_to_end(&parts.headers);
    if let Ok(h) = HeaderValue::from_str(&ctx.upstream.authority) {
        parts.headers.insert(header::HOST, h);
    }
    // The body's first frame (a whole chat body, as a rule) before the upstream is asked:
    // a 502's record then still names the model asked for.
    let first = if body.is_end_stream() {
        None
    } else {
        match body.frame().await {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                let why = format!("the client's body broke off: {}", super::tap::cause(&e));
                return fail(&mut tap, StatusCode::BAD_REQUEST, why);
            }
            None => None,
        }
    };
    if let Some(d) = first.as_ref().and_then(|f| f.data_ref())
        && let Ok(mut s) = sniff.lock()
    {
        s.feed(d);
    }
    let sniffer: Box<dyn FnMut(Seen<'_>) + Send> = Box::new(move |seen: Seen<'_>| {
        if let Seen::Chunk(b) = seen
            && let Ok(mut s) = sniff.lock()
        {
            s.feed(b);
        }
    });
    // The first frame counts toward the body's limit too.
    let capped = Capped {
        inner: body,
        seen: first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64),
    };
    let out = Request::from_parts(
        parts,
        Prefixed {
            first,
            rest: TapBody::new(capped, sniffer),
        },
    );
    let resp = match ctx.client.request(out).await {
        Ok(r) => r,
        Err(e) if too_large(&e) => return refuse(&mut tap, BodyError::TooLarge.to_string()),
        Err(e) => {
            let why = NetError::from_chain(&target, Peer::ModelServer, &e, CONNECT_TIMEOUT);
            return fail(&mut tap, StatusCode::BAD_GATEWAY, why.to_string());
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    let framing = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Framing::from_content_type);
    tap.read(rparts.status.as_u16(), framing);
    rparts.headers = end_to_end(&rparts.headers);
    let on: Box<dyn FnMut(Seen<'_>) + Send> = Box::new(move |seen: Seen<'_>| tap.seen(seen));
    Response::from_parts(rparts, Either::Left(TapBody::new(rbody, on)))
}

/// A body over the limit: `413`, one line, and the exchange reported as cut by the proxy.
fn refuse(tap: &mut Tap, why: String) -> Response<Body> {
    let status = StatusCode::PAYLOAD_TOO_LARGE;
    tap.read(status.as_u16(), None);
    tap.end(Outcome::Cut(why.clone()));
    error_response(status, why)
}

/// Answer the client with `status` and one line, and report the exchange.
fn fail(tap: &mut Tap, status: StatusCode, why: String) -> Response<Body> {
    tap.fail(status.as_u16(), why.clone());
    error_response(status, why)
}

/// The proxy's own answer: `status` and one line saying `why`.
fn error_response(status: StatusCode, why: String) -> Response<Body> {
    let line = format!("llmtop proxy: {why}\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_go_through_the_one_url_check() {
        let u = Upstream::parse("http://gpu-box:8080/llama/").expect("ok");
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("gpu-box:8080", "/llama")
        );
        assert_eq!(u.url(), "http://gpu-box:8080/llama");
        assert_eq!(
            Upstream::parse("http://[::1]:11434").expect("ok").authority,
            "[::1]:11434"
        );
        assert_eq!(
            Upstream::parse("http://box").expect("ok").authority,
            "box:80"
        );
        for (bad, why) in [
            ("http://127.0.0.1:0", "port"),
            ("http://h:8o", "port"),
            ("http://u:p@h:1", "user:password"),
            ("https://h:1", "https upstreams are not supported"),
            ("ftp://h", "scheme"),
            ("http://h:1/?q=1", "query"),
            ("http://h:1/#x", "fragment"),
            ("h:1", "scheme"),
        ] {
            let e = Upstream::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with(&format!("--upstream {bad}: ")), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let out = end_to_end(&h);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            out.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..])
        );
    }
}
