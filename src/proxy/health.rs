//! Whether the upstream answers: probed when the proxy starts and, while it does not, again
//! with a growing pause (backoff), so the state is shown (stderr for `llmtop proxy`, the status
//! line for `--proxy`) and its recovery said once. Requests are forwarded meanwhile anyway:
//! each gets its own connection (a 502 while the upstream is down).

use super::forward::Upstream;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The first pause after a failed probe; each next one doubles, up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// While the upstream answers, how often it is probed (to see it go down).
pub const PROBE_UP: Duration = Duration::from_secs(5);
const CONNECT: Duration = Duration::from_secs(2);

/// What the watch says, each once per change.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not answering: why, and when it is tried next.
    Down { why: String, retry_in: Duration },
    /// Answering (again).
    Up,
}

impl Health {
    /// The line for stderr or the status line.
    pub fn line(&self, upstream: &Upstream) -> String {
        match self {
            Health::Down { why, retry_in } => format!(
                "upstream {} not answering ({why}); requests get a 502 until it does; trying again in {:.1} s, then less and less often (at most every {} s)",
                upstream.url(),
                retry_in.as_secs_f64(),
                BACKOFF_MAX.as_secs()
            ),
            Health::Up => format!("upstream {} answers", upstream.url()),
        }
    }
}

/// The probing thread; dropping it stops it (without waiting: a probe in flight may take up
/// to its connect timeout, and a mode ends within a second).
pub struct HealthWatch {
    stop: Arc<AtomicBool>,
}

impl HealthWatch {
    /// Probe `upstream` now and on; `on` hears each change (on the watch's thread), with the
    /// line to show.
    pub fn start(upstream: &Upstream, on: impl Fn(Health, String) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, up) = (stop.clone(), upstream.clone());
        // No thread (the system is out of them) only means no probes: requests still go.
        let _ = std::thread::Builder::new()
            .name("llmtop-upstream".into())
            .spawn(move || {
                watch(&up.authority, &s, &|h: Health| {
                    if !s.load(Ordering::Relaxed) {
                        let line = h.line(&up);
                        on(h, line);
                    }
                })
            });
        Self { stop }
    }
}

impl Drop for HealthWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn probe(authority: &str) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut last = format!("{authority} resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Sleep `d` in short steps; false when asked to stop.
fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

fn watch(authority: &str, stop: &AtomicBool, tell: &dyn Fn(Health)) {
    // `None`: not probed yet (an upstream up at start is not announced).
    let mut up: Option<bool> = None;
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::Relaxed) {
        match probe(authority) {
            Ok(()) => {
                if up == Some(false) {
                    tell(Health::Up);
                }
                up = Some(true);
                backoff = BACKOFF_FIRST;
                if !pause(PROBE_UP, stop) {
                    return;
                }
            }
            Err(why) => {
                if up != Some(false) {
                    tell(Health::Down {
                        why: crate::util::sanitize::terminal(&why).into_owned(),
                        retry_in: backoff,
                    });
                }
                up = Some(false);
                if !pause(backoff, stop) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
