//! Helpers shared by the test modules.

use memtally_profiler::{Analysis, Error, ModelOptions};

/// Analyses trace bytes with default options, panicking on errors.
pub fn analyse(bytes: &[u8]) -> Analysis {
    try_analyse(bytes).unwrap_or_else(|e| panic!("analysis failed: {e}"))
}

/// Analyses trace bytes with default options.
pub fn try_analyse(bytes: &[u8]) -> Result<Analysis, Error> {
    Analysis::read(bytes, ModelOptions::default())
}
