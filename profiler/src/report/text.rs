//! The human-readable report: compact, aligned sections rendered from a
//! [`Report`], so that the text and the JSON always say the same thing.
//!
//! Sites are printed as tables whose last column is the stack, innermost
//! frame first on the row itself and its callers on the lines below
//! (`<- caller`). In sampled mode every estimated number carries a `~`.

use super::schema::*;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Writes `report` as text.
pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(report).as_bytes())
}

/// Renders `report` as text.
pub fn render(report: &Report) -> String {
    render_view(report, super::TextView::Full)
}

/// The report as text, showing `view`.
pub fn render_view(report: &Report, view: super::TextView) -> String {
    let f = Fmt {
        est: report.trace.estimated,
    };
    let mut o = String::new();
    header(&mut o, report, &f);
    summary(&mut o, report, &f);
    if view == super::TextView::Scopes {
        scopes(&mut o, report, &f, true);
        return o;
    }

    let shown: Vec<&ErrorReport> = report.errors.iter().filter(|e| !e.set_aside()).collect();
    if !shown.is_empty() {
        // Invalid pointers: one means the program was stopped there (the
        // default), more that it ran with on_error=report and each call was
        // ignored. Races and faults on guarded blocks stop nothing.
        let calls = shown.iter().filter(|e| is_invalid_pointer(e)).count();
        let _ = writeln!(
            o,
            "\nMEMORY ERRORS: {}{}",
            shown.len(),
            match calls {
                0 => "",
                1 =>
                    " (the program is stopped at an invalid pointer, as glibc does, unless MEMTALLY=on_error=report)",
                _ =>
                    " (invalid pointers reported and ignored: the program ran with MEMTALLY=on_error=report)",
            }
        );
        for e in &shown {
            let _ = writeln!(o, "  {}", error_line(e, false));
            if let Some(k) = &e.block {
                let at = k
                    .allocated_at
                    .frames
                    .get(k.allocated_at.library_frames)
                    .or(k.allocated_at.frames.first())
                    .map_or_else(|| "an unknown place".to_owned(), frame);
                let _ = write!(
                    o,
                    "    the block: {} allocated by thread {} at {} in {}",
                    f.bytes(k.size),
                    k.allocated_by_thread,
                    ns(k.allocated_at_ns),
                    at
                );
                let _ = match (k.freed_by_thread, k.freed_at_ns) {
                    (Some(t), Some(when)) => {
                        writeln!(o, ", first freed by thread {t} at {}", ns(when))
                    }
                    _ => writeln!(o, ", live"),
                };
            }
        }
        let sites: Vec<SiteReport> = shown.iter().map(|e| e.site.clone()).collect();
        site_table(&mut o, &sites, &["call"], |s| {
            let e = shown
                .iter()
                .find(|e| e.site.stack == s.stack)
                .expect("an error's site");
            vec![e.call.clone()]
        });
    }

    let p = &report.peak;
    let _ = writeln!(
        o,
        "\nPEAK HEAP: {} in {} blocks at {}; the sites holding the most then",
        f.bytes(p.bytes),
        f.count(p.blocks),
        ns(p.time_ns)
    );
    site_table(&mut o, &p.sites, &["bytes", "blocks"], |s| {
        vec![f.bytes(s.at_peak_bytes), f.count(s.at_peak_blocks)]
    });

    let l = &report.live_at_exit;
    let when = if report.trace.clean_exit {
        "LIVE AT EXIT"
    } else {
        "LIVE WHEN THE TRACE ENDS"
    };
    let _ = writeln!(
        o,
        "\n{when}: {} in {} blocks",
        f.bytes(l.bytes),
        f.count(l.blocks)
    );
    site_table(&mut o, &l.sites, &["bytes", "blocks"], |s| {
        vec![f.bytes(s.live_bytes), f.count(s.live_blocks)]
    });

    device(&mut o, report, &f);

    o.push_str("\nTOP SITES BY BYTES ALLOCATED\n");
    site_table(
        &mut o,
        &report.top_by_bytes,
        &["bytes", "allocs", "live"],
        |s| {
            vec![
                f.bytes(s.bytes_allocated),
                f.count(s.allocations),
                f.bytes(s.live_bytes),
            ]
        },
    );
    o.push_str("\nTOP SITES BY ALLOCATIONS\n");
    site_table(
        &mut o,
        &report.top_by_count,
        &["allocs", "bytes", "temp"],
        |s| {
            vec![
                f.count(s.allocations),
                f.bytes(s.bytes_allocated),
                f.count(s.temporary),
            ]
        },
    );
    o.push_str("\nTOP SITES BY THEIR OWN PEAK (most bytes live at once)\n");
    site_table(&mut o, &report.top_by_peak, &["max live", "at end"], |s| {
        vec![f.bytes(s.max_live_bytes), f.bytes(s.live_bytes)]
    });

    let t = &report.temporary;
    let _ = writeln!(
        o,
        "\nTEMPORARY ALLOCATIONS: {} ({} of allocations, {}): freed by their thread before it allocated again",
        f.count(t.count),
        percent(t.share),
        f.bytes(t.bytes)
    );
    site_table(&mut o, &t.sites, &["temp", "share"], |s| {
        vec![f.count(s.temporary), percent(s.temporary_share)]
    });

    sizes(&mut o, report, &f);
    durations(&mut o, report, &f);
    threads(&mut o, report, &f);
    ownership(&mut o, report, &f);
    scopes(&mut o, report, &f, false);
    timeline(&mut o, report, &f);
    if !report.unsymbolised_modules.is_empty() {
        o.push_str("\nNOT SYMBOLISED (frames shown as module+offset)\n");
        for m in &report.unsymbolised_modules {
            let _ = writeln!(o, "  {}: {}", m.path, m.problem);
        }
    }
    o
}

/// The device-memory section (only for traces with device events).
fn device(o: &mut String, r: &Report, f: &Fmt) {
    let Some(d) = &r.device else {
        return;
    };
    let name =
        |device: Option<u32>| device.map_or_else(|| "host".to_owned(), |n| format!("device {n}"));
    o.push_str("\nDEVICE AND NETWORK MEMORY (seen by the gpu-shim, and sampled from the kernel)\n");
    let rows: Vec<Vec<String>> = d
        .devices
        .iter()
        .map(|t| {
            let mut kinds: Vec<String> = t
                .by_memory
                .iter()
                .map(|k| format!("{} {}", k.memory, f.bytes(k.peak_bytes)))
                .collect();
            for l in &t.levels {
                kinds.push(format!(
                    "{} {} (at end {})",
                    l.memory,
                    f.bytes(l.peak_bytes),
                    f.bytes(l.bytes)
                ));
            }
            if t.peak_pool_reserved_bytes > 0 {
                kinds.push(format!(
                    "pools reserved {} (at end {})",
                    f.bytes(t.peak_pool_reserved_bytes),
                    f.bytes(t.pool_reserved_bytes)
                ));
            }
            vec![
                name(t.device),
                f.bytes(t.peak_bytes),
                ns(t.peak_time_ns),
                f.bytes(t.live_bytes),
                f.count(t.live_blocks),
                f.count(t.allocations),
                f.count(t.failures),
                kinds.join(", "),
            ]
        })
        .collect();
    plain_table(
        o,
        &[
            "",
            "peak",
            "at",
            "live at end",
            "blocks",
            "allocs",
            "failed",
            "peak by kind",
        ],
        &[0, 7],
        &rows,
    );
    if !d.descriptors.is_empty() {
        o.push_str("\nKERNEL-HELD MEMORY BY DESCRIPTOR (sampled every 0.5 s), the busiest first\n");
        let rows: Vec<Vec<String>> = d
            .descriptors
            .iter()
            .map(|x| {
                vec![
                    format!("fd {}", x.fd),
                    x.memory.clone(),
                    f.bytes(x.peak_bytes),
                    f.bytes(x.bytes),
                ]
            })
            .collect();
        plain_table(o, &["", "memory", "peak", "at end"], &[0, 1], &rows);
    }
    let when = if r.trace.clean_exit {
        "LIVE AT EXIT (device leaks)"
    } else {
        "LIVE WHEN THE TRACE ENDS"
    };
    let _ = writeln!(o, "\nDEVICE SITES: {when}, then by bytes allocated");
    let list: Vec<SiteReport> = d.sites.iter().map(|s| s.site.clone()).collect();
    site_table(
        o,
        &list,
        &["where", "api", "live", "blocks", "allocated"],
        |s| {
            let i = list
                .iter()
                .position(|x| std::ptr::eq(x, s))
                .expect("a listed site");
            let ds = &d.sites[i];
            vec![
                name(ds.device),
                ds.api.clone(),
                f.bytes(ds.live_bytes),
                f.count(ds.live_blocks),
                f.bytes(ds.bytes_allocated),
            ]
        },
    );
    if !d.failures.is_empty() {
        let _ = writeln!(o, "\nFAILED DEVICE ALLOCATIONS: {}", d.failures.len());
        let list: Vec<SiteReport> = d.failures.iter().map(|s| s.site.clone()).collect();
        site_table(o, &list, &["where", "api", "asked", "at"], |s| {
            let i = list
                .iter()
                .position(|x| std::ptr::eq(x, s))
                .expect("a listed failure");
            let e = &d.failures[i];
            vec![
                name(e.device),
                e.api.clone(),
                f.bytes(e.size),
                ns(e.time_ns),
            ]
        });
    }
    if d.unknown_frees > 0 {
        let _ = writeln!(
            o,
            "  not counted: {} device frees of addresses allocated before recording began",
            f.count(d.unknown_frees)
        );
    }
    if d.reused_while_live > 0 {
        let _ = writeln!(
            o,
            "  {} device allocations at an address still live: a call memtally does not intercept freed it",
            f.count(d.reused_while_live)
        );
    }
}

fn header(o: &mut String, r: &Report, f: &Fmt) {
    let t = &r.trace;
    let _ = writeln!(
        o,
        "memtally report{}",
        t.path
            .as_deref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default()
    );
    let cmd = command_line(if t.argv.is_empty() {
        std::slice::from_ref(&t.exe)
    } else {
        &t.argv
    });
    let _ = writeln!(o, "program   {cmd}  (pid {})", t.pid);
    let mode = if t.estimated {
        format!("sampled mode, mean interval {}", bytes(t.sample_bytes))
    } else {
        "full mode".to_owned()
    };
    let s = &r.summary;
    let status = match t.exit_status {
        Some(code) => format!("; exited with status {code}"),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "recorded  {mode}; {}; {}; {}{status}{}",
        ns(s.duration_ns),
        plural(s.threads, "thread", "threads"),
        plural(s.events, "event", "events"),
        if f.est { "; ~ marks estimates" } else { "" }
    );
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
}

fn summary(o: &mut String, r: &Report, f: &Fmt) {
    let s = &r.summary;
    o.push_str("\nSUMMARY\n");
    let mut rows: Vec<[String; 3]> = vec![
        [
            "allocations".into(),
            f.count(s.allocations),
            format!("{} requested", f.bytes(s.bytes_allocated)),
        ],
        [
            "reallocations".into(),
            f.count(s.reallocations),
            String::new(),
        ],
        [
            "frees".into(),
            f.count(s.frees),
            format!("{} released", f.bytes(s.bytes_freed)),
        ],
        [
            "temporary".into(),
            f.count(s.temporary),
            format!("{} of allocations", percent(r.temporary.share)),
        ],
        [
            "peak heap".into(),
            f.bytes(s.peak_bytes),
            format!(
                "{} blocks, at {}",
                f.count(s.peak_blocks),
                ns(s.peak_time_ns)
            ),
        ],
        [
            if r.trace.clean_exit {
                "live at exit"
            } else {
                "live at end"
            }
            .into(),
            f.bytes(s.live_bytes),
            format!("{} blocks", f.count(s.live_blocks)),
        ],
    ];
    if s.unknown_frees > 0 {
        rows.push([
            "unknown frees".into(),
            count(s.unknown_frees),
            "of blocks allocated before recording; not counted".into(),
        ]);
    }
    if s.max_rss_bytes > 0 {
        rows.push(["max RSS".into(), bytes(s.max_rss_bytes), String::new()]);
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].chars().count()).max().unwrap_or(0);
    for [a, b, c] in rows {
        let line = format!("  {a:<w0$}  {b:>w1$}  {c}");
        let _ = writeln!(o, "{}", line.trim_end());
    }
}

/// A table of sites: numeric columns, then the stack.
pub(crate) fn site_table(
    o: &mut String,
    sites: &[SiteReport],
    heads: &[&str],
    cells: impl Fn(&SiteReport) -> Vec<String>,
) {
    if sites.is_empty() {
        o.push_str("  (none)\n");
        return;
    }
    let rows: Vec<Vec<String>> = sites.iter().map(&cells).collect();
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([heads[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = String::new();
    for (h, w) in heads.iter().zip(&widths) {
        let _ = write!(line, "  {h:>w$}");
    }
    let _ = writeln!(o, "{line}  site");
    let indent = widths.iter().map(|w| w + 2).sum::<usize>() + 2;
    for (s, row) in sites.iter().zip(rows) {
        let mut line = String::new();
        for (c, w) in row.iter().zip(&widths) {
            let _ = write!(line, "  {c:>w$}");
        }
        let (library, own) = s.frames.split_at(s.library_frames.min(s.frames.len()));
        let mut frames = own.iter();
        match frames.next() {
            Some(first) => {
                let _ = writeln!(o, "{line}  {}", frame(first));
            }
            None => {
                let _ = writeln!(o, "{line}  <no stack recorded>");
            }
        }
        if let Some(inner) = library.first() {
            let extra = match library.len() - 1 {
                0 => String::new(),
                n => format!(" (+{n} library frames)"),
            };
            let _ = writeln!(o, "{:indent$}   via {}{extra}", "", frame(inner));
        }
        for fr in frames {
            let _ = writeln!(o, "{:indent$}<- {}", "", frame(fr));
        }
        if s.more_frames > 0 {
            let _ = writeln!(o, "{:indent$}   ... {} more (--frames)", "", s.more_frames);
        }
    }
}

/// `function (file:line)`, `function (module+0xoff)` or `module+0xoff`.
pub(crate) fn frame(f: &FrameReport) -> String {
    let raw = match (&f.module, f.module_offset) {
        (Some(m), Some(off)) => format!("{}+{off:#x}", m.rsplit('/').next().unwrap_or(m)),
        _ => format!("{:#x}", f.address),
    };
    let src = f.file.as_deref().map(|file| {
        let short = match file.rmatch_indices('/').nth(1) {
            Some((i, _)) => &file[i + 1..],
            None => file,
        };
        match f.line {
            Some(l) => format!("{short}:{l}"),
            None => short.to_owned(),
        }
    });
    let inl = if f.inlined { " [inlined]" } else { "" };
    match (&f.function, src) {
        (Some(func), Some(src)) => format!("{func} ({src}){inl}"),
        (Some(func), None) => format!("{func} ({raw}){inl}"),
        (None, Some(src)) => format!("{raw} ({src}){inl}"),
        (None, None) => raw,
    }
}

fn sizes(o: &mut String, r: &Report, f: &Fmt) {
    o.push_str("\nSIZES (requested, power-of-two buckets)\n");
    if r.sizes.is_empty() {
        o.push_str("  (none)\n");
        return;
    }
    let most = r.sizes.iter().map(|b| b.blocks).max().unwrap_or(1).max(1);
    let labels: Vec<String> = r
        .sizes
        .iter()
        .map(|b| {
            if b.min == b.max {
                exact_bytes(b.min)
            } else if b.max == u64::MAX {
                format!("[{}, 16 EiB]", exact_bytes(b.min))
            } else {
                format!("[{}, {})", exact_bytes(b.min), exact_bytes(b.max + 1))
            }
        })
        .collect();
    let counts: Vec<String> = r.sizes.iter().map(|b| f.count(b.blocks)).collect();
    let w0 = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let w1 = counts.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    for ((b, label), c) in r.sizes.iter().zip(&labels).zip(&counts) {
        let bar = (b.blocks as f64 / most as f64 * 40.0).ceil() as usize;
        let line = format!("  {label:>w0$}  {c:>w1$}  {}", "#".repeat(bar));
        let _ = writeln!(o, "{}", line.trim_end());
    }
    let asked: u64 = r.sizes.iter().map(|b| b.bytes).sum();
    let served: u64 = r.sizes.iter().map(|b| b.served).sum();
    if served > 0 {
        let _ = writeln!(
            o,
            "  memtally's size classes serve these requests with {}: {} ({}) of internal waste",
            f.bytes(served),
            f.bytes(served.saturating_sub(asked)),
            percent(served.saturating_sub(asked) as f64 / served as f64)
        );
    }
}

fn durations(o: &mut String, r: &Report, f: &Fmt) {
    o.push_str("\nLATENCY AND LIFETIMES\n");
    let heads = ["", "count", "mean", "p50", "p90", "p99", "p99.9", "max"];
    let rows: Vec<Vec<String>> = [
        ("alloc latency", &r.alloc_latency_ns),
        ("free latency", &r.free_latency_ns),
        ("lifetime", &r.lifetime_ns),
    ]
    .iter()
    .map(|(name, d)| {
        vec![
            name.to_string(),
            f.count(d.count),
            ns(d.mean),
            ns(d.p50),
            ns(d.p90),
            ns(d.p99),
            ns(d.p999),
            ns(d.max),
        ]
    })
    .collect();
    plain_table(o, &heads, &[0], &rows);
}

fn threads(o: &mut String, r: &Report, f: &Fmt) {
    o.push_str("\nTHREADS\n");
    let heads = [
        "thread",
        "tid",
        "name",
        "allocs",
        "bytes",
        "temp",
        "live",
        "live bytes",
        "handed over",
        "taken over",
    ];
    let rows: Vec<Vec<String>> = r
        .threads
        .iter()
        .map(|t| {
            vec![
                t.thread.to_string(),
                t.os_tid.to_string(),
                if t.name.is_empty() {
                    "-".into()
                } else {
                    t.name.clone()
                },
                f.count(t.allocations),
                f.bytes(t.bytes_allocated),
                f.count(t.temporary),
                f.count(t.live_blocks),
                f.bytes(t.live_bytes),
                f.count(t.handed_over),
                f.count(t.taken_over),
            ]
        })
        .collect();
    plain_table(o, &heads, &[2], &rows);
}

/// Which threads release which threads' blocks.
fn ownership(o: &mut String, r: &Report, f: &Fmt) {
    let w = &r.ownership;
    let _ = writeln!(
        o,
        "\nOWNERSHIP (which thread releases what each thread allocated; this is not race detection): {} of blocks released by another thread ({} blocks, {})",
        percent(w.remote_share),
        f.count(w.remote_frees),
        f.bytes(w.remote_bytes)
    );
    if w.remote_frees == 0 {
        return;
    }
    let name = |n: u64, name: &str| {
        if name.is_empty() {
            format!("thread {n}")
        } else {
            format!("thread {n} ({name})")
        }
    };
    let rows: Vec<Vec<String>> = w
        .transfers
        .iter()
        .take(8)
        .map(|t| {
            vec![
                name(t.from, &t.from_name),
                name(t.to, &t.to_name),
                f.count(t.blocks),
                f.bytes(t.bytes),
            ]
        })
        .collect();
    plain_table(
        o,
        &["allocated by", "released by", "blocks", "bytes"],
        &[0, 1],
        &rows,
    );
    let rows: Vec<Vec<String>> = [
        ("released locally", &w.local_lifetime_ns),
        ("released by another thread", &w.remote_lifetime_ns),
    ]
    .iter()
    .map(|(what, d)| {
        vec![
            what.to_string(),
            f.count(d.count),
            ns(d.p50),
            ns(d.p99),
            ns(d.max),
        ]
    })
    .collect();
    o.push_str("  lifetimes:\n");
    plain_table(o, &["", "blocks", "p50", "p99", "max"], &[0], &rows);
    o.push_str("  sites whose blocks other threads release:\n");
    site_table(o, &w.sites, &["remote", "share"], |s| {
        vec![f.count(s.remote_frees), percent(s.remote_share)]
    });
}

/// Memory by scope; said to be absent only when asked for (`asked`).
fn scopes(o: &mut String, r: &Report, f: &Fmt, asked: bool) {
    if r.scopes.is_empty() {
        if asked {
            o.push_str("\nSCOPES\n  (none: the program entered no scope; see docs/scopes.md)\n");
        }
        return;
    }
    o.push_str(
        "\nSCOPES (a block belongs to the scope instance that allocated it; outlived: still live when its instance ended)\n",
    );
    let heads = [
        "scope",
        "instances",
        "allocated",
        "live",
        "max live",
        "outlived",
        "outlived bytes",
        "p50/inst",
        "p99/inst",
    ];
    let rows: Vec<Vec<String>> = r
        .scopes
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                f.count(s.instances),
                f.bytes(s.bytes_allocated),
                f.bytes(s.live_bytes),
                f.bytes(s.max_live_bytes),
                f.count(s.outlived_instances),
                f.bytes(s.outlived_bytes),
                f.bytes(s.bytes_per_instance_p50),
                f.bytes(s.bytes_per_instance_p99),
            ]
        })
        .collect();
    plain_table(o, &heads, &[0], &rows);
}

/// A table whose columns are right-aligned numbers but for the `left`
/// ones (text), with a heading row; `  (none)` when there are no rows.
pub fn plain_table(o: &mut String, heads: &[&str], left: &[usize], rows: &[Vec<String>]) {
    if rows.is_empty() {
        o.push_str("  (none)\n");
        return;
    }
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([heads[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(heads.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned())
    {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if left.contains(&i) {
                let _ = write!(line, "  {c:<w$}");
            } else {
                let _ = write!(line, "  {c:>w$}");
            }
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
}

fn timeline(o: &mut String, r: &Report, f: &Fmt) {
    let heap = &r.timeline.heap;
    if heap.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nHEAP OVER TIME (0 to {}, highest {})",
        ns(r.summary.duration_ns),
        f.bytes(r.summary.peak_bytes)
    );
    let _ = writeln!(o, "  {}", sparkline(heap, r.summary.duration_ns, 64));
    let rss = &r.timeline.rss;
    if !rss.is_empty() {
        let _ = writeln!(
            o,
            "RSS OVER TIME (highest {})\n  {}",
            bytes(r.summary.max_rss_bytes),
            sparkline(rss, r.summary.duration_ns, 64)
        );
    }
}

/// The maxima of `points` over `width` equal time slices, as block
/// characters.
fn sparkline(points: &[TimePoint], duration_ns: u64, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let span = duration_ns.max(points.iter().map(|p| p.time_ns).max().unwrap_or(0));
    let mut slots: Vec<Option<u64>> = vec![None; width];
    for p in points {
        let i = if span == 0 {
            0
        } else {
            ((p.time_ns as u128 * width as u128) / (span as u128 + 1)) as usize
        };
        let slot = &mut slots[i.min(width - 1)];
        *slot = Some(slot.unwrap_or(0).max(p.max_bytes));
    }
    // Empty slices carry the previous value forward: the heap did not
    // change in them.
    let mut last = 0;
    let filled: Vec<u64> = slots
        .into_iter()
        .map(|s| {
            if let Some(v) = s {
                last = v;
            }
            last
        })
        .collect();
    let max = filled.iter().copied().max().unwrap_or(0).max(1);
    filled
        .iter()
        .map(|&v| BARS[((v as u128 * 7) / max as u128) as usize])
        .collect()
}

/// Number formatting, with the `~` of estimates.
pub(crate) struct Fmt {
    est: bool,
}

impl Fmt {
    /// Formatting that marks numbers as estimates when `estimated`.
    pub(crate) fn new(estimated: bool) -> Fmt {
        Fmt { est: estimated }
    }
    pub(crate) fn count(&self, n: u64) -> String {
        self.mark(count(n))
    }
    pub(crate) fn bytes(&self, n: u64) -> String {
        self.mark(bytes(n))
    }
    fn mark(&self, s: String) -> String {
        if self.est && s != "0" && s != "0 B" {
            format!("~{s}")
        } else {
            s
        }
    }
}

/// A command line on one line: arguments that are not plain words are
/// quoted with their special characters escaped, and a very long line is
/// cut.
pub fn command_line(argv: &[String]) -> String {
    const MAX: usize = 200;
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_alphanumeric() || "_@%+=:,./-".contains(c))
    };
    let line = argv
        .iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > MAX {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        line
    }
}

/// `1 thread`, `2 threads` (with thousands separators).
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `12,345,678`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A power of two of bytes, exactly: `16 B`, `4 KiB`, `2 MiB`.
fn exact_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024 && v % 1024 == 0 && unit + 1 < UNITS.len() {
        v /= 1024;
        unit += 1;
    }
    format!("{v} {}", UNITS[unit])
}

/// `850 ns`, `1.2 µs`, `3.4 ms`, `1.203 s`.
pub fn ns(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} ns"),
        1_000..1_000_000 => format!("{:.1} µs", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", n as f64 / 1e6),
        _ => format!("{:.3} s", n as f64 / 1e9),
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// One line for a memory error: the call and the pointer for an invalid
/// pointer, the kind and the block for a fault on a guarded block, both
/// accesses for a data race; with `places`, where each was made (the
/// first frame of its stack outside the allocator and the standard
/// library), for a view that shows no stacks.
pub fn error_line(e: &ErrorReport, places: bool) -> String {
    let place = |site: &SiteReport| {
        if !places {
            return String::new();
        }
        let f = site.frames.get(site.library_frames).or(site.frames.first());
        let name = f.map_or_else(
            || "<no stack>".to_owned(),
            |f| match &f.function {
                Some(name) => name.clone(),
                None => frame(f),
            },
        );
        format!(" in {name}")
    };
    match &e.race {
        Some(other) => format!(
            "data race on {:#x}: {} {}{} (thread {}, at {}) overlapping {} {}{} (thread {})",
            e.address,
            article(&e.call),
            e.call,
            place(&e.site),
            e.thread,
            ns(e.time_ns),
            article(&other.call),
            other.call,
            place(&other.site),
            other.thread
        ),
        None if !is_invalid_pointer(e) => format!(
            "{} at {:#x}: {}{} (thread {}, at {})",
            e.kind,
            e.address,
            e.call,
            place(&e.site),
            e.thread,
            ns(e.time_ns)
        ),
        None => format!(
            "{}(){}: invalid pointer {:#x}: {} (thread {}, at {})",
            e.call,
            place(&e.site),
            e.address,
            e.kind,
            e.thread,
            ns(e.time_ns)
        ),
    }
}

/// `a` or `an` before `word`.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Is `e` an invalid pointer given to an allocator call (not a data race,
/// nor a fault on a guarded block, whose call is `access`)?
fn is_invalid_pointer(e: &ErrorReport) -> bool {
    e.kind != "data race" && e.call != "access"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_compactly() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(exact_bytes(16), "16 B");
        assert_eq!(exact_bytes(4096), "4 KiB");
        assert_eq!(exact_bytes(1 << 31), "2 GiB");
        assert_eq!(ns(999), "999 ns");
        assert_eq!(ns(1500), "1.5 µs");
        assert_eq!(ns(2_500_000), "2.5 ms");
        assert_eq!(ns(1_203_000_000), "1.203 s");
    }

    #[test]
    fn command_lines_stay_on_one_line() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&argv(&["python3", "-c", "print(1)\nx = 2"])),
            r#"python3 -c "print(1)\nx = 2""#
        );
        assert_eq!(
            command_line(&argv(&["ls", "-l", "/tmp/a.b"])),
            "ls -l /tmp/a.b"
        );
        assert_eq!(command_line(&argv(&["echo", ""])), r#"echo """#);
        assert!(command_line(&argv(&[&"x".repeat(500)])).ends_with("x..."));
    }

    #[test]
    fn sparklines_show_the_shape() {
        let p = |t, b| TimePoint {
            time_ns: t,
            bytes: b,
            max_bytes: b,
        };
        // The heap holds 100 bytes from 50 ns to 99 ns: slices 1 and 2.
        let s = sparkline(&[p(0, 0), p(50, 100), p(99, 0)], 100, 4);
        assert_eq!(s, "▁██▁");
    }
}
