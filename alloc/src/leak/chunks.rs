//! The chunk layer of the leak scan: which blocks the allocator has handed
//! out and not taken back, and which of them an address points into.
//!
//! Nothing is kept between scans. With the world stopped, the table is built
//! from the allocator's own metadata: the segment map lists the live
//! segments, each page says where its blocks start, how large they are and
//! how many were carved, and a carved block is free exactly when it is on
//! one of its page's three free lists or on a heap's delayed list. Every
//! other carved block is a *chunk*: allocated, maybe leaked. A huge block is
//! a chunk as long as its segment is in the map.
//!
//! Chunks are numbered: a page's chunks get consecutive numbers from the
//! page's `first`, so the scan keeps its per-chunk state (reachable, leaked,
//! direct) in bitmaps indexed by number, a few bits per block.
//!
//! Lists are walked defensively. A thread stopped in the middle of a push
//! leaves a block on no list: it counts as allocated, which is the safe
//! side (its contents are scanned; in full recording the trace says whether
//! it was live). An entry that is not a carved block of its page, or a walk
//! longer than the page's blocks, ends the walk.

use super::scratch::{Bits, ScratchVec};
use crate::page::{self, Block, Page};
use crate::segment::{HUGE_OWNER, SEGMENT_SHIFT, SEGMENT_SIZE, Segment};
use crate::{segmap, thread};
use core::sync::atomic::Ordering;

/// One live segment: the address range its blocks lie in.
#[derive(Clone, Copy)]
struct SegEntry {
    /// Start of the segment's mapping.
    base: usize,
    /// End of the mapping (huge blocks can be far larger than 4 MiB).
    end: usize,
    /// log2 of its page size.
    shift: u32,
    /// Index of its first page in `Chunks::pages`.
    first_page: u32,
    /// Its page slots (1 for large and huge segments).
    pages: u32,
}

/// One page slot of a live segment.
#[derive(Clone, Copy)]
pub struct PageEntry {
    /// The page's metadata.
    meta: *const Page,
    /// Address of its first block.
    pub start: usize,
    /// Bytes per block.
    pub size: usize,
    /// Blocks carved (0 for an unused slot).
    pub count: usize,
    /// Number of its first chunk.
    pub first: usize,
    /// Its blocks are sampled allocations (sampled recording).
    pub sampled: bool,
}

/// A chunk found by [`Chunks::find`].
#[derive(Clone, Copy)]
pub struct Chunk {
    /// Its number.
    pub n: usize,
    /// Its first byte.
    pub start: usize,
    /// Its bytes.
    pub size: usize,
}

/// Every chunk of the heap, as it was when the table was built.
pub struct Chunks {
    segs: ScratchVec<SegEntry>,
    pages: ScratchVec<PageEntry>,
    /// Bit set: the numbered block is free (not a chunk).
    free: Bits,
    /// Number of carved blocks, free or not.
    pub total: usize,
    /// Lowest and highest address any chunk can have: one comparison
    /// rejects most words of a scanned range.
    lo: usize,
    hi: usize,
}

impl Chunks {
    /// Builds the table. The other threads must be stopped (or the process
    /// single-threaded). None when scratch memory cannot be mapped.
    pub fn build() -> Option<Chunks> {
        let mut segs = ScratchVec::new();
        let mut pages = ScratchVec::new();
        let mut total = 0usize;
        let mut ok = true;
        segmap::for_each(|base| {
            // SAFETY: the segment map says a live segment starts here; its
            // header stays mapped while it is in the map, and the threads
            // that could change that are stopped.
            let s = unsafe { &*(base as *const Segment) };
            let first_page = pages.len() as u32;
            let huge = s.heap.load(Ordering::Acquire) == HUGE_OWNER;
            let count = if huge {
                1
            } else {
                (s.page_count.get() as usize).min(s.pages.len())
            };
            for slot in 0..count {
                let p = &s.pages[slot];
                let unused = !huge && s.free_mask.get() & (1 << slot) != 0;
                let size = p.block_size.get();
                let carved = if huge {
                    usize::from(p.in_use())
                } else {
                    (p.capacity.get().min(p.reserved.get())) as usize
                };
                let carved = if unused || size == 0 { 0 } else { carved };
                ok &= pages.push(PageEntry {
                    meta: p,
                    start: p.block_start.get() as usize,
                    size,
                    count: carved,
                    first: total,
                    sampled: p.has(page::SAMPLED) || (huge && crate::huge::is_sampled(base as _)),
                });
                total += carved;
            }
            ok &= segs.push(SegEntry {
                base,
                end: base + s.size.get().max(SEGMENT_SIZE),
                shift: if huge {
                    SEGMENT_SHIFT
                } else {
                    s.page_shift.get()
                },
                first_page,
                pages: count as u32,
            });
        });
        if !ok {
            return None;
        }
        let (lo, hi) = match (segs.as_slice().first(), segs.as_slice().last()) {
            (Some(a), Some(b)) => (a.base, b.end),
            _ => (0, 0),
        };
        let mut chunks = Chunks {
            segs,
            pages,
            free: Bits::new(total)?,
            total,
            lo,
            hi,
        };
        chunks.mark_free_blocks();
        Some(chunks)
    }

    /// Sets the free bit of every block on a free list or delayed list.
    fn mark_free_blocks(&mut self) {
        for i in 0..self.pages.len() {
            let e = self.pages.as_slice()[i];
            if e.count == 0 {
                continue;
            }
            // SAFETY: page metadata lives in its segment's header, which
            // stays mapped while the segment is in the map.
            let p = unsafe { &*e.meta };
            let remote = p.thread_free.load(Ordering::Acquire) & !page::NOTIFY;
            for list in [p.free.get(), p.local_free.get(), remote as *mut Block] {
                self.walk_page_list(&e, list);
            }
        }
        thread::for_each_heap(|h| {
            let mut b = h.delayed.load(Ordering::Acquire);
            let mut steps = 0;
            while !b.is_null() && steps < self.total {
                let Some(c) = self.find_block(b as usize) else {
                    break;
                };
                if c.start != b as usize || self.free.set(c.n) {
                    break;
                }
                // SAFETY: `b` is a carved block of a live page (found above)
                // and free blocks hold a link word.
                b = unsafe { (*b).next };
                steps += 1;
            }
        });
    }

    fn walk_page_list(&mut self, e: &PageEntry, mut b: *mut Block) {
        let mut steps = 0;
        while !b.is_null() && steps < e.count {
            let off = (b as usize).wrapping_sub(e.start);
            if off % e.size != 0 || off / e.size >= e.count {
                break;
            }
            if self.free.set(e.first + off / e.size) {
                break;
            }
            // SAFETY: `b` is a carved block of this page (checked above),
            // inside its mapped segment; free blocks hold a link word.
            b = unsafe { (*b).next };
            steps += 1;
        }
    }

    /// The carved block `addr` points into (at its start or inside it),
    /// free or not.
    #[inline(always)]
    fn find_block(&self, addr: usize) -> Option<Chunk> {
        if addr < self.lo || addr >= self.hi {
            return None;
        }
        let segs = self.segs.as_slice();
        let i = segs.partition_point(|s| s.base <= addr);
        let s = segs.get(i.checked_sub(1)?)?;
        if addr >= s.end {
            return None;
        }
        let slot = if s.pages == 1 {
            0
        } else {
            (addr - s.base) >> s.shift
        };
        if slot >= s.pages as usize {
            return None;
        }
        let e = &self.pages.as_slice()[s.first_page as usize + slot];
        let off = addr.checked_sub(e.start)?;
        let i = off / e.size.max(1);
        if i >= e.count {
            return None;
        }
        Some(Chunk {
            n: e.first + i,
            start: e.start + i * e.size,
            size: e.size,
        })
    }

    /// The chunk (allocated block) `addr` points into, if any: LeakSanitizer's
    /// `PointsIntoChunk`, with interior pointers counted.
    #[inline(always)]
    pub fn find(&self, addr: usize) -> Option<Chunk> {
        let c = self.find_block(addr)?;
        (!self.free.get(c.n)).then_some(c)
    }

    /// Is `addr` below the lowest or above the highest chunk address? The
    /// scan's first filter, inlined into its word loop.
    #[inline(always)]
    pub fn outside(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.lo) >= self.hi - self.lo
    }

    /// Calls `f` on every chunk, in address order, with whether it is a
    /// sampled allocation.
    pub fn for_each(&self, mut f: impl FnMut(Chunk, bool)) {
        for e in self.pages.as_slice() {
            for i in 0..e.count {
                let n = e.first + i;
                if !self.free.get(n) {
                    let c = Chunk {
                        n,
                        start: e.start + i * e.size,
                        size: e.size,
                    };
                    f(c, e.sampled);
                }
            }
        }
    }

    /// Start and end of every live segment (memory the root scan skips:
    /// the heap is reached through the chunks, never as a root).
    pub fn for_each_segment(&self, mut f: impl FnMut(usize, usize)) {
        for s in self.segs.as_slice() {
            f(s.base, s.end);
        }
    }
}
