//! `memtally export`: writes a trace's analysis as a pprof profile, folded
//! stacks or the JSON export document.

use crate::args::{ExportArgs, ExportFormat};
use crate::output;
use anyhow::{Result, anyhow};
use memtally_profiler::export::{json, pprof};
use memtally_profiler::{Analysis, ErrorKind, Symbolizer, flame};
use std::io::Write;

/// Runs `memtally export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let default = output::beside_cwd(&args.file, args.format.extension());
    if args.format == ExportFormat::Folded {
        let (_, lines) = crate::flame::fold(&args.file, args.metric, false)?;
        let mut out = output::open(args.output.as_deref(), Some(default))?;
        flame::write_folded(&lines, &mut out.writer)?;
        return finish(out, &format!("{} folded stacks", lines.len()));
    }
    let analysis = Analysis::open(&args.file).map_err(|e| match e.kind() {
        // The message names the file already.
        ErrorKind::Open { .. } => anyhow!(e),
        _ => anyhow!("{}: {e}", args.file.display()),
    })?;
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
        ExportFormat::Folded => unreachable!("written above"),
    }
    let what = match args.format {
        ExportFormat::Pprof => "pprof profile",
        _ => "JSON export",
    };
    finish(out, &format!("{what} of {sites} sites"))
}

fn finish(mut out: output::Output, what: &str) -> Result<()> {
    out.writer.flush()?;
    if let Some(path) = out.path {
        eprintln!("memtally: {what} written to {}", path.display());
    }
    Ok(())
}
