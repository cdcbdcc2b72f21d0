//! The trace format: record kinds, event tags, the low-level encoder used by
//! the recorder, and the decoder used by readers (the profiler, tests).
//!
//! The format is specified in `docs/trace-format.md`; this module is its only
//! implementation. The encoder writes into caller-provided byte buffers and
//! never allocates, because it runs inside the profiled process; the decoder
//! allocates freely, because it runs in the reader.

pub mod columns;
mod decode;
mod encode;
mod events;
mod repack;

pub use decode::{
    DecodeError, Decoder, Event, EventKind, FileRecord, Frame, Header, Memory, Module, Ordered,
    Record, Segment, ThreadEvent,
};
pub use encode::{Cursor, put_bytes, put_record_header, put_str, put_svar, put_u8, put_uvar};
pub use events::{LATENCY_SHIFT, MAX_EVENT_BYTES, RawEvent, TIME_SHIFT, ThreadCodec};
pub use repack::{PackError, PackStats, pack_trace};

#[cfg(test)]
mod tests;

/// The eight bytes every trace starts with.
pub const MAGIC: &[u8; 8] = b"MEMTALLY";
/// The format version this code writes.
///
/// Version 2 added the scope events (an event kind of 7 with a sub-kind);
/// version 3 the device-memory events (sub-kind 6); version 4 their map,
/// unmap, retain and gauge operations (with a handle field); version 5
/// the packed event records (`kind::EVENTS_PACKED`), which a version 4
/// reader would skip as unknown, losing their events, and finer size
/// buckets for address prediction (`ThreadCodec::for_version`). An older
/// trace is a newer one without them, so all are read.
pub const VERSION: u64 = 5;
/// The oldest format version this code reads.
pub const MIN_VERSION: u64 = 1;

/// What a memory error event says was wrong.
pub mod error {
    /// A pointer this allocator never handed out.
    pub const NOT_OURS: u8 = 0;
    /// A pointer inside a block, not at its start.
    pub const INTERIOR: u8 = 1;
    /// No live block there: freed twice, or never allocated.
    pub const NOT_LIVE: u8 = 2;
    /// A Rust `dealloc` whose layout does not match the block.
    pub const LAYOUT: u8 = 3;
    /// An access to a freed guarded block (the call is `access`).
    pub const USE_AFTER_FREE: u8 = 4;
    /// An access past the end of a guarded block.
    pub const OVERFLOW: u8 = 5;
    /// An access before the start of a guarded block.
    pub const UNDERFLOW: u8 = 6;
    /// A data race, the access that trapped first (the call is `read` or
    /// `write`; the address the watched word). Follows its `RACE_SECOND`.
    pub const RACE_FIRST: u8 = 7;
    /// A data race, the other thread's access, during the first's stall.
    pub const RACE_SECOND: u8 = 8;
    /// A block freed by the wrong family of call (`free` of a `new[]`
    /// block, `delete[]` of a `new` one...).
    pub const MISMATCH: u8 = 9;

    /// What error `code` means, for reports.
    pub fn describe(code: u8) -> &'static str {
        match code {
            NOT_OURS => "not allocated by memtally",
            INTERIOR => "interior pointer",
            NOT_LIVE => "double free or never allocated",
            LAYOUT => "dealloc layout does not match the block",
            USE_AFTER_FREE => "use after free",
            OVERFLOW => "buffer overflow",
            UNDERFLOW => "buffer underflow",
            RACE_FIRST | RACE_SECOND => "data race",
            MISMATCH => "allocation and deallocation mismatch",
            _ => "unknown memory error",
        }
    }
}

/// Device and network memory events (`EXT_DEVICE`), made by the gpu-shim.
pub mod device {
    /// What happened.
    pub mod op {
        /// Memory was allocated (or registered, or imported).
        pub const ALLOC: u8 = 0;
        /// Memory was freed (or unregistered).
        pub const FREE: u8 = 1;
        /// An allocation failed (out of memory, most often): its size is
        /// what was asked for.
        pub const FAILED: u8 = 2;
        /// A virtual range was mapped onto physical memory (`cuMemMap`):
        /// the address and size of the range, the physical allocation's
        /// handle. The mapping holds a reference to the physical memory.
        pub const MAP: u8 = 3;
        /// A virtual range was unmapped (`cuMemUnmap`): every mapping in
        /// it lets go of its physical memory.
        pub const UNMAP: u8 = 4;
        /// One more reference to a physical allocation
        /// (`cuMemRetainAllocationHandle`), given back by a release.
        pub const RETAIN: u8 = 5;
        /// A sampled level, not an allocation: the size is how many bytes
        /// the object at the address holds now (a stream-ordered pool's
        /// reserved bytes; 0 when it is gone).
        pub const GAUGE: u8 = 6;

        /// Does an event of this operation carry a handle?
        pub fn carries_handle(op: u8) -> bool {
            op == MAP || op == RETAIN
        }

        /// Does an event of this operation carry a stack?
        pub fn carries_stack(op: u8) -> bool {
            op == ALLOC || op == FAILED
        }
    }

    /// Which memory.
    pub mod memory {
        /// Device memory (`cuMemAlloc`, `cudaMalloc`, pitched).
        pub const DEVICE: u8 = 0;
        /// Unified (managed) memory, migrating between host and device.
        pub const MANAGED: u8 = 1;
        /// Page-locked host memory the device can reach.
        pub const HOST_PINNED: u8 = 2;
        /// Stream-ordered allocations from a memory pool (logical bytes).
        pub const POOL: u8 = 3;
        /// Physical memory of the virtual memory management API, keyed by
        /// its handle (`cuMemCreate`), live until released and unmapped.
        pub const VMM: u8 = 4;
        /// Reserved virtual address space (`cuMemAddressReserve`): no
        /// memory behind it until mapped, so never in a device's total.
        pub const VIRTUAL: u8 = 5;
        /// Host memory registered with a network adapter (RDMA memory
        /// regions), keyed by the region's handle: pinned, and already
        /// counted where it was allocated, so never in a device's total.
        pub const REGISTERED: u8 = 6;
        /// OpenCL buffers (keyed by their `cl_mem`) and shared virtual
        /// memory (by its pointer).
        pub const OPENCL: u8 = 7;
        /// Vulkan device memory (`vkAllocateMemory`), keyed by its
        /// `VkDeviceMemory`.
        pub const VULKAN: u8 = 8;
        /// A socket's kernel buffers (received and not read, queued and not
        /// sent), sampled by file descriptor (`kind::GAUGE`).
        pub const SOCKET: u8 = 9;
        /// An io_uring's registered buffers (pinned user pages), sampled by
        /// file descriptor (`kind::GAUGE`).
        pub const IO_URING: u8 = 10;
        /// A packet socket's rings (`PACKET_RX_RING`/`TX_RING`, AF_XDP),
        /// kernel memory mapped into the process, sampled by file
        /// descriptor (`kind::GAUGE`).
        pub const PACKET_RING: u8 = 11;
        /// CUDA arrays (`cuArrayCreate`, `cuArray3DCreate`), keyed by
        /// their handle; the size is estimated from the descriptor.
        pub const ARRAY: u8 = 12;
        /// Memory of another process opened through CUDA IPC
        /// (`cuIpcOpenMemHandle`): mapped here, not allocated, so never in
        /// a total.
        pub const IMPORTED: u8 = 13;
        /// Host memory the program allocated and registered with CUDA
        /// (`cuMemHostRegister`): pinned, already counted where it was
        /// allocated, so never in a total.
        pub const HOST_REGISTERED: u8 = 14;
        /// What the driver reports in use on a device (`cuMemGetInfo`:
        /// total less free), a level sampled by the shim: beside the
        /// tracked memory, what the context and everything untracked hold.
        pub const DRIVER_USED: u8 = 15;
        /// Physical memory of another process's virtual memory allocation,
        /// imported by a shareable handle (`cuMemImportFromShareableHandle`)
        /// and keyed by the handle, as `VMM`'s are: live until released
        /// and unmapped, sized at its first mapping (the driver does not
        /// say at the import), never in a total.
        pub const IMPORTED_HANDLE: u8 = 16;
        /// The most kinds a reader counts apart.
        pub const COUNT: usize = 17;
    }

    /// The `device` of host memory.
    pub const HOST: u32 = u32::MAX;

    /// A memory kind's name, as reports print it.
    pub fn memory_name(memory: u8) -> &'static str {
        match memory {
            memory::DEVICE => "device",
            memory::MANAGED => "managed",
            memory::HOST_PINNED => "pinned host",
            memory::POOL => "stream-ordered pool",
            memory::VMM => "virtual memory (physical)",
            memory::VIRTUAL => "reserved address space",
            memory::REGISTERED => "registered (pinned for a NIC)",
            memory::OPENCL => "opencl",
            memory::VULKAN => "vulkan",
            memory::SOCKET => "socket buffers",
            memory::IO_URING => "io_uring registered buffers",
            memory::PACKET_RING => "packet rings",
            memory::ARRAY => "array",
            memory::IMPORTED => "imported (IPC)",
            memory::HOST_REGISTERED => "host registered (pinned for a GPU)",
            memory::DRIVER_USED => "in use (driver)",
            memory::IMPORTED_HANDLE => "imported (shareable handle)",
            _ => "other",
        }
    }

    /// Is memory of this kind on the host side (recorded with device
    /// [`HOST`])?
    pub fn host_side(memory: u8) -> bool {
        matches!(
            memory,
            memory::HOST_PINNED | memory::REGISTERED | memory::HOST_REGISTERED
        )
    }

    /// The key space a block of this kind is found in by its address: a
    /// free names the address only, so kinds that share an address space
    /// share a key space (device-side addresses are unified: `cuMemFree`
    /// frees device, managed and pool memory alike), and handles are kept
    /// apart from addresses.
    pub fn key_space(memory: u8) -> u8 {
        match memory {
            memory::HOST_PINNED => 1,
            memory::VMM | memory::IMPORTED_HANDLE => 2,
            memory::VIRTUAL => 3,
            memory::REGISTERED => 4,
            memory::OPENCL => 5,
            memory::VULKAN => 6,
            memory::ARRAY => 7,
            memory::HOST_REGISTERED => 8,
            _ => 0,
        }
    }

    /// Do blocks of this kind count in their device's total (new memory,
    /// not address space or a registration of memory counted elsewhere)?
    pub fn counts_in_total(memory: u8) -> bool {
        !matches!(
            memory,
            memory::VIRTUAL
                | memory::REGISTERED
                | memory::SOCKET
                | memory::IO_URING
                | memory::PACKET_RING
                | memory::IMPORTED
                | memory::HOST_REGISTERED
                | memory::DRIVER_USED
                | memory::IMPORTED_HANDLE
        )
    }
}

/// How complete a leak scan was (`EXT_LEAK_SCAN`'s status).
pub mod leak_status {
    /// Every thread stopped, every root scanned.
    pub const COMPLETE: u8 = 0;
    /// Some thread did not stop in time (it blocks the scan's signal): its
    /// registers were not seen, so a block held only there is reported as
    /// leaked.
    pub const THREADS_MISSED: u8 = 1;
    /// memtally's own metadata could not all be told apart from roots, so
    /// a leak may have been taken for reachable.
    pub const METADATA_UNKNOWN: u8 = 2;
}

/// Record kinds (the first byte of every record).
pub mod kind {
    /// Process metadata; always the first record.
    pub const HEADER: u8 = 1;
    /// A tick count paired with monotonic and wall-clock time.
    pub const CLOCK: u8 = 2;
    /// An interned string.
    pub const STRING: u8 = 3;
    /// A call-stack trie node.
    pub const FRAME: u8 = 4;
    /// A loaded module.
    pub const MODULE: u8 = 5;
    /// A module was unloaded.
    pub const MODULE_GONE: u8 = 6;
    /// A thread made its first recorded call.
    pub const THREAD: u8 = 7;
    /// A thread ended.
    pub const THREAD_END: u8 = 8;
    /// A stretch of one thread's events.
    pub const EVENTS: u8 = 9;
    /// All events older than this time have been written.
    pub const WATERMARK: u8 = 10;
    /// Resident and mapped memory, sampled periodically.
    pub const MEMORY: u8 = 11;
    /// The end of a complete trace.
    pub const FOOTER: u8 = 12;
    /// A sampled level of memory the kernel holds for the process (a
    /// socket's buffers, an io_uring's registered buffers): one per
    /// object whose level changed.
    pub const GAUGE: u8 = 13;
    /// A stretch of one thread's events, regrouped by field and compressed
    /// (`columns.rs`); it reads as the `EVENTS` record it packs.
    pub const EVENTS_PACKED: u8 = 14;
}

/// Recording modes as written in the header.
pub mod mode {
    /// Every event.
    pub const FULL: u8 = 1;
    /// A Poisson sample of allocations by bytes.
    pub const SAMPLED: u8 = 2;
}

/// Footer flag: the process exited normally.
pub const FOOTER_CLEAN_EXIT: u64 = 1;
/// Footer flag: the trace ended because the process executed a new program.
pub const FOOTER_EXEC: u64 = 2;
/// Footer flag: recording was switched on in the running process through
/// its control socket (`memtally attach`, `memtally top --pid`) and this
/// trace ended when the client detached; the process ran on.
pub const FOOTER_DETACHED: u64 = 4;
