//! The fuzz targets' seed traces (`profiler/fuzz/corpus/*/*.mtt`: real
//! recordings, and inputs the fuzzer found that are kept as regressions
//! under a `.mtt` name) run through what the targets run, on stable Rust,
//! so CI replays them: whole and cut at every 97th byte, each must decode
//! to records or a clear error and report without panicking. The
//! fuzzer's own unnamed corpus entries are left to the fuzzer.

use memtally_alloc::trace::Decoder;
use memtally_profiler::report::{self, ReportOptions};
use memtally_profiler::{Analysis, ModelOptions, Symbolizer, SymbolizerOptions};
use std::path::Path;

fn replay(data: &[u8]) -> bool {
    let mut d = Decoder::new(data);
    while let Ok(Some(_)) = d.next_record() {}
    let Ok(analysis) = Analysis::read(data, ModelOptions::default()) else {
        return false;
    };
    let mut symbolizer = Symbolizer::new(SymbolizerOptions {
        debug_dirs: Vec::new(),
        ..SymbolizerOptions::default()
    });
    let r = report::build(
        &analysis,
        &mut symbolizer,
        &ReportOptions { top: 5, frames: 5 },
    );
    report::write_text(&r, &mut std::io::sink()).unwrap();
    report::write_json(&r, &mut std::io::sink()).unwrap();
    true
}

#[test]
fn fuzz_corpus_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seeds = 0;
    for target in std::fs::read_dir(&root).unwrap() {
        for entry in std::fs::read_dir(target.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "mtt") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            seeds += 1;
            // Real recordings read whole; kept regressions need not.
            let read = replay(&data);
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("crash-")
            {
                assert!(read, "seed {} does not read", path.display());
            }
            for cut in (0..data.len()).step_by(97) {
                replay(&data[..cut]);
            }
        }
    }
    assert!(seeds >= 4, "seeds missing from {}", root.display());
}
