//! The live-allocation map: every block allocated and not yet freed, by
//! address, with what the views need to say where it came from.
//!
//! The model's memory grows with this map (and with the number of distinct
//! stacks), never with the number of events.

use super::counters::Weight;
use crate::hash::IdMap;
use crate::stacks::StackId;

/// A block that is still allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveBlock {
    /// Requested size in bytes.
    pub size: u64,
    /// The allocating call's stack.
    pub stack: StackId,
    /// Ticks when it was allocated.
    pub ticks: u64,
    /// The trace's number of the thread that allocated it.
    pub thread: u64,
    /// What it stands for (itself in full mode; an estimate when sampled).
    pub weight: Weight,
    /// The allocation's sequence number in the trace (0 for the first
    /// block created); identifies the block across address reuse.
    pub serial: u64,
    /// The scope instance it was allocated in (0: none).
    pub instance: u64,
}

/// What a leak scan said of a live block (`Model::leak_class`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeakClass {
    /// No leak scan saw it (none ran, or it was allocated after the last).
    #[default]
    Unscanned,
    /// Something outside leaked blocks pointed into it.
    Reachable,
    /// Only leaked blocks pointed into it.
    Indirect,
    /// Nothing pointed into it (or it heads a leaked cycle).
    Direct,
}

/// Live blocks by address, in [`SHARDS`] hash maps chosen by address:
/// a map of a million blocks that grows rehashes all of them at once, and
/// the live dashboard's ingest does that under the lock a frame waits for
/// (a 58 ms frame in `tui-bench`); a shard rehashes about a sixteenth.
/// Shards of equal shares would all reach their next capacity together
/// and rehash in the same moment, so shard i takes a share proportional to
/// 2^(i/16): as blocks accumulate, the shards cross their thresholds one
/// after another, a sixteenth of a doubling apart.
#[derive(Clone, Debug)]
pub struct LiveMap {
    shards: Vec<IdMap<u64, LiveBlock>>,
    /// Shard i takes the addresses whose mixed bits fall below `bounds[i]`
    /// (and at or above `bounds[i - 1]`).
    bounds: [u64; SHARDS],
}

/// Maps in a [`LiveMap`].
const SHARDS: usize = 16;

impl Default for LiveMap {
    fn default() -> Self {
        let shares: Vec<f64> = (0..SHARDS)
            .map(|i| (i as f64 / SHARDS as f64).exp2())
            .collect();
        let total: f64 = shares.iter().sum();
        let mut bounds = [u64::MAX; SHARDS];
        let mut below = 0.0;
        for (i, share) in shares.iter().enumerate().take(SHARDS - 1) {
            below += share / total;
            bounds[i] = (below * u64::MAX as f64) as u64;
        }
        LiveMap {
            shards: (0..SHARDS).map(|_| IdMap::default()).collect(),
            bounds,
        }
    }
}

impl LiveMap {
    /// The shard of `address`: its bits above the 16-byte alignment, mixed
    /// so that blocks of one size class (a stride) spread over the shards.
    fn shard(&self, address: u64) -> usize {
        let x = (address >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.bounds.partition_point(|&b| b <= x).min(SHARDS - 1)
    }

    /// Adds a block; returns the block that was live at the same address,
    /// if any (its free was never recorded).
    pub(crate) fn insert(&mut self, address: u64, block: LiveBlock) -> Option<LiveBlock> {
        let i = self.shard(address);
        self.shards[i].insert(address, block)
    }

    /// Removes and returns the block at `address`.
    pub(crate) fn remove(&mut self, address: u64) -> Option<LiveBlock> {
        let i = self.shard(address);
        self.shards[i].remove(&address)
    }

    /// The block at `address`.
    pub fn get(&self, address: u64) -> Option<&LiveBlock> {
        self.shards[self.shard(address)].get(&address)
    }

    /// The live block that holds the byte at `address`, looking back at
    /// most `reach` bytes for its start, word by word (blocks start on a
    /// word): its start and the block. For an address inside a block, such
    /// as a watched word, which the map, keyed by start, cannot find
    /// directly; `reach` bounds the lookups (one per word).
    pub fn containing(&self, address: u64, reach: u64) -> Option<(u64, &LiveBlock)> {
        let lowest = address.saturating_sub(reach);
        let mut start = address & !7;
        loop {
            if let Some(b) = self.get(start)
                && address < start.saturating_add(b.size.max(1))
            {
                return Some((start, b));
            }
            if start < lowest + 8 {
                return None;
            }
            start -= 8;
        }
    }

    /// How many blocks are live (recorded blocks, not weighted).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// True when nothing is live.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// Every live block with its address, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LiveBlock)> + '_ {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(&a, b)| (a, b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_holding_an_address_is_found_from_inside_it() {
        let mut m = LiveMap::default();
        m.insert(0x1000, block(64));
        m.insert(0x1040, block(8));
        assert_eq!(m.containing(0x1000, 4096).map(|(a, _)| a), Some(0x1000));
        assert_eq!(m.containing(0x1038, 4096).map(|(a, _)| a), Some(0x1000));
        assert_eq!(m.containing(0x103f, 4096).map(|(a, _)| a), Some(0x1000));
        assert_eq!(m.containing(0x1044, 4096).map(|(a, _)| a), Some(0x1040));
        // Past the second block's 8 bytes: in no block (the first ends
        // before it).
        assert_eq!(m.containing(0x1048, 4096).map(|(a, _)| a), None);
        // Out of reach.
        assert_eq!(m.containing(0x1038, 16).map(|(a, _)| a), None);
        assert_eq!(m.containing(0x8, 4096).map(|(a, _)| a), None);
    }

    fn block(size: u64) -> LiveBlock {
        LiveBlock {
            size,
            stack: 1,
            ticks: 0,
            thread: 1,
            weight: Weight::default(),
            serial: 0,
            instance: 0,
        }
    }

    #[test]
    fn blocks_of_one_size_class_spread_over_the_shards_by_their_shares() {
        let mut live = LiveMap::default();
        for i in 0..4096u64 {
            assert!(live.insert(0x7f00_0000_0000 + i * 64, block(64)).is_none());
        }
        assert_eq!(live.len(), 4096);
        // Shares grow from the first shard to the last, within 2x.
        let (first, last) = (live.shards[0].len(), live.shards[SHARDS - 1].len());
        assert!(first > 4096 / SHARDS / 2, "the first shard holds {first}");
        assert!(
            last > first && last < 3 * first,
            "shards hold {first} and {last}"
        );
        assert_eq!(
            live.insert(0x7f00_0000_0040, block(8)).map(|b| b.size),
            Some(64)
        );
        assert_eq!(live.remove(0x7f00_0000_0040).map(|b| b.size), Some(8));
        assert!(live.get(0x7f00_0000_0040).is_none());
        assert_eq!(live.iter().count(), 4095);
    }
}
