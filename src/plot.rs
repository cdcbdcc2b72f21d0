//! `memtally plot`: reads a trace twice (once to rank the sites, once to
//! follow the chosen ones over time) and draws its timeline as an SVG.

use crate::args::PlotArgs;
use crate::output;
use anyhow::Result;
use memtally_profiler::{Analysis, Model, ModelOptions, Symbolizer, plot};
use std::io::Write;

/// Runs `memtally plot`.
pub fn run(args: &PlotArgs) -> Result<()> {
    let named = crate::output::named(&args.file);
    let first = Analysis::open(&args.file).map_err(named)?;
    crate::output::warn_ending(&args.file, &first.ending, true);
    let mut symbolizer = Symbolizer::default();
    let groups = plot::choose(&first.model, &mut symbolizer, args.top);
    drop(first);
    let mut model = Model::new(ModelOptions::default());
    model.track_groups(&plot::group_stacks(&groups));
    let second = Analysis::open_into(&args.file, model).map_err(named)?;
    let title =
        "memtally: heap over time, by the functions holding the most at its peak".to_owned();
    let timeline = plot::build(&second.model, &groups, 800, title);
    let default = output::beside_cwd(&args.file, "timeline.svg");
    let mut out = output::open(args.output.as_deref(), Some(default))?;
    plot::write_svg(&timeline, &mut out.writer)?;
    out.writer.flush()?;
    if let Some(path) = out.path {
        eprintln!(
            "memtally: timeline written to {} ({} functions stacked, {} markers)",
            path.display(),
            groups.len(),
            timeline.markers.len()
        );
    }
    Ok(())
}
