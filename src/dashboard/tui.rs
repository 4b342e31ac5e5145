//! The terminal guard: raw mode, alternate screen, bracketed paste, and a restore that runs on
//! every exit path (drop, error, panic) and is safe to run twice. Also how the event loop draws
//! a frame on any backend ([`FrameBackend`], [`draw`]).

use crossterm::{
    cursor, event,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend, TestBackend};
use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static ACTIVE: AtomicBool = AtomicBool::new(false);
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
