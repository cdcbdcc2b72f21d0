//! What `memtally report` does with a file, on arbitrary bytes: read it
//! into the model (two threads), build the report and render it as text
//! and JSON. Module paths in a fuzzed trace are arbitrary: symbolisation
//! may open any regular file they name, and must reject the rest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memtally_profiler::report::{self, ReportOptions};
use memtally_profiler::{Analysis, ModelOptions, Symbolizer, SymbolizerOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(analysis) = Analysis::read(data, ModelOptions::default()) else {
        return;
    };
    let mut symbolizer = Symbolizer::new(SymbolizerOptions {
        debug_dirs: Vec::new(),
        ..SymbolizerOptions::default()
    });
    let options = ReportOptions { top: 5, frames: 5 };
    let r = report::build(&analysis, &mut symbolizer, &options);
    let _ = report::write_text(&r, &mut std::io::sink());
    let _ = report::write_json(&r, &mut std::io::sink());
});
