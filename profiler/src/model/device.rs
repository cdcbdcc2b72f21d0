//! Device and network memory: what the gpu-shim saw (`EventKind::Device`),
//! kept apart from the heap's counters (a GPU's gigabytes are not heap
//! bytes, and a device address may equal a host one).
//!
//! Blocks are keyed by (host side, address): a free names the address
//! only, and `cuMemFree` frees device, managed and pool memory alike, so
//! every device-side kind shares one address space, as CUDA's unified
//! addressing makes it. Per device: live and peak bytes (overall and per
//! memory kind), allocations, frees, failures; per (device, site): what it
//! allocated and holds. Frees of addresses never seen allocated (memory
//! allocated before an attach) are counted, never guessed at.

use std::collections::{BTreeMap, HashMap};

use memtally_alloc::trace::device::{self, memory, op};

use crate::stacks::StackId;

/// Failures kept with their stacks (the rest are counted).
pub const MAX_FAILURES: usize = 1000;

/// One live device block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceBlock {
    /// Its address.
    pub address: u64,
    /// `trace::device::memory::*`.
    pub memory: u8,
    /// The device (`trace::device::HOST`: host memory).
    pub device: u32,
    /// Bytes.
    pub size: u64,
    /// Where it was allocated.
    pub stack: StackId,
    /// STRING id of the API called.
    pub api: u64,
    /// The allocating thread.
    pub thread: u64,
    /// Ticks of the allocation.
    pub ticks: u64,
}

/// Counts of one memory kind on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindTotals {
    /// Bytes live now.
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// Allocations made.
    pub allocations: u64,
    /// Bytes allocated in all.
    pub bytes_allocated: u64,
}

/// One device's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTotals {
    /// All kinds together.
    pub all: KindTotals,
    /// Ticks of the peak of `all`.
    pub peak_ticks: u64,
    /// Per memory kind (`memory::*`; the last entry counts other kinds).
    pub by_memory: [KindTotals; memory::COUNT + 1],
    /// Frees seen.
    pub frees: u64,
    /// Failed allocations.
    pub failures: u64,
    /// Bytes the failed allocations asked for.
    pub failed_bytes: u64,
}

/// What one site allocated on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceSite {
    /// Allocations made.
    pub allocations: u64,
    /// Bytes allocated in all.
    pub bytes_allocated: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Bytes live now.
    pub live_bytes: u64,
    /// The most bytes live at once.
    pub max_live_bytes: u64,
    /// STRING id of the API of its first allocation.
    pub api: u64,
    /// Memory kind of its first allocation.
    pub memory: u8,
}

/// A failed allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceFailure {
    /// Ticks.
    pub ticks: u64,
    /// The thread.
    pub thread: u64,
    /// The device.
    pub device: u32,
    /// `memory::*`.
    pub memory: u8,
    /// STRING id of the API called.
    pub api: u64,
    /// Bytes asked for.
    pub size: u64,
    /// Where.
    pub stack: StackId,
}

/// The device-memory part of the analysis model.
#[derive(Clone, Debug, Default)]
pub struct DeviceMemory {
    live: HashMap<(bool, u64), DeviceBlock>,
    devices: BTreeMap<u32, DeviceTotals>,
    sites: HashMap<(u32, StackId), DeviceSite>,
    failures: Vec<DeviceFailure>,
    unknown_frees: u64,
    events: u64,
}

/// A device event, as the model takes it.
#[derive(Clone, Copy, Debug)]
pub struct DeviceEvent {
    /// Ticks.
    pub ticks: u64,
    /// The thread.
    pub thread: u64,
    /// `op::*`.
    pub op: u8,
    /// `memory::*`.
    pub memory: u8,
    /// The device.
    pub device: u32,
    /// STRING id of the API.
    pub api: u64,
    /// Address.
    pub address: u64,
    /// Bytes.
    pub size: u64,
    /// Stack.
    pub stack: StackId,
}

impl DeviceMemory {
    /// Applies one event.
    pub fn apply(&mut self, e: &DeviceEvent) {
        self.events += 1;
        match e.op {
            op::ALLOC => self.allocated(e),
            op::FREE => self.freed(e),
            op::FAILED => {
                let d = self.devices.entry(e.device).or_default();
                d.failures += 1;
                d.failed_bytes = d.failed_bytes.saturating_add(e.size);
                if self.failures.len() < MAX_FAILURES {
                    self.failures.push(DeviceFailure {
                        ticks: e.ticks,
                        thread: e.thread,
                        device: e.device,
                        memory: e.memory,
                        api: e.api,
                        size: e.size,
                        stack: e.stack,
                    });
                }
            }
            // An operation of a later format: counted as an event only.
            _ => {}
        }
    }

    fn allocated(&mut self, e: &DeviceEvent) {
        let key = (device::host_side(e.memory), e.address);
        // Allocated again while live: its free was not seen; the old
        // block goes first, so that nothing counts twice.
        self.take(key);
        let block = DeviceBlock {
            address: e.address,
            memory: e.memory,
            device: e.device,
            size: e.size,
            stack: e.stack,
            api: e.api,
            thread: e.thread,
            ticks: e.ticks,
        };
        self.live.insert(key, block);
        let d = self.devices.entry(e.device).or_default();
        grow(&mut d.all, e.size);
        if d.all.live_bytes == d.all.peak_bytes {
            d.peak_ticks = e.ticks;
        }
        grow(&mut d.by_memory[kind_index(e.memory)], e.size);
        let s = self.sites.entry((e.device, e.stack)).or_insert(DeviceSite {
            api: e.api,
            memory: e.memory,
            ..DeviceSite::default()
        });
        s.allocations += 1;
        s.bytes_allocated = s.bytes_allocated.saturating_add(e.size);
        s.live_blocks += 1;
        s.live_bytes += e.size;
        s.max_live_bytes = s.max_live_bytes.max(s.live_bytes);
    }

    fn freed(&mut self, e: &DeviceEvent) {
        let key = (device::host_side(e.memory), e.address);
        match self.take(key) {
            Some(b) => self.devices.entry(b.device).or_default().frees += 1,
            None => self.unknown_frees += 1,
        }
    }

    /// Takes the block at `key` out of every live count.
    fn take(&mut self, key: (bool, u64)) -> Option<DeviceBlock> {
        let b = self.live.remove(&key)?;
        if let Some(d) = self.devices.get_mut(&b.device) {
            shrink(&mut d.all, b.size);
            shrink(&mut d.by_memory[kind_index(b.memory)], b.size);
        }
        if let Some(s) = self.sites.get_mut(&(b.device, b.stack)) {
            s.live_blocks = s.live_blocks.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(b.size);
        }
        Some(b)
    }

    /// Did the trace have any device event?
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Per device, by ordinal (`trace::device::HOST` last).
    pub fn devices(&self) -> impl Iterator<Item = (u32, &DeviceTotals)> {
        self.devices.iter().map(|(&d, t)| (d, t))
    }

    /// Per (device, site).
    pub fn sites(&self) -> impl Iterator<Item = ((u32, StackId), &DeviceSite)> {
        self.sites.iter().map(|(&k, s)| (k, s))
    }

    /// The blocks live now.
    pub fn live(&self) -> impl Iterator<Item = &DeviceBlock> {
        self.live.values()
    }

    /// Failed allocations (the first [`MAX_FAILURES`]).
    pub fn failures(&self) -> &[DeviceFailure] {
        &self.failures
    }

    /// Frees of addresses never seen allocated.
    pub fn unknown_frees(&self) -> u64 {
        self.unknown_frees
    }
}

fn kind_index(memory: u8) -> usize {
    usize::from(memory).min(memory::COUNT)
}

fn grow(t: &mut KindTotals, size: u64) {
    t.allocations += 1;
    t.bytes_allocated = t.bytes_allocated.saturating_add(size);
    t.live_blocks += 1;
    t.live_bytes = t.live_bytes.saturating_add(size);
    t.peak_bytes = t.peak_bytes.max(t.live_bytes);
}

fn shrink(t: &mut KindTotals, size: u64) {
    t.live_blocks = t.live_blocks.saturating_sub(1);
    t.live_bytes = t.live_bytes.saturating_sub(size);
}
