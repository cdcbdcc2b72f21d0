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

/// Live blocks by address.
#[derive(Clone, Debug, Default)]
pub struct LiveMap {
    blocks: IdMap<u64, LiveBlock>,
}

impl LiveMap {
    /// Adds a block; returns the block that was live at the same address,
    /// if any (its free was never recorded).
    pub(crate) fn insert(&mut self, address: u64, block: LiveBlock) -> Option<LiveBlock> {
        self.blocks.insert(address, block)
    }

    /// Removes and returns the block at `address`.
    pub(crate) fn remove(&mut self, address: u64) -> Option<LiveBlock> {
        self.blocks.remove(&address)
    }

    /// The block at `address`.
    pub fn get(&self, address: u64) -> Option<&LiveBlock> {
        self.blocks.get(&address)
    }

    /// How many blocks are live (recorded blocks, not weighted).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when nothing is live.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Every live block with its address, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LiveBlock)> + '_ {
        self.blocks.iter().map(|(&a, b)| (a, b))
    }
}
