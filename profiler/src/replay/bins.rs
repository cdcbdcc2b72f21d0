//! The free blocks of the models that search by size (best fit, and
//! FreeRTOS's heap_2) in one bin per distinct size, the sizes themselves
//! in a [`Chunked`] index keyed by size whose values are the bins' numbers
//! of blocks.
//!
//! Why bins: a fragmented heap holds thousands of free blocks of few
//! distinct sizes (replaying a python3 trace, heap_2's list held 41,000
//! blocks on average, and 5 to 90 sizes at any time). One index of every
//! block keyed by (size, offset) paid a search of a thousand chunks on
//! each insertion and removal; the index of sizes is a chunk or two, and a
//! bin's block is at hand.
//!
//! Within a bin:
//! - heap_2 ([`Within::Newest`]) takes the newest block of a size, and
//!   never takes out another (it never merges): a stack. Its sorted
//!   insertion walks past every smaller block, so its index of sizes is
//!   weighted: a rank there is the number of smaller blocks.
//! - Best fit ([`Within::Lowest`]) takes the lowest offset of a size, and a
//!   merge takes out any block: a min-heap of offsets, whose removals are
//!   lazy. A block taken out leaves its entry behind; at the top of the
//!   heap an entry is checked against the address-ordered list (the
//!   caller's `is_free`) and dropped if its block is no longer free. The
//!   counts are exact, so a bin with blocks always has a live entry, and a
//!   bin's heap is rebuilt when its stale entries outnumber the live.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::ordered::Chunked;
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

/// One size's blocks: how many, and their offsets.
struct Bin {
    count: u64,
    offsets: Offsets,
}

enum Offsets {
    Stack(Vec<u64>),
    Heap(BinaryHeap<Reverse<u64>>),
}

/// Free blocks by size.
pub struct SizeBins {
    within: Within,
    /// The sizes that have free blocks; for heap_2, each valued by how
    /// many (1 for best fit, which needs no ranks).
    sizes: Chunked,
    bins: IdMap<u64, Bin>,
    /// Emptied bins' offsets, kept for their allocations.
    spare: Vec<Offsets>,
    len: usize,
}

impl SizeBins {
    pub fn new(within: Within) -> Self {
        SizeBins {
            within,
            sizes: match within {
                Within::Newest => Chunked::weighted(),
                Within::Lowest => Chunked::default(),
            },
            bins: IdMap::default(),
            spare: Vec::new(),
            len: 0,
        }
    }

    /// Whether searches count the smaller blocks (heap_2's walk).
    fn ranked(&self) -> bool {
        self.within == Within::Newest
    }

    /// Adds the free block (`at`, `size`); for heap_2, how many blocks are
    /// smaller (its insertion walks past them: it goes in before the
    /// others of its size).
    pub fn insert(&mut self, size: u64, at: u64) -> Option<u64> {
        self.len += 1;
        let ranked = self.ranked();
        let (bin, smaller) = match self.bins.get_mut(&size) {
            Some(bin) => {
                bin.count += 1;
                let smaller = if ranked {
                    let (_, smaller) = self.sizes.at_least_ranked(size);
                    self.sizes.set_size(size, bin.count);
                    smaller
                } else {
                    0
                };
                (bin, smaller)
            }
            None => {
                let smaller = self.sizes.insert(size, 1).unwrap_or(0);
                let offsets = self.spare.pop().unwrap_or(match self.within {
                    Within::Newest => Offsets::Stack(Vec::new()),
                    Within::Lowest => Offsets::Heap(BinaryHeap::new()),
                });
                let bin = self.bins.entry(size).or_insert(Bin { count: 1, offsets });
                (bin, smaller)
            }
        };
        match &mut bin.offsets {
            Offsets::Stack(v) => v.push(at),
            Offsets::Heap(h) => h.push(Reverse(at)),
        }
        ranked.then_some(smaller)
    }

    /// Takes out the free block (`at`, `size`); `is_free` tells whether a
    /// block is still free once this one is not (for best fit's lazy
    /// removals).
    pub fn remove(&mut self, size: u64, at: u64, is_free: impl Fn(u64, u64) -> bool) {
        self.len -= 1;
        let ranked = self.ranked();
        let bin = self.bins.get_mut(&size).expect("a bin of that size");
        bin.count -= 1;
        if bin.count == 0 {
            self.sizes.remove(size);
            let mut offsets = self.bins.remove(&size).expect("a bin").offsets;
            match &mut offsets {
                Offsets::Stack(v) => v.clear(),
                Offsets::Heap(h) => h.clear(),
            }
            self.spare.push(offsets);
            return;
        }
        if ranked {
            self.sizes.set_size(size, bin.count);
        }
        match &mut bin.offsets {
            Offsets::Stack(v) => {
                // heap_2 takes out only the newest, which it found.
                if v.last() == Some(&at) {
                    v.pop();
                } else if let Some(i) = v.iter().rposition(|&b| b == at) {
                    v.remove(i);
                }
            }
            Offsets::Heap(h) => {
                if h.peek() == Some(&Reverse(at)) {
                    h.pop();
                } else if h.len() as u64 > 2 * bin.count + 16 {
                    // More stale entries than live ones: keep the live,
                    // each once.
                    let mut v = std::mem::take(h).into_vec();
                    v.retain(|e| is_free(e.0, size));
                    v.sort_unstable();
                    v.dedup();
                    *h = BinaryHeap::from(v);
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
        let (found, smaller) = if self.ranked() {
            self.sizes.at_least_ranked(need)
        } else {
            (self.sizes.at_least(need), 0)
        };
        let Some((size, _)) = found else {
            return (None, smaller);
        };
        let at = match &mut self.bins.get_mut(&size).expect("a bin").offsets {
            Offsets::Stack(v) => *v.last().expect("a block"),
            Offsets::Heap(h) => loop {
                let Reverse(at) = *h.peek().expect("a live entry");
                if is_free(at, size) {
                    break at;
                }
                h.pop();
            },
        };
        (Some((at, size)), smaller)
    }

    /// The largest free block's size.
    pub fn largest(&self) -> Option<u64> {
        self.sizes.last().map(|(size, _)| size)
    }

    /// Every free block as (offset, size), each once: those of best fit's
    /// bins that `is_free` (for tests).
    pub fn blocks(&self, is_free: impl Fn(u64, u64) -> bool) -> Vec<(u64, u64)> {
        let mut all = Vec::new();
        for (&size, bin) in &self.bins {
            let offsets: Vec<u64> = match &bin.offsets {
                Offsets::Stack(v) => v.clone(),
                Offsets::Heap(h) => {
                    let mut live: Vec<u64> = h
                        .iter()
                        .map(|e| e.0)
                        .filter(|&at| is_free(at, size))
                        .collect();
                    live.sort_unstable();
                    live.dedup();
                    live
                }
            };
            all.extend(offsets.into_iter().map(|at| (at, size)));
        }
        all.sort_unstable();
        all
    }

    /// Checks the counts against the bins (for tests).
    pub fn check(&self, is_free: impl Fn(u64, u64) -> bool) -> Result<(), String> {
        self.sizes.check()?;
        let blocks = self.blocks(is_free);
        let mut counted: IdMap<u64, u64> = IdMap::default();
        for &(_, size) in &blocks {
            *counted.entry(size).or_default() += 1;
        }
        let mut want: Vec<(u64, u64)> = counted.into_iter().collect();
        want.sort_unstable();
        let mut bins: Vec<(u64, u64)> = self.bins.iter().map(|(&s, b)| (s, b.count)).collect();
        bins.sort_unstable();
        // heap_2's index of sizes holds their counts, best fit's a 1 each.
        let sizes: Vec<(u64, u64)> = self.sizes.iter().collect();
        let indexed = sizes.len() == want.len()
            && sizes.iter().zip(&want).all(|(&(s, n), &(size, count))| {
                s == size && n == if self.ranked() { count } else { 1 }
            });
        if !indexed || bins != want || blocks.len() != self.len {
            return Err(format!(
                "sizes counted {sizes:?}, bins hold {want:?}; {} blocks known",
                self.len
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
                            let is_free = |a, s| free.get(&a).is_some_and(|f| f.0 == s);
                            ours.remove(size, at, is_free);
                        }
                    }
                }
                let is_free = |a, s| free.get(&a).is_some_and(|f: &(u64, u64)| f.0 == s);
                prop_assert!(ours.check(is_free).is_ok(), "{:?}", ours.check(is_free));
                let first = list.range((need, 0, 0)..).next().map(|&(s, _, a)| (a, s));
                let smaller = if newest { list.range(..(need, 0, 0)).count() as u64 } else { 0 };
                prop_assert_eq!(ours.search(need, is_free), (first, smaller));
                prop_assert_eq!(ours.largest(), list.last().map(|b| b.0));
            }
        }
    }
}
