//! The analysis model: the one place where a trace's events become
//! aggregates. Every view (the report, and later flamegraphs, leak reports,
//! the dashboard, pprof export, replay) reads from it.
//!
//! Events go in one at a time, in global time order (the decoder's ordered
//! mode), through [`Model::feed`]; out come per-site and per-thread
//! counters, the live-allocation map, the heap's peak with every
//! aggregate's share of it, size and duration distributions, and the memory
//! over time. The model streams: its memory grows with the live blocks and
//! the distinct stacks, never with the number of events, so it can follow a
//! trace that is still being written.
//!
//! It never fails on odd input: a free of an address it does not know (a
//! block allocated before recording began, or never sampled) is counted,
//! and an allocation at an address still live counts the old block as lost.

mod counters;
mod details;
mod device;
mod durations;
mod groups;
mod live;
mod scopes;
mod series;
mod sizes;
mod threads;
mod weight;

pub use counters::{Counters, Weight};
pub use details::{Log2Bucket, Log2Histogram, SITE_SERIES_POINTS, SiteDetailRef};
use details::{PendingLive, SiteDetail};
pub use device::{DeviceMemory, DeviceSite};
pub use durations::Durations;
pub use live::{LeakClass, LiveBlock, LiveMap};
pub use series::{Point, Series};
pub use sizes::{SizeBucket, SizeHistogram};
pub use threads::{ThreadInfo, ThreadStats};
pub use weight::Sampling;

use crate::clock::Clock;
use crate::hash::IdMap;
use crate::modules::Modules;
use crate::stacks::{StackId, StackNode, Stacks};
use crate::strings::Strings;
use counters::Tracked;
use groups::SiteGroups;
use memtally_alloc::trace::{Event, EventKind, Header, Ordered, Record, ThreadEvent};
use scopes::Scopes;
use std::collections::BTreeMap;
use threads::{ThreadEntry, Threads};

/// How the model is built.
#[derive(Clone, Copy, Debug)]
pub struct ModelOptions {
    /// The most points each memory-over-time series keeps.
    pub series_points: usize,
    /// The most markers kept (later ones are counted, not kept).
    pub max_markers: usize,
    /// Ignore events from this tick on: the model then describes the
    /// process as it was at that moment (what was live, by site), for
    /// views such as `memtally flame --metric live-at=TIME`.
    pub until_ticks: Option<u64>,
    /// Keep each site's counters per allocating thread too (a view that
    /// shows one thread at a time, such as the dashboard): one more map
    /// entry per (thread, site) pair.
    pub thread_sites: bool,
    /// Keep each site's [`SiteDetail`] (sizes, lifetimes, live bytes over
    /// time): for the dashboard's drill-down and the growth test.
    pub site_details: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            series_points: 1024,
            max_markers: 100_000,
            until_ticks: None,
            thread_sites: false,
            site_details: false,
        }
    }
}

/// An allocation site (a stack) and its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// The site's stack.
    pub stack: StackId,
    /// What happened there.
    pub counters: Counters,
}

/// A scope name's aggregates (see `docs/scopes.md`).
#[derive(Clone, Debug)]
pub struct ScopeStats {
    /// The scope's name.
    pub name: String,
    /// Its STRING id in the trace.
    pub string: u64,
    /// The blocks allocated in its instances.
    pub counters: Counters,
    /// Instances seen.
    pub instances: u64,
    /// Instances that ended.
    pub ended: u64,
    /// Instances that ended with some of their blocks still live.
    pub outlived: u64,
    /// Bytes still live when their instances ended (summed).
    pub outlived_bytes: u64,
    /// Bytes allocated per ended instance (values are bytes, not ticks).
    pub per_instance: Durations,
}

/// Whole-process totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// The counters of every block.
    pub counters: Counters,
    /// Frees and reallocations of addresses the model did not know as live:
    /// blocks allocated before recording began, or (sampled mode) blocks
    /// that were not sampled. Not counted in `counters.frees`.
    pub unknown_frees: u64,
    /// Blocks whose free was never seen because another block was
    /// allocated at the same address while they were live.
    pub lost_frees: u64,
    /// Reallocations that failed (returned no block; the old block stays).
    pub failed_reallocs: u64,
    /// Thread events seen (allocations, frees, reallocations, markers).
    pub events: u64,
}

/// The heap's highest point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peak {
    /// Requested bytes live at the peak.
    pub bytes: u64,
    /// Blocks live at the peak.
    pub blocks: u64,
    /// Ticks of the event that reached it (the first time it was reached).
    pub ticks: u64,
}

/// A user marker event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// When it was set.
    pub ticks: u64,
    /// The thread that set it.
    pub thread: u64,
    /// The STRING id of its text.
    pub string: u64,
}

/// The FOOTER of a complete trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Ticks at the end.
    pub ticks: u64,
    /// Events the recorder wrote.
    pub events: u64,
    /// Events the recorder lost.
    pub dropped: u64,
    /// Flags (`FOOTER_CLEAN_EXIT`).
    pub flags: u64,
    /// The status the process exited with, when known.
    pub exit_status: Option<u8>,
}

impl Footer {
    /// True when the process exited normally.
    pub fn clean_exit(&self) -> bool {
        self.flags & memtally_alloc::trace::FOOTER_CLEAN_EXIT != 0
    }

    /// True when the trace ended because the process executed another
    /// program (whose events, if recorded, are in a trace of their own).
    pub fn exec(&self) -> bool {
        self.flags & memtally_alloc::trace::FOOTER_EXEC != 0
    }

    /// True when the trace ended because the client that had switched
    /// recording on in the running process detached (`memtally attach`,
    /// `memtally top --pid`): the process ran on.
    pub fn detached(&self) -> bool {
        self.flags & memtally_alloc::trace::FOOTER_DETACHED != 0
    }
}

/// A site's entry: counters and the leftover fraction of sampled weights.
#[derive(Clone, Debug)]
struct SiteEntry {
    tracked: Tracked,
    carry: f64,
    /// If `options.site_details`.
    detail: Option<Box<SiteDetail>>,
    /// The detail's live bytes not yet in its series.
    pending: PendingLive,
}

/// How far apart the clocks of two cores may be, in ticks (about a
/// microsecond): the recorder reads each core's own time-stamp counter,
/// and on virtual machines those disagree by tens of ticks.
pub const CLOCK_SKEW_TICKS: u64 = 4096;

/// A free of an address that is not live when it arrives. Threads' events
/// are merged by time, and a thread that frees a block another thread has
/// just allocated and handed over (a queue, a channel) can carry an earlier
/// time than that allocation when their cores' clocks disagree: the free
/// then arrives first. It is held for [`CLOCK_SKEW_TICKS`]; an allocation
/// of that address by another thread meanwhile takes it (the free came
/// after it, whatever the clocks say), and otherwise it is counted as a
/// free of an address allocated before recording began.
#[derive(Clone, Copy, Debug)]
struct HeldFree {
    address: u64,
    thread: u64,
    time: u64,
    latency: u64,
}

/// The analysis model of one trace.
#[derive(Clone, Debug)]
pub struct Model {
    options: ModelOptions,
    header: Option<Header>,
    sampling: Sampling,
    clock: Clock,
    strings: Strings,
    stacks: Stacks,
    modules: Modules,
    threads: Threads,
    sites: IdMap<StackId, SiteEntry>,
    /// Per (allocating thread, site), if `options.thread_sites`.
    thread_sites: IdMap<(u64, StackId), Tracked>,
    live: LiveMap,
    totals: Tracked,
    unknown_frees: u64,
    /// Frees of addresses not live, held for [`CLOCK_SKEW_TICKS`] (see
    /// [`HeldFree`]).
    held_frees: Vec<HeldFree>,
    lost_frees: u64,
    failed_reallocs: u64,
    events: u64,
    /// The current peak; `generation` counts new peaks (see `counters.rs`).
    peak: Peak,
    generation: u64,
    heap: Series,
    rss: Series,
    mapped: Series,
    sizes: SizeHistogram,
    alloc_latency: Durations,
    free_latency: Durations,
    lifetimes: Durations,
    markers: Vec<Marker>,
    markers_dropped: u64,
    footer: Option<Footer>,
    first_ticks: Option<u64>,
    last_ticks: u64,
    /// The serial number the next block gets.
    serial: u64,
    /// Groups of sites whose live bytes are followed over time, if asked.
    groups: Option<SiteGroups>,
    /// Memory by scope.
    scopes: Scopes,
    /// Per (scope name's STRING id, site): the counters of the blocks
    /// allocated there in that scope (only blocks allocated in a scope).
    scope_sites: IdMap<(u64, StackId), Tracked>,
    /// Ownership: per (allocating thread, releasing thread), blocks and
    /// bytes released by another thread than their allocator.
    transfers: BTreeMap<(u64, u64), (u64, u64)>,
    /// Lifetimes of blocks released by their allocating thread, and by
    /// another.
    local_lifetimes: Durations,
    remote_lifetimes: Durations,
    /// Memory errors the recorder saw (the first [`MAX_ERRORS`]).
    errors: Vec<MemoryError>,
    /// The last frees, by address hash (see [`RECENT_FREES`]).
    recent_frees: Vec<ErrorBlock>,
    /// Blocks the leak scan in progress reported (start, size, direct).
    scan_leaks: Vec<(u64, u64, bool)>,
    /// The blocks the last leak scan found leaked, by serial: direct or not.
    /// Blocks it saw and did not list were reachable.
    leaked: IdMap<u64, bool>,
    /// Leak scans, in time order.
    leak_scans: Vec<LeakScan>,
    /// Device and network memory (the gpu-shim's events).
    device: DeviceMemory,
}

/// A leak scan the recorder ran (`memtally run --leak-scan`, or the
/// program's `memtally_leak_check()`): its totals over every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakScan {
    /// Ticks when the world was stopped for it.
    pub ticks: u64,
    /// `memtally_alloc::trace::leak_status`.
    pub status: u8,
    /// Directly leaked blocks and bytes (memtally's block sizes).
    pub direct: [u64; 2],
    /// Indirectly leaked blocks and bytes.
    pub indirect: [u64; 2],
}

/// Memory errors kept (a process aborts at its first one by default).
pub const MAX_ERRORS: usize = 1000;

/// A memory error the recorder saw: an invalid pointer given to an
/// allocator call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError {
    /// When.
    pub ticks: u64,
    /// The thread that made the call.
    pub thread: u64,
    /// What was wrong (`memtally_alloc::trace::error`).
    pub error: u8,
    /// The pointer.
    pub address: u64,
    /// STRING id of the call's name.
    pub call: u64,
    /// The offending call's stack.
    pub stack: StackId,
    /// The block the pointer named, where the trace tells: a live block
    /// (a mismatched `dealloc` layout), or for a double free, the block as
    /// it was when first freed (if that free is among the last
    /// [`RECENT_FREES`] the model kept).
    pub block: Option<ErrorBlock>,
}

/// What the trace knew of the block behind a memory error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorBlock {
    /// Its start.
    pub address: u64,
    /// Requested bytes.
    pub size: u64,
    /// The allocating call's stack.
    pub stack: StackId,
    /// The thread that allocated it.
    pub thread: u64,
    /// When it was allocated.
    pub ticks: u64,
    /// The thread that first freed it and when (None: still live).
    pub freed: Option<(u64, u64)>,
}

/// Frees remembered (by address, direct-mapped) to explain double frees.
pub const RECENT_FREES: usize = 4096;

impl Default for Model {
    fn default() -> Self {
        Model::new(ModelOptions::default())
    }
}

impl Model {
    /// An empty model.
    pub fn new(options: ModelOptions) -> Self {
        Model {
            options,
            header: None,
            sampling: Sampling::Full,
            clock: Clock::new(),
            strings: Strings::default(),
            stacks: Stacks::default(),
            modules: Modules::default(),
            threads: Threads::default(),
            sites: IdMap::default(),
            thread_sites: IdMap::default(),
            live: LiveMap::default(),
            totals: Tracked::new(0),
            unknown_frees: 0,
            held_frees: Vec::new(),
            lost_frees: 0,
            failed_reallocs: 0,
            events: 0,
            peak: Peak::default(),
            generation: 0,
            heap: Series::new(options.series_points),
            rss: Series::new(options.series_points),
            mapped: Series::new(options.series_points),
            sizes: SizeHistogram::default(),
            alloc_latency: Durations::default(),
            free_latency: Durations::default(),
            lifetimes: Durations::default(),
            markers: Vec::new(),
            markers_dropped: 0,
            footer: None,
            first_ticks: None,
            last_ticks: 0,
            serial: 0,
            groups: None,
            scopes: Scopes::default(),
            scope_sites: IdMap::default(),
            transfers: BTreeMap::new(),
            local_lifetimes: Durations::default(),
            remote_lifetimes: Durations::default(),
            errors: Vec::new(),
            recent_frees: Vec::new(),
            scan_leaks: Vec::new(),
            leaked: IdMap::default(),
            leak_scans: Vec::new(),
            device: DeviceMemory::default(),
        }
    }

    /// Follows the live bytes of each group of sites over time (see
    /// [`Model::group_series`]); call before feeding events.
    pub fn track_groups(&mut self, groups: &[Vec<StackId>]) {
        self.groups = Some(SiteGroups::new(groups, self.options.series_points));
    }

    // ------------------------------------------------------------------
    // Input.
    // ------------------------------------------------------------------

    /// Takes the next item of the decoder's ordered stream.
    pub fn feed(&mut self, item: &Ordered) {
        match item {
            Ordered::Record(r) => self.record(r),
            Ordered::Event(e) => self.event(e),
        }
    }

    /// Takes a record. An `EVENTS` record's events are applied in the
    /// order they come, which is only right for a single-threaded trace or
    /// a caller that has ordered them; use [`Model::feed`] with the
    /// decoder's ordered mode otherwise.
    pub fn record(&mut self, record: &Record) {
        match record {
            Record::Header(h) => {
                self.sampling = Sampling::from_header(h.mode, h.sample_bytes);
                self.header = Some(h.clone());
            }
            Record::Clock {
                ticks,
                monotonic_ns,
                ..
            } => {
                self.clock.add(*ticks, *monotonic_ns);
                self.saw_time(*ticks);
            }
            Record::String { id, text } => {
                self.modules.name_path(*id, text);
                self.strings.insert(*id, text.clone());
            }
            Record::Frame(f) => {
                let module = self.modules.find_loaded(f.address).or_else(|| {
                    f.address
                        .checked_sub(1)
                        .and_then(|a| self.modules.find_loaded(a))
                });
                self.stacks.insert(
                    f.id,
                    StackNode {
                        parent: f.parent,
                        address: f.address,
                        module,
                    },
                );
            }
            Record::Module(m) => {
                let path = self.strings.get(m.path).map(str::to_owned);
                self.modules.load(m, path);
            }
            Record::ModuleGone { base } => self.modules.unload(*base),
            Record::Thread {
                thread,
                os_tid,
                name,
                ticks,
            } => {
                let generation = self.generation;
                let t = self.threads.entry(*thread, generation);
                t.info.os_tid = *os_tid;
                t.info.name.clone_from(name);
                t.info.start_ticks = Some(t.info.start_ticks.map_or(*ticks, |s| s.min(*ticks)));
                self.saw_time(*ticks);
            }
            Record::ThreadEnd { thread, ticks } => {
                let generation = self.generation;
                let t = self.threads.entry(*thread, generation);
                t.info.end_ticks = Some(*ticks);
                self.saw_time(*ticks);
            }
            Record::Events { thread, events } => {
                for event in events {
                    self.event(&ThreadEvent {
                        thread: *thread,
                        event: *event,
                    });
                }
            }
            Record::Watermark { .. } | Record::Unknown { .. } => {}
            Record::Memory(m) => {
                self.rss.push(m.ticks, m.rss_bytes);
                self.mapped.push(m.ticks, m.mapped_bytes);
                self.saw_time(m.ticks);
            }
            Record::Gauge {
                ticks,
                memory,
                key,
                bytes,
            } => {
                self.device.gauge(*memory, *key, *bytes);
                self.saw_time(*ticks);
            }
            Record::Footer {
                ticks,
                events,
                dropped,
                flags,
                exit_status,
            } => {
                self.footer = Some(Footer {
                    ticks: *ticks,
                    events: *events,
                    dropped: *dropped,
                    flags: *flags,
                    exit_status: *exit_status,
                });
                self.release_held_frees(u64::MAX);
                self.saw_time(*ticks);
            }
        }
    }

    /// Takes one thread event.
    pub fn event(&mut self, e: &ThreadEvent) {
        let Event { time, kind } = e.event;
        if self.options.until_ticks.is_some_and(|u| time >= u) {
            return;
        }
        let thread = e.thread;
        self.events += 1;
        self.saw_time(time);
        if !self.held_frees.is_empty() {
            self.release_held_frees(time);
        }
        let generation = self.generation;
        let entry = self.threads.entry(thread, generation);
        if entry.info.start_ticks.is_none() {
            entry.info.start_ticks = Some(time);
        }
        match kind {
            EventKind::Alloc {
                address,
                size,
                stack,
                latency,
                ..
            } => {
                if address == 0 {
                    // A failed allocation: nothing was created.
                    self.latency(true, latency, 1);
                    return;
                }
                let w = self.create(thread, time, address, size, stack, false);
                self.latency(true, latency, w.blocks);
                self.after_change(time);
                self.take_held_free(thread, time, address);
            }
            EventKind::Free { address, latency } => {
                if address == 0 {
                    return;
                }
                match self.live.remove(address) {
                    Some(block) => self.free_live(thread, time, address, &block, latency),
                    None => self.held_frees.push(HeldFree {
                        address,
                        thread,
                        time,
                        latency,
                    }),
                }
            }
            EventKind::Realloc {
                old_address,
                new_address,
                new_size,
                stack,
                latency,
            } => {
                if new_address == 0 && new_size > 0 {
                    // The call failed; the old block is untouched.
                    self.failed_reallocs += 1;
                    return;
                }
                if old_address != 0 {
                    match self.live.remove(old_address) {
                        Some(block) => {
                            self.release(&block, time, false, true);
                            self.released_by(&block, thread, time);
                            self.remember_free(old_address, &block, thread, time);
                        }
                        None => self.unknown_free(thread),
                    }
                }
                let blocks = if new_address != 0 {
                    self.create(thread, time, new_address, new_size, stack, true)
                        .blocks
                } else {
                    1
                };
                self.latency(true, latency, blocks);
                self.after_change(time);
                if new_address != 0 && new_address != old_address {
                    self.take_held_free(thread, time, new_address);
                }
            }
            EventKind::Scope { string, instance } => {
                let generation = self.generation;
                self.thread_mut(thread).scope = [string, instance];
                self.scopes.entered(string, instance, generation);
            }
            EventKind::ScopeEnd { instance } => self.scopes.ended(instance),
            // Access annotations are for the distributed replay.
            EventKind::Access { .. } => {}
            EventKind::Device {
                op,
                memory,
                device,
                api,
                address,
                size,
                stack,
                handle,
            } => self.device.apply(&device::DeviceEvent {
                ticks: time,
                thread,
                op,
                memory,
                device,
                api,
                address,
                size,
                stack,
                handle,
            }),
            EventKind::Error {
                error,
                address,
                call,
                stack,
            } => {
                if self.errors.len() < MAX_ERRORS {
                    let block = self.error_block(error, address);
                    self.errors.push(MemoryError {
                        ticks: time,
                        thread,
                        error,
                        address,
                        call,
                        stack,
                        block,
                    });
                }
            }
            EventKind::Leak {
                address,
                size,
                direct,
            } => self.scan_leaks.push((address, size, direct)),
            EventKind::LeakScan {
                stopped_at,
                status,
                direct,
                indirect,
            } => self.leak_scan_ended(stopped_at, status, direct, indirect),
            EventKind::Marker { string } => {
                if self.markers.len() < self.options.max_markers {
                    self.markers.push(Marker {
                        ticks: time,
                        thread,
                        string,
                    });
                } else {
                    self.markers_dropped += 1;
                }
            }
        }
    }

    /// Records a call's latency; 0 means the recorder did not time the
    /// call (in full mode it times one call in eight).
    fn latency(&mut self, alloc: bool, ticks: u64, weight: u64) {
        if ticks == 0 {
            return;
        }
        if alloc {
            self.alloc_latency.record(ticks, weight);
        } else {
            self.free_latency.record(ticks, weight);
        }
    }

    fn saw_time(&mut self, ticks: u64) {
        self.first_ticks = Some(self.first_ticks.map_or(ticks, |f| f.min(ticks)));
        self.last_ticks = self.last_ticks.max(ticks);
    }

    fn thread_mut(&mut self, thread: u64) -> &mut ThreadEntry {
        let generation = self.generation;
        self.threads.entry(thread, generation)
    }

    /// Counts the free of the live `block` at `address` by `thread`.
    fn free_live(&mut self, thread: u64, time: u64, address: u64, block: &LiveBlock, latency: u64) {
        let t = self.thread_mut(thread);
        let temporary = t.last_alloc == Some(block.serial);
        if temporary {
            t.last_alloc = None;
        }
        self.release(block, time, temporary, true);
        self.released_by(block, thread, time);
        self.remember_free(address, block, thread, time);
        self.lifetimes
            .record(time.saturating_sub(block.ticks), block.weight.blocks);
        self.latency(false, latency, block.weight.blocks);
        self.after_change(time);
    }

    /// Counts the held frees older than `now` by more than the clock skew
    /// as frees of unknown addresses (all of them at the trace's end).
    fn release_held_frees(&mut self, now: u64) {
        let mut held = std::mem::take(&mut self.held_frees);
        held.retain(|h| {
            if h.time.saturating_add(CLOCK_SKEW_TICKS) >= now {
                return true;
            }
            self.unknown_free(h.thread);
            self.latency(false, h.latency, 1);
            false
        });
        self.held_frees = held;
    }

    /// `thread` has just allocated `address` at `time`: a held free of
    /// that address by another thread was of this block (see [`HeldFree`]).
    fn take_held_free(&mut self, thread: u64, time: u64, address: u64) {
        let Some(i) = self
            .held_frees
            .iter()
            .position(|h| h.address == address && h.thread != thread)
        else {
            return;
        };
        let h = self.held_frees.swap_remove(i);
        if let Some(block) = self.live.remove(address) {
            self.free_live(h.thread, time, address, &block, h.latency);
        }
    }

    fn unknown_free(&mut self, thread: u64) {
        self.unknown_frees += 1;
        self.thread_mut(thread).info.unknown_frees += 1;
    }

    /// Records a new live block and counts it everywhere; returns its
    /// weight.
    fn create(
        &mut self,
        thread: u64,
        ticks: u64,
        address: u64,
        size: u64,
        stack: StackId,
        realloc: bool,
    ) -> Weight {
        let generation = self.generation;
        let details = self.options.site_details;
        let site = self.sites.entry(stack).or_insert_with(|| SiteEntry {
            tracked: Tracked::new(generation),
            carry: 0.0,
            detail: details.then(Box::default),
            pending: PendingLive::default(),
        });
        let weight = self.sampling.weigh(size, &mut site.carry);
        let serial = self.serial;
        self.serial += 1;
        let instance = self.threads.get(thread).map_or(0, |t| t.scope[1]);
        let block = LiveBlock {
            size,
            stack,
            ticks,
            thread,
            weight,
            serial,
            instance,
        };
        let bump = |c: &mut Counters| {
            c.created(weight);
            if realloc {
                c.reallocations += weight.blocks;
            }
        };
        bump(site.tracked.update(generation));
        if let Some(d) = &mut site.detail {
            let live = site.tracked.update(generation).live_bytes;
            d.allocated(&mut site.pending, size, weight, ticks, live);
        }
        bump(self.totals.update(generation));
        if instance != 0 {
            self.scopes.created(instance, weight, realloc, generation);
            if let Some((name, _)) = self.scopes.instance(instance) {
                let t = self
                    .scope_sites
                    .entry((name, stack))
                    .or_insert_with(|| Tracked::new(generation));
                bump(t.update(generation));
            }
        }
        if self.options.thread_sites {
            let t = self
                .thread_sites
                .entry((thread, stack))
                .or_insert_with(|| Tracked::new(generation));
            bump(t.update(generation));
        }
        if let Some(g) = &mut self.groups {
            g.change(stack, weight.bytes, true, ticks);
        }
        let t = self.thread_mut(thread);
        bump(t.tracked.update(generation));
        t.last_alloc = Some(serial);
        self.sizes.add(size, weight);
        if let Some(old) = self.live.insert(address, block) {
            self.lost_frees += 1;
            self.release(&old, ticks, false, false);
        }
        weight
    }

    /// Takes a block out of every aggregate's live counts. `counted` is
    /// false for blocks whose free was never seen (they are not frees).
    fn release(&mut self, block: &LiveBlock, ticks: u64, temporary: bool, counted: bool) {
        let generation = self.generation;
        let w = block.weight;
        let take = |c: &mut Counters| {
            if counted {
                c.released(w, temporary);
            } else {
                c.live_blocks = c.live_blocks.saturating_sub(w.blocks);
                c.live_bytes = c.live_bytes.saturating_sub(w.bytes);
            }
        };
        if let Some(site) = self.sites.get_mut(&block.stack) {
            take(site.tracked.update(generation));
            if let Some(d) = &mut site.detail {
                let lifetime = counted.then(|| ticks.saturating_sub(block.ticks));
                let live = site.tracked.update(generation).live_bytes;
                d.released(&mut site.pending, lifetime, w, ticks, live);
            }
        }
        take(self.totals.update(generation));
        if block.instance != 0 {
            if let Some((name, _)) = self.scopes.instance(block.instance)
                && let Some(t) = self.scope_sites.get_mut(&(name, block.stack))
            {
                take(t.update(generation));
            }
            self.scopes
                .released(block.instance, w, temporary, counted, generation);
        }
        take(self.thread_mut(block.thread).tracked.update(generation));
        if let Some(t) = self.thread_sites.get_mut(&(block.thread, block.stack)) {
            take(t.update(generation));
        }
        if let Some(g) = &mut self.groups {
            g.change(block.stack, w.bytes, false, ticks);
        }
    }

    /// Keeps a freed block for [`Self::error_block`]: one slot per address
    /// hash, the latest free winning.
    fn remember_free(&mut self, address: u64, block: &LiveBlock, thread: u64, ticks: u64) {
        if self.recent_frees.is_empty() {
            self.recent_frees = vec![ErrorBlock::default(); RECENT_FREES];
        }
        self.recent_frees[recent_slot(address)] = ErrorBlock {
            address,
            size: block.size,
            stack: block.stack,
            thread: block.thread,
            ticks: block.ticks,
            freed: Some((thread, ticks)),
        };
    }

    /// The block behind an error at `address`, as far as the trace tells.
    fn error_block(&self, error: u8, address: u64) -> Option<ErrorBlock> {
        /// How far back from a raced word its block's start is looked
        /// for: a word deeper into a larger block goes without its block
        /// (8,192 lookups at most, for an event that comes a few times a
        /// second at most).
        const RACE_BLOCK_REACH: u64 = 64 << 10;
        use memtally_alloc::trace::error;
        let recently_freed = || {
            self.recent_frees
                .get(recent_slot(address))
                .filter(|b| b.address == address)
                .copied()
        };
        match error {
            error::NOT_LIVE | error::USE_AFTER_FREE => recently_freed(),
            error::LAYOUT | error::OVERFLOW | error::UNDERFLOW => {
                self.live.get(address).map(|b| live_error_block(address, b))
            }
            // The watched word lies inside its block.
            error::RACE_FIRST | error::RACE_SECOND => self
                .live
                .containing(address, RACE_BLOCK_REACH)
                .map(|(start, b)| live_error_block(start, b)),
            _ => None,
        }
    }

    /// Ownership: `block` was released by `thread` at `ticks`. A block
    /// released by another thread than its allocator counts as handed
    /// over, for its site, the totals, both threads and the pair.
    fn released_by(&mut self, block: &LiveBlock, thread: u64, ticks: u64) {
        let w = block.weight;
        let lifetime = ticks.saturating_sub(block.ticks);
        if thread == block.thread {
            self.local_lifetimes.record(lifetime, w.blocks);
            return;
        }
        self.remote_lifetimes.record(lifetime, w.blocks);
        let generation = self.generation;
        if let Some(site) = self.sites.get_mut(&block.stack) {
            site.tracked.update(generation).released_remotely(w);
        }
        self.totals.update(generation).released_remotely(w);
        self.thread_mut(block.thread)
            .tracked
            .update(generation)
            .released_remotely(w);
        let t = self.thread_mut(thread);
        t.info.foreign_frees += w.blocks;
        t.info.foreign_bytes += w.bytes;
        let pair = self.transfers.entry((block.thread, thread)).or_default();
        pair.0 += w.blocks;
        pair.1 += w.bytes;
    }

    /// Notes the heap size after an event and whether it is a new peak.
    fn after_change(&mut self, ticks: u64) {
        let c = self.totals.read(self.generation);
        self.heap.push(ticks, c.live_bytes);
        if c.live_bytes > self.peak.bytes {
            self.peak = Peak {
                bytes: c.live_bytes,
                blocks: c.live_blocks,
                ticks,
            };
            self.generation += 1;
        }
    }

    // ------------------------------------------------------------------
    // Output.
    // ------------------------------------------------------------------

    /// The trace header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// How recorded events are weighted.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// True when counts are estimates (sampled mode).
    pub fn is_estimate(&self) -> bool {
        self.sampling.is_estimate()
    }

    /// The tick-to-time calibration.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The interned strings.
    pub fn strings(&self) -> &Strings {
        &self.strings
    }

    /// The call-stack trie.
    pub fn stacks(&self) -> &Stacks {
        &self.stacks
    }

    /// The loaded modules.
    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    /// Whole-process totals.
    pub fn totals(&self) -> Totals {
        Totals {
            counters: self.totals.read(self.generation),
            unknown_frees: self.unknown_frees,
            lost_frees: self.lost_frees,
            failed_reallocs: self.failed_reallocs,
            events: self.events,
        }
    }

    /// The heap's peak so far.
    pub fn peak(&self) -> Peak {
        self.peak
    }

    /// Every allocation site (stack) with its counters, in no particular
    /// order.
    pub fn sites(&self) -> impl Iterator<Item = Site> + '_ {
        let generation = self.generation;
        self.sites.iter().map(move |(&stack, e)| Site {
            stack,
            counters: e.tracked.read(generation),
        })
    }

    /// The sites of blocks allocated by `thread`, with the counters of
    /// those blocks alone; empty unless the model was made with
    /// [`ModelOptions::thread_sites`].
    pub fn thread_sites(&self, thread: u64) -> impl Iterator<Item = Site> + '_ {
        let generation = self.generation;
        self.thread_sites
            .iter()
            .filter(move |((t, _), _)| *t == thread)
            .map(move |(&(_, stack), tracked)| Site {
                stack,
                counters: tracked.read(generation),
            })
    }

    /// The details of site `stack`, if the model keeps them
    /// ([`ModelOptions::site_details`]).
    pub fn site_detail(&self, stack: StackId) -> Option<SiteDetailRef<'_>> {
        let site = self.sites.get(&stack)?;
        Some(SiteDetailRef {
            detail: site.detail.as_deref()?,
            pending: site.pending,
        })
    }

    /// Ownership transfers: `((allocating thread, releasing thread),
    /// (blocks, bytes))` for every pair of different threads, by pair.
    pub fn transfers(&self) -> impl Iterator<Item = ((u64, u64), (u64, u64))> + '_ {
        self.transfers.iter().map(|(&k, &v)| (k, v))
    }

    /// A leak scan's events are all in: the blocks live when it stopped the
    /// world that it listed are leaked (it lists memtally's blocks, which an
    /// over-aligned allocation may start inside of).
    fn leak_scan_ended(
        &mut self,
        stopped_at: u64,
        status: u8,
        direct: [u64; 2],
        indirect: [u64; 2],
    ) {
        let mut leaks = std::mem::take(&mut self.scan_leaks);
        leaks.sort_unstable();
        self.leaked = IdMap::default();
        for (address, block) in self.live.iter() {
            let i = leaks.partition_point(|&(start, _, _)| start <= address);
            if block.ticks <= stopped_at
                && let Some(&(start, size, direct)) = i.checked_sub(1).map(|i| &leaks[i])
                && address < start + size.max(1)
            {
                self.leaked.insert(block.serial, direct);
            }
        }
        self.leak_scans.push(LeakScan {
            ticks: stopped_at,
            status,
            direct,
            indirect,
        });
    }

    /// What the trace's last leak scan said of a live block.
    pub fn leak_class(&self, block: &LiveBlock) -> LeakClass {
        match self.leak_scans.last() {
            Some(scan) if block.ticks <= scan.ticks => match self.leaked.get(&block.serial) {
                Some(true) => LeakClass::Direct,
                Some(false) => LeakClass::Indirect,
                None => LeakClass::Reachable,
            },
            _ => LeakClass::Unscanned,
        }
    }

    /// The leak scans the trace holds, in time order.
    pub fn leak_scans(&self) -> &[LeakScan] {
        &self.leak_scans
    }

    /// The memory errors recorded, in time order.
    pub fn device(&self) -> &DeviceMemory {
        &self.device
    }

    /// Memory errors the recorder saw (the first [`MAX_ERRORS`]).
    pub fn errors(&self) -> &[MemoryError] {
        &self.errors
    }

    /// Lifetimes of blocks released by the thread that allocated them.
    pub fn local_lifetimes(&self) -> &Durations {
        &self.local_lifetimes
    }

    /// Lifetimes of blocks released by another thread.
    pub fn remote_lifetimes(&self) -> &Durations {
        &self.remote_lifetimes
    }

    /// Every scope name seen, with its aggregates (see `docs/scopes.md`),
    /// by name.
    pub fn scopes(&self) -> Vec<ScopeStats> {
        let generation = self.generation;
        let mut out: Vec<ScopeStats> = self
            .scopes
            .by_name
            .iter()
            .map(|(&string, e)| ScopeStats {
                name: self.strings.get(string).unwrap_or("?").to_owned(),
                string,
                counters: e.tracked.read(generation),
                instances: e.instances,
                ended: e.ended,
                outlived: e.outlived,
                outlived_bytes: e.outlived_bytes,
                per_instance: e.per_instance.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.string.cmp(&b.string)));
        out
    }

    /// The sites of blocks allocated in scope `name` (its STRING id, as in
    /// [`ScopeStats::string`]), with the counters of those blocks alone.
    pub fn scope_sites(&self, name: u64) -> impl Iterator<Item = Site> + '_ {
        let generation = self.generation;
        self.scope_sites
            .iter()
            .filter(move |((n, _), _)| *n == name)
            .map(move |(&(_, stack), tracked)| Site {
                stack,
                counters: tracked.read(generation),
            })
    }

    /// The scope a live block was allocated in: its name's STRING id, and
    /// whether that instance has ended (the block outlived it).
    pub fn block_scope(&self, block: &LiveBlock) -> Option<(u64, bool)> {
        self.scopes.instance(block.instance)
    }

    /// Scope instances the model follows now (live, or ended with blocks
    /// still live).
    pub fn scope_instances_followed(&self) -> usize {
        self.scopes.followed()
    }

    /// The counters of site `stack`.
    pub fn site(&self, stack: StackId) -> Option<Counters> {
        self.sites
            .get(&stack)
            .map(|e| e.tracked.read(self.generation))
    }

    /// Every thread with its counters, by thread number.
    pub fn threads(&self) -> impl Iterator<Item = ThreadStats> + '_ {
        let generation = self.generation;
        self.threads.by_number().map(move |t| ThreadStats {
            info: t.info.clone(),
            counters: t.tracked.read(generation),
        })
    }

    /// The live-allocation map.
    pub fn live(&self) -> &LiveMap {
        &self.live
    }

    /// Requested bytes live after each event, downsampled.
    pub fn heap_series(&self) -> &Series {
        &self.heap
    }

    /// The live bytes over time of each group given to
    /// [`Model::track_groups`], in its order, then that of every other site
    /// (empty if no groups were asked for).
    pub fn group_series(&self) -> &[Series] {
        self.groups.as_ref().map_or(&[], |g| g.series())
    }

    /// Resident set size from the MEMORY records, downsampled.
    pub fn rss_series(&self) -> &Series {
        &self.rss
    }

    /// Bytes the allocator had mapped, from the MEMORY records,
    /// downsampled.
    pub fn mapped_series(&self) -> &Series {
        &self.mapped
    }

    /// Requested sizes of all blocks created.
    pub fn sizes(&self) -> &SizeHistogram {
        &self.sizes
    }

    /// Latency of allocations and reallocations, in ticks (the calls the
    /// recorder timed).
    pub fn alloc_latency(&self) -> &Durations {
        &self.alloc_latency
    }

    /// Latency of frees, in ticks (the calls the recorder timed).
    pub fn free_latency(&self) -> &Durations {
        &self.free_latency
    }

    /// Lifetimes of freed blocks (allocation to free), in ticks.
    pub fn lifetimes(&self) -> &Durations {
        &self.lifetimes
    }

    /// The markers kept, in time order.
    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    /// Markers seen beyond [`ModelOptions::max_markers`].
    pub fn markers_dropped(&self) -> u64 {
        self.markers_dropped
    }

    /// The footer, if the trace was complete.
    pub fn footer(&self) -> Option<Footer> {
        self.footer
    }

    /// Ticks at the start of the recording: the first CLOCK record, or the
    /// earliest time seen.
    pub fn start_ticks(&self) -> u64 {
        self.clock
            .first_ticks()
            .or(self.first_ticks)
            .unwrap_or_default()
    }

    /// Ticks at the end of the recording: the latest time seen (the footer's
    /// in a complete trace).
    pub fn end_ticks(&self) -> u64 {
        self.last_ticks.max(self.start_ticks())
    }

    /// Nanoseconds from the start of the recording to `ticks`.
    pub fn since_start_ns(&self, ticks: u64) -> u64 {
        self.clock.elapsed_ns(self.start_ticks(), ticks)
    }

    /// The ticks `ns` nanoseconds after the start of the recording (the
    /// inverse of [`Model::since_start_ns`]).
    pub fn ticks_after_start(&self, ns: u64) -> u64 {
        let start = self.clock.to_ns(self.start_ticks());
        self.clock.ticks_at_ns(start.saturating_add(ns))
    }

    /// The recording's duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.since_start_ns(self.end_ticks())
    }
}

/// The slot of `address` in the recent-frees table.
fn recent_slot(address: u64) -> usize {
    // Blocks are at least 16-byte aligned: drop those bits, then mix.
    ((address >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RECENT_FREES
}

/// What an error tells of the live block at `address`.
fn live_error_block(address: u64, b: &LiveBlock) -> ErrorBlock {
    ErrorBlock {
        address,
        size: b.size,
        stack: b.stack,
        thread: b.thread,
        ticks: b.ticks,
        freed: None,
    }
}
