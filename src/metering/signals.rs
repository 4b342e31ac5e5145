//! The signal policy, once for every mode: each catchable signal whose default action ends the
//! process (SIGTERM from `systemctl stop` or `docker stop`, SIGHUP when the terminal closes or
//! SSH drops, SIGINT, SIGQUIT, SIGUSR1, SIGALRM, the real-time signals, ...) ends the run the
//! same way: the loop stops, the drain runs, records and the tally are flushed, the terminal
//! is put back. A second signal cuts the drain short; from then on the signals have their
//! default action again, so a third ends the process whatever it is doing.

use std::io;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals of the policy: the one list, in `util::signals` (below every layer, so the
/// power-cap sweep's last word, in `bench`, catches the same set).
pub use crate::util::signals::{REAL_TIME, TERMINATING};

/// The signals the runtime catches: the one list less SIGXFSZ, which the runtime ignores
/// instead (a write past the file-size limit, `ulimit -f`, then fails with EFBIG, as SIGPIPE's
/// writes do, and the proxy keeps its records in memory rather than the run ending).
pub fn all() -> Vec<(libc::c_int, &'static str)> {
    crate::util::signals::all()
        .into_iter()
        .filter(|(s, _)| *s != libc::SIGXFSZ)
        .collect()
}

/// The terminating signals, caught. Dropping it does not give the default actions back (the
/// process is on its way out by then).
pub struct Signals {
    streams: Vec<(&'static str, Signal)>,
    received: u32,
}

impl Signals {
    /// Catch every signal of the policy. Must be called inside the runtime. Err only when
    /// SIGTERM itself cannot be caught; other signals that cannot be are skipped.
    pub fn listen() -> io::Result<Self> {
        ignore_file_size_limit();
        let mut streams = Vec::new();
        for (sig, name) in all() {
            match signal(SignalKind::from_raw(sig)) {
                Ok(s) => streams.push((name, s)),
                Err(e) if sig == libc::SIGTERM => return Err(e),
                Err(_) => {}
            }
        }
        Ok(Self {
            streams,
            received: 0,
        })
    }

    /// No signals: [`Signals::recv`] never returns (tests, or a mode whose catching failed
    /// and said so).
    pub fn none() -> Self {
        Self {
            streams: Vec::new(),
            received: 0,
        }
    }

    /// The next signal's name. After the second, every signal of the policy has its default
    /// action back.
    pub async fn recv(&mut self) -> &'static str {
        let name = std::future::poll_fn(|cx| {
            for (name, s) in self.streams.iter_mut() {
                // Ready(None) only when the runtime shuts down: not a signal.
                if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await;
        self.received += 1;
        if self.received == 2 {
            restore_defaults();
            tracing::warn!("{name} again: the drain is cut short; a third signal ends llmtop");
        }
        name
    }

    /// Signals received so far.
    pub fn received(&self) -> u32 {
        self.received
    }
}

/// A write past the file-size limit fails (EFBIG) instead of ending the process.
fn ignore_file_size_limit() {
    // SAFETY: a zeroed sigaction with SIG_IGN and an empty mask is valid for SIGXFSZ; nothing
    // else handles it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGXFSZ, &action, std::ptr::null_mut());
    }
}

/// The default action for every signal of the policy.
fn restore_defaults() {
    for (sig, _) in all() {
        // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is valid for any signal;
        // installing it replaces tokio's handler, nothing else refers to it.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
