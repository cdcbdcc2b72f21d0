//! Device and network memory: what the gpu-shim saw (`EventKind::Device`),
//! kept apart from the heap's counters (a GPU's gigabytes are not heap
//! bytes, and a device address may equal a host one).
//!
//! Blocks are keyed by (key space, address) (`trace::device::key_space`):
//! a free names the address only, and `cuMemFree` frees device, managed
//! and pool memory alike, so every device-side kind shares one address
//! space, as CUDA's unified addressing makes it; handles (virtual-memory
//! physical allocations, RDMA registrations) and reserved address ranges
//! have spaces of their own. Per device: live and peak bytes (overall,
//! which counts new memory only, and per memory kind), allocations, frees,
//! failures, and the reserved bytes of its stream-ordered pools (a sampled
//! level beside the pools' logical live bytes); per (device, site): what
//! it allocated and holds. Frees of addresses never seen allocated (memory
//! allocated before an attach) are counted, never guessed at.
//!
//! Virtual-memory physical allocations are reference counted as CUDA does
//! it: `cuMemCreate` holds one reference, each mapping one, each
//! `cuMemRetainAllocationHandle` one; `cuMemRelease` and `cuMemUnmap` give
//! them back, and the memory is freed (and counted freed) at the last.
//! While mapped, such a block is shown at its mapped address, its bytes
//! attributed to the stack that created it.

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
    /// References held (virtual-memory physical allocations: creation,
    /// mappings, retains; 1 for every other kind).
    pub refs: u32,
    /// Where it is mapped (virtual-memory physical allocations; 0 when
    /// not mapped).
    pub mapped_at: u64,
}

impl DeviceBlock {
    /// The address to show it at: where it is mapped, else its own.
    pub fn shown_address(&self) -> u64 {
        if self.mapped_at != 0 {
            self.mapped_at
        } else {
            self.address
        }
    }
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

/// One key's sampled level (a socket's buffers, a pool's reserve).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyedLevel {
    /// At the last sample.
    pub bytes: u64,
    /// The most at once.
    pub peak_bytes: u64,
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
    /// Frees seen (of kinds counted in `all`).
    pub frees: u64,
    /// Failed allocations.
    pub failures: u64,
    /// Bytes the failed allocations asked for.
    pub failed_bytes: u64,
    /// Sampled levels, per memory kind, all objects together: the
    /// reserved bytes of its stream-ordered pools (`POOL`, beside the
    /// pools' logical bytes in `by_memory`), what the driver says is in
    /// use (`DRIVER_USED`), kernel-held memory on the host (`SOCKET`,
    /// `IO_URING`, `PACKET_RING`).
    pub levels: [Level; memory::COUNT + 1],
}

/// A sampled level: all objects of one kind together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    /// Bytes now.
    pub bytes: u64,
    /// The most at once.
    pub peak_bytes: u64,
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

impl DeviceSite {
    /// `size` more bytes live at the site (and allocated there).
    fn add_bytes(&mut self, size: u64) {
        self.bytes_allocated = self.bytes_allocated.saturating_add(size);
        self.live_bytes = self.live_bytes.saturating_add(size);
        self.max_live_bytes = self.max_live_bytes.max(self.live_bytes);
    }
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
    live: HashMap<(u8, u64), DeviceBlock>,
    /// Mapped virtual ranges by start: (length, physical handle).
    mappings: BTreeMap<u64, (u64, u64)>,
    /// Sampled levels: (device, memory kind, key) -> bytes.
    /// Each sampled level now, by (device, kind, key: a descriptor, a
    /// pool, a device), with the most it held.
    gauges: HashMap<(u32, u8, u64), KeyedLevel>,
    devices: BTreeMap<u32, DeviceTotals>,
    sites: HashMap<(u32, StackId), DeviceSite>,
    failures: Vec<DeviceFailure>,
    unknown_frees: u64,
    reused_while_live: u64,
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
    /// The physical allocation of a map or retain.
    pub handle: u64,
}

impl DeviceMemory {
    /// Applies one event.
    pub fn apply(&mut self, e: &DeviceEvent) {
        self.events += 1;
        match e.op {
            op::ALLOC => self.allocated(e),
            op::FREE => self.freed(e),
            op::MAP => self.mapped(e),
            op::UNMAP => self.unmapped(e),
            op::RETAIN => match self
                .live
                .get_mut(&(device::key_space(memory::VMM), e.handle))
            {
                Some(b) => b.refs += 1,
                None => self.unknown_frees += 1,
            },
            op::GAUGE => self.level(e),
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
        let key = (device::key_space(e.memory), e.address);
        // Allocated again while live: its free was not seen; the old
        // block goes first, so that nothing counts twice.
        if self.take(key).is_some() {
            self.reused_while_live += 1;
        }
        let block = DeviceBlock {
            address: e.address,
            memory: e.memory,
            device: e.device,
            size: e.size,
            stack: e.stack,
            api: e.api,
            thread: e.thread,
            ticks: e.ticks,
            refs: 1,
            mapped_at: 0,
        };
        self.live.insert(key, block);
        let d = self.devices.entry(e.device).or_default();
        if device::counts_in_total(e.memory) {
            grow(&mut d.all, e.size);
            if d.all.live_bytes == d.all.peak_bytes {
                d.peak_ticks = e.ticks;
            }
        }
        grow(&mut d.by_memory[kind_index(e.memory)], e.size);
        let s = self.sites.entry((e.device, e.stack)).or_insert(DeviceSite {
            api: e.api,
            memory: e.memory,
            ..DeviceSite::default()
        });
        s.allocations += 1;
        s.live_blocks += 1;
        s.add_bytes(e.size);
    }

    fn freed(&mut self, e: &DeviceEvent) {
        let key = (device::key_space(e.memory), e.address);
        self.release(key);
    }

    /// Gives back one reference to the block at `key`, freeing it at the
    /// last.
    fn release(&mut self, key: (u8, u64)) {
        match self.live.get_mut(&key) {
            Some(b) if b.refs > 1 => b.refs -= 1,
            Some(_) => {
                if let Some(b) = self.take(key)
                    && device::counts_in_total(b.memory)
                {
                    self.devices.entry(b.device).or_default().frees += 1;
                }
            }
            None => self.unknown_frees += 1,
        }
    }

    /// A virtual range mapped onto a physical allocation.
    fn mapped(&mut self, e: &DeviceEvent) {
        let key = (device::key_space(memory::VMM), e.handle);
        let Some(b) = self.live.get_mut(&key) else {
            self.unknown_frees += 1;
            return;
        };
        b.refs += 1;
        if b.mapped_at == 0 {
            b.mapped_at = e.address;
        }
        // An imported handle's size is first known here.
        let sized = (b.memory == memory::IMPORTED_HANDLE && b.size == 0).then(|| {
            b.size = e.size;
            (b.device, b.stack, b.memory)
        });
        if let Some((device, stack, kind)) = sized {
            let d = self.devices.entry(device).or_default();
            add_bytes(&mut d.by_memory[kind_index(kind)], e.size);
            if let Some(s) = self.sites.get_mut(&(device, stack)) {
                s.add_bytes(e.size);
            }
        }
        self.mappings.insert(e.address, (e.size, e.handle));
    }

    /// A virtual range unmapped: every mapping that starts in it lets go
    /// of its physical allocation.
    fn unmapped(&mut self, e: &DeviceEvent) {
        let end = e.address.saturating_add(e.size.max(1));
        let gone: Vec<(u64, u64)> = self
            .mappings
            .range(e.address..end)
            .map(|(&at, &(_, handle))| (at, handle))
            .collect();
        for (at, handle) in gone {
            self.mappings.remove(&at);
            let key = (device::key_space(memory::VMM), handle);
            if let Some(b) = self.live.get_mut(&key)
                && b.mapped_at == at
            {
                b.mapped_at = 0;
            }
            self.release(key);
        }
    }

    /// A sampled level (a pool's reserved bytes, what the driver says is
    /// in use on a device).
    fn level(&mut self, e: &DeviceEvent) {
        self.gauge_on(e.device, e.memory, e.address, e.size);
    }

    /// A sampled level of kernel-held memory (`kind::GAUGE` records):
    /// `key`'s bytes of kind `memory` are now `bytes`, on the host.
    pub fn gauge(&mut self, memory: u8, key: u64, bytes: u64) {
        self.gauge_on(device::HOST, memory, key, bytes);
    }

    /// `key`'s bytes of kind `memory` on `device` are now `bytes`.
    fn gauge_on(&mut self, device: u32, memory: u8, key: u64, bytes: u64) {
        let old = self
            .gauges
            .get(&(device, memory, key))
            .map_or(0, |k| k.bytes);
        if old == 0 && bytes == 0 {
            return;
        }
        // Kept at 0 too: the busiest descriptors of a run are reported
        // with their peaks.
        let k = self.gauges.entry((device, memory, key)).or_default();
        k.bytes = bytes;
        k.peak_bytes = k.peak_bytes.max(bytes);
        self.events += 1;
        let l = &mut self.devices.entry(device).or_default().levels[kind_index(memory)];
        l.bytes = l.bytes.saturating_sub(old).saturating_add(bytes);
        l.peak_bytes = l.peak_bytes.max(l.bytes);
    }

    /// Every sampled level by its key (a descriptor for kernel-held
    /// memory, a pool, a device): (device, kind, key, its level).
    pub fn keyed_levels(&self) -> impl Iterator<Item = (u32, u8, u64, KeyedLevel)> + '_ {
        self.gauges.iter().map(|(&(d, m, k), &l)| (d, m, k, l))
    }

    /// Takes the block at `key` out of every live count.
    fn take(&mut self, key: (u8, u64)) -> Option<DeviceBlock> {
        let b = self.live.remove(&key)?;
        if let Some(d) = self.devices.get_mut(&b.device) {
            if device::counts_in_total(b.memory) {
                shrink(&mut d.all, b.size);
            }
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

    /// Frees (and maps, unmaps, retains) of addresses or handles never
    /// seen allocated.
    pub fn unknown_frees(&self) -> u64 {
        self.unknown_frees
    }

    /// Allocations at an address already live (its free was not seen).
    pub fn reused_while_live(&self) -> u64 {
        self.reused_while_live
    }
}

fn kind_index(memory: u8) -> usize {
    usize::from(memory).min(memory::COUNT)
}

fn grow(t: &mut KindTotals, size: u64) {
    t.allocations += 1;
    t.live_blocks += 1;
    add_bytes(t, size);
}

/// `size` more bytes of blocks already counted (an imported handle sized
/// at its first mapping), or of a new one (`grow`).
fn add_bytes(t: &mut KindTotals, size: u64) {
    t.bytes_allocated = t.bytes_allocated.saturating_add(size);
    t.live_bytes = t.live_bytes.saturating_add(size);
    t.peak_bytes = t.peak_bytes.max(t.live_bytes);
}

fn shrink(t: &mut KindTotals, size: u64) {
    t.live_blocks = t.live_blocks.saturating_sub(1);
    t.live_bytes = t.live_bytes.saturating_sub(size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: u8, memory: u8, address: u64, size: u64, handle: u64) -> DeviceEvent {
        DeviceEvent {
            ticks: 0,
            thread: 1,
            op,
            memory,
            device: 0,
            api: 0,
            address,
            size,
            stack: 7,
            handle,
        }
    }

    fn live(m: &DeviceMemory) -> u64 {
        m.devices().map(|(_, t)| t.all.live_bytes).sum()
    }

    const HANDLE: u64 = 0x99;
    const VA: u64 = 0x7000_0000;

    /// Create, reserve, map, then release before unmapping (as frameworks
    /// do): the physical memory lives until the unmap.
    #[test]
    fn a_released_physical_allocation_lives_until_its_last_mapping_goes() {
        let mut m = DeviceMemory::default();
        m.apply(&event(op::ALLOC, memory::VIRTUAL, VA, 4 << 20, 0));
        m.apply(&event(op::ALLOC, memory::VMM, HANDLE, 2 << 20, 0));
        m.apply(&event(op::MAP, memory::VMM, VA, 2 << 20, HANDLE));
        assert_eq!(live(&m), 2 << 20, "address space is not memory");
        let b = m.live().find(|b| b.memory == memory::VMM).unwrap();
        assert_eq!(b.shown_address(), VA);
        m.apply(&event(op::FREE, memory::VMM, HANDLE, 0, 0));
        assert_eq!(live(&m), 2 << 20, "still mapped");
        m.apply(&event(op::UNMAP, memory::VMM, VA, 2 << 20, 0));
        assert_eq!(live(&m), 0);
        m.apply(&event(op::FREE, memory::VIRTUAL, VA, 0, 0));
        assert_eq!(m.live().count(), 0);
        assert_eq!(m.unknown_frees(), 0);
        let (_, t) = m.devices().next().unwrap();
        assert_eq!(t.frees, 1, "address space is not counted as memory");
        assert_eq!(t.by_memory[memory::VIRTUAL as usize].peak_bytes, 4 << 20);
    }

    /// Unmap first, then release; a retain needs its own release.
    #[test]
    fn retains_and_releases_balance_in_either_order() {
        let mut m = DeviceMemory::default();
        m.apply(&event(op::ALLOC, memory::VMM, HANDLE, 1 << 20, 0));
        m.apply(&event(op::MAP, memory::VMM, VA, 1 << 20, HANDLE));
        m.apply(&event(op::RETAIN, memory::VMM, VA, 0, HANDLE));
        m.apply(&event(op::UNMAP, memory::VMM, VA, 1 << 20, 0));
        m.apply(&event(op::FREE, memory::VMM, HANDLE, 0, 0));
        assert_eq!(live(&m), 1 << 20, "the retain still holds it");
        m.apply(&event(op::FREE, memory::VMM, HANDLE, 0, 0));
        assert_eq!(live(&m), 0);
        m.apply(&event(op::FREE, memory::VMM, HANDLE, 0, 0));
        assert_eq!(m.unknown_frees(), 1, "a release too many");
    }

    /// One unmap over a range that holds two mappings lets go of both.
    #[test]
    fn an_unmap_of_a_range_releases_every_mapping_in_it() {
        let mut m = DeviceMemory::default();
        m.apply(&event(op::ALLOC, memory::VMM, 1, 1 << 20, 0));
        m.apply(&event(op::ALLOC, memory::VMM, 2, 1 << 20, 0));
        m.apply(&event(op::MAP, memory::VMM, VA, 1 << 20, 1));
        m.apply(&event(op::MAP, memory::VMM, VA + (1 << 20), 1 << 20, 2));
        m.apply(&event(op::FREE, memory::VMM, 1, 0, 0));
        m.apply(&event(op::FREE, memory::VMM, 2, 0, 0));
        assert_eq!(live(&m), 2 << 20);
        m.apply(&event(op::UNMAP, memory::VMM, VA, 2 << 20, 0));
        assert_eq!(live(&m), 0);
    }

    /// A pool's level is a gauge beside its logical bytes.
    #[test]
    fn pool_levels_replace_each_other_and_keep_their_peak() {
        let mut m = DeviceMemory::default();
        m.apply(&event(op::GAUGE, memory::POOL, 0x10, 4 << 20, 0));
        m.apply(&event(op::GAUGE, memory::POOL, 0x20, 2 << 20, 0));
        m.apply(&event(op::GAUGE, memory::POOL, 0x10, 2 << 20, 0));
        let (_, t) = m.devices().next().unwrap();
        let pools = t.levels[memory::POOL as usize];
        assert_eq!((pools.bytes, pools.peak_bytes), (4 << 20, 6 << 20));
        m.apply(&event(op::GAUGE, memory::POOL, 0x10, 0, 0));
        m.apply(&event(op::GAUGE, memory::POOL, 0x20, 0, 0));
        let (_, t) = m.devices().next().unwrap();
        assert_eq!(t.levels[memory::POOL as usize].bytes, 0);
        assert_eq!(live(&m), 0, "levels are not allocations");
    }

    #[test]
    fn an_address_allocated_again_while_live_is_counted_once() {
        let mut m = DeviceMemory::default();
        m.apply(&event(op::ALLOC, memory::DEVICE, 0x1000, 100, 0));
        m.apply(&event(op::ALLOC, memory::DEVICE, 0x1000, 300, 0));
        assert_eq!(live(&m), 300);
        assert_eq!(m.reused_while_live(), 1);
    }
}
