//! `memtally leaks`: reads a trace and prints what it never freed, by
//! allocation stack, as text or JSON; with `--fail`, exits 1 while leaks
//! remain (direct leaks, when the trace has a leak scan), for CI.

use crate::args::LeaksArgs;
use anyhow::{Context, Result, anyhow};
use memtally_profiler::leaks::{self, LeakOptions};
use memtally_profiler::suppress::Suppressions;
use memtally_profiler::{Analysis, ModelOptions, Symbolizer};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// Runs `memtally leaks`.
pub fn run(args: &LeaksArgs) -> Result<ExitCode> {
    let suppressions = match &args.suppressions {
        None => Suppressions::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Suppressions::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
    };
    let model_options = ModelOptions {
        site_details: args.growth,
        ..ModelOptions::default()
    };
    let analysis =
        Analysis::open_with(&args.file, model_options).map_err(crate::output::named(&args.file))?;
    crate::output::warn_ending(&args.file, &analysis.ending, false);
    let mut symbolizer = Symbolizer::default();
    let options = LeakOptions {
        frames: args.frames,
        suppressions,
        growth: args.growth,
        by_scope: args.by_scope,
    };
    let r = leaks::build(&analysis, &mut symbolizer, &options);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        leaks::write_json(&r, &mut out)?;
    } else {
        out.write_all(leaks::render_text(&r).as_bytes())?;
    }
    out.flush()?;
    // With a leak scan, only direct leaks fail the run (LeakSanitizer's
    // rule: indirect ones go with them, reachable ones are not leaks).
    let failing = match &r.classes {
        Some(c) => c.direct.blocks,
        None => r.leaked_blocks,
    } + r.device_leaked_blocks;
    Ok(if args.fail && failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
