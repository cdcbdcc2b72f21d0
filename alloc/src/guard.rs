//! Guarded allocations, GWP-ASan style: a sample of allocations is placed
//! in a pool of page-sized slots flanked by inaccessible guard pages, so the
//! first access past either end of the block, or to the block after it was
//! freed, faults at once, in the accessing thread, with the registers that
//! explain it.
//!
//! The pool is one mapping of `2 * slots + 1` pages, all inaccessible but
//! the slots in use: `| guard | slot 0 | guard | slot 1 | ... | guard |`. A
//! block goes at the start of its slot page (an access before it reaches the
//! guard on the left) or at its end (after it, the guard on the right),
//! chosen at random per allocation. Blocks at the end are aligned to the
//! request's alignment and at most 16 bytes, so an overflow by one byte
//! faults exactly when the size is a multiple of that alignment. A freed
//! slot is made inaccessible again and reused as late as possible (a free
//! slot never used is taken first, then a random freed one), so a
//! use-after-free faults for as long as the slot is not reused.
//!
//! Which allocations: one every `guard_every` allocations, or by bytes on
//! the sampling path (`guard=BYTES`, a Poisson process like sampled
//! recording's, one per 64 MiB by default: see `DEFAULT_INTERVAL`); with sampled
//! recording, the sampled allocations. Requests above a page or aligned
//! above a page are not guarded. Memory is bounded: the pool (`slots`
//! pages of which at most those in use are resident) and a metadata
//! mapping.
//!
//! The fault: a `SIGSEGV` handler installed when guarding starts. A fault
//! outside the pool goes to the handler the program had before (or the
//! default action). One inside is classified (use after free; overflow
//! past a block's end; underflow before its start), reported in one line
//! with the access, allocation and free stacks (module+offset), recorded
//! in the trace when recording (with the faulting access's stack), and
//! then, by default, the default action ends the process with the signal;
//! with `on_error=report` the page is made accessible, the slot retired for
//! good, and the program runs on.

use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::report::{BadPointer, Bytes, LineWriter, invalid_pointer};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Page size the pool is built on.
const PAGE: usize = 4096;
/// Most slots a pool can have.
pub const MAX_SLOTS: usize = 256;
/// Default slots: 32 slots and 33 guard pages, 260 KiB of address space.
pub const DEFAULT_SLOTS: usize = 32;
/// Default mean bytes between guarded allocations: one per 64 MiB keeps
/// the cost within 1% even on the workload harness's allocation-bound
/// loops (one per 4 MiB cost 10% there: two `mprotect` calls per guarded
/// block; BENCHMARKS.md), in the range deployed samplers use (TCMalloc
/// guards about one allocation per 100 MiB).
pub const DEFAULT_INTERVAL: u64 = 64 << 20;
/// Frames kept per allocation and free.
const FRAMES: usize = 24;

/// What a slot holds.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// Never used: inaccessible, taken first.
    Unused,
    /// Holds a live block: accessible.
    Live,
    /// Its block was freed: inaccessible until reused.
    Freed,
    /// Retired after a reported fault (`on_error=report`): never reused.
    Retired,
}

/// One slot's bookkeeping.
#[derive(Clone, Copy)]
struct Slot {
    state: State,
    /// The block's address and requested size.
    addr: usize,
    size: usize,
    /// OS thread ids of the allocating and freeing threads.
    alloc_tid: i32,
    free_tid: i32,
    alloc_frames: [u64; FRAMES],
    alloc_n: u8,
    free_frames: [u64; FRAMES],
    free_n: u8,
}

/// The pool's bookkeeping, in a mapping of its own (internal: not a root
/// for the leak scan, nothing in it points at program data).
struct Meta {
    slots: [Slot; MAX_SLOTS],
    /// Random state for left/right placement and freed-slot reuse.
    rng: u64,
}

/// Settings: mean bytes between guarded allocations (0: by count or off).
static INTERVAL: AtomicU64 = AtomicU64::new(0);
/// Settings: guard one allocation in this many (0: by bytes or off).
static EVERY: AtomicU64 = AtomicU64::new(0);
/// Settings: slots in the pool.
static SLOTS: AtomicUsize = AtomicUsize::new(DEFAULT_SLOTS);
/// Guarding is on and the pool exists.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The pool: `[START, END)`.
static START: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
static META: AtomicPtr<Meta> = AtomicPtr::new(ptr::null_mut());
static LOCK: SpinLock<()> = SpinLock::new(());
/// The program's `SIGSEGV` action before ours.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());

/// The pool lock, for the fork handlers.
pub fn lock() -> &'static SpinLock<()> {
    &LOCK
}

/// Switches guarding on: `every` > 0 guards one allocation in `every`,
/// else `interval` > 0 one every `interval` bytes on average. Maps the pool
/// and installs the fault handler; on failure says so once and stays off.
pub fn configure(interval: u64, every: u64, slots: usize) {
    if interval == 0 && every == 0 {
        return;
    }
    if enabled() {
        // Configured again (the builder API after `MEMTALLY`): the pool
        // stays, the rate changes.
        INTERVAL.store(interval, Ordering::Relaxed);
        EVERY.store(every, Ordering::Relaxed);
        return;
    }
    let slots = slots.clamp(1, MAX_SLOTS);
    let bytes = (2 * slots + 1) * PAGE;
    // Plain mmap, not `os::map`: slot pages hold program data, whose
    // pointers the leak scan must see (inaccessible pages are skipped).
    // SAFETY: an anonymous private mapping; no memory is touched.
    let pool = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    let meta = crate::os::map(core::mem::size_of::<Meta>()) as *mut Meta;
    if pool == libc::MAP_FAILED || meta.is_null() {
        crate::report::warn(format_args!(
            "guarded allocations: cannot map the pool; the program runs without them"
        ));
        return;
    }
    // SAFETY: a fresh zeroed mapping: every slot reads as Unused (0).
    unsafe { (*meta).rng = crate::record::clock::ticks() | 1 };
    if !install_handler() {
        crate::report::warn(format_args!(
            "guarded allocations: cannot install the SIGSEGV handler; the program runs without them"
        ));
        return;
    }
    warm_up(pool as usize);
    SLOTS.store(slots, Ordering::Relaxed);
    INTERVAL.store(interval, Ordering::Relaxed);
    EVERY.store(every, Ordering::Relaxed);
    START.store(pool as usize, Ordering::Relaxed);
    END.store(pool as usize + bytes, Ordering::Relaxed);
    META.store(meta, Ordering::Release);
    ENABLED.store(true, Ordering::Release);
}

/// Calls, once, every C library function the fault handler calls, so that
/// their lazily bound PLT entries are resolved now: the resolver saves the
/// whole vector state on the stack, more than a small alternate signal
/// stack (Rust's runtime sets one up) can hold.
fn warm_up(pool: usize) {
    crate::report::module_base(warm_up as *const () as u64);
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_ENTRY) };
    crate::signals::read_word(&pool as *const usize as u64);
    // SAFETY: a zero-length write; a no-op protection change of an
    // inaccessible pool page; a query of the current SIGSEGV action.
    unsafe {
        libc::write(2, ptr::null(), 0);
        libc::mprotect(pool as *mut libc::c_void, PAGE, libc::PROT_NONE);
        let mut cur: libc::sigaction = core::mem::zeroed();
        libc::sigaction(libc::SIGSEGV, ptr::null(), &mut cur);
    }
    tid();
}

/// Is guarding on?
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// One allocation in this many is guarded (0: not counting).
pub fn every() -> u64 {
    EVERY.load(Ordering::Relaxed)
}

/// Mean bytes between guarded allocations (0: not by bytes).
pub fn interval() -> u64 {
    INTERVAL.load(Ordering::Relaxed)
}

/// Is `p` inside the pool (a guarded block, or garbage near one)?
#[inline]
pub fn owns(p: *const u8) -> bool {
    let a = p as usize;
    a.wrapping_sub(START.load(Ordering::Relaxed))
        < END
            .load(Ordering::Relaxed)
            .wrapping_sub(START.load(Ordering::Relaxed))
}

fn meta() -> &'static mut Meta {
    // SAFETY: set before ENABLED and never unmapped; callers hold LOCK (or
    // are the fault handler, which only reads).
    unsafe { &mut *META.load(Ordering::Acquire) }
}

fn slot_page(i: usize) -> usize {
    START.load(Ordering::Relaxed) + (2 * i + 1) * PAGE
}

fn next_random(m: &mut Meta) -> u64 {
    m.rng ^= m.rng << 13;
    m.rng ^= m.rng >> 7;
    m.rng ^= m.rng << 17;
    m.rng
}

fn tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// The calling thread's stack bounds, cached in its heap (reading
/// `/proc/self/maps` costs tens of microseconds).
fn stack_bounds(heap: *mut Heap) -> crate::record::stack::Bounds {
    use crate::record::stack::Bounds;
    let me = tid() as usize;
    if heap.is_null() || heap == crate::thread::empty_heap() {
        return Bounds::of_current_thread();
    }
    // SAFETY: a non-empty heap of the calling thread, live.
    let h = unsafe { &*heap };
    let [lo, hi, owner] = h.guard_stack.get();
    if owner == me && hi != 0 {
        return Bounds { lo, hi };
    }
    let b = Bounds::of_current_thread();
    h.guard_stack.set([b.lo, b.hi, me]);
    b
}

/// Return addresses of the caller's stack.
fn capture(heap: *mut Heap, out: &mut [u64; FRAMES]) -> u8 {
    crate::record::stack::capture(out, stack_bounds(heap), &crate::signals::RULES) as u8
}

/// A guarded block of `size` bytes aligned to `align`, or None (too big,
/// no free slot).
pub fn alloc(heap: &Heap, size: usize, align: usize, zero: bool) -> Option<*mut u8> {
    if size > PAGE || align > PAGE || !enabled() {
        return None;
    }
    let _g = LOCK.lock();
    // A system call, next to the two mprotect calls a guarded block costs.
    ensure_handler();
    let m = meta();
    let n = SLOTS.load(Ordering::Relaxed);
    let i = match (0..n).find(|&i| m.slots[i].state == State::Unused) {
        Some(i) => i,
        None => {
            let freed = (0..n).filter(|&i| m.slots[i].state == State::Freed).count();
            if freed == 0 {
                return None;
            }
            let pick = (next_random(m) % freed as u64) as usize;
            (0..n)
                .filter(|&i| m.slots[i].state == State::Freed)
                .nth(pick)?
        }
    };
    let page = slot_page(i);
    // SAFETY: the slot's page lies inside the pool mapping.
    if unsafe {
        libc::mprotect(
            page as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } != 0
    {
        return None;
    }
    let natural = size.max(1).next_power_of_two().min(16);
    let a = align.max(natural);
    let addr = if next_random(m) & 1 == 0 {
        page
    } else {
        (page + PAGE - size) & !(a - 1)
    };
    if zero || m.slots[i].state == State::Freed {
        // A reused slot holds its last block's bytes: zero it (calloc, and
        // so that no stale pointer lingers for the leak scan).
        // SAFETY: the page was just made writable.
        unsafe { ptr::write_bytes(page as *mut u8, 0, PAGE) };
    }
    let mut frames = [0u64; FRAMES];
    let count = capture(heap as *const Heap as *mut Heap, &mut frames);
    let s = &mut m.slots[i];
    *s = Slot {
        state: State::Live,
        addr,
        size,
        alloc_tid: tid(),
        free_tid: 0,
        alloc_frames: frames,
        alloc_n: count,
        free_frames: [0; FRAMES],
        free_n: 0,
    };
    Some(addr as *mut u8)
}

/// The slot index of a pool address on a slot page, if it is one.
fn slot_of(a: usize) -> Option<usize> {
    let k = (a - START.load(Ordering::Relaxed)) / PAGE;
    (k % 2 == 1).then_some(k / 2)
}

/// Frees the guarded block `p` (which the pool owns). False (reported,
/// nothing freed) when `p` is not a live guarded block.
pub fn free(heap: *mut Heap, p: *mut u8, call: &str) -> bool {
    let _g = LOCK.lock();
    let m = meta();
    let Some(i) = slot_of(p as usize).filter(|&i| i < SLOTS.load(Ordering::Relaxed)) else {
        drop(_g);
        invalid_pointer(call, p, BadPointer::NotOurs);
        return false;
    };
    let s = m.slots[i];
    if s.state != State::Live || s.addr != p as usize {
        drop(_g);
        let why =
            if s.state == State::Live && (p as usize) > s.addr && (p as usize) < s.addr + s.size {
                BadPointer::Interior {
                    block: s.addr,
                    offset: p as usize - s.addr,
                    size: s.size,
                }
            } else {
                BadPointer::NotLive
            };
        invalid_pointer(call, p, why);
        return false;
    }
    let mut frames = [0u64; FRAMES];
    let count = capture(heap, &mut frames);
    let s = &mut m.slots[i];
    s.state = State::Freed;
    s.free_tid = tid();
    s.free_frames = frames;
    s.free_n = count;
    // SAFETY: the slot's page lies inside the pool mapping.
    unsafe { libc::mprotect(slot_page(i) as *mut libc::c_void, PAGE, libc::PROT_NONE) };
    true
}

/// Usable bytes of the live guarded block `p`; None when it is not one.
pub fn usable_size(p: *const u8) -> Option<usize> {
    let _g = LOCK.lock();
    let m = meta();
    let i = slot_of(p as usize).filter(|&i| i < SLOTS.load(Ordering::Relaxed))?;
    let s = &m.slots[i];
    (s.state == State::Live && s.addr == p as usize).then_some(s.size)
}

// ----------------------------------------------------------------------
// The fault
// ----------------------------------------------------------------------

/// What a fault in the pool was.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// An access to a freed block.
    UseAfterFree,
    /// An access past the end of a block.
    Overflow,
    /// An access before the start of a block.
    Underflow,
    /// An access to a pool page no block explains.
    Wild,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::UseAfterFree => "heap-use-after-free",
            Fault::Overflow => "heap-buffer-overflow",
            Fault::Underflow => "heap-buffer-underflow",
            Fault::Wild => "wild access into the guarded pool",
        }
    }

    /// The trace's error code.
    fn code(self) -> u8 {
        match self {
            Fault::UseAfterFree => crate::trace::error::USE_AFTER_FREE,
            Fault::Overflow | Fault::Wild => crate::trace::error::OVERFLOW,
            Fault::Underflow => crate::trace::error::UNDERFLOW,
        }
    }
}

/// Classifies a fault at `a` (inside the pool): the fault and the slot
/// whose block explains it.
fn classify(m: &Meta, a: usize) -> (Fault, Option<usize>) {
    let n = SLOTS.load(Ordering::Relaxed);
    let k = (a - START.load(Ordering::Relaxed)) / PAGE;
    if k % 2 == 1 {
        let i = k / 2;
        return match m.slots.get(i).map(|s| s.state) {
            Some(State::Freed) | Some(State::Retired) => (Fault::UseAfterFree, Some(i)),
            _ => (Fault::Wild, None),
        };
    }
    // A guard page: the block of the slot before it ends next to it, or the
    // block of the slot after it starts next to it. The nearer live or
    // freed block explains the access.
    let before = (k / 2).checked_sub(1).filter(|&i| i < n);
    let after = Some(k / 2).filter(|&i| i < n);
    let used = |i: usize| m.slots[i].state != State::Unused;
    let past_end = before
        .filter(|&i| used(i))
        .map(|i| (a.saturating_sub(m.slots[i].addr + m.slots[i].size), i));
    let before_start = after
        .filter(|&i| used(i))
        .map(|i| (m.slots[i].addr.saturating_sub(a), i));
    match (past_end, before_start) {
        (Some((d1, i)), Some((d2, _))) if d1 <= d2 => (Fault::Overflow, Some(i)),
        (_, Some((_, j))) => (Fault::Underflow, Some(j)),
        (Some((_, i)), None) => (Fault::Overflow, Some(i)),
        (None, None) => (Fault::Wild, None),
    }
}

/// Installs the fault handler, keeping the action it replaces for faults
/// outside the pool.
fn install_handler() -> bool {
    crate::signals::install(libc::SIGSEGV, on_fault, libc::SA_NODEFER, &PREVIOUS)
}

/// Puts our handler back if something replaced it since (Rust's runtime
/// installs its stack-overflow handler after the first allocations; a
/// program may install its own): the replacement becomes the handler we
/// chain to. Called with the pool lock held, at each guarded allocation.
fn ensure_handler() {
    if !crate::signals::is_current(libc::SIGSEGV, on_fault) {
        install_handler();
    }
}

/// The `SIGSEGV` handler.
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let a = unsafe { (*info).si_addr() } as usize;
    if !enabled() || !owns(a as *const u8) {
        return crate::signals::chain(&PREVIOUS, sig, info, ctx, false);
    }
    let m = meta();
    let (fault, slot) = classify(m, a);
    let write = access_is_write(ctx);
    let mut access = [0u64; FRAMES];
    // The faulting instruction itself comes first.
    let n = crate::signals::stack_of(
        ctx,
        crate::signals::pc(ctx),
        &crate::signals::RULES,
        &mut access,
    );
    report_fault(m, fault, slot, a, write, &access[..n]);
    let report_only = crate::report::report_only();
    if report_only && let Some(i) = slot {
        // Let the access happen and keep the slot out of use for good.
        m.slots[i].state = State::Retired;
        let page = a & !(PAGE - 1);
        // SAFETY: a page of the pool mapping.
        unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        return;
    }
    // Re-raise through the default action: restore it and return, so the
    // access faults again and the process ends with SIGSEGV (a core dump
    // where enabled), as it would have without us.
    crate::signals::reset_default(libc::SIGSEGV);
}

/// Was the faulting access a write? (x86_64: bit 1 of the page-fault error
/// code; elsewhere unknown, reported as an access.)
fn access_is_write(ctx: *mut libc::c_void) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(crate::signals::gregs(ctx)[libc::REG_ERR as usize] & 2 != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        None
    }
}

/// One line naming the fault, then one line per stack, on stderr; and the
/// error in the trace when recording.
fn report_fault(
    m: &Meta,
    fault: Fault,
    slot: Option<usize>,
    a: usize,
    write: Option<bool>,
    access: &[u64],
) {
    let mut w = LineWriter::new();
    let what = match write {
        Some(true) => "write",
        Some(false) => "read",
        None => "access",
    };
    let _ = write!(w, "memtally: {}: {what} at {a:#x}", fault.name());
    if let Some(s) = slot.map(|i| &m.slots[i]) {
        let _ = match fault {
            Fault::Overflow => write!(
                w,
                ", {} past the end of",
                Bytes((a - (s.addr + s.size) + 1) as u64)
            ),
            Fault::Underflow => write!(w, ", {} before", Bytes((s.addr - a) as u64)),
            _ => write!(w, ", {} into", Bytes(a.wrapping_sub(s.addr) as u64)),
        };
        let _ = write!(
            w,
            " the {}-byte block at {:#x} allocated by thread {}",
            s.size, s.addr, s.alloc_tid
        );
        if s.free_tid != 0 {
            let _ = write!(w, " and freed by thread {}", s.free_tid);
        }
    }
    let _ = write!(
        w,
        " (guarded allocation; the thread of the access: {})",
        tid()
    );
    w.emit();
    crate::report::stack_line("access", access);
    if let Some(s) = slot.map(|i| &m.slots[i]) {
        crate::report::stack_line("allocated", &s.alloc_frames[..s.alloc_n as usize]);
        if s.free_n > 0 {
            crate::report::stack_line("freed", &s.free_frames[..s.free_n as usize]);
        }
    }
    // The trace names the block (its start), so that the analysis can tell
    // its allocation and free; the access address is in the line above.
    let block = slot.map_or(a, |i| m.slots[i].addr);
    crate::record::on_fault(fault.code(), block as u64, access);
}
