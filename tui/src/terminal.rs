//! The terminal: raw mode and the alternate screen on the way in, and the
//! terminal given back as it was on every way out — a normal return, an
//! error, a panic (a hook restores it before the panic message prints), or
//! a signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT set a flag the event loop
//! checks, so the loop ends and the guard restores).

use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// True while the terminal is in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The last terminating signal received, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static HOOKS: Once = Once::new();

/// The terminal in dashboard mode; dropping it restores the terminal.
pub struct Guard {
    /// The ratatui terminal.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Enters dashboard mode.
pub fn enter() -> io::Result<Guard> {
    HOOKS.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
            // SAFETY: `on_signal` only stores into an atomic, which is
            // async-signal-safe; the sigaction struct is zeroed (no flags,
            // empty mask) and then given the handler.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
        // A resize interrupts the wait for a key, so the next frame is
        // drawn at the new size at once (SIGWINCH is otherwise ignored,
        // and an ignored signal interrupts nothing).
        // SAFETY: as above; the handler does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_resize as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGWINCH, &action, std::ptr::null_mut());
        }
    });
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut stdout = io::stdout();
    if let Err(e) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(e);
    }
    match Terminal::new(CrosstermBackend::new(stdout)) {
        Ok(terminal) => Ok(Guard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

extern "C" fn on_resize(_: libc::c_int) {}

/// The terminating signal received since the dashboard started, if any.
pub fn signalled() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// What waiting for the keyboard found.
pub enum Input {
    /// Input is ready to read.
    Ready,
    /// Nothing came in time.
    None,
    /// The terminal is gone (its window closed, the session killed).
    HungUp,
}

/// Waits up to `timeout` for input on standard input (the terminal).
///
/// This is polled here rather than with crossterm's `event::poll`, which
/// on a terminal that has hung up spins at full speed inside the call
/// and never returns (a dashboard whose window closed must end, not burn
/// a core), and which can lose a key that arrives with a resize (see
/// `keys.rs`, which reads what this poll finds).
pub fn wait_for_input(timeout: std::time::Duration) -> Input {
    let mut fd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    if n <= 0 {
        // Timeout, or interrupted by a signal (the loop checks for it).
        return Input::None;
    }
    if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Input::HungUp
    } else {
        Input::Ready
    }
}

/// Gives the terminal back: leaves the alternate screen, shows the cursor,
/// ends raw mode. Safe to call more than once.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}
