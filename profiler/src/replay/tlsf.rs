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

use super::{Heap, HeapStats};
use crate::hash::IdMap;
use std::collections::BTreeMap;

/// Second-level subdivisions: 2^SLI lists per power of two.
const SLI: u32 = 4;
const SL: usize = 1 << SLI;
/// The smallest block.
const MIN_BLOCK: u64 = 16;

/// The TLSF heap.
pub struct TlsfHeap {
    header: u64,
    align: u64,
    arena: u64,
    fl_bitmap: u64,
    sl_bitmap: [u32; 64],
    /// The free lists (unordered, as TLSF's linked lists: O(1) insertion
    /// and removal by the position kept in `at`).
    lists: Vec<Vec<u64>>,
    /// A free block's place in its list.
    at: IdMap<u64, usize>,
    /// Every block by offset: (size, free); and by end, the offset (the
    /// boundary tags that find the physical neighbours).
    phys: IdMap<u64, (u64, bool)>,
    ends: IdMap<u64, u64>,
    /// User offset -> block offset.
    used: IdMap<u64, u64>,
    /// Free block sizes, for statistics only.
    sizes: BTreeMap<u64, u32>,
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
            at: IdMap::default(),
            phys: IdMap::default(),
            ends: IdMap::default(),
            used: IdMap::default(),
            sizes: BTreeMap::new(),
            free_total: 0,
            high_water: 0,
            steps: 0,
        };
        if h.arena >= MIN_BLOCK {
            h.set_block(0, h.arena, true);
            h.insert(0, h.arena);
        }
        h
    }

    fn set_block(&mut self, at: u64, size: u64, free: bool) {
        self.phys.insert(at, (size, free));
        self.ends.insert(at + size, at);
    }

    fn drop_block(&mut self, at: u64) -> u64 {
        let (size, _) = self.phys.remove(&at).expect("a block");
        self.ends.remove(&(at + size));
        size
    }

    fn insert(&mut self, at: u64, size: u64) {
        let (fl, sl) = mapping(size);
        let list = &mut self.lists[fl * SL + sl];
        self.at.insert(at, list.len());
        list.push(at);
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
        *self.sizes.entry(size).or_default() += 1;
        self.free_total += size;
        self.steps += 1;
    }

    fn remove(&mut self, at: u64, size: u64) {
        let (fl, sl) = mapping(size);
        let list = &mut self.lists[fl * SL + sl];
        let i = self.at.remove(&at).expect("a listed block");
        list.swap_remove(i);
        if let Some(&moved) = list.get(i) {
            self.at.insert(moved, i);
        }
        if list.is_empty() {
            self.sl_bitmap[fl] &= !(1 << sl);
            if self.sl_bitmap[fl] == 0 {
                self.fl_bitmap &= !(1 << fl);
            }
        }
        if let Some(n) = self.sizes.get_mut(&size) {
            *n -= 1;
            if *n == 0 {
                self.sizes.remove(&size);
            }
        }
        self.free_total -= size;
        self.steps += 1;
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
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let pad = align.saturating_sub(self.align);
        let need =
            ((size.max(1) + self.header + pad).div_ceil(self.align) * self.align).max(MIN_BLOCK);
        let (fl, sl) = self.find(need)?;
        let at = *self.lists[fl * SL + sl].last().expect("a non-empty list");
        let (block, _) = self.phys[&at];
        self.remove(at, block);
        self.drop_block(at);
        let taken = if block - need >= MIN_BLOCK {
            self.steps += 1;
            self.set_block(at + need, block - need, true);
            self.insert(at + need, block - need);
            need
        } else {
            block
        };
        self.set_block(at, taken, false);
        let user = (at + self.header + pad) / align.max(1) * align.max(1);
        let user = user.max(at + self.header);
        self.used.insert(user, at);
        self.high_water = self.high_water.max(at + taken);
        Some(user)
    }

    fn free(&mut self, user: u64) {
        let Some(mut at) = self.used.remove(&user) else {
            return;
        };
        let mut size = self.drop_block(at);
        if let Some(&prev) = self.ends.get(&at)
            && let Some(&(psize, true)) = self.phys.get(&prev)
        {
            self.remove(prev, psize);
            self.drop_block(prev);
            at = prev;
            size += psize;
            self.steps += 1;
        }
        if let Some(&(nsize, true)) = self.phys.get(&(at + size)) {
            self.remove(at + size, nsize);
            self.drop_block(at + size);
            size += nsize;
            self.steps += 1;
        }
        self.set_block(at, size, true);
        self.insert(at, size);
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        HeapStats {
            free_total: self.free_total,
            largest_free: self.sizes.keys().next_back().copied().unwrap_or(0),
            high_water: self.high_water,
        }
    }

    fn check(&self) -> Result<(), String> {
        let mut end = 0;
        let mut prev_free = false;
        let ordered: BTreeMap<u64, (u64, bool)> = self.phys.iter().map(|(&a, &b)| (a, b)).collect();
        for (&at, &(size, free)) in &ordered {
            if at != end {
                return Err(format!(
                    "gap or overlap at {at} (previous block ends at {end})"
                ));
            }
            if free && prev_free {
                return Err(format!("free block at {at} not merged with the one before"));
            }
            if free {
                let (fl, sl) = mapping(size);
                if !self.lists[fl * SL + sl].contains(&at)
                    || self
                        .at
                        .get(&at)
                        .is_none_or(|&i| self.lists[fl * SL + sl][i] != at)
                {
                    return Err(format!("free block at {at} of {size} not in its list"));
                }
                if self.sl_bitmap[fl] & (1 << sl) == 0 || self.fl_bitmap & (1 << fl) == 0 {
                    return Err(format!("bitmaps miss the list of the block at {at}"));
                }
            }
            prev_free = free;
            end = at + size;
        }
        if self.ends.len() != self.phys.len() {
            return Err(format!(
                "{} boundary tags for {} blocks",
                self.ends.len(),
                self.phys.len()
            ));
        }
        if !self.phys.is_empty() && end != self.arena {
            return Err(format!("blocks end at {end}, the arena at {}", self.arena));
        }
        let listed: usize = self.lists.iter().map(|l| l.len()).sum();
        let free_blocks = self.phys.values().filter(|b| b.1).count();
        if listed != free_blocks {
            return Err(format!("{listed} listed, {free_blocks} free blocks"));
        }
        Ok(())
    }
}
