//! Keys, read from the terminal ourselves: the bytes a terminal sends in
//! raw mode, decoded into crossterm's `KeyEvent`s for [`crate::App::key`].
//!
//! Why not crossterm's event reader: it waits on the terminal and on its
//! own SIGWINCH pipe with an edge-triggered poll, and when a resize and a
//! key become ready together it returns the resize and loses the key's
//! readiness: the key then sat unread (and the dashboard, seeing input
//! waiting on its own level-triggered poll, spun a core) until the next
//! key arrived. Reading standard input here, after a level-triggered poll
//! said it is readable, never loses a byte; resizes need no event at all,
//! since every frame is drawn at the terminal's current size.
//!
//! What is decoded: printable characters (UTF-8), Enter, Tab, Backspace,
//! Escape, control letters, and the escape sequences of xterm-like
//! terminals (and tmux, the Linux console) for the arrows, Home, End,
//! Page Up/Down, Shift-Tab and F1-F4. Anything else is skipped whole.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Reads what standard input has (after a poll said it is readable) and
/// decodes it. An empty result with `Ok` means the terminal sent bytes
/// that name no key.
pub fn read() -> std::io::Result<Vec<KeyEvent>> {
    let mut buf = [0u8; 1024];
    // SAFETY: reads at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    Ok(decode(&buf[..n as usize]))
}

/// Decodes one read's bytes. A lone escape byte at the end is the Escape
/// key (terminals send a sequence in one write, so its bytes arrive
/// together).
pub fn decode(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (key, used) = one(&bytes[i..]);
        if let Some(key) = key {
            keys.push(key);
        }
        i += used.max(1);
    }
    keys
}

fn plain(code: KeyCode) -> Option<KeyEvent> {
    Some(KeyEvent::new(code, KeyModifiers::NONE))
}

/// The key at the start of `b` (if it names one) and the bytes it took.
fn one(b: &[u8]) -> (Option<KeyEvent>, usize) {
    match b[0] {
        0x1b => escape(b),
        b'\r' | b'\n' => (plain(KeyCode::Enter), 1),
        b'\t' => (plain(KeyCode::Tab), 1),
        0x7f | 0x08 => (plain(KeyCode::Backspace), 1),
        c @ 0x01..=0x1a => {
            let letter = (b'a' + c - 1) as char;
            (
                Some(KeyEvent::new(KeyCode::Char(letter), KeyModifiers::CONTROL)),
                1,
            )
        }
        0x00..=0x1f => (None, 1),
        _ => utf8(b),
    }
}

/// A UTF-8 character (an invalid byte is skipped).
fn utf8(b: &[u8]) -> (Option<KeyEvent>, usize) {
    let len = match b[0] {
        0x20..=0x7e => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    if b.len() < len {
        return (None, b.len());
    }
    match std::str::from_utf8(&b[..len])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => (plain(KeyCode::Char(c)), len),
        None => (None, 1),
    }
}

/// An escape sequence, or the Escape key.
fn escape(b: &[u8]) -> (Option<KeyEvent>, usize) {
    match b.get(1) {
        None | Some(0x1b) => (plain(KeyCode::Esc), 1),
        Some(b'[') => csi(b),
        Some(b'O') => match b.get(2) {
            Some(&c) => (ss3(c), 3),
            None => (None, 2),
        },
        // Alt and a key: not used by the dashboard; the key alone.
        Some(_) => (None, 1),
    }
}

/// The cursor key a final byte names (the same in `ESC O x` and
/// `ESC [ x`).
fn cursor(c: u8) -> Option<KeyEvent> {
    match c {
        b'A' => plain(KeyCode::Up),
        b'B' => plain(KeyCode::Down),
        b'C' => plain(KeyCode::Right),
        b'D' => plain(KeyCode::Left),
        b'H' => plain(KeyCode::Home),
        b'F' => plain(KeyCode::End),
        _ => None,
    }
}

/// `ESC O x`: application-mode cursor keys and F1-F4.
fn ss3(c: u8) -> Option<KeyEvent> {
    match c {
        b'P'..=b'S' => plain(KeyCode::F(c - b'P' + 1)),
        _ => cursor(c),
    }
}

/// `ESC [ params final`: cursor keys, Shift-Tab and the `~` keys.
fn csi(b: &[u8]) -> (Option<KeyEvent>, usize) {
    // Parameters and intermediates are 0x20-0x3f; the final byte 0x40-0x7e.
    let Some(end) = b[2..].iter().position(|c| (0x40..=0x7e).contains(c)) else {
        return (None, b.len());
    };
    let used = 2 + end + 1;
    let params = &b[2..2 + end];
    let first: Option<u32> = params
        .split(|&c| c == b';')
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse().ok());
    let key = match b[2 + end] {
        b'Z' => Some(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        b'~' => match first {
            Some(1 | 7) => plain(KeyCode::Home),
            Some(4 | 8) => plain(KeyCode::End),
            Some(5) => plain(KeyCode::PageUp),
            Some(6) => plain(KeyCode::PageDown),
            Some(n @ 11..=14) => plain(KeyCode::F((n - 10) as u8)),
            _ => None,
        },
        c => cursor(c),
    };
    (key, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(bytes: &[u8]) -> Vec<KeyCode> {
        decode(bytes).into_iter().map(|k| k.code).collect()
    }

    #[test]
    fn printable_keys_and_controls() {
        assert_eq!(
            codes(b"sq/\r\t\x7f"),
            [
                KeyCode::Char('s'),
                KeyCode::Char('q'),
                KeyCode::Char('/'),
                KeyCode::Enter,
                KeyCode::Tab,
                KeyCode::Backspace
            ]
        );
        let ctrl_c = decode(b"\x03");
        assert_eq!(ctrl_c[0].code, KeyCode::Char('c'));
        assert!(ctrl_c[0].modifiers.contains(KeyModifiers::CONTROL));
        assert_eq!(
            codes("é€".as_bytes()),
            [KeyCode::Char('é'), KeyCode::Char('€')]
        );
    }

    #[test]
    fn escape_sequences_of_the_usual_terminals() {
        assert_eq!(
            codes(b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[4~\x1b[Z\x1bOP\x1b[11~"),
            [
                KeyCode::Up,
                KeyCode::Down,
                KeyCode::Right,
                KeyCode::Left,
                KeyCode::Up,
                KeyCode::PageUp,
                KeyCode::PageDown,
                KeyCode::Home,
                KeyCode::End,
                KeyCode::BackTab,
                KeyCode::F(1),
                KeyCode::F(1)
            ]
        );
        // Modified arrows (ESC [ 1 ; 5 C) are still arrows.
        assert_eq!(codes(b"\x1b[1;5C"), [KeyCode::Right]);
    }

    #[test]
    fn a_lone_escape_is_the_escape_key_and_junk_is_skipped() {
        assert_eq!(codes(b"\x1b"), [KeyCode::Esc]);
        assert_eq!(codes(b"\x1b\x1b"), [KeyCode::Esc, KeyCode::Esc]);
        // An unknown sequence goes whole; the key after it is kept.
        assert_eq!(codes(b"\x1b[200~s"), [KeyCode::Char('s')]);
        // A cut sequence at the end is dropped, not taken for keys.
        assert_eq!(codes(b"s\x1b[1;"), [KeyCode::Char('s')]);
        assert_eq!(codes(b"\xff\x80q"), [KeyCode::Char('q')]);
    }
}
