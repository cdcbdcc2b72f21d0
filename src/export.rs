//! `memtally export`: writes a trace's analysis as a pprof profile, folded
//! stacks or the JSON export document.

use crate::args::{ExportArgs, ExportFormat};
use crate::output;
use anyhow::{Result, anyhow};
use memtally_profiler::export::{json, pprof};
use memtally_profiler::{Analysis, Symbolizer, flame};
use std::io::Write;

/// Runs `memtally export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let default = output::beside_cwd(&args.file, args.format.extension());
    if args.format == ExportFormat::Folded {
        let (_, lines) = crate::flame::fold(&args.file, args.metric, false, None)?;
        let mut out = output::open(args.output.as_deref(), Some(default))?;
        flame::write_folded(&lines, &mut out.writer)?;
        return finish(out, &format!("{} folded stacks", lines.len()));
    }
    if args.format == ExportFormat::TorchSnapshot {
        let device = args.device.unwrap_or(0);
        let default = output::beside_cwd(&args.file, &format!("dev{device}.pickle"));
        return torch_snapshot(args, device, default);
    }
    if args.format == ExportFormat::RmmCsv {
        let default = match args.device {
            Some(memtally_alloc::trace::device::HOST) => {
                output::beside_cwd(&args.file, "host.rmm.csv")
            }
            Some(n) => output::beside_cwd(&args.file, &format!("dev{n}.rmm.csv")),
            None => default,
        };
        return rmm_csv(args, default);
    }
    let analysis = Analysis::open(&args.file).map_err(crate::output::named(&args.file))?;
    crate::output::warn_ending(&args.file, &analysis.ending, true);
    let mut symbolizer = Symbolizer::default();
    let mut out = output::open(args.output.as_deref(), Some(default))?;
    let sites = analysis.model.sites().count();
    match args.format {
        ExportFormat::Pprof => {
            pprof::write_pprof(&analysis.model, &mut symbolizer, &mut out.writer)?
        }
        ExportFormat::Json => {
            json::write(&json::build(&analysis, &mut symbolizer), &mut out.writer)?
        }
        ExportFormat::Folded | ExportFormat::RmmCsv | ExportFormat::TorchSnapshot => {
            unreachable!("written above")
        }
    }
    let what = match args.format {
        ExportFormat::Pprof => "pprof profile",
        _ => "JSON export",
    };
    finish(out, &format!("{what} of {sites} sites"))
}

/// Every allocation and free as a RAPIDS RMM log.
fn rmm_csv(args: &ExportArgs, default: std::path::PathBuf) -> Result<()> {
    let recorded = match args.device {
        Some(device) => memtally_profiler::replay::read_device(&args.file, device),
        None => memtally_profiler::replay::read(&args.file),
    }
    .map_err(crate::output::named(&args.file))?;
    let analysis = recorded
        .analysis
        .ok_or_else(|| anyhow!("{} is an RMM log already", args.file.display()))?;
    crate::output::warn_ending(&args.file, &analysis.ending, true);
    let model = &analysis.model;
    let start = model.header().map_or(0, |h| h.start_realtime_ns);
    let tids: std::collections::HashMap<u64, u64> = model
        .threads()
        .map(|t| (t.info.thread, t.info.os_tid))
        .collect();
    let mut out = output::open(args.output.as_deref(), Some(default))?;
    memtally_profiler::replay::rmm::write(
        &recorded.ops,
        |ticks| start + model.since_start_ns(ticks),
        |t| tids.get(&t).copied().filter(|&x| x != 0).unwrap_or(t),
        &mut out.writer,
    )?;
    finish(
        out,
        &format!("RMM log of {} operations", recorded.ops.len()),
    )
}

/// A device's memory as a PyTorch memory snapshot.
fn torch_snapshot(args: &ExportArgs, device: u32, default: std::path::PathBuf) -> Result<()> {
    let recorded = memtally_profiler::replay::read_device(&args.file, device)
        .map_err(crate::output::named(&args.file))?;
    let analysis = recorded
        .analysis
        .ok_or_else(|| anyhow!("{} is not a memtally trace", args.file.display()))?;
    crate::output::warn_ending(&args.file, &analysis.ending, true);
    let mut symbolizer = Symbolizer::default();
    let snapshot = memtally_profiler::export::torch::snapshot(
        &analysis.model,
        &mut symbolizer,
        &recorded.ops,
        device,
    );
    let mut out = output::open(args.output.as_deref(), Some(default))?;
    memtally_profiler::export::pickle::write(&snapshot, &mut out.writer)?;
    finish(
        out,
        &format!(
            "PyTorch memory snapshot of device {device} ({} operations)",
            recorded.ops.len()
        ),
    )
}

fn finish(mut out: output::Output, what: &str) -> Result<()> {
    out.writer.flush()?;
    if let Some(path) = out.path {
        eprintln!("memtally: {what} written to {}", path.display());
    }
    Ok(())
}
