//! `memtally report`: reads a trace with the profiler and prints its report
//! as text or JSON on standard output.

use crate::args::ReportArgs;
use anyhow::Result;
use memtally_profiler::report::{self, ReportOptions};
use memtally_profiler::{Analysis, Symbolizer};
use std::io::{self, BufWriter, Write};

/// Runs `memtally report`.
pub fn run(args: &ReportArgs) -> Result<()> {
    let analysis = Analysis::open(&args.file).map_err(crate::output::named(&args.file))?;
    crate::output::warn_ending(&args.file, &analysis.ending, false);
    let mut symbolizer = Symbolizer::default();
    let options = ReportOptions {
        top: args.top,
        frames: args.frames,
    };
    let r = report::build(&analysis, &mut symbolizer, &options);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        report::write_json(&r, &mut out)?;
    } else {
        let view = if args.by_scope {
            report::TextView::Scopes
        } else {
            report::TextView::Full
        };
        out.write_all(report::render_text_view(&r, view).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}
