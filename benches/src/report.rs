//! Statistics and output of the `alloc-bench` driver.
//!
//! From the raw measurements of every worker run this computes, per workload
//! and allocator, the median over repetitions of wall time, peak RSS, CPU
//! times and page faults; the ratios of time and RSS to the baseline allocator
//! (mimalloc), always as `allocator / baseline`, so below 1 is better; and per
//! allocator the geometric mean of those ratios over the workloads where both
//! sides succeeded; with `--layouts`, the same ratios per code layout of
//! memtally's builds and over all layouts. It lives in the library so the
//! arithmetic is unit tested.

use std::fmt::Write as _;

use crate::cli::{is_memtally_build, layout_name};

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    /// A non-zero exit status.
    Exit(i32),
    /// Killed by this signal (and not by the driver's timeout).
    Signal(i32),
    /// Killed by the driver after the timeout.
    TimedOut,
}

impl Outcome {
    /// Whether the run counts.
    pub fn is_success(self) -> bool {
        self == Outcome::Success
    }

    /// A short description such as `exit 3` or `signal 11`.
    pub fn describe(self) -> String {
        match self {
            Outcome::Success => "ok".to_string(),
            Outcome::Exit(code) => format!("exit {code}"),
            Outcome::Signal(signal) => format!("signal {signal}"),
            Outcome::TimedOut => "timeout".to_string(),
        }
    }
}

/// One worker run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Workload name.
    pub workload: String,
    /// Allocator name.
    pub allocator: String,
    /// Repetition number, from 0.
    pub rep: usize,
    /// How the worker ended.
    pub outcome: Outcome,
    /// Wall time from spawn to exit, in seconds.
    pub wall_s: f64,
    /// User CPU time, in seconds.
    pub user_s: f64,
    /// System CPU time, in seconds.
    pub sys_s: f64,
    /// Peak resident set size in KiB (Linux `ru_maxrss`).
    pub max_rss_kib: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
}

/// Medians over the successful repetitions of one workload and allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Medians {
    /// Wall time in seconds.
    pub wall_s: f64,
    /// Spread of the wall times, `(max - min) / median`: a large spread says
    /// the machine was noisy and the median deserves less trust.
    pub wall_spread: f64,
    /// User CPU time in seconds.
    pub user_s: f64,
    /// System CPU time in seconds.
    pub sys_s: f64,
    /// Peak RSS in MiB.
    pub rss_mib: f64,
    /// Minor plus major page faults.
    pub faults: f64,
}

/// The summary of one workload under one allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Workload name.
    pub workload: String,
    /// Allocator name.
    pub allocator: String,
    /// The medians, or the failure text (`FAILED (exit 3)`) if any repetition failed.
    pub result: Result<Medians, String>,
    /// Median time divided by the baseline's median time.
    pub time_ratio: Option<f64>,
    /// Median peak RSS divided by the baseline's.
    pub rss_ratio: Option<f64>,
}

/// The geometric means of one allocator's ratios to the baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct GeoMean {
    /// Allocator name.
    pub allocator: String,
    /// Geometric mean of the time ratios.
    pub time_ratio: Option<f64>,
    /// Geometric mean of the RSS ratios.
    pub rss_ratio: Option<f64>,
    /// How many workloads the means are over.
    pub workloads: usize,
}

/// Everything the driver prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The allocator the ratios are relative to.
    pub baseline: String,
    /// One cell per workload and allocator, workload-major.
    pub cells: Vec<Cell>,
    /// One entry per allocator.
    pub geomeans: Vec<GeoMean>,
    /// Geometric mean of memtally's time over the system allocator's, and
    /// the number of workloads it covers, when both were run.
    pub memtally_vs_system: Option<(f64, usize)>,
    /// Number of cells that failed.
    pub failures: usize,
}

/// The median of `values`, averaging the middle two for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The geometric mean of positive `values`, `None` for an empty list.
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    Some((values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp())
}

/// `ours / theirs`, or `None` when the baseline is zero or missing.
fn ratio(ours: f64, theirs: f64) -> Option<f64> {
    (theirs > 0.0).then(|| ours / theirs)
}

/// Summarises `runs` for the given workloads and allocators.
pub fn summarize(workloads: &[&str], allocators: &[&str], baseline: &str, runs: &[Run]) -> Summary {
    let mut cells = Vec::new();
    for &workload in workloads {
        let medians: Vec<(&str, Result<Medians, String>)> = allocators
            .iter()
            .map(|&allocator| {
                let mine: Vec<&Run> = runs
                    .iter()
                    .filter(|r| r.workload == workload && r.allocator == allocator)
                    .collect();
                (allocator, cell_medians(&mine))
            })
            .collect();
        let base = medians
            .iter()
            .find(|(a, _)| *a == baseline)
            .and_then(|(_, m)| m.as_ref().ok())
            .cloned();
        for (allocator, result) in medians {
            let (time_ratio, rss_ratio) = match (&result, &base) {
                (Ok(m), Some(b)) => (ratio(m.wall_s, b.wall_s), ratio(m.rss_mib, b.rss_mib)),
                _ => (None, None),
            };
            cells.push(Cell {
                workload: workload.to_string(),
                allocator: allocator.to_string(),
                result,
                time_ratio,
                rss_ratio,
            });
        }
    }
    let geomeans = allocators
        .iter()
        .map(|&allocator| {
            let mine: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.allocator == allocator && c.time_ratio.is_some())
                .collect();
            let times: Vec<f64> = mine.iter().filter_map(|c| c.time_ratio).collect();
            let rss: Vec<f64> = mine.iter().filter_map(|c| c.rss_ratio).collect();
            GeoMean {
                allocator: allocator.to_string(),
                time_ratio: geomean(&times),
                rss_ratio: geomean(&rss),
                workloads: times.len(),
            }
        })
        .collect();
    let wall = |workload: &str, allocator: &str| {
        cells
            .iter()
            .find(|c| c.workload == workload && c.allocator == allocator)
            .and_then(|c| c.result.as_ref().ok())
            .map(|m| m.wall_s)
    };
    let memtally_vs_system = if allocators.contains(&"memtally") && allocators.contains(&"system") {
        let ratios: Vec<f64> = workloads
            .iter()
            .filter_map(|w| match (wall(w, "memtally"), wall(w, "system")) {
                (Some(ours), Some(theirs)) => ratio(ours, theirs),
                _ => None,
            })
            .collect();
        geomean(&ratios).map(|g| (g, ratios.len()))
    } else {
        None
    };
    let failures = cells.iter().filter(|c| c.result.is_err()).count();
    Summary {
        baseline: baseline.to_string(),
        cells,
        geomeans,
        memtally_vs_system,
        failures,
    }
}

/// Medians over the runs of one cell, or the failure text if any run failed.
fn cell_medians(runs: &[&Run]) -> Result<Medians, String> {
    let failed: Vec<&&Run> = runs.iter().filter(|r| !r.outcome.is_success()).collect();
    if let Some(first) = failed.first() {
        let mut text = format!("FAILED ({}", first.outcome.describe());
        if failed.len() < runs.len() {
            let _ = write!(text, ", {}/{} reps", failed.len(), runs.len());
        }
        text.push(')');
        return Err(text);
    }
    let pick = |f: fn(&Run) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let wall_s = pick(|r| r.wall_s).ok_or_else(|| "FAILED (no runs)".to_string())?;
    let fastest = runs.iter().map(|r| r.wall_s).fold(f64::INFINITY, f64::min);
    let slowest = runs.iter().map(|r| r.wall_s).fold(0.0, f64::max);
    Ok(Medians {
        wall_s,
        wall_spread: if wall_s > 0.0 {
            (slowest - fastest) / wall_s
        } else {
            0.0
        },
        user_s: pick(|r| r.user_s).unwrap_or(0.0),
        sys_s: pick(|r| r.sys_s).unwrap_or(0.0),
        rss_mib: pick(|r| r.max_rss_kib as f64 / 1024.0).unwrap_or(0.0),
        faults: pick(|r| (r.minor_faults + r.major_faults) as f64).unwrap_or(0.0),
    })
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Renders a markdown table whose columns are padded to line up in a terminal.
fn markdown_table(headers: &[&str], right_aligned: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count().max(3)).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for ((cell, width), right) in cells.iter().zip(&widths).zip(right_aligned) {
            if *right {
                let _ = write!(out, " {cell:>width$} |");
            } else {
                let _ = write!(out, " {cell:<width$} |");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    out.push('|');
    for (width, right) in widths.iter().zip(right_aligned) {
        let dashes = "-".repeat(width.saturating_sub(usize::from(*right)));
        let _ = write!(out, " {dashes}{} |", if *right { ":" } else { "" });
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// Renders the human-readable report: the per-workload table, the geometric
/// means, and memtally's ratio to the system allocator.
pub fn render_table(summary: &Summary) -> String {
    let base = &summary.baseline;
    let time_header = format!("time/{base}");
    let rss_header = format!("RSS/{base}");
    let headers = [
        "workload",
        "allocator",
        "time (s)",
        "spread",
        &time_header,
        "peak RSS (MiB)",
        &rss_header,
        "user (s)",
        "sys (s)",
        "page faults",
    ];
    let right = [false, false, true, true, true, true, true, true, true, true];
    let rows: Vec<Vec<String>> = summary
        .cells
        .iter()
        .map(|cell| {
            let mut row = vec![cell.workload.clone(), cell.allocator.clone()];
            match &cell.result {
                Ok(m) => row.extend([
                    format!("{:.3}", m.wall_s),
                    format!("{:.0}%", m.wall_spread * 100.0),
                    fmt_opt(cell.time_ratio, 3),
                    format!("{:.1}", m.rss_mib),
                    fmt_opt(cell.rss_ratio, 3),
                    format!("{:.3}", m.user_s),
                    format!("{:.3}", m.sys_s),
                    format!("{:.0}", m.faults),
                ]),
                Err(failure) => {
                    row.push(failure.clone());
                    row.extend(std::iter::repeat_n("-".to_string(), 7));
                }
            }
            row
        })
        .collect();
    let mut out = markdown_table(&headers, &right, &rows);
    out.push('\n');
    let geo_time = format!("geomean time/{base}");
    let geo_rss = format!("geomean RSS/{base}");
    let geo_rows: Vec<Vec<String>> = summary
        .geomeans
        .iter()
        .map(|g| {
            vec![
                g.allocator.clone(),
                fmt_opt(g.time_ratio, 3),
                fmt_opt(g.rss_ratio, 3),
                g.workloads.to_string(),
            ]
        })
        .collect();
    out.push_str(&markdown_table(
        &["allocator", &geo_time, &geo_rss, "workloads"],
        &[false, true, true, true],
        &geo_rows,
    ));
    out.push('\n');
    match summary.memtally_vs_system {
        Some((g, n)) => {
            let _ = writeln!(
                out,
                "memtally vs system: geomean time ratio {g:.3} over {n} workloads (memtally/system; below 1 is faster)"
            );
        }
        None => out.push_str("memtally vs system: not available (both must run and succeed)\n"),
    }
    if summary.failures > 0 {
        let _ = writeln!(
            out,
            "{} workload/allocator combination(s) FAILED",
            summary.failures
        );
    }
    out
}

/// Renders the time ratios of memtally's builds per code layout
/// (`--layouts`): one table for each of `builds` (`memtally`, `unchecked`)
/// but the baseline, with a row per workload giving its median time in each
/// layout over the baseline's median in the same layout (the baseline's
/// only build if it is not one of memtally's), and their geometric mean
/// over the layouts; the last row is each column's geometric mean over the
/// workloads.
pub fn render_layouts(
    workloads: &[&str],
    builds: &[&str],
    baseline: &str,
    layouts: usize,
    runs: &[Run],
) -> String {
    // One summary per layout, each against that layout's baseline.
    let per_layout: Vec<Summary> = (0..layouts)
        .map(|k| {
            let base = if is_memtally_build(baseline) {
                layout_name(baseline, k)
            } else {
                baseline.to_string()
            };
            let mut names: Vec<String> = builds.iter().map(|b| layout_name(b, k)).collect();
            if !names.contains(&base) {
                names.push(base.clone());
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            summarize(workloads, &names, &base, runs)
        })
        .collect();
    let mut out = String::new();
    for &build in builds.iter().filter(|&&b| b != baseline) {
        let ratio_in = |k: usize, workload: &str| {
            let name = layout_name(build, k);
            per_layout[k]
                .cells
                .iter()
                .find(|c| c.workload == workload && c.allocator == name)
                .and_then(|c| c.time_ratio)
        };
        let mut headers: Vec<String> = (0..layouts).map(|k| format!("layout {k}")).collect();
        headers.insert(0, "workload".to_string());
        headers.push("all layouts".to_string());
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); layouts + 1];
        let mut rows = Vec::new();
        for &workload in workloads {
            let ratios: Vec<Option<f64>> = (0..layouts).map(|k| ratio_in(k, workload)).collect();
            let all: Option<Vec<f64>> = ratios.iter().copied().collect();
            let over_layouts = all.as_deref().and_then(geomean);
            let mut row = vec![workload.to_string()];
            for (k, r) in ratios.iter().chain([&over_layouts]).enumerate() {
                row.push(fmt_opt(*r, 3));
                if let Some(r) = r {
                    columns[k].push(*r);
                }
            }
            rows.push(row);
        }
        let mut last = vec!["geomean".to_string()];
        last.extend(columns.iter().map(|c| fmt_opt(geomean(c), 3)));
        rows.push(last);
        let _ = writeln!(
            out,
            "\n{build} / {baseline}, time, by code layout (`--layouts`; a workload's \"all layouts\" is the geomean of its row):\n"
        );
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut right = vec![true; headers.len()];
        right[0] = false;
        out.push_str(&markdown_table(&headers, &right, &rows));
    }
    out
}

/// Renders the summary as CSV: one row per workload and allocator, then one
/// `GEOMEAN` row per allocator carrying only the ratio columns.
pub fn render_csv(summary: &Summary) -> String {
    let mut out = String::from(
        "workload,allocator,status,time_s,time_spread,time_ratio,rss_mib,rss_ratio,user_s,sys_s,page_faults\n",
    );
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.6}"));
    for cell in &summary.cells {
        let (status, m) = match &cell.result {
            Ok(m) => ("ok".to_string(), Some(m)),
            Err(failure) => (failure.clone(), None),
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&cell.workload),
            csv_field(&cell.allocator),
            csv_field(&status),
            num(m.map(|m| m.wall_s)),
            num(m.map(|m| m.wall_spread)),
            num(cell.time_ratio),
            num(m.map(|m| m.rss_mib)),
            num(cell.rss_ratio),
            num(m.map(|m| m.user_s)),
            num(m.map(|m| m.sys_s)),
            m.map_or_else(String::new, |m| format!("{:.0}", m.faults)),
        );
    }
    for g in &summary.geomeans {
        let _ = writeln!(
            out,
            "GEOMEAN,{},ok,,,{},,{},,,",
            csv_field(&g.allocator),
            num(g.time_ratio),
            num(g.rss_ratio)
        );
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Renders the summary and the raw runs as one JSON object.
pub fn render_json(summary: &Summary, runs: &[Run]) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"baseline\": {},", json_str(&summary.baseline));
    out.push_str("  \"results\": [\n");
    for (i, cell) in summary.cells.iter().enumerate() {
        let m = cell.result.as_ref().ok();
        let status = match &cell.result {
            Ok(_) => "ok".to_string(),
            Err(failure) => failure.clone(),
        };
        let _ = write!(
            out,
            "    {{\"workload\": {}, \"allocator\": {}, \"status\": {}, \"time_s\": {}, \"time_spread\": {}, \"time_ratio\": {}, \"rss_mib\": {}, \"rss_ratio\": {}, \"user_s\": {}, \"sys_s\": {}, \"page_faults\": {}}}",
            json_str(&cell.workload),
            json_str(&cell.allocator),
            json_str(&status),
            json_num(m.map(|m| m.wall_s)),
            json_num(m.map(|m| m.wall_spread)),
            json_num(cell.time_ratio),
            json_num(m.map(|m| m.rss_mib)),
            json_num(cell.rss_ratio),
            json_num(m.map(|m| m.user_s)),
            json_num(m.map(|m| m.sys_s)),
            json_num(m.map(|m| m.faults)),
        );
        out.push_str(if i + 1 < summary.cells.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("  ],\n  \"geomeans\": [\n");
    for (i, g) in summary.geomeans.iter().enumerate() {
        let _ = write!(
            out,
            "    {{\"allocator\": {}, \"time_ratio\": {}, \"rss_ratio\": {}, \"workloads\": {}}}",
            json_str(&g.allocator),
            json_num(g.time_ratio),
            json_num(g.rss_ratio),
            g.workloads
        );
        out.push_str(if i + 1 < summary.geomeans.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("  ],\n");
    match summary.memtally_vs_system {
        Some((g, n)) => {
            let _ = writeln!(
                out,
                "  \"memtally_vs_system\": {{\"time_ratio\": {}, \"workloads\": {n}}},",
                json_num(Some(g))
            );
        }
        None => out.push_str("  \"memtally_vs_system\": null,\n"),
    }
    out.push_str("  \"runs\": [\n");
    for (i, run) in runs.iter().enumerate() {
        let _ = write!(
            out,
            "    {{\"workload\": {}, \"allocator\": {}, \"rep\": {}, \"status\": {}, \"wall_s\": {}, \"user_s\": {}, \"sys_s\": {}, \"max_rss_kib\": {}, \"minor_faults\": {}, \"major_faults\": {}}}",
            json_str(&run.workload),
            json_str(&run.allocator),
            run.rep,
            json_str(&run.outcome.describe()),
            json_num(Some(run.wall_s)),
            json_num(Some(run.user_s)),
            json_num(Some(run.sys_s)),
            run.max_rss_kib,
            run.minor_faults,
            run.major_faults
        );
        out.push_str(if i + 1 < runs.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn json_num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.6}"),
        _ => "null".to_string(),
    }
}

fn json_str(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{
        Outcome, Run, geomean, median, render_csv, render_json, render_layouts, render_table,
        summarize,
    };

    fn run(workload: &str, allocator: &str, rep: usize, wall_s: f64, rss_mib: u64) -> Run {
        Run {
            workload: workload.to_string(),
            allocator: allocator.to_string(),
            rep,
            outcome: Outcome::Success,
            wall_s,
            user_s: wall_s,
            sys_s: 0.0,
            max_rss_kib: rss_mib * 1024,
            minor_faults: 10,
            major_faults: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn median_and_geomean_on_fixed_input() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert!(close(geomean(&[2.0, 8.0]).unwrap(), 4.0));
        assert!(close(geomean(&[0.5, 2.0]).unwrap(), 1.0));
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }

    #[test]
    fn ratios_are_medians_over_the_baseline_and_geomeans_combine_them() {
        let runs = vec![
            // Workload a: memtally median 2.0 (reps 1, 2, 9), mimalloc median 1.0, system 4.0.
            run("a", "memtally", 0, 1.0, 20),
            run("a", "memtally", 1, 2.0, 30),
            run("a", "memtally", 2, 9.0, 40),
            run("a", "mimalloc", 0, 1.0, 10),
            run("a", "system", 0, 4.0, 10),
            // Workload b: memtally 1.0 vs mimalloc 2.0 vs system 1.0.
            run("b", "memtally", 0, 1.0, 10),
            run("b", "mimalloc", 0, 2.0, 20),
            run("b", "system", 0, 1.0, 40),
        ];
        let s = summarize(
            &["a", "b"],
            &["memtally", "system", "mimalloc"],
            "mimalloc",
            &runs,
        );
        assert_eq!(s.cells.len(), 6);
        let a_mt = &s.cells[0];
        assert_eq!(a_mt.result.as_ref().unwrap().wall_s, 2.0);
        assert_eq!(a_mt.result.as_ref().unwrap().rss_mib, 30.0);
        assert_eq!(a_mt.result.as_ref().unwrap().wall_spread, 4.0);
        assert_eq!(a_mt.time_ratio, Some(2.0));
        assert_eq!(a_mt.rss_ratio, Some(3.0));
        // memtally: time ratios 2.0 and 0.5 -> 1.0; RSS ratios 3.0 and 0.5 -> sqrt(1.5).
        let g = &s.geomeans[0];
        assert_eq!(g.allocator, "memtally");
        assert!(close(g.time_ratio.unwrap(), 1.0));
        assert!(close(g.rss_ratio.unwrap(), 1.5f64.sqrt()));
        assert_eq!(g.workloads, 2);
        // The baseline's own ratios are exactly 1.
        assert!(close(s.geomeans[2].time_ratio.unwrap(), 1.0));
        // memtally / system: 2.0/4.0 and 1.0/1.0 -> sqrt(0.5).
        let (vs, n) = s.memtally_vs_system.unwrap();
        assert!(close(vs, 0.5f64.sqrt()));
        assert_eq!(n, 2);
        assert_eq!(s.failures, 0);
        let table = render_table(&s);
        assert!(table.contains("| a        | memtally  |"), "{table}");
        assert!(table.contains("2.000"));
        assert!(table.contains("400%"));
        assert!(table.contains("memtally vs system: geomean time ratio 0.707 over 2 workloads"));
        // Every table line has the same width, so the columns line up.
        let first_table: Vec<&str> = table.lines().take_while(|l| !l.is_empty()).collect();
        assert!(first_table.iter().all(|l| l.len() == first_table[0].len()));
    }

    #[test]
    fn layout_ratios_pair_each_layout_with_its_own_baseline() {
        let runs = vec![
            // Layout 0: memtally 1.1 over unchecked 1.0; layout 1: 2.2 over 2.0
            // on workload a, so 1.1 in both.
            run("a", "memtally", 0, 1.1, 5),
            run("a", "unchecked", 0, 1.0, 5),
            run("a", "memtally@1", 0, 2.2, 5),
            run("a", "unchecked@1", 0, 2.0, 5),
            // Workload b: 0.9 in layout 0 and 1.6 in layout 1 (geomean 1.2).
            run("b", "memtally", 0, 0.9, 5),
            run("b", "unchecked", 0, 1.0, 5),
            run("b", "memtally@1", 0, 1.6, 5),
            run("b", "unchecked@1", 0, 1.0, 5),
            // mimalloc is one build, the baseline of every layout below.
            run("a", "mimalloc", 0, 1.0, 5),
            run("b", "mimalloc", 0, 1.0, 5),
        ];
        let table = render_layouts(
            &["a", "b"],
            &["memtally", "unchecked"],
            "unchecked",
            2,
            &runs,
        );
        assert!(table.contains("memtally / unchecked"), "{table}");
        assert!(!table.contains("unchecked / unchecked"), "{table}");
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("| {name} ")))
                .unwrap_or_else(|| panic!("no row {name} in {table}"))
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .skip(1)
                .map(|c| c.parse::<f64>().unwrap())
                .collect::<Vec<f64>>()
        };
        assert_eq!(row("a"), [1.1, 1.1, 1.1]);
        assert_eq!(row("b"), [0.9, 1.6, 1.2]);
        let g = row("geomean");
        assert!((g[0] - (1.1f64 * 0.9).sqrt()).abs() < 1e-3);
        assert!((g[1] - (1.1f64 * 1.6).sqrt()).abs() < 1e-3);
        assert!((g[2] - (1.1f64 * 1.2).sqrt()).abs() < 1e-3);
        // A baseline outside memtally's builds serves every layout.
        let table = render_layouts(&["a"], &["memtally", "unchecked"], "mimalloc", 2, &runs);
        assert!(table.contains("memtally / mimalloc") && table.contains("unchecked / mimalloc"));
        assert!(
            table.contains("| a        |    1.100 |    2.200 |"),
            "{table}"
        );
    }

    #[test]
    fn failed_runs_are_reported_not_dropped() {
        let mut crashed = run("a", "memtally", 1, 0.1, 5);
        crashed.outcome = Outcome::Signal(11);
        let runs = vec![
            run("a", "memtally", 0, 1.0, 5),
            crashed,
            run("a", "mimalloc", 0, 1.0, 5),
            run("a", "mimalloc", 1, 1.0, 5),
        ];
        let s = summarize(&["a"], &["memtally", "mimalloc"], "mimalloc", &runs);
        assert_eq!(s.failures, 1);
        assert_eq!(
            s.cells[0].result,
            Err("FAILED (signal 11, 1/2 reps)".to_string())
        );
        assert_eq!(s.cells[0].time_ratio, None);
        assert_eq!(s.geomeans[0].time_ratio, None);
        assert_eq!(s.geomeans[0].workloads, 0);
        assert!(render_table(&s).contains("FAILED (signal 11, 1/2 reps)"));
        assert!(render_csv(&s).contains("a,memtally,\"FAILED (signal 11, 1/2 reps)\""));
        let json = render_json(&s, &runs);
        assert!(json.contains("\"status\": \"signal 11\""));
        assert!(json.contains("\"memtally_vs_system\": null"));
    }

    #[test]
    fn outcomes_describe_themselves() {
        assert_eq!(Outcome::Exit(3).describe(), "exit 3");
        assert_eq!(Outcome::TimedOut.describe(), "timeout");
        assert!(!Outcome::TimedOut.is_success());
    }
}
