//! One module's file opened for symbolisation: its build id checked against
//! the trace's, its DWARF (from the file itself or from a separate debug
//! file) behind an `addr2line` context, and its symbol table as a fallback
//! for code without debug information.
//!
//! Everything needed is copied out of the file when it is opened, so the
//! file's bytes are not kept.

use super::demangle::demangle;
use addr2line::Context;
use gimli::{EndianRcSlice, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

type Reader = EndianRcSlice<RunTimeEndian>;

/// Why a module's file cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// The file could not be read (missing, unreadable).
    Unreadable(String),
    /// The file is not an object file this reader understands.
    NotObject(String),
    /// The file is not the one the program ran: its build id differs.
    BuildIdMismatch {
        /// The build id in the trace, in hex.
        expected: String,
        /// The file's build id, in hex (empty when it has none).
        found: String,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileProblem::Unreadable(e) => write!(f, "cannot read it: {e}"),
            FileProblem::NotObject(e) => write!(f, "not an object file: {e}"),
            FileProblem::BuildIdMismatch { expected, found } if found.is_empty() => write!(
                f,
                "it has no build id but the program's had build id {expected}"
            ),
            FileProblem::BuildIdMismatch { expected, found } => write!(
                f,
                "build id {found} differs from the program's {expected} (the file changed since)"
            ),
        }
    }
}

/// A source position found for an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundFrame {
    /// The demangled function name.
    pub function: Option<String>,
    /// The source file.
    pub file: Option<String>,
    /// The line.
    pub line: Option<u32>,
    /// The column.
    pub column: Option<u32>,
}

/// A module's file, ready for lookups.
pub struct ObjectFile {
    /// DWARF, if the file or a debug file has any.
    dwarf: Option<Context<Reader>>,
    /// Function symbols as `(start, size, name)`, sorted by start.
    symbols: Vec<(u64, u64, String)>,
}

impl fmt::Debug for ObjectFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectFile")
            .field("dwarf", &self.dwarf.is_some())
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The contents of `path` if it is a regular file: a module path in a
/// damaged or crafted trace may name `/dev/zero` or a FIFO, which would
/// never end.
fn read_regular(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let meta = std::fs::metadata(path).map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(FileProblem::Unreadable("not a regular file".into()));
    }
    std::fs::read(path).map_err(|e| FileProblem::Unreadable(e.to_string()))
}

impl ObjectFile {
    /// Opens `path`, which must have build id `build_id` unless that is
    /// empty (the trace did not know it). `debug_dirs` are searched for
    /// separate debug files (`.build-id/xx/yyyy.debug` and debuglinks).
    pub fn open(path: &Path, build_id: &[u8], debug_dirs: &[PathBuf]) -> Result<Self, FileProblem> {
        let data = read_regular(path)?;
        let file =
            object::File::parse(&data[..]).map_err(|e| FileProblem::NotObject(e.to_string()))?;
        let found = file.build_id().ok().flatten().unwrap_or_default();
        if !build_id.is_empty() && found != build_id {
            return Err(FileProblem::BuildIdMismatch {
                expected: hex(build_id),
                found: hex(found),
            });
        }
        let mut symbols = function_symbols(&file);
        let mut dwarf = if file.section_by_name(".debug_info").is_some() {
            load_dwarf(&file)
        } else {
            None
        };
        if dwarf.is_none() {
            // A separate debug file (Debian's -dbgsym packages, for one).
            for candidate in debug_file_candidates(path, &file, found, debug_dirs) {
                let Ok(data) = read_regular(&candidate) else {
                    continue;
                };
                let Ok(debug) = object::File::parse(&data[..]) else {
                    continue;
                };
                if !found.is_empty() && debug.build_id().ok().flatten().unwrap_or_default() != found
                {
                    continue;
                }
                if symbols.is_empty() {
                    symbols = function_symbols(&debug);
                }
                dwarf = load_dwarf(&debug);
                if dwarf.is_some() {
                    break;
                }
            }
        }
        Ok(ObjectFile { dwarf, symbols })
    }

    /// The frames at file virtual address `probe`, innermost (inlined)
    /// first; empty when nothing is known about it.
    pub fn lookup(&self, probe: u64) -> Vec<FoundFrame> {
        let mut out = Vec::new();
        if let Some(ctx) = &self.dwarf
            && let Ok(mut frames) = ctx.find_frames(probe).skip_all_loads()
        {
            while let Ok(Some(frame)) = frames.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.raw_name().ok())
                    .map(|n| demangle(n.as_ref()));
                let (file, line, column) = match frame.location {
                    Some(l) => (l.file.map(str::to_owned), l.line, l.column),
                    None => (None, None, None),
                };
                out.push(FoundFrame {
                    function,
                    file,
                    line,
                    column,
                });
            }
        }
        // Without DWARF for this address, or without a function name in
        // it, the symbol table names the function.
        if out.last().is_none_or(|f| f.function.is_none())
            && let Some(name) = self.symbol(probe)
        {
            match out.last_mut() {
                Some(f) => f.function = Some(name),
                None => out.push(FoundFrame {
                    function: Some(name),
                    ..FoundFrame::default()
                }),
            }
        }
        out
    }

    /// The function symbol holding `probe`.
    fn symbol(&self, probe: u64) -> Option<String> {
        let i = self.symbols.partition_point(|s| s.0 <= probe);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        (*size == 0 || probe < start + size).then(|| demangle(name))
    }
}

/// Reads the DWARF sections of `file` into an addr2line context.
fn load_dwarf(file: &object::File<'_>) -> Option<Context<Reader>> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let data = file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[]));
        Ok(EndianRcSlice::new(Rc::from(&*data), endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    Context::from_dwarf(dwarf).ok()
}

/// The function symbols of `file`, sorted by address.
fn function_symbols(file: &object::File<'_>) -> Vec<(u64, u64, String)> {
    let mut out: Vec<(u64, u64, String)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
        .filter(|s| !s.2.is_empty())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by_key(|s| s.0);
    out
}

/// Where a separate debug file for `path` may be, most specific first.
fn debug_file_candidates(
    path: &Path,
    file: &object::File<'_>,
    build_id: &[u8],
    debug_dirs: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if build_id.len() >= 2 {
        let id = hex(build_id);
        for dir in debug_dirs {
            out.push(
                dir.join(".build-id")
                    .join(&id[..2])
                    .join(format!("{}.debug", &id[2..])),
            );
        }
    }
    if let Ok(Some((link, _crc))) = file.gnu_debuglink()
        && let Ok(link) = std::str::from_utf8(link)
    {
        let dir = path.parent().unwrap_or(Path::new("/"));
        out.push(dir.join(link));
        out.push(dir.join(".debug").join(link));
        for d in debug_dirs {
            let rel = dir.strip_prefix("/").unwrap_or(dir);
            out.push(d.join(rel).join(link));
        }
    }
    out
}
