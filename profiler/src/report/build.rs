//! Building a [`Report`] from an analysed trace: choosing and ordering the
//! sites each section shows, symbolising their stacks, converting ticks to
//! nanoseconds, and writing down the caveats.

use super::ReportOptions;
use super::schema::*;
use super::text::plural;
use crate::clock::Clock;
use crate::model::{Counters, DeviceSite, Durations, Model, Series, Site};
use crate::read::{Analysis, Ending};
use crate::symbols::Symbolizer;
use std::collections::HashMap;

/// Builds the report of `analysis`.
pub fn build(analysis: &Analysis, symbolizer: &mut Symbolizer, options: &ReportOptions) -> Report {
    let model = &analysis.model;
    let totals = model.totals();
    let c = totals.counters;
    let peak = model.peak();
    let mut sites: Vec<Site> = model.sites().collect();
    sites.sort_by_key(|s| s.stack);
    let mut b = SiteBuilder::new(model, symbolizer, options.frames);
    let top = options.top;
    let peak_sites = b.top(&sites, top, |c| (c.at_peak_bytes, c.at_peak_blocks));
    let live_sites = b.top(&sites, top, |c| (c.live_bytes, c.live_blocks));
    let by_bytes = b.top(&sites, top, |c| (c.bytes_allocated, c.allocations));
    let by_count = b.top(&sites, top, |c| (c.allocations, c.bytes_allocated));
    let by_peak = b.top(&sites, top, |c| (c.max_live_bytes, 0));
    let temp_sites = b.top(&sites, top, |c| (c.temporary, c.temporary_bytes));
    let remote_sites = b.top(&sites, top, |c| (c.remote_frees, c.remote_bytes));

    let clock = model.clock();
    let threads = thread_reports(model);
    let scopes = scope_reports(model);

    let notes = notes(analysis);
    let unsymbolised_modules = b
        .symbolizer
        .problems()
        .into_iter()
        .map(|p| ModuleProblemReport {
            path: p.path,
            problem: p.problem.to_string(),
        })
        .collect();

    let names: std::collections::HashMap<u64, String> =
        threads.iter().map(|t| (t.thread, t.name.clone())).collect();
    let mut transfers: Vec<TransferReport> = model
        .transfers()
        .map(|((from, to), (blocks, bytes))| TransferReport {
            from,
            from_name: names.get(&from).cloned().unwrap_or_default(),
            to,
            to_name: names.get(&to).cloned().unwrap_or_default(),
            blocks,
            bytes,
        })
        .collect();
    transfers.sort_by(|a, b| {
        b.blocks
            .cmp(&a.blocks)
            .then((a.from, a.to).cmp(&(b.from, b.to)))
    });
    let ownership = OwnershipReport {
        remote_frees: c.remote_frees,
        remote_bytes: c.remote_bytes,
        remote_share: share(c.remote_frees, c.frees),
        transfers,
        local_lifetime_ns: durations(model.local_lifetimes(), clock),
        remote_lifetime_ns: durations(model.remote_lifetimes(), clock),
        sites: remote_sites,
    };
    let errors = error_reports(&mut b, model);
    let device = device_report(model, &mut b, top);
    Report {
        device,
        errors,
        ownership,
        scopes,
        schema_version: SCHEMA_VERSION,
        trace: trace_info(analysis),
        summary: summary(model, threads.len(), sites.len()),
        peak: PeakReport {
            bytes: peak.bytes,
            blocks: peak.blocks,
            time_ns: model.since_start_ns(peak.ticks),
            sites: peak_sites,
        },
        live_at_exit: LiveReport {
            bytes: c.live_bytes,
            blocks: c.live_blocks,
            sites: live_sites,
        },
        top_by_bytes: by_bytes,
        top_by_count: by_count,
        top_by_peak: by_peak,
        temporary: TemporaryReport {
            count: c.temporary,
            bytes: c.temporary_bytes,
            share: share(c.temporary, c.allocations),
            sites: temp_sites,
        },
        sizes: model
            .sizes()
            .buckets()
            .into_iter()
            .map(|b| SizeBucketReport {
                min: b.min,
                max: b.max,
                blocks: b.blocks,
                bytes: b.bytes,
                served: b.served,
            })
            .collect(),
        alloc_latency_ns: durations(model.alloc_latency(), clock),
        free_latency_ns: durations(model.free_latency(), clock),
        lifetime_ns: durations(model.lifetimes(), clock),
        threads,
        timeline: Timeline {
            heap: timeline(model, model.heap_series()),
            rss: timeline(model, model.rss_series()),
        },
        notes,
        unsymbolised_modules,
    }
}

/// The device-memory section: None when the trace has no device event.
fn device_report(model: &Model, b: &mut SiteBuilder<'_>, top: usize) -> Option<DeviceReport> {
    use memtally_alloc::trace::device::{self, memory};
    let dm = model.device();
    if dm.is_empty() {
        return None;
    }
    let ordinal = |d: u32| (d != device::HOST).then_some(d);
    let string = |id: u64| model.strings().get(id).unwrap_or("?").to_owned();
    let devices = dm
        .devices()
        .map(|(d, t)| DeviceTotalsReport {
            device: ordinal(d),
            live_bytes: t.all.live_bytes,
            live_blocks: t.all.live_blocks,
            peak_bytes: t.all.peak_bytes,
            peak_time_ns: model.since_start_ns(t.peak_ticks),
            allocations: t.all.allocations,
            bytes_allocated: t.all.bytes_allocated,
            frees: t.frees,
            failures: t.failures,
            failed_bytes: t.failed_bytes,
            pool_reserved_bytes: t.levels[memory::POOL as usize].bytes,
            peak_pool_reserved_bytes: t.levels[memory::POOL as usize].peak_bytes,
            levels: t
                .levels
                .iter()
                .enumerate()
                .filter(|&(i, l)| i != usize::from(memory::POOL) && l.peak_bytes > 0)
                .map(|(i, l)| LevelReport {
                    memory: device::memory_name(i.min(memory::COUNT) as u8).into(),
                    bytes: l.bytes,
                    peak_bytes: l.peak_bytes,
                })
                .collect(),
            by_memory: t
                .by_memory
                .iter()
                .enumerate()
                .filter(|(_, k)| k.allocations > 0)
                .map(|(i, k)| MemoryKindReport {
                    memory: device::memory_name(i.min(memory::COUNT) as u8).into(),
                    live_bytes: k.live_bytes,
                    peak_bytes: k.peak_bytes,
                    allocations: k.allocations,
                    bytes_allocated: k.bytes_allocated,
                })
                .collect(),
        })
        .collect();
    let sites = device_sites(model, b, top, |_| true);
    let failures = dm
        .failures()
        .iter()
        .map(|f| DeviceFailureReport {
            device: ordinal(f.device),
            api: string(f.api),
            memory: device::memory_name(f.memory).into(),
            size: f.size,
            thread: f.thread,
            time_ns: model.since_start_ns(f.ticks),
            site: b.site(&Site {
                stack: f.stack,
                counters: Counters::default(),
            }),
        })
        .collect();
    let mut descriptors: Vec<DescriptorReport> = dm
        .keyed_levels()
        .filter(|&(d, m, _, _)| {
            d == device::HOST
                && matches!(m, memory::SOCKET | memory::IO_URING | memory::PACKET_RING)
        })
        .map(|(_, m, fd, l)| DescriptorReport {
            fd,
            memory: device::memory_name(m).into(),
            bytes: l.bytes,
            peak_bytes: l.peak_bytes,
        })
        .collect();
    descriptors.sort_by(|a, b| {
        b.peak_bytes
            .cmp(&a.peak_bytes)
            .then(a.fd.cmp(&b.fd))
            .then(a.memory.cmp(&b.memory))
    });
    descriptors.truncate(top);
    Some(DeviceReport {
        devices,
        sites,
        failures,
        unknown_frees: dm.unknown_frees(),
        reused_while_live: dm.reused_while_live(),
        descriptors,
    })
}

/// The device sites `keep` keeps, memory before address space and
/// registrations (whose bytes are not new memory), then by bytes live,
/// then allocated; the first `top`.
pub(crate) fn device_sites(
    model: &Model,
    b: &mut SiteBuilder<'_>,
    top: usize,
    keep: impl Fn(&DeviceSite) -> bool,
) -> Vec<DeviceSiteReport> {
    use memtally_alloc::trace::device;
    let ordinal = |d: u32| (d != device::HOST).then_some(d);
    let mut sites: Vec<_> = model.device().sites().filter(|(_, s)| keep(s)).collect();
    let rank = |s: &DeviceSite| {
        (
            device::counts_in_total(s.memory),
            s.live_bytes,
            s.bytes_allocated,
        )
    };
    sites.sort_by(|(ka, a), (kb, b)| (rank(b), ka).cmp(&(rank(a), kb)));
    sites
        .into_iter()
        .take(top)
        .map(|((d, stack), s)| DeviceSiteReport {
            device: ordinal(d),
            api: model.strings().get(s.api).unwrap_or("?").to_owned(),
            memory: device::memory_name(s.memory).into(),
            allocations: s.allocations,
            bytes_allocated: s.bytes_allocated,
            live_blocks: s.live_blocks,
            live_bytes: s.live_bytes,
            max_live_bytes: s.max_live_bytes,
            site: b.site(&Site {
                stack,
                counters: Counters::default(),
            }),
        })
        .collect()
}

/// Whole-process totals (the `summary` section of every view's JSON).
pub(crate) fn summary(model: &Model, threads: usize, sites: usize) -> Summary {
    let totals = model.totals();
    let c = totals.counters;
    let peak = model.peak();
    let max_rss = model
        .rss_series()
        .points()
        .map(|p| p.max)
        .max()
        .unwrap_or(0);
    Summary {
        duration_ns: model.duration_ns(),
        allocations: c.allocations,
        reallocations: c.reallocations,
        frees: c.frees,
        bytes_allocated: c.bytes_allocated,
        bytes_freed: c.bytes_freed,
        unknown_frees: totals.unknown_frees,
        lost_frees: totals.lost_frees,
        failed_reallocs: totals.failed_reallocs,
        temporary: c.temporary,
        live_blocks: c.live_blocks,
        live_bytes: c.live_bytes,
        peak_bytes: peak.bytes,
        peak_blocks: peak.blocks,
        peak_time_ns: model.since_start_ns(peak.ticks),
        max_rss_bytes: max_rss,
        threads: threads as u64,
        sites: sites as u64,
        events: totals.events,
    }
}

/// Every thread's totals, by thread number.
pub(crate) fn thread_reports(model: &Model) -> Vec<ThreadReport> {
    model
        .threads()
        .map(|t| ThreadReport {
            thread: t.info.thread,
            os_tid: t.info.os_tid,
            name: t.info.name,
            allocations: t.counters.allocations,
            bytes_allocated: t.counters.bytes_allocated,
            frees: t.counters.frees,
            live_blocks: t.counters.live_blocks,
            live_bytes: t.counters.live_bytes,
            at_peak_bytes: t.counters.at_peak_bytes,
            temporary: t.counters.temporary,
            unknown_frees: t.info.unknown_frees,
            handed_over: t.counters.remote_frees,
            taken_over: t.info.foreign_frees,
        })
        .collect()
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn durations(d: &Durations, clock: &Clock) -> DurationReport {
    let ns = |ticks| clock.ticks_to_ns(ticks);
    DurationReport {
        count: d.count(),
        mean: (d.mean() * clock.ns_per_tick()).round() as u64,
        p50: ns(d.quantile(0.5)),
        p90: ns(d.quantile(0.9)),
        p99: ns(d.quantile(0.99)),
        p999: ns(d.quantile(0.999)),
        max: ns(d.max()),
    }
}

/// A series as points in nanoseconds from the start.
pub(crate) fn timeline(model: &Model, series: &Series) -> Vec<TimePoint> {
    series
        .points()
        .map(|p| TimePoint {
            time_ns: model.since_start_ns(p.ticks),
            bytes: p.last,
            max_bytes: p.max,
        })
        .collect()
}

/// Every scope's memory, by name.
pub(crate) fn scope_reports(model: &Model) -> Vec<ScopeReport> {
    model
        .scopes()
        .into_iter()
        .map(|s| ScopeReport {
            name: s.name,
            instances: s.instances,
            ended: s.ended,
            allocations: s.counters.allocations,
            bytes_allocated: s.counters.bytes_allocated,
            live_bytes: s.counters.live_bytes,
            live_blocks: s.counters.live_blocks,
            max_live_bytes: s.counters.max_live_bytes,
            at_peak_bytes: s.counters.at_peak_bytes,
            outlived_instances: s.outlived,
            outlived_bytes: s.outlived_bytes,
            bytes_per_instance_p50: s.per_instance.quantile(0.5),
            bytes_per_instance_p99: s.per_instance.quantile(0.99),
            bytes_per_instance_max: s.per_instance.max(),
        })
        .collect()
}

/// The caveats a reader of any view must know: how the trace ended, lost
/// events, estimates, frees and blocks the model could not match, the
/// clock.
pub(crate) fn notes(analysis: &Analysis) -> Vec<String> {
    let model = &analysis.model;
    let totals = model.totals();
    let header = model.header().cloned().unwrap_or_default();
    let estimated = model.is_estimate();
    let clock = model.clock();
    let mut notes = Vec::new();
    match analysis.ending {
        Ending::CutShort { at } => notes.push(format!(
            "trace cut short at byte {at}: the process did not exit normally; everything before the cut is analysed"
        )),
        Ending::Damaged { at, kind, what } => notes.push(format!(
            "the trace is damaged at byte {at} (a record of kind {kind}: {what}): reading stopped there; everything before the damage is analysed"
        )),
        Ending::Complete { exec: true, .. } => notes.push(
            "the trace ends where the process executed another program (whose events, if recorded, are in a trace of their own)"
                .into(),
        ),
        Ending::Complete { .. } if model.footer().is_some_and(|f| f.detached()) => notes.push(
            "recorded from an attach to the running process until the client detached: 'live at end' is what was live then, not a leak at exit"
                .into(),
        ),
        Ending::Complete {
            clean_exit: false, ..
        } => notes.push("the process did not exit normally (the trace's footer says so)".into()),
        Ending::Complete { .. } => {}
    }
    if let Some(f) = model.footer()
        && f.dropped > 0
    {
        notes.push(format!(
            "the recorder lost {}",
            plural(f.dropped, "event", "events")
        ));
    }
    if estimated {
        notes.push(format!(
            "sampled trace (mean interval {} bytes): counts and bytes are estimates, each sample weighted by the inverse of its probability",
            header.sample_bytes
        ));
    }
    if totals.unknown_frees > 0 {
        notes.push(format!(
            "not counted: {} of addresses not allocated while recording (blocks allocated before recording began{})",
            plural(totals.unknown_frees, "free", "frees"),
            if estimated { ", or not sampled" } else { "" }
        ));
    }
    if totals.lost_frees > 0 {
        notes.push(format!(
            "{} never seen freed: the address was allocated again while live",
            plural(totals.lost_frees, "block", "blocks")
        ));
    }
    if !clock.is_calibrated() {
        notes.push(
            "the trace has fewer than two CLOCK records: times assume one tick per nanosecond"
                .into(),
        );
    }
    notes
}

/// What was recorded and how the trace ended (the `trace` section of every
/// view's JSON).
pub(crate) fn trace_info(analysis: &Analysis) -> TraceInfo {
    let model = &analysis.model;
    let header = model.header().cloned().unwrap_or_default();
    let (complete, clean_exit, exec, cut_at, damage) = match analysis.ending {
        Ending::Complete { clean_exit, exec } => (true, clean_exit, exec, None, None),
        Ending::CutShort { at } => (false, false, false, Some(at), None),
        Ending::Damaged { at, kind, what } => (
            false,
            false,
            false,
            Some(at),
            Some(format!("byte {at}: a record of kind {kind}: {what}")),
        ),
    };
    let estimated = model.is_estimate();
    TraceInfo {
        path: analysis.path.as_ref().map(|p| p.display().to_string()),
        bytes: analysis.bytes,
        pid: header.pid,
        parent_pid: header.parent_pid,
        exe: header.exe,
        argv: header.argv,
        mode: if estimated { "sampled" } else { "full" }.into(),
        sample_bytes: header.sample_bytes,
        stack_depth: header.stack_depth,
        estimated,
        start_realtime_ns: header.start_realtime_ns,
        complete,
        clean_exit,
        exec,
        exit_status: model.footer().and_then(|f| f.exit_status),
        cut_at,
        damage,
        clock_calibrated: model.clock().is_calibrated(),
    }
}

/// Symbolises and formats sites, each stack once.
pub(crate) struct SiteBuilder<'a> {
    model: &'a Model,
    pub(crate) symbolizer: &'a mut Symbolizer,
    frames: usize,
    cache: HashMap<u64, (Vec<FrameReport>, usize, usize)>,
}

impl<'a> SiteBuilder<'a> {
    /// A builder showing at most `frames` of each stack's own frames.
    pub(crate) fn new(model: &'a Model, symbolizer: &'a mut Symbolizer, frames: usize) -> Self {
        SiteBuilder {
            model,
            symbolizer,
            frames,
            cache: HashMap::new(),
        }
    }

    /// The `n` sites with the largest non-zero `key`, largest first (ties
    /// by stack id).
    fn top(
        &mut self,
        sites: &[Site],
        n: usize,
        key: impl Fn(&Counters) -> (u64, u64),
    ) -> Vec<SiteReport> {
        let mut chosen: Vec<&Site> = sites
            .iter()
            .filter(|s| key(&s.counters) != (0, 0))
            .collect();
        chosen.sort_by(|a, b| {
            key(&b.counters)
                .cmp(&key(&a.counters))
                .then(a.stack.cmp(&b.stack))
        });
        chosen.truncate(n);
        chosen.into_iter().map(|s| self.site(s)).collect()
    }

    /// The report of one site.
    pub(crate) fn site(&mut self, s: &Site) -> SiteReport {
        let (frames, library_frames, more_frames) = self
            .cache
            .entry(s.stack)
            .or_insert_with(|| {
                let stack = self.symbolizer.stack(self.model, s.stack);
                // The limit counts the program's frames; the library
                // frames between it and the allocator come on top.
                let keep = stack.library.saturating_add(self.frames);
                let more = stack.frames.len().saturating_sub(keep);
                let frames = stack
                    .frames
                    .into_iter()
                    .take(keep)
                    .map(|l| FrameReport {
                        function: l.function,
                        file: l.file,
                        line: l.line,
                        module: l.module,
                        module_offset: l.module_offset,
                        address: l.address,
                        inlined: l.inlined,
                    })
                    .collect();
                (frames, stack.library, more)
            })
            .clone();
        let c = &s.counters;
        SiteReport {
            stack: s.stack,
            allocations: c.allocations,
            reallocations: c.reallocations,
            frees: c.frees,
            bytes_allocated: c.bytes_allocated,
            live_blocks: c.live_blocks,
            live_bytes: c.live_bytes,
            max_live_bytes: c.max_live_bytes,
            at_peak_bytes: c.at_peak_bytes,
            at_peak_blocks: c.at_peak_blocks,
            temporary: c.temporary,
            temporary_share: share(c.temporary, c.allocations),
            remote_frees: c.remote_frees,
            remote_share: share(c.remote_frees, c.frees),
            frames,
            library_frames,
            more_frames,
        }
    }
}

/// The trace's memory errors as the report lists them (see
/// [`error_reports`]), each stack with at most `frames` frames of its own:
/// for a view that shows only them (the dashboard's alerts).
pub fn error_list(model: &Model, symbolizer: &mut Symbolizer, frames: usize) -> Vec<ErrorReport> {
    let mut b = SiteBuilder::new(model, symbolizer, frames);
    error_reports(&mut b, model)
}

/// One memory error event as the report shows it, before races are paired.
fn error_report(
    b: &mut SiteBuilder<'_>,
    model: &Model,
    e: &crate::model::MemoryError,
) -> ErrorReport {
    ErrorReport {
        kind: memtally_alloc::trace::error::describe(e.error).into(),
        call: model.strings().get(e.call).unwrap_or("?").to_owned(),
        address: e.address,
        time_ns: model.since_start_ns(e.ticks),
        thread: e.thread,
        site: b.site(&Site {
            stack: e.stack,
            counters: Counters::default(),
        }),
        race: None,
        atomic: false,
        reads_only: false,
        block: e.block.map(|k| ErrorBlockReport {
            address: k.address,
            size: k.size,
            allocated_by_thread: k.thread,
            allocated_at_ns: model.since_start_ns(k.ticks),
            allocated_at: b.site(&Site {
                stack: k.stack,
                counters: Counters::default(),
            }),
            freed_by_thread: k.freed.map(|f| f.0),
            freed_at_ns: k.freed.map(|f| model.since_start_ns(f.1)),
        }),
    }
}

/// The report's memory errors: a data race's two sides (the other
/// thread's access, which it records during the first's stall, then the
/// first's) paired into one, and races between atomic accesses, or between
/// two reads, marked.
fn error_reports(b: &mut SiteBuilder<'_>, model: &Model) -> Vec<ErrorReport> {
    use memtally_alloc::trace::error::{RACE_FIRST, RACE_SECOND};
    let errors = model.errors();
    let one = |b: &mut SiteBuilder<'_>, e| error_report(b, model, e);
    let mut code = crate::access::CodeReader::default();
    let mut out = Vec::new();
    let mut paired = vec![false; errors.len()];
    for (i, e) in errors.iter().enumerate() {
        if paired[i] {
            continue;
        }
        let first = (e.error == RACE_SECOND)
            .then(|| {
                (i + 1..errors.len().min(i + 9))
                    .find(|&j| errors[j].error == RACE_FIRST && errors[j].address == e.address)
            })
            .flatten();
        let mut r = match first {
            Some(j) => {
                paired[j] = true;
                let mut r = one(b, &errors[j]);
                let other = one(b, e);
                r.race = Some(RaceSideReport {
                    call: other.call,
                    thread: other.thread,
                    time_ns: other.time_ns,
                    site: other.site,
                });
                r
            }
            None => one(b, e),
        };
        if matches!(e.error, RACE_FIRST | RACE_SECOND) {
            let mine = decode_access(&mut code, &mut r.call, &r.site);
            let other = r
                .race
                .as_mut()
                .and_then(|o| decode_access(&mut code, &mut o.call, &o.site));
            r.atomic = in_atomic(&r.site)
                || r.race.as_ref().is_some_and(|o| in_atomic(&o.site))
                || locked_pair(mine, other);
            r.reads_only = r.call == "read" && r.race.as_ref().is_some_and(|o| o.call == "read");
        }
        out.push(r);
    }
    out
}

/// A race side is a `read` or a `write` by its instruction, at the inner
/// end of `site`, when that can be read from the module's file and
/// decoded (which it returns). The recorder's word (`write` when the value
/// changed since the watch was armed, else `access`) stays where it
/// cannot: the value is the weaker witness, as a thread whose event was
/// not on yet may have changed it before the first trap.
fn decode_access(
    code: &mut crate::access::CodeReader,
    call: &mut String,
    site: &SiteReport,
) -> Option<crate::access::Access> {
    let frame = site.frames.first()?;
    let access = code.access(frame.module.as_deref()?, frame.module_offset?)?;
    *call = access.call().to_owned();
    Some(access)
}

/// Are two sides atomic by their instructions: a locked operation (an
/// atomic read-modify-write, or C's sequentially consistent store, an
/// `xchg`) against another, or against a read (a relaxed or acquire load
/// is a plain move)? A plain store against a locked operation stays a
/// race: it may overwrite the atomic update, as a `x = 0` racing with an
/// atomic increment does.
fn locked_pair(a: Option<crate::access::Access>, b: Option<crate::access::Access>) -> bool {
    use crate::access::Access::{Locked, Read};
    matches!(
        (a, b),
        (Some(Locked), Some(Locked | Read)) | (Some(Read), Some(Locked))
    )
}

/// Is the access at the inner end of `site` an atomic operation, by its
/// (inlined) frames? x86 compiles relaxed, release and acquire atomics to
/// plain moves, so only debug information tells them apart.
fn in_atomic(site: &SiteReport) -> bool {
    site.frames.iter().take(4).any(|f| {
        f.function.as_deref().is_some_and(|n| {
            n.starts_with("core::sync::atomic::")
                || n.starts_with("std::sync::atomic::")
                || n.starts_with("core::intrinsics::atomic")
                || n.starts_with("__atomic_")
        })
    })
}
