//! The counters kept for every aggregate of the model (the whole process,
//! each site, each thread), and how each knows its share of the global peak
//! without a second pass over the trace.
//!
//! The share at the peak is captured lazily. The model numbers its peaks:
//! every time the heap reaches a new maximum the *peak generation* goes up.
//! An aggregate remembers the generation of its last change. When it is
//! about to change and its generation is older than the current one, it has
//! not changed since the latest peak, so its live value *is* its value at
//! that peak and is copied into `at_peak_*` first. Reading an aggregate
//! applies the same rule. This costs O(1) per event, where heaptrack's
//! approach copies every site at every new peak.

/// What happened to one aggregate. In sampled mode every count and byte
/// total is an estimate (each sample weighted by its inverse probability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Blocks created: allocations, plus reallocations that returned a
    /// block.
    pub allocations: u64,
    /// Reallocation events (their new blocks also count in `allocations`).
    pub reallocations: u64,
    /// Blocks released: frees, plus the old blocks of reallocations.
    pub frees: u64,
    /// Requested bytes of the blocks created.
    pub bytes_allocated: u64,
    /// Requested bytes of the blocks released.
    pub bytes_freed: u64,
    /// Blocks live now (at the end, once the trace is read).
    pub live_blocks: u64,
    /// Requested bytes live now.
    pub live_bytes: u64,
    /// The most bytes this aggregate had live at once, at any time.
    pub max_live_bytes: u64,
    /// Blocks it had live at the moment of the global heap peak.
    pub at_peak_blocks: u64,
    /// Bytes it had live at the moment of the global heap peak.
    pub at_peak_bytes: u64,
    /// Temporary blocks: freed by the thread that allocated them before
    /// that thread allocated anything else.
    pub temporary: u64,
    /// Requested bytes of the temporary blocks.
    pub temporary_bytes: u64,
    /// Blocks released by another thread than the one that allocated them
    /// (ownership handed over: a queue, a channel, a cache evictor).
    pub remote_frees: u64,
    /// Their requested bytes.
    pub remote_bytes: u64,
    /// Recorded events that created or released blocks of this aggregate
    /// (equal to the event count in full mode; the sample count in sampled
    /// mode).
    pub events: u64,
}

impl Counters {
    /// Adds `other`'s counts to these. `max_live_bytes` is summed too,
    /// which makes it an upper bound for a group of aggregates.
    pub fn add(&mut self, other: &Counters) {
        self.allocations += other.allocations;
        self.reallocations += other.reallocations;
        self.frees += other.frees;
        self.bytes_allocated += other.bytes_allocated;
        self.bytes_freed += other.bytes_freed;
        self.live_blocks += other.live_blocks;
        self.live_bytes += other.live_bytes;
        self.max_live_bytes += other.max_live_bytes;
        self.at_peak_blocks += other.at_peak_blocks;
        self.at_peak_bytes += other.at_peak_bytes;
        self.temporary += other.temporary;
        self.temporary_bytes += other.temporary_bytes;
        self.remote_frees += other.remote_frees;
        self.remote_bytes += other.remote_bytes;
        self.events += other.events;
    }
}

/// Counters plus the peak generation of their last change.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tracked {
    counters: Counters,
    /// The peak generation when `counters.live_*` last changed; when it is
    /// older than the model's, `at_peak_*` are stale and equal to `live_*`.
    generation: u64,
}

impl Tracked {
    /// New counters, created at peak generation `generation` (with nothing
    /// live, so their share of every earlier peak was zero).
    pub(crate) fn new(generation: u64) -> Self {
        Tracked {
            counters: Counters::default(),
            generation,
        }
    }

    /// The counters for changing, after bringing the share at the peak up
    /// to date.
    pub(crate) fn update(&mut self, generation: u64) -> &mut Counters {
        if self.generation != generation {
            self.counters.at_peak_blocks = self.counters.live_blocks;
            self.counters.at_peak_bytes = self.counters.live_bytes;
            self.generation = generation;
        }
        &mut self.counters
    }

    /// The counters as they stand at peak generation `generation`.
    pub(crate) fn read(&self, generation: u64) -> Counters {
        let mut c = self.counters;
        if self.generation != generation {
            c.at_peak_blocks = c.live_blocks;
            c.at_peak_bytes = c.live_bytes;
        }
        c
    }
}

/// A block's weight: how many bytes and blocks one recorded event stands
/// for (the block itself in full mode, an estimate in sampled mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weight {
    /// Estimated bytes.
    pub bytes: u64,
    /// Estimated blocks (at least 1).
    pub blocks: u64,
}

impl Counters {
    /// Counts a block of `w` created.
    pub(crate) fn created(&mut self, w: Weight) {
        self.allocations += w.blocks;
        self.bytes_allocated += w.bytes;
        self.live_blocks += w.blocks;
        self.live_bytes += w.bytes;
        self.max_live_bytes = self.max_live_bytes.max(self.live_bytes);
        self.events += 1;
    }

    /// Counts a released block of `w` as released by another thread.
    pub(crate) fn released_remotely(&mut self, w: Weight) {
        self.remote_frees += w.blocks;
        self.remote_bytes += w.bytes;
    }

    /// Counts a block of `w` released.
    pub(crate) fn released(&mut self, w: Weight, temporary: bool) {
        self.frees += w.blocks;
        self.bytes_freed += w.bytes;
        self.live_blocks = self.live_blocks.saturating_sub(w.blocks);
        self.live_bytes = self.live_bytes.saturating_sub(w.bytes);
        if temporary {
            self.temporary += w.blocks;
            self.temporary_bytes += w.bytes;
        }
        self.events += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_at_the_peak_is_the_live_value_when_the_peak_was_reached() {
        let w = Weight {
            bytes: 10,
            blocks: 1,
        };
        let mut t = Tracked::new(0);
        t.update(0).created(w);
        // Peak 1 is reached with this aggregate at 10 bytes.
        assert_eq!(t.read(1).at_peak_bytes, 10);
        t.update(1).created(w);
        t.update(1).created(w);
        assert_eq!(t.read(1).at_peak_bytes, 10);
        assert_eq!(t.read(1).live_bytes, 30);
        // Peak 2 with 30 bytes live, then everything is freed.
        t.update(2).released(w, false);
        let c = t.read(2);
        assert_eq!((c.at_peak_bytes, c.at_peak_blocks), (30, 3));
        assert_eq!(c.live_bytes, 20);
        assert_eq!(c.max_live_bytes, 30);
    }
}
