//! The operating-system layer: anonymous mappings, their release, purging of
//! unused pages, and a cheap clock.
//!
//! Everything the allocator asks of the kernel goes through this file, so the
//! rest of the crate never calls `mmap` directly. Every function here is safe
//! to call before the allocator is initialised and never allocates.
//!
//! Mappings are counted in [`crate::stats`] so that `MEMTALLY_STATS` can report
//! mapped bytes; the counters are plain atomics and cost nothing measurable
//! because mappings are rare (segments are 4 MiB and cached).

use crate::stats;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// The granularity the allocator assumes for purging and `valloc`.
///
/// Linux on x86_64 uses 4 KiB pages; [`os_page_size`] reads the real value
/// and the allocator only ever purges whole pages inside a range, so a larger
/// kernel page size only makes purging coarser, never wrong.
pub const OS_PAGE: usize = 4096;

/// The kernel's page size, read once.
pub fn os_page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let value = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if value > 0 { value as usize } else { OS_PAGE };
    PAGE.store(size, Ordering::Relaxed);
    size
}

/// Maps `size` bytes of fresh, zeroed, read-write memory for memtally's own
/// metadata (heaps, recorder rings and tables, leak-scan scratch); null on
/// failure.
///
/// The mapping is registered as *internal* (see [`for_each_internal`]) so
/// that the leak scan never takes it for a root: the recorder keeps the
/// addresses of recent blocks, and they must not keep leaks alive. Give it
/// back with [`unmap_internal`].
pub fn map(size: usize) -> *mut u8 {
    let p = map_raw(size);
    if !p.is_null() && !register_internal(p as usize, size) {
        INTERNAL_OVERFLOW.store(true, Ordering::Relaxed);
    }
    p
}

/// Maps `size` bytes of fresh, zeroed, read-write memory (segments and huge
/// blocks: memory the leak scan knows block by block); null on failure.
///
/// The memory is reserved lazily (`MAP_NORESERVE`): only pages that are
/// touched count towards the resident set.
fn map_raw(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing cannot alias any existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    stats::mapped_add(size);
    p.cast()
}

/// Maps `size` bytes such that `result + offset` is a multiple of `align`.
///
/// `align` must be a power of two and a multiple of [`OS_PAGE`]; `offset` must
/// be a multiple of [`OS_PAGE`] and smaller than `align`, or equal to a
/// multiple of `align` for the huge-alignment layout (see `huge.rs`). The
/// mapping is made larger than needed and the excess on both sides is
/// returned to the kernel at once.
pub fn map_aligned(size: usize, align: usize, offset: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align % OS_PAGE == 0);
    debug_assert!(offset % OS_PAGE == 0);
    let Some(over) = size.checked_add(align) else {
        return ptr::null_mut();
    };
    let raw = map_raw(over);
    if raw.is_null() {
        return raw;
    }
    let raw_addr = raw as usize;
    // The first address >= raw whose (address + offset) is aligned.
    let start = ((raw_addr + offset + align - 1) & !(align - 1)) - offset;
    let start = if start < raw_addr {
        start + align
    } else {
        start
    };
    debug_assert!(start + size <= raw_addr + over);
    let head = start - raw_addr;
    let tail = raw_addr + over - (start + size);
    if head > 0 {
        // SAFETY: [raw, start) is part of the mapping made above and nothing
        // has been handed out from it.
        unsafe { unmap(raw, head) };
    }
    if tail > 0 {
        // SAFETY: [start + size, raw + over) is the unused end of that mapping.
        unsafe { unmap((start + size) as *mut u8, tail) };
    }
    start as *mut u8
}

/// Returns a mapping (or a page-aligned part of one) to the kernel.
///
/// # Safety
/// `[p, p + size)` must be mapped by [`map`] or [`map_aligned`] and no longer
/// in use.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: guaranteed by the caller.
    let rc = unsafe { libc::munmap(p.cast(), size) };
    if rc == 0 {
        stats::mapped_sub(size);
    }
}

/// Returns a mapping made by [`map`] to the kernel and forgets it.
///
/// # Safety
/// `[p, p + size)` must be exactly a mapping made by [`map`], no longer in use.
pub unsafe fn unmap_internal(p: *mut u8, size: usize) {
    forget_internal(p as usize, size);
    // SAFETY: guaranteed by the caller.
    unsafe { unmap(p, size) };
}

/// Slots of the internal-mapping registry: enough for the recorder's tables
/// (a few dozen), the heaps (one mapping each) and the rings of a few
/// hundred threads at once; past that, [`internal_complete`] says so.
const INTERNAL_SLOTS: usize = 2048;

/// The registry: start and length of each internal mapping, 0 for a free
/// slot. Lock-free (a slot is claimed by a compare-and-swap on its start),
/// so that a thread stopped anywhere by the leak scan cannot hold it.
static INTERNAL: [(AtomicUsize, AtomicUsize); INTERNAL_SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; INTERNAL_SLOTS];
static INTERNAL_OVERFLOW: AtomicBool = AtomicBool::new(false);

fn register_internal(start: usize, size: usize) -> bool {
    for (s, len) in &INTERNAL {
        if s.load(Ordering::Relaxed) == 0
            && s.compare_exchange(0, usize::MAX, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            len.store(size, Ordering::Relaxed);
            s.store(start, Ordering::Release);
            return true;
        }
    }
    false
}

fn forget_internal(start: usize, size: usize) {
    for (s, len) in &INTERNAL {
        if s.load(Ordering::Acquire) == start && len.load(Ordering::Relaxed) == size {
            s.store(0, Ordering::Release);
            return;
        }
    }
}

/// Calls `f(start, len)` for every live internal mapping (order unspecified).
pub fn for_each_internal(mut f: impl FnMut(usize, usize)) {
    for (s, len) in &INTERNAL {
        let start = s.load(Ordering::Acquire);
        if start != 0 && start != usize::MAX {
            f(start, len.load(Ordering::Relaxed));
        }
    }
}

/// False when some internal mapping could not be registered (the registry
/// was full), so a leak scan could take recorder state for roots.
pub fn internal_complete() -> bool {
    !INTERNAL_OVERFLOW.load(Ordering::Relaxed)
}

/// Gives the physical pages of `[p, p + size)` back to the kernel while keeping
/// the address range; later reads see zeroes.
///
/// Only whole OS pages inside the range are purged. Returns true when the
/// whole range is now known to read as zero.
///
/// # Safety
/// The range must be mapped by this module and hold no live data.
pub unsafe fn purge(p: *mut u8, size: usize) -> bool {
    let page = os_page_size();
    let start = (p as usize + page - 1) & !(page - 1);
    let end = (p as usize + size) & !(page - 1);
    if end <= start {
        return false;
    }
    // SAFETY: guaranteed by the caller; MADV_DONTNEED on private anonymous
    // memory replaces the pages by zero-fill-on-demand pages.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    stats::purged_add(end - start);
    rc == 0 && start == p as usize && end == p as usize + size
}

/// Size of a transparent huge page on x86_64 and most aarch64 kernels.
pub const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `[p, p + size)` with transparent huge pages where
/// it can (the 2 MiB-aligned parts). One fault then maps 2 MiB instead of
/// 4 KiB. A failure (THP disabled) is harmless and ignored.
///
/// # Safety
/// The range must be a mapping made by this module.
pub unsafe fn advise_huge_pages(p: *mut u8, size: usize) {
    // SAFETY: guaranteed by the caller; MADV_HUGEPAGE changes only how the
    // kernel backs the range, never its contents.
    unsafe { libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE) };
}

/// Milliseconds of a monotonic clock, cheap enough for the slow path
/// (`CLOCK_MONOTONIC_COARSE` is served by the vDSO without a system call).
pub fn now_ms() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// Nanoseconds of clock `id` (both clocks used are served by the vDSO).
fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps while `word` holds `expected`, at most `timeout_ms` milliseconds
/// (`None`: until woken). Returns at once when the value differs; may
/// return early (a signal, a spurious wake): callers re-check their
/// condition. Async-signal-safe.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: Option<i64>) {
    let ts = timeout_ms.map(|ms| libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a live, aligned word, with a valid timeout or
    // none.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        )
    };
}

/// Wakes up to `count` threads sleeping in [`futex_wait`] on `word`.
/// Async-signal-safe.
pub fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE on a live, aligned word; the kernel reads nothing
    // else.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        )
    };
}

/// Microseconds of the monotonic clock (the vDSO, no system call).
pub fn now_us() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) / 1000
}

/// Microseconds of CPU time the calling thread has used (a system call:
/// the vDSO does not serve the thread clock).
pub fn thread_cpu_us() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) / 1000
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(code: i32) {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = code };
}

/// Starts a detached thread of memtally's own running `start`, named
/// `name` (at most 15 bytes); 0, or pthread_create's error.
pub fn spawn_thread(
    start: extern "C" fn(*mut core::ffi::c_void) -> *mut core::ffi::c_void,
    name: &core::ffi::CStr,
) -> i32 {
    // SAFETY: the start routine has the signature pthread expects and takes
    // no argument; `tid` is written by pthread_create before it is read.
    unsafe {
        let mut tid: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut tid, ptr::null(), start, ptr::null_mut());
        if rc == 0 {
            libc::pthread_setname_np(tid, name.as_ptr());
            libc::pthread_detach(tid);
        }
        rc
    }
}

/// Sleeps about `ms` milliseconds.
pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec; the remainder is not wanted.
    unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
}

/// A full memory barrier on every thread of the process, as if each had
/// executed one now (`membarrier(2)`): the heavy side of an asymmetric
/// fence whose light side, on a hot path, is a compiler fence. Falls back
/// to the kernel's global barrier, then to a sleep far longer than any
/// light-side window, where membarrier is unavailable.
pub fn process_barrier() {
    const CMD_GLOBAL: libc::c_long = 1;
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 8;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 16;
    static REGISTERED: AtomicU32 = AtomicU32::new(0);
    // SAFETY: membarrier takes plain integer arguments and touches no
    // memory of ours.
    unsafe {
        if REGISTERED.load(Ordering::Acquire) == 0 {
            let rc = libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
            REGISTERED.store(if rc == 0 { 1 } else { 2 }, Ordering::Release);
        }
        if REGISTERED.load(Ordering::Acquire) == 1
            && libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0, 0) == 0
        {
            return;
        }
        if libc::syscall(libc::SYS_membarrier, CMD_GLOBAL, 0, 0) == 0 {
            return;
        }
    }
    sleep_ms(50);
}

/// Calls `f(dir, name)` for each entry of the directory `path` (`dir` its
/// open descriptor, for `*at` calls; `name` without its NUL; `.` and `..`
/// included) until `f` returns false. False when the directory cannot be
/// opened. Reads it with `getdents64` into a stack buffer, where `readdir`
/// would allocate.
pub fn for_each_entry(path: &core::ffi::CStr, mut f: impl FnMut(i32, &[u8]) -> bool) -> bool {
    // SAFETY: a read-only open of a NUL-terminated path.
    let dir = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    'listing: loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let got = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if got <= 0 {
            break;
        }
        let got = got as usize;
        let mut at = 0;
        while at + 19 < got {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8,
            // then the NUL-terminated name.
            let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if reclen == 0 || at + reclen > got {
                break;
            }
            let name = &buf[at + 19..at + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if !f(dir, name) {
                break 'listing;
            }
            at += reclen;
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(dir) };
    true
}

/// Calls `f` with the id of every thread of the process; false when
/// `/proc/self/task` cannot be read.
pub fn for_each_thread(mut f: impl FnMut(i32)) -> bool {
    for_each_entry(c"/proc/self/task", |_, name| {
        if let Some(tid) = parse_decimal(name).and_then(|t| i32::try_from(t).ok()) {
            f(tid);
        }
        true
    })
}

/// A decimal number of at most 19 digits, nothing else.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0'))
    })
}
