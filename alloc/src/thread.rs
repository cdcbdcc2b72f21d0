//! Threads and their heaps: the thread-local heap pointer, one-time global
//! initialisation, heap acquisition, abandonment at thread exit, reclamation
//! of abandoned heaps, and the fork handlers.
//!
//! A new thread's heap pointer starts at a static empty heap whose direct
//! table points at a static empty page, so its first allocation fails the fast
//! path and lands in the slow path, which calls [`init_thread`]; the fast path
//! never tests "initialised?". The thread-local slot (`tls.rs`) also holds a
//! free token: the heap itself, or null while the thread has no heap or its
//! heap is instrumented. The free fast path compares the token with the
//! owner of the block's segment, so with a null token the test fails and
//! frees take the slow path, which records them.
//!
//! Heap lifecycle: created by mapping (never freed), owned by one thread, at
//! thread exit collected and put into the pool. A new thread first adopts a
//! heap from the pool, preferring one that still holds live blocks (so an
//! exited thread's memory is reused, never leaked); a thread that needs a new
//! segment first collects one abandoned heap, returning whatever its exited
//! owner's blocks freed since.
//!
//! Lock order: no code holds two of the allocator's global locks at once,
//! so the fork handlers may take them in any fixed order; the recorder's
//! locks, some of which nest, are taken first in their nesting order
//! (`record::fork_acquire`). No lock may be held across a fork: the child
//! would find it held forever.

use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::os;
use crate::page::Page;
use crate::stats;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A static that is only read, or written through its own atomics.
struct Shared<T>(T);
// SAFETY: the empty page and heap are never written: the empty page has no
// free block, so the fast path never pops from it, and the empty heap owns no
// segment, so no free reaches it; the slow path replaces it before any write.
unsafe impl<T> Sync for Shared<T> {}

static EMPTY_PAGE: Shared<Page> = Shared(Page::empty());
static EMPTY_HEAP: Shared<Heap> = Shared(Heap::new(&raw const EMPTY_PAGE.0 as *mut Page));

/// The static page with no blocks.
#[inline(always)]
pub fn empty_page() -> *mut Page {
    &raw const EMPTY_PAGE.0 as *mut Page
}

/// The static heap new threads start with.
#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    &raw const EMPTY_HEAP.0 as *mut Heap
}

/// The calling thread's heap (the empty heap before its first allocation).
#[inline(always)]
pub fn heap() -> *mut Heap {
    crate::tls::heap()
}

/// The calling thread's free token (see the module docs).
#[inline(always)]
pub fn token() -> *mut Heap {
    crate::tls::token()
}

// ----------------------------------------------------------------------
// Global initialisation
// ----------------------------------------------------------------------

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(UNINIT);
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

/// Has the allocator been initialised (used at least once)?
pub fn initialised() -> bool {
    INIT.load(Ordering::Acquire) == READY
}

/// Initialises the allocator (reads the settings) if it is not yet; the
/// first allocation does this too, so calling it is optional.
pub fn ensure_init() {
    if INIT.load(Ordering::Acquire) == READY {
        return;
    }
    if INIT
        .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        // Another thread initialises; nothing it does can allocate, so it
        // finishes without needing us.
        while INIT.load(Ordering::Acquire) != READY {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    crate::options::load();
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is writable and the destructor has the C signature
    // pthread expects. pthread_key_create does not allocate.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) };
    if rc == 0 {
        EXIT_KEY.store(key + 1, Ordering::Release);
    } else {
        crate::report::warn(format_args!(
            "cannot register a thread-exit hook (error {rc}); memory of exited threads is reclaimed only when new threads start"
        ));
    }
    INIT.store(READY, Ordering::Release);
    // pthread_atfork may allocate, which is fine now that we are READY.
    // SAFETY: the handlers have the C signature pthread_atfork expects and
    // stay valid for the life of the process.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
}

// ----------------------------------------------------------------------
// Heap acquisition and release
// ----------------------------------------------------------------------

struct Pool {
    /// Heaps of exited threads that still own segments.
    abandoned: *mut Heap,
    /// Heaps of exited threads that own nothing.
    clean: *mut Heap,
}

// SAFETY: the pool stores addresses of heaps that no thread owns; the lock
// serialises access.
unsafe impl Send for Pool {}

static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    abandoned: ptr::null_mut(),
    clean: ptr::null_mut(),
});
static ABANDONED: AtomicUsize = AtomicUsize::new(0);
static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());

/// The calling thread's heap, made if the thread has none yet; None when
/// it cannot be (no memory, or the thread is exiting). For the API's
/// calls outside the allocation paths (markers, scopes, annotations, the
/// leak check).
pub fn own_heap() -> Option<&'static Heap> {
    let mut h = heap();
    if h == empty_heap() {
        h = init_thread();
    }
    // SAFETY: a thread's own heap lives until the thread exits (heaps are
    // never freed); callers use it on this thread, within one call.
    (!h.is_null() && h != empty_heap()).then(|| unsafe { &*h })
}

/// Gives the calling thread a heap (called from the slow path when the thread
/// still has the empty heap). Returns null when no memory is available.
#[cold]
#[inline(never)]
pub fn init_thread() -> *mut Heap {
    ensure_init();
    let heap = match take_from_pool() {
        Some(h) => h,
        None => new_heap(),
    };
    if heap.is_null() {
        return heap;
    }
    // SAFETY: the heap is live (heaps are never freed) and now exclusively
    // ours.
    let h = unsafe { &*heap };
    reinstrument(h);
    let key = EXIT_KEY.load(Ordering::Acquire);
    if key != 0 {
        // SAFETY: the key was created by pthread_key_create. The value is our
        // heap, handed back to `thread_exit` when the thread ends.
        unsafe { libc::pthread_setspecific(key - 1, heap as *const libc::c_void) };
    }
    h.drain_delayed();
    heap
}

/// Bumped whenever recording is switched on or off in a running process
/// (an attach through the control socket, a detach, a fork): every heap
/// compares it with its own at its next slow path and re-applies the
/// settings then ([`settings_changed`]). Threads cannot be reconfigured
/// from outside: a heap's fast-path state (direct table, countdown, free
/// token) belongs to its thread alone. A thread that allocates reaches
/// its slow path within a page of allocations of any size class, so the
/// change takes effect that soon; a thread that does not allocate has no
/// events to miss.
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// The current instrumentation generation (see [`GENERATION`]).
#[inline]
pub fn generation() -> u32 {
    GENERATION.load(Ordering::Acquire)
}

/// Asks every thread to re-apply the recording settings at its next slow
/// path.
pub fn bump_generation() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The calling thread's heap `h` found a new generation on its slow path:
/// re-applies the settings, and starts the control socket's listener if
/// this process wants one and has none yet (a thread's slow path is a safe
/// place to create a thread: no allocator state is half-updated).
#[cold]
#[inline(never)]
pub fn settings_changed(h: &Heap) {
    reinstrument(h);
    crate::control::maybe_start();
}

/// Re-applies the instrumentation setting to the calling thread's heap
/// (after recording was switched on or off in the running program).
pub fn reinstrument(h: &Heap) {
    h.set_instrumented(stats::enabled() || crate::record::full());
    h.sample_left.set(crate::record::initial_sample_left(h));
    let token = if h.instrumented.get() {
        ptr::null_mut()
    } else {
        h as *const Heap as *mut Heap
    };
    crate::tls::set(h as *const Heap as *mut Heap, token);
}

fn take_from_pool() -> Option<*mut Heap> {
    let mut pool = POOL.lock();
    let heap = if !pool.abandoned.is_null() {
        let h = pool.abandoned;
        // SAFETY: pooled heaps are live.
        pool.abandoned = unsafe { (*h).pool_next.get() };
        ABANDONED.fetch_sub(1, Ordering::Relaxed);
        h
    } else if !pool.clean.is_null() {
        let h = pool.clean;
        // SAFETY: pooled heaps are live.
        pool.clean = unsafe { (*h).pool_next.get() };
        h
    } else {
        return None;
    };
    // SAFETY: the heap was just taken out of the pool, so it is ours.
    unsafe { (*heap).pool_next.set(ptr::null_mut()) };
    Some(heap)
}

fn put_in_pool(heap: *mut Heap, owns_memory: bool) {
    let mut pool = POOL.lock();
    let list = if owns_memory {
        ABANDONED.fetch_add(1, Ordering::Relaxed);
        &mut pool.abandoned
    } else {
        &mut pool.clean
    };
    // SAFETY: the heap is live and owned by the caller until it is pooled.
    unsafe { (*heap).pool_next.set(*list) };
    *list = heap;
}

fn new_heap() -> *mut Heap {
    let size = core::mem::size_of::<Heap>().next_multiple_of(os::OS_PAGE);
    let p = os::map(size) as *mut Heap;
    if p.is_null() {
        return p;
    }
    // SAFETY: the mapping is fresh, large enough and suitably aligned (page
    // aligned) for a Heap.
    unsafe { p.write(Heap::new(empty_page())) };
    let mut head = ALL_HEAPS.load(Ordering::Relaxed);
    loop {
        // SAFETY: the heap is not yet published; we are its only user.
        unsafe { (*p).next_all.store(head, Ordering::Relaxed) };
        match ALL_HEAPS.compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return p,
            Err(seen) => head = seen,
        }
    }
}

/// Calls `f` on every heap ever created.
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut heap = ALL_HEAPS.load(Ordering::Acquire);
    while !heap.is_null() {
        // SAFETY: heaps are never freed and `next_all` is set before a heap is
        // published.
        let h = unsafe { &*heap };
        f(h);
        heap = h.next_all.load(Ordering::Relaxed);
    }
}

/// Thread-exit destructor: collects the exiting thread's heap and pools it.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let heap = arg as *mut Heap;
    if crate::tls::heap() == heap {
        crate::tls::set(empty_heap(), ptr::null_mut());
    }
    // SAFETY: the exiting thread's heap, live.
    crate::record::thread_exit(unsafe { &*heap });
    abandon(heap);
}

fn abandon(heap: *mut Heap) {
    // SAFETY: the exiting thread owned the heap; nobody else touches it until
    // it is pooled.
    let h = unsafe { &*heap };
    // Pages freed here are purged after the usual delay, by whichever thread
    // adopts or reclaims the heap: a new thread that takes over (servers
    // recycling workers) reuses them without a page fault.
    let empty = h.collect_all(false);
    put_in_pool(heap, !empty);
}

/// Collects one abandoned heap, so that blocks its exited thread left behind
/// and other threads have freed since go back to the segment cache. Called
/// before mapping a new segment.
pub fn reclaim_abandoned() {
    reclaim_one(false);
}

/// Time (ms) of the last reclamation by the periodic housekeeping.
static LAST_RECLAIM_MS: AtomicU64 = AtomicU64::new(0);

/// Reclaims one abandoned heap, and purges its expired pages, if none was
/// reclaimed for a purge delay: an exited thread's memory goes back to the OS
/// within a few purge delays as long as any thread allocates.
pub fn reclaim_abandoned_if_due(now: u64) {
    if ABANDONED.load(Ordering::Relaxed) == 0 {
        return;
    }
    let last = LAST_RECLAIM_MS.load(Ordering::Relaxed);
    if now < last + crate::segment::PURGE_DELAY_MS
        || LAST_RECLAIM_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    reclaim_one(false);
}

/// Collects every abandoned heap and purges all their unused memory now
/// (for `malloc_trim`).
pub fn reclaim_all_abandoned() {
    for _ in 0..ABANDONED.load(Ordering::Relaxed) {
        if !reclaim_one(true) {
            break;
        }
    }
}

/// Takes the oldest abandoned heap out of the pool, collects it, and puts it
/// back at the end (or among the clean heaps). False if there was none.
fn reclaim_one(force: bool) -> bool {
    if ABANDONED.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let heap = {
        let mut pool = POOL.lock();
        let h = pool.abandoned;
        if h.is_null() {
            return false;
        }
        // SAFETY: pooled heaps are live.
        pool.abandoned = unsafe { (*h).pool_next.get() };
        ABANDONED.fetch_sub(1, Ordering::Relaxed);
        h
    };
    // SAFETY: taken out of the pool, the heap is exclusively ours until it is
    // put back; collecting it frees only blocks already freed by their users.
    let empty = unsafe { (*heap).collect_all(force) };
    if empty {
        put_in_pool(heap, false);
    } else {
        // At the end, so that the next reclamation visits another heap.
        let mut pool = POOL.lock();
        ABANDONED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: pooled heaps are live; the lock serialises the list.
        unsafe {
            (*heap).pool_next.set(ptr::null_mut());
            let mut link: *mut *mut Heap = &mut pool.abandoned;
            while !(*link).is_null() {
                link = (*(*link)).pool_next.as_ptr();
            }
            *link = heap;
        }
    }
    true
}

// ----------------------------------------------------------------------
// fork
// ----------------------------------------------------------------------

extern "C" fn fork_prepare() {
    crate::record::fork_acquire();
    POOL.raw_lock();
    crate::segment::cache_lock().raw_lock();
    crate::huge::cache_lock().raw_lock();
    crate::guard::lock().raw_lock();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks in this thread.
    unsafe {
        crate::guard::lock().raw_unlock();
        crate::huge::cache_lock().raw_unlock();
        crate::segment::cache_lock().raw_unlock();
        POOL.raw_unlock();
        crate::record::fork_release();
    }
}

extern "C" fn fork_child() {
    // The child has one thread: the one that forked, which holds every lock.
    // Heaps of the parent's other threads stay owned by threads that do not
    // exist here; their memory is kept, never reused, because one of them may
    // have been half-way through an update when the parent forked.
    // SAFETY: the parent's fork_prepare took these locks in this very thread.
    unsafe {
        crate::guard::lock().raw_unlock();
        crate::huge::cache_lock().raw_unlock();
        crate::segment::cache_lock().raw_unlock();
        POOL.raw_unlock();
        crate::record::fork_release();
    }
    crate::record::after_fork_child(heap());
}
