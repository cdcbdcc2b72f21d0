//! memtally's allocator: size-class pools with thread-local heaps, usable as
//! the Rust global allocator and, through `memtally-preload`, as the malloc of
//! any program.
//!
//! ```
//! #[global_allocator]
//! static A: memtally_alloc::MemTally = memtally_alloc::MemTally::new();
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     assert_eq!(v.iter().sum::<u64>(), 499_500);
//! }
//! ```
//!
//! Set `MEMTALLY_STATS=1` in the environment to get a line of allocator
//! statistics on stderr when the program exits.
//!
//! The design, in the manner of mimalloc (see ARCHITECTURE.md for the map):
//! memory comes from the OS in 4 MiB-aligned segments (`segment.rs`), split
//! into pages of one size class each (`page.rs`); each thread allocates from
//! its own heap (`heap.rs`, `thread.rs`) without locks or atomic
//! read-modify-writes; frees from other threads go to per-page atomic lists;
//! requests above 512 KiB get a mapping of their own (`huge.rs`).

#![deny(missing_docs)]

mod api;
pub mod control;
pub mod device;
mod guard;
mod heap;
mod huge;
mod leak;
mod lock;
mod options;
mod os;
mod page;
mod races;
mod record;
mod report;
mod scope;
mod segmap;
mod segment;
mod signals;
mod size_class;
mod stats;
mod thread;
mod tls;
pub mod trace;
mod validate;

use core::alloc::{GlobalAlloc, Layout};

pub use options::Mode;
pub use report::BadPointer;
pub use scope::{InScope, ScopeGuard, Scoped, scope};
/// Scopes entered and left by call rather than by guard: the C ABI's
/// `enter`/`exit`, and instances managed by an integration (a tracing
/// span is one instance, entered and left many times, ended at close).
pub mod scopes {
    pub use crate::scope::{
        Saved, end_instance, enter, enter_instance, exit, new_instance, restore,
    };
}
pub use stats::Snapshot as StatsSnapshot;

/// The allocator, for `#[global_allocator]`.
///
/// All instances share the same process-wide heaps; the type carries no
/// state.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemTally;

impl MemTally {
    /// The allocator (a `const fn`, for statics).
    pub const fn new() -> Self {
        MemTally
    }
}

// SAFETY: every method forwards to the allocator core, which returns blocks
// of at least the requested size and alignment that do not overlap any other
// live block, preserves contents on realloc, and accepts exactly the pointers
// it returned (aborting with a message on anything else).
unsafe impl GlobalAlloc for MemTally {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: Layout guarantees a power-of-two alignment.
        unsafe { api::alloc(layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: Layout guarantees a power-of-two alignment.
        unsafe { api::alloc_zeroed(layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` came from this allocator
        // with `layout` (checked against the block), whose alignment is a
        // power of two.
        unsafe { api::free_sized(ptr, layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract: `ptr` came from this allocator with
        // `layout`, whose alignment is a power of two.
        unsafe { api::realloc(ptr, new_size, layout.align(), layout.size()) }
    }
}

/// Asks the race detector (`MEMTALLY=...,races=on`) to watch the `len`
/// bytes at `p` in its next windows (a random word each time), instead of
/// a random sampled block: for a test, or to look at a suspect structure.
pub fn race_watch<T: ?Sized>(p: *const T, len: usize) {
    races::watch(p as *const u8, len);
}

/// Sets a marker ("phase 2 starts") on the calling thread's timeline in the
/// trace being recorded; does nothing when not recording.
pub fn mark(text: &str) {
    mark_bytes(text.as_bytes());
}

/// As [`mark`], for text that is not UTF-8 (the C ABI's `memtally_mark`).
pub fn mark_bytes(text: &[u8]) {
    if record::active()
        && let Some(heap) = thread::own_heap()
    {
        record::mark(heap, text);
    }
}

/// What an access annotation says the program did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// It read the memory.
    Read,
    /// It wrote it.
    Write,
}

/// Notes in the trace that this thread read or wrote the memory at `ptr`
/// (an annotation for `memtally replay --distributed`, which counts the
/// coherence messages such accesses would cost across nodes); does nothing
/// when not recording.
pub fn access<T: ?Sized>(ptr: *const T, what: Access) {
    if record::active()
        && let Some(heap) = thread::own_heap()
    {
        record::access(heap, ptr as *const u8 as u64, what == Access::Write);
    }
}

pub use leak::{Leak, LeakSummary};

/// Finds the blocks nothing points to any more, now: stops the other
/// threads for the scan (a signal handshake), scans the roots (data and bss
/// of every module, stacks, registers, TLS, memory of other allocators)
/// conservatively, interior pointers counted, and floods the heap from
/// them, as LeakSanitizer does. See [`LeakSummary`] for what it found: leaks
/// are *direct* when no other leaked block points into them, *indirect*
/// when one does (a leaked cycle gets one direct member).
///
/// When recording, each leaked block (each sampled one in sampled mode) and
/// the totals go into the trace, where `memtally leaks` shows them by
/// allocation stack. Also available to C as `int memtally_leak_check(void)`
/// from the preloaded library, and at exit with `MEMTALLY=...,leaks=scan`.
///
/// Fails with a one-line reason (another scan running, `/proc` missing, no
/// memory for the scan's tables); the program is never stopped for good.
pub fn leak_check() -> Result<LeakSummary, &'static str> {
    leak_check_with(|_| {})
}

/// As [`leak_check`], calling `f` with each leaked block too (after the
/// other threads run again: `f` may allocate).
pub fn leak_check_with(mut f: impl FnMut(Leak)) -> Result<LeakSummary, &'static str> {
    let recorder = if record::active() {
        thread::own_heap()
    } else {
        None
    };
    let every_block = record::full();
    let summary = leak::scan(|l| {
        if let Some(heap) = recorder
            && (every_block || l.sampled)
        {
            record::leak(heap, &l);
        }
        f(l);
    })?;
    if let Some(heap) = recorder {
        record::leak_scan_end(heap, &summary);
    }
    Ok(summary)
}

/// Runs a leak check and prints its result (or why it could not run) in
/// one line on stderr; `when` says when it ran ("at exit"). Returns whether
/// anything leaked.
pub(crate) fn leak_check_report(when: &str) -> bool {
    match leak_check() {
        Ok(s) => {
            report::leak_summary(when, &s);
            s.leaked()
        }
        Err(why) => {
            report::warn(format_args!("leak scan {when}: {why}"));
            false
        }
    }
}

/// Writes everything recorded so far to the trace file and waits until it
/// is written (`exec` does this implicitly under the preloaded library).
pub fn flush() {
    record::flush();
}

/// Starts recording from inside the program, with the same settings as the
/// `MEMTALLY` variable:
///
/// ```no_run
/// memtally_alloc::Recorder::new()
///     .mode(memtally_alloc::Mode::Full)
///     .output("app.%p.mtt")
///     .start()
///     .expect("valid settings");
/// ```
///
/// Best called at the start of `main`: threads already running start
/// recording at their next allocator slow path (within a page's worth of
/// allocations), so their first few allocations may be missed.
#[derive(Clone, Debug)]
pub struct Recorder {
    settings: options::Settings,
}

/// What an invalid free (double free, foreign or interior pointer,
/// mismatched `dealloc` layout) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Print one line with the call's stack and abort, as glibc does.
    #[default]
    Abort,
    /// Print it, record it, ignore the call and carry on.
    Report,
}

/// A rejected recording setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError(pub &'static str);

impl core::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SettingsError {}

impl Recorder {
    /// Default settings: mode off, output `memtally.%p.mtt`, sampling
    /// interval 512 KiB, stack depth 64.
    pub fn new() -> Self {
        Recorder {
            settings: options::Settings::default(),
        }
    }

    /// What to record.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.settings.mode = mode;
        self
    }

    /// The trace path; `%p` becomes the process id.
    pub fn output(mut self, path: &str) -> Self {
        let n = path.len().min(options::MAX_PATH - 1);
        self.settings.out = [0; options::MAX_PATH];
        self.settings.out[..n].copy_from_slice(&path.as_bytes()[..n]);
        self
    }

    /// Mean bytes between samples in sampled mode.
    pub fn interval(mut self, bytes: u64) -> Self {
        self.settings.interval = bytes;
        self
    }

    /// Most frames per stack (1 to 256).
    pub fn depth(mut self, frames: usize) -> Self {
        self.settings.depth = frames;
        self
    }

    /// What an invalid free does (`on_error`): abort (the default) or
    /// report it and carry on.
    pub fn on_error(mut self, what: OnError) -> Self {
        self.settings.report_errors = what == OnError::Report;
        self
    }

    /// Runs a leak scan at exit (`leaks=scan`).
    pub fn leak_scan_at_exit(mut self, on: bool) -> Self {
        self.settings.leak_scan = on;
        self
    }

    /// Guarded allocations, one per `bytes` allocated on average (`guard`;
    /// 0: off).
    pub fn guard_interval(mut self, bytes: u64) -> Self {
        self.settings.guard_interval = bytes;
        self
    }

    /// Guards one allocation in `n` instead (`guard_every`; 1: all that
    /// fit a slot).
    pub fn guard_every(mut self, n: u64) -> Self {
        self.settings.guard_every = n;
        self
    }

    /// Guard slots (`guard_slots`, 1 to 256).
    pub fn guard_slots(mut self, n: usize) -> Self {
        self.settings.guard_slots = n;
        self
    }

    /// Opens a control socket (`control=on`), through which `memtally
    /// attach PID` and `memtally top --pid PID` switch recording on in the
    /// running program (with mode `Off`, the program runs unrecorded until
    /// then). See `docs/control.md`.
    pub fn control_socket(mut self, on: bool) -> Self {
        self.settings.control = on;
        self
    }

    /// Checks the settings and starts recording.
    pub fn start(self) -> Result<(), SettingsError> {
        let s = self.settings;
        if s.out_template().is_empty() || s.out_template().len() >= options::MAX_PATH - 16 {
            return Err(SettingsError(
                "output path must be non-empty and under 496 bytes",
            ));
        }
        if s.interval == 0 {
            return Err(SettingsError("sampling interval must be positive"));
        }
        if !(1..=256).contains(&s.depth) {
            return Err(SettingsError("stack depth must be 1 to 256"));
        }
        if !(1..=guard::MAX_SLOTS).contains(&s.guard_slots) {
            return Err(SettingsError("guard slots must be 1 to 256"));
        }
        thread::ensure_init();
        report::set_report_only(s.report_errors);
        guard::configure(s.guard_interval, s.guard_every, s.guard_slots);
        record::configure(s);
        control::configure(s.control);
        let heap = thread::heap();
        if heap != thread::empty_heap() {
            // SAFETY: the calling thread's heap, live and ours.
            unsafe { thread::reinstrument(&*heap) };
        }
        // Threads already running switch at their next slow path.
        thread::bump_generation();
        Ok(())
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The C-style interface used by `memtally-preload` (and usable directly):
/// allocation with an explicit alignment, free without a size, usable size.
pub mod raw {
    pub use crate::api::MAX_CLASS_ALIGN;

    /// Initialises the allocator and reads its settings now rather than at
    /// the first allocation (the preloaded library calls this from its
    /// constructor, so that a bad setting is reported even by a program that
    /// never allocates).
    pub fn init() {
        crate::thread::ensure_init();
    }

    /// Allocates `size` bytes aligned to `align`; null (and `errno` ENOMEM)
    /// on failure.
    ///
    /// # Safety
    /// `align` must be a power of two.
    #[inline]
    pub unsafe fn alloc(size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::alloc(size, align) }
    }

    /// Like [`alloc`], zero-filled.
    ///
    /// # Safety
    /// `align` must be a power of two.
    #[inline]
    pub unsafe fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::alloc_zeroed(size, align) }
    }

    /// Frees `p` (null is ignored). `call` names the C function for the
    /// message printed before aborting on an invalid pointer.
    ///
    /// # Safety
    /// `p` must be null or a live pointer from this allocator; anything else
    /// is reported and aborts where detectable.
    #[inline]
    pub unsafe fn free(p: *mut u8, call: &'static str) {
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::free(p, call) }
    }

    /// Allocates for C++ `operator new` (`array`: `new[]`) from pages of
    /// its own family, so that `delete`, `delete[]` and `free` can be
    /// checked against it. Null on failure.
    ///
    /// # Safety
    /// `align` must be a power of two.
    #[inline]
    pub unsafe fn alloc_new(size: usize, align: usize, array: bool) -> *mut u8 {
        let lane = if array {
            crate::page::Lane::NewArray
        } else {
            crate::page::Lane::New
        };
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::alloc_lane(size, align, lane) }
    }

    /// Frees for C++ `operator delete` (`array`: `delete[]`); a block from
    /// another family is reported as a mismatch.
    ///
    /// # Safety
    /// As [`free`].
    #[inline]
    pub unsafe fn free_delete(p: *mut u8, array: bool, call: &'static str) {
        let family = if array {
            crate::page::Family::DeleteArray
        } else {
            crate::page::Family::Delete
        };
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::free_family(p, call, family) }
    }

    /// Resizes `p` to `new_size` bytes with alignment `align`, copying at most
    /// `old_size` bytes (`usize::MAX`: the whole usable size) when it moves.
    /// Null on failure, leaving `p` valid.
    ///
    /// # Safety
    /// `align` must be a power of two, `p` null or a live pointer from this
    /// allocator allocated with at least that alignment.
    #[inline]
    pub unsafe fn realloc(p: *mut u8, new_size: usize, align: usize, old_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::realloc(p, new_size, align, old_size) }
    }

    /// Usable bytes from `p` to the end of its block (0 for null).
    ///
    /// # Safety
    /// `p` must be null or a live pointer from this allocator.
    pub unsafe fn usable_size(p: *mut u8) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { crate::api::usable_size(p) }
    }

    /// Writes everything recorded so far to the trace.
    pub fn flush() {
        crate::record::flush();
    }

    /// Ends the trace because the process is about to `exec` (a failed exec
    /// starts a new trace at the next event).
    pub fn finish_for_exec() {
        crate::record::finish_for_exec();
    }

    /// The `MEMTALLY=...` environment entry a program executed by this
    /// process should get so that it goes on recording, if any (see
    /// `record::exec_setting`).
    pub fn exec_setting() -> Option<&'static core::ffi::CStr> {
        crate::record::exec_setting()
    }

    /// Runs a leak check and prints its result in one line on stderr
    /// (the preloaded library's `memtally_leak_check`); whether anything
    /// leaked.
    pub fn leak_check_report() -> bool {
        crate::leak_check_report("on request")
    }

    /// Ends the trace before `_exit(status)`, which skips the exit
    /// handlers and destructors that normally end it (called by the
    /// preloaded library's `_exit` hook).
    pub fn finish_before_exit(status: i32) {
        crate::record::set_exit_status(status);
        crate::record::finish_at_exit();
    }

    /// Ends the trace in an `on_exit` handler that knows the exit status
    /// (the preloaded library's constructor calls this; see
    /// `record::install_exit_handler`).
    pub fn install_exit_handler() {
        crate::record::install_exit_handler();
    }

    /// Decides what processes started by this one inherit of the
    /// recording settings (called by the preloaded library's constructor;
    /// see `record::hand_on_settings`).
    pub fn hand_on_settings() {
        crate::record::hand_on_settings();
    }

    /// Returns unused memory to the OS now: empty pages of the calling
    /// thread's heap, cached segments and huge mappings (like `malloc_trim`).
    pub fn trim() {
        let heap = crate::thread::heap();
        if heap != crate::thread::empty_heap() {
            // SAFETY: the calling thread's heap is live and ours.
            unsafe { (*heap).periodic(true) };
        }
    }
}

/// Introspection for tests and tools: statistics and the heap validator.
pub mod debug {
    pub use crate::races::{
        RaceStats, hold_arming as race_hold_arming, hold_next as race_hold_next,
        stats as race_stats,
    };
    pub use crate::stats::snapshot as stats;
    pub use crate::validate::{HeapReport, Violation, validate_current_heap};

    /// Usable size of the block class serving a request of `size` bytes
    /// (for tests of the size-class geometry).
    pub fn class_size_for(size: usize) -> Option<usize> {
        (size <= crate::size_class::LARGE_MAX)
            .then(|| crate::size_class::class_size(crate::size_class::class_of(size)))
    }

    /// Is `MEMTALLY_STATS` on?
    pub fn stats_enabled() -> bool {
        crate::stats::enabled()
    }
}
