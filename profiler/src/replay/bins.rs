//! The free blocks of the models that search by size (best fit, and
//! FreeRTOS's heap_2) by size: the distinct sizes in an index keyed by
//! size (a [`SizeMap`], weighted by the numbers of blocks for heap_2,
//! whose ranks count them), each size's blocks in a bin.
//!
//! Why bins: a fragmented heap holds thousands of free blocks of few
//! distinct sizes (replaying a python3 trace, heap_2's list held 41,000
//! blocks on average, and 5 to 90 sizes at any time). One index of every
//! block keyed by (size, offset) paid a search of a thousand chunks on
//! each insertion and removal; the index of sizes is a chunk or two, and a
//! bin's block is at hand.
//!
//! - heap_2 ([`Within::Newest`]) takes the newest block of a size, and
//!   never takes out another (it never merges): each size's bin is a
//!   stack. Its sorted insertion walks past every smaller block, so its
//!   index of sizes is weighted by the numbers of blocks: a rank there is
//!   the number of smaller blocks.
//! - Best fit ([`Within::Lowest`]) takes the lowest offset of a size, and a
//!   merge takes out any block. Most sizes have one block (a split leaves a
//!   remainder of a new size, soon taken or merged), so the index holds a
//!   size's only block as its value, and only sizes with more have a bin:
//!   a min-heap of offsets, whose removals are lazy. A block taken out
//!   leaves its entry behind; at the top of the heap an entry is checked
//!   against the address order (the caller's `is_free`) and dropped if its
//!   block is no longer free. The counts are exact, so a bin always has a
//!   live entry; when a removal leaves more than twice as many entries as
//!   live blocks (plus 16), the heap is rebuilt from the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::sizemap::SizeMap;
use crate::hash::IdMap;

/// Which block of a size a search takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Within {
    /// The one freed last (FreeRTOS heap_2 inserts a block before the
    /// others of its size).
    Newest,
    /// The one at the lowest offset (address-ordered best fit).
    Lowest,
}

/// Best fit's index value for a size with more than one block (whose
/// blocks are in a bin); offsets stay far below it.
const MANY: u64 = u64::MAX;

/// A best-fit size's blocks, lowest offset first.
struct LowestFirst {
    count: u64,
    heap: BinaryHeap<Reverse<u64>>,
}

/// Free blocks by size.
pub struct SizeBins {
    within: Within,
    /// The sizes that have free blocks. heap_2's are valued by how many
    /// (weighted: ranks count blocks); best fit's by the offset of their
    /// only block, or [`MANY`].
    sizes: SizeMap,
    /// heap_2's blocks of each size, newest last.
    stacks: IdMap<u64, Vec<u64>>,
    /// Best fit's blocks of each size that has more than one.
    heaps: IdMap<u64, LowestFirst>,
    /// Bins emptied, kept for their allocations.
    spare_stacks: Vec<Vec<u64>>,
    spare_heaps: Vec<BinaryHeap<Reverse<u64>>>,
    len: usize,
}

impl SizeBins {
    pub fn new(within: Within) -> Self {
        SizeBins {
            within,
            sizes: match within {
                Within::Newest => SizeMap::weighted(),
                Within::Lowest => SizeMap::default(),
            },
            stacks: IdMap::default(),
            heaps: IdMap::default(),
            spare_stacks: Vec::new(),
            spare_heaps: Vec::new(),
            len: 0,
        }
    }

    /// Adds the free block (`at`, `size`); for heap_2, how many blocks are
    /// smaller (its insertion walks past them: it goes in before the
    /// others of its size).
    pub fn insert(&mut self, size: u64, at: u64) -> Option<u64> {
        self.len += 1;
        match self.within {
            Within::Newest => Some(self.insert_newest(size, at)),
            Within::Lowest => {
                self.insert_lowest(size, at);
                None
            }
        }
    }

    fn insert_newest(&mut self, size: u64, at: u64) -> u64 {
        let (place, held) = self.sizes.locate(size);
        let smaller = self.sizes.rank_at(place);
        match held {
            Some(n) => {
                self.sizes.set_at(place, n + 1);
                self.stacks.get_mut(&size).expect("a stack").push(at);
            }
            None => {
                self.sizes.insert_at(place, size, 1);
                let mut stack = self.spare_stacks.pop().unwrap_or_default();
                stack.push(at);
                self.stacks.insert(size, stack);
            }
        }
        smaller
    }

    fn insert_lowest(&mut self, size: u64, at: u64) {
        let (place, held) = self.sizes.locate(size);
        match held {
            None => {
                self.sizes.insert_at(place, size, at);
            }
            Some(MANY) => {
                let bin = self.heaps.get_mut(&size).expect("a bin");
                bin.count += 1;
                bin.heap.push(Reverse(at));
            }
            Some(only) => {
                self.sizes.set_at(place, MANY);
                let mut heap = self.spare_heaps.pop().unwrap_or_default();
                heap.push(Reverse(only));
                heap.push(Reverse(at));
                self.heaps.insert(size, LowestFirst { count: 2, heap });
            }
        }
    }

    /// Takes out the free block (`at`, `size`); `is_free` tells whether a
    /// block is still free once this one is not (for best fit's lazy
    /// removals).
    pub fn remove(&mut self, size: u64, at: u64, is_free: impl Fn(u64, u64) -> bool) {
        self.len -= 1;
        match self.within {
            Within::Newest => {
                let (place, value) = self.sizes.locate(size);
                let value = value.expect("a free block of that size");
                let stack = self.stacks.get_mut(&size).expect("a stack");
                // heap_2 takes out only the newest, which it found (any
                // other is looked for, for callers that take out others).
                if stack.last() == Some(&at) {
                    stack.pop();
                } else {
                    let i = stack.iter().rposition(|&b| b == at);
                    stack.remove(i.expect("a free block of that size"));
                }
                if value == 1 {
                    self.sizes.remove_at(place);
                    let stack = self.stacks.remove(&size).expect("a stack");
                    self.spare_stacks.push(stack);
                } else {
                    self.sizes.set_at(place, value - 1);
                }
            }
            Within::Lowest => {
                let (place, value) = self.sizes.locate(size);
                let value = value.expect("a free block of that size");
                if value != MANY {
                    debug_assert_eq!(value, at, "the only free block of its size");
                    self.sizes.remove_at(place);
                    return;
                }
                let bin = self.heaps.get_mut(&size).expect("a bin");
                bin.count -= 1;
                if bin.count == 1 {
                    // One block left: back into the index.
                    let only = bin
                        .heap
                        .iter()
                        .map(|e| e.0)
                        .find(|&o| is_free(o, size))
                        .expect("the block left");
                    self.sizes.set_at(place, only);
                    let mut heap = self.heaps.remove(&size).expect("a bin").heap;
                    heap.clear();
                    self.spare_heaps.push(heap);
                } else if bin.heap.peek() == Some(&Reverse(at)) {
                    bin.heap.pop();
                } else if bin.heap.len() as u64 > 2 * bin.count + 16 {
                    // More stale entries than live ones: keep the live,
                    // each once.
                    let mut v = std::mem::take(&mut bin.heap).into_vec();
                    v.retain(|e| is_free(e.0, size));
                    v.sort_unstable();
                    v.dedup();
                    bin.heap = BinaryHeap::from(v);
                }
            }
        }
    }

    /// The block a search for `need` bytes takes, as (offset, size): the
    /// smallest size that fits, and the newest or lowest block of it; and,
    /// for heap_2, how many blocks are smaller (those its walk passes).
    /// `is_free` tells whether a block is still free (best fit drops the
    /// entries of blocks taken out since).
    pub fn search(
        &mut self,
        need: u64,
        is_free: impl Fn(u64, u64) -> bool,
    ) -> (Option<(u64, u64)>, u64) {
        if self.within == Within::Newest {
            let (found, smaller) = self.sizes.at_least_ranked(need);
            let found = found.map(|(size, _)| {
                let stack = &self.stacks[&size];
                (*stack.last().expect("a block"), size)
            });
            return (found, smaller);
        }
        let found = self.sizes.at_least(need).map(|(size, value)| {
            if value != MANY {
                return (value, size);
            }
            let heap = &mut self.heaps.get_mut(&size).expect("a bin").heap;
            loop {
                let Reverse(at) = *heap.peek().expect("a live entry");
                if is_free(at, size) {
                    break (at, size);
                }
                heap.pop();
            }
        });
        (found, 0)
    }

    /// The largest free block's size.
    pub fn largest(&self) -> Option<u64> {
        self.sizes.last().map(|(size, _)| size)
    }

    /// Every free block as (offset, size), each once: those of best fit's
    /// bins that `is_free` (for tests).
    pub fn blocks(&self, is_free: impl Fn(u64, u64) -> bool) -> Vec<(u64, u64)> {
        let mut all = Vec::new();
        for (size, value) in self.sizes.iter() {
            match self.within {
                Within::Newest => {
                    let stack = self.stacks.get(&size).map_or(&[][..], |v| &v[..]);
                    all.extend(stack.iter().map(|&at| (at, size)));
                }
                Within::Lowest if value != MANY => all.push((value, size)),
                Within::Lowest => {
                    let heap = self.heaps.get(&size).map(|b| &b.heap);
                    let mut live: Vec<u64> = heap
                        .into_iter()
                        .flatten()
                        .map(|e| e.0)
                        .filter(|&at| is_free(at, size))
                        .collect();
                    live.sort_unstable();
                    live.dedup();
                    all.extend(live.into_iter().map(|at| (at, size)));
                }
            }
        }
        all.sort_unstable();
        all
    }

    /// Checks the index of sizes against the bins (for tests).
    pub fn check(&self, is_free: impl Fn(u64, u64) -> bool) -> Result<(), String> {
        self.sizes.check()?;
        let blocks = self.blocks(&is_free);
        let count = |size: u64| blocks.iter().filter(|b| b.1 == size).count() as u64;
        let mut binned = 0;
        for (size, value) in self.sizes.iter() {
            // How many blocks the size has by its count, and by its bin.
            let (counted, in_bin) = match self.within {
                Within::Newest => (value, self.stacks.get(&size).map(|v| v.len() as u64)),
                Within::Lowest if value != MANY => (1, Some(1)),
                Within::Lowest => {
                    let count = self.heaps.get(&size).map(|b| b.count);
                    (count.unwrap_or(0), count.filter(|&n| n >= 2))
                }
            };
            binned += usize::from(self.within == Within::Newest || value == MANY);
            if in_bin != Some(counted) || count(size) != counted {
                return Err(format!(
                    "size {size}: {counted} blocks counted, {in_bin:?} in its bin, {} free",
                    count(size)
                ));
            }
        }
        let bins = self.stacks.len() + self.heaps.len();
        if blocks.len() != self.len || bins != binned {
            return Err(format!(
                "{} blocks known, {} found; {bins} bins, {binned} sizes binned",
                self.len,
                blocks.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// Best fit's bin of one size: removals below the top leave stale
    /// entries until they outnumber the live (plus 16) and the heap is
    /// rebuilt; at one block left the bin goes and the block is the
    /// index's value; a second block brings the bin back.
    #[test]
    fn best_fit_bins_rebuild_and_go() {
        let mut bins = SizeBins::new(Within::Lowest);
        let mut free: BTreeSet<u64> = (0..40).map(|k| 16 * k).collect();
        for &at in &free {
            bins.insert(8, at);
        }
        let heap_len = |b: &SizeBins| b.heaps.get(&8).map(|bin| bin.heap.len());
        assert_eq!(heap_len(&bins), Some(40));
        // Take out the highest blocks (never the top, the lowest).
        for k in (1..40).rev() {
            free.remove(&(16 * k));
            bins.remove(8, 16 * k, |a, s| s == 8 && free.contains(&a));
            let live = free.len();
            let entries = heap_len(&bins);
            match live {
                12..=39 => assert_eq!(entries, Some(40)),
                // 40 entries > 2 * 11 + 16: rebuilt to the 11 live.
                2..=11 => assert_eq!(entries, Some(11)),
                _ => assert_eq!(entries, None),
            }
            bins.check(|a, s| s == 8 && free.contains(&a)).unwrap();
            assert_eq!(
                bins.search(8, |a, s| s == 8 && free.contains(&a)),
                (Some((0, 8)), 0)
            );
        }
        assert_eq!(bins.sizes.get(8), Some(0), "the only block, in the index");
        bins.insert(8, 48);
        free.insert(48);
        assert_eq!(heap_len(&bins), Some(2));
        assert_eq!(bins.sizes.get(8), Some(MANY));
        bins.check(|a, s| s == 8 && free.contains(&a)).unwrap();
    }

    /// Is (`a`, `s`) among the `free` blocks (offset -> (size, order))?
    fn holds(free: &BTreeMap<u64, (u64, u64)>, a: u64, s: u64) -> bool {
        free.get(&a).is_some_and(|f| f.0 == s)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random insertions and removals (any block, so that best fit's
        /// lazy entries go stale, come back and are rebuilt away): every
        /// search takes the block a walk of a sorted list takes, and
        /// heap_2's ranks count the smaller blocks.
        #[test]
        fn take_what_a_sorted_list_takes(
            ops in proptest::collection::vec((0u8..3, 0u64..120, 1u64..12, 1u64..14), 1..1500),
            newest in any::<bool>(),
        ) {
            let within = if newest { Within::Newest } else { Within::Lowest };
            let mut ours = SizeBins::new(within);
            // The list: (size, order, offset), the order among equal sizes
            // newest first (heap_2) or lowest offset first (best fit).
            let mut list: BTreeSet<(u64, u64, u64)> = BTreeSet::new();
            let mut free: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            let mut inserted = 0u64;
            for (op, at, size, need) in ops {
                match op {
                    0 | 1 => {
                        if let std::collections::btree_map::Entry::Vacant(v) = free.entry(at) {
                            inserted += 1;
                            let order = if newest { u64::MAX - inserted } else { at };
                            v.insert((size, order));
                            list.insert((size, order, at));
                            let smaller = list.range(..(size, 0, 0)).count() as u64;
                            prop_assert_eq!(ours.insert(size, at), newest.then_some(smaller));
                        }
                    }
                    _ => {
                        if let Some((size, order)) = free.remove(&at) {
                            list.remove(&(size, order, at));
                            ours.remove(size, at, |a, s| holds(&free, a, s));
                        }
                    }
                }
                let is_free = |a, s| holds(&free, a, s);
                prop_assert!(ours.check(is_free).is_ok(), "{:?}", ours.check(is_free));
                let first = list.range((need, 0, 0)..).next().map(|&(s, _, a)| (a, s));
                let smaller = if newest { list.range(..(need, 0, 0)).count() as u64 } else { 0 };
                prop_assert_eq!(ours.search(need, is_free), (first, smaller));
                prop_assert_eq!(ours.largest(), list.last().map(|b| b.0));
                let mut blocks: Vec<(u64, u64)> = list.iter().map(|&(s, _, a)| (a, s)).collect();
                blocks.sort_unstable();
                prop_assert_eq!(ours.blocks(is_free), blocks);
            }
        }
    }
}
