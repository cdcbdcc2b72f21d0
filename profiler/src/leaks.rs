//! The leak report (`memtally leaks`): what was still allocated when the
//! trace ended, grouped by allocation stack, largest first, with
//! suppressions applied, as text or a JSON document
//! (`docs/leaks-json.md`).
//!
//! When the trace holds a leak scan (`memtally run --leak-scan`, or the
//! program's own `memtally_leak_check()`), the blocks are classified as the
//! last scan saw them, with LeakSanitizer's semantics: *direct* leaks
//! (nothing points into them), *indirect* (only leaks point into them),
//! *still reachable* (never freed, but something points to them: statics,
//! caches) and *not scanned* (allocated after the scan). Without one, a leak
//! here is a block never freed, and the report says so.

use crate::read::{Analysis, Ending};
use crate::report::{DeviceSiteReport, SiteReport, TraceInfo};
use crate::report::{
    SiteBuilder, TextFmt, command_line, device_sites, notes, site_table, trace_info,
};
use crate::suppress::Suppressions;
use crate::symbols::Symbolizer;
use serde::Serialize;
use std::fmt::Write as _;

/// The version of the leak report's JSON document.
pub const LEAKS_SCHEMA_VERSION: u32 = 1;

/// What `memtally leaks` shows.
#[derive(Clone, Debug)]
pub struct LeakOptions {
    /// Program frames shown per site.
    pub frames: usize,
    /// Leaks to leave out.
    pub suppressions: Suppressions,
    /// Test every site for growth (the model must keep site details:
    /// [`crate::ModelOptions::site_details`]).
    pub growth: bool,
    /// Also list, by scope, the blocks that outlived their scope instance.
    pub by_scope: bool,
}

/// The leak report.
#[derive(Clone, Debug, Serialize)]
pub struct LeakReport {
    /// [`LEAKS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What was recorded, and how the trace ended.
    pub trace: TraceInfo,
    /// True when the blocks are leaks (the process exited); false when the
    /// trace ended otherwise (cut short, or at an exec) and they are only
    /// what was live then.
    pub at_exit: bool,
    /// True when a leak scan classified the blocks (see `classes`).
    pub classified: bool,
    /// The blocks live at the end by what the trace's last leak scan said
    /// of them (`null` without a scan).
    pub classes: Option<LeakClasses>,
    /// Requested bytes never freed, not suppressed.
    pub leaked_bytes: u64,
    /// Blocks never freed, not suppressed.
    pub leaked_blocks: u64,
    /// Requested bytes left out by suppressions.
    pub suppressed_bytes: u64,
    /// Blocks left out by suppressions.
    pub suppressed_blocks: u64,
    /// The sites holding leaks, by bytes, largest first.
    pub sites: Vec<SiteReport>,
    /// The suppressed sites, by bytes, with the pattern that matched.
    pub suppressed: Vec<SuppressedSite>,
    /// With `--growth`: the sites whose live bytes kept growing, fastest
    /// first (`null` when not asked for).
    pub growing: Option<Vec<GrowingSite>>,
    /// With `--by scope`: by scope name, the blocks live at the end whose
    /// scope instance had ended (`null` when not asked for).
    pub outlived: Option<Vec<OutlivedScope>>,
    /// Device and network memory never freed (CUDA, OpenCL, Vulkan, RDMA
    /// registrations... seen by the gpu-shim), by device and host stack:
    /// memory kinds first, then address space and registrations.
    pub device: Vec<DeviceSiteReport>,
    /// Their blocks.
    pub device_leaked_blocks: u64,
    /// Caveats.
    pub notes: Vec<String>,
}

/// Live blocks by leak class (each site's `live_bytes` and `live_blocks`
/// count that class's blocks only; suppressed sites left out).
#[derive(Clone, Debug, Serialize)]
pub struct LeakClasses {
    /// Nothing pointed into them: the leaks to fix.
    pub direct: ClassGroup,
    /// Only leaked blocks pointed into them: freed with their direct leak.
    pub indirect: ClassGroup,
    /// Never freed, but something outside leaks pointed to them.
    pub reachable: ClassGroup,
    /// Allocated after the scan.
    pub unscanned: ClassGroup,
    /// False when the scan could not see everything (a thread that did not
    /// stop), so a reported leak may be reachable after all.
    pub complete: bool,
}

/// The blocks of one leak class.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassGroup {
    /// Requested bytes.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
    /// By allocation stack, largest first.
    pub sites: Vec<SiteReport>,
}

/// Blocks that outlived their instances of one scope.
#[derive(Clone, Debug, Serialize)]
pub struct OutlivedScope {
    /// The scope's name.
    pub scope: String,
    /// Requested bytes live at the end whose instance had ended.
    pub bytes: u64,
    /// Those blocks.
    pub blocks: u64,
    /// By allocation stack, largest first (`live_bytes`, `live_blocks`
    /// count those blocks only).
    pub sites: Vec<SiteReport>,
}

/// A site whose live bytes kept growing (see [`crate::growth`]).
#[derive(Clone, Debug, Serialize)]
pub struct GrowingSite {
    /// The growth rate (Theil-Sen slope), bytes per second.
    pub bytes_per_second: f64,
    /// The Mann-Kendall z score of the trend.
    pub trend_z: f64,
    /// Seconds from the site's first allocation to the end of the trace.
    pub observed_seconds: f64,
    /// The site.
    pub site: SiteReport,
}

/// A site left out by a suppression.
#[derive(Clone, Debug, Serialize)]
pub struct SuppressedSite {
    /// The `leak:` pattern that matched.
    pub pattern: String,
    /// The site.
    pub site: SiteReport,
}

/// Builds the leak report of `analysis`.
pub fn build(
    analysis: &Analysis,
    symbolizer: &mut Symbolizer,
    options: &LeakOptions,
) -> LeakReport {
    let model = &analysis.model;
    let mut sites: Vec<_> = model
        .sites()
        .filter(|s| s.counters.live_blocks > 0)
        .collect();
    sites.sort_by(|a, b| {
        (b.counters.live_bytes, b.counters.live_blocks)
            .cmp(&(a.counters.live_bytes, a.counters.live_blocks))
            .then(a.stack.cmp(&b.stack))
    });
    let mut builder = SiteBuilder::new(model, symbolizer, options.frames);
    let mut report = LeakReport {
        schema_version: LEAKS_SCHEMA_VERSION,
        trace: trace_info(analysis),
        at_exit: matches!(
            analysis.ending,
            Ending::Complete {
                clean_exit: true,
                exec: false
            }
        ),
        classified: false,
        classes: None,
        leaked_bytes: 0,
        leaked_blocks: 0,
        suppressed_bytes: 0,
        suppressed_blocks: 0,
        sites: Vec::new(),
        suppressed: Vec::new(),
        growing: None,
        outlived: None,
        device: Vec::new(),
        device_leaked_blocks: 0,
        notes: notes(analysis),
    };
    let suppressed_by = |builder: &mut SiteBuilder<'_>, stack| {
        if options.suppressions.is_empty() {
            None
        } else {
            let stack = builder.symbolizer.stack(model, stack);
            options
                .suppressions
                .matching(&stack.frames)
                .map(str::to_owned)
        }
    };
    if let Some(last) = model.leak_scans().last() {
        report.classified = true;
        report.classes = Some(by_class(model, &mut builder, last, |b, stack| {
            suppressed_by(b, stack).is_some()
        }));
    }
    for site in sites {
        let c = site.counters;
        let pattern = suppressed_by(&mut builder, site.stack);
        let shown = builder.site(&site);
        match pattern {
            Some(pattern) => {
                report.suppressed_bytes += c.live_bytes;
                report.suppressed_blocks += c.live_blocks;
                report.suppressed.push(SuppressedSite {
                    pattern,
                    site: shown,
                });
            }
            None => {
                report.leaked_bytes += c.live_bytes;
                report.leaked_blocks += c.live_blocks;
                report.sites.push(shown);
            }
        }
    }
    if options.growth {
        let growing = crate::growth::growing_sites(model, 0)
            .into_iter()
            .filter_map(|g| {
                let counters = model.site(g.stack)?;
                Some(GrowingSite {
                    bytes_per_second: g.bytes_per_second,
                    trend_z: g.z,
                    observed_seconds: g.span_ns as f64 / 1e9,
                    site: builder.site(&crate::model::Site {
                        stack: g.stack,
                        counters,
                    }),
                })
            })
            .collect();
        report.growing = Some(growing);
    }
    if options.by_scope {
        report.outlived = Some(outlived_by_scope(model, &mut builder));
    }
    report.device = device_sites(model, &mut builder, usize::MAX, |s| s.live_blocks > 0);
    report.device_leaked_blocks = report.device.iter().map(|s| s.live_blocks).sum();
    match &report.classes {
        None => report.notes.push(
            "blocks never freed; without a leak scan (memtally run --leak-scan) they are not classified as direct, indirect or still reachable"
                .into(),
        ),
        Some(c) if !c.complete => report.notes.push(
            "the leak scan could not see everything (a thread did not stop): a block reported leaked may be reachable after all"
                .into(),
        ),
        Some(_) => {}
    }
    report
}

/// The live blocks grouped by what the last leak scan said of them, and
/// within each class by stack.
fn by_class(
    model: &crate::model::Model,
    builder: &mut SiteBuilder<'_>,
    scan: &crate::model::LeakScan,
    mut suppressed: impl FnMut(&mut SiteBuilder<'_>, crate::stacks::StackId) -> bool,
) -> LeakClasses {
    use crate::model::{Counters, LeakClass, Site};
    use std::collections::HashMap;
    let mut by: HashMap<(LeakClass, crate::stacks::StackId), Counters> = HashMap::new();
    for (_, block) in model.live().iter() {
        let c = by
            .entry((model.leak_class(block), block.stack))
            .or_default();
        c.live_bytes += block.weight.bytes;
        c.live_blocks += block.weight.blocks;
    }
    let mut group = |class: LeakClass| {
        let mut sites: Vec<Site> = by
            .iter()
            .filter(|((k, _), _)| *k == class)
            .map(|(&(_, stack), &counters)| Site { stack, counters })
            .collect();
        sites.retain(|s| !suppressed(builder, s.stack));
        sites.sort_by(|a, b| {
            (b.counters.live_bytes, b.counters.live_blocks)
                .cmp(&(a.counters.live_bytes, a.counters.live_blocks))
                .then(a.stack.cmp(&b.stack))
        });
        ClassGroup {
            bytes: sites.iter().map(|s| s.counters.live_bytes).sum(),
            blocks: sites.iter().map(|s| s.counters.live_blocks).sum(),
            sites: sites.iter().map(|s| builder.site(s)).collect(),
        }
    };
    LeakClasses {
        direct: group(LeakClass::Direct),
        indirect: group(LeakClass::Indirect),
        reachable: group(LeakClass::Reachable),
        unscanned: group(LeakClass::Unscanned),
        complete: scan.status == crate::leak_status::COMPLETE,
    }
}

/// The leak report as text.
pub fn render_text(r: &LeakReport) -> String {
    let f = TextFmt::new(r.trace.estimated);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "memtally leaks{}",
        r.trace
            .path
            .as_deref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "program   {}  (pid {})",
        command_line(if r.trace.argv.is_empty() {
            std::slice::from_ref(&r.trace.exe)
        } else {
            &r.trace.argv
        }),
        r.trace.pid
    );
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let when = if r.at_exit {
        "LEAKED AT EXIT"
    } else {
        "LIVE WHEN THE TRACE ENDS (the process did not exit here)"
    };
    match &r.classes {
        Some(c) => {
            let sections = [
                ("DIRECT LEAKS (nothing points to them)", &c.direct),
                ("INDIRECT LEAKS (only leaks point to them)", &c.indirect),
                (
                    "STILL REACHABLE (never freed, but pointed to: statics, caches)",
                    &c.reachable,
                ),
                ("NOT SCANNED (allocated after the leak scan)", &c.unscanned),
            ];
            for (i, (title, g)) in sections.into_iter().enumerate() {
                if i >= 2 && g.blocks == 0 {
                    continue;
                }
                let _ = writeln!(
                    o,
                    "\n{title}: {} in {} blocks, at {} {}",
                    f.bytes(g.bytes),
                    f.count(g.blocks),
                    g.sites.len(),
                    if g.sites.len() == 1 { "site" } else { "sites" }
                );
                site_table(&mut o, &g.sites, &["bytes", "blocks"], |s| {
                    vec![f.bytes(s.live_bytes), f.count(s.live_blocks)]
                });
            }
        }
        None => {
            let _ = writeln!(
                o,
                "\n{when}: {} in {} blocks, at {} {}",
                f.bytes(r.leaked_bytes),
                f.count(r.leaked_blocks),
                r.sites.len(),
                if r.sites.len() == 1 { "site" } else { "sites" }
            );
            site_table(&mut o, &r.sites, &["bytes", "blocks"], |s| {
                vec![f.bytes(s.live_bytes), f.count(s.live_blocks)]
            });
        }
    }
    if let Some(growing) = &r.growing {
        render_growth(&mut o, &f, growing);
    }
    if let Some(outlived) = &r.outlived {
        let _ = writeln!(
            o,
            "\nOUTLIVED THEIR SCOPE: blocks live at the end whose scope instance (request, task) had ended, by scope"
        );
        if outlived.is_empty() {
            o.push_str("  (none)\n");
        }
        for s in outlived {
            let _ = writeln!(
                o,
                "\n  scope {}: {} in {} blocks",
                s.scope,
                f.bytes(s.bytes),
                f.count(s.blocks)
            );
            site_table(&mut o, &s.sites, &["bytes", "blocks"], |s| {
                vec![f.bytes(s.live_bytes), f.count(s.live_blocks)]
            });
        }
    }
    if !r.suppressed.is_empty() {
        let _ = writeln!(
            o,
            "\nSUPPRESSED: {} in {} blocks, at {} {}",
            f.bytes(r.suppressed_bytes),
            f.count(r.suppressed_blocks),
            r.suppressed.len(),
            if r.suppressed.len() == 1 {
                "site"
            } else {
                "sites"
            }
        );
        let mut rows: Vec<(String, u64, u64)> = Vec::new();
        for s in &r.suppressed {
            match rows.iter_mut().find(|(p, _, _)| *p == s.pattern) {
                Some(row) => {
                    row.1 += s.site.live_bytes;
                    row.2 += s.site.live_blocks;
                }
                None => rows.push((s.pattern.clone(), s.site.live_bytes, s.site.live_blocks)),
            }
        }
        for (pattern, bytes, blocks) in rows {
            let _ = writeln!(
                o,
                "  {:>10}  {:>8} blocks  leak:{pattern}",
                f.bytes(bytes),
                f.count(blocks)
            );
        }
    }
    if !r.device.is_empty() {
        let what = if r.at_exit {
            "DEVICE AND NETWORK MEMORY NEVER FREED"
        } else {
            "DEVICE AND NETWORK MEMORY LIVE WHEN THE TRACE ENDS"
        };
        let _ = writeln!(
            o,
            "\n{what}: {} blocks, by device and allocation stack",
            f.count(r.device_leaked_blocks)
        );
        let list: Vec<SiteReport> = r.device.iter().map(|s| s.site.clone()).collect();
        site_table(
            &mut o,
            &list,
            &["where", "api", "memory", "bytes", "blocks"],
            |s| {
                let i = list
                    .iter()
                    .position(|x| std::ptr::eq(x, s))
                    .expect("a listed site");
                let d = &r.device[i];
                vec![
                    d.device
                        .map_or_else(|| "host".to_owned(), |n| format!("device {n}")),
                    d.api.clone(),
                    d.memory.clone(),
                    f.bytes(d.live_bytes),
                    f.count(d.live_blocks),
                ]
            },
        );
    }
    o
}

/// The blocks live at the end whose scope instance had ended, by scope
/// and stack, largest first.
fn outlived_by_scope(
    model: &crate::model::Model,
    builder: &mut SiteBuilder<'_>,
) -> Vec<OutlivedScope> {
    use std::collections::HashMap;
    let mut by: HashMap<u64, HashMap<crate::stacks::StackId, crate::model::Counters>> =
        HashMap::new();
    for (_, block) in model.live().iter() {
        if let Some((name, true)) = model.block_scope(block) {
            let c = by.entry(name).or_default().entry(block.stack).or_default();
            c.live_bytes += block.weight.bytes;
            c.live_blocks += block.weight.blocks;
        }
    }
    let mut out: Vec<OutlivedScope> = by
        .into_iter()
        .map(|(name, sites)| {
            let mut sites: Vec<crate::model::Site> = sites
                .into_iter()
                .map(|(stack, counters)| crate::model::Site { stack, counters })
                .collect();
            sites.sort_by(|a, b| {
                (b.counters.live_bytes, b.counters.live_blocks)
                    .cmp(&(a.counters.live_bytes, a.counters.live_blocks))
                    .then(a.stack.cmp(&b.stack))
            });
            OutlivedScope {
                scope: model.strings().get(name).unwrap_or("?").to_owned(),
                bytes: sites.iter().map(|s| s.counters.live_bytes).sum(),
                blocks: sites.iter().map(|s| s.counters.live_blocks).sum(),
                sites: sites.iter().map(|s| builder.site(s)).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.scope.cmp(&b.scope)));
    out
}

/// The growth section of the text report.
fn render_growth(o: &mut String, f: &TextFmt, growing: &[GrowingSite]) {
    let _ = writeln!(
        o,
        "\nGROWING: {} {} whose live bytes kept growing (Mann-Kendall trend over {} samples to the end, over the whole and the later half; rate by Theil-Sen)",
        growing.len(),
        if growing.len() == 1 { "site" } else { "sites" },
        crate::growth::SAMPLES
    );
    let sites: Vec<SiteReport> = growing.iter().map(|g| g.site.clone()).collect();
    site_table(o, &sites, &["rate", "live", "over"], |s| {
        let g = growing
            .iter()
            .find(|g| g.site.stack == s.stack)
            .expect("a growing site");
        vec![
            format!("{}/s", f.bytes(g.bytes_per_second.round() as u64)),
            f.bytes(s.live_bytes),
            crate::report::text_ns((g.observed_seconds * 1e9) as u64),
        ]
    });
}

/// Writes the leak report as JSON (`docs/leaks-json.md`).
pub fn write_json(r: &LeakReport, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    // `From` keeps an I/O error's kind (a closed pipe stays BrokenPipe).
    serde_json::to_writer_pretty(&mut *out, r).map_err(std::io::Error::from)?;
    writeln!(out)
}
