//! Allocator statistics and the `MEMTALLY_STATS=1` report printed at exit.
//!
//! Two kinds of numbers:
//! - gauges of OS memory (mapped bytes, purged bytes), kept in global atomics
//!   updated on every mapping change (rare, so always on);
//! - allocation counters (allocations, frees, reallocations, bytes in use),
//!   kept per heap and only while statistics are on, because counting on the
//!   fast path would cost every allocation. While they are on, each heap is
//!   "instrumented": its allocations and frees take the slow path, which
//!   counts them.
//!
//! Per-heap byte deltas are flushed into a global gauge whenever they exceed
//! [`FLUSH_BYTES`], so the peak is exact to within that much per thread.
//! Per-heap counters are atomics written with plain load+store by their owner
//! (no read-modify-write), so reading them from another thread at exit is
//! well-defined and costs the owner nothing.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Bytes of unflushed per-heap delta that trigger a flush into the global
/// gauge.
const FLUSH_BYTES: i64 = 64 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
static PRINT: AtomicBool = AtomicBool::new(false);
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static PEAK_MAPPED: AtomicUsize = AtomicUsize::new(0);
static PURGED: AtomicUsize = AtomicUsize::new(0);
static CURRENT: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);
/// Counts for threads that free without ever having allocated (no heap).
static ORPHAN_FREES: AtomicU64 = AtomicU64::new(0);

/// Are allocation statistics being collected?
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A private duplicate of stderr for the exit report, or -1.
static REPORT_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(-1);

/// Turns the counters on without the exit report (`MEMTALLY=mode=stats`).
pub fn enable_counting() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Turns allocation statistics on (before any heap exists, or heaps started
/// afterwards will count and earlier ones will not).
///
/// Keeps a private duplicate of stderr for the report: many programs close
/// their standard streams in an `atexit` handler (coreutils does), which runs
/// before the report. The duplicate is close-on-exec and numbered high so as
/// not to take a descriptor number the program expects to get.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    PRINT.store(true, Ordering::Relaxed);
    // SAFETY: fcntl on fd 2 has no memory-safety preconditions.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 100) };
    REPORT_FD.store(fd, Ordering::Relaxed);
}

pub(crate) fn mapped_add(bytes: usize) {
    let now = MAPPED.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_MAPPED.fetch_max(now, Ordering::Relaxed);
}

/// Bytes mapped from the OS now.
pub(crate) fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

pub(crate) fn mapped_sub(bytes: usize) {
    MAPPED.fetch_sub(bytes, Ordering::Relaxed);
}

pub(crate) fn purged_add(bytes: usize) {
    PURGED.fetch_add(bytes, Ordering::Relaxed);
}

/// A counter written only by its owning thread.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    fn add(&self, n: u64) {
        // Owner-only: a plain load and store, no locked instruction.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Adds one.
    #[inline]
    pub fn add_one(&self) {
        self.add(1);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one heap.
pub struct HeapStats {
    /// Blocks allocated (including the new block of a moving realloc).
    pub allocs: Counter,
    /// Blocks freed (including the old block of a moving realloc).
    pub frees: Counter,
    /// `realloc` calls on a non-null pointer.
    pub reallocs: Counter,
    /// Bytes allocated minus bytes freed by this heap's thread, not yet
    /// added to the global gauge.
    delta: AtomicI64,
}

impl HeapStats {
    pub(crate) const fn new() -> Self {
        HeapStats {
            allocs: Counter::new(),
            frees: Counter::new(),
            reallocs: Counter::new(),
            delta: AtomicI64::new(0),
        }
    }

    /// Records an allocation of a block of `bytes` usable bytes.
    #[inline]
    pub fn on_alloc(&self, bytes: usize) {
        self.allocs.add(1);
        self.add_delta(bytes as i64);
    }

    /// Records a free of a block of `bytes` usable bytes.
    #[inline]
    pub fn on_free(&self, bytes: usize) {
        self.frees.add(1);
        self.add_delta(-(bytes as i64));
    }

    /// Records an in-place resize of a block.
    pub fn on_resize(&self, old: usize, new: usize) {
        self.add_delta(new as i64 - old as i64);
    }

    #[inline]
    fn add_delta(&self, bytes: i64) {
        let d = self.delta.load(Ordering::Relaxed) + bytes;
        if d.abs() >= FLUSH_BYTES {
            self.delta.store(0, Ordering::Relaxed);
            publish(d);
        } else {
            self.delta.store(d, Ordering::Relaxed);
        }
    }

    /// Adds the pending delta to the global gauge.
    pub fn flush(&self) {
        let d = self.delta.load(Ordering::Relaxed);
        if d != 0 {
            self.delta.store(0, Ordering::Relaxed);
            publish(d);
        }
    }

    fn pending(&self) -> i64 {
        self.delta.load(Ordering::Relaxed)
    }
}

fn publish(delta: i64) {
    let now = CURRENT.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Records a free by a thread without a heap.
pub(crate) fn on_orphan_free(bytes: usize) {
    ORPHAN_FREES.fetch_add(1, Ordering::Relaxed);
    publish(-(bytes as i64));
}

/// A snapshot of the process-wide statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Blocks allocated since start (while statistics were on).
    pub allocations: u64,
    /// Blocks freed since start (while statistics were on).
    pub frees: u64,
    /// `realloc` calls on live blocks.
    pub reallocs: u64,
    /// Usable bytes in live blocks now.
    pub current_bytes: i64,
    /// Highest `current_bytes` seen (exact to 64 KiB per thread).
    pub peak_bytes: i64,
    /// Bytes mapped from the OS now (segments, huge blocks, heap metadata).
    pub mapped_bytes: usize,
    /// Highest `mapped_bytes` seen.
    pub peak_mapped_bytes: usize,
    /// Bytes given back to the OS by purging, in total.
    pub purged_bytes: usize,
    /// Heaps created (one per thread that ever allocated, reused after exit).
    pub heaps: usize,
}

/// Reads the statistics of all heaps. Counters of running threads are read
/// without stopping them, so the numbers are a consistent-enough snapshot,
/// exact once the other threads are quiet.
pub fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        frees: ORPHAN_FREES.load(Ordering::Relaxed),
        mapped_bytes: MAPPED.load(Ordering::Relaxed),
        peak_mapped_bytes: PEAK_MAPPED.load(Ordering::Relaxed),
        purged_bytes: PURGED.load(Ordering::Relaxed),
        ..Snapshot::default()
    };
    let mut pending = 0;
    crate::thread::for_each_heap(|heap| {
        s.allocations += heap.stats.allocs.get();
        s.frees += heap.stats.frees.get();
        s.reallocs += heap.stats.reallocs.get();
        pending += heap.stats.pending();
        s.heaps += 1;
    });
    s.current_bytes = CURRENT.load(Ordering::Relaxed) + pending;
    s.peak_bytes = PEAK.load(Ordering::Relaxed).max(s.current_bytes);
    s
}

/// Prints the `memtally:` statistics line to stderr if statistics are on and
/// the allocator was used. Registered to run at process exit.
pub extern "C" fn print_at_exit() {
    if !PRINT.load(Ordering::Relaxed) || !crate::thread::initialised() {
        return;
    }
    let s = snapshot();
    let mut w = crate::report::LineWriter::new();
    use core::fmt::Write;
    let _ = write!(
        w,
        "memtally: allocations={} frees={} reallocs={} current_bytes={} peak_bytes={} mapped_bytes={} peak_mapped_bytes={} purged_bytes={} heaps={}",
        s.allocations,
        s.frees,
        s.reallocs,
        s.current_bytes,
        s.peak_bytes,
        s.mapped_bytes,
        s.peak_mapped_bytes,
        s.purged_bytes,
        s.heaps
    );
    let fd = REPORT_FD.load(Ordering::Relaxed);
    w.emit_to(if fd >= 0 { fd } else { 2 });
}

#[used]
#[unsafe(link_section = ".fini_array")]
static PRINT_AT_EXIT: extern "C" fn() = print_at_exit;
