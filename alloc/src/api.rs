//! The allocation entry points: the fast paths of allocate and free, and the
//! slow paths they fall into.
//!
//! Fast path of `alloc` for requests up to 1 KiB with alignment up to 16
//! (nearly every request): read the thread's heap pointer, index its direct
//! table by the size in words, pop the page's free list, bump `used`. About a
//! dozen instructions and one test; the empty-list case (including a new
//! thread, whose heap is a static empty one) goes to [`alloc_slow`].
//!
//! Fast path of `free`: mask the pointer to its segment, check the segment
//! map bit (so foreign pointers are never dereferenced), compare the segment's
//! owner with the thread's free token, find the page by shifting, check that
//! the pointer is a block start below the page's fast-free limit and that the
//! block is not the page's last (one combined test), check a Rust layout
//! against the page's size interval and the block's freed tag, push onto
//! `local_free`. A block of another thread's heap goes to
//! [`free_other_thread`], which pushes it onto the page's remote list after
//! the same checks. Everything else goes to [`free_slow`] or
//! [`free_owned_slow`].

use crate::heap::{self, Heap};
use crate::huge;
use crate::os;
use crate::page::{self, Family, Lane, Page};
use crate::record;
use crate::report::{BadPointer, invalid_pointer};
use crate::segmap;
use crate::segment::{SEGMENT_MASK, SEGMENT_SIZE, Segment, segment_of};
use crate::size_class::{self, DIRECT_MAX, LARGE_MAX, PageKind, WORD, class_of, is_multiple};
use crate::thread;
use core::ptr;
use core::sync::atomic::Ordering;

/// The largest alignment served by class rounding alone (the alignment of a
/// page's first block is at least this). Larger alignments over-allocate.
pub const MAX_CLASS_ALIGN: usize = 4096;

// ----------------------------------------------------------------------
// Allocation
// ----------------------------------------------------------------------

/// Allocates `size` bytes aligned to `align` (a power of two). Null on failure.
///
/// # Safety
/// `align` must be a power of two.
#[inline(always)]
pub unsafe fn alloc(size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { alloc_impl::<false>(size, align) }
}

/// Like [`alloc`], with the block's first `size` bytes zeroed.
///
/// # Safety
/// `align` must be a power of two.
#[inline(always)]
pub unsafe fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    unsafe { alloc_impl::<true>(size, align) }
}

#[inline(always)]
unsafe fn alloc_impl<const ZERO: bool>(size: usize, align: usize) -> *mut u8 {
    if size <= DIRECT_MAX && align <= 16 {
        // Alignment 16 rounds the size to a non-zero multiple of 16, whose
        // class is a multiple of 16 (see size_class.rs); up to 8 every class
        // is aligned.
        let rounded = if align <= WORD {
            size
        } else {
            (size.max(1) + 15) & !15
        };
        let heap = thread::heap();
        // SAFETY: the thread's heap is live (or the static empty heap) and
        // `rounded <= DIRECT_MAX`, so the index is in bounds. The direct
        // entry is a live page of that heap or the static empty page, whose
        // free list is empty. A block on a free list has a valid link word.
        unsafe {
            let h = &*heap;
            let page = &*h.direct.get_unchecked(rounded.div_ceil(WORD)).get();
            if let Some(block) = pop_block(h, page, rounded) {
                if ZERO {
                    heap::zero_block(page, block, size);
                }
                return block as *mut u8;
            }
        }
    }
    alloc_slow(size, align, ZERO)
}

/// The fast path's pop: the first block of `page`'s free list, handed out
/// (untagged, counted), unless the list is empty or this allocation of
/// `rounded` bytes crosses the heap's sampling countdown.
///
/// # Safety
/// `page` must be a page of `h` (or the static empty page); blocks on its
/// free list have valid link words.
#[inline(always)]
unsafe fn pop_block(h: &Heap, page: &Page, rounded: usize) -> Option<*mut page::Block> {
    let block = page.free.get();
    let left = h.sample_left.get().wrapping_sub(rounded as i64);
    if block.is_null() | (left < 0) {
        return None;
    }
    h.sample_left.set(left);
    // SAFETY: a block on the free list (caller): its link word is valid, and
    // taking it off the list makes it ours.
    unsafe {
        page.free.set((*block).next);
        page::untag(block);
    }
    page.used.set(page.used.get() + 1);
    Some(block)
}

/// The allocation slow path: first allocation of a thread, exhausted pages,
/// sizes above 1 KiB, big alignments, huge blocks, instrumented heaps.
#[inline(always)]
pub fn alloc_slow(size: usize, align: usize, zero: bool) -> *mut u8 {
    alloc_slow_lane(size, align, zero, Lane::Malloc)
}

/// Allocates for C++ `operator new` (`lane` New) or `new[]` (NewArray),
/// from pages of that lane, so that the matching `delete` can be told
/// from a mismatched one. Null on failure (the caller throws).
///
/// # Safety
/// `align` must be a power of two.
#[inline]
pub unsafe fn alloc_lane(size: usize, align: usize, lane: Lane) -> *mut u8 {
    if size <= DIRECT_MAX && align <= 16 {
        let rounded = if align <= WORD {
            size
        } else {
            (size.max(1) + 15) & !15
        };
        let cls = class_of(rounded);
        // SAFETY: the thread's heap is live (or the static empty heap,
        // whose queues are empty); a queue's pages are live pages of it, and
        // a block on a free list has a valid link word.
        unsafe {
            let h = &*thread::heap();
            let page = h.queue(cls, lane).first.get();
            if !page.is_null()
                && !h.instrumented.get()
                && let Some(block) = pop_block(h, &*page, rounded)
            {
                return block as *mut u8;
            }
        }
    }
    alloc_slow_lane(size, align, false, lane)
}

#[cold]
#[inline(never)]
fn alloc_slow_lane(size: usize, align: usize, zero: bool, lane: Lane) -> *mut u8 {
    let recording = record::active();
    let mut heap = thread::heap();
    let t0 = if recording && record::full() {
        record::call_start(heap)
    } else {
        0
    };
    if heap == thread::empty_heap() {
        heap = thread::init_thread();
        if heap.is_null() {
            os::set_errno(libc::ENOMEM);
            return ptr::null_mut();
        }
    }
    // SAFETY: the thread's heap is live and owned by this thread.
    let h = unsafe { &*heap };
    h.housekeeping();
    let sampling = record::sampling_interval();
    if sampling.is_some() || crate::guard::enabled() || crate::races::enabled() {
        let left = h.sample_left.get().wrapping_sub(size as i64);
        if (left >= 0 && crate::guard::every() == 0) || h.rec.is_busy() {
            h.sample_left.set(left.max(0));
        } else {
            // This allocation crossed the countdown: it is a sample.
            let sample_t0 = record::clock::ticks();
            h.sample_left.set(record::next_countdown(h));
            if let Some(p) = guarded(h, size, align, zero) {
                if recording && (sampling.is_some() || record::full()) {
                    record::on_alloc(h, p, size, align, sample_t0);
                }
                return p;
            }
            if sampling.is_some() {
                let p = alloc_sampled(h, size, align, zero);
                if !p.is_null() {
                    crate::races::offer(p, size);
                    record::on_alloc(h, p, size, align, sample_t0);
                    return p;
                }
            }
            if crate::races::enabled() {
                let p = alloc_fresh(h, size, align, zero, recording, t0, lane);
                crate::races::offer(p, size);
                return p;
            }
        }
    }
    alloc_fresh(h, size, align, zero, recording, t0, lane)
}

/// The slow path's allocation proper, counted and recorded (in full mode)
/// as a call that began at `t0`.
#[inline(always)]
fn alloc_fresh(
    h: &Heap,
    size: usize,
    align: usize,
    zero: bool,
    recording: bool,
    t0: u64,
    lane: Lane,
) -> *mut u8 {
    let (p, usable) = if align <= MAX_CLASS_ALIGN {
        let align = align.max(WORD);
        if size <= LARGE_MAX {
            let cls = class_of((size.max(1) + align - 1) & !(align - 1));
            (h.alloc_lane(cls, zero, lane), size_class::class_size(cls))
        } else {
            let p = huge::alloc(size, align, zero);
            if !p.is_null() {
                huge::set_lane(p, lane);
            }
            (p, huge_usable(p))
        }
    } else {
        alloc_overaligned(h, size, align, zero)
    };
    if p.is_null() {
        os::set_errno(libc::ENOMEM);
    } else if h.instrumented.get() {
        h.stats.on_alloc(usable);
        if recording && record::full() {
            record::on_alloc(h, p, size, align, t0);
        }
    }
    p
}

/// A guarded allocation, when this sample is due one (`guard_every`
/// counts samples; by bytes, every sample is) and it fits a slot.
fn guarded(h: &Heap, size: usize, align: usize, zero: bool) -> Option<*mut u8> {
    if !crate::guard::enabled() {
        return None;
    }
    let every = crate::guard::every();
    if every > 0 {
        let n = h.guard_count.get() + 1;
        h.guard_count.set(n);
        if n % every != 0 {
            return None;
        }
    }
    crate::guard::alloc(h, size, align, zero)
}

fn huge_usable(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` is a live huge block just allocated; its header is valid.
    unsafe { (*segment_of_block(p)).pages[0].block_size.get() }
}

/// Alignment above [`MAX_CLASS_ALIGN`]: take a block with room to slide the
/// pointer up to the alignment and mark the page so that frees of the
/// interior pointer find the block start.
fn alloc_overaligned(h: &Heap, size: usize, align: usize, zero: bool) -> (*mut u8, usize) {
    let padded = size.max(1).saturating_add(align - 1);
    if padded > LARGE_MAX {
        let p = huge::alloc(size, align, zero);
        return (p, huge_usable(p));
    }
    let cls = class_of(padded);
    let block = h.alloc_lane(cls, false, Lane::Malloc);
    if block.is_null() {
        return (block, 0);
    }
    let aligned = ((block as usize + align - 1) & !(align - 1)) as *mut u8;
    if aligned != block {
        // SAFETY: the block is live in one of this heap's pages.
        let page = unsafe { (*segment_of(block)).page_of(block) };
        page.set_flag(page::HAS_ALIGNED, true);
    }
    if zero {
        // SAFETY: `aligned + size` stays inside the block (padded size).
        unsafe { ptr::write_bytes(aligned, 0, size) };
    }
    let usable = size_class::class_size(cls) - (aligned as usize - block as usize);
    (aligned, usable)
}

// ----------------------------------------------------------------------
// Free
// ----------------------------------------------------------------------

/// Frees a block; `call` names the API for error messages ("free", "dealloc").
/// A null pointer is ignored. An invalid pointer aborts with a message.
///
/// # Safety
/// `p` must be null or a pointer this allocator returned and that has not
/// been freed since; other pointers are detected where the metadata allows
/// and abort the process.
#[inline(always)]
pub unsafe fn free(p: *mut u8, call: &'static str) {
    // SAFETY: forwarded from the caller.
    unsafe { free_impl::<false>(p, call, 0, 0, Family::Free) }
}

/// Frees a block for C++ `operator delete` (`family` Delete) or `delete[]`
/// (DeleteArray): as [`free`], and a block of another family (from
/// `malloc`, `new[]` for `delete`...) is reported as a mismatch.
///
/// # Safety
/// As [`free`].
#[inline(always)]
pub unsafe fn free_family(p: *mut u8, call: &'static str, family: Family) {
    // SAFETY: forwarded from the caller.
    unsafe { free_impl::<false>(p, call, 0, 0, family) }
}

/// Frees a block that Rust's `dealloc` says was allocated with `size` and
/// `align`, after checking that the layout fits the block: `size` (rounded
/// as an allocation rounds it) no larger than the block and at least half of
/// it (a block is never more than twice its request, reallocations in place
/// included), and the pointer aligned to `align`. A mismatch is reported as
/// an invalid pointer and the block is not freed.
///
/// # Safety
/// As [`free`]; `align` must be a power of two.
#[inline(always)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { free_impl::<true>(p, "dealloc", size, align, Family::Free) }
}

/// The request size an allocation of `size` bytes aligned to `align` is
/// served for, before size-class rounding.
#[inline(always)]
fn rounded_request(size: usize, align: usize) -> usize {
    let a = align.max(WORD);
    ((size.max(1) + a - 1) & !(a - 1)).max(2 * WORD)
}

/// Marks the branch that calls it as the unlikely one (as
/// `core::hint::cold_path`, which is newer than our minimum Rust).
#[cold]
#[inline(always)]
fn cold_path() {}

/// Does a `size`/`align` layout fit the block at `p` of `page` (not an
/// over-aligned page)? (Every Rust `dealloc` asks, on the free fast path.)
/// For alignments up to a word, blocks are word multiples at word-aligned
/// addresses and the rule is an interval of sizes the page keeps
/// (`page::word_dealloc_min`): a subtraction and a comparison.
#[inline(always)]
fn layout_fits(page: &Page, p: *mut u8, size: usize, align: usize) -> bool {
    if !page::CHECKED {
        return true;
    }
    if align <= WORD {
        return size.wrapping_sub(page.dealloc_min.get()) <= page.dealloc_span.get();
    }
    // Over-aligned Rust types are the rarer case: keep the word-aligned
    // check's branch falling through.
    cold_path();
    let block_size = page.block_size.get();
    let r = rounded_request(size, align);
    (r <= block_size) & (r >= block_size.div_ceil(2)) & (p as usize & (align - 1) == 0)
}

#[inline(always)]
unsafe fn free_impl<const SIZED: bool>(
    p: *mut u8,
    call: &'static str,
    size: usize,
    align: usize,
    family: Family,
) {
    // Every way out of the fast path below is a tail call, so that the
    // fast path saves no registers.
    let seg = segment_of(p);
    if segmap::contains(seg as usize) {
        let token = thread::token();
        // SAFETY: the segment map says a live segment starts at `seg`, so its
        // header is mapped and initialised.
        let s = unsafe { &*seg };
        if s.heap.load(Ordering::Relaxed) == token {
            let page = s.page_of(p);
            let off = (p as usize).wrapping_sub(page.block_start.get() as usize);
            if (off < page.limit(family) as usize) & is_multiple(off as u64, page.magic.get()) {
                if SIZED && page::CHECKED {
                    if align <= WORD {
                        // As `layout_fits`, with the size rebuilt on the
                        // way out, so that `size` dies at the subtraction
                        // and needs no copy: one instruction less a free.
                        let d = size.wrapping_sub(page.dealloc_min.get());
                        if d > page.dealloc_span.get() {
                            return word_layout_mismatch(p, d, align, page);
                        }
                    } else {
                        // Over-aligned Rust types are the rarer case.
                        cold_path();
                        if !layout_fits(page, p, size, align) {
                            return layout_mismatch(p, size, align);
                        }
                    }
                }
                let used = page.used.get();
                let b = p as *mut page::Block;
                // SAFETY: `p` is a carved block start (below free_limit) of a
                // page owned by this thread (the token matched).
                if (used > 1) & !unsafe { page::is_freed(page, b) } {
                    // SAFETY: as above, and the block was in use (untagged).
                    unsafe {
                        (*b).next = page.local_free.get();
                        page::tag_freed(page, b);
                    }
                    page.local_free.set(b);
                    page.used.set(used - 1);
                    return;
                }
                // SAFETY: the token matched, so the heap is ours and live.
                return free_last(unsafe { &*token }, page, p, call);
            }
        } else if token.is_null() {
            // A thread without a token: its heap is instrumented (or it
            // has none yet).
            return free_tokenless::<SIZED>(p, size, align, s, call, family);
        } else {
            return free_other_thread::<SIZED>(p, size, align, s, call, family);
        }
    }
    free_unusual::<SIZED>(p, size, align, call, family);
}

/// A free, by a thread with a heap of its own, of a block of another
/// thread's heap (a producer hands blocks to a consumer): a carved block
/// start, in use, of a small or large page of a lane the call may free and
/// not sampled, goes straight onto the page's remote list, its tag and
/// Rust layout checked as on the owner's fast path. Anything else takes
/// the general path, which reports what is wrong, and so does every such
/// free while full recording is on: a thread that only frees keeps the
/// token it had before a recording was attached (it takes the change in
/// its allocation slow path), and its frees must still be recorded.
/// (Statistics are switched on before any heap exists.)
#[inline(never)]
fn free_other_thread<const SIZED: bool>(
    p: *mut u8,
    size: usize,
    align: usize,
    s: &Segment,
    call: &'static str,
    family: Family,
) {
    if !record::full() && s.kind.get() != PageKind::Huge {
        let page = s.page_of(p);
        if page.in_use()
            && page.plain_lane_for(family)
            && page.is_block_start(p)
            && page.is_carved(p)
        {
            let b = p as *mut page::Block;
            // SAFETY: a carved block start of a page in use: its two words
            // are mapped.
            if !unsafe { page::is_freed(page, b) } {
                if SIZED && !layout_fits(page, p, size, align) {
                    return layout_mismatch(p, size, align);
                }
                return push_remote(s.heap.load(Ordering::Relaxed), page, b);
            }
        }
    }
    free_unusual::<SIZED>(p, size, align, call, family);
}

/// A free by a thread without a token, into segment `s` (live): into a
/// page of the thread's own instrumented heap (stats and full modes), it
/// needs neither the general path's search for the block nor its checks
/// for other threads' heaps.
#[inline(never)]
fn free_tokenless<const SIZED: bool>(
    p: *mut u8,
    size: usize,
    align: usize,
    s: &Segment,
    call: &'static str,
    family: Family,
) {
    let heap = thread::heap();
    if s.heap.load(Ordering::Relaxed) != heap {
        return free_unusual::<SIZED>(p, size, align, call, family);
    }
    free_instrumented::<SIZED>(heap, s.page_of(p), p, call, family, size, align)
}

/// A free that neither the fast path nor `free_tokenless` made: not a
/// carved block of this thread's pages below their bound (an interior
/// pointer, another family's block, another thread's, a huge block, not
/// ours at all), Rust's layout checked against the block first.
#[cold]
#[inline(never)]
fn free_unusual<const SIZED: bool>(
    p: *mut u8,
    size: usize,
    align: usize,
    call: &'static str,
    family: Family,
) {
    let seg = segment_of(p);
    if segmap::contains(seg as usize) {
        let token = thread::token();
        // SAFETY: as in `free_impl`.
        let s = unsafe { &*seg };
        let owner = s.heap.load(Ordering::Relaxed);
        if owner == token {
            // SAFETY: the token matched, so the heap is ours and live.
            let heap = unsafe { &*token };
            return free_owned_slow::<SIZED>(heap, s, p, call, family, size, align);
        }
        // (An instrumented heap's own blocks take `free_tokenless`.)
    }
    // Another thread's block (the common case here), a huge one, or not
    // ours: the general path checks the layout once it has found the block.
    free_slow::<SIZED>(p, call, family, size, align);
}

/// A free into a page of this thread's instrumented heap, as the general
/// path would make it (counted, recorded in full mode) without its search
/// for the block; anything unusual (an interior pointer, a family
/// mismatch, a block not in use, a full or sampled page, whose fast-free
/// bounds are 0) goes to that path, which reports it.
#[inline(never)]
fn free_instrumented<const SIZED: bool>(
    heap: *mut Heap,
    page: &Page,
    p: *mut u8,
    call: &'static str,
    family: Family,
    size: usize,
    align: usize,
) {
    let off = (p as usize).wrapping_sub(page.block_start.get() as usize);
    let carved = (off < page.limit(family) as usize) & is_multiple(off as u64, page.magic.get());
    // SAFETY: below the limit and a multiple of the block size: a carved
    // block start, whose tag word is readable.
    if !carved || unsafe { page::is_freed(page, p as *const page::Block) } {
        return free_slow::<SIZED>(p, call, family, size, align);
    }
    if SIZED && !layout_fits(page, p, size, align) {
        return layout_mismatch(p, size, align);
    }
    let recorded = record::active() && record::full();
    recorded_free(heap, p, recorded, || {
        release_block(heap, heap, page, p, p, call)
    });
}

/// Frees `p` through `release` on behalf of the thread whose heap is
/// `heap` (possibly the empty heap), as an event when `recorded`: the
/// call's start is read before the block is released.
fn recorded_free(heap: *mut Heap, p: *mut u8, recorded: bool, release: impl FnOnce() -> bool) {
    let t0 = if recorded {
        record::call_start(heap)
    } else {
        0
    };
    // SAFETY: a non-empty thread heap is live and ours.
    let h = (recorded && heap != thread::empty_heap()).then(|| unsafe { &*heap });
    record::free_event(h, p, t0, release);
}

/// Does a free by `family` fit a block of `lane`? Sampled blocks (of any
/// family) are not checked, nor is `delete` of a `malloc` block: a program
/// may define its own `operator new` on top of `malloc` and leave `delete`
/// to us. Reports the mismatch otherwise.
fn family_fits(lane: Lane, family: Family, call: &str, p: *mut u8) -> bool {
    if lane == Lane::Sampled || lane == family.lane() || lane == Lane::Malloc {
        return true;
    }
    invalid_pointer(
        call,
        p,
        BadPointer::Mismatch {
            allocated: lane.allocator(),
        },
    );
    false
}

/// Reports a `dealloc` whose layout does not match the block at `p`.
#[cold]
#[inline(never)]
fn layout_mismatch(p: *mut u8, size: usize, align: usize) {
    // SAFETY: `p` was found to be a block of ours by the caller.
    let usable = unsafe { usable_size(p) };
    invalid_pointer(
        "dealloc",
        p,
        BadPointer::Layout {
            size,
            align,
            usable,
        },
    );
}

/// [`layout_mismatch`] on the free fast path, for an alignment up to a
/// word: `d` is the size less the page's `dealloc_min` (the arguments in
/// the registers the fast path holds them in). Out of line, so
/// that the optimiser cannot fold the size back (which would keep it in a
/// register of its own across the check).
#[cold]
#[inline(never)]
fn word_layout_mismatch(p: *mut u8, d: usize, align: usize, page: &Page) {
    layout_mismatch(p, d.wrapping_add(page.dealloc_min.get()), align);
}

/// Does a `size`/`align` layout fit the block `loc` that `p` points into?
/// True as well when the block is not in use (the free then reports that,
/// a double free before a layout). False after reporting a mismatch.
#[inline(always)]
fn located_layout_fits(loc: &Located, p: *mut u8, size: usize, align: usize) -> bool {
    if !page::CHECKED || !is_live(loc, p) {
        return true;
    }
    let fits = if loc.kind == PageKind::Huge {
        rounded_request(size, align) <= huge_usable(p) && p as usize & (align - 1) == 0
    } else {
        // SAFETY: `locate` returned a live segment and an in-use page.
        let page = unsafe { (*loc.segment).page_of(loc.block) };
        if page.has(page::HAS_ALIGNED) {
            // Over-aligned blocks carry slack for the alignment: only the
            // upper bound holds.
            let usable = loc.block as usize + page.block_size.get() - p as usize;
            rounded_request(size, align) <= usable && p as usize & (align - 1) == 0
        } else {
            layout_fits(page, p, size, align)
        }
    };
    if !fits {
        layout_mismatch(p, size, align);
    }
    fits
}

/// Is the located block in use? Reports nothing.
fn is_live(loc: &Located, p: *mut u8) -> bool {
    if loc.kind == PageKind::Huge {
        // SAFETY: `locate` checked that the segment is a live huge segment.
        let page = unsafe { &(*loc.segment).pages[0] };
        return p == page.block_start.get() && page.used.get() != 0;
    }
    // SAFETY: `locate` returned a live segment and a carved block start of
    // a page in use.
    unsafe {
        let page = (*loc.segment).page_of(loc.block);
        !page::is_freed(page, loc.block as *const page::Block)
    }
}

/// The live segment `p` would belong to, if any; reports nothing.
fn live_segment_of(p: *mut u8) -> Option<&'static Segment> {
    let seg = segment_of_block(p);
    if (p as usize) < SEGMENT_SIZE || !segmap::contains(seg as usize) {
        return None;
    }
    // SAFETY: the segment map says a live segment starts at `seg`; segment
    // headers stay mapped while their bit is set, and callers use the
    // reference only for the call at hand.
    Some(unsafe { &*seg })
}

/// A free of a block start in a page of this thread's heap that the fast
/// path did not take: the page's last live block (push it and retire the
/// page; kept small, because a loop that allocates and frees one block lands
/// here every time), or a block that is not in use (a double free).
#[cold]
#[inline(never)]
fn free_last(heap: &Heap, page: &Page, p: *mut u8, call: &'static str) {
    let b = p as *mut page::Block;
    // SAFETY: `p` is a carved block start of a page this thread owns.
    if unsafe { page::is_freed(page, b) } {
        return invalid_pointer(call, p, BadPointer::NotLive);
    }
    // SAFETY: as above, and the block was in use.
    unsafe {
        (*b).next = page.local_free.get();
        page::tag_freed(page, b);
    }
    page.local_free.set(b);
    let used = page.used.get() - 1;
    page.used.set(used);
    if used == 0 {
        heap.page_retire(page);
    }
}

/// A free into a page of this thread's (uninstrumented) heap that the fast
/// path could not take: full page, interior pointer, bad pointer.
#[cold]
#[inline(never)]
fn free_owned_slow<const SIZED: bool>(
    heap: &Heap,
    s: &Segment,
    p: *mut u8,
    call: &'static str,
    family: Family,
    size: usize,
    align: usize,
) {
    let page = s.page_of(p);
    let Some(block) = block_of(page, p, call) else {
        return;
    };
    let loc = Located {
        segment: ptr::from_ref(s).cast_mut(),
        block,
        kind: s.kind.get(),
    };
    if SIZED && !located_layout_fits(&loc, p, size, align) {
        return;
    }
    if !family_fits(page.lane(), family, call, p) {
        return;
    }
    let t0 = record::clock::ticks();
    if !heap.free_local(page, block) {
        return invalid_pointer(call, p, BadPointer::NotLive);
    }
    if page.has(page::SAMPLED) && record::active() {
        // A sampled block: its free is an event.
        record::on_free(heap, p, t0);
    }
}

/// Allocates a sampled block: from the heap's sampled pages when it fits a
/// size class, else as a huge block flagged sampled.
fn alloc_sampled(h: &Heap, size: usize, align: usize, zero: bool) -> *mut u8 {
    if align <= MAX_CLASS_ALIGN && size <= LARGE_MAX {
        let align = align.max(WORD);
        let cls = class_of((size.max(1) + align - 1) & !(align - 1));
        h.alloc_lane(cls, zero, Lane::Sampled)
    } else {
        huge::alloc_sampled(size, align, zero)
    }
}

/// The general free: null, huge blocks, frees from other threads, frees on
/// instrumented heaps, foreign pointers. `SIZED`: a Rust `dealloc`, whose
/// `size` and `align` are checked against the block once it is found.
#[cold]
#[inline(never)]
fn free_slow<const SIZED: bool>(
    p: *mut u8,
    call: &'static str,
    family: Family,
    size: usize,
    align: usize,
) {
    if p.is_null() {
        return;
    }
    let recording = record::active();
    let mut heap = thread::heap();
    if crate::guard::owns(p) {
        let t0 = record::clock::ticks();
        // SAFETY: a non-empty thread heap is live and ours.
        let h = (recording && heap != thread::empty_heap()).then(|| unsafe { &*heap });
        record::free_event(h, p, t0, || crate::guard::free(heap, p, call));
        return;
    }
    let Some(loc) = locate(p, call) else {
        return;
    };
    if SIZED && !located_layout_fits(&loc, p, size, align) {
        return;
    }
    if recording && heap == thread::empty_heap() {
        // A thread that frees before it ever allocates still records.
        let h = thread::init_thread();
        if !h.is_null() {
            heap = h;
        }
    }
    // In sampled mode only the frees of sampled blocks are events.
    let sampled = recording && located_is_sampled(&loc);
    let recorded = sampled || (recording && record::full());
    recorded_free(heap, p, recorded, || {
        free_block(&loc, heap, p, call, family)
    });
}

/// Frees the located block at `loc` on behalf of the thread whose heap
/// is `heap` (possibly the empty heap). False when it was not in use (the
/// error is reported and nothing freed).
fn free_block(
    loc: &Located,
    heap: *mut Heap,
    p: *mut u8,
    call: &'static str,
    family: Family,
) -> bool {
    let counting = crate::stats::enabled();
    let lane = if loc.kind == PageKind::Huge {
        huge::lane(loc.segment)
    } else {
        // SAFETY: `locate` returned a live segment and one of its in-use pages.
        unsafe { (*loc.segment).page_of(loc.block).lane() }
    };
    if !family_fits(lane, family, call, p) {
        return false;
    }
    if loc.kind == PageKind::Huge {
        // SAFETY: a live huge segment's header is valid.
        let size = unsafe { (*loc.segment).pages[0].block_size.get() };
        // SAFETY: `locate` checked that the segment is a live huge segment.
        let freed = unsafe { huge::free(loc.segment, loc.block, call) };
        if freed && counting {
            count_free(heap, size);
        }
        return freed;
    }
    // SAFETY: `locate` returned a live segment and one of its in-use pages.
    let s = unsafe { &*loc.segment };
    let owner = s.heap.load(Ordering::Relaxed);
    release_block(heap, owner, s.page_of(loc.block), loc.block, p, call)
}

/// Releases `block` of `page`, whose heap is `owner`, on behalf of the
/// thread whose heap is `heap`, and counts it; false (reported) when it
/// was not in use. `p` is the pointer the program passed.
fn release_block(
    heap: *mut Heap,
    owner: *mut Heap,
    page: &Page,
    block: *mut u8,
    p: *mut u8,
    call: &'static str,
) -> bool {
    let freed = if owner == heap {
        // Our own heap, instrumented (else the fast path would have taken it).
        // SAFETY: the heap is ours and live.
        unsafe { (*heap).free_local(page, block) }
    } else {
        free_remote(owner, page, block)
    };
    if !freed {
        invalid_pointer(call, p, BadPointer::NotLive);
        return false;
    }
    if crate::stats::enabled() {
        count_free(heap, page.block_size.get());
    }
    true
}

fn count_free(heap: *mut Heap, size: usize) {
    if heap == thread::empty_heap() {
        crate::stats::on_orphan_free(size);
    } else {
        // SAFETY: a non-empty thread heap is live and ours.
        unsafe { (*heap).stats.on_free(size) };
    }
}

/// Frees a block of another heap's page: claim it (false when it is not in
/// use), then push it onto the page's remote list, or, if that consumed the
/// page's full-page notification, onto the owner's delayed list.
fn free_remote(owner: *mut Heap, page: &Page, block: *mut u8) -> bool {
    let b = block as *mut page::Block;
    // SAFETY: `block` is a carved block start of a page in use (`locate`).
    if unsafe { page::is_freed(page, b) } {
        return false;
    }
    push_remote(owner, page, b);
    true
}

/// The second half of [`free_remote`], for a block found in use: tag it
/// and push it.
#[inline(always)]
fn push_remote(owner: *mut Heap, page: &Page, b: *mut page::Block) {
    // SAFETY: the block is in use (caller), and this free makes it ours to
    // write.
    unsafe { page::tag_freed(page, b) };
    // SAFETY: `b` is an in-use block of `page`, freed once here.
    if unsafe { page::push_thread_free(page, b) } {
        // SAFETY: heaps are never freed, so the owner recorded in a segment
        // with a live block is a valid heap even if its thread has exited.
        let delayed = unsafe { &(*owner).delayed };
        let mut head = delayed.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is ours to link until it is published.
            unsafe { (*b).next = head };
            match delayed.compare_exchange_weak(head, b, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }
}

// ----------------------------------------------------------------------
// Locating and validating pointers
// ----------------------------------------------------------------------

/// Where a valid pointer lives.
struct Located {
    segment: *mut Segment,
    /// Start of the block (differs from the pointer for over-aligned blocks).
    block: *mut u8,
    kind: PageKind,
}

/// The segment of a huge block aligned to a segment boundary lies one segment
/// before it (see huge.rs); every other block finds its segment by masking.
#[inline]
fn segment_of_block(p: *mut u8) -> *mut Segment {
    if p as usize & SEGMENT_MASK == 0 {
        (p as usize - SEGMENT_SIZE) as *mut Segment
    } else {
        segment_of(p)
    }
}

/// Reports `p` as invalid for `call` (which aborts unless `on_error=report`)
/// and gives the caller nothing to work on.
#[cold]
fn reject<T>(call: &str, p: *mut u8, why: BadPointer) -> Option<T> {
    invalid_pointer(call, p, why);
    None
}

/// Finds the block of `p`; None (reported) when `p` is not inside a block of
/// ours. Whether the block is in use is checked by the caller.
fn locate(p: *mut u8, call: &str) -> Option<Located> {
    let seg = segment_of_block(p);
    if (p as usize) < SEGMENT_SIZE || !segmap::contains(seg as usize) {
        if huge::recently_freed(p) {
            return reject(call, p, BadPointer::NotLive);
        }
        return reject(call, p, BadPointer::NotOurs);
    }
    // SAFETY: the segment map says a live segment starts at `seg`.
    let s = unsafe { &*seg };
    let kind = s.kind.get();
    if kind == PageKind::Huge {
        return Some(Located {
            segment: seg,
            block: p,
            kind,
        });
    }
    if p as usize & SEGMENT_MASK == 0 {
        return reject(call, p, BadPointer::NotOurs);
    }
    let block = block_of(s.page_of(p), p, call)?;
    Some(Located {
        segment: seg,
        block,
        kind,
    })
}

/// The block start for `p` in `page`: `p` itself, or for an over-aligned
/// pointer into a block, the block's start. None (reported) otherwise.
fn block_of(page: &Page, p: *mut u8, call: &str) -> Option<*mut u8> {
    if !page.in_use() {
        return reject(call, p, BadPointer::NotLive);
    }
    if page.is_block_start(p) {
        return carved(page, p, p, call);
    }
    let block = page.block_containing(p);
    if block.is_null() {
        return reject(call, p, BadPointer::NotOurs);
    }
    if page.has(page::HAS_ALIGNED) {
        return carved(page, block, p, call);
    }
    reject(
        call,
        p,
        BadPointer::Interior {
            block: block as usize,
            offset: p as usize - block as usize,
            size: page.block_size.get(),
        },
    )
}

/// `block` if it was carved out of `page` (only carved blocks carry the tag
/// that tells a free one); None (reported: never handed out) otherwise.
fn carved(page: &Page, block: *mut u8, p: *mut u8, call: &str) -> Option<*mut u8> {
    if page.is_carved(block) {
        Some(block)
    } else {
        reject(call, p, BadPointer::NotLive)
    }
}

/// The located block is in use (for calls that read it without freeing it).
fn is_in_use(loc: &Located, p: *mut u8, call: &str) -> bool {
    if loc.kind == PageKind::Huge {
        // SAFETY: `locate` checked the huge segment.
        return unsafe { huge::usable_size(loc.segment, p, call) }.is_some();
    }
    if is_live(loc, p) {
        return true;
    }
    invalid_pointer(call, p, BadPointer::NotLive);
    false
}

/// Usable bytes at `p` (from `p` to the end of its block); 0 for null.
///
/// # Safety
/// `p` must be null or a live pointer from this allocator; others abort.
pub unsafe fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    if crate::guard::owns(p) {
        return crate::guard::usable_size(p).unwrap_or_else(|| {
            invalid_pointer("malloc_usable_size", p, BadPointer::NotLive);
            0
        });
    }
    let Some(loc) = locate(p, "malloc_usable_size") else {
        return 0;
    };
    if !is_in_use(&loc, p, "malloc_usable_size") {
        return 0;
    }
    if loc.kind == PageKind::Huge {
        // SAFETY: `locate` checked the huge segment (and its block, above).
        return unsafe { huge::usable_size(loc.segment, p, "malloc_usable_size") }.unwrap_or(0);
    }
    // SAFETY: `locate` returned a live segment and an in-use page.
    let page = unsafe { (*loc.segment).page_of(loc.block) };
    loc.block as usize + page.block_size.get() - p as usize
}

// ----------------------------------------------------------------------
// Realloc
// ----------------------------------------------------------------------

/// Resizes the block at `p` to `new_size` bytes aligned to `align`, in place
/// when the block allows, else by allocating, copying at most `old_size`
/// bytes (or the whole usable size when `old_size` is `usize::MAX`), and
/// freeing. Null (with `p` untouched) on failure; `p == null` allocates.
///
/// # Safety
/// `align` must be a power of two and `p` null or a live pointer from this
/// allocator allocated with alignment `align`.
pub unsafe fn realloc(p: *mut u8, new_size: usize, align: usize, old_size: usize) -> *mut u8 {
    if p.is_null() {
        // SAFETY: forwarded from the caller.
        return unsafe { alloc(new_size, align) };
    }
    if record::full() || (record::active() && is_sampled_block(p)) {
        let mut heap = thread::heap();
        let t0 = record::call_start(heap);
        if heap == thread::empty_heap() {
            heap = thread::init_thread();
        }
        if !heap.is_null() {
            // SAFETY: the thread's heap is live and ours.
            let h = unsafe { &*heap };
            // The inner allocation and free are one event: a reallocation.
            let q = h.rec.reallocating(|| {
                if record::full() {
                    // SAFETY: forwarded from the caller.
                    unsafe { realloc_block(p, new_size, align, old_size) }
                } else {
                    // A sampled block stays sampled, so its free is seen.
                    // SAFETY: forwarded from the caller.
                    unsafe { realloc_sampled(p, new_size, align, old_size) }
                }
            });
            record::on_realloc(h, p, q, new_size, t0);
            return q;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { realloc_block(p, new_size, align, old_size) }
}

/// Is the located block a sampled allocation (on a sampled page, or a huge
/// block flagged sampled)?
fn located_is_sampled(loc: &Located) -> bool {
    if loc.kind == PageKind::Huge {
        return huge::is_sampled(loc.segment);
    }
    // SAFETY: `locate` returned a live segment; the block is in it.
    unsafe { (*loc.segment).page_of(loc.block).has(page::SAMPLED) }
}

/// Is `p` a live sampled block? Any other pointer, valid or not, is "no".
fn is_sampled_block(p: *mut u8) -> bool {
    if crate::guard::owns(p) {
        // Guarded blocks are samples (recorded in sampled mode).
        return true;
    }
    let Some(s) = live_segment_of(p) else {
        return false;
    };
    if s.kind.get() == PageKind::Huge {
        return huge::is_sampled(s as *const Segment as *mut Segment);
    }
    p as usize & SEGMENT_MASK != 0 && s.page_of(p).has(page::SAMPLED)
}

/// Reallocation of a sampled block: into a new sampled block.
///
/// # Safety
/// As [`realloc`], with `p` a live sampled block.
unsafe fn realloc_sampled(p: *mut u8, new_size: usize, align: usize, old_size: usize) -> *mut u8 {
    // SAFETY: `p` is a live block (caller).
    let usable = unsafe { usable_size(p) };
    let heap = thread::heap();
    if heap == thread::empty_heap() {
        return ptr::null_mut();
    }
    // SAFETY: the calling thread's heap, live and ours.
    let q = alloc_sampled(unsafe { &*heap }, new_size, align, false);
    if q.is_null() {
        return q;
    }
    let n = new_size.min(usable).min(old_size);
    // SAFETY: both blocks are live, distinct, and at least `n` bytes long.
    unsafe { ptr::copy_nonoverlapping(p, q, n) };
    stamp_realloc_release();
    // SAFETY: `p` is live and freed once.
    unsafe { free(p, "realloc") };
    q
}

/// A recorded reallocation that moves takes its time between getting the
/// new block and releasing the old one (`record::stamp_realloc_release`).
#[inline]
fn stamp_realloc_release() {
    let heap = thread::heap();
    if heap != thread::empty_heap() {
        // SAFETY: a non-empty thread heap is live and ours.
        record::stamp_realloc_release(unsafe { &*heap });
    }
}

/// Reallocation of a guarded block: always moves (to wherever `alloc`
/// puts it, guarded again only if the next sample says so).
///
/// # Safety
/// As [`realloc`], with `p` inside the guard pool.
unsafe fn realloc_guarded(p: *mut u8, new_size: usize, align: usize, old_size: usize) -> *mut u8 {
    let Some(usable) = crate::guard::usable_size(p) else {
        invalid_pointer("realloc", p, BadPointer::NotLive);
        return ptr::null_mut();
    };
    // SAFETY: forwarded from the caller.
    let q = unsafe { alloc(new_size, align) };
    if q.is_null() {
        return q;
    }
    let n = new_size.min(usable).min(old_size);
    // SAFETY: both blocks are live, distinct, and at least `n` bytes long.
    unsafe { ptr::copy_nonoverlapping(p, q, n) };
    stamp_realloc_release();
    crate::guard::free(thread::heap(), p, "realloc");
    q
}

/// The reallocation itself (see [`realloc`]).
///
/// # Safety
/// As [`realloc`], with `p` non-null.
unsafe fn realloc_block(p: *mut u8, new_size: usize, align: usize, old_size: usize) -> *mut u8 {
    if crate::guard::owns(p) {
        // SAFETY: forwarded from the caller.
        return unsafe { realloc_guarded(p, new_size, align, old_size) };
    }
    // An invalid pointer (reported) leaves the caller with a failed call.
    let Some(loc) = locate(p, "realloc") else {
        return ptr::null_mut();
    };
    if !is_in_use(&loc, p, "realloc") {
        return ptr::null_mut();
    }
    let heap = thread::heap();
    let counting = crate::stats::enabled() && heap != thread::empty_heap();
    if counting {
        // SAFETY: a non-empty thread heap is live and ours.
        unsafe { (*heap).stats.reallocs.add_one() };
    }
    let usable = if loc.kind == PageKind::Huge {
        // SAFETY: `locate` checked the huge segment.
        let Some(usable) = (unsafe { huge::usable_size(loc.segment, p, "realloc") }) else {
            return ptr::null_mut();
        };
        if new_size > LARGE_MAX && align <= MAX_CLASS_ALIGN {
            // SAFETY: `locate` checked the huge segment of block `p`.
            let q = unsafe { huge::resize(loc.segment, p, new_size) };
            if !q.is_null() {
                if counting {
                    let new_usable = huge_usable(q);
                    // SAFETY: as above.
                    unsafe { (*heap).stats.on_resize(usable, new_usable) };
                }
                return q;
            }
        }
        usable
    } else {
        // SAFETY: `locate` returned a live segment and an in-use page.
        let page = unsafe { (*loc.segment).page_of(loc.block) };
        let usable = loc.block as usize + page.block_size.get() - p as usize;
        if new_size <= usable && new_size >= usable / 2 {
            return p;
        }
        usable
    };
    // SAFETY: forwarded from the caller.
    let q = unsafe { alloc(new_size, align) };
    if q.is_null() {
        return q;
    }
    let n = new_size.min(usable).min(old_size);
    // SAFETY: both blocks are live, distinct, and at least `n` bytes long.
    unsafe { ptr::copy_nonoverlapping(p, q, n) };
    stamp_realloc_release();
    // SAFETY: `p` was validated above and is freed once.
    unsafe { free(p, "realloc") };
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `layout_fits` answers as the general rule does (the request,
    /// rounded, at most the block and at least half of it, the pointer
    /// aligned), for a page of every class up to 64 KiB, every size up to
    /// past twice the block and the common alignments: for alignments up
    /// to a word, through the interval the page keeps.
    #[test]
    fn layout_fits_answers_as_the_general_rule() {
        let general = |p: *mut u8, block: usize, size: usize, align: usize| {
            let r = rounded_request(size, align);
            (r <= block) & (2 * r as u128 >= block as u128) & (p as usize & (align - 1) == 0)
        };
        let p = 0x1000 as *mut u8;
        for cls in 0..size_class::CLASS_COUNT {
            let block = size_class::class_size(cls);
            if block > 64 * 1024 {
                break;
            }
            assert_eq!(block % WORD, 0, "class {cls}");
            // The page's fields only: its memory is never touched.
            let page = Page::empty();
            page.init(cls, block, p, 4 * block, false);
            // (A Rust layout is never larger than isize::MAX.)
            for size in (0..=2 * block + 1).chain([isize::MAX as usize - 8, isize::MAX as usize]) {
                for align in [1, 2, 4, 8, 16, 64] {
                    assert_eq!(
                        layout_fits(&page, p, size, align),
                        general(p, block, size, align),
                        "block {block}, size {size}, align {align}"
                    );
                }
            }
        }
    }
}
