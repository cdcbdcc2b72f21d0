//! TLSF (two-level segregated fit, Masmano et al. 2004): free blocks sit
//! in lists indexed by a first level (the power of two of their size) and
//! a second level (16 linear subdivisions of it); two bitmaps find a
//! non-empty list in constant time. A request is rounded up to the next
//! list boundary ("good fit"), so any block of the list found fits without
//! walking it; the remainder is split off; a freed block merges at once
//! with its free physical neighbours (boundary tags).
//!
//! Steps are the constant work of each operation: the mapping, each bitmap
//! search, each list removal and insertion, each split and each merge.
//!
//! Blocks live in a vector and link to their physical neighbours by index,
//! as the real TLSF's headers do by pointer, so that a merge finds its
//! neighbours without a lookup; a freed allocation names its block by
//! index, as a real free finds the header before the user's pointer.
//!
//! The largest free block (for the fragmentation statistics only) is in
//! the highest non-empty list, which the bitmaps find; each list keeps its
//! largest size and how many of its blocks have it, and is scanned again
//! only when the last of those leaves it and it is asked for.

use super::{Allocation, Heap, HeapStats};

/// Second-level subdivisions: 2^SLI lists per power of two.
const SLI: u32 = 4;
const SL: usize = 1 << SLI;
/// The smallest block.
const MIN_BLOCK: u64 = 16;
/// No block (the end of the physical chain).
const NONE: u32 = u32::MAX;

/// A block of the arena, free or used.
#[derive(Clone, Copy, Debug)]
struct Block {
    at: u64,
    size: u64,
    free: bool,
    /// The physical neighbours, by index (NONE at the arena's ends).
    prev: u32,
    next: u32,
    /// A free block's place in its list.
    slot: u32,
}

/// The TLSF heap.
pub struct TlsfHeap {
    header: u64,
    align: u64,
    arena: u64,
    fl_bitmap: u64,
    sl_bitmap: [u32; 64],
    /// The free lists (unordered, as TLSF's linked lists: O(1) insertion
    /// and removal by the position kept in the block), of block indices.
    lists: Vec<Vec<u32>>,
    blocks: Vec<Block>,
    /// Indices of `blocks` no longer in the arena, for reuse.
    spare: Vec<u32>,
    /// Per list: its largest size and how many of its blocks have that
    /// size (statistics only); a count of 0 in a non-empty list means not
    /// known (the last of them left).
    list_max: Vec<(u64, u32)>,
    free_blocks: usize,
    free_total: u64,
    high_water: u64,
    steps: u64,
}

/// The list holding blocks of `size` (at least [`MIN_BLOCK`]).
fn mapping(size: u64) -> (usize, usize) {
    let fl = 63 - size.leading_zeros();
    let sl = (size >> (fl - SLI)) as usize & (SL - 1);
    (fl as usize, sl)
}

impl TlsfHeap {
    /// A heap over `arena` bytes, with `header` bytes per block and sizes
    /// rounded to `align`.
    pub fn new(arena: u64, header: u64, align: u64) -> Self {
        let align = align.max(8);
        let mut h = TlsfHeap {
            header,
            align,
            arena: arena / align * align,
            fl_bitmap: 0,
            sl_bitmap: [0; 64],
            lists: (0..64 * SL).map(|_| Vec::new()).collect(),
            blocks: Vec::new(),
            spare: Vec::new(),
            list_max: vec![(0, 0); 64 * SL],
            free_blocks: 0,
            free_total: 0,
            high_water: 0,
            steps: 0,
        };
        if h.arena >= MIN_BLOCK {
            let b = h.new_block(0, h.arena, NONE, NONE);
            h.insert(b);
        }
        h
    }

    fn new_block(&mut self, at: u64, size: u64, prev: u32, next: u32) -> u32 {
        let block = Block {
            at,
            size,
            free: false,
            prev,
            next,
            slot: 0,
        };
        match self.spare.pop() {
            Some(i) => {
                self.blocks[i as usize] = block;
                i
            }
            None => {
                self.blocks.push(block);
                (self.blocks.len() - 1) as u32
            }
        }
    }

    /// Takes block `b` out of the arena (merged into a neighbour).
    fn drop_block(&mut self, b: u32) {
        let Block { prev, next, .. } = self.blocks[b as usize];
        if prev != NONE {
            self.blocks[prev as usize].next = next;
        }
        if next != NONE {
            self.blocks[next as usize].prev = prev;
        }
        self.spare.push(b);
    }

    /// Lists free block `b`.
    fn insert(&mut self, b: u32) {
        let size = self.blocks[b as usize].size;
        let (fl, sl) = mapping(size);
        let list = &mut self.lists[fl * SL + sl];
        let max = &mut self.list_max[fl * SL + sl];
        if list.is_empty() {
            *max = (size, 1);
        } else if max.1 != 0 {
            if size > max.0 {
                *max = (size, 1);
            } else if size == max.0 {
                max.1 += 1;
            }
        }
        let block = &mut self.blocks[b as usize];
        block.free = true;
        block.slot = list.len() as u32;
        list.push(b);
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
        self.free_blocks += 1;
        self.free_total += size;
        self.steps += 1;
    }

    /// Unlists free block `b`.
    fn remove(&mut self, b: u32) {
        let Block { size, slot, .. } = self.blocks[b as usize];
        let (fl, sl) = mapping(size);
        let list = &mut self.lists[fl * SL + sl];
        list.swap_remove(slot as usize);
        if let Some(&moved) = list.get(slot as usize) {
            self.blocks[moved as usize].slot = slot;
        }
        if list.is_empty() {
            self.sl_bitmap[fl] &= !(1 << sl);
            if self.sl_bitmap[fl] == 0 {
                self.fl_bitmap &= !(1 << fl);
            }
        } else {
            let max = &mut self.list_max[fl * SL + sl];
            if max.1 != 0 && size == max.0 {
                max.1 -= 1;
            }
        }
        self.blocks[b as usize].free = false;
        self.free_blocks -= 1;
        self.free_total -= size;
        self.steps += 1;
    }

    /// The largest size in list `l` and how many blocks have it, by a scan.
    fn scan_list(&self, l: usize) -> (u64, u32) {
        self.lists[l].iter().fold((0, 0), |(max, n), &b| {
            let size = self.blocks[b as usize].size;
            match size.cmp(&max) {
                std::cmp::Ordering::Greater => (size, 1),
                std::cmp::Ordering::Equal => (max, n + 1),
                std::cmp::Ordering::Less => (max, n),
            }
        })
    }

    /// The highest non-empty list, which holds the largest free block.
    fn top_list(&self) -> Option<usize> {
        if self.fl_bitmap == 0 {
            return None;
        }
        let fl = 63 - self.fl_bitmap.leading_zeros() as usize;
        let sl = 31 - self.sl_bitmap[fl].leading_zeros() as usize;
        Some(fl * SL + sl)
    }

    /// A non-empty list whose every block holds `size`: the good-fit
    /// search with the two bitmaps.
    fn find(&mut self, size: u64) -> Option<(usize, usize)> {
        let fl = 63 - size.leading_zeros();
        // Round up to the next list boundary.
        let rounded = size.checked_add((1u64 << (fl - SLI)) - 1)?;
        let (fl, sl) = mapping(rounded);
        self.steps += 1;
        let here = self.sl_bitmap[fl] & (!0u32 << sl);
        if here != 0 {
            return Some((fl, here.trailing_zeros() as usize));
        }
        self.steps += 1;
        let above = if fl + 1 >= 64 {
            0
        } else {
            self.fl_bitmap & (!0u64 << (fl + 1))
        };
        if above == 0 {
            return None;
        }
        let fl = above.trailing_zeros() as usize;
        Some((fl, self.sl_bitmap[fl].trailing_zeros() as usize))
    }
}

impl Heap for TlsfHeap {
    fn alloc(&mut self, size: u64, align: u64) -> Option<Allocation> {
        let pad = align.saturating_sub(self.align);
        let need =
            ((size.max(1) + self.header + pad).div_ceil(self.align) * self.align).max(MIN_BLOCK);
        let (fl, sl) = self.find(need)?;
        let b = *self.lists[fl * SL + sl].last().expect("a non-empty list");
        self.remove(b);
        let Block {
            at, size: block, ..
        } = self.blocks[b as usize];
        let taken = if block - need >= MIN_BLOCK {
            self.steps += 1;
            let next = self.blocks[b as usize].next;
            let rest = self.new_block(at + need, block - need, b, next);
            if next != NONE {
                self.blocks[next as usize].prev = rest;
            }
            let used = &mut self.blocks[b as usize];
            used.next = rest;
            used.size = need;
            self.insert(rest);
            need
        } else {
            block
        };
        let user = (at + self.header + pad) / align.max(1) * align.max(1);
        let user = user.max(at + self.header);
        self.high_water = self.high_water.max(at + taken);
        Some(Allocation {
            user,
            inner: (u64::from(b), 0),
        })
    }

    fn free(&mut self, allocation: Allocation) {
        let b = allocation.inner.0 as u32;
        let Block { prev, next, .. } = self.blocks[b as usize];
        let mut merged = b;
        if prev != NONE && self.blocks[prev as usize].free {
            self.remove(prev);
            let size = self.blocks[b as usize].size;
            self.blocks[prev as usize].size += size;
            self.drop_block(b);
            merged = prev;
            self.steps += 1;
        }
        if next != NONE && self.blocks[next as usize].free {
            self.remove(next);
            self.blocks[merged as usize].size += self.blocks[next as usize].size;
            self.drop_block(next);
            self.steps += 1;
        }
        self.insert(merged);
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        let largest_free = match self.top_list() {
            None => 0,
            Some(l) => {
                if self.list_max[l].1 == 0 {
                    self.list_max[l] = self.scan_list(l);
                }
                self.list_max[l].0
            }
        };
        HeapStats {
            free_total: self.free_total,
            largest_free,
            high_water: self.high_water,
        }
    }

    fn check(&self, allocations: &[Allocation]) -> Result<(), String> {
        // Walk the physical chain from the block at offset 0.
        let live: Vec<u32> = {
            let mut spare = vec![false; self.blocks.len()];
            for &i in &self.spare {
                spare[i as usize] = true;
            }
            (0..self.blocks.len() as u32)
                .filter(|&i| !spare[i as usize])
                .collect()
        };
        let Some(&first) = live.iter().find(|&&i| self.blocks[i as usize].at == 0) else {
            return if live.is_empty() {
                Ok(())
            } else {
                Err("no block at offset 0".into())
            };
        };
        let (mut b, mut end, mut prev, mut prev_free, mut seen, mut free_seen) =
            (first, 0u64, NONE, false, 0usize, 0usize);
        while b != NONE {
            let block = self.blocks[b as usize];
            if block.at != end {
                return Err(format!(
                    "gap or overlap at {} (previous block ends at {end})",
                    block.at
                ));
            }
            if block.prev != prev {
                return Err(format!("block at {} links back wrongly", block.at));
            }
            if block.free && prev_free {
                return Err(format!(
                    "free block at {} not merged with the one before",
                    block.at
                ));
            }
            if block.free {
                let (fl, sl) = mapping(block.size);
                if self.lists[fl * SL + sl].get(block.slot as usize) != Some(&b) {
                    return Err(format!(
                        "free block at {} of {} not in its list",
                        block.at, block.size
                    ));
                }
                if self.sl_bitmap[fl] & (1 << sl) == 0 || self.fl_bitmap & (1 << fl) == 0 {
                    return Err(format!(
                        "bitmaps miss the list of the block at {}",
                        block.at
                    ));
                }
                free_seen += 1;
            }
            prev_free = block.free;
            end = block.at + block.size;
            prev = b;
            b = block.next;
            seen += 1;
        }
        if seen != live.len() {
            return Err(format!(
                "{seen} blocks chained, {} in the arena",
                live.len()
            ));
        }
        if end != self.arena {
            return Err(format!("blocks end at {end}, the arena at {}", self.arena));
        }
        let listed: usize = self.lists.iter().map(|l| l.len()).sum();
        if listed != free_seen || free_seen != self.free_blocks {
            return Err(format!("{listed} listed, {free_seen} free blocks"));
        }
        let largest = self
            .lists
            .iter()
            .flatten()
            .map(|&i| self.blocks[i as usize].size)
            .max();
        let known = self.top_list().map(|l| self.scan_list(l).0);
        if largest != known {
            return Err(format!(
                "largest free block {largest:?}, the top list holds {known:?}"
            ));
        }
        for (l, &(max, n)) in self.list_max.iter().enumerate() {
            if n != 0 && !self.lists[l].is_empty() && self.scan_list(l) != (max, n) {
                return Err(format!(
                    "list {l} keeps its largest as {max} x {n}, holds {:?}",
                    self.scan_list(l)
                ));
            }
        }
        if allocations.len() + free_seen != seen
            || allocations
                .iter()
                .any(|a| self.blocks.get(a.inner.0 as usize).is_none_or(|b| b.free))
        {
            return Err("the used blocks are not the live allocations".into());
        }
        Ok(())
    }
}
