//! The JSON export: the analysis model in full (every site with its whole
//! symbolised stack, every thread, the timelines and the markers), where
//! `memtally report --json` shows the top sites only. The types below are
//! the schema documented in `docs/export-json.md`; fields are only ever
//! added, and a change of meaning bumps [`SCHEMA_VERSION`].

use crate::read::Analysis;
use crate::report::SiteReport;
use crate::report::{
    SiteBuilder, Summary, ThreadReport, TimePoint, TraceInfo, notes, summary, thread_reports,
    timeline, trace_info,
};
use crate::symbols::Symbolizer;
use serde::Serialize;
use std::io::Write;

/// The version of the export schema.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole export document.
#[derive(Clone, Debug, Serialize)]
pub struct Export {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was recorded, and how the trace ended (as in the report).
    pub trace: TraceInfo,
    /// Whole-process totals (as in the report).
    pub summary: Summary,
    /// Every site, by bytes allocated (largest first, ties by stack id),
    /// with its whole stack.
    pub sites: Vec<SiteReport>,
    /// Every thread, by thread number.
    pub threads: Vec<ThreadReport>,
    /// Memory over time, downsampled.
    pub timeline: ExportTimeline,
    /// User markers, in time order.
    pub markers: Vec<MarkerReport>,
    /// Caveats (as in the report).
    pub notes: Vec<String>,
}

/// Memory over time.
#[derive(Clone, Debug, Serialize)]
pub struct ExportTimeline {
    /// Requested bytes live.
    pub heap: Vec<TimePoint>,
    /// Resident set size.
    pub rss: Vec<TimePoint>,
    /// Bytes the allocator had mapped.
    pub mapped: Vec<TimePoint>,
}

/// A user marker.
#[derive(Clone, Debug, Serialize)]
pub struct MarkerReport {
    /// Nanoseconds from the start.
    pub time_ns: u64,
    /// The thread that set it.
    pub thread: u64,
    /// Its text.
    pub text: String,
}

/// Builds the export document of `analysis`.
pub fn build(analysis: &Analysis, symbolizer: &mut Symbolizer) -> Export {
    let model = &analysis.model;
    let mut sites: Vec<_> = model.sites().collect();
    sites.sort_by(|a, b| {
        b.counters
            .bytes_allocated
            .cmp(&a.counters.bytes_allocated)
            .then(a.stack.cmp(&b.stack))
    });
    let threads = thread_reports(model);
    let site_count = sites.len();
    let mut b = SiteBuilder::new(model, symbolizer, usize::MAX);
    let sites = sites.iter().map(|s| b.site(s)).collect();
    let markers = model
        .markers()
        .iter()
        .map(|m| MarkerReport {
            time_ns: model.since_start_ns(m.ticks),
            thread: m.thread,
            text: model.strings().get(m.string).unwrap_or("?").to_owned(),
        })
        .collect();
    Export {
        schema_version: SCHEMA_VERSION,
        trace: trace_info(analysis),
        summary: summary(model, threads.len(), site_count),
        sites,
        threads,
        timeline: ExportTimeline {
            heap: timeline(model, model.heap_series()),
            rss: timeline(model, model.rss_series()),
            mapped: timeline(model, model.mapped_series()),
        },
        markers,
        notes: notes(analysis),
    }
}

/// Writes `export` as pretty-printed JSON followed by a newline.
pub fn write(export: &Export, out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, export)?;
    out.write_all(b"\n")
}
