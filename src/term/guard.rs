//! The terminal guard: raw mode, alternate screen, bracketed paste, and a restore that runs on
//! every exit path (drop, error, panic) and is safe to run twice. Also how the event loop draws
//! a frame on any backend ([`FrameBackend`], [`draw`]).

use crossterm::{
    cursor, event,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend, TestBackend};
use std::cell::UnsafeCell;
use std::io::{self, Stdout, Write};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal's settings from before raw mode, for the fatal-signal handler, which may not
/// lock or allocate. Written once before [`TERMIOS_FD`] is published, only read after.
struct SavedTermios(UnsafeCell<MaybeUninit<libc::termios>>);
// SAFETY: written once, before TERMIOS_FD is stored (Release); read only after it is loaded
// (Acquire) and found set.
unsafe impl Sync for SavedTermios {}
static SAVED_TERMIOS: SavedTermios = SavedTermios(UnsafeCell::new(MaybeUninit::uninit()));
/// The descriptor of the terminal whose settings are in SAVED_TERMIOS; -1 until saved.
static TERMIOS_FD: AtomicI32 = AtomicI32::new(-1);

/// What `restore` sends, as raw bytes for the signal handler: end synchronized update,
/// disable bracketed paste, leave the alternate screen, show the cursor.
const LEAVE_SEQUENCE: &[u8] = b"\x1b[?2026l\x1b[?2004l\x1b[?1049l\x1b[?25h";

/// Signals that kill the process without unwinding: llama.cpp's asserts (SIGABRT), a crash
/// in C++ (SIGSEGV, SIGFPE, SIGILL), a model file truncated while mapped (SIGBUS). Their
/// handler puts the terminal back, then lets the signal kill the process as it would have.
const FATAL_SIGNALS: [libc::c_int; 7] = [
    libc::SIGABRT,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// The fatal-signal handler's progress: 0 not entered, 1 restoring, 2 restored.
static FATAL_RESTORE: AtomicU8 = AtomicU8::new(0);
/// How long a second crashing thread waits for the first to put the terminal back, in spins
/// (well under a second); bounded so a fault inside the restore itself cannot hang.
const FATAL_WAIT_SPINS: u32 = 50_000_000;

/// Async-signal-safe calls only: tcsetattr, write, dup2, signal, raise. Several threads can
/// fault at once (llama.cpp's workers on a truncated mapping): one restores the terminal, the
/// others wait for it, so none kills the process with the screen still raw.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let first = FATAL_RESTORE
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if first {
        // SAFETY: every call here is async-signal-safe; SAVED_TERMIOS is initialised
        // whenever TERMIOS_FD is set (see `save_termios`).
        unsafe {
            let saved = SAVED_STDERR.load(Ordering::SeqCst);
            if saved >= 0 {
                libc::dup2(saved, 2);
            }
            if ACTIVE.load(Ordering::SeqCst) {
                let fd = TERMIOS_FD.load(Ordering::Acquire);
                if fd >= 0 {
                    libc::tcsetattr(fd, libc::TCSANOW, (*SAVED_TERMIOS.0.get()).as_ptr());
                }
                libc::write(1, LEAVE_SEQUENCE.as_ptr().cast(), LEAVE_SEQUENCE.len());
            }
        }
        FATAL_RESTORE.store(2, Ordering::SeqCst);
    } else {
        let mut spins = 0;
        while FATAL_RESTORE.load(Ordering::SeqCst) != 2 && spins < FATAL_WAIT_SPINS {
            std::hint::spin_loop();
            spins += 1;
        }
    }
    // The default action, so the exit status names the signal (and a core is dumped where
    // the system wants one).
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Remember the terminal's settings (the descriptor crossterm puts in raw mode: stdin when
/// it is a terminal, else /dev/tty) for the fatal-signal handler. Once per process.
fn save_termios() {
    if TERMIOS_FD.load(Ordering::Acquire) >= 0 {
        return;
    }
    // SAFETY: isatty/open/tcgetattr on descriptors we own; the termios is written before
    // its descriptor is published. The /dev/tty descriptor stays open for the handler.
    unsafe {
        let fd = if libc::isatty(0) == 1 {
            0
        } else {
            libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
        };
        if fd < 0 {
            return;
        }
        if libc::tcgetattr(fd, (*SAVED_TERMIOS.0.get()).as_mut_ptr()) == 0 {
            TERMIOS_FD.store(fd, Ordering::Release);
        } else if fd != 0 {
            libc::close(fd);
        }
    }
}

/// Install the fatal-signal handler for [`FATAL_SIGNALS`]; once per process. It does nothing
/// to the terminal unless the TUI is up.
fn install_fatal_signal_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in FATAL_SIGNALS {
            // SAFETY: a zeroed sigaction with a valid handler, an empty mask and flags that
            // run it on the alternate stack when there is one (stack overflow). It stays
            // installed for every thread that faults; the handler resets it before re-raising.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fatal_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}
/// The real stderr, saved while fd 2 points at the log file; -1 when not redirected.
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

/// Point fd 2 at `log` while the TUI is up, so nothing (llama.cpp, a stray eprintln!) can
/// scribble over the screen. `restore` puts the real stderr back.
pub fn redirect_stderr(log: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    // SAFETY: dup/dup2 on valid descriptors; `file` stays open until after dup2 copied it.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            let e = io::Error::last_os_error();
            libc::close(saved);
            return Err(e);
        }
        SAVED_STDERR.store(saved, Ordering::SeqCst);
    }
    Ok(())
}

fn restore_stderr() {
    let saved = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if saved >= 0 {
        // SAFETY: `saved` is the descriptor dup'ed in `redirect_stderr`, closed only here.
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
    }
}

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal while the dashboard runs; restores it when dropped.
pub struct Tui {
    pub terminal: Term,
}

/// Put the terminal back: real stderr, leave the alternate screen, show the cursor, cooked mode.
/// Idempotent: does nothing when the terminal is not (or no longer) taken over.
pub fn restore() {
    restore_stderr();
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = io::stdout();
        let _ = crossterm::execute!(
            out,
            terminal::EndSynchronizedUpdate,
            event::DisableBracketedPaste,
            LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
}

/// Chain a panic hook that restores the terminal before the panic message is printed,
/// so the message lands on a usable screen.
///
/// Only a panic on the thread that owns the terminal restores it: a background thread's panic
/// (a sensor the sampler catches, a metrics request) must not drop the screen out of raw mode
/// while the dashboard keeps drawing. Its message goes to the log through the redirected stderr.
pub fn install_panic_hook() {
    let ui_thread = std::thread::current().id();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread {
            restore();
        }
        prev(info);
    }));
}

impl Tui {
    pub fn enter() -> io::Result<Tui> {
        install_panic_hook();
        save_termios();
        install_fatal_signal_handlers();
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        // Clear with crossterm rather than `Terminal::clear`, which asks the terminal for the
        // cursor position and waits for the answer: one round trip over SSH, 2 s on a pty
        // that never answers.
        let setup = crossterm::execute!(
            out,
            EnterAlternateScreen,
            event::EnableBracketedPaste,
            terminal::Clear(terminal::ClearType::All)
        );
        if let Err(e) = setup {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(Tui { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// A backend the event loop draws frames to: what to send around each frame. A real terminal
/// brackets it in a synchronized update; a test backend needs nothing.
pub trait FrameBackend: Backend {
    fn begin_frame(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end_frame(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Terminals that support synchronized updates (and tmux) show each frame whole instead of
/// half-drawn.
impl<W: Write> FrameBackend for CrosstermBackend<W> {
    fn begin_frame(&mut self) -> io::Result<()> {
        crossterm::queue!(self, terminal::BeginSynchronizedUpdate)
    }
    fn end_frame(&mut self) -> io::Result<()> {
        crossterm::execute!(self, terminal::EndSynchronizedUpdate)
    }
}

impl FrameBackend for TestBackend {}

/// Draw one frame, bracketed as the backend wants it.
pub fn draw<B: FrameBackend>(
    terminal: &mut Terminal<B>,
    f: impl FnOnce(&mut ratatui::Frame),
) -> Result<(), B::Error> {
    terminal.backend_mut().begin_frame()?;
    terminal.draw(f)?;
    terminal.backend_mut().end_frame()
}

#[cfg(test)]
mod panic_hook_tests {
    use super::ACTIVE;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_background_thread_panic_does_not_restore_the_terminal() {
        ACTIVE.store(true, Ordering::SeqCst);
        super::install_panic_hook();
        let joined = std::thread::spawn(|| panic!("a sensor blew up")).join();
        assert!(joined.is_err());
        let still_active = ACTIVE.load(Ordering::SeqCst);
        ACTIVE.store(false, Ordering::SeqCst);
        assert!(
            still_active,
            "a background panic took the terminal out of the TUI"
        );
    }
}
