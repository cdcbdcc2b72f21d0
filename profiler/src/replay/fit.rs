//! Free-list allocators over one or more regions: first fit, next fit,
//! best fit and worst fit over an address-ordered list with immediate
//! coalescing, and FreeRTOS's heap_2 (best fit from a size-ordered list,
//! never coalescing), heap_4 (first fit, address-ordered, coalescing on
//! insert) and heap_5 (heap_4 over several regions).
//!
//! Blocks carry a header of `header` bytes before the user's bytes; sizes
//! are rounded to `align`. Steps count what the real code does: free-list
//! nodes visited while searching (and, for the FreeRTOS heaps, while
//! inserting a freed block into the ordered list), splits and merges.

use super::{Heap, HeapStats};
use crate::hash::IdMap;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// The largest free block, for the policies that need no other order by
/// size (first, next and worst fit, heap_4/5): a max-heap of (size,
/// offset) with lazy deletion, cheaper than a second B-tree that every
/// split and merge would update. An entry is stale once its block is gone
/// or has another size; the top is known valid unless `dirty`.
#[derive(Default)]
struct Largest {
    heap: BinaryHeap<(u64, u64)>,
    dirty: bool,
}

impl Largest {
    fn insert(&mut self, at: u64, size: u64) {
        self.heap.push((size, at));
    }

    /// `free` (blocks by end offset) no longer holds the block (`at`,
    /// `size`).
    fn remove(&mut self, at: u64, size: u64, free: &BTreeMap<u64, u64>) {
        if self.heap.peek() == Some(&(size, at)) {
            self.heap.pop();
            self.dirty = true;
        }
        // Stale entries pile up below the top: rebuild now and then.
        if self.heap.len() > 2 * free.len() + 64 {
            self.heap = free.iter().map(|(&end, &s)| (s, end - s)).collect();
            self.dirty = false;
        }
    }

    /// The largest free block as (size, offset).
    fn get(&mut self, free: &BTreeMap<u64, u64>) -> Option<(u64, u64)> {
        while self.dirty {
            match self.heap.peek() {
                Some(&(size, at)) if free.get(&(at + size)) != Some(&size) => {
                    self.heap.pop();
                }
                _ => self.dirty = false,
            }
        }
        self.heap.peek().copied()
    }
}

/// Counts of free blocks by slot (an offset or a size in units), for the
/// rank of a block in an ordered list in O(log n) instead of walking it: a
/// Fenwick tree. Slots past its length share the last one (exact while the
/// arena has at most `MAX_SLOTS` units).
struct Ranks {
    tree: Vec<u32>,
}

const MAX_SLOTS: usize = 1 << 22;

impl Ranks {
    fn new(slots: u64) -> Self {
        Ranks {
            tree: vec![0; (slots as usize).clamp(1, MAX_SLOTS) + 1],
        }
    }

    fn slot(&self, i: u64) -> usize {
        (i as usize).min(self.tree.len() - 2) + 1
    }

    fn add(&mut self, i: u64, d: i32) {
        let mut k = self.slot(i);
        while k < self.tree.len() {
            self.tree[k] = self.tree[k].wrapping_add_signed(d);
            k += k & k.wrapping_neg();
        }
    }

    /// How many are in slots below `i`.
    fn below(&self, i: u64) -> u64 {
        let mut k = self.slot(i) - 1;
        let mut n = 0u64;
        while k > 0 {
            n += u64::from(self.tree[k]);
            k -= k & k.wrapping_neg();
        }
        n
    }
}

/// Which block a search takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The first that fits, from the lowest address.
    First,
    /// The first that fits, from where the last search stopped.
    Next,
    /// The smallest that fits.
    Best,
    /// The largest.
    Worst,
}

/// How the free list is kept, as the modelled code keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Address-ordered with boundary tags: freeing merges with the
    /// neighbours in O(1).
    Tagged,
    /// FreeRTOS heap_4/heap_5: address-ordered, and freeing walks the list
    /// to the block's place, merging there.
    FreeRtosOrdered,
    /// FreeRTOS heap_2: ordered by size, walked from the smallest; freed
    /// blocks are never merged.
    FreeRtosBySize,
}

/// A free-list heap.
pub struct FitHeap {
    policy: Policy,
    flavour: Flavour,
    header: u64,
    align: u64,
    /// The smallest remainder worth splitting off.
    min_split: u64,
    /// The regions: (start, end).
    regions: Vec<(u64, u64)>,
    /// Free blocks by their end offset, to their size (a block starts at
    /// end - size): a split takes the front of a block, which keeps its
    /// end, so a split changes a size in place instead of moving a key.
    free: BTreeMap<u64, u64>,
    /// Free blocks by (size, offset), for best fit and heap_2 (which
    /// search by size); kept only for them.
    by_size: BTreeSet<(u64, u64)>,
    /// The largest free block, for the others.
    largest: Largest,
    /// Keep `by_size` (else `largest`).
    sized: bool,
    free_total: u64,
    /// Free blocks by offset and by size, in units (FreeRTOS flavours).
    by_address: Ranks,
    by_size_rank: Ranks,
    /// User offset -> (block offset, block size).
    used: IdMap<u64, (u64, u64)>,
    used_total: u64,
    rover: u64,
    high_water: u64,
    steps: u64,
}

impl FitHeap {
    /// A heap over `regions` (sizes; laid out one after the other with a
    /// gap between them, so that blocks of two regions never merge).
    pub fn new(policy: Policy, flavour: Flavour, regions: &[u64], header: u64, align: u64) -> Self {
        let align = align.max(1);
        let mut h = FitHeap {
            policy,
            flavour,
            header,
            align,
            min_split: match flavour {
                // heapMINIMUM_BLOCK_SIZE: twice the block header.
                Flavour::FreeRtosOrdered | Flavour::FreeRtosBySize => (2 * header).max(align),
                Flavour::Tagged => (header + align).max(align),
            },
            regions: Vec::new(),
            free: BTreeMap::new(),
            by_size: BTreeSet::new(),
            largest: Largest::default(),
            sized: policy == Policy::Best || flavour == Flavour::FreeRtosBySize,
            free_total: 0,
            by_address: Ranks::new(0),
            by_size_rank: Ranks::new(0),
            used: IdMap::default(),
            used_total: 0,
            rover: 0,
            high_water: 0,
            steps: 0,
        };
        let span: u64 = regions.iter().map(|r| r / align * align + align).sum();
        match flavour {
            Flavour::FreeRtosOrdered => h.by_address = Ranks::new(span / align + 1),
            Flavour::FreeRtosBySize => h.by_size_rank = Ranks::new(span / align + 1),
            Flavour::Tagged => {}
        }
        let mut at = 0u64;
        for &size in regions {
            let size = size / align * align;
            if size > 0 {
                h.regions.push((at, at + size));
                h.insert_free(at, size);
                // A gap of one alignment unit keeps regions apart.
                at += size + align;
            }
        }
        h
    }

    fn insert_free(&mut self, at: u64, size: u64) {
        self.free.insert(at + size, size);
        if self.sized {
            self.by_size.insert((size, at));
        } else {
            self.largest.insert(at, size);
        }
        self.free_total += size;
        match self.flavour {
            Flavour::FreeRtosOrdered => self.by_address.add(at / self.align, 1),
            Flavour::FreeRtosBySize => self.by_size_rank.add(size / self.align, 1),
            Flavour::Tagged => {}
        }
    }

    fn remove_free(&mut self, at: u64, size: u64) {
        let removed = self.free.remove(&(at + size));
        debug_assert_eq!(removed, Some(size), "a free block");
        if self.sized {
            self.by_size.remove(&(size, at));
        } else {
            self.largest.remove(at, size, &self.free);
        }
        self.free_total -= size;
        match self.flavour {
            Flavour::FreeRtosOrdered => self.by_address.add(at / self.align, -1),
            Flavour::FreeRtosBySize => self.by_size_rank.add(size / self.align, -1),
            Flavour::Tagged => {}
        }
    }

    /// Takes `need` bytes from the front of the free block (`at`, `size`),
    /// leaving (`at + need`, `size - need`) free: as removing the block and
    /// inserting the rest, with no change to the map's keys.
    fn shrink_front(&mut self, at: u64, size: u64, need: u64) {
        let rest = size - need;
        *self.free.get_mut(&(at + size)).expect("a free block") = rest;
        if self.sized {
            self.by_size.remove(&(size, at));
            self.by_size.insert((rest, at + need));
        } else {
            self.largest.remove(at, size, &self.free);
            self.largest.insert(at + need, rest);
        }
        self.free_total -= need;
        match self.flavour {
            Flavour::FreeRtosOrdered => {
                self.by_address.add(at / self.align, -1);
                self.by_address.add((at + need) / self.align, 1);
            }
            Flavour::FreeRtosBySize => {
                self.by_size_rank.add(size / self.align, -1);
                self.by_size_rank.add(rest / self.align, 1);
            }
            Flavour::Tagged => {}
        }
    }

    /// The free block (`end - size`, `size`) has grown backwards to `at`,
    /// taking in the `added` bytes before it (its size in `free` already
    /// updated): the other indexes follow.
    fn absorbed(&mut self, at: u64, added: u64, end: u64, size: u64) {
        let old_start = end - size;
        let grown = end - at;
        if self.sized {
            self.by_size.remove(&(size, old_start));
            self.by_size.insert((grown, at));
        } else {
            self.largest.remove(old_start, size, &self.free);
            self.largest.insert(at, grown);
        }
        self.free_total += added;
        if self.flavour == Flavour::FreeRtosOrdered {
            self.by_address.add(old_start / self.align, -1);
            self.by_address.add(at / self.align, 1);
        }
    }

    /// The block size a request needs: header, size and alignment padding,
    /// rounded to the unit.
    fn need(&self, size: u64, align: u64) -> u64 {
        let pad = align.saturating_sub(self.align);
        let n = (size.max(1) + self.header + pad).div_ceil(self.align) * self.align;
        n.max(self.min_split)
    }

    fn search(&mut self, need: u64) -> Option<(u64, u64)> {
        match (self.policy, self.flavour) {
            (_, Flavour::FreeRtosBySize) => {
                // Walk the size-ordered list from the smallest block.
                let found = self.by_size.range((need, 0)..).next().copied();
                let rank = self.by_size_rank.below(need / self.align);
                self.steps += rank + 1;
                found.map(|(size, at)| (at, size))
            }
            (Policy::First, _) => {
                for (&end, &size) in &self.free {
                    self.steps += 1;
                    if size >= need {
                        return Some((end - size, size));
                    }
                }
                None
            }
            (Policy::Next, _) => {
                // The blocks that begin at the rover or after it, then those
                // before it. A free block that spans the rover (merged
                // across it since) begins before it: it comes last.
                let rover = self.rover;
                let mut from_rover = self.free.range(rover + 1..).peekable();
                let spanning = from_rover
                    .next_if(|&(&end, &size)| end - size < rover)
                    .map(|(&end, &size)| (end, size));
                let mut found = None;
                for (end, size) in from_rover
                    .map(|(&e, &s)| (e, s))
                    .chain(self.free.range(..=rover).map(|(&e, &s)| (e, s)))
                    .chain(spanning)
                {
                    self.steps += 1;
                    if size >= need {
                        found = Some((end - size, size));
                        break;
                    }
                }
                if let Some((at, _)) = found {
                    self.rover = at;
                }
                found
            }
            (Policy::Best, _) => {
                // An address-ordered list is walked to its end.
                self.steps += self.free.len() as u64;
                self.by_size.range((need, 0)..).next().map(|&(s, a)| (a, s))
            }
            (Policy::Worst, _) => {
                self.steps += self.free.len() as u64;
                self.largest
                    .get(&self.free)
                    .filter(|(s, _)| *s >= need)
                    .map(|(s, a)| (a, s))
            }
        }
    }
}

impl Heap for FitHeap {
    fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let need = self.need(size, align);
        let (at, block) = self.search(need)?;
        let taken = if block - need >= self.min_split {
            self.steps += 1;
            self.shrink_front(at, block, need);
            need
        } else {
            self.remove_free(at, block);
            block
        };
        let pad = align.saturating_sub(self.align);
        let user = (at + self.header + pad) / align.max(1) * align.max(1);
        let user = user.max(at + self.header);
        self.used.insert(user, (at, taken));
        self.used_total += taken;
        self.high_water = self.high_water.max(at + taken);
        Some(user)
    }

    fn free(&mut self, user: u64) {
        let Some((mut at, mut size)) = self.used.remove(&user) else {
            return;
        };
        self.used_total -= size;
        match self.flavour {
            Flavour::FreeRtosBySize => {
                // Inserted at its place by size; never merged.
                self.steps += self.by_size_rank.below(size / self.align) + 1;
            }
            Flavour::FreeRtosOrdered | Flavour::Tagged => {
                self.steps += if self.flavour == Flavour::FreeRtosOrdered {
                    self.by_address.below(at / self.align) + 1
                } else {
                    1
                };
                // One search finds both neighbours: the first free block
                // that ends at or after `at` is the one before if it ends
                // exactly there; the next (or that one, if not) is the one
                // after if it begins where this block ends. The one after
                // takes in what is freed before it without changing its
                // key (its end): its size is updated where it lies.
                let end = at + size;
                let mut from = self.free.range_mut(at..);
                let (prev, next) = match from.next() {
                    Some((&e, &mut s)) if e == at => (Some(s), from.next()),
                    other => (None, other),
                };
                let start = at - prev.unwrap_or(0);
                let grown = next
                    .filter(|(e, s)| **e - **s == end)
                    .map(|(&e, s)| (e, std::mem::replace(s, e - start)));
                if let Some(psize) = prev {
                    self.remove_free(start, psize);
                    size += psize;
                    self.steps += 1;
                }
                if let Some((nend, nsize)) = grown {
                    self.absorbed(start, size, nend, nsize);
                    self.steps += 1;
                    return;
                }
                at = start;
            }
        }
        self.insert_free(at, size);
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        let largest = if self.sized {
            self.by_size.iter().next_back().map_or(0, |b| b.0)
        } else {
            self.largest.get(&self.free).map_or(0, |b| b.0)
        };
        HeapStats {
            free_total: self.free_total,
            largest_free: largest,
            high_water: self.high_water,
        }
    }

    fn check(&self) -> Result<(), String> {
        // Free and used blocks tile the regions exactly, without overlap.
        let mut blocks: Vec<(u64, u64, bool)> = self
            .free
            .iter()
            .map(|(&end, &s)| (end - s, s, true))
            .collect();
        blocks.extend(self.used.values().map(|&(a, s)| (a, s, false)));
        blocks.sort();
        let mut total = 0;
        for w in blocks.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!("blocks {:?} and {:?} overlap", w[0], w[1]));
            }
        }
        for &(a, s, free) in &blocks {
            if !self.regions.iter().any(|&(lo, hi)| a >= lo && a + s <= hi) {
                return Err(format!("block at {a} of {s} outside the regions"));
            }
            total += s;
            if free && self.flavour != Flavour::FreeRtosBySize {
                // Coalescing: no two free blocks touch.
                if self
                    .free
                    .range(a + s + 1..)
                    .next()
                    .is_some_and(|(&end, &ns)| end - ns == a + s)
                {
                    return Err(format!("free blocks at {a} and {} not merged", a + s));
                }
            }
        }
        // The Fenwick trees that count list ranks agree with the lists
        // (exact while the arena has at most MAX_SLOTS units).
        let exact = self
            .regions
            .last()
            .is_none_or(|r| r.1 / self.align < MAX_SLOTS as u64);
        if exact && self.flavour == Flavour::FreeRtosOrdered {
            for (i, (&end, &size)) in self.free.iter().enumerate() {
                let rank = self.by_address.below((end - size) / self.align);
                if rank != i as u64 {
                    return Err(format!(
                        "the free block at {} ranks {rank} by address, its place is {i}",
                        end - size
                    ));
                }
            }
        }
        if exact && self.flavour == Flavour::FreeRtosBySize {
            // In size order: the blocks smaller than one are those before
            // the first of its size.
            let (mut smaller, mut last) = (0u64, None);
            for (i, &(size, at)) in self.by_size.iter().enumerate() {
                if last != Some(size) {
                    smaller = i as u64;
                    last = Some(size);
                }
                let rank = self.by_size_rank.below(size / self.align);
                if rank != smaller {
                    return Err(format!(
                        "the free block at {at} ranks {rank} by size, {smaller} are smaller"
                    ));
                }
            }
        }
        let largest = self.free.values().max().copied();
        let known = if self.sized {
            self.by_size.last().map(|b| b.0)
        } else {
            let valid = |&&(size, at): &&(u64, u64)| self.free.get(&(at + size)) == Some(&size);
            self.largest.heap.iter().filter(valid).map(|e| e.0).max()
        };
        if largest != known {
            return Err(format!(
                "largest free block {largest:?}, the index knows {known:?}"
            ));
        }
        let arena: u64 = self.regions.iter().map(|(lo, hi)| hi - lo).sum();
        if total != arena || self.free_total + self.used_total != arena {
            return Err(format!(
                "accounting: blocks {total}, free {} + used {} vs arena {arena}",
                self.free_total, self.used_total
            ));
        }
        Ok(())
    }
}
