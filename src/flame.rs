//! `memtally flame`: reads a trace (two with `--diff`) and draws its sites
//! as a flamegraph SVG, or writes their folded stacks.

use crate::args::FlameArgs;
use crate::output::{self, Output};
use anyhow::{Result, bail};
use memtally_profiler::flame::{self, Folded, Metric, Titles};
use memtally_profiler::{Analysis, ModelOptions, Symbolizer};
use std::io::Write;
use std::path::Path;

/// Runs `memtally flame`.
pub fn run(args: &FlameArgs) -> Result<()> {
    let (analysis, lines) = fold(&args.file, args.metric, args.by_scope, args.device)?;
    let titles = titles(&analysis, args);
    let mut out = output(args)?;
    if args.folded {
        flame::write_folded(&lines, &mut out.writer)?;
    } else if let Some(base) = &args.diff {
        let (_, base_lines) = fold(base, args.metric, args.by_scope, args.device)?;
        flame::write_diff_svg(&base_lines, &lines, args.metric, &titles, &mut out.writer)?;
    } else {
        flame::write_svg(&lines, args.metric, &titles, &mut out.writer)?;
    }
    out.writer.flush()?;
    if let Some(path) = out.path {
        eprintln!(
            "memtally: flamegraph of {} written to {} ({} stacks)",
            args.metric.title(),
            path.display(),
            lines.len()
        );
    }
    Ok(())
}

/// Reads `file` (up to the moment of a `live-at` metric) and folds its
/// sites (the heap's, or a device's).
pub(crate) fn fold(
    file: &Path,
    metric: Metric,
    by_scope: bool,
    device: Option<u32>,
) -> Result<(Analysis, Vec<Folded>)> {
    let named = crate::output::named(file);
    let mut options = ModelOptions::default();
    if let Metric::LiveAt(ns) = metric {
        let clock = memtally_profiler::read_clock(file).map_err(named)?;
        let Some(start) = clock.first_ticks() else {
            bail!(
                "{}: the trace has no clock records, so live-at cannot find a time in it",
                file.display()
            );
        };
        options.until_ticks = Some(clock.ticks_at_ns(clock.to_ns(start) + ns));
    }
    let analysis = Analysis::open_with(file, options).map_err(named)?;
    crate::output::warn_ending(file, &analysis.ending, true);
    if let Metric::LiveAt(ns) = metric {
        let model = &analysis.model;
        let length = model.since_start_ns(model.end_ticks());
        if ns > length {
            eprintln!(
                "memtally: note: {} ends at {}, before {}: drawing what was live at its end",
                file.display(),
                memtally_profiler::report::text_ns(length),
                memtally_profiler::report::text_ns(ns)
            );
        }
    }
    let mut symbolizer = Symbolizer::default();
    let lines = if let Some(device) = device {
        if analysis.model.device().is_empty() {
            bail!(
                "{} has no device memory (the program made no call the gpu-shim intercepts)",
                file.display()
            );
        }
        flame::folded_device(&analysis.model, &mut symbolizer, metric, device)
    } else if by_scope {
        flame::folded_by_scope(&analysis.model, &mut symbolizer, metric)
    } else {
        flame::folded(&analysis.model, &mut symbolizer, metric)
    };
    Ok((analysis, lines))
}

fn titles(analysis: &Analysis, args: &FlameArgs) -> Titles {
    let model = &analysis.model;
    let program = model
        .header()
        .map(|h| h.argv.join(" "))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "?".into());
    let estimate = if model.is_estimate() {
        ", sampled: estimates"
    } else {
        ""
    };
    let title = match &args.diff {
        Some(base) => format!(
            "memtally: {}, from {} to {}",
            args.metric.title(),
            base.display(),
            args.file.display()
        ),
        None => format!("memtally: {}", args.metric.title()),
    };
    let title = match args.device {
        Some(memtally_alloc::trace::device::HOST) => format!("{title}, pinned host memory"),
        Some(n) => format!("{title}, device {n}"),
        None => title,
    };
    Titles {
        title,
        subtitle: format!(
            "{program}  ({}, {}{estimate})",
            args.file.display(),
            memtally_profiler::report::text_ns(model.since_start_ns(model.end_ticks()))
        ),
    }
}

fn output(args: &FlameArgs) -> Result<Output> {
    let device = match args.device {
        Some(memtally_alloc::trace::device::HOST) => "host.".to_owned(),
        Some(n) => format!("dev{n}."),
        None => String::new(),
    };
    let default = (!args.folded)
        .then(|| output::beside_cwd(&args.file, &format!("{device}{}.svg", args.metric.name())));
    output::open(args.output.as_deref(), default)
}
