//! Per-thread state of the model: what the trace says about each thread
//! (name, OS id, lifetime), its counters, and what the per-thread rule for
//! temporary allocations needs.

use super::counters::{Counters, Tracked};

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
