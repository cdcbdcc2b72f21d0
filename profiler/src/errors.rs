//! `memtally errors`: every memory error in a trace (invalid and double
//! frees, mismatched `dealloc` layouts, faults on guarded allocations),
//! grouped by what went wrong and where: the kind, the call and the
//! offending stack. Each group has its count, the threads involved, when
//! it first happened, and what the trace tells of the block (its
//! allocation stack, who first freed it).
//!
//! A view over the report's error list (which the analysis model fills):
//! no aggregation of its own beyond the grouping.

use crate::read::Analysis;
use crate::report::{self, ErrorReport, ReportOptions, SiteReport, TraceInfo};
use crate::symbols::Symbolizer;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Version of the JSON document (docs/errors-json.md).
pub const SCHEMA_VERSION: u32 = 1;

/// What `memtally errors` shows.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorsReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was recorded, and how the trace ended.
    pub trace: TraceInfo,
    /// Errors in the trace (the recorder keeps the first 1,000), races
    /// between atomic accesses or between two reads not counted.
    pub total: u64,
    /// Data races between atomic accesses, left out of `groups`.
    pub atomic_races: u64,
    /// Pairs of overlapping reads of a word that changed during the
    /// window, by a thread not watched then: no proven race, left out of
    /// `groups` (see `ErrorReport::reads_only`).
    pub read_only_races: u64,
    /// Groups, most frequent first (then earliest).
    pub groups: Vec<ErrorGroup>,
}

/// Errors of one kind, by one call, from one stack.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorGroup {
    /// What went wrong (as in the report's `errors[].kind`).
    pub kind: String,
    /// The call (`free`, `realloc`, `dealloc`, `access` for a fault).
    pub call: String,
    /// How many times.
    pub count: u64,
    /// The threads that made the calls, in order of first error.
    pub threads: Vec<u64>,
    /// When the first happened, in nanoseconds since the recording started.
    pub first_ns: u64,
    /// The pointers (the first 8, in order).
    pub addresses: Vec<u64>,
    /// The offending call's stack (a site object, counters zero).
    pub site: SiteReport,
    /// The block behind the first error, where the trace tells.
    pub block: Option<report::ErrorBlockReport>,
    /// For a data race, the other thread's access (of the first).
    pub race: Option<report::RaceSideReport>,
}

/// Builds the errors view of `analysis`, with `frames` frames per stack.
pub fn build(analysis: &Analysis, symbolizer: &mut Symbolizer, frames: usize) -> ErrorsReport {
    let options = ReportOptions { top: 0, frames };
    let r = report::build(analysis, symbolizer, &options);
    let mut groups: Vec<ErrorGroup> = Vec::new();
    let atomic_races = r.errors.iter().filter(|e| e.atomic).count() as u64;
    let read_only_races = r
        .errors
        .iter()
        .filter(|e| e.reads_only && !e.atomic)
        .count() as u64;
    for e in r.errors.iter().filter(|e| !e.set_aside()) {
        let key = group_key(&e.kind, &e.call, &e.site, &e.race);
        match groups
            .iter_mut()
            .find(|g| group_key(&g.kind, &g.call, &g.site, &g.race) == key)
        {
            Some(g) => {
                g.count += 1;
                if !g.threads.contains(&e.thread) {
                    g.threads.push(e.thread);
                }
                if g.addresses.len() < 8 {
                    g.addresses.push(e.address);
                }
            }
            None => groups.push(group_of(e)),
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_ns.cmp(&b.first_ns)));
    ErrorsReport {
        schema_version: SCHEMA_VERSION,
        trace: r.trace,
        total: r.errors.len() as u64 - atomic_races - read_only_races,
        atomic_races,
        read_only_races,
        groups,
    }
}

/// What errors of one group share: the kind, and each side's call and
/// stack, the two sides of a race in either order (the same two accesses
/// trap in either order from one window to the next).
fn group_key<'a>(
    kind: &'a str,
    call: &'a str,
    site: &SiteReport,
    race: &'a Option<report::RaceSideReport>,
) -> (&'a str, [(u64, &'a str); 2]) {
    let mine = (site.stack, call);
    let mut sides = [
        mine,
        race.as_ref().map_or((0, ""), |o| (o.site.stack, &o.call)),
    ];
    if race.is_some() {
        sides.sort();
    }
    (kind, sides)
}

fn group_of(e: &ErrorReport) -> ErrorGroup {
    ErrorGroup {
        kind: e.kind.clone(),
        call: e.call.clone(),
        count: 1,
        threads: vec![e.thread],
        first_ns: e.time_ns,
        addresses: vec![e.address],
        site: e.site.clone(),
        block: e.block.clone(),
        race: e.race.clone(),
    }
}

/// Writes the JSON document.
pub fn write_json(r: &ErrorsReport, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, r)?;
    writeln!(out)
}

/// The text view.
pub fn render_text(r: &ErrorsReport) -> String {
    let mut o = String::new();
    let mut atomic = match r.atomic_races {
        0 => String::new(),
        n => format!(
            "({n} data race{} between atomic accesses left out)\n",
            if n == 1 { "" } else { "s" }
        ),
    };
    if r.read_only_races > 0 {
        let n = r.read_only_races;
        let _ = writeln!(
            atomic,
            "({n} pair{} of overlapping reads left out: the word changed, but by a thread not watched then)",
            if n == 1 { "" } else { "s" }
        );
    }
    if r.groups.is_empty() {
        o.push_str("No memory errors in this trace.\n");
        o.push_str(&atomic);
        return o;
    }
    let _ = writeln!(
        o,
        "MEMORY ERRORS: {} in {} {}",
        r.total,
        r.groups.len(),
        if r.groups.len() == 1 {
            "group"
        } else {
            "groups"
        }
    );
    for (i, g) in r.groups.iter().enumerate() {
        let threads: Vec<String> = g.threads.iter().map(u64::to_string).collect();
        let times = format!(
            "{} {} (thread{} {}), first at {}, at {:#x}{}",
            g.count,
            if g.count == 1 { "time" } else { "times" },
            if threads.len() == 1 { "" } else { "s" },
            threads.join(", "),
            report::text_ns(g.first_ns),
            g.addresses[0],
            if g.addresses.len() > 1 { ", ..." } else { "" },
        );
        match &g.race {
            // A race: both accesses, each with its stack.
            Some(other) => {
                let _ = writeln!(o, "\n#{} {}: {times}", i + 1, g.kind);
                let _ = writeln!(o, "  {} {}:", report::article(&g.call), g.call);
                stack(&mut o, "  at", &g.site);
                let _ = writeln!(
                    o,
                    "  overlapping {} {} by thread {} at {}:",
                    report::article(&other.call),
                    other.call,
                    other.thread,
                    report::text_ns(other.time_ns)
                );
                stack(&mut o, "  at", &other.site);
            }
            // A fault on a guarded block: the access, no allocator call.
            None if g.call == "access" => {
                let _ = writeln!(o, "\n#{} {} by an access: {times}", i + 1, g.kind);
                stack(&mut o, "  at", &g.site);
            }
            None => {
                let _ = writeln!(o, "\n#{} {} in {}(): {times}", i + 1, g.kind, g.call);
                stack(&mut o, "  at", &g.site);
            }
        }
        if let Some(b) = &g.block {
            let _ = writeln!(
                o,
                "  the block: {} at {:#x}, allocated by thread {} at {}",
                report::text_bytes(b.size),
                b.address,
                b.allocated_by_thread,
                report::text_ns(b.allocated_at_ns)
            );
            stack(&mut o, "    allocated at", &b.allocated_at);
            if let (Some(t), Some(when)) = (b.freed_by_thread, b.freed_at_ns) {
                let _ = writeln!(
                    o,
                    "    first freed by thread {t} at {}",
                    report::text_ns(when)
                );
            }
        }
    }
    if !atomic.is_empty() {
        o.push('\n');
        o.push_str(&atomic);
    }
    o
}

/// `lead` then the stack's frames, one per line.
fn stack(o: &mut String, lead: &str, site: &SiteReport) {
    if site.frames.is_empty() {
        let _ = writeln!(o, "{lead} <no stack recorded>");
        return;
    }
    let pad = " ".repeat(lead.len());
    for (k, f) in site.frames.iter().enumerate() {
        let _ = writeln!(
            o,
            "{} {}",
            if k == 0 { lead } else { &pad },
            report::frame_text(f)
        );
    }
    if site.more_frames > 0 {
        let _ = writeln!(o, "{pad} ... {} more (--frames)", site.more_frames);
    }
}
