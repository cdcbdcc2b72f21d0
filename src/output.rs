//! Where a subcommand's output goes: a file (named by `-o` or after the
//! trace), or standard output for `-o -`.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A profiler error about reading `file`, as one line that names the file
/// (an open error names it already).
pub fn named(file: &Path) -> impl Fn(memtally_profiler::Error) -> anyhow::Error + Copy + '_ {
    move |e| match e.kind() {
        memtally_profiler::ErrorKind::Open { .. } => anyhow::anyhow!(e),
        _ => anyhow::anyhow!("{}: {e}", file.display()),
    }
}

/// An opened output.
pub struct Output {
    /// Where to write.
    pub writer: Box<dyn Write>,
    /// The file written, to say where it went (None for stdout).
    pub path: Option<PathBuf>,
}

/// Opens `explicit` (`-` is standard output), else `default` (None is
/// standard output).
pub fn open(explicit: Option<&Path>, default: Option<PathBuf>) -> Result<Output> {
    let path = match explicit {
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p.to_owned()),
        None => default,
    };
    Ok(match path {
        None => Output {
            writer: Box::new(BufWriter::new(io::stdout().lock())),
            path: None,
        },
        Some(p) => {
            let f = File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
            Output {
                writer: Box::new(BufWriter::new(f)),
                path: Some(p),
            }
        }
    })
}

/// `STEM.EXTENSION` in the current directory, STEM being the trace's file
/// name without its extension.
pub fn beside_cwd(trace: &Path, extension: &str) -> PathBuf {
    let stem = trace
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    PathBuf::from(format!("{stem}.{extension}"))
}

/// Says on stderr, in one line, how `file` ended when a reader must know
/// (cut short, damaged): views that write a picture or a file carry no
/// notes of their own, so they always say it (`always`); reports say it
/// in their notes, so they add the line only for damage, which is bad
/// input the user must hear about.
pub fn warn_ending(file: &Path, ending: &memtally_profiler::Ending, always: bool) {
    let damaged = matches!(ending, memtally_profiler::Ending::Damaged { .. });
    if let Some(w) = ending.warning()
        && (always || damaged)
    {
        eprintln!("memtally: note: {} {w}", file.display());
    }
}
