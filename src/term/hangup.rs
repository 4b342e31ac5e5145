//! A closed terminal, noticed without reading it. When the terminal goes away (the SSH
//! connection drops, the tmux pane or the terminal window is closed) the kernel hangs it up:
//! reads return end-of-file or EIO from then on. crossterm's reader loops on such a read
//! without end (a whole core, for as long as the process lives), so it cannot be trusted to say
//! so. This watcher waits in `poll` for the hangup alone, on a thread of its own that costs
//! nothing meanwhile; when it comes it points fd 0 at an empty pipe, so crossterm's read blocks
//! instead of spinning, and wakes the event loop, which ends the run as a signal would.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::oneshot;

/// Whether the terminal hung up (drawing to it fails from then on, which is no error).
static HUNG_UP: AtomicBool = AtomicBool::new(false);

pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
}

/// The watch on stdin's terminal; dropping it ends the watching thread.
pub struct Hangup {
    rx: Option<oneshot::Receiver<()>>,
    /// Closing it wakes the thread to end.
    _stop: OwnedFd,
}

impl Hangup {
    /// Watch the terminal on stdin; `None` when stdin is not one (then crossterm reads
    /// /dev/tty, and the hangup's SIGHUP still ends the run).
    pub fn watch() -> Option<Self> {
        // SAFETY: isatty and pipe2 on descriptors we own; the pipe's ends are wrapped at once.
        let (stop_r, stop_w) = unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut p = [0; 2];
            if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return None;
            }
            (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1]))
        };
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("llmtop-hangup".into())
            .spawn(move || {
                if wait(&stop_r) {
                    neutralise_stdin();
                    HUNG_UP.store(true, Ordering::SeqCst);
                    let _ = tx.send(());
                }
            })
            .ok()?;
        Some(Self {
            rx: Some(rx),
            _stop: stop_w,
        })
    }

    /// Resolves when the terminal hung up; never if the watch ended otherwise.
    pub async fn wait(&mut self) {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        if rx.await.is_err() {
            self.rx = None;
            std::future::pending::<()>().await;
        }
        self.rx = None;
    }
}

/// Block until fd 0 hangs up (`true`) or `stop`'s writer is closed (`false`). Asking for no
/// events, poll reports only the hangup and errors: key presses do not wake it.
fn wait(stop: &OwnedFd) -> bool {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: 0,
                events: 0,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two pollfds we own, for as long as it takes.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if fds[1].revents != 0 {
            return false;
        }
        if fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return true;
        }
    }
}

/// Point fd 0 at an empty pipe whose writer stays open: reads of it block. The terminal is
/// gone, so nothing is lost; the writer is leaked on purpose (the process is ending).
fn neutralise_stdin() {
    let mut p = [0; 2];
    // SAFETY: pipe2/dup2/close on descriptors we own; fd 0 is replaced atomically.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) == 0 {
            libc::dup2(p[0], 0);
            libc::close(p[0]);
        }
    }
}
