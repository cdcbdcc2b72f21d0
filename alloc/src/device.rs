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
    /// Bytes (asked for, for a failure; 0 for a free; the level, for a
    /// gauge).
    pub size: u64,
    /// The physical allocation a map or a retain refers to (0 otherwise).
    pub handle: u64,
}

/// Is anything being recorded? (A shim skips its bookkeeping when not.)
#[inline]
pub fn recording() -> bool {
    record::active()
}

/// Stamps a release the caller is about to make (a free, an unmap): a
/// free must be stamped before the memory is released, since once it is,
/// another thread may be handed the same address and record its
/// allocation, which must come after the free in the trace's time order.
/// Until [`end_release`], the trace's watermark stays below the stamp (the
/// release may take long). Returns the stamp for [`record_at`]; 0 when not
/// recording.
pub fn begin_release() -> u64 {
    if !record::active() {
        return 0;
    }
    thread::own_heap().map_or(0, record::hold)
}

/// Ends [`begin_release`], after the release's event is recorded (or
/// not: the call failed).
pub fn end_release() {
    if let Some(heap) = thread::own_heap() {
        record::unhold(heap);
    }
}

/// Records `event` on the calling thread's timeline, stamped now; does
/// nothing when not recording. Allocations and failures carry the calling
/// thread's stack, memtally's own frames (the shim's among them) trimmed.
pub fn record(event: &DeviceEvent<'_>) {
    record_at(event, 0);
}

/// Records `event` stamped with `ticks` (from [`begin_release`]; 0: now).
pub fn record_at(event: &DeviceEvent<'_>, ticks: u64) {
    if !record::active() {
        return;
    }
    if let Some(heap) = thread::own_heap() {
        record::device(heap, event, ticks);
    }
}
