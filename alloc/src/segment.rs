//! Segments: 4 MiB-aligned chunks of OS memory, each divided into pages of one
//! kind and owned by one heap.
//!
//! Layout of a segment (all kinds):
//!
//! ```text
//!  segment start (4 MiB aligned)
//!  | header: Segment fields + Page metadata for every slot | page 0 blocks | page 1 ... |
//!  |<------------- HEADER_SIZE (8 KiB) ------------------->|
//! ```
//!
//! Because segments are aligned to their size, any block pointer finds its
//! segment header by masking the low 22 bits, and its page by shifting the
//! offset by the segment's page shift: no lookup table, no block header.
//! Small segments hold 64 pages of 64 KiB, medium segments 8 pages of 512 KiB,
//! large segments one page. Huge blocks (see `huge.rs`) use the same header in
//! a mapping sized to the block.
//!
//! Invariants:
//! - the segment map bit of a segment is set iff the segment is in use (owned
//!   by a heap, or holding a huge block); cached segments are not in the map;
//! - `free_mask` has bit `i` set iff page slot `i` is unused, and
//!   `used_pages == page_count - popcount(free_mask)`;
//! - `purge_mask` is a subset of `free_mask`: unused slots whose memory is
//!   dirty and due to be purged; `zero_mask` marks slots known to read as zero.
//!
//! Empty segments go to a small global cache; memory of unused pages and cached
//! segments is returned to the OS (`MADV_DONTNEED`) after [`PURGE_DELAY_MS`],
//! so a workload that frees and reallocates does not pay page faults, while an
//! idle one gives its memory back.

use crate::heap::Heap;
use crate::lock::SpinLock;
use crate::os;
use crate::page::Page;
use crate::segmap;
use crate::size_class::PageKind;
use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// log2 of the segment size.
pub const SEGMENT_SHIFT: u32 = 22;
/// Size and alignment of a segment.
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// Mask of the offset inside a segment.
pub const SEGMENT_MASK: usize = SEGMENT_SIZE - 1;
/// Bytes at the start of each segment reserved for its header; the first
/// page's blocks start here, which keeps them aligned to 8 KiB.
pub const HEADER_SIZE: usize = 8 * 1024;
/// Page slots in a small segment, the most of any kind.
pub const MAX_PAGES: usize = 64;
/// Delay before the memory of an unused page or cached segment is returned to
/// the OS.
pub const PURGE_DELAY_MS: u64 = 10;
/// Empty segments kept for reuse before they are unmapped.
const CACHE_SLOTS: usize = 16;

const _: () = assert!(core::mem::size_of::<Segment>() <= HEADER_SIZE);

/// `flags`: the segment is in its heap's list of segments with unused slots.
pub const IN_FREE_LIST: u8 = 1;
/// `flags`: the segment is in its heap's purge list.
pub const IN_PURGE_LIST: u8 = 2;
/// `flags`: a huge segment holding a sampled block (sampled recording).
pub const SAMPLED: u8 = 4;
/// `flags`: a huge segment holding a block from C++ `operator new`.
pub const NEW: u8 = 8;
/// `flags`: a huge segment holding a block from C++ `operator new[]`.
pub const NEW_ARRAY: u8 = 16;

/// A segment header. Fields other than `heap` are written only by the owning
/// heap (or by whoever holds the segment exclusively: the cache, the huge
/// block allocator), and read by other threads only for in-use pages.
#[repr(C)]
pub struct Segment {
    /// The owning heap; [`HUGE_OWNER`] for huge segments. Never null while the
    /// segment is live. Read by any freeing thread.
    pub heap: AtomicPtr<Heap>,
    /// log2 of the page size of this segment.
    pub page_shift: Cell<u32>,
    /// Kind of pages in the segment.
    pub kind: Cell<PageKind>,
    /// [`IN_FREE_LIST`], [`IN_PURGE_LIST`].
    pub flags: Cell<u8>,
    /// Number of page slots.
    pub page_count: Cell<u32>,
    /// Number of slots in use.
    pub used_pages: Cell<u32>,
    /// Bit `i` set iff slot `i` is unused.
    pub free_mask: Cell<u64>,
    /// Bit `i` set iff slot `i`'s memory is known to read as zero.
    pub zero_mask: Cell<u64>,
    /// Bit `i` set iff slot `i` is unused and dirty, to be purged.
    pub purge_mask: Cell<u64>,
    /// Time (ms) at which pending purges are due.
    pub purge_at: Cell<u64>,
    /// Bytes mapped from the segment start.
    pub size: Cell<usize>,
    /// Links in the owning heap's list of segments with unused slots.
    pub next: Cell<*mut Segment>,
    /// See `next`.
    pub prev: Cell<*mut Segment>,
    /// Links in the owning heap's purge list.
    pub purge_next: Cell<*mut Segment>,
    /// See `purge_next`.
    pub purge_prev: Cell<*mut Segment>,
    /// Page metadata, one per slot (only `page_count` are meaningful).
    pub pages: [Page; MAX_PAGES],
}

/// The segment that contains (or would contain) `p`.
#[inline(always)]
pub fn segment_of(p: *const u8) -> *mut Segment {
    (p as usize & !SEGMENT_MASK) as *mut Segment
}

fn shape(kind: PageKind) -> (u32, u32) {
    match kind {
        PageKind::Small => (16, 64),
        PageKind::Medium => (19, 8),
        PageKind::Large | PageKind::Huge => (SEGMENT_SHIFT, 1),
    }
}

impl Segment {
    /// The page metadata for a pointer inside this segment's first 4 MiB.
    #[inline(always)]
    pub fn page_of(&self, p: *const u8) -> &Page {
        let idx = (p as usize - self as *const Segment as usize) >> self.page_shift.get();
        debug_assert!(idx < self.page_count.get() as usize);
        // SAFETY: `p` lies in this segment, so its offset is below
        // SEGMENT_SIZE and, shifted by the page shift, below page_count <= 64.
        unsafe { self.pages.get_unchecked(idx) }
    }

    /// Start and size of the block area of slot `slot`.
    pub fn page_area(&self, slot: usize) -> (*mut u8, usize) {
        let base = self as *const Segment as *mut u8;
        let shift = self.page_shift.get();
        let mut start = slot << shift;
        let end = start + (1 << shift);
        if start < HEADER_SIZE {
            start = HEADER_SIZE;
        }
        (base.wrapping_add(start), end - start)
    }

    /// Initialises the header of a segment that is about to be used for pages
    /// of `kind` by `heap`. `zero` tells whether the whole segment reads as
    /// zero (fresh from the OS or purged).
    fn init(&self, kind: PageKind, heap: *mut Heap, zero: bool, size: usize) {
        let (shift, count) = shape(kind);
        self.heap.store(heap, Ordering::Relaxed);
        self.page_shift.set(shift);
        self.kind.set(kind);
        self.flags.set(0);
        self.page_count.set(count);
        self.used_pages.set(0);
        let all = if count == 64 {
            u64::MAX
        } else {
            (1u64 << count) - 1
        };
        self.free_mask.set(all);
        if zero {
            self.zero_mask.set(u64::MAX);
        } else {
            // Dirty pages of a reused segment: the header survives, so the
            // previous kind's zero bits are meaningless; assume dirty.
            self.zero_mask.set(0);
        }
        self.purge_mask.set(0);
        self.purge_at.set(0);
        self.size.set(size);
        self.next.set(ptr::null_mut());
        self.prev.set(ptr::null_mut());
        self.purge_next.set(ptr::null_mut());
        self.purge_prev.set(ptr::null_mut());
        for (i, page) in self.pages.iter().take(count as usize).enumerate() {
            page.clear();
            page.slot.set(i as u8);
        }
    }

    /// Takes an unused page slot; the caller initialises the page. Returns the
    /// page and whether its memory reads as zero.
    pub fn take_page(&self) -> Option<(&Page, bool)> {
        let free = self.free_mask.get();
        if free == 0 {
            return None;
        }
        let slot = free.trailing_zeros() as usize;
        let bit = 1u64 << slot;
        self.free_mask.set(free & !bit);
        self.purge_mask.set(self.purge_mask.get() & !bit);
        let zero = self.zero_mask.get() & bit != 0;
        self.zero_mask.set(self.zero_mask.get() & !bit);
        self.used_pages.set(self.used_pages.get() + 1);
        Some((&self.pages[slot], zero))
    }

    /// Returns a page slot to the unused state and schedules its memory for
    /// purging. Returns true when the segment has no page in use any more.
    pub fn release_page(&self, page: &Page, now: u64) -> bool {
        let slot = page.slot.get() as usize;
        let bit = 1u64 << slot;
        debug_assert!(self.free_mask.get() & bit == 0);
        page.clear();
        self.free_mask.set(self.free_mask.get() | bit);
        if self.purge_mask.get() == 0 {
            self.purge_at.set(now + PURGE_DELAY_MS);
        }
        self.purge_mask.set(self.purge_mask.get() | bit);
        self.used_pages.set(self.used_pages.get() - 1);
        self.used_pages.get() == 0
    }

    /// Returns the memory of every unused, dirty slot to the OS now.
    pub fn purge_pending(&self) {
        let mut mask = self.purge_mask.get() & self.free_mask.get();
        while mask != 0 {
            // Purge runs of adjacent slots with one system call.
            let first = mask.trailing_zeros() as usize;
            let run = (mask >> first).trailing_ones() as usize;
            let (start, _) = self.page_area(first);
            let (last_start, last_size) = self.page_area(first + run - 1);
            let len = last_start as usize + last_size - start as usize;
            // SAFETY: the slots are unused, so no live block is in the range,
            // and the range lies inside this segment's mapping.
            let zeroed = unsafe { os::purge(start, len) };
            let bits = if run == 64 {
                u64::MAX
            } else {
                ((1u64 << run) - 1) << first
            };
            if zeroed {
                self.zero_mask.set(self.zero_mask.get() | bits);
            }
            mask &= !bits;
        }
        self.purge_mask.set(0);
    }
}

/// Empty segments waiting for reuse, most recently released last.
struct SegmentCache {
    entries: [CacheEntry; CACHE_SLOTS],
    len: usize,
}

#[derive(Clone, Copy)]
struct CacheEntry {
    segment: *mut Segment,
    released_at: u64,
    purged: bool,
}

// SAFETY: the cache only stores addresses of segments that no thread uses
// while they are cached; the lock serialises access to the entries.
unsafe impl Send for SegmentCache {}

const EMPTY_ENTRY: CacheEntry = CacheEntry {
    segment: ptr::null_mut(),
    released_at: 0,
    purged: false,
};

/// True when some cached segment may still hold unpurged memory; lets
/// [`purge_cache`] skip the lock when there is nothing to do.
static CACHE_DIRTY: AtomicBool = AtomicBool::new(false);

static CACHE: SpinLock<SegmentCache> = SpinLock::new(SegmentCache {
    entries: [EMPTY_ENTRY; CACHE_SLOTS],
    len: 0,
});

/// The lock of the segment cache, for the fork handlers.
pub fn cache_lock() -> &'static SpinLock<impl Sized> {
    &CACHE
}

/// Runs `f` with the segment cache locked, so that nothing enters or leaves
/// it meanwhile, giving it the start and length of every cached segment
/// (for the leak scan: cached segments are ours, not roots, though no
/// longer in the segment map).
pub fn with_cache_locked<R>(f: impl FnOnce(&[(usize, usize)]) -> R) -> R {
    let cache = CACHE.lock();
    let mut ranges = [(0, 0); CACHE_SLOTS];
    for (r, e) in ranges.iter_mut().zip(&cache.entries[..cache.len]) {
        *r = (e.segment as usize, SEGMENT_SIZE);
    }
    f(&ranges[..cache.len])
}

/// Gets a 4 MiB segment for pages of `kind` owned by `heap`: from the cache if
/// possible, else from the OS. Null when the OS refuses.
pub fn alloc_segment(kind: PageKind, heap: *mut Heap) -> *mut Segment {
    debug_assert!(kind != PageKind::Huge);
    let cached = {
        let mut cache = CACHE.lock();
        if cache.len > 0 {
            cache.len -= 1;
            Some(cache.entries[cache.len])
        } else {
            None
        }
    };
    let (seg, zero) = match cached {
        Some(entry) => (entry.segment, entry.purged),
        None => {
            let p = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE, 0);
            if p.is_null() {
                return ptr::null_mut();
            }
            if !segmap::covers(p as usize) {
                // SAFETY: the mapping was just made and nothing uses it.
                unsafe { os::unmap(p, SEGMENT_SIZE) };
                return ptr::null_mut();
            }
            (p as *mut Segment, true)
        }
    };
    // SAFETY: the segment is mapped, header-sized, and exclusively ours (fresh
    // or taken out of the cache).
    unsafe { (*seg).init(kind, heap, zero, SEGMENT_SIZE) };
    segmap::insert(seg as usize);
    seg
}

/// Sets up the header of a fresh mapping for a huge block.
///
/// # Safety
/// `seg` must be a segment-aligned, exclusively owned mapping of `size` bytes.
pub unsafe fn init_huge_segment(seg: *mut Segment, size: usize, zero: bool) {
    // SAFETY: guaranteed by the caller.
    unsafe { (*seg).init(PageKind::Huge, HUGE_OWNER, zero, size) };
}

/// The owner recorded in huge segments: not null (a null free token must
/// never match a live segment) and not the address of any heap.
pub const HUGE_OWNER: *mut Heap = ptr::dangling_mut::<Heap>();

/// Puts an empty 4 MiB segment into the cache (unmapping the oldest cached
/// one if the cache is full).
///
/// # Safety
/// `seg` must be a small, medium or large segment with no page in use, no
/// longer reachable from any heap.
pub unsafe fn free_segment(seg: *mut Segment, now: u64) {
    segmap::remove(seg as usize);
    // SAFETY: the caller hands the segment over exclusively.
    let s = unsafe { &*seg };
    debug_assert!(s.used_pages.get() == 0);
    s.heap.store(ptr::null_mut(), Ordering::Relaxed);
    let all_clean = s.purge_mask.get() == 0 && s.zero_mask.get() == u64::MAX;
    let evicted = {
        let mut cache = CACHE.lock();
        let evicted = if cache.len == CACHE_SLOTS {
            let oldest = cache.entries[0].segment;
            cache.entries.copy_within(1.., 0);
            cache.len -= 1;
            oldest
        } else {
            ptr::null_mut()
        };
        let len = cache.len;
        cache.entries[len] = CacheEntry {
            segment: seg,
            released_at: now,
            purged: all_clean,
        };
        cache.len += 1;
        evicted
    };
    if !all_clean {
        CACHE_DIRTY.store(true, Ordering::Relaxed);
    }
    if !evicted.is_null() {
        // SAFETY: a cached segment is used by nobody.
        unsafe { os::unmap(evicted as *mut u8, SEGMENT_SIZE) };
    }
}

/// Returns the memory of cached segments released more than the purge delay
/// ago to the OS. Cheap when there is nothing to do.
pub fn purge_cache(now: u64) {
    if !CACHE_DIRTY.load(Ordering::Relaxed) {
        return;
    }
    let mut cache = CACHE.lock();
    let mut still_dirty = false;
    let len = cache.len;
    for entry in cache.entries[..len].iter_mut() {
        if !entry.purged && now >= entry.released_at + PURGE_DELAY_MS {
            // SAFETY: a cached segment is used by nobody; its header is
            // rewritten when it is taken out again.
            unsafe { os::purge(entry.segment as *mut u8, SEGMENT_SIZE) };
            entry.purged = true;
        }
        still_dirty |= !entry.purged;
    }
    CACHE_DIRTY.store(still_dirty, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_heap() -> *mut Heap {
        // Never dereferenced by the functions under test.
        0x1000 as *mut Heap
    }

    #[test]
    fn page_areas_tile_the_segment_after_the_header() {
        for kind in [PageKind::Small, PageKind::Medium, PageKind::Large] {
            let seg = alloc_segment(kind, fake_heap());
            assert!(!seg.is_null());
            // SAFETY: freshly allocated segment.
            let s = unsafe { &*seg };
            assert!(segmap::contains(seg as usize));
            let count = s.page_count.get() as usize;
            let mut expect = seg as usize + HEADER_SIZE;
            for slot in 0..count {
                let (start, size) = s.page_area(slot);
                assert_eq!(start as usize, expect, "{kind:?} slot {slot}");
                assert_eq!(start as usize % 8192, 0);
                expect += size;
                // Any pointer inside the area maps back to this slot.
                let mid = start.wrapping_add(size / 2);
                assert_eq!(s.page_of(mid).slot.get() as usize, slot);
            }
            assert_eq!(expect, seg as usize + SEGMENT_SIZE);
            // SAFETY: no page in use.
            unsafe { free_segment(seg, 0) };
            assert!(!segmap::contains(seg as usize));
        }
    }

    #[test]
    fn slots_masks_and_purging() {
        let seg = alloc_segment(PageKind::Small, fake_heap());
        // SAFETY: freshly allocated segment.
        let s = unsafe { &*seg };
        let (p0, zero0) = s.take_page().unwrap();
        let (p1, zero1) = s.take_page().unwrap();
        assert!(zero0 && zero1, "fresh OS memory is zero");
        assert_eq!((p0.slot.get(), p1.slot.get()), (0, 1));
        assert_eq!(s.used_pages.get(), 2);
        assert_eq!(s.free_mask.get() & 0b11, 0);
        let (start, area) = s.page_area(1);
        p1.init(3, 32, start, area, true);
        // Dirty the page, release it: it is due for purging, not zero.
        // SAFETY: the page area is mapped and ours.
        unsafe { start.write_bytes(0xEE, 4096) };
        assert!(!s.release_page(p1, 100));
        assert_eq!(s.purge_mask.get(), 0b10);
        assert_eq!(s.purge_at.get(), 100 + PURGE_DELAY_MS);
        assert_eq!(s.zero_mask.get() & 0b10, 0);
        s.purge_pending();
        assert_eq!(s.purge_mask.get(), 0);
        assert_ne!(s.zero_mask.get() & 0b10, 0, "purged pages read as zero");
        // SAFETY: the area is mapped; after MADV_DONTNEED it reads zero.
        assert_eq!(unsafe { *start }, 0);
        // Retaking the slot reports it as zero.
        let (again, zero) = s.take_page().unwrap();
        assert_eq!(again.slot.get(), 1);
        assert!(zero);
        assert!(!s.release_page(again, 0));
        assert!(
            s.release_page(p0, 0),
            "last page released empties the segment"
        );
        // SAFETY: no page in use.
        unsafe { free_segment(seg, 0) };
    }
}
