//! Heaps: one per thread, owning segments and the pages in them, with a queue
//! of pages per size class. This file holds the allocation slow path, the
//! owner's side of freeing (full pages, retiring, releasing pages), and the
//! housekeeping that runs in the slow path.
//!
//! A heap is only ever touched by the thread that owns it, except for two
//! atomic entry points used by other threads: the pages' `thread_free` lists
//! and the heap's `delayed` list (see `page.rs`). Heaps are never freed: when
//! a thread exits its heap is collected and put into a pool (`thread.rs`),
//! from which a new thread adopts it whole, with the blocks still live in it.
//! Because heap memory is immortal, a remote thread may always push onto the
//! `delayed` list of the heap recorded in a segment, even if that heap's
//! thread has just exited.
//!
//! Invariants:
//! - a page in use is in exactly one list: its class queue (`IN_FULL` clear)
//!   or the full list (`IN_FULL` set, `free_limit == 0`, `NOTIFY` armed or
//!   consumed by a block now on `delayed`);
//! - for direct-table word sizes, `direct[w]` is the first page of the queue
//!   of the class serving `w`, or the static empty page when that queue is
//!   empty or the heap is instrumented;
//! - a segment is in `free_segs[kind]` iff it has an unused slot and is not
//!   large; it is in the purge list iff its `purge_mask` is non-zero.

use crate::os;
use crate::page::{self, Block, LANES, Lane, Page};
use crate::segment::{self, Segment, segment_of};
use crate::size_class::{
    CLASS_COUNT, DIRECT_COUNT, DIRECT_MAX, PageKind, class_first_wsize, class_kind, class_size,
};
use crate::stats::HeapStats;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// Slow-path calls between two rounds of periodic housekeeping.
const HOUSEKEEPING_EVERY: u32 = 128;

/// Number of page queues: one per class and lane.
const QUEUES: usize = CLASS_COUNT * LANES;
/// An empty range of queues for `Heap::retired`.
const NO_RETIRED: (usize, usize) = (usize::MAX, 0);

/// A queue's place in `Heap::retired`'s range: lanes one after another.
fn queue_index(cls: usize, lane: Lane) -> usize {
    lane as usize * CLASS_COUNT + cls
}

/// A doubly linked list of pages.
pub struct PageQueue {
    /// First page, or null.
    pub first: Cell<*mut Page>,
    /// Last page, or null.
    pub last: Cell<*mut Page>,
}

impl PageQueue {
    const fn new() -> Self {
        PageQueue {
            first: Cell::new(ptr::null_mut()),
            last: Cell::new(ptr::null_mut()),
        }
    }

    fn push_front(&self, page: &Page) {
        let p = page as *const Page as *mut Page;
        let first = self.first.get();
        page.prev.set(ptr::null_mut());
        page.next.set(first);
        if first.is_null() {
            self.last.set(p);
        } else {
            // SAFETY: queue members are live pages of the owning heap.
            unsafe { (*first).prev.set(p) };
        }
        self.first.set(p);
    }

    fn push_back(&self, page: &Page) {
        let p = page as *const Page as *mut Page;
        let last = self.last.get();
        page.next.set(ptr::null_mut());
        page.prev.set(last);
        if last.is_null() {
            self.first.set(p);
        } else {
            // SAFETY: queue members are live pages of the owning heap.
            unsafe { (*last).next.set(p) };
        }
        self.last.set(p);
    }

    fn remove(&self, page: &Page) {
        let prev = page.prev.get();
        let next = page.next.get();
        // SAFETY: neighbours in the queue are live pages of the owning heap.
        unsafe {
            if prev.is_null() {
                self.first.set(next);
            } else {
                (*prev).next.set(next);
            }
            if next.is_null() {
                self.last.set(prev);
            } else {
                (*next).prev.set(prev);
            }
        }
        page.next.set(ptr::null_mut());
        page.prev.set(ptr::null_mut());
    }
}

/// A thread's heap.
#[repr(C)]
pub struct Heap {
    /// Bytes left before the next sampled allocation in sampled mode, and a
    /// value too large to ever run out otherwise: the fast path subtracts
    /// every request from it and takes the slow path when it would go
    /// negative (the "one predictable branch" of unsampled modes).
    pub sample_left: Cell<i64>,
    /// Allocations that reached the sampling path, for `guard_every`.
    pub guard_count: Cell<u64>,
    /// The owning thread's stack bounds for guarded allocations' stacks,
    /// and the OS thread id they were found for (a heap outlives its
    /// thread): `[lo, hi, tid]`.
    pub guard_stack: Cell<[usize; 3]>,
    /// State of the sampling random generator (xorshift).
    pub rng: Cell<u64>,
    /// Page serving each word size up to [`DIRECT_MAX`]: the fast path's only
    /// lookup. Points at the static empty page when nothing is available.
    pub direct: [Cell<*mut Page>; DIRECT_COUNT],
    /// Pages with (possibly) free blocks, per size class.
    pub queues: [PageQueue; CLASS_COUNT],
    /// Pages of the other lanes, per size class: sampled allocations
    /// (sampled recording: every free into them is an event, found without
    /// lookup), C++ `new` and `new[]` (see [`Lane`]).
    pub lanes: [[PageQueue; CLASS_COUNT]; LANES - 1],
    /// Pages with no free block.
    pub full: PageQueue,
    /// Blocks freed by other threads into full pages (lock-free stack).
    pub delayed: AtomicPtr<Block>,
    /// Small and medium segments with unused page slots.
    free_segs: [Cell<*mut Segment>; 2],
    /// Segments with pages waiting to be purged, oldest first.
    purge_first: Cell<*mut Segment>,
    purge_last: Cell<*mut Segment>,
    /// Slow-path calls so far (wrapping).
    generic_count: Cell<u32>,
    /// The instrumentation generation this heap was set up for (see
    /// `thread::generation`): behind the global one, the heap re-applies
    /// the settings at its next slow path.
    generation: Cell<u32>,
    /// Number of periodic housekeeping rounds so far (wrapping): the clock of
    /// retained empty pages.
    epoch: Cell<u32>,
    /// The queues (by [`queue_index`]) whose head page may be a kept empty
    /// page, as a range `lo..=hi` (empty when `lo > hi`): where a round of
    /// [`Heap::release_retired`] looks, instead of every queue
    /// (`CLASS_COUNT * LANES` of them), which mattered once every allocation
    /// of an instrumented heap took the slow path and a round came every
    /// 128 allocations.
    retired: Cell<(usize, usize)>,
    /// Number of segments owned.
    pub segment_count: Cell<usize>,
    /// When set, every allocation and free takes the slow path, which records
    /// it; the direct table stays empty.
    pub instrumented: Cell<bool>,
    /// Statistics counters.
    pub stats: HeapStats,
    /// The owning thread's recording state.
    pub rec: crate::record::ThreadRecorder,
    /// Next heap in the registry of all heaps (set once, before publication).
    pub next_all: AtomicPtr<Heap>,
    /// Next heap in the pool while no thread owns this one.
    pub pool_next: Cell<*mut Heap>,
}

impl Heap {
    /// A heap with empty queues whose direct table points at `empty_page`.
    pub const fn new(empty_page: *mut Page) -> Heap {
        let mut direct = [const { Cell::new(ptr::null_mut()) }; DIRECT_COUNT];
        let mut i = 0;
        while i < DIRECT_COUNT {
            direct[i] = Cell::new(empty_page);
            i += 1;
        }
        Heap {
            sample_left: Cell::new(i64::MAX),
            guard_count: Cell::new(0),
            guard_stack: Cell::new([0; 3]),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            direct,
            queues: [const { PageQueue::new() }; CLASS_COUNT],
            lanes: [const { [const { PageQueue::new() }; CLASS_COUNT] }; LANES - 1],
            full: PageQueue::new(),
            delayed: AtomicPtr::new(ptr::null_mut()),
            free_segs: [const { Cell::new(ptr::null_mut()) }; 2],
            purge_first: Cell::new(ptr::null_mut()),
            purge_last: Cell::new(ptr::null_mut()),
            generic_count: Cell::new(0),
            generation: Cell::new(0),
            epoch: Cell::new(0),
            retired: Cell::new(NO_RETIRED),
            segment_count: Cell::new(0),
            instrumented: Cell::new(false),
            stats: HeapStats::new(),
            rec: crate::record::ThreadRecorder::new(),
            next_all: AtomicPtr::new(ptr::null_mut()),
            pool_next: Cell::new(ptr::null_mut()),
        }
    }

    fn as_ptr(&self) -> *mut Heap {
        self as *const Heap as *mut Heap
    }

    // ------------------------------------------------------------------
    // Direct table
    // ------------------------------------------------------------------

    /// Points the direct-table entries of class `cls` at its queue head.
    fn update_direct(&self, cls: usize) {
        if class_size(cls) > DIRECT_MAX || self.instrumented.get() {
            return;
        }
        let first = self.queues[cls].first.get();
        let target = if first.is_null() {
            crate::thread::empty_page()
        } else {
            first
        };
        let end = class_size(cls) / crate::size_class::WORD;
        for w in class_first_wsize(cls)..=end {
            self.direct[w].set(target);
        }
    }

    /// Switches instrumentation on or off and rebuilds the direct table.
    pub fn set_instrumented(&self, on: bool) {
        self.instrumented.set(on);
        for w in 0..DIRECT_COUNT {
            self.direct[w].set(crate::thread::empty_page());
        }
        if !on {
            let mut cls = crate::size_class::MIN_CLASS;
            while cls < CLASS_COUNT && class_size(cls) <= DIRECT_MAX {
                self.update_direct(cls);
                cls += 1;
            }
        }
    }

    // ------------------------------------------------------------------
    // Allocation slow path
    // ------------------------------------------------------------------

    /// The queue of class `cls` in `lane`.
    #[inline]
    pub fn queue(&self, cls: usize, lane: Lane) -> &PageQueue {
        match lane {
            Lane::Malloc => &self.queues[cls],
            other => &self.lanes[other as usize - 1][cls],
        }
    }

    /// The queue a page in use belongs to (when not in the full list).
    #[inline]
    fn queue_of(&self, page: &Page) -> &PageQueue {
        self.queue(page.class(), page.lane())
    }

    /// Allocates a block of class `cls` from pages of `lane` (sampled pages
    /// for a sampled block); null when the OS refuses memory.
    pub fn alloc_lane(&self, cls: usize, zero: bool, lane: Lane) -> *mut u8 {
        let page = self.find_page(cls, lane);
        if page.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: find_page returns a live page of this heap with a free block.
        let page = unsafe { &*page };
        let block = page.free.get();
        debug_assert!(!block.is_null());
        // SAFETY: `block` is a free block of the page; its link word is valid.
        page.free.set(unsafe { (*block).next });
        page.used.set(page.used.get() + 1);
        // SAFETY: `block` was just taken off the free list.
        unsafe { page::untag(block) };
        if zero {
            zero_block(page, block, page.block_size.get());
        }
        block as *mut u8
    }

    /// Finds a page of class `cls` with a free block, moving exhausted pages
    /// to the full list on the way, or sets up a fresh one.
    fn find_page(&self, cls: usize, lane: Lane) -> *mut Page {
        let queue = self.queue(cls, lane);
        let mut moved = false;
        let mut page = queue.first.get();
        while !page.is_null() {
            // SAFETY: queue members are live pages of this heap.
            let p = unsafe { &*page };
            if p.collect() || p.extend() {
                if moved && lane == Lane::Malloc {
                    self.update_direct(cls);
                }
                return page;
            }
            if !p.arm_notify() {
                // Remote frees arrived since `collect`: look again.
                continue;
            }
            let next = p.next.get();
            self.page_to_full(p);
            moved = true;
            page = next;
        }
        self.fresh_page(cls, lane)
    }

    /// Moves an exhausted page (notification armed) to the full list.
    fn page_to_full(&self, page: &Page) {
        self.queue_of(page).remove(page);
        page.set_flag(page::IN_FULL, true);
        page.close_fast_free();
        self.full.push_back(page);
    }

    /// Moves a page from the full list back to the end of its class queue.
    fn page_unfull(&self, page: &Page) {
        debug_assert!(page.has(page::IN_FULL));
        self.full.remove(page);
        page.set_flag(page::IN_FULL, false);
        page.open_fast_free();
        page.disarm_notify();
        let cls = page.class();
        let queue = self.queue_of(page);
        let was_empty = queue.first.get().is_null();
        queue.push_back(page);
        if was_empty && page.lane() == Lane::Malloc {
            self.update_direct(cls);
        }
    }

    /// Sets up a fresh page of class `cls` at the head of its (empty) queue.
    fn fresh_page(&self, cls: usize, lane: Lane) -> *mut Page {
        let kind = class_kind(cls);
        let seg = match kind {
            PageKind::Small | PageKind::Medium => {
                let head = self.free_segs[kind as usize].get();
                if head.is_null() {
                    let seg = self.new_segment(kind);
                    if seg.is_null() {
                        return ptr::null_mut();
                    }
                    self.free_list_push(seg);
                    seg
                } else {
                    head
                }
            }
            _ => self.new_segment(kind),
        };
        if seg.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: the segment is live and owned by this heap.
        let s = unsafe { &*seg };
        let Some((page, zero)) = s.take_page() else {
            debug_assert!(false, "segment in the free list without a free slot");
            return ptr::null_mut();
        };
        if s.free_mask.get() == 0 && kind != PageKind::Large {
            self.free_list_remove(seg);
        }
        let (start, area) = s.page_area(page.slot.get() as usize);
        page.init(cls, class_size(cls), start, area, zero);
        page.mark_lane(lane);
        page.extend();
        self.queue(cls, lane).push_front(page);
        if lane == Lane::Malloc {
            self.update_direct(cls);
        }
        page as *const Page as *mut Page
    }

    /// Gets a new segment for this heap, reclaiming memory of exited threads
    /// first when the cache is empty.
    fn new_segment(&self, kind: PageKind) -> *mut Segment {
        crate::thread::reclaim_abandoned();
        let seg = segment::alloc_segment(kind, self.as_ptr());
        if !seg.is_null() {
            self.segment_count.set(self.segment_count.get() + 1);
        }
        seg
    }

    fn free_list_push(&self, seg: *mut Segment) {
        // SAFETY: the segment is live and owned by this heap.
        let s = unsafe { &*seg };
        let list = &self.free_segs[s.kind.get() as usize];
        let head = list.get();
        s.prev.set(ptr::null_mut());
        s.next.set(head);
        if !head.is_null() {
            // SAFETY: list members are live segments of this heap.
            unsafe { (*head).prev.set(seg) };
        }
        list.set(seg);
        s.flags.set(s.flags.get() | segment::IN_FREE_LIST);
    }

    fn free_list_remove(&self, seg: *mut Segment) {
        // SAFETY: the segment is live and owned by this heap.
        let s = unsafe { &*seg };
        if s.flags.get() & segment::IN_FREE_LIST == 0 {
            return;
        }
        let list = &self.free_segs[s.kind.get() as usize];
        let (prev, next) = (s.prev.get(), s.next.get());
        // SAFETY: list neighbours are live segments of this heap.
        unsafe {
            if prev.is_null() {
                list.set(next);
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
        }
        s.flags.set(s.flags.get() & !segment::IN_FREE_LIST);
    }

    // ------------------------------------------------------------------
    // The owner's side of free
    // ------------------------------------------------------------------

    /// Frees `block` of `page`, which this heap owns, when the fast path could
    /// not: the page is in the full list or the block is its last one.
    /// `block` must be a block start of the page; false, with nothing done,
    /// when it is not in use (a double free, for the caller to report).
    pub fn free_local(&self, page: &Page, block: *mut u8) -> bool {
        // SAFETY: a carved block start of a page in use (caller).
        if unsafe { page::is_freed(page, block as *const Block) } {
            return false;
        }
        self.release_block(page, block);
        true
    }

    /// Puts `block`, taken back from the program, on `page`'s local list.
    fn release_block(&self, page: &Page, block: *mut u8) {
        if page.has(page::IN_FULL) {
            self.page_unfull(page);
        }
        let b = block as *mut Block;
        // SAFETY: the block belongs to the page and is being freed once; its
        // first word becomes the free-list link, its second its tag.
        unsafe {
            (*b).next = page.local_free.get();
            page::tag_freed(page, b);
        }
        page.local_free.set(b);
        let used = page.used.get() - 1;
        page.used.set(used);
        if used == 0 {
            self.page_retire(page);
        }
    }

    /// An empty page: keep it if it is the only page of its class (a loop
    /// that frees its last block will allocate again soon), else release it.
    /// A kept page's queue is noted in `retired`: periodic housekeeping
    /// looks there and releases queue heads it finds empty two rounds in a
    /// row.
    pub fn page_retire(&self, page: &Page) {
        if core::ptr::eq(self.queue_of(page).first.get(), page) && page.next.get().is_null() {
            self.note_retired(queue_index(page.class(), page.lane()));
            return;
        }
        self.page_free(page);
    }

    /// Releases an empty page back to its segment.
    fn page_free(&self, page: &Page) {
        debug_assert!(page.used.get() == 0);
        let cls = page.class();
        if page.has(page::IN_FULL) {
            self.full.remove(page);
        } else {
            let queue = self.queue_of(page);
            let was_first = core::ptr::eq(queue.first.get(), page);
            queue.remove(page);
            if was_first && page.lane() == Lane::Malloc {
                self.update_direct(cls);
            }
        }
        let seg = segment_of(page as *const Page as *const u8);
        // SAFETY: the page's segment is live and owned by this heap.
        let s = unsafe { &*seg };
        let had_free_slot = s.free_mask.get() != 0;
        let now = os::now_ms();
        let empty = s.release_page(page, now);
        if empty {
            self.free_list_remove(seg);
            self.purge_list_remove(seg);
            self.segment_count.set(self.segment_count.get() - 1);
            // SAFETY: the segment has no page in use and is no longer in any
            // of this heap's lists.
            unsafe { segment::free_segment(seg, now) };
            return;
        }
        if !had_free_slot {
            self.free_list_push(seg);
        }
        self.purge_list_add(seg);
    }

    fn purge_list_add(&self, seg: *mut Segment) {
        // SAFETY: the segment is live and owned by this heap.
        let s = unsafe { &*seg };
        if s.flags.get() & segment::IN_PURGE_LIST != 0 {
            return;
        }
        let last = self.purge_last.get();
        s.purge_prev.set(last);
        s.purge_next.set(ptr::null_mut());
        if last.is_null() {
            self.purge_first.set(seg);
        } else {
            // SAFETY: list members are live segments of this heap.
            unsafe { (*last).purge_next.set(seg) };
        }
        self.purge_last.set(seg);
        s.flags.set(s.flags.get() | segment::IN_PURGE_LIST);
    }

    fn purge_list_remove(&self, seg: *mut Segment) {
        // SAFETY: the segment is live and owned by this heap.
        let s = unsafe { &*seg };
        if s.flags.get() & segment::IN_PURGE_LIST == 0 {
            return;
        }
        let (prev, next) = (s.purge_prev.get(), s.purge_next.get());
        // SAFETY: list neighbours are live segments of this heap.
        unsafe {
            if prev.is_null() {
                self.purge_first.set(next);
            } else {
                (*prev).purge_next.set(next);
            }
            if next.is_null() {
                self.purge_last.set(prev);
            } else {
                (*next).purge_prev.set(prev);
            }
        }
        s.flags.set(s.flags.get() & !segment::IN_PURGE_LIST);
    }

    /// Frees every block other threads queued on `delayed` (frees into pages
    /// that were full).
    pub fn drain_delayed(&self) {
        if self.delayed.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut block = self.delayed.swap(ptr::null_mut(), Ordering::Acquire);
        while !block.is_null() {
            // SAFETY: blocks on `delayed` are in-use blocks of pages of this
            // heap, pushed once by the freeing thread with a release CAS.
            let next = unsafe { (*block).next };
            let seg = segment_of(block as *const u8);
            // SAFETY: the segment of a delayed block is live and ours.
            let page = unsafe { (*seg).page_of(block as *const u8) };
            self.release_block(page, block as *mut u8);
            block = next;
        }
    }

    // ------------------------------------------------------------------
    // Housekeeping
    // ------------------------------------------------------------------

    /// Runs at the start of every slow-path allocation: cheap checks always,
    /// the rest every [`HOUSEKEEPING_EVERY`] calls.
    pub fn housekeeping(&self) {
        let generation = crate::thread::generation();
        if generation != self.generation.get() {
            self.generation.set(generation);
            crate::thread::settings_changed(self);
        }
        self.drain_delayed();
        let count = self.generic_count.get().wrapping_add(1);
        self.generic_count.set(count);
        if count % HOUSEKEEPING_EVERY == 0 {
            self.periodic(false);
        }
    }

    /// Releases retained empty pages whose time is up, purges pages and
    /// cached memory whose delay has passed, and collects an abandoned heap
    /// when one is due. With `force`, releases and purges everything now.
    pub fn periodic(&self, force: bool) {
        self.release_retired(force);
        let now = if force { u64::MAX / 2 } else { os::now_ms() };
        self.purge_expired(now);
        // Reclaiming may release segments into the cache: before purging it.
        if force {
            crate::thread::reclaim_all_abandoned();
        } else {
            crate::thread::reclaim_abandoned_if_due(now);
        }
        segment::purge_cache(now);
        crate::huge::purge_cache(now);
        self.stats.flush();
    }

    /// Is the queue of `cls` and `lane` in the range that the next round of
    /// housekeeping looks at? (For the heap validator.)
    pub fn may_hold_retired(&self, cls: usize, lane: Lane) -> bool {
        let (lo, hi) = self.retired.get();
        (lo..=hi).contains(&queue_index(cls, lane))
    }

    /// Widens the range of queues whose head may be a kept empty page.
    fn note_retired(&self, index: usize) {
        let (lo, hi) = self.retired.get();
        self.retired.set((lo.min(index), hi.max(index)));
    }

    /// Releases retained empty pages: queue heads found empty in this round
    /// and the previous one (all empty heads with `force`). Looks in the
    /// queues noted by `page_retire` (every queue with `force`), and notes
    /// again those whose head stays for the next round.
    fn release_retired(&self, force: bool) {
        let epoch = self.epoch.get().wrapping_add(1);
        self.epoch.set(epoch);
        let (lo, hi) = if force {
            (0, QUEUES - 1)
        } else {
            self.retired.get()
        };
        self.retired.set(NO_RETIRED);
        for index in lo..=hi {
            let (cls, lane) = (index % CLASS_COUNT, Lane::ALL[index / CLASS_COUNT]);
            let first = self.queue(cls, lane).first.get();
            if first.is_null() {
                continue;
            }
            // SAFETY: queue members are live pages of this heap.
            let page = unsafe { &*first };
            if page.used.get() != 0 || page.thread_free.load(Ordering::Relaxed) != 0 {
                continue;
            }
            if force || page.retire_tick.get() == epoch.wrapping_sub(1) {
                self.page_free(page);
            } else {
                page.retire_tick.set(epoch);
                self.note_retired(index);
            }
        }
    }

    /// Purges the unused pages of segments whose purge time is at or before
    /// `now`.
    fn purge_expired(&self, now: u64) {
        loop {
            let seg = self.purge_first.get();
            if seg.is_null() {
                break;
            }
            // SAFETY: list members are live segments of this heap.
            let s = unsafe { &*seg };
            if s.purge_at.get() > now {
                break;
            }
            s.purge_pending();
            self.purge_list_remove(seg);
        }
    }

    /// Collects everything that can be collected: delayed frees, remote frees
    /// in every queued page, empty pages (released, and purged once their
    /// delay has passed, or at once with `force`). Used when a thread exits
    /// and when reclaiming an abandoned heap. Returns true when the heap owns
    /// no segment any more.
    pub fn collect_all(&self, force: bool) -> bool {
        self.drain_delayed();
        for (cls, lane) in (0..CLASS_COUNT).flat_map(|c| Lane::ALL.map(|l| (c, l))) {
            let mut page = self.queue(cls, lane).first.get();
            while !page.is_null() {
                // SAFETY: queue members are live pages of this heap.
                let p = unsafe { &*page };
                let next = p.next.get();
                p.collect_thread_free();
                if p.used.get() == 0 {
                    self.page_free(p);
                }
                page = next;
            }
        }
        self.purge_expired(if force { u64::MAX / 2 } else { os::now_ms() });
        self.stats.flush();
        self.segment_count.get() == 0
    }
}

/// Zeroes a freshly popped block of `page` for `calloc`: only its link word
/// when the page's free list is known to be zero otherwise.
#[inline]
pub fn zero_block(page: &Page, block: *mut Block, size: usize) {
    if page.has(page::FREE_IS_ZERO) {
        // SAFETY: the block was just taken off the free list; it is at least
        // one word long and ours to write.
        unsafe { (*block).next = ptr::null_mut() };
    } else {
        // SAFETY: the block is ours and at least `size` bytes long.
        unsafe { ptr::write_bytes(block as *mut u8, 0, size) };
    }
}
