//! `memtally errors`: reads a trace and prints its memory errors, grouped,
//! as text or JSON; with `--fail`, exits 1 when there is one, for CI.

use crate::args::ErrorsArgs;
use anyhow::Result;
use memtally_profiler::errors;
use memtally_profiler::{Analysis, Symbolizer};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// Runs `memtally errors`.
pub fn run(args: &ErrorsArgs) -> Result<ExitCode> {
    let analysis = Analysis::open(&args.file).map_err(crate::output::named(&args.file))?;
    crate::output::warn_ending(&args.file, &analysis.ending, false);
    let mut symbolizer = Symbolizer::default();
    let r = errors::build(&analysis, &mut symbolizer, args.frames);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        errors::write_json(&r, &mut out)?;
    } else {
        out.write_all(errors::render_text(&r).as_bytes())?;
    }
    out.flush()?;
    Ok(if args.fail && r.total > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
