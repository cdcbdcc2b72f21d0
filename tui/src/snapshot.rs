//! What one frame of the dashboard shows, taken from the analysis model
//! while its lock is held and drawn after it is released.
//!
//! Everything here is read from the model or computed by the profiler's
//! own grouping ([`group_sites_with`]); the dashboard sums nothing itself.
//! Symbolising a site is remembered ([`SiteFrames`]), so a frame of a
//! model with ten thousand sites costs a hash lookup per site, not a
//! DWARF lookup.

use memtally_profiler::{
    Counters, GroupBy, Model, SiteFrames, SizeBucket, StackId, Symbolizer, ThreadInfo,
    group_sites_with,
};

/// The table's columns, in the order shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// Bytes live now (at exit, once the program has ended).
    Live,
    /// Bytes allocated since the start.
    Allocated,
    /// Allocations since the start.
    Allocations,
    /// Bytes live at the heap's peak.
    AtPeak,
    /// The most bytes live at once.
    MaxLive,
    /// The site's name.
    Name,
}

impl Column {
    /// Every column, in the order shown and cycled through by `s`.
    pub const ALL: [Column; 6] = [
        Column::Live,
        Column::Allocated,
        Column::Allocations,
        Column::AtPeak,
        Column::MaxLive,
        Column::Name,
    ];

    /// The column's heading.
    pub fn heading(self, ended: bool) -> &'static str {
        match self {
            Column::Live if ended => "at exit",
            Column::Live => "live",
            Column::Allocated => "allocated",
            Column::Allocations => "allocs",
            Column::AtPeak => "at peak",
            Column::MaxLive => "max live",
            Column::Name => "site",
        }
    }

    fn value(self, c: &Counters) -> u64 {
        match self {
            Column::Live => c.live_bytes,
            Column::Allocated => c.bytes_allocated,
            Column::Allocations => c.allocations,
            Column::AtPeak => c.at_peak_bytes,
            Column::MaxLive => c.max_live_bytes,
            Column::Name => 0,
        }
    }
}

/// How the site table is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// What sites are grouped by.
    pub group: GroupBy,
    /// How many frames, from the one that names a site outward, make a
    /// row's key (1: that frame alone).
    pub depth: usize,
    /// One thread's allocations (by thread number), or all.
    pub thread: Option<u64>,
    /// Rows whose name contains this (case-insensitive) are kept.
    pub filter: String,
    /// The sort column.
    pub sort: Column,
    /// Largest (or, for names, last) first.
    pub descending: bool,
    /// The row whose details are wanted, by name.
    pub detail: Option<String>,
}

/// One row of the site table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The group's name (a line, function, file or library).
    pub key: String,
    /// The sum of its sites' counters.
    pub counters: Counters,
    /// Its sites.
    pub sites: usize,
}

/// The drill-down of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    /// The row.
    pub row: Row,
    /// The full stack (innermost first) of the row's site holding the most
    /// now (or, when nothing is live, that allocated the most).
    pub frames: Vec<String>,
    /// How many frames of the allocator were trimmed from it.
    pub trimmed: usize,
    /// That site's requested sizes (empty without site details).
    pub sizes: Vec<SizeBucket>,
    /// That site's block lifetimes: (shortest ns, longest ns, blocks).
    pub lifetimes: Vec<(u64, u64, u64)>,
    /// That site's live bytes at evenly spaced instants from the start of
    /// the recording to now.
    pub live: Vec<u64>,
}

/// A site whose live bytes keep growing, for the alerts tab.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The site's name.
    pub key: String,
    /// Growth rate, bytes per second.
    pub bytes_per_second: f64,
    /// Live bytes now.
    pub live_bytes: u64,
    /// The trend's z score.
    pub z: f64,
}

/// Instants of a site's live-bytes sparkline.
const SPARK_POINTS: usize = 60;

/// One thread, for the threads tab.
#[derive(Clone, Debug)]
pub struct ThreadRow {
    /// Who it is.
    pub info: ThreadInfo,
    /// Its blocks' counters.
    pub counters: Counters,
}

/// Percentiles of a distribution, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// The median.
    pub p50: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The 99.9th percentile.
    pub p999: u64,
    /// The largest.
    pub max: u64,
}

/// The alert of a growing site, named by `frames`.
pub fn alert(
    model: &Model,
    symbolizer: &mut Symbolizer,
    frames: &mut SiteFrames,
    g: &memtally_profiler::growth::Growth,
) -> Alert {
    Alert {
        key: frames
            .get(model, symbolizer, g.stack)
            .map_or_else(|| "<no stack>".to_owned(), |l| l.to_string()),
        bytes_per_second: g.bytes_per_second,
        live_bytes: g.live_bytes,
        z: g.z,
    }
}

/// The alerts of `model` (which must keep site details) all at once: its
/// growing sites, fastest first.
pub fn alerts(model: &Model, symbolizer: &mut Symbolizer, frames: &mut SiteFrames) -> Vec<Alert> {
    memtally_profiler::growth::growing_sites(model, ALERT_MIN_SPAN_NS)
        .iter()
        .map(|g| alert(model, symbolizer, frames, g))
        .collect()
}

/// One scope name, for the scopes tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRow {
    /// The scope's name.
    pub name: String,
    /// Its blocks' counters.
    pub counters: Counters,
    /// Instances seen, and ended.
    pub instances: u64,
    /// Instances ended.
    pub ended: u64,
    /// Instances that ended with blocks live, and those bytes.
    pub outlived: u64,
    /// See `outlived`.
    pub outlived_bytes: u64,
    /// Bytes allocated per ended instance: median and 99th percentile.
    pub p50: u64,
    /// See `p50`.
    pub p99: u64,
}

/// One device's memory, for the devices tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// `device 0`, or `host` (pinned host memory, RDMA registrations).
    pub name: String,
    /// Bytes live now (new memory: not address space or registrations).
    pub live_bytes: u64,
    /// The most bytes live at once.
    pub peak_bytes: u64,
    /// Allocations made.
    pub allocations: u64,
    /// Allocations that failed.
    pub failures: u64,
    /// What its stream-ordered pools hold now (sampled).
    pub pool_reserved: u64,
    /// Live bytes of the other kinds and the sampled levels (registered
    /// memory, address space, socket buffers...).
    pub others: Vec<(String, u64)>,
}

/// One host stack's memory on one device, for the devices tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSiteRow {
    /// The device (`device 0`, `host`).
    pub device: String,
    /// The API it called (`cudaMalloc`, `ibv_reg_mr`).
    pub api: String,
    /// Bytes live now.
    pub live_bytes: u64,
    /// Bytes allocated since the start.
    pub bytes_allocated: u64,
    /// Allocations.
    pub allocations: u64,
    /// The site, named by its innermost frame.
    pub site: String,
}

/// Device sites the devices tab lists at most.
pub const DEVICE_SITES_SHOWN: usize = 200;

/// Where the time cursor stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The moment asked for, nanoseconds since the start.
    pub at_ns: u64,
    /// The moment the tables show (an earlier cursor position while the
    /// reading for this one runs), if any has been read.
    pub shown_ns: Option<u64>,
    /// The trace is being read up to the cursor.
    pub reading: bool,
    /// Reading failed.
    pub error: Option<String>,
}

/// Sites observed for less than this are not judged.
pub const ALERT_MIN_SPAN_NS: u64 = 1_000_000_000;

/// Everything one frame draws.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The program's pid (0 before the header is read).
    pub pid: u64,
    /// Its command line.
    pub command: String,
    /// Nanoseconds recorded.
    pub duration_ns: u64,
    /// Whole-process counters.
    pub totals: Counters,
    /// The heap's peak: bytes, and nanoseconds since the start.
    pub peak: (u64, u64),
    /// The latest resident set size.
    pub rss: Option<u64>,
    /// Heap over time: (seconds, bytes), the largest value per point.
    pub heap_points: Vec<(f64, f64)>,
    /// RSS over time: (seconds, bytes).
    pub rss_points: Vec<(f64, f64)>,
    /// Sampled mode: counts are estimates.
    pub estimate: bool,
    /// The site table, sorted and filtered.
    pub rows: Vec<Row>,
    /// The total of the rows before filtering (the heap, or one thread's
    /// part of it), for the `%` column.
    pub rows_live: u64,
    /// The drill-down asked for, if that row exists.
    pub detail: Option<Detail>,
    /// Every thread, by thread number.
    pub threads: Vec<ThreadRow>,
    /// Requested sizes by power-of-two bucket.
    pub sizes: Vec<SizeBucket>,
    /// Allocation call latency.
    pub alloc_latency: Percentiles,
    /// Free call latency.
    pub free_latency: Percentiles,
    /// Block lifetimes.
    pub lifetimes: Percentiles,
    /// Sites growing without bound (refreshed every few seconds).
    pub alerts: Vec<Alert>,
    /// Memory errors, one line each (see [`error_lines`]).
    pub errors: Vec<String>,
    /// The time cursor, when the tables show an earlier moment.
    pub cursor: Option<Cursor>,
    /// Memory by scope, by live bytes, largest first.
    pub scopes: Vec<ScopeRow>,
    /// Device and network memory, per device (empty when the program made
    /// no call the gpu-shim intercepts).
    pub devices: Vec<DeviceRow>,
    /// Their sites, by live bytes then allocated, the first
    /// [`DEVICE_SITES_SHOWN`].
    pub device_sites: Vec<DeviceSiteRow>,
}

impl Snapshot {
    /// Takes what `spec` asks for from `model`.
    pub fn take(
        model: &Model,
        symbolizer: &mut Symbolizer,
        frames: &mut SiteFrames,
        spec: &TableSpec,
    ) -> Snapshot {
        let header = model.header().cloned().unwrap_or_default();
        let argv = if header.argv.is_empty() {
            vec![header.exe.clone()]
        } else {
            header.argv.clone()
        };
        let seconds = |ticks: u64| model.since_start_ns(ticks) as f64 / 1e9;
        let heap_points = model
            .heap_series()
            .points()
            .map(|p| (seconds(p.ticks), p.max as f64))
            .collect();
        let rss_points: Vec<(f64, f64)> = model
            .rss_series()
            .points()
            .map(|p| (seconds(p.ticks), p.last as f64))
            .collect();
        let peak = model.peak();

        let mut groups = match spec.thread {
            Some(t) => {
                let sites = model.thread_sites(t);
                group_sites_with(model, sites, symbolizer, frames, spec.group, spec.depth)
            }
            None => {
                let sites = model.sites();
                group_sites_with(model, sites, symbolizer, frames, spec.group, spec.depth)
            }
        };
        let rows_live = groups.iter().map(|g| g.counters.live_bytes).sum();
        let detail = spec.detail.as_ref().and_then(|key| {
            let g = groups.iter().find(|g| &g.key == key)?;
            let site = g
                .sites
                .iter()
                .copied()
                .filter_map(|s| Some((s, model.site(s)?)))
                .max_by_key(|(s, c)| (c.live_bytes, c.bytes_allocated, std::cmp::Reverse(*s)))
                .map(|(s, _)| s)?;
            Some(detail(model, symbolizer, g, site))
        });
        if !spec.filter.is_empty() {
            let needle = spec.filter.to_lowercase();
            groups.retain(|g| g.key.to_lowercase().contains(&needle));
        }
        let mut rows: Vec<Row> = groups
            .into_iter()
            .map(|g| Row {
                key: g.key,
                counters: g.counters,
                sites: g.sites.len(),
            })
            .collect();
        sort_rows(&mut rows, spec.sort, spec.descending);

        let clock = model.clock();
        let percentiles = |d: &memtally_profiler::Durations| Percentiles {
            count: d.count(),
            p50: clock.ticks_to_ns(d.quantile(0.5)),
            p99: clock.ticks_to_ns(d.quantile(0.99)),
            p999: clock.ticks_to_ns(d.quantile(0.999)),
            max: clock.ticks_to_ns(d.max()),
        };
        Snapshot {
            pid: header.pid,
            command: memtally_profiler::report::command_line(&argv),
            duration_ns: model.duration_ns(),
            totals: model.totals().counters,
            peak: (peak.bytes, model.since_start_ns(peak.ticks)),
            rss: rss_points.last().map(|p| p.1 as u64),
            heap_points,
            rss_points,
            estimate: model.is_estimate(),
            rows,
            rows_live,
            detail,
            threads: model
                .threads()
                .map(|t| ThreadRow {
                    info: t.info,
                    counters: t.counters,
                })
                .collect(),
            sizes: model.sizes().buckets(),
            alloc_latency: percentiles(model.alloc_latency()),
            free_latency: percentiles(model.free_latency()),
            lifetimes: percentiles(model.lifetimes()),
            alerts: Vec::new(),
            // Filled by the view, which keeps them (see `error_lines`).
            errors: Vec::new(),
            cursor: None,
            scopes: scope_rows(model),
            devices: device_rows(model),
            device_sites: device_site_rows(model, symbolizer, frames),
        }
    }
}

/// The dashboard's lines for the trace's memory errors: as `memtally
/// errors` lists them (a data race's two sides paired, each read or
/// write by its instruction, races between atomic accesses or between two
/// reads left out), one line each, with where each access or call was
/// made.
pub fn error_lines(model: &Model, symbolizer: &mut Symbolizer) -> Vec<String> {
    memtally_profiler::report::error_list(model, symbolizer, ERROR_FRAMES)
        .iter()
        .filter(|e| !e.set_aside())
        .map(|e| memtally_profiler::report::error_line(e, true))
        .collect()
}

/// Frames of each error's stack symbolised (the line names the first
/// outside the allocator and the standard library).
const ERROR_FRAMES: usize = 8;

fn device_name(device: u32) -> String {
    if device == memtally_profiler::trace_device::HOST {
        "host".into()
    } else {
        format!("device {device}")
    }
}

fn device_rows(model: &Model) -> Vec<DeviceRow> {
    use memtally_profiler::trace_device::{counts_in_total, memory, memory_name};
    model
        .device()
        .devices()
        .map(|(d, t)| DeviceRow {
            name: device_name(d),
            live_bytes: t.all.live_bytes,
            peak_bytes: t.all.peak_bytes,
            allocations: t.all.allocations,
            failures: t.failures,
            pool_reserved: t.levels[memory::POOL as usize].bytes,
            others: t
                .by_memory
                .iter()
                .enumerate()
                .take(memory::COUNT)
                .filter(|(i, k)| !counts_in_total(*i as u8) && k.live_bytes > 0)
                .map(|(i, k)| (memory_name(i as u8).to_owned(), k.live_bytes))
                .chain(
                    t.levels
                        .iter()
                        .enumerate()
                        .take(memory::COUNT)
                        // Pools' reserves have their own column.
                        .filter(|&(i, l)| i != usize::from(memory::POOL) && l.bytes > 0)
                        .map(|(i, l)| (memory_name(i as u8).to_owned(), l.bytes)),
                )
                .collect(),
        })
        .collect()
}

fn device_site_rows(
    model: &Model,
    symbolizer: &mut Symbolizer,
    frames: &mut SiteFrames,
) -> Vec<DeviceSiteRow> {
    let mut sites: Vec<_> = model.device().sites().collect();
    sites.sort_by(|(ka, a), (kb, b)| {
        (b.live_bytes, b.bytes_allocated, ka).cmp(&(a.live_bytes, a.bytes_allocated, kb))
    });
    sites
        .into_iter()
        .take(DEVICE_SITES_SHOWN)
        .map(|((d, stack), s)| DeviceSiteRow {
            device: device_name(d),
            api: model.strings().get(s.api).unwrap_or("?").to_owned(),
            live_bytes: s.live_bytes,
            bytes_allocated: s.bytes_allocated,
            allocations: s.allocations,
            site: frames
                .get(model, symbolizer, stack)
                .map_or_else(|| "<no stack>".to_owned(), |l| l.to_string()),
        })
        .collect()
}

fn scope_rows(model: &Model) -> Vec<ScopeRow> {
    let mut rows: Vec<ScopeRow> = model
        .scopes()
        .into_iter()
        .map(|s| ScopeRow {
            name: s.name,
            counters: s.counters,
            instances: s.instances,
            ended: s.ended,
            outlived: s.outlived,
            outlived_bytes: s.outlived_bytes,
            p50: s.per_instance.quantile(0.5),
            p99: s.per_instance.quantile(0.99),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.counters
            .live_bytes
            .cmp(&a.counters.live_bytes)
            .then(b.counters.bytes_allocated.cmp(&a.counters.bytes_allocated))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

/// Sorts rows by `column`; ties by name, so the order is stable from one
/// frame to the next.
pub fn sort_rows(rows: &mut Vec<Row>, column: Column, descending: bool) {
    let order = memtally_profiler::sorted_order(rows, |a, b| {
        let by_value = column.value(&a.counters).cmp(&column.value(&b.counters));
        let order = if column == Column::Name {
            a.key.cmp(&b.key)
        } else {
            by_value.then_with(|| b.key.cmp(&a.key))
        };
        if descending { order.reverse() } else { order }
    });
    *rows = memtally_profiler::permuted(std::mem::take(rows), &order);
}

fn detail(
    model: &Model,
    symbolizer: &mut Symbolizer,
    g: &memtally_profiler::Group,
    site: StackId,
) -> Detail {
    let stack = symbolizer.stack(model, site);
    let d = model.site_detail(site);
    let clock = model.clock();
    let live = d.map_or(Vec::new(), |d| {
        let points: Vec<(u64, u64)> = d.live().iter().map(|p| (p.ticks, p.max)).collect();
        let (start, end) = (model.start_ticks(), model.end_ticks());
        (1..=SPARK_POINTS as u64)
            .map(|i| {
                let t = start + ((end - start) as u128 * i as u128 / SPARK_POINTS as u128) as u64;
                let n = points.partition_point(|p| p.0 <= t);
                if n == 0 { 0 } else { points[n - 1].1 }
            })
            .collect()
    });
    Detail {
        sizes: d.map_or(Vec::new(), |d| d.sizes().buckets()),
        lifetimes: d.map_or(Vec::new(), |d| {
            d.lifetimes()
                .buckets()
                .into_iter()
                .map(|b| (clock.ticks_to_ns(b.min), clock.ticks_to_ns(b.max), b.count))
                .collect()
        }),
        live,
        row: Row {
            key: g.key.clone(),
            counters: g.counters,
            sites: g.sites.len(),
        },
        frames: stack.frames.iter().map(|l| l.to_string()).collect(),
        trimmed: stack.trimmed,
    }
}
