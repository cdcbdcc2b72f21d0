//! Per-thread state of the model: what the trace says about each thread
//! (name, OS id, lifetime), its counters, and what the per-thread rule for
//! temporary allocations needs.

use super::counters::{Counters, Tracked};
use crate::hash::IdMap;

/// A thread of the traced process.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    /// The trace's number for the thread.
    pub thread: u64,
    /// The operating system's thread id (0 if no THREAD record was seen).
    pub os_tid: u64,
    /// The thread's name (empty if unknown).
    pub name: String,
    /// Ticks of its first recorded call.
    pub start_ticks: Option<u64>,
    /// Ticks when it ended, if it did before the trace ended.
    pub end_ticks: Option<u64>,
    /// Frees of addresses the model did not know as live (see
    /// `Totals::unknown_frees`).
    pub unknown_frees: u64,
    /// Blocks it released that another thread had allocated.
    pub foreign_frees: u64,
    /// Their requested bytes.
    pub foreign_bytes: u64,
}

/// A thread's entry in the model.
#[derive(Clone, Debug)]
pub(crate) struct ThreadEntry {
    pub(crate) info: ThreadInfo,
    /// Counters of the blocks this thread allocated (live bytes stay with
    /// the allocating thread when another thread frees them).
    pub(crate) tracked: Tracked,
    /// Serial of this thread's latest allocation, while no other
    /// allocation by the thread has followed it: a free of that block by
    /// this thread is temporary.
    pub(crate) last_alloc: Option<u64>,
    /// The scope the thread is in: its name's STRING id and instance.
    pub(crate) scope: [u64; 2],
}

impl ThreadEntry {
    pub(crate) fn new(thread: u64, generation: u64) -> Self {
        ThreadEntry {
            info: ThreadInfo {
                thread,
                os_tid: 0,
                name: String::new(),
                start_ticks: None,
                end_ticks: None,
                unknown_frees: 0,
                foreign_frees: 0,
                foreign_bytes: 0,
            },
            tracked: Tracked::new(generation),
            last_alloc: None,
            scope: [0, 0],
        }
    }
}

/// A thread with its counters, as the model reports it.
#[derive(Clone, Debug)]
pub struct ThreadStats {
    /// What the trace said about the thread.
    pub info: ThreadInfo,
    /// Its counters (blocks it allocated).
    pub counters: Counters,
}

/// Trace numbers below this are found by indexing a vector; memtally's own
/// traces number threads 1, 2, 3... in order of their first call, so every
/// lookup takes that path. Foreign traces (an RMM log's thread ids) may use
/// any number, and go through a hash map.
const DENSE: u64 = 1 << 16;

/// The model's threads by trace number. The model looks a thread up three
/// or four times per event; a `BTreeMap` did that in about 50 instructions
/// per lookup, an eighth of the model's time on a two-thread trace.
#[derive(Clone, Debug, Default)]
pub(crate) struct Threads {
    /// In order of first appearance.
    entries: Vec<ThreadEntry>,
    /// `dense[n]` is 1 + the index in `entries` of thread `n`, or 0.
    dense: Vec<u32>,
    /// The index in `entries` of threads numbered `DENSE` or above.
    sparse: IdMap<u64, u32>,
}

impl Threads {
    /// The index of `thread`'s entry, if it has one.
    #[inline]
    fn index(&self, thread: u64) -> Option<usize> {
        if thread < DENSE {
            match self.dense.get(thread as usize) {
                Some(&i) if i != 0 => Some(i as usize - 1),
                _ => None,
            }
        } else {
            self.sparse.get(&thread).map(|&i| i as usize)
        }
    }

    /// `thread`'s entry, if it has one.
    pub(crate) fn get(&self, thread: u64) -> Option<&ThreadEntry> {
        self.index(thread).map(|i| &self.entries[i])
    }

    /// `thread`'s entry, made (with counters of `generation`) if it has
    /// none yet.
    #[inline]
    pub(crate) fn entry(&mut self, thread: u64, generation: u64) -> &mut ThreadEntry {
        let i = match self.index(thread) {
            Some(i) => i,
            None => self.insert(thread, generation),
        };
        &mut self.entries[i]
    }

    #[cold]
    fn insert(&mut self, thread: u64, generation: u64) -> usize {
        let i = self.entries.len();
        self.entries.push(ThreadEntry::new(thread, generation));
        let slot = u32::try_from(i + 1).expect("fewer than 2^32 threads");
        if thread < DENSE {
            let n = thread as usize;
            if self.dense.len() <= n {
                self.dense.resize(n + 1, 0);
            }
            self.dense[n] = slot;
        } else {
            self.sparse.insert(thread, slot - 1);
        }
        i
    }

    /// Every entry, by thread number.
    pub(crate) fn by_number(&self) -> impl Iterator<Item = &ThreadEntry> + '_ {
        let mut order: Vec<&ThreadEntry> = self.entries.iter().collect();
        order.sort_unstable_by_key(|t| t.info.thread);
        order.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_numbers_find_their_own_entries() {
        let mut threads = Threads::default();
        let numbers = [3, 1, u64::MAX, DENSE, DENSE - 1, 0, 1 << 40];
        for (k, &n) in numbers.iter().enumerate() {
            threads.entry(n, 0).info.os_tid = k as u64 + 100;
        }
        for (k, &n) in numbers.iter().enumerate() {
            assert_eq!(threads.get(n).map(|t| t.info.os_tid), Some(k as u64 + 100));
            // A second lookup finds the entry rather than making another.
            assert_eq!(threads.entry(n, 7).info.thread, n);
        }
        assert_eq!(threads.entries.len(), numbers.len());
        for absent in [2, 4, DENSE + 1, 1 << 20] {
            assert!(threads.get(absent).is_none(), "{absent}");
        }
        let order: Vec<u64> = threads.by_number().map(|t| t.info.thread).collect();
        let mut sorted = numbers.to_vec();
        sorted.sort_unstable();
        assert_eq!(order, sorted);
    }
}
