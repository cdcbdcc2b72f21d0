//! Timelines: the heap over time, stacked by the sites that held the most
//! at its peak, with the resident set size beside it, the peak marked and
//! the user's markers drawn as labelled lines (`memtally plot`).
//!
//! A timeline needs the live bytes of a few sites over time, and which
//! sites matter is known only once the trace has been read. So it takes
//! two models of the same trace: the first ranks the sites ([`choose`]),
//! the second is read with those groups tracked
//! ([`crate::Model::track_groups`]) and gives their series. [`build`]
//! samples every series at the same instants (one per pixel column, the
//! value in force at the end of the column, with the heap's maximum in the
//! column kept as an envelope so downsampling never hides a spike), and
//! [`write_svg`] draws the result as a self-contained SVG with a tooltip
//! per layer.

use crate::group::{Group, GroupBy, group_sites};
use crate::model::{Model, Series};
use crate::report::{text_bytes, text_ns};
use crate::stacks::StackId;
use crate::symbols::Symbolizer;
use std::io::{self, Write};

/// The groups of sites a timeline stacks: the `top` functions holding the
/// most bytes at the heap's peak (then the most at once, at any time),
/// largest first.
pub fn choose(model: &Model, symbolizer: &mut Symbolizer, top: usize) -> Vec<Group> {
    let mut groups = group_sites(model, symbolizer, GroupBy::Function);
    groups.retain(|g| g.counters.max_live_bytes > 0);
    groups.sort_by(|a, b| {
        (b.counters.at_peak_bytes, b.counters.max_live_bytes)
            .cmp(&(a.counters.at_peak_bytes, a.counters.max_live_bytes))
            .then_with(|| a.key.cmp(&b.key))
    });
    groups.truncate(top);
    groups
}

/// The sites of each group, for [`crate::Model::track_groups`].
pub fn group_stacks(groups: &[Group]) -> Vec<Vec<StackId>> {
    groups.iter().map(|g| g.sites.clone()).collect()
}

/// One stacked layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The group's name (its function), or `other sites`.
    pub name: String,
    /// Its live bytes at each instant.
    pub values: Vec<u64>,
}

/// A timeline ready to draw.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// The title line.
    pub title: String,
    /// The line under it.
    pub subtitle: String,
    /// The instants, in nanoseconds since the recording started (the end
    /// of each column).
    pub times_ns: Vec<u64>,
    /// The layers, bottom first: the chosen groups, then the rest of the
    /// heap.
    pub layers: Vec<Layer>,
    /// The heap's largest value in each column.
    pub heap_max: Vec<u64>,
    /// The resident set size at each instant (None before the first
    /// sample, or when the trace has none).
    pub rss: Vec<Option<u64>>,
    /// The peak: nanoseconds since the start, and bytes.
    pub peak: (u64, u64),
    /// User markers: nanoseconds since the start, and text.
    pub markers: Vec<(u64, String)>,
    /// The recording's length in nanoseconds.
    pub duration_ns: u64,
}

/// Samples `model` (read with `groups` tracked, in this order) at
/// `columns` instants.
pub fn build(model: &Model, groups: &[Group], columns: usize, title: String) -> Timeline {
    let columns = columns.max(2);
    let start = model.start_ticks();
    let end = model.end_ticks().max(start + 1);
    let span = end - start;
    let instants: Vec<u64> = (1..=columns as u64)
        .map(|c| start + (span as u128 * c as u128 / columns as u128) as u64)
        .collect();
    let heap = model.heap_series();
    let mut layers: Vec<Layer> = groups
        .iter()
        .zip(model.group_series())
        .map(|(g, s)| Layer {
            name: g.key.clone(),
            values: sample(s, &instants)
                .into_iter()
                .map(|v| v.unwrap_or(0))
                .collect(),
        })
        .collect();
    let totals = sample(heap, &instants);
    let other = model
        .group_series()
        .get(groups.len())
        .map(|s| sample(s, &instants))
        .unwrap_or_default();
    layers.push(Layer {
        name: "other sites".into(),
        values: (0..columns)
            .map(|c| other.get(c).copied().flatten().unwrap_or(0))
            .collect(),
    });
    // The heap's largest value in each column: points are in time order,
    // so one pass assigns each to its column.
    let mut heap_max: Vec<Option<u64>> = vec![None; columns];
    let mut column = 0;
    for p in heap.points() {
        while column + 1 < columns && p.ticks > instants[column] {
            column += 1;
        }
        let m = &mut heap_max[column];
        *m = Some(m.map_or(p.max, |m| m.max(p.max)));
    }
    let heap_max = heap_max
        .iter()
        .zip(&totals)
        .map(|(m, total)| m.or(*total).unwrap_or(0))
        .collect();
    let rss = sample(model.rss_series(), &instants);
    let peak = model.peak();
    let header = model.header().cloned().unwrap_or_default();
    let estimate = if model.is_estimate() {
        ", sampled: estimates"
    } else {
        ""
    };
    Timeline {
        title,
        subtitle: format!(
            "{}  ({}{estimate})",
            crate::report::command_line(&header.argv),
            text_ns(model.duration_ns())
        ),
        times_ns: instants.iter().map(|&t| model.since_start_ns(t)).collect(),
        layers,
        heap_max,
        rss,
        peak: (model.since_start_ns(peak.ticks), peak.bytes),
        markers: model
            .markers()
            .iter()
            .map(|m| {
                let text = model.strings().get(m.string).unwrap_or("?").to_owned();
                (model.since_start_ns(m.ticks), text)
            })
            .collect(),
        duration_ns: model.duration_ns(),
    }
}

/// The value in force at `ticks` of `(ticks, value)` points in time order.
fn step_at(points: &[(u64, u64)], ticks: u64) -> Option<u64> {
    let n = points.partition_point(|p| p.0 <= ticks);
    (n > 0).then(|| points[n - 1].1)
}

/// A series sampled at each of `instants`.
fn sample(series: &Series, instants: &[u64]) -> Vec<Option<u64>> {
    let points: Vec<(u64, u64)> = series.points().map(|p| (p.ticks, p.last)).collect();
    instants.iter().map(|&t| step_at(&points, t)).collect()
}

/// Layer colours, bottom first; `other sites` is grey.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#86bcb6",
];
const OTHER: &str = "#c8c8c8";
const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 330.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 50.0;

/// Draws `t` as an SVG.
pub fn write_svg(t: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top_value = t
        .heap_max
        .iter()
        .copied()
        .chain(t.rss.iter().flatten().copied())
        .chain([t.peak.1, 1])
        .max()
        .unwrap_or(1);
    let (y_max, y_step) = nice_axis(top_value, true);
    let duration = t.duration_ns.max(1) as f64;
    let x = |ns: u64| LEFT + plot_w * (ns as f64 / duration).min(1.0);
    let y = |v: u64| TOP + plot_h * (1.0 - v as f64 / y_max as f64);

    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Verdana, sans-serif" font-size="12">"#
    )?;
    writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="17">{}</text>"#,
        WIDTH / 2.0,
        escape(&t.title)
    )?;
    writeln!(
        out,
        r##"<text x="{}" y="44" text-anchor="middle" fill="#555">{}</text>"##,
        WIDTH / 2.0,
        escape(&t.subtitle)
    )?;

    // Axes and grid.
    let mut v = 0;
    while v <= y_max {
        let yy = y(v);
        writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            escape(&text_bytes(v))
        )?;
        v += y_step;
    }
    let (_, x_step) = nice_axis(t.duration_ns.max(1), false);
    let mut ns = 0;
    while ns <= t.duration_ns {
        let xx = x(ns);
        writeln!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            escape(&text_ns(ns))
        )?;
        ns += x_step;
    }
    writeln!(
        out,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#333">time since the recording started</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    )?;

    // Stacked layers: each a polygon between the running sum below it and
    // the running sum including it.
    let n = t.times_ns.len();
    let mut below = vec![0u64; n];
    let xs: Vec<f64> = t.times_ns.iter().map(|&ns| x(ns)).collect();
    for (i, layer) in t.layers.iter().enumerate() {
        let above: Vec<u64> = below
            .iter()
            .zip(&layer.values)
            .map(|(b, v)| b + v)
            .collect();
        let colour = layer_colour(i, t.layers.len());
        let mut path = format!("M{LEFT:.1},{:.1}", y(below[0]));
        for c in 0..n {
            path.push_str(&format!(" L{:.1},{:.1}", xs[c], y(above[c])));
        }
        for c in (0..n).rev() {
            path.push_str(&format!(" L{:.1},{:.1}", xs[c], y(below[c])));
        }
        path.push_str(&format!(" L{LEFT:.1},{:.1} Z", y(below[0])));
        let most = layer.values.iter().copied().max().unwrap_or(0);
        writeln!(
            out,
            r#"<path d="{path}" fill="{colour}" fill-opacity="0.85" stroke="none"><title>{} (at most {} live)</title></path>"#,
            escape(&layer.name),
            escape(&text_bytes(most))
        )?;
        below = above;
    }

    // The heap's envelope, the RSS line, the peak and the markers.
    let envelope: Vec<String> = (0..n)
        .map(|c| format!("{:.1},{:.1}", xs[c], y(t.heap_max[c])))
        .collect();
    writeln!(
        out,
        r##"<polyline points="{}" fill="none" stroke="#222" stroke-width="1"><title>heap (largest in each column)</title></polyline>"##,
        envelope.join(" ")
    )?;
    let rss: Vec<String> = (0..n)
        .filter_map(|c| t.rss[c].map(|v| format!("{:.1},{:.1}", xs[c], y(v))))
        .collect();
    if !rss.is_empty() {
        writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="6,3"><title>resident set size</title></polyline>"##,
            rss.join(" ")
        )?;
    }
    let (peak_ns, peak_bytes) = t.peak;
    let (px, py) = (x(peak_ns), y(peak_bytes));
    writeln!(
        out,
        r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#000" stroke-dasharray="2,2"/><circle cx="{px:.1}" cy="{py:.1}" r="4" fill="#000"/><text x="{:.1}" y="{:.1}" text-anchor="{}">peak {} at {}</text>"##,
        TOP + plot_h,
        px + if px > LEFT + plot_w * 0.7 { -8.0 } else { 8.0 },
        (py - 8.0).max(TOP + 12.0),
        if px > LEFT + plot_w * 0.7 {
            "end"
        } else {
            "start"
        },
        escape(&text_bytes(peak_bytes)),
        escape(&text_ns(peak_ns))
    )?;
    for (ns, text) in &t.markers {
        let mx = x(*ns);
        writeln!(
            out,
            r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="{TOP}" y2="{}" stroke="#7b3294" stroke-width="1"/><text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="end" fill="#7b3294" font-size="11">{}</text>"##,
            TOP + plot_h,
            mx - 3.0,
            TOP + 4.0,
            escape(text)
        )?;
    }
    writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    )?;

    // Legend, top layer first as in the picture.
    let lx = LEFT + plot_w + 16.0;
    let mut ly = TOP + 6.0;
    for (i, layer) in t.layers.iter().enumerate().rev() {
        writeln!(
            out,
            r#"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
            ly - 10.0,
            layer_colour(i, t.layers.len()),
            lx + 18.0,
            ly,
            escape(&shorten(&layer.name, 44))
        )?;
        ly += 18.0;
    }
    writeln!(
        out,
        r##"<line x1="{lx}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="6,3"/><text x="{}" y="{:.1}">resident set size{}</text>"##,
        lx + 12.0,
        ly - 4.0,
        ly - 4.0,
        lx + 18.0,
        ly,
        if rss.is_empty() {
            " (not recorded)"
        } else {
            ""
        }
    )?;
    writeln!(out, "</svg>")
}

fn layer_colour(i: usize, layers: usize) -> &'static str {
    if i + 1 == layers {
        OTHER
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// An axis from 0 to a round maximum at or above `top`, and the step
/// between its ticks: 1, 2 or 5 times a power of ten, or for `bytes` above
/// a KiB times a power of 1024 (so that labels read `2.0 MiB`).
fn nice_axis(top: u64, bytes: bool) -> (u64, u64) {
    let rough = (top as f64 / 5.0).max(1.0);
    let base = if bytes && top >= 1024 { 1024f64 } else { 10f64 };
    let power = base.powf(rough.log(base).floor());
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(power * base);
    let step = step.ceil() as u64;
    let max = top.div_ceil(step) * step;
    (max.max(step), step)
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(97, true), (100, 20));
        assert_eq!(nice_axis(5300, true), (6144, 2048));
        assert_eq!(nice_axis(1, true), (1, 1));
        // 3.1 MiB: steps of 1 MiB, not of 629 KiB.
        assert_eq!(nice_axis(3_250_000, true), (4 << 20, 1 << 20));
        assert_eq!(
            nice_axis(1_730_000_000, false),
            (2_000_000_000, 500_000_000)
        );
        let (max, step) = nice_axis(3_500_000_000, true);
        assert!(max >= 3_500_000_000 && max / step <= 10, "{max} {step}");
    }

    #[test]
    fn names_are_escaped_and_shortened() {
        assert_eq!(escape("Vec<T> & \"x\""), "Vec&lt;T&gt; &amp; &quot;x&quot;");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
