//! `memtally replay`: a trace's allocations run again through models of
//! embedded allocators, as a table (best first) or JSON.

use crate::args::ReplayArgs;
use anyhow::{Result, anyhow, bail};
use memtally_profiler::replay::{self, ModelReport};
use memtally_profiler::report::{text_bytes, text_count, text_ns};
use memtally_profiler::{ErrorKind, Symbolizer};
use serde::Serialize;
use std::io::{self, BufWriter, Write};

#[derive(Serialize)]
struct Document<'a> {
    trace: String,
    operations: u64,
    arena: Option<u64>,
    align: u64,
    header: u64,
    models: &'a [ModelReport],
    /// For each model's first failure: when and where, for people.
    failures: Vec<Option<String>>,
}

/// Runs `memtally replay`.
pub fn run(args: &ReplayArgs) -> Result<()> {
    let recorded = replay::read(&args.file).map_err(|e| match e.kind() {
        ErrorKind::Open { .. } => anyhow!(e),
        _ => anyhow!("{}: {e}", args.file.display()),
    })?;
    crate::output::warn_ending(&args.file, &recorded.analysis.ending, true);
    let model = &recorded.analysis.model;
    if model.is_estimate() {
        bail!(
            "{} was recorded in sampled mode: it holds a sample of the allocations, which cannot be replayed (record with --mode full)",
            args.file.display()
        );
    }
    if let Some(arena) = args.config.arena
        && arena < args.config.align.max(8) + args.config.header
    {
        bail!(
            "--arena {arena} is smaller than one block ({} bytes with its header)",
            args.config.align.max(8) + args.config.header
        );
    }
    let reports = replay::compare(&args.models, &args.config, &recorded.ops);
    let mut symbolizer = Symbolizer::default();
    let failures: Vec<Option<String>> = reports
        .iter()
        .map(|r| {
            r.outcome.failure.map(|f| {
                format!(
                    "{} at {}: {} asked for by {}, with {} free (largest block {})",
                    if f.free_bytes >= f.size {
                        "fragmentation"
                    } else {
                        "exhaustion"
                    },
                    text_ns(model.since_start_ns(f.ticks)),
                    text_bytes(f.size),
                    replay::describe_stack(model, &mut symbolizer, f.stack),
                    text_bytes(f.free_bytes),
                    text_bytes(f.largest_free)
                )
            })
        })
        .collect();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let doc = Document {
            trace: args.file.display().to_string(),
            operations: recorded.ops.len() as u64,
            arena: args.config.arena,
            align: args.config.align,
            header: args.config.header,
            models: &reports,
            failures,
        };
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    writeln!(
        out,
        "memtally replay: {}: {} operations through {} {}, best first",
        args.file.display(),
        text_count(recorded.ops.len() as u64),
        reports.len(),
        if reports.len() == 1 {
            "model"
        } else {
            "models"
        }
    )?;
    match args.config.arena {
        Some(a) => writeln!(
            out,
            "arena {} ({} bytes), blocks aligned to {}, {} bytes of header",
            text_bytes(a),
            a,
            args.config.align,
            args.config.header
        )?,
        None => writeln!(
            out,
            "each model at the smallest arena it fits; blocks aligned to {}, {} bytes of header",
            args.config.align, args.config.header
        )?,
    }
    let heads = [
        "model",
        "fits",
        "smallest arena",
        "peak",
        "J&W #4",
        "frag max",
        "frag mean",
        "steps mean",
        "p99",
        "max",
        "ns mean",
        "p99",
        "max",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let o = &r.outcome;
            vec![
                o.model.clone(),
                match &o.failure {
                    None => "yes".into(),
                    Some(f) => format!("no: op {}", text_count(f.index)),
                },
                r.smallest_arena.map_or("none".into(), text_bytes),
                text_bytes(o.peak_footprint),
                format!("{:.2}", o.jw4),
                format!("{:.1}%", o.frag_max * 100.0),
                format!("{:.1}%", o.frag_mean * 100.0),
                format!("{:.1}", o.steps_mean),
                o.steps_p99.to_string(),
                o.steps_max.to_string(),
                format!("{:.0}", o.ns_mean),
                o.ns_p99.to_string(),
                o.ns_max.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([heads[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(heads.iter().map(|h| h.to_string()).collect::<Vec<_>>()).chain(rows)
    {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i < 2 {
                line.push_str(&format!("  {c:<w$}"));
            } else {
                line.push_str(&format!("  {c:>w$}"));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    for (r, f) in reports.iter().zip(&failures) {
        if let Some(f) = f {
            writeln!(out, "{}: first failure by {f}", r.outcome.model)?;
        }
    }
    if let Some(r) = reports.first()
        && (r.outcome.unknown_frees > 0 || r.outcome.leaked_blocks > 0)
    {
        writeln!(
            out,
            "note: {} frees of addresses not allocated in the trace were skipped; {} blocks were never freed",
            text_count(r.outcome.unknown_frees),
            text_count(r.outcome.leaked_blocks)
        )?;
    }
    writeln!(
        out,
        "steps: free-list nodes visited, bitmap searches, list insertions and removals, splits, merges, words copied by realloc; ns p99/max over every 16th operation"
    )?;
    out.flush()?;
    Ok(())
}
