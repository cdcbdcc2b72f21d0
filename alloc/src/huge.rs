//! Huge blocks: requests above `LARGE_MAX` (512 KiB), each in a mapping of its
//! own that starts with a segment header, plus a small cache of freed
//! mappings.
//!
//! Why a cache: a program that frees a 20 MiB buffer and allocates another one
//! would otherwise unmap and re-map, paying a page fault per 4 KiB touched
//! (the research notes measured 6.5 million faults for mimalloc on
//! malloc-large). Cached mappings are reused while their pages are still
//! resident and purged only after the purge delay; they are unmapped after
//! [`UNMAP_AFTER_MS`] or when the cache is full.
//!
//! Layouts (the block address must find the header by masking, see
//! `segment.rs`):
//! - alignment up to 8 KiB: header at the mapping start, block at +8 KiB;
//! - alignment up to 4 MiB: header at the start, block at +alignment;
//! - alignment of 4 MiB or more: the block is segment-aligned itself, so its
//!   header sits one segment *before* it; `free` recognises such a block by
//!   its segment-aligned address (no other block of ours is ever
//!   segment-aligned, since every segment starts with a header).
//!
//! Mappings of 4 MiB or more are advised to use transparent huge pages, as
//! mimalloc's are: a program filling a 20 MiB buffer then takes 10 page
//! faults instead of 5000. The kernel applies this only to the 2 MiB-aligned
//! parts and only when THP is enabled for advised mappings.
//!
//! Huge blocks belong to no heap: any thread frees them directly here.

use crate::lock::SpinLock;
use crate::os::{self, OS_PAGE};
use crate::report::{BadPointer, invalid_pointer};
use crate::segmap;
use crate::segment::{self, HEADER_SIZE, PURGE_DELAY_MS, SEGMENT_SIZE, Segment};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Freed mappings kept for reuse.
const CACHE_SLOTS: usize = 8;
/// Total bytes the cache may hold.
const CACHE_MAX_BYTES: usize = 512 << 20;
/// A reused mapping's unneeded tail is purged only when it is larger than
/// this (and than twice the block).
const TAIL_PURGE_MIN: usize = 64 << 20;
/// Delay before a cached mapping's memory is returned to the OS. Longer than
/// for small pages: re-faulting a huge block costs thousands of faults.
const HUGE_PURGE_DELAY_MS: u64 = 5 * PURGE_DELAY_MS;
/// Cached mappings unused this long are unmapped.
const UNMAP_AFTER_MS: u64 = 1000;

#[derive(Clone, Copy)]
struct Entry {
    segment: *mut Segment,
    size: usize,
    released_at: u64,
    purged: bool,
}

const NO_ENTRY: Entry = Entry {
    segment: ptr::null_mut(),
    size: 0,
    released_at: 0,
    purged: false,
};

struct HugeCache {
    entries: [Entry; CACHE_SLOTS],
    len: usize,
    bytes: usize,
}

// SAFETY: cached mappings are used by nobody; the lock serialises access.
unsafe impl Send for HugeCache {}

impl HugeCache {
    fn remove(&mut self, i: usize) -> Entry {
        let e = self.entries[i];
        self.entries.copy_within(i + 1..self.len, i);
        self.len -= 1;
        self.bytes -= e.size;
        e
    }
}

static CACHE: SpinLock<HugeCache> = SpinLock::new(HugeCache {
    entries: [NO_ENTRY; CACHE_SLOTS],
    len: 0,
    bytes: 0,
});
static CACHE_BUSY: AtomicBool = AtomicBool::new(false);

/// The lock of the huge-block cache, for the fork handlers.
pub fn cache_lock() -> &'static SpinLock<impl Sized> {
    &CACHE
}

/// Runs `f` with the huge-block cache locked, giving it the start and
/// length of every cached mapping (see `segment::with_cache_locked`).
pub fn with_cache_locked<R>(f: impl FnOnce(&[(usize, usize)]) -> R) -> R {
    let cache = CACHE.lock();
    let mut ranges = [(0, 0); CACHE_SLOTS];
    for (r, e) in ranges.iter_mut().zip(&cache.entries[..cache.len]) {
        *r = (e.segment as usize, e.size);
    }
    f(&ranges[..cache.len])
}

/// Offset of the block from the header for a given alignment.
fn block_offset(align: usize) -> usize {
    if align <= HEADER_SIZE {
        HEADER_SIZE
    } else if align < SEGMENT_SIZE {
        align
    } else {
        SEGMENT_SIZE
    }
}

/// Bytes to map for a block of `size` bytes at `offset` from the header:
/// whole OS pages, and whole huge pages from 4 MiB up, so that transparent
/// huge pages can back all of it. None when the size is absurd.
fn mapping_size(offset: usize, size: usize) -> Option<usize> {
    let n = offset
        .checked_add(size)?
        .checked_next_multiple_of(OS_PAGE)?;
    let n = if n >= 2 * os::HUGE_PAGE {
        n.checked_next_multiple_of(os::HUGE_PAGE)?
    } else {
        n
    };
    (n <= isize::MAX as usize / 2).then_some(n)
}

/// Allocates a sampled block (sampled recording mode): a block of its own
/// mapping, like a huge block, flagged so that its free is recognised
/// without any lookup. Samples are one per half MiB allocated on average,
/// so the mapping per sample costs little.
pub fn alloc_sampled(size: usize, align: usize, zero: bool) -> *mut u8 {
    let p = alloc(size, align, zero);
    if !p.is_null() {
        mark(p, segment::SAMPLED);
    }
    p
}

/// Sets `flag` on the segment of the huge block `p`, just allocated.
fn mark(p: *mut u8, flag: u8) {
    // A huge block aligned to a segment boundary has its header one
    // segment before it (see `alloc`); any other finds it by masking.
    let seg = if p as usize & segment::SEGMENT_MASK == 0 {
        (p as usize - SEGMENT_SIZE) as *mut Segment
    } else {
        crate::segment::segment_of(p)
    };
    // SAFETY: `p` was just allocated; its header is ours.
    let s = unsafe { &*seg };
    s.flags.set(s.flags.get() | flag);
}

/// Is the huge block of segment `seg` a sampled block?
///
/// # Safety
/// `seg` must be a live huge segment.
pub fn is_sampled(seg: *mut Segment) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe { (*seg).flags.get() & segment::SAMPLED != 0 }
}

/// Allocates a huge block of `size` bytes aligned to `align` (a power of two);
/// zeroed when `zero`. Null when the size is absurd or the OS refuses.
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let offset = block_offset(align);
    // A zero-byte request still gets a (one-page) block of its own.
    let Some(needed) = mapping_size(offset, size.max(1)) else {
        return ptr::null_mut();
    };
    let (seg, map_size, fresh) = match take_cached(needed, offset) {
        Some(e) => (e.segment, e.size, e.purged),
        None => {
            let base = if offset == SEGMENT_SIZE {
                os::map_aligned(needed, align, SEGMENT_SIZE)
            } else {
                os::map_aligned(needed, SEGMENT_SIZE, 0)
            };
            if base.is_null() {
                return base;
            }
            if !segmap::covers(base as usize) {
                // SAFETY: the mapping was just made and nothing uses it.
                unsafe { os::unmap(base, needed) };
                return ptr::null_mut();
            }
            if needed >= 2 * os::HUGE_PAGE {
                // SAFETY: the mapping was just made by `os`.
                unsafe { os::advise_huge_pages(base, needed) };
            }
            (base as *mut Segment, needed, true)
        }
    };
    // SAFETY: the mapping is segment-aligned, exclusively ours and
    // `map_size >= offset + size` bytes long.
    unsafe { segment::init_huge_segment(seg, map_size, fresh) };
    // SAFETY: as above; the header was just initialised.
    let s = unsafe { &*seg };
    let block = (seg as *mut u8).wrapping_add(offset);
    let page = &s.pages[0];
    page.init(0, map_size - offset, block, map_size - offset, fresh);
    page.used.set(1);
    page.capacity.set(1);
    segmap::insert(seg as usize);
    if zero && !fresh {
        // SAFETY: the block is ours and at least `size` bytes long.
        unsafe { ptr::write_bytes(block, 0, size) };
    }
    block
}

/// Takes a cached mapping for a block needing `needed` bytes (default layout
/// only): the smallest one that is large enough, else the largest one grown
/// with `mremap`, so that its resident pages are reused either way. A much
/// larger mapping gives its unneeded tail back.
fn take_cached(needed: usize, offset: usize) -> Option<Entry> {
    if offset != HEADER_SIZE || !CACHE_BUSY.load(Ordering::Relaxed) {
        return None;
    }
    let mut entry = {
        let mut cache = CACHE.lock();
        let mut best: Option<usize> = None;
        let mut largest: Option<usize> = None;
        for i in 0..cache.len {
            let e = cache.entries[i];
            if e.size >= needed && best.is_none_or(|b| e.size < cache.entries[b].size) {
                best = Some(i);
            }
            if largest.is_none_or(|l| e.size > cache.entries[l].size) {
                largest = Some(i);
            }
        }
        let e = cache.remove(best.or(largest)?);
        CACHE_BUSY.store(cache.len > 0, Ordering::Relaxed);
        e
    };
    if entry.size < needed {
        // SAFETY: a cached mapping is used by nobody and not in the segment
        // map; remap keeps its pages and adds zero pages at the end.
        let grown = unsafe { remap(entry.segment, entry.size, needed) };
        if grown.is_null() {
            // SAFETY: the cached mapping is ours to drop.
            unsafe { os::unmap(entry.segment as *mut u8, entry.size) };
            return None;
        }
        entry.segment = grown;
        entry.size = needed;
    } else if !entry.purged && entry.size - needed > (2 * needed).max(TAIL_PURGE_MIN) {
        // Do not keep a much larger resident mapping alive for a smaller
        // block: give the unneeded tail back. Smaller excesses stay resident;
        // purging them costs a system call now and page faults later, when
        // the mapping serves a bigger block again.
        // SAFETY: the tail is inside the cached mapping and holds no block.
        unsafe { os::purge((entry.segment as *mut u8).add(needed), entry.size - needed) };
    }
    Some(entry)
}

/// Grows the mapping at `seg` from `old_size` to `new_size` bytes without
/// copying: in place if the address space after it is free, else moved by
/// the kernel (page-table entries, not bytes) to a fresh segment-aligned
/// range. Returns the mapping's address, or null (the mapping untouched).
/// Does not touch the segment map.
///
/// # Safety
/// `[seg, seg + old_size)` must be a mapping of this module that nobody else
/// uses during the call.
unsafe fn remap(seg: *mut Segment, old_size: usize, new_size: usize) -> *mut Segment {
    // SAFETY: the mapping is ours (caller); without MAYMOVE the kernel
    // either extends it in place or fails.
    let grown = unsafe { libc::mremap(seg.cast(), old_size, new_size, 0) };
    if grown != libc::MAP_FAILED {
        crate::stats::mapped_add(new_size - old_size);
        return seg;
    }
    let target = os::map_aligned(new_size, SEGMENT_SIZE, 0);
    if target.is_null() || !segmap::covers(target as usize) {
        if !target.is_null() {
            // SAFETY: the reservation was just made and is unused.
            unsafe { os::unmap(target, new_size) };
        }
        return ptr::null_mut();
    }
    // SAFETY: both ranges are ours; MREMAP_FIXED replaces the reservation
    // with the old mapping's pages and unmaps the old range atomically.
    let moved = unsafe {
        libc::mremap(
            seg.cast(),
            old_size,
            new_size,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        // SAFETY: the reservation is unused.
        unsafe { os::unmap(target, new_size) };
        return ptr::null_mut();
    }
    crate::stats::mapped_sub(old_size);
    target as *mut Segment
}

/// Marks the huge block `p` (just allocated) as allocated by `lane`'s call.
pub fn set_lane(p: *mut u8, lane: crate::page::Lane) {
    let bit = match lane {
        crate::page::Lane::New => segment::NEW,
        crate::page::Lane::NewArray => segment::NEW_ARRAY,
        _ => return,
    };
    mark(p, bit);
}

/// The lane of the huge block whose header is `seg` (live).
pub fn lane(seg: *mut Segment) -> crate::page::Lane {
    // SAFETY: the caller's segment is a live huge segment.
    let f = unsafe { (*seg).flags.get() };
    if f & segment::SAMPLED != 0 {
        crate::page::Lane::Sampled
    } else if f & segment::NEW != 0 {
        crate::page::Lane::New
    } else if f & segment::NEW_ARRAY != 0 {
        crate::page::Lane::NewArray
    } else {
        crate::page::Lane::Malloc
    }
}

/// Huge blocks freed lately, so that a second free of one (its mapping
/// gone or cached, no longer in the segment map) is reported as freed twice
/// rather than as not ours.
static RECENT: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static RECENT_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Was `p` one of the last 64 huge blocks freed (and not handed out again)?
pub fn recently_freed(p: *const u8) -> bool {
    RECENT
        .iter()
        .any(|a| a.load(Ordering::Relaxed) == p as usize)
}

/// Frees the huge block `p` whose header is `seg`; false (reported) when
/// `p` is not its live block.
///
/// # Safety
/// `seg` must be a live huge segment (its segment-map bit set).
pub unsafe fn free(seg: *mut Segment, p: *mut u8, call: &str) -> bool {
    // SAFETY: guaranteed by the caller.
    let s = unsafe { &*seg };
    let page = &s.pages[0];
    if !check_block(page, p, call) {
        return false;
    }
    page.used.set(0);
    segmap::remove(seg as usize);
    let i = RECENT_NEXT.fetch_add(1, Ordering::Relaxed) % RECENT.len();
    RECENT[i].store(p as usize, Ordering::Relaxed);
    let size = s.size.get();
    let cacheable = page.block_start.get() as usize - seg as usize == HEADER_SIZE
        && size <= CACHE_MAX_BYTES / 2;
    if !cacheable {
        // SAFETY: the block was the mapping's only content and is now free.
        unsafe { os::unmap(seg as *mut u8, size) };
        return true;
    }
    let now = os::now_ms();
    let mut evicted = [NO_ENTRY; CACHE_SLOTS];
    let mut n_evicted = 0;
    {
        let mut cache = CACHE.lock();
        while cache.len == CACHE_SLOTS || cache.bytes + size > CACHE_MAX_BYTES {
            evicted[n_evicted] = cache.remove(0);
            n_evicted += 1;
        }
        let len = cache.len;
        cache.entries[len] = Entry {
            segment: seg,
            size,
            released_at: now,
            purged: false,
        };
        cache.len += 1;
        cache.bytes += size;
        CACHE_BUSY.store(true, Ordering::Relaxed);
    }
    for e in &evicted[..n_evicted] {
        // SAFETY: evicted mappings are used by nobody.
        unsafe { os::unmap(e.segment as *mut u8, e.size) };
    }
    true
}

/// True when `p` is the live block of the huge page `page`; otherwise
/// reports the invalid pointer (which aborts unless `on_error=report`).
fn check_block(page: &crate::page::Page, p: *mut u8, call: &str) -> bool {
    let start = page.block_start.get();
    if p != start {
        let off = (p as usize).wrapping_sub(start as usize);
        let why = if off < page.block_size.get() {
            BadPointer::Interior {
                block: start as usize,
                offset: off,
                size: page.block_size.get(),
            }
        } else {
            BadPointer::NotOurs
        };
        invalid_pointer(call, p, why);
        return false;
    }
    if page.used.get() == 0 {
        invalid_pointer(call, p, BadPointer::NotLive);
        return false;
    }
    true
}

/// Tries to resize the huge block `p` to `new_size` bytes without copying:
/// in place when it fits, or by letting the kernel grow or move the mapping
/// (`mremap`, which moves page-table entries instead of bytes). Returns the
/// block's new address, or null when the caller must allocate and copy.
///
/// # Safety
/// `seg` must be the live huge segment of block `p`.
pub unsafe fn resize(seg: *mut Segment, p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: guaranteed by the caller.
    let s = unsafe { &*seg };
    let page = &s.pages[0];
    let offset = p as usize - seg as usize;
    let capacity = page.block_size.get();
    if new_size <= capacity {
        let keep = (offset + new_size).next_multiple_of(OS_PAGE);
        if keep < s.size.get() / 2 {
            // A big shrink: return the unused tail's pages, keep the mapping.
            // SAFETY: bytes past the new size hold nothing the caller keeps.
            unsafe { os::purge((seg as *mut u8).add(keep), s.size.get() - keep) };
        }
        return p;
    }
    if offset != HEADER_SIZE {
        return ptr::null_mut();
    }
    let Some(needed) = mapping_size(offset, new_size) else {
        return ptr::null_mut();
    };
    // SAFETY: the block's mapping is exclusively owned by the caller, who
    // is resizing it.
    let new_seg = unsafe { remap(seg, s.size.get(), needed) };
    if new_seg.is_null() {
        return ptr::null_mut();
    }
    if new_seg != seg {
        segmap::remove(seg as usize);
        segmap::insert(new_seg as usize);
    }
    // SAFETY: the header moved with the mapping and is still exclusively
    // owned by this block.
    let s = unsafe { &*new_seg };
    s.size.set(needed);
    let page = &s.pages[0];
    let block = (new_seg as *mut u8).wrapping_add(offset);
    page.block_start.set(block);
    page.block_size.set(needed - offset);
    page.magic
        .set(crate::size_class::divisibility_magic(needed - offset));
    block
}

/// Usable bytes of the huge block `p`; None (reported) when `p` is not
/// its live block.
///
/// # Safety
/// `seg` must be a live huge segment.
pub unsafe fn usable_size(seg: *mut Segment, p: *mut u8, call: &str) -> Option<usize> {
    // SAFETY: guaranteed by the caller.
    let page = unsafe { &(*seg).pages[0] };
    check_block(page, p, call).then(|| page.block_size.get())
}

/// Purges cached mappings idle for the purge delay and unmaps those idle for
/// [`UNMAP_AFTER_MS`].
pub fn purge_cache(now: u64) {
    if !CACHE_BUSY.load(Ordering::Relaxed) {
        return;
    }
    let mut unmap = [NO_ENTRY; CACHE_SLOTS];
    let mut n_unmap = 0;
    {
        let mut cache = CACHE.lock();
        let mut i = 0;
        while i < cache.len {
            let e = cache.entries[i];
            if now >= e.released_at.saturating_add(UNMAP_AFTER_MS) {
                unmap[n_unmap] = cache.remove(i);
                n_unmap += 1;
                continue;
            }
            if !e.purged && now >= e.released_at + HUGE_PURGE_DELAY_MS {
                // SAFETY: a cached mapping is used by nobody; its header is
                // rewritten when it is taken out again.
                unsafe { os::purge(e.segment as *mut u8, e.size) };
                cache.entries[i].purged = true;
            }
            i += 1;
        }
        CACHE_BUSY.store(cache.len > 0, Ordering::Relaxed);
    }
    for e in &unmap[..n_unmap] {
        // SAFETY: removed from the cache, the mapping is used by nobody.
        unsafe { os::unmap(e.segment as *mut u8, e.size) };
    }
}
