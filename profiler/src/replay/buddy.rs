//! A binary buddy allocator: blocks of power-of-two sizes from `min` up to
//! the largest power of two that fits the arena; a request takes the
//! smallest block that holds it and its header, splitting larger ones in
//! halves; a freed block merges with its buddy (at `offset ^ size`) while
//! the buddy is free. Steps: orders looked at, splits, merges.

use super::{Allocation, Heap, HeapStats};
use std::collections::BTreeSet;

/// The buddy heap.
pub struct BuddyHeap {
    min_order: u32,
    max_order: u32,
    header: u64,
    /// Free blocks by order.
    free: Vec<BTreeSet<u64>>,
    free_total: u64,
    high_water: u64,
    steps: u64,
}

impl BuddyHeap {
    /// A heap over the largest power of two at most `arena`, with blocks of
    /// at least `min` bytes (a power of two) and `header` bytes per block.
    pub fn new(arena: u64, min: u64, header: u64) -> Self {
        let min_order = min.max(8).next_power_of_two().trailing_zeros();
        let max_order = if arena == 0 {
            0
        } else {
            63 - arena.leading_zeros()
        };
        let mut h = BuddyHeap {
            min_order,
            max_order,
            header,
            free: (0..=max_order.max(min_order))
                .map(|_| BTreeSet::new())
                .collect(),
            free_total: 0,
            high_water: 0,
            steps: 0,
        };
        if max_order >= min_order {
            h.free[max_order as usize].insert(0);
            h.free_total = 1 << max_order;
        }
        h
    }
}

impl Heap for BuddyHeap {
    fn alloc(&mut self, size: u64, align: u64) -> Option<Allocation> {
        let need = (size.max(1) + self.header).max(align).next_power_of_two();
        let order = need.trailing_zeros().max(self.min_order);
        if order > self.max_order {
            self.steps += 1;
            return None;
        }
        let mut k = order;
        loop {
            self.steps += 1;
            if !self.free[k as usize].is_empty() {
                break;
            }
            if k == self.max_order {
                return None;
            }
            k += 1;
        }
        let at = self.free[k as usize].pop_first().expect("non-empty");
        while k > order {
            k -= 1;
            self.steps += 1;
            self.free[k as usize].insert(at + (1 << k));
        }
        self.free_total -= 1 << order;
        self.high_water = self.high_water.max(at + (1 << order));
        // Blocks are aligned to their size, so the user's bytes are aligned
        // to the header's alignment at least.
        let user = at + self.header;
        Some(Allocation {
            user,
            inner: (at, u64::from(order)),
        })
    }

    fn free(&mut self, block: Allocation) {
        let (mut at, k) = block.inner;
        let mut k = k as u32;
        self.free_total += 1 << k;
        self.steps += 1;
        while k < self.max_order {
            let buddy = at ^ (1 << k);
            if !self.free[k as usize].remove(&buddy) {
                break;
            }
            self.steps += 1;
            at = at.min(buddy);
            k += 1;
        }
        self.free[k as usize].insert(at);
    }

    fn take_steps(&mut self) -> u64 {
        std::mem::take(&mut self.steps)
    }

    fn stats(&mut self) -> HeapStats {
        HeapStats {
            free_total: self.free_total,
            largest_free: self
                .free
                .iter()
                .rposition(|s| !s.is_empty())
                .map_or(0, |k| 1 << k),
            high_water: self.high_water,
        }
    }

    fn check(&self, live: &[Allocation]) -> Result<(), String> {
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        for (k, set) in self.free.iter().enumerate() {
            for &at in set {
                if at % (1 << k) != 0 {
                    return Err(format!(
                        "free block at {at} not aligned to its size {}",
                        1u64 << k
                    ));
                }
                if k < self.max_order as usize && set.contains(&(at ^ (1 << k))) {
                    return Err(format!("free buddies at {at} of order {k} not merged"));
                }
                blocks.push((at, 1 << k));
            }
        }
        blocks.extend(live.iter().map(|b| (b.inner.0, 1u64 << b.inner.1)));
        blocks.sort();
        for w in blocks.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!("blocks {:?} and {:?} overlap", w[0], w[1]));
            }
        }
        let total: u64 = blocks.iter().map(|b| b.1).sum();
        let arena = if self.max_order >= self.min_order {
            1u64 << self.max_order
        } else {
            0
        };
        if total != arena {
            return Err(format!("blocks cover {total} of {arena} bytes"));
        }
        Ok(())
    }
}
