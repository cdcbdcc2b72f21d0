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

use super::bins::{SizeBins, Within};
use super::ordered::FreeBlocks;
use super::{Allocation, Heap, HeapStats};

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
    /// FreeRTOS heap_2: ordered by size, walked from the smallest; a block
    /// goes in before those of its size (the newest of a size first);
    /// freed blocks are never merged.
    FreeRtosBySize,
}

/// A free-list heap.
pub struct FitHeap {
    policy: Policy,
    flavour: Flavour,
    header: u64,
    align: u64,
    /// The smallest remainder worth splitting off (the FreeRTOS heaps
    /// split only past it: heapMINIMUM_BLOCK_SIZE).
    min_split: u64,
    /// The regions: (start, end).
    regions: Vec<(u64, u64)>,
    /// Free blocks in address order (for every flavour but heap_2, which
    /// neither merges nor searches by address: `addressed`).
    free: FreeBlocks,
    /// Free blocks by size, for best fit and heap_2 (which search by
    /// size: `sized`); kept only for them.
    by_size: SizeBins,
    free_total: u64,
    /// Bytes in used blocks.
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
        // FreeRTOS rounds its block header (heapSTRUCT_SIZE) up to the
        // alignment.
        let header = match flavour {
            Flavour::Tagged => header,
            Flavour::FreeRtosOrdered | Flavour::FreeRtosBySize => header.div_ceil(align) * align,
        };
        let mut h = FitHeap {
            policy,
            flavour,
            header,
            align,
            min_split: match flavour {
                // heapMINIMUM_BLOCK_SIZE: twice the block header.
                Flavour::FreeRtosOrdered | Flavour::FreeRtosBySize => 2 * header,
                Flavour::Tagged => header + align,
            },
            regions: Vec::new(),
            // First and next fit count the blocks their searches pass,
            // heap_4's sorted insertion its rank; best fit searches its
            // size bins, so its address order is asked for neighbours and
            // whether a block is still free, never for a large block.
            free: if matches!(policy, Policy::First | Policy::Next)
                || flavour == Flavour::FreeRtosOrdered
            {
                FreeBlocks::ranked()
            } else if policy == Policy::Best {
                FreeBlocks::without_max()
            } else {
                FreeBlocks::default()
            },
            by_size: SizeBins::new(if flavour == Flavour::FreeRtosBySize {
                Within::Newest
            } else {
                Within::Lowest
            }),
            free_total: 0,
            used_total: 0,
            rover: 0,
            high_water: 0,
            steps: 0,
        };
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

    /// Adds a free block; for heap_2, how many blocks of its size order
    /// come before it (those its insertion walks past).
    fn insert_free(&mut self, at: u64, size: u64) -> Option<u64> {
        if self.addressed() {
            self.free.insert(at + size, size);
        }
        self.free_total += size;
        if self.sized() {
            return self.by_size.insert(size, at);
        }
        None
    }

    /// Keeps free blocks in address order.
    fn addressed(&self) -> bool {
        self.flavour != Flavour::FreeRtosBySize
    }

    /// Keeps free blocks in size order.
    fn sized(&self) -> bool {
        self.policy == Policy::Best || self.flavour == Flavour::FreeRtosBySize
    }

    /// Takes out the free block (`at`, `size`).
    fn remove_free(&mut self, at: u64, size: u64) {
        if self.addressed() {
            let removed = self.free.remove(at + size);
            debug_assert_eq!(removed, Some(size), "a free block");
        }
        if self.sized() {
            self.remove_by_size(at, size);
        }
        self.free_total -= size;
    }

    /// Takes the block (`at`, `size`) out of the size order, once the
    /// address order no longer holds it (best fit's bins ask the address
    /// order which of their entries are still free; heap_2's never ask).
    fn remove_by_size(&mut self, at: u64, size: u64) {
        let free = &self.free;
        self.by_size.remove(size, at, |a, s| free.holds(a, s));
    }

    /// Takes `need` bytes from the front of the free block (`at`, `size`),
    /// leaving (`at + need`, `size - need`) free: as removing the block and
    /// inserting the rest, with no change to its place by address; for
    /// heap_2, how many smaller blocks the rest's insertion walks past.
    fn shrink_front(&mut self, at: u64, size: u64, need: u64) -> Option<u64> {
        let rest = size - need;
        if self.addressed() {
            self.free.set_size(at + size, rest);
        }
        self.free_total -= need;
        if self.sized() {
            self.remove_by_size(at, size);
            return self.by_size.insert(rest, at + need);
        }
        None
    }

    /// The free block (`end - size`, `size`) grows backwards to `at`,
    /// taking in the bytes freed before it, in place (heap_2 never merges).
    fn absorb(&mut self, at: u64, end: u64, size: u64) {
        debug_assert!(self.addressed(), "heap_2 never merges");
        let grown = end - at;
        self.free.set_size(end, grown);
        if self.sized() {
            self.remove_by_size(end - size, size);
            self.by_size.insert(grown, at);
        }
        self.free_total += grown - size;
    }

    /// The block size a request needs: header, size and alignment padding,
    /// rounded to the unit (and, with boundary tags, at least a block
    /// that can be split off; the FreeRTOS heaps have no such floor).
    fn need(&self, size: u64, align: u64) -> u64 {
        let pad = align.saturating_sub(self.align);
        let n = (size.max(1) + self.header + pad).div_ceil(self.align) * self.align;
        if self.flavour == Flavour::Tagged {
            n.max(self.min_split)
        } else {
            n
        }
    }

    /// Whether taking `need` bytes from a free block of `block` splits off
    /// the rest.
    fn splits(&self, block: u64, need: u64) -> bool {
        if self.flavour == Flavour::Tagged {
            block - need >= self.min_split
        } else {
            block - need > self.min_split
        }
    }

    /// The free block a request of `need` bytes takes: (offset, size).
    fn search(&mut self, need: u64) -> Option<(u64, u64)> {
        match (self.policy, self.flavour) {
            (_, Flavour::FreeRtosBySize) => {
                // Walk the size-ordered list from the smallest block.
                let (found, smaller) = self.by_size.search(need, |_, _| true);
                self.steps += smaller + 1;
                found
            }
            (Policy::First, _) => {
                let (found, passed) = self.free.first_fit(need);
                self.steps += passed + u64::from(found.is_some());
                found.map(|(end, size)| (end - size, size))
            }
            (Policy::Next, _) => {
                // The blocks that begin at the rover or after it, then those
                // before it, then one that spans it (merged across it
                // since).
                let (found, passed) = self.free.next_fit(self.rover, need);
                self.steps += passed + u64::from(found.is_some());
                let found = found.map(|(end, size)| (end - size, size));
                if let Some((at, _)) = found {
                    self.rover = at;
                }
                found
            }
            (Policy::Best, _) => {
                // An address-ordered list is walked to its end.
                self.steps += self.free.len() as u64;
                let free = &self.free;
                let (found, _) = self.by_size.search(need, |a, s| free.holds(a, s));
                found
            }
            (Policy::Worst, _) => {
                self.steps += self.free.len() as u64;
                self.free
                    .largest()
                    .filter(|(s, _)| *s >= need)
                    .map(|(size, end)| (end - size, size))
            }
        }
    }
}

impl Heap for FitHeap {
    fn alloc(&mut self, size: u64, align: u64) -> Option<Allocation> {
        let need = self.need(size, align);
        let (at, block) = self.search(need)?;
        let taken = if self.splits(block, need) {
            // heap_2 inserts the rest into its size-ordered list, walking
            // past the smaller blocks (the newest of a size goes first, so
            // those are all that come before it); the address-ordered
            // lists keep it in the block's place (FreeRTOS V11's heap_4
            // links it there).
            let before = self.shrink_front(at, block, need);
            self.steps += before.unwrap_or(0) + 1;
            need
        } else {
            self.remove_free(at, block);
            block
        };
        let pad = align.saturating_sub(self.align);
        let user = (at + self.header + pad) / align.max(1) * align.max(1);
        let user = user.max(at + self.header);
        self.used_total += taken;
        self.high_water = self.high_water.max(at + taken);
        Some(Allocation {
            user,
            inner: (at, taken),
        })
    }

    fn free(&mut self, block: Allocation) {
        let (mut at, mut size) = block.inner;
        self.used_total -= size;
        match self.flavour {
            Flavour::FreeRtosBySize => {
                // Inserted at its place by size (walking past the smaller
                // blocks: below); never merged.
            }
            Flavour::FreeRtosOrdered | Flavour::Tagged => {
                // One search finds both neighbours: the first free block
                // that ends at or after `at` is the one before if it ends
                // exactly there; the next (or that one, if not) is the one
                // after if it begins where this block ends. The one after
                // takes in what is freed before it without changing its
                // key (its end): its size is updated where it lies. heap_4
                // walks its list to the block's place: the same search
                // counts the blocks it passes.
                let end = at + size;
                let [first, second] = if self.flavour == Flavour::FreeRtosOrdered {
                    let (neighbours, passed) = self.free.at_or_after_counted(at);
                    self.steps += passed + 1;
                    neighbours
                } else {
                    self.steps += 1;
                    self.free.at_or_after(at)
                };
                let (prev, next) = match first {
                    Some((e, s)) if e == at => (Some(s), second),
                    other => (None, other),
                };
                let start = at - prev.unwrap_or(0);
                if let Some(psize) = prev {
                    self.remove_free(start, psize);
                    self.steps += 1;
                }
                if let Some((nend, nsize)) = next.filter(|(e, s)| e - s == end) {
                    self.absorb(start, nend, nsize);
                    self.steps += 1;
                    return;
                }
                size = end - start;
                at = start;
            }
        }
        if let Some(smaller) = self.insert_free(at, size) {
            self.steps += smaller + 1;
        }
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        let largest = if self.sized() {
            self.by_size.largest().unwrap_or(0)
        } else {
            self.free.largest_size()
        };
        HeapStats {
            free_total: self.free_total,
            largest_free: largest,
            high_water: self.high_water,
        }
    }

    fn check(&self, live: &[Allocation]) -> Result<(), String> {
        // Free and used blocks tile the regions exactly, without overlap.
        let is_free = |a: u64, s: u64| self.free.holds(a, s);
        let free: Vec<(u64, u64)> = if self.addressed() {
            self.free.check()?;
            self.free.iter().map(|(end, s)| (end - s, s)).collect()
        } else {
            self.by_size.blocks(is_free)
        };
        let mut blocks: Vec<(u64, u64, bool)> = free.iter().map(|&(at, s)| (at, s, true)).collect();
        blocks.extend(live.iter().map(|b| (b.inner.0, b.inner.1, false)));
        blocks.sort();
        let mut total = 0;
        for w in blocks.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!("blocks {:?} and {:?} overlap", w[0], w[1]));
            }
            // Coalescing: no two free blocks touch.
            if self.addressed() && w[0].2 && w[1].2 && w[0].0 + w[0].1 == w[1].0 {
                return Err(format!(
                    "free blocks at {} and {} not merged",
                    w[0].0, w[1].0
                ));
            }
        }
        for &(a, s, _) in &blocks {
            if !self.regions.iter().any(|&(lo, hi)| a >= lo && a + s <= hi) {
                return Err(format!("block at {a} of {s} outside the regions"));
            }
            total += s;
        }
        if self.sized() {
            self.by_size.check(is_free)?;
        }
        // Both orders hold the same blocks (heap_2 has only the one).
        if self.sized() && self.addressed() && self.by_size.blocks(is_free) != free {
            return Err("the blocks by size are not the free blocks".into());
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
