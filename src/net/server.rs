//! The one HTTP/1.1 server, on hyper, for the exporter and the proxy.
//!
//! Each server runs on a thread and runtime of its own; every connection is served
//! concurrently. The limits are the same for both users, their values differ ([`Limits`]):
//! - at most `max_connections` are served at once; the rest wait in the kernel's backlog, so
//!   idle or hostile clients cannot starve a Prometheus scrape or a stream;
//! - a client must send its request head within `header` (also the idle time allowed between
//!   keep-alive requests);
//! - a plain exchange (the exporter) ends within `exchange`, answer included; a streaming one
//!   (the proxy) has no total cap, only a limit on how long no byte moves either way on its
//!   connection (`idle`), so a stalled upstream or a client that stops reading lets go;
//! - dropping the server stops accepting at once, lets exchanges in flight finish for a grace
//!   period, then cuts the rest; a connection knows why it was cut ([`Conn::cut`]).
//!
//! Addresses are `HOST:PORT` with a host name or a literal IP, checked by `util::url`; every
//! error is one line naming the setting it came from and an example.

use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;

/// Connections queued by the kernel beyond those served (`listen(2)` backlog).
const BACKLOG: u32 = 1024;

/// The setting an address came from, for error lines: `--metrics-addr`, `[metrics] addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// As the user wrote it: a flag or a config key.
    pub name: &'static str,
    /// What is served there, for "cannot serve {serves} on ...".
    pub serves: &'static str,
    /// A good value, for the fix.
    pub example: &'static str,
}

/// Why a server could not start: one line with the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{name} {addr}: {why}; give HOST:PORT, e.g. {example}", name = .setting.name, example = .setting.example)]
    Address {
        setting: Setting,
        addr: String,
        why: String,
    },
    #[error(
        "cannot serve {serves} on {addr}: {err}; pick a free address with {name}, e.g. {example}",
        serves = .setting.serves, name = .setting.name, example = .setting.example
    )]
    Bind {
        setting: Setting,
        addr: String,
        err: io::Error,
    },
}

/// A checked address to listen on, its names resolved.
#[derive(Debug, Clone)]
pub struct Listen {
    /// As written.
    pub text: String,
    pub setting: Setting,
    addrs: Vec<SocketAddr>,
}

impl Listen {
    /// Check `text` (`HOST:PORT`, port 0 for any free one) and resolve its host.
    pub fn parse(text: &str, setting: Setting) -> Result<Self, ServerError> {
        let bad = |why: String| ServerError::Address {
            setting,
            addr: crate::util::sanitize::terminal(text).into_owned(),
            why,
        };
        let (host, port) = crate::util::url::listen(text).map_err(bad)?;
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(bad(format!("{host} has no address")));
        }
        Ok(Self {
            text: text.trim().to_string(),
            setting,
            addrs,
        })
    }
}

/// How an exchange is bounded in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Small answers: the whole exchange ends within this.
    Plain { exchange: Duration },
    /// Streams of any length: no byte moving on the connection for this long ends it.
    Streaming { idle: Duration },
}

/// The limits a server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// The request head must arrive within this (and the next one on a kept-alive
    /// connection).
    pub header: Duration,
    pub mode: Mode,
    pub keep_alive: bool,
    /// On stop, how long exchanges in flight may still run.
    pub grace: Duration,
}

impl Limits {
    /// The exporter: scrapes are small and quick, one per connection.
    pub const PLAIN: Limits = Limits {
        max_connections: 1024,
        header: Duration::from_secs(2),
        mode: Mode::Plain {
            exchange: Duration::from_secs(10),
        },
        keep_alive: false,
        grace: Duration::from_millis(500),
    };
    /// The proxy: a reply may stream for as long as the model writes; a non-streaming one
    /// says nothing until it is done, so the idle limit is the one OpenAI's clients use as
    /// their own default timeout (600 s).
    pub const STREAMING: Limits = Limits {
        max_connections: 1024,
        header: Duration::from_secs(30),
        mode: Mode::Streaming {
            idle: Duration::from_secs(600),
        },
        keep_alive: true,
        grace: Duration::from_millis(500),
    };
}

/// Why the server ended a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// No byte moved either way for this long.
    Idle(Duration),
    /// The exchange took longer than this.
    Exchange(Duration),
    /// The server stopped and its grace period ran out.
    Stopped,
}

/// One connection, as a service sees it.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    cut: Arc<OnceLock<Cut>>,
}

impl Conn {
    /// Why the server cut this connection; `None` while it has not (a body dropped with
    /// `None` here was dropped because the client went away).
    pub fn cut(&self) -> Option<Cut> {
        self.cut.get().copied()
    }
}

/// What a server serves: one response per request.
pub trait Service: Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;

    fn call(
        &self,
        req: Request<Incoming>,
        conn: &Conn,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// A running server. Dropping it stops it (see [`HttpServer::stop`]).
pub struct HttpServer {
    addr: SocketAddr,
    grace: Duration,
    stop: Option<oneshot::Sender<Duration>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Bind `listen` and serve what `make` builds (it runs on the server's thread, inside its
    /// runtime, so it may set up clients that need one).
    pub fn start<S, F>(
        listen: &Listen,
        limits: Limits,
        thread_name: &str,
        make: F,
    ) -> Result<Self, ServerError>
    where
        S: Service,
        F: FnOnce() -> S + Send + 'static,
    {
        let bind_err = |err| ServerError::Bind {
            setting: listen.setting,
            addr: crate::util::sanitize::terminal(&listen.text).into_owned(),
            err,
        };
        raise_fd_limit();
        let runtime = crate::util::runtime::current_thread().map_err(bind_err)?;
        // Bind here, so a busy address is an error now, not on the server's thread.
        let listener = runtime.block_on(bind(&listen.addrs)).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let service = Arc::new(make());
                    serve(listener, service, limits, stop_rx).await;
                })
            })
            .map_err(bind_err)?;
        Ok(Self {
            addr: local,
            grace: limits.grace,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting now, let exchanges in flight run for `grace`, cut the rest; returns when
    /// every connection is closed.
    pub fn stop(mut self, grace: Duration) {
        self.shut(grace);
    }

    fn shut(&mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut(self.grace);
    }
}

/// The first of `addrs` that binds (a name may resolve to IPv6 and IPv4).
async fn bind(addrs: &[SocketAddr]) -> io::Result<tokio::net::TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
    for a in addrs {
        let socket = if a.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        // A restart binds again while the last run's connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket.bind(*a).and_then(|()| socket.listen(BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Where the server is in its life; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the exchange in flight, take no new one.
    Draining,
    /// End now.
    Cutting,
}

async fn serve<S: Service>(
    listener: tokio::net::TcpListener,
    service: Arc<S>,
    limits: Limits,
    mut stop: oneshot::Receiver<Duration>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (phase, watcher) = watch::channel(Phase::Serving);
    let grace = loop {
        // Take a slot before accepting: beyond the cap, clients wait in the backlog.
        let permit = tokio::select! {
            g = &mut stop => break g.unwrap_or(limits.grace),
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            g = &mut stop => break g.unwrap_or(limits.grace),
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
        let conn = Conn {
            peer,
            cut: Arc::new(OnceLock::new()),
        };
        let (service, watcher) = (service.clone(), watcher.clone());
        tokio::spawn(async move {
            connection(stream, conn, service, limits, watcher).await;
            drop(permit);
        });
    };
    // New clients are refused from here on.
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = phase.send(Phase::Draining);
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        let _ = phase.send(Phase::Cutting);
        // Each connection notes why it ends and drops its exchange (which reports it).
        let _ = tokio::time::timeout(Duration::from_millis(200), slots.acquire_many(all)).await;
    }
}

async fn connection<S: Service>(
    stream: TcpStream,
    conn: Conn,
    service: Arc<S>,
    limits: Limits,
    mut phase: watch::Receiver<Phase>,
) {
    let start = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        io: stream,
        start,
        moved: moved.clone(),
    });
    let info = conn.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let (service, info) = (service.clone(), info.clone());
        async move { Ok::<_, std::convert::Infallible>(service.call(req, &info).await) }
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
        .keep_alive(limits.keep_alive)
        .serve_connection(io, svc);
    tokio::pin!(http);
    let mut watching = true;
    loop {
        let deadline = match limits.mode {
            Mode::Plain { exchange } => start + exchange,
            Mode::Streaming { idle } => {
                start + Duration::from_millis(moved.load(Ordering::Relaxed)) + idle
            }
        };
        tokio::select! {
            _ = http.as_mut() => return,
            _ = tokio::time::sleep_until(deadline) => {
                let cut = match limits.mode {
                    Mode::Plain { exchange } => Cut::Exchange(exchange),
                    Mode::Streaming { idle } => {
                        let last = start + Duration::from_millis(moved.load(Ordering::Relaxed));
                        if Instant::now() < last + idle {
                            continue;
                        }
                        Cut::Idle(idle)
                    }
                };
                let _ = conn.cut.set(cut);
                return;
            }
            changed = phase.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Serving => {}
                    Phase::Draining => http.as_mut().graceful_shutdown(),
                    Phase::Cutting => {
                        let _ = conn.cut.set(Cut::Stopped);
                        return;
                    }
                }
            }
        }
    }
}

/// A connection's socket that notes when a byte last moved either way (ms since `start`).
struct Watched {
    io: TcpStream,
    start: Instant,
    moved: Arc<AtomicU64>,
}

impl Watched {
    fn stamp(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.stamp();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.stamp();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.stamp();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Let this process open as many files as its hard limit allows, once: each connection costs
/// a descriptor (two through the proxy), and a soft limit of 1024 would make the connection
/// cap a lie.
fn raise_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::io::{Read, Write};
    use std::sync::Mutex;

    const TEST: Setting = Setting {
        name: "--test-addr",
        serves: "tests",
        example: "127.0.0.1:1234",
    };

    #[test]
    fn addresses_take_names_and_ips_and_errors_name_the_setting() {
        let l = Listen::parse("localhost:0", TEST).expect("a name");
        assert!(
            l.addrs.iter().all(|a| a.ip().is_loopback()),
            "{:?}",
            l.addrs
        );
        assert!(Listen::parse("[::1]:0", TEST).is_ok());
        let e = Listen::parse("localhost", TEST).expect_err("no port");
        assert_eq!(
            e.to_string(),
            "--test-addr localhost: no port; give HOST:PORT, e.g. 127.0.0.1:1234"
        );
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = busy.local_addr().expect("addr").to_string();
        let e = HttpServer::start(
            &Listen::parse(&addr, TEST).expect("ok"),
            Limits::PLAIN,
            "t",
            || Hang(Arc::new(Mutex::new(None))),
        )
        .err()
        .expect("busy");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("cannot serve tests on {addr}: ")),
            "{msg}"
        );
        assert!(
            msg.ends_with("pick a free address with --test-addr, e.g. 127.0.0.1:1234"),
            "{msg}"
        );
    }

    /// Never answers; keeps the connection it was called on, to read its cut.
    struct Hang(Arc<Mutex<Option<Conn>>>);

    impl Service for Hang {
        type Body = Full<Bytes>;
        fn call(
            &self,
            _req: Request<Incoming>,
            conn: &Conn,
        ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
            if let Ok(mut c) = self.0.lock() {
                *c = Some(conn.clone());
            }
            std::future::pending()
        }
    }

    #[test]
    fn a_plain_exchange_ends_at_its_cap_and_the_connection_knows_why() {
        let seen = Arc::new(Mutex::new(None));
        let limits = Limits {
            mode: Mode::Plain {
                exchange: Duration::from_millis(300),
            },
            ..Limits::PLAIN
        };
        let s = seen.clone();
        let server = HttpServer::start(
            &Listen::parse("127.0.0.1:0", TEST).expect("ok"),
            limits,
            "t",
            move || Hang(s),
        )
        .expect("start");
        let mut c = std::net::TcpStream::connect(server.local_addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let t = std::time::Instant::now();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut b = [0u8; 16];
        let n = c.read(&mut b).expect("closed, not timed out");
        assert_eq!(n, 0, "closed without an answer");
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let conn = seen.lock().expect("lock").clone().expect("called");
        assert_eq!(conn.cut(), Some(Cut::Exchange(Duration::from_millis(300))));
    }
}
