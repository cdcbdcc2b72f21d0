//! Device and network memory events: the entry point through which the
//! gpu-shim (crate `memtally-gpu-shim`, linked into `libmemtally.so`) puts
//! what it intercepts (`cuMemAlloc`, `cudaMalloc`, ...) into the trace,
//! beside the heap's events and through the same per-thread rings.
//!
//! An event is made only while recording (any mode: device allocations are
//! few and large, so sampled mode records every one too), on the calling
//! thread's ring, with the calling thread's stack for allocations and
//! failures. The API name is interned once per call; a caller that makes
//! many events per second would want a cache, and the shim's callers do
//! not.

pub use crate::trace::device::{HOST, memory, op};

use crate::{record, thread};

/// One device-memory event, as the shim saw it.
#[derive(Clone, Copy, Debug)]
pub struct DeviceEvent<'a> {
    /// `op::*`.
    pub op: u8,
    /// `memory::*`.
    pub memory: u8,
    /// The device's ordinal ([`HOST`] for host memory).
    pub device: u32,
    /// The API the program called (`cudaMalloc`, `cuMemAlloc_v2`, ...).
    pub api: &'a str,
    /// The address (0 for a failure).
    pub address: u64,
    /// Bytes (asked for, for a failure; 0 for a free).
    pub size: u64,
}

/// Is anything being recorded? (A shim skips its bookkeeping when not.)
#[inline]
pub fn recording() -> bool {
    record::active()
}

/// Records `event` on the calling thread's timeline; does nothing when not
/// recording. Allocations and failures carry the calling thread's stack,
/// memtally's own frames (the shim's among them) trimmed.
pub fn record(event: &DeviceEvent<'_>) {
    if !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::device(heap, event);
    }
}
