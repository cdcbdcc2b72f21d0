//! A whole-heap validator: walks the calling thread's heap and checks every
//! invariant stated on the data structures (`page.rs`, `heap.rs`,
//! `segment.rs`). Tests call it after operations, in the manner of talc's
//! `scan_for_errors` and rlsf's shadow checks.
//!
//! It never allocates (fixed buffers on the stack), so it can run while the
//! allocator under test is the global allocator. Remote-free lists are read
//! as they are, so the result is exact only when no other thread is freeing
//! into this heap at the same time.

use crate::heap::Heap;
use crate::page::{self, Block, Page};
use crate::segmap;
use crate::segment::{Segment, segment_of};
use crate::size_class::{CLASS_COUNT, DIRECT_COUNT, DIRECT_MAX, WORD, class_of, class_size};
use crate::thread;
use core::fmt;
use core::sync::atomic::Ordering;

/// What a successful validation saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapReport {
    /// Pages in class queues.
    pub queued_pages: usize,
    /// Pages in the full list.
    pub full_pages: usize,
    /// Segments owning those pages.
    pub segments: usize,
    /// Blocks handed out and not freed (including remote frees not yet
    /// collected).
    pub used_blocks: usize,
    /// Blocks on free lists.
    pub free_blocks: usize,
}

/// A broken invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub what: &'static str,
    /// The page, segment or block concerned.
    pub address: usize,
    /// A number that explains it (a count, a class, an offset).
    pub detail: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap invariant broken: {} (at {:#x}, detail {})",
            self.what, self.address, self.detail
        )
    }
}

fn fail<T>(what: &'static str, address: usize, detail: usize) -> Result<T, Violation> {
    Err(Violation {
        what,
        address,
        detail,
    })
}

/// The most blocks a page can hold (64 KiB of 8-byte blocks).
const MAX_BLOCKS: usize = 8192;
/// Segments tracked for the per-segment page count check.
const MAX_SEGMENTS: usize = 512;

struct SegmentTally {
    segments: [(usize, u32); MAX_SEGMENTS],
    len: usize,
    overflow: bool,
}

impl SegmentTally {
    fn add(&mut self, seg: usize) {
        for entry in &mut self.segments[..self.len] {
            if entry.0 == seg {
                entry.1 += 1;
                return;
            }
        }
        if self.len == MAX_SEGMENTS {
            self.overflow = true;
            return;
        }
        self.segments[self.len] = (seg, 1);
        self.len += 1;
    }
}

/// Validates the calling thread's heap. A thread that never allocated has an
/// empty heap, which is trivially valid.
pub fn validate_current_heap() -> Result<HeapReport, Violation> {
    let heap = thread::heap();
    if heap == thread::empty_heap() {
        return Ok(HeapReport::default());
    }
    // SAFETY: the calling thread's heap is live and only this thread mutates
    // it, and it is not mutating it while validating.
    validate_heap(unsafe { &*heap })
}

fn validate_heap(heap: &Heap) -> Result<HeapReport, Violation> {
    let mut report = HeapReport::default();
    let mut tally = SegmentTally {
        segments: [(0, 0); MAX_SEGMENTS],
        len: 0,
        overflow: false,
    };
    let heap_ptr = heap as *const Heap as *mut Heap;

    for (cls, lane) in (0..CLASS_COUNT).flat_map(|c| page::Lane::ALL.map(|l| (c, l))) {
        let queue = heap.queue(cls, lane);
        let mut prev: *mut Page = core::ptr::null_mut();
        let mut page = queue.first.get();
        while !page.is_null() {
            // SAFETY: queue members are live pages of this heap.
            let p = unsafe { &*page };
            if p.prev.get() != prev {
                return fail("queue back link", page as usize, cls);
            }
            if p.class() != cls {
                return fail("page in the queue of another class", page as usize, cls);
            }
            if p.has(page::IN_FULL) {
                return fail("queued page marked full", page as usize, cls);
            }
            if p.lane() != lane {
                return fail("page in the queue of another lane", page as usize, cls);
            }
            // Only the page's own family frees fast, up to the carved blocks;
            // sampled pages never.
            let open = p.capacity.get() as usize * p.block_size.get();
            let expect = |family: page::Family| {
                if lane != page::Lane::Sampled && family.lane() == lane {
                    open
                } else {
                    0
                }
            };
            for family in [
                page::Family::Free,
                page::Family::Delete,
                page::Family::DeleteArray,
            ] {
                if p.limit(family) as usize != expect(family) {
                    return fail("queued page with wrong fast-free limit", page as usize, cls);
                }
            }
            check_page(heap_ptr, p, &mut report)?;
            tally.add(segment_of(page as *const u8) as usize);
            report.queued_pages += 1;
            prev = page;
            page = p.next.get();
        }
        if queue.last.get() != prev {
            return fail("queue last pointer", prev as usize, cls);
        }
        // A kept empty head must be where housekeeping will look for it.
        let first = queue.first.get();
        if !first.is_null() {
            // SAFETY: a queue member, live (walked above).
            let head = unsafe { &*first };
            if head.used.get() == 0
                && head.thread_free.load(Ordering::Relaxed) == 0
                && !heap.may_hold_retired(cls, lane)
            {
                return fail(
                    "empty queue head outside the retired range",
                    first as usize,
                    cls,
                );
            }
        }
    }

    let mut prev: *mut Page = core::ptr::null_mut();
    let mut page = heap.full.first.get();
    while !page.is_null() {
        // SAFETY: full-list members are live pages of this heap.
        let p = unsafe { &*page };
        if p.prev.get() != prev {
            return fail("full list back link", page as usize, 0);
        }
        if !p.has(page::IN_FULL)
            || p.limit(page::Family::Free) != 0
            || p.limit(page::Family::Delete) != 0
            || p.limit(page::Family::DeleteArray) != 0
        {
            return fail("full-list page not marked full", page as usize, 0);
        }
        if !p.free.get().is_null() || !p.local_free.get().is_null() {
            return fail("full-list page with free blocks", page as usize, 0);
        }
        check_page(heap_ptr, p, &mut report)?;
        tally.add(segment_of(page as *const u8) as usize);
        report.full_pages += 1;
        prev = page;
        page = p.next.get();
    }

    for w in 0..DIRECT_COUNT {
        let got = heap.direct[w].get();
        let want = if heap.instrumented.get() {
            thread::empty_page()
        } else {
            let cls = class_of(w * WORD);
            debug_assert!(class_size(cls) <= DIRECT_MAX);
            let first = heap.queues[cls].first.get();
            if first.is_null() {
                thread::empty_page()
            } else {
                first
            }
        };
        if got != want {
            return fail("direct table entry not at its queue head", got as usize, w);
        }
    }

    for &(seg, pages) in &tally.segments[..tally.len] {
        if !segmap::contains(seg) {
            return fail(
                "segment of a live page missing from the segment map",
                seg,
                0,
            );
        }
        // SAFETY: the segment map says the segment is live.
        let s = unsafe { &*(seg as *const Segment) };
        if s.heap.load(Ordering::Relaxed) != heap_ptr {
            return fail("segment owned by another heap", seg, 0);
        }
        let count = s.page_count.get();
        let valid = if count == 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        let in_use = (!s.free_mask.get() & valid).count_ones();
        if in_use != s.used_pages.get() || in_use != pages {
            return fail("segment page count", seg, in_use as usize);
        }
        if s.purge_mask.get() & !s.free_mask.get() != 0 {
            return fail("purge pending on a page in use", seg, 0);
        }
    }
    report.segments = tally.len;
    if !tally.overflow && tally.len != heap.segment_count.get() {
        return fail("heap segment count", heap_ptr as usize, tally.len);
    }
    Ok(report)
}

/// Checks one page's lists and accounting.
fn check_page(heap: *mut Heap, p: &Page, report: &mut HeapReport) -> Result<(), Violation> {
    let addr = p as *const Page as usize;
    if !p.in_use() {
        return fail("unused page in a list", addr, 0);
    }
    let seg = segment_of(addr as *const u8);
    // SAFETY: pages live inside their segment's header.
    if unsafe { (*seg).heap.load(Ordering::Relaxed) } != heap {
        return fail("page of a segment this heap does not own", addr, 0);
    }
    let capacity = p.capacity.get() as usize;
    if capacity > p.reserved.get() as usize || capacity > MAX_BLOCKS {
        return fail("capacity above reserved", addr, capacity);
    }
    let mut seen = [0u64; MAX_BLOCKS / 64];
    let free = walk(p, p.free.get(), &mut seen, capacity)?;
    let local = walk(p, p.local_free.get(), &mut seen, capacity)?;
    let tf = p.thread_free.load(Ordering::Acquire) & !page::NOTIFY;
    let remote = walk(p, tf as *mut Block, &mut seen, capacity)?;
    let used = p.used.get() as usize;
    if remote > used || used + free + local != capacity {
        return fail(
            "page accounting (used + free + local != capacity)",
            addr,
            used,
        );
    }
    report.used_blocks += used - remote;
    report.free_blocks += free + local + remote;
    Ok(())
}

/// Walks a free list, checking each block and marking it in `seen`.
fn walk(
    p: &Page,
    mut b: *mut Block,
    seen: &mut [u64],
    capacity: usize,
) -> Result<usize, Violation> {
    let start = p.block_start.get() as usize;
    let size = p.block_size.get();
    let mut n = 0;
    while !b.is_null() {
        let off = (b as usize).wrapping_sub(start);
        if off % size != 0 || off / size >= capacity {
            return fail(
                "free-list entry outside the page's carved blocks",
                b as usize,
                off,
            );
        }
        let idx = off / size;
        if seen[idx / 64] & (1 << (idx % 64)) != 0 {
            return fail(
                "block on free lists twice (cycle or double free)",
                b as usize,
                idx,
            );
        }
        seen[idx / 64] |= 1 << (idx % 64);
        // SAFETY: `b` is a carved block of this page (checked above).
        if !unsafe { page::is_freed(p, b) } {
            return fail("free block without its freed tag", b as usize, idx);
        }
        n += 1;
        // SAFETY: `b` is a carved block of this page (checked above); free
        // blocks hold a valid link word.
        b = unsafe { (*b).next };
    }
    Ok(n)
}
