//! A small HTTP/1.1 server for the exporter, on hyper: every connection is served concurrently
//! on the server's own thread and runtime, a client that sends nothing is dropped after
//! [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (the rest wait in the
//! kernel's backlog), so idle or hostile clients never starve a Prometheus scrape.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Semaphore, oneshot};

/// A client must have sent its request head within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole exchange, answer included, ends within this.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// What a route answers: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers a GET of a path (query removed). Runs on the server's thread.
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot serve metrics on {addr}: {err}; pick a free address with --metrics-addr, e.g. 127.0.0.1:9464"
    )]
    Bind { addr: String, err: std::io::Error },
}

/// A running server. Dropping it stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Bind `addr` (port 0 for any) and serve `handler` on a thread of its own.
    pub fn start(addr: &str, handler: Handler) -> Result<Self, ServerError> {
        let bind_err = |err| ServerError::Bind {
            addr: addr.into(),
            err,
        };
        // Bind here, so a busy address is an error now, not on the server's thread.
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let local = std_listener.local_addr().map_err(bind_err)?;
        let runtime = crate::util::runtime::current_thread().map_err(bind_err)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("llmtop-http".into())
            .spawn(move || runtime.block_on(serve(std_listener, handler, stop_rx)))
            .map_err(bind_err)?;
        Ok(Self {
            addr: local,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
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
    handler: Handler,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Take a slot before accepting: beyond the cap, clients wait in the backlog.
        let permit = tokio::select! {
            _ = &mut stop => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => return,
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &handler)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn respond(req: &Request<Incoming>, handler: &Handler) -> Response<Full<Bytes>> {
    let reply = if req.method() == Method::GET {
        handler(req.uri().path())
    } else {
        Reply::text(405, "only GET\n")
    };
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(reply.content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
