//! The report's data, as serialised by `memtally report --json`. These
//! types *are* the JSON schema documented in `docs/report-json.md`: every
//! field there is a field here, and the text report is rendered from the
//! same values, so the two never disagree.
//!
//! Stability: fields are only ever added; a change to the meaning or type
//! of an existing field bumps [`SCHEMA_VERSION`].

use serde::Serialize;

/// The version of this schema.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was recorded, and how the trace ended.
    pub trace: TraceInfo,
    /// Whole-process totals.
    pub summary: Summary,
    /// The heap's peak and the sites holding memory at that moment.
    pub peak: PeakReport,
    /// What was still allocated when the trace ended.
    pub live_at_exit: LiveReport,
    /// Sites by bytes allocated.
    pub top_by_bytes: Vec<SiteReport>,
    /// Sites by blocks allocated.
    pub top_by_count: Vec<SiteReport>,
    /// Sites by the most bytes each held live at once (at any time).
    pub top_by_peak: Vec<SiteReport>,
    /// Temporary allocations.
    pub temporary: TemporaryReport,
    /// Requested sizes in power-of-two buckets.
    pub sizes: Vec<SizeBucketReport>,
    /// Latency of allocations and reallocations, in nanoseconds (the calls
    /// the recorder timed: one in eight in full mode).
    pub alloc_latency_ns: DurationReport,
    /// Latency of frees, in nanoseconds (the calls the recorder timed).
    pub free_latency_ns: DurationReport,
    /// Lifetimes of freed blocks, in nanoseconds.
    pub lifetime_ns: DurationReport,
    /// Per-thread totals, by thread number.
    pub threads: Vec<ThreadReport>,
    /// Memory errors recorded (invalid frees and reallocations), with the
    /// offending call's stack.
    pub errors: Vec<ErrorReport>,
    /// Which threads release which threads' blocks (not race detection).
    pub ownership: OwnershipReport,
    /// Memory by scope (request, task, span), by name; empty when the
    /// program entered none (`docs/scopes.md`).
    pub scopes: Vec<ScopeReport>,
    /// Device and network memory (the gpu-shim's events); absent when the
    /// program used none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceReport>,
    /// Memory over time.
    pub timeline: Timeline,
    /// Caveats a reader must know (cut-short trace, estimates, clock).
    pub notes: Vec<String>,
    /// Module files that could not be used for symbolisation.
    pub unsymbolised_modules: Vec<ModuleProblemReport>,
}

/// What was recorded.
#[derive(Clone, Debug, Serialize)]
pub struct TraceInfo {
    /// The trace file, if read from one.
    pub path: Option<String>,
    /// Bytes of trace read.
    pub bytes: u64,
    /// The process id.
    pub pid: u64,
    /// The parent process id.
    pub parent_pid: u64,
    /// The executable.
    pub exe: String,
    /// The command line.
    pub argv: Vec<String>,
    /// `"full"` or `"sampled"`.
    pub mode: String,
    /// Mean sampling interval in bytes (0 in full mode).
    pub sample_bytes: u64,
    /// Most frames recorded per stack.
    pub stack_depth: u64,
    /// True when counts and bytes are estimates (sampled mode).
    pub estimated: bool,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_realtime_ns: u64,
    /// True when the trace has its footer.
    pub complete: bool,
    /// True when the process exited normally (false when cut short or
    /// ended by an exec).
    pub clean_exit: bool,
    /// True when the trace ended because the process executed another
    /// program.
    pub exec: bool,
    /// The status the process exited with (null when not known: an older
    /// trace, an exec, a crash, or memtally as a Rust program's global
    /// allocator, whose trace ends in a destructor).
    pub exit_status: Option<u8>,
    /// Where the trace was cut short (null when complete).
    pub cut_at: Option<u64>,
    /// What damaged record reading stopped at, if any: its offset and
    /// what was wrong (`cut_at` is then the same offset).
    pub damage: Option<String>,
    /// True when ticks were converted with at least two CLOCK records.
    pub clock_calibrated: bool,
}

/// Whole-process totals.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Nanoseconds from the start of recording to its end.
    pub duration_ns: u64,
    /// Blocks created (allocations and successful reallocations).
    pub allocations: u64,
    /// Reallocations.
    pub reallocations: u64,
    /// Blocks released (frees and reallocations' old blocks).
    pub frees: u64,
    /// Requested bytes of the blocks created.
    pub bytes_allocated: u64,
    /// Requested bytes of the blocks released.
    pub bytes_freed: u64,
    /// Frees and reallocations of addresses not known as live.
    pub unknown_frees: u64,
    /// Blocks whose free was never recorded (address reused while live).
    pub lost_frees: u64,
    /// Reallocations that failed.
    pub failed_reallocs: u64,
    /// Temporary blocks.
    pub temporary: u64,
    /// Blocks live at the end.
    pub live_blocks: u64,
    /// Requested bytes live at the end.
    pub live_bytes: u64,
    /// Requested bytes live at the peak.
    pub peak_bytes: u64,
    /// Blocks live at the peak.
    pub peak_blocks: u64,
    /// Nanoseconds from the start to the peak.
    pub peak_time_ns: u64,
    /// Largest resident set size seen in MEMORY records (0 if none).
    pub max_rss_bytes: u64,
    /// Threads seen.
    pub threads: u64,
    /// Distinct allocation sites.
    pub sites: u64,
    /// Thread events read.
    pub events: u64,
}

/// The heap's peak.
#[derive(Clone, Debug, Serialize)]
pub struct PeakReport {
    /// Requested bytes live.
    pub bytes: u64,
    /// Blocks live.
    pub blocks: u64,
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// Sites by bytes live at that moment (`at_peak_bytes`).
    pub sites: Vec<SiteReport>,
}

/// Memory still allocated at the end.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    /// Requested bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
    /// Sites by bytes live (`live_bytes`).
    pub sites: Vec<SiteReport>,
}

/// Temporary allocations.
#[derive(Clone, Debug, Serialize)]
pub struct TemporaryReport {
    /// Temporary blocks.
    pub count: u64,
    /// Their requested bytes.
    pub bytes: u64,
    /// `count` divided by all blocks created (0 to 1).
    pub share: f64,
    /// Sites by temporary blocks.
    pub sites: Vec<SiteReport>,
}

/// One allocation site.
#[derive(Clone, Debug, Serialize)]
pub struct SiteReport {
    /// The site's stack id in the trace.
    pub stack: u64,
    /// Blocks created.
    pub allocations: u64,
    /// Reallocations (also in `allocations`).
    pub reallocations: u64,
    /// Blocks released.
    pub frees: u64,
    /// Requested bytes of blocks created.
    pub bytes_allocated: u64,
    /// Blocks live at the end.
    pub live_blocks: u64,
    /// Requested bytes live at the end.
    pub live_bytes: u64,
    /// The most bytes the site held live at once.
    pub max_live_bytes: u64,
    /// Bytes live at the global peak.
    pub at_peak_bytes: u64,
    /// Blocks live at the global peak.
    pub at_peak_blocks: u64,
    /// Temporary blocks.
    pub temporary: u64,
    /// `temporary` divided by `allocations` (0 to 1).
    pub temporary_share: f64,
    /// Blocks released by another thread than the one that allocated them.
    pub remote_frees: u64,
    /// `remote_frees` divided by `frees` (0 to 1).
    pub remote_share: f64,
    /// The stack, innermost first, allocator frames trimmed: the
    /// `library_frames` standard-library frames that called the allocator,
    /// then at most `--frames` of the program's own.
    pub frames: Vec<FrameReport>,
    /// How many of `frames` (at the inner end) are standard-library code
    /// (`alloc::`, `std::`, ...); the site is named after the next one.
    pub library_frames: usize,
    /// Frames of the stack left out by the `--frames` limit.
    pub more_frames: usize,
}

/// One frame of a site's stack.
#[derive(Clone, Debug, Serialize)]
pub struct FrameReport {
    /// The demangled function, if known.
    pub function: Option<String>,
    /// The source file, if known.
    pub file: Option<String>,
    /// The source line, if known.
    pub line: Option<u32>,
    /// The module's path, if known.
    pub module: Option<String>,
    /// The address in the module's file, if the module is known.
    pub module_offset: Option<u64>,
    /// The recorded runtime address.
    pub address: u64,
    /// True when inlined into the next frame.
    pub inlined: bool,
}

/// One size bucket.
#[derive(Clone, Debug, Serialize)]
pub struct SizeBucketReport {
    /// Smallest size in the bucket.
    pub min: u64,
    /// Largest size in the bucket.
    pub max: u64,
    /// Blocks.
    pub blocks: u64,
    /// Requested bytes.
    pub bytes: u64,
    /// The bytes memtally's size classes serve them with (the rest of
    /// `served - bytes` is internal waste).
    pub served: u64,
}

/// A duration distribution, in nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub struct DurationReport {
    /// How many durations.
    pub count: u64,
    /// Mean.
    pub mean: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

/// One thread's totals.
#[derive(Clone, Debug, Serialize)]
pub struct ThreadReport {
    /// The trace's thread number.
    pub thread: u64,
    /// The OS thread id (0 if unknown).
    pub os_tid: u64,
    /// The thread's name (empty if unknown).
    pub name: String,
    /// Blocks it created.
    pub allocations: u64,
    /// Requested bytes of blocks it created.
    pub bytes_allocated: u64,
    /// Blocks it created that were released (by any thread).
    pub frees: u64,
    /// Blocks it created that are live at the end.
    pub live_blocks: u64,
    /// Their requested bytes.
    pub live_bytes: u64,
    /// Bytes of its blocks live at the global peak.
    pub at_peak_bytes: u64,
    /// Its temporary blocks.
    pub temporary: u64,
    /// Frees it made of addresses not known as live.
    pub unknown_frees: u64,
    /// Blocks it created that another thread released (handed over).
    pub handed_over: u64,
    /// Blocks it released that another thread had created (taken over).
    pub taken_over: u64,
}

/// Memory over time, downsampled.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// Requested bytes live.
    pub heap: Vec<TimePoint>,
    /// Resident set size from MEMORY records.
    pub rss: Vec<TimePoint>,
}

/// One point of a timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimePoint {
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// The value at that time.
    pub bytes: u64,
    /// The largest value since the previous point.
    pub max_bytes: u64,
}

/// A module file that could not be used.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleProblemReport {
    /// The module's path.
    pub path: String,
    /// What was wrong.
    pub problem: String,
}

/// A scope name's memory (`docs/scopes.md`).
#[derive(Clone, Debug, Serialize)]
pub struct ScopeReport {
    /// The scope's name.
    pub name: String,
    /// Instances seen (requests, tasks).
    pub instances: u64,
    /// Instances that ended.
    pub ended: u64,
    /// Blocks allocated in its instances.
    pub allocations: u64,
    /// Their requested bytes.
    pub bytes_allocated: u64,
    /// Of those, bytes live at the end.
    pub live_bytes: u64,
    /// Blocks live at the end.
    pub live_blocks: u64,
    /// The most bytes live at once.
    pub max_live_bytes: u64,
    /// Bytes live at the global peak.
    pub at_peak_bytes: u64,
    /// Instances that ended with some of their blocks still live.
    pub outlived_instances: u64,
    /// Bytes still live when their instances ended (summed).
    pub outlived_bytes: u64,
    /// Bytes allocated per ended instance: median.
    pub bytes_per_instance_p50: u64,
    /// 99th percentile.
    pub bytes_per_instance_p99: u64,
    /// Largest.
    pub bytes_per_instance_max: u64,
}

/// Ownership analytics: which thread releases the blocks each thread and
/// site allocated. This says how memory moves between threads; it is not
/// race detection.
#[derive(Clone, Debug, Serialize)]
pub struct OwnershipReport {
    /// Blocks released by another thread than their allocator.
    pub remote_frees: u64,
    /// Their requested bytes.
    pub remote_bytes: u64,
    /// `remote_frees` divided by all frees (0 to 1).
    pub remote_share: f64,
    /// Pairs of threads, by blocks handed over, most first.
    pub transfers: Vec<TransferReport>,
    /// Lifetimes of blocks released by their allocating thread.
    pub local_lifetime_ns: DurationReport,
    /// Lifetimes of blocks released by another thread.
    pub remote_lifetime_ns: DurationReport,
    /// Sites by blocks released by another thread, most first.
    pub sites: Vec<SiteReport>,
}

/// Blocks one thread allocated and another released.
#[derive(Clone, Debug, Serialize)]
pub struct TransferReport {
    /// The allocating thread's number and name.
    pub from: u64,
    /// See `from`.
    pub from_name: String,
    /// The releasing thread's number and name.
    pub to: u64,
    /// See `to`.
    pub to_name: String,
    /// Blocks.
    pub blocks: u64,
    /// Requested bytes.
    pub bytes: u64,
}

/// Device and network memory: per device, and the sites holding it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// Per device, by ordinal (host memory, such as pinned host buffers,
    /// under `device: null`).
    pub devices: Vec<DeviceTotalsReport>,
    /// Sites by bytes live at the end (the device leaks, when the program
    /// exited), then by bytes allocated.
    pub sites: Vec<DeviceSiteReport>,
    /// Failed allocations, in time order (the first 1000).
    pub failures: Vec<DeviceFailureReport>,
    /// Frees of addresses never seen allocated (allocated before the
    /// recording began).
    pub unknown_frees: u64,
    /// Allocations at an address that was still live (its free was never
    /// seen: a call the shim does not intercept freed it).
    pub reused_while_live: u64,
    /// Kernel-held memory by file descriptor (sockets, io_uring
    /// registered buffers, packet rings), the busiest first (by peak).
    pub descriptors: Vec<DescriptorReport>,
}

/// One file descriptor's kernel-held memory, sampled.
#[derive(Clone, Debug, Serialize)]
pub struct DescriptorReport {
    /// The descriptor (a number the process may have reused).
    pub fd: u64,
    /// `socket buffers`, `io_uring registered buffers`, `packet rings`.
    pub memory: String,
    /// Bytes at the last sample.
    pub bytes: u64,
    /// The most at once.
    pub peak_bytes: u64,
}

/// One device's totals.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceTotalsReport {
    /// The device's ordinal; None for host memory.
    pub device: Option<u32>,
    /// Bytes live when the trace ended.
    pub live_bytes: u64,
    /// Blocks live when the trace ended.
    pub live_blocks: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// When, since the start.
    pub peak_time_ns: u64,
    /// Allocations.
    pub allocations: u64,
    /// Bytes allocated in all.
    pub bytes_allocated: u64,
    /// Frees.
    pub frees: u64,
    /// Failed allocations.
    pub failures: u64,
    /// Bytes they asked for.
    pub failed_bytes: u64,
    /// Bytes the device's stream-ordered pools held when the trace ended
    /// (sampled: the physical side of the pools' logical live bytes).
    pub pool_reserved_bytes: u64,
    /// The most bytes they held at once.
    pub peak_pool_reserved_bytes: u64,
    /// Sampled levels of memory the kernel holds for the process (on the
    /// host: `socket buffers`, `io_uring registered buffers`), per kind
    /// that held any.
    pub levels: Vec<LevelReport>,
    /// Per memory kind that was used (virtual-memory physical memory,
    /// reserved address space and RDMA registrations included; the
    /// totals above count new memory only: not address space, not
    /// registrations of memory allocated elsewhere).
    pub by_memory: Vec<MemoryKindReport>,
}

/// A sampled level of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct LevelReport {
    /// `socket buffers`, `io_uring registered buffers`.
    pub memory: String,
    /// Bytes at the last sample.
    pub bytes: u64,
    /// The most at once.
    pub peak_bytes: u64,
}

/// One memory kind on one device.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryKindReport {
    /// `device`, `managed`, `pinned host`, `stream-ordered pool`, ...
    pub memory: String,
    /// Bytes live when the trace ended.
    pub live_bytes: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// Allocations.
    pub allocations: u64,
    /// Bytes allocated in all.
    pub bytes_allocated: u64,
}

/// What one host stack allocated on one device.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceSiteReport {
    /// The device; None for host memory.
    pub device: Option<u32>,
    /// The API called (of the site's first allocation).
    pub api: String,
    /// The memory kind (of the site's first allocation).
    pub memory: String,
    /// Allocations.
    pub allocations: u64,
    /// Bytes allocated in all.
    pub bytes_allocated: u64,
    /// Blocks live when the trace ended.
    pub live_blocks: u64,
    /// Bytes live when the trace ended.
    pub live_bytes: u64,
    /// The most bytes it held at once.
    pub max_live_bytes: u64,
    /// The host stack.
    pub site: SiteReport,
}

/// A failed device allocation.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceFailureReport {
    /// The device; None for host memory.
    pub device: Option<u32>,
    /// The API called.
    pub api: String,
    /// The memory kind.
    pub memory: String,
    /// Bytes asked for.
    pub size: u64,
    /// The thread.
    pub thread: u64,
    /// When, since the start.
    pub time_ns: u64,
    /// The host stack.
    pub site: SiteReport,
}

/// A memory error: an invalid pointer given to an allocator call.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorReport {
    /// `double free or never allocated`, `interior pointer` or `not
    /// allocated by memtally`.
    pub kind: String,
    /// The call (`free`, `realloc`, `dealloc`...).
    pub call: String,
    /// The pointer.
    pub address: u64,
    /// Nanoseconds since the recording started.
    pub time_ns: u64,
    /// The thread.
    pub thread: u64,
    /// The offending call, its stack in `frames` (counters zero).
    pub site: SiteReport,
    /// The block the pointer named, where the trace tells (null otherwise).
    pub block: Option<ErrorBlockReport>,
    /// For a data race: the other thread's access (this one is the access
    /// that trapped first; the other touched the word during its stall).
    pub race: Option<RaceSideReport>,
    /// A data race between atomic accesses (by their inlined frames): not a
    /// bug, left out of the text views.
    pub atomic: bool,
    /// A data race whose two sides both decode as reads: the word changed
    /// during the window, so the recorder paired them, but by a thread
    /// whose watchpoint was not on yet (the window's events are enabled
    /// one by one), so nothing proves a conflict (readers sharing a read
    /// lock look so). Left out of the text views.
    pub reads_only: bool,
}

impl ErrorReport {
    /// Is this a data race the text views leave out: between atomic
    /// accesses, or between two reads?
    pub fn set_aside(&self) -> bool {
        self.atomic || self.reads_only
    }
}

/// The other side of a data race.
#[derive(Clone, Debug, Serialize)]
pub struct RaceSideReport {
    /// `read` or `write` by its decoded instruction; where the code cannot
    /// be read, `write` (the value changed) or `access` (a read, or a write
    /// of the value the first left).
    pub call: String,
    /// Its thread.
    pub thread: u64,
    /// When, in nanoseconds since the recording started.
    pub time_ns: u64,
    /// Its stack, innermost the accessing instruction.
    pub site: SiteReport,
}

/// The block behind a memory error: for a double free, as it was when first
/// freed; for a mismatched `dealloc` layout, the live block.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorBlockReport {
    /// Its start.
    pub address: u64,
    /// Requested bytes.
    pub size: u64,
    /// The thread that allocated it.
    pub allocated_by_thread: u64,
    /// When, in nanoseconds since the recording started.
    pub allocated_at_ns: u64,
    /// The allocation's stack (a site object, counters zero).
    pub allocated_at: SiteReport,
    /// The thread that first freed it (null: it is live).
    pub freed_by_thread: Option<u64>,
    /// When, in nanoseconds since the recording started.
    pub freed_at_ns: Option<u64>,
}
