//! The terminating signals, listed once for every mode (the metering runtime's signal policy,
//! `metering::signals`, catches this list), and a last-word watcher for code that must undo
//! something before the process dies of one (the power caps of `bench --sweep power-cap=...`).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Every signal whose default action ends the process and that can be caught, except the
/// synchronous ones (SIGSEGV, SIGBUS, SIGABRT, ...) that `term::guard` restores the
/// terminal for. SIGPIPE is left out: Rust ignores it and write errors report it. The
/// real-time signals (SIGRTMIN..=SIGRTMAX) end the process too: see [`all`].
pub const TERMINATING: &[(libc::c_int, &str)] = &[
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
];

/// The name real-time signals are reported by.
pub const REAL_TIME: &str = "a real-time signal";

/// Every terminating signal with its name, the real-time ones included.
pub fn all() -> Vec<(libc::c_int, &'static str)> {
    let mut v = TERMINATING.to_vec();
    v.extend((libc::SIGRTMIN()..=libc::SIGRTMAX()).map(|s| (s, REAL_TIME)));
    v
}

/// Whether `sig` is ignored now (`nohup` ignores SIGHUP): such a signal must stay ignored,
/// not become one that ends the process.
pub fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// What to do when a terminating signal arrives, before the process dies of it (the name of
/// the signal as its argument).
pub type LastWord = Arc<dyn Fn(&'static str) + Send + Sync>;

static LAST_WORD: Mutex<Option<LastWord>> = Mutex::new(None);
static WATCHER: OnceLock<Result<(), String>> = OnceLock::new();

/// While this lives, a terminating signal runs its last word, then ends the process as the
/// signal would have (default action, so the parent sees "killed by SIGTERM"). Dropping it
/// takes the word back; the signals then still end the process at once, as by default.
#[must_use = "the last word is taken back when this is dropped"]
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        *LAST_WORD.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Catch every terminating signal that is not ignored (once per process, on a thread of its
/// own) and arm `word`. Err when the signals cannot be caught: the caller says so, since a
/// signal would then end the process without the last word.
pub fn last_word(word: LastWord) -> Result<Armed, String> {
    WATCHER.get_or_init(start_watcher).clone()?;
    *LAST_WORD.lock().unwrap_or_else(PoisonError::into_inner) = Some(word);
    Ok(Armed(()))
}

fn start_watcher() -> Result<(), String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("llmtop-last-word".into())
        .spawn(move || {
            let rt = match super::runtime::current_thread() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("no signal runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let mut streams = Vec::new();
                for (sig, name) in all() {
                    if ignored(sig) {
                        continue;
                    }
                    match signal(SignalKind::from_raw(sig)) {
                        Ok(s) => streams.push((sig, name, s)),
                        Err(e) if sig == libc::SIGTERM => {
                            let _ = ready_tx.send(Err(format!("cannot catch SIGTERM: {e}")));
                            return;
                        }
                        Err(_) => {}
                    }
                }
                let _ = ready_tx.send(Ok(()));
                let (sig, name) = std::future::poll_fn(|cx| {
                    for (sig, name, s) in streams.iter_mut() {
                        // Ready(None) only when the runtime shuts down: not a signal.
                        if let std::task::Poll::Ready(Some(())) = s.poll_recv(cx) {
                            return std::task::Poll::Ready((*sig, *name));
                        }
                    }
                    std::task::Poll::Pending
                })
                .await;
                let word = LAST_WORD
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(word) = word {
                    word(name);
                }
                die_of(sig);
            });
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err("the signal thread ended".into()))
}

/// End the process as `sig`'s default action does.
fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: a zeroed sigaction with SIG_DFL and an empty mask is valid for any signal;
    // raise then delivers it to this thread, and unblocking it lets it act.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    // Only for a signal whose default action is not to end the process (none of ours).
    std::process::exit(128 + sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_sigterm_and_sighup_and_every_real_time_signal() {
        let v = all();
        assert!(v.contains(&(libc::SIGTERM, "SIGTERM")));
        assert!(v.contains(&(libc::SIGHUP, "SIGHUP")));
        let rt = v.iter().filter(|(_, n)| *n == REAL_TIME).count();
        assert_eq!(rt as i32, libc::SIGRTMAX() - libc::SIGRTMIN() + 1);
        assert!(
            !v.iter()
                .any(|(s, _)| *s == libc::SIGKILL || *s == libc::SIGPIPE)
        );
    }
}
