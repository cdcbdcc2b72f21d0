//! Reads memtally traces and says where a program's memory went.
//!
//! The crate runs outside the profiled process. Its parts, in the order
//! data flows through them:
//!
//! - [`Analysis`] reads a trace file with the format's decoder
//!   (`memtally_alloc::trace`) in time order, copes with traces that were
//!   cut short, and feeds the [`Model`].
//! - [`Live`] follows a trace while it is written, feeding a model that a
//!   live view reads under a lock.
//! - [`Model`] is the one analysis model every view reads: per-site and
//!   per-thread [`Counters`], the live-allocation map, the heap's peak and
//!   each aggregate's share of it, size and duration distributions, and
//!   memory over time. It streams, so it can follow a growing trace.
//! - [`Symbolizer`] turns stacks into functions, files and lines (inlined
//!   frames included), trimming the allocator's own frames; [`group_sites`]
//!   sums sites by frame or function.
//! - [`report`] builds the `memtally report` document and renders it as
//!   text or JSON.
//! - [`synth`] writes synthetic traces for tests.
//!
//! # Example
//!
//! ```
//! use memtally_profiler::{Analysis, ModelOptions, Symbolizer, report};
//! use memtally_profiler::synth::{TraceBuilder, alloc, free};
//!
//! let mut t = TraceBuilder::new();
//! t.full_header().clock(0, 0).clock(1000, 1000);
//! t.frame(1, 0, 0x401000);
//! t.events(0, &[alloc(10, 0x1000, 64, 1), free(20, 0x1000)]);
//! t.footer(30);
//! let analysis = Analysis::read(t.bytes(), ModelOptions::default()).unwrap();
//! assert_eq!(analysis.model.totals().counters.allocations, 1);
//! assert_eq!(analysis.model.peak().bytes, 64);
//!
//! let mut symbols = Symbolizer::default();
//! let r = report::build(&analysis, &mut symbols, &report::ReportOptions::default());
//! assert!(report::render_text(&r).contains("PEAK HEAP: 64 B"));
//! ```

#![deny(missing_docs)]

pub mod access;
mod clock;
mod error;
pub mod errors;
pub mod export;
pub mod flame;
mod group;
pub mod growth;
mod hash;
pub mod leaks;
mod live;
mod model;
mod modules;
pub mod plot;
mod read;
pub mod replay;
pub mod report;
mod stacks;
mod strings;
pub mod suppress;
mod symbols;
pub mod synth;

pub use clock::{Clock, ClockPoint};
pub use error::{Error, ErrorKind};
pub use group::{
    Group, GroupBy, MAX_GROUP_DEPTH, SiteFrames, group_sites, group_sites_with, permuted,
    sorted_order,
};
pub use live::{Live, LiveState, LiveStatus, WriterWatch};
pub use memtally_alloc::trace::Header;
/// What a device-memory event says (`EventKind::Device`: operations,
/// memory kinds, the host's device number).
pub use memtally_alloc::trace::device as trace_device;
/// What a memory error says was wrong (`MemoryError::error`).
pub use memtally_alloc::trace::error as trace_error;
/// How complete a leak scan was (`LeakScan::status`).
pub use memtally_alloc::trace::leak_status;
pub use model::{
    Counters, Durations, ErrorBlock, Footer, LeakClass, LeakScan, LiveBlock, LiveMap, Log2Bucket,
    Log2Histogram, Marker, MemoryError, Model, ModelOptions, Peak, Point, SITE_SERIES_POINTS,
    Sampling, ScopeStats, Series, Site, SiteDetailRef, SizeBucket, SizeHistogram, ThreadInfo,
    ThreadStats, Totals, Weight,
};
pub use modules::{ModuleInfo, Modules};
pub use read::{Analysis, Ending, read_clock, read_header};
pub use stacks::{MAX_DEPTH, StackId, StackNode, Stacks};
pub use strings::Strings;
pub use symbols::{
    FileProblem, Location, ModuleProblem, SymbolizedStack, Symbolizer, SymbolizerOptions, demangle,
    inner_allocator_frames, is_allocator_frame,
};
