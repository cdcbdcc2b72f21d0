//! Flamegraphs of allocation sites: the model's per-site counters as folded
//! stacks (one line per site: its frames outermost first, joined by `;`,
//! then the metric's value), and SVGs drawn from them with inferno, plain
//! or differential.
//!
//! A frame is named by its function (demangled), or `module+0xoffset` when
//! the module has no symbols, so that the calls of one function from many
//! lines merge into one box, as in every flamegraph. Inlined functions are
//! frames of their own. The allocator's own frames are trimmed, as in the
//! report. No view aggregates on its own: values are the model's site
//! counters, for the metric asked.

use crate::model::{Counters, Model};
use crate::symbols::{Location, Symbolizer};
use std::io::{self, Write};

/// What a flamegraph measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Bytes allocated over the whole run.
    Allocated,
    /// Allocations made.
    Count,
    /// Bytes live at the moment of the heap's peak.
    Peak,
    /// Bytes still live when the trace ends (at exit: leaked).
    Leaked,
    /// Temporary allocations (freed by their thread before it allocated
    /// again).
    Temporary,
    /// Bytes live at a moment: the model was read up to it
    /// ([`crate::ModelOptions::until_ticks`]); the value is nanoseconds
    /// since the recording started, for titles.
    LiveAt(u64),
}

impl Metric {
    /// Parses `allocated`, `count`, `peak`, `leaked`, `temporary` or
    /// `live-at=TIME` (TIME in `s`, `ms`, `us` or `ns`, e.g. `1.5s`).
    pub fn parse(text: &str) -> Result<Metric, String> {
        Ok(match text {
            "allocated" => Metric::Allocated,
            "count" => Metric::Count,
            "peak" => Metric::Peak,
            "leaked" => Metric::Leaked,
            "temporary" => Metric::Temporary,
            _ => match text.strip_prefix("live-at=") {
                Some(t) => Metric::LiveAt(parse_time(t).ok_or_else(|| {
                    format!("invalid time {t:?} in {text} (e.g. live-at=1.5s, live-at=250ms)")
                })?),
                None => {
                    return Err(format!(
                        "unknown metric {text:?} (expected allocated, count, peak, leaked, temporary or live-at=TIME)"
                    ));
                }
            },
        })
    }

    /// The metric's short name (file names).
    pub fn name(self) -> String {
        match self {
            Metric::Allocated => "allocated".into(),
            Metric::Count => "count".into(),
            Metric::Peak => "peak".into(),
            Metric::Leaked => "leaked".into(),
            Metric::Temporary => "temporary".into(),
            Metric::LiveAt(ns) => format!("live-at-{}ms", ns / 1_000_000),
        }
    }

    /// What the graph shows, for its title.
    pub fn title(self) -> String {
        match self {
            Metric::Allocated => "bytes allocated".into(),
            Metric::Count => "allocations".into(),
            Metric::Peak => "bytes live at the peak".into(),
            Metric::Leaked => "bytes live at the end (leaked at exit)".into(),
            Metric::Temporary => "temporary allocations".into(),
            Metric::LiveAt(ns) => format!("bytes live at {}", crate::report::text_ns(ns)),
        }
    }

    /// The unit of the values, as inferno's tooltips name it.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Count | Metric::Temporary => "allocations",
            _ => "bytes",
        }
    }

    /// The metric's value for a site.
    pub fn value(self, c: &Counters) -> u64 {
        match self {
            Metric::Allocated => c.bytes_allocated,
            Metric::Count => c.allocations,
            Metric::Peak => c.at_peak_bytes,
            Metric::Leaked | Metric::LiveAt(_) => c.live_bytes,
            Metric::Temporary => c.temporary,
        }
    }
}

/// `1.5s`, `250ms`, `40us`, `100ns` (or a plain number of seconds) in
/// nanoseconds.
fn parse_time(t: &str) -> Option<u64> {
    let (num, scale) = [("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9)]
        .iter()
        .find_map(|(suffix, scale)| t.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((t, 1e9));
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * scale).round() as u64)
}

/// One folded stack: frames outermost first, joined by `;`, and a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    /// The frames.
    pub stack: String,
    /// The metric's value.
    pub value: u64,
}

/// The model's sites as folded stacks for `metric`, sites with a zero value
/// left out, sorted by stack (sites whose symbolised stacks read the same
/// are summed).
pub fn folded(model: &Model, symbolizer: &mut Symbolizer, metric: Metric) -> Vec<Folded> {
    let mut out: Vec<Folded> = Vec::new();
    fold_sites(model, symbolizer, metric, model.sites(), None, &mut out);
    finish(out)
}

/// As [`folded`], with each scope as the root frame (`[scope GET /users]`)
/// of the sites allocated in it, and `[no scope]` for the rest
/// (`memtally flame --by scope`).
pub fn folded_by_scope(model: &Model, symbolizer: &mut Symbolizer, metric: Metric) -> Vec<Folded> {
    let mut out: Vec<Folded> = Vec::new();
    // What no scope holds: each site's counters less its scoped ones.
    let mut scoped: std::collections::HashMap<crate::stacks::StackId, Counters> =
        std::collections::HashMap::new();
    for scope in model.scopes() {
        let root = format!("[scope {}]", scope.name.replace(';', ":"));
        let sites: Vec<_> = model.scope_sites(scope.string).collect();
        for s in &sites {
            scoped.entry(s.stack).or_default().add(&s.counters);
        }
        fold_sites(
            model,
            symbolizer,
            metric,
            sites.into_iter(),
            Some(&root),
            &mut out,
        );
    }
    let rest = model.sites().map(|mut s| {
        if let Some(c) = scoped.get(&s.stack) {
            let v = metric.value(&s.counters).saturating_sub(metric.value(c));
            s.counters = Counters::default();
            set_value(metric, &mut s.counters, v);
        }
        s
    });
    fold_sites(
        model,
        symbolizer,
        metric,
        rest,
        Some("[no scope]"),
        &mut out,
    );
    finish(out)
}

/// The device memory of `device` (seen by the gpu-shim) as folded stacks:
/// each site of that device with the host stack that allocated, under a
/// leaf frame naming the API it called (`[cudaMalloc]`). Only memory
/// counts (not reserved address space or registrations). Metrics
/// allocated, count and leaked; 0 for the others.
pub fn folded_device(
    model: &Model,
    symbolizer: &mut Symbolizer,
    metric: Metric,
    device: u32,
) -> Vec<Folded> {
    use memtally_alloc::trace::device::counts_in_total;
    let mut out = Vec::new();
    for ((d, stack), s) in model.device().sites() {
        if d != device || !counts_in_total(s.memory) {
            continue;
        }
        let value = match metric {
            Metric::Allocated => s.bytes_allocated,
            Metric::Count => s.allocations,
            Metric::Leaked => s.live_bytes,
            _ => 0,
        };
        if value == 0 {
            continue;
        }
        let frames = symbolizer.stack(model, stack);
        let mut names: Vec<String> = frames.frames.iter().rev().map(frame_name).collect();
        if names.is_empty() {
            names.push("[no stack]".into());
        }
        let api = model.strings().get(s.api).unwrap_or("?");
        names.push(format!("[{}]", api.replace(';', ":")));
        out.push(Folded {
            stack: names.join(";"),
            value,
        });
    }
    finish(out)
}

/// Sets the field `metric` reads to `v`.
fn set_value(metric: Metric, c: &mut Counters, v: u64) {
    match metric {
        Metric::Allocated => c.bytes_allocated = v,
        Metric::Count => c.allocations = v,
        Metric::Peak => c.at_peak_bytes = v,
        Metric::Leaked | Metric::LiveAt(_) => c.live_bytes = v,
        Metric::Temporary => c.temporary = v,
    }
}

fn fold_sites(
    model: &Model,
    symbolizer: &mut Symbolizer,
    metric: Metric,
    sites: impl Iterator<Item = crate::model::Site>,
    root: Option<&str>,
    out: &mut Vec<Folded>,
) {
    for site in sites {
        let value = metric.value(&site.counters);
        if value == 0 {
            continue;
        }
        let stack = symbolizer.stack(model, site.stack);
        let mut names: Vec<String> = root.map(str::to_owned).into_iter().collect();
        names.extend(stack.frames.iter().rev().map(frame_name));
        if names.len() == usize::from(root.is_some()) {
            names.push("[no stack]".into());
        }
        out.push(Folded {
            stack: names.join(";"),
            value,
        });
    }
}

/// Sorted by stack, equal stacks summed.
fn finish(mut out: Vec<Folded>) -> Vec<Folded> {
    out.sort_by(|a, b| a.stack.cmp(&b.stack));
    out.dedup_by(|later, first| {
        let same = later.stack == first.stack;
        if same {
            first.value += later.value;
        }
        same
    });
    out
}

/// A frame's name in a folded stack: its function, else `module+0xoff`;
/// `;` (the separator) and line breaks are replaced.
fn frame_name(l: &Location) -> String {
    let name = l.function.clone().unwrap_or_else(|| l.raw());
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// Writes folded stacks as text, one `stack value` per line.
pub fn write_folded(lines: &[Folded], out: &mut dyn Write) -> io::Result<()> {
    for l in lines {
        writeln!(out, "{} {}", l.stack, l.value)?;
    }
    Ok(())
}

/// Titles of a flamegraph.
pub struct Titles {
    /// The title line.
    pub title: String,
    /// The line under it (program, trace, mode).
    pub subtitle: String,
}

/// Draws `lines` as an interactive SVG flamegraph.
pub fn write_svg(
    lines: &[Folded],
    metric: Metric,
    titles: &Titles,
    out: &mut dyn Write,
) -> io::Result<()> {
    let text = folded_text(lines);
    let mut options = svg_options(metric, titles);
    if lines.is_empty() {
        // inferno refuses an empty graph; say so in the picture instead.
        let empty = format!("[nothing to show: no site has {}] 1", metric.title());
        return inferno::flamegraph::from_lines(&mut options, [empty.as_str()], out);
    }
    inferno::flamegraph::from_lines(&mut options, text.lines(), out)
}

/// Draws the change from `base` to `lines` as a differential flamegraph:
/// boxes sized by the new values, red where a site grew, blue where it
/// shrank.
pub fn write_diff_svg(
    base: &[Folded],
    lines: &[Folded],
    metric: Metric,
    titles: &Titles,
    out: &mut dyn Write,
) -> io::Result<()> {
    let before = folded_text(base);
    let after = folded_text(lines);
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut diff,
    )?;
    let diff = String::from_utf8_lossy(&diff);
    let mut options = svg_options(metric, titles);
    if diff.trim().is_empty() {
        let empty = format!("[nothing to show: no site has {}] 1", metric.title());
        return inferno::flamegraph::from_lines(&mut options, [empty.as_str()], out);
    }
    inferno::flamegraph::from_lines(&mut options, diff.lines(), out)
}

fn folded_text(lines: &[Folded]) -> String {
    let mut text = Vec::new();
    write_folded(lines, &mut text).expect("writing to memory");
    String::from_utf8(text).expect("folded stacks are UTF-8")
}

fn svg_options(metric: Metric, titles: &Titles) -> inferno::flamegraph::Options<'static> {
    let mut o = inferno::flamegraph::Options::default();
    o.title = titles.title.clone();
    o.subtitle = Some(titles.subtitle.clone());
    o.count_name = metric.unit().into();
    o.colors = inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    o.hash = true;
    o.deterministic = true;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse() {
        assert_eq!(Metric::parse("peak"), Ok(Metric::Peak));
        assert_eq!(
            Metric::parse("live-at=1.5s"),
            Ok(Metric::LiveAt(1_500_000_000))
        );
        assert_eq!(
            Metric::parse("live-at=250ms"),
            Ok(Metric::LiveAt(250_000_000))
        );
        assert_eq!(
            Metric::parse("live-at=2"),
            Ok(Metric::LiveAt(2_000_000_000))
        );
        assert!(
            Metric::parse("live-at=soon")
                .unwrap_err()
                .contains("invalid time")
        );
        assert!(
            Metric::parse("bogus")
                .unwrap_err()
                .contains("unknown metric")
        );
    }
}
