//! Messages to stderr that never allocate: the statistics line, warnings about
//! bad settings, and the report of an invalid pointer (fatal unless
//! `MEMTALLY=on_error=report`).
//!
//! Everything here formats into a fixed buffer on the stack and writes it with
//! one `write(2)`, because it runs inside the allocator, possibly while a heap
//! is half-updated, where calling anything that allocates would recurse.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// `on_error=report`: an invalid pointer is reported and the call ignored,
/// instead of aborting.
static REPORT_ONLY: AtomicBool = AtomicBool::new(false);

/// Did `on_error=report` ask to carry on after memory errors?
pub fn report_only() -> bool {
    REPORT_ONLY.load(Ordering::Relaxed)
}

/// Chooses what an invalid pointer does: abort (false, the default, as glibc
/// does) or report and carry on (true).
pub fn set_report_only(on: bool) {
    REPORT_ONLY.store(on, Ordering::Relaxed);
}

/// A one-line message built on the stack and written to stderr at once.
pub struct LineWriter {
    buf: [u8; 512],
    len: usize,
}

impl LineWriter {
    /// An empty line.
    pub const fn new() -> Self {
        LineWriter {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Writes the line and a newline to stderr (truncated if too long).
    pub fn emit(self) {
        self.emit_to(2);
    }

    /// Writes the line and a newline to file descriptor `fd`.
    pub fn emit_to(mut self, fd: i32) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
        let mut off = 0;
        while off < self.len {
            // SAFETY: the range [off, len) lies inside `buf`.
            let n = unsafe { libc::write(fd, self.buf.as_ptr().add(off).cast(), self.len - off) };
            if n <= 0 {
                break;
            }
            off += n as usize;
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The one-line result of a leak scan on stderr.
pub fn leak_summary(when: &str, s: &crate::leak::LeakSummary) {
    use fmt::Write;
    let mut w = LineWriter::new();
    let _ = write!(
        w,
        "memtally: leak scan {when}: {} blocks leaked directly ({}), {} indirectly ({}); {} still reachable ({}); the program paused {} ms",
        s.direct[0],
        Bytes(s.direct[1]),
        s.indirect[0],
        Bytes(s.indirect[1]),
        s.reachable[0],
        Bytes(s.reachable[1]),
        s.pause_us / 1000,
    );
    if s.threads_missed > 0 {
        let _ = write!(
            w,
            "; {} threads did not stop, so a block only they hold may be reported",
            s.threads_missed
        );
    }
    w.emit();
}

/// Bytes in the largest unit that keeps a whole number ahead of the point.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b == 1 {
            f.write_str("1 byte")
        } else if b < 1024 {
            write!(f, "{b} bytes")
        } else if b < 1 << 20 {
            write!(f, "{:.1} KiB", b as f64 / 1024.0)
        } else if b < 1 << 30 {
            write!(f, "{:.1} MiB", b as f64 / (1 << 20) as f64)
        } else {
            write!(f, "{:.2} GiB", b as f64 / (1 << 30) as f64)
        }
    }
}

/// What is wrong with a pointer passed to `free`, `realloc` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPointer {
    /// Not inside any memory this allocator handed out (another allocator's
    /// pointer, a stack or static address, garbage).
    NotOurs,
    /// Inside one of our blocks, but not at its start.
    Interior {
        /// Start of the block the pointer falls into.
        block: usize,
        /// Bytes from the block start.
        offset: usize,
        /// Size of the block.
        size: usize,
    },
    /// In a page of ours with no live block: freed twice or never allocated.
    NotLive,
    /// A block of one allocation family freed by another (`free` of a
    /// `new[]` block, `delete` of a `malloc` one...).
    Mismatch {
        /// The call that allocated it: `malloc`, `new` or `new[]`.
        allocated: &'static str,
    },
    /// A Rust `dealloc` whose layout does not match the block.
    Layout {
        /// The layout's size.
        size: usize,
        /// The layout's alignment.
        align: usize,
        /// Usable bytes of the block at the pointer.
        usable: usize,
    },
}

impl fmt::Display for BadPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadPointer::NotOurs => f.write_str("not allocated by memtally"),
            BadPointer::Interior {
                block,
                offset,
                size,
            } => write!(
                f,
                "points {offset} bytes into the {size}-byte block at {block:#x}"
            ),
            BadPointer::NotLive => {
                f.write_str("no live block there (freed twice, or never allocated)")
            }
            BadPointer::Mismatch { allocated } => {
                write!(f, "the block was allocated with {allocated}")
            }
            BadPointer::Layout {
                size,
                align,
                usable,
            } => write!(
                f,
                "dealloc with a layout (size {size}, align {align}) that does not match the block ({usable} usable bytes at that address)"
            ),
        }
    }
}

/// Reports an invalid pointer passed to `call`, then aborts the process, as
/// glibc does, unless `on_error=report` asked to carry on; the caller then
/// ignores the call (a free that frees nothing is the safe way on: freeing
/// the block again would corrupt the heap).
#[cold]
#[inline(never)]
pub fn invalid_pointer(call: &str, p: *const u8, why: BadPointer) {
    let error = match why {
        BadPointer::NotOurs => crate::trace::error::NOT_OURS,
        BadPointer::Interior { .. } => crate::trace::error::INTERIOR,
        BadPointer::NotLive => crate::trace::error::NOT_LIVE,
        BadPointer::Layout { .. } => crate::trace::error::LAYOUT,
        BadPointer::Mismatch { .. } => crate::trace::error::MISMATCH,
    };
    // Recorded first, so that the line says whether it was (a thread
    // whose first call this is gets a heap to record with).
    let recorded = crate::record::on_invalid_pointer(call, p, error);
    let report_only = REPORT_ONLY.load(Ordering::Relaxed);
    let mut w = LineWriter::new();
    use fmt::Write;
    let _ = write!(
        w,
        "memtally: {call}(): invalid pointer {p:p}: {why}{}{}",
        if recorded {
            " (recorded in the trace with the call's stack: see memtally report)"
        } else {
            ""
        },
        if report_only {
            "; the call is ignored"
        } else {
            ""
        },
    );
    w.emit();
    caller_stack();
    if !report_only {
        abort();
    }
}

/// `memtally:   at: ...`: the calling thread's stack, for a report.
#[inline(never)]
fn caller_stack() {
    let mut frames = [0u64; 24];
    let bounds = crate::record::stack::Bounds::of_current_thread();
    let n = crate::record::stack::capture(&mut frames, bounds, &crate::signals::RULES);
    stack_line("at", &frames[..n]);
}

fn abort() -> ! {
    // SAFETY: abort has no preconditions; it raises SIGABRT like glibc does
    // on heap corruption, so core dumps and debuggers see the usual signal.
    unsafe { libc::abort() }
}

/// Prints a one-line warning prefixed with `memtally: `.
pub fn warn(args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new();
    use fmt::Write;
    let _ = w.write_str("memtally: ");
    let _ = w.write_fmt(args);
    w.emit();
}

/// `n` in decimal, written without allocating into `buf`; the digits.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// What the loader knows of the module holding `pc`.
pub fn dl_info(pc: u64) -> Option<libc::Dl_info> {
    // SAFETY: a zeroed Dl_info is valid; dladdr only reads the loader's
    // tables and fills `info` when `pc` is inside a module.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        (libc::dladdr(pc as *const libc::c_void, &mut info) != 0).then_some(info)
    }
}

/// The load address of the module `pc` is in (0 if none).
pub fn module_base(pc: u64) -> u64 {
    dl_info(pc).map_or(0, |i| i.dli_fbase as u64)
}

/// `  NAME: module+0xoffset <- ...` for a stack (module from `dladdr`).
/// When memtally is a library of its own (preloaded), its frames at the
/// inner end are left out; linked into the program (a Rust global
/// allocator), they cannot be told from the program's by module.
pub fn stack_line(name: &str, frames: &[u64]) {
    use fmt::Write;
    let ours = module_base(stack_line as *const () as u64);
    // SAFETY: getauxval has no preconditions.
    let program = module_base(unsafe { libc::getauxval(libc::AT_ENTRY) });
    let skip = frames
        .iter()
        .take_while(|&&pc| ours != 0 && ours != program && module_base(pc) == ours)
        .count();
    let frames = if skip < frames.len() {
        &frames[skip..]
    } else {
        frames
    };
    let mut w = LineWriter::new();
    let _ = write!(w, "memtally:   {name}:");
    for (k, &pc) in frames.iter().take(12).enumerate() {
        let _ = w.write_str(if k == 0 { " " } else { " <- " });
        let probe = if k == 0 { pc } else { pc - 1 };
        if let Some(info) = dl_info(probe).filter(|i| !i.dli_fname.is_null()) {
            // SAFETY: dladdr's file name is NUL-terminated and lives as long
            // as the module.
            let path = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
            let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            let _ = write!(
                w,
                "{}+{:#x}",
                core::str::from_utf8(file).unwrap_or("?"),
                pc - info.dli_fbase as u64
            );
        } else {
            let _ = write!(w, "{pc:#x}");
        }
    }
    w.emit();
}
