//! The exporter's routes on the one HTTP server (`net::server`, plain limits): a GET of a path
//! is answered by a [`Handler`]; anything else is a 405.

use crate::net::server::{Conn, HttpServer, Limits, Listen, Service, Setting};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub use crate::net::server::ServerError;

/// `--metrics-addr`, on every command that serves metrics.
pub const METRICS_ADDR: Setting = Setting {
    name: "--metrics-addr",
    serves: "metrics",
    example: "127.0.0.1:9464",
};

/// The same address from the config file (`[metrics] addr`).
pub const METRICS_ADDR_CONFIG: Setting = Setting {
    name: "[metrics] addr",
    ..METRICS_ADDR
};

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

struct Routes(Handler);

impl Service for Routes {
    type Body = Full<Bytes>;

    fn call(
        &self,
        req: Request<Incoming>,
        _conn: &Conn,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        std::future::ready(respond(&req, &self.0))
    }
}

/// Serve `handler` on `listen` until the server is dropped.
pub fn start(listen: &Listen, handler: Handler) -> Result<HttpServer, ServerError> {
    HttpServer::start(listen, Limits::PLAIN, "llmtop-http", move || {
        Routes(handler)
    })
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
