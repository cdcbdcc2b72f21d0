//! One module's file opened for symbolisation: its build id checked against
//! the trace's, its DWARF (from the file itself or from a separate debug
//! file) behind an `addr2line` context, and its symbol table as a fallback
//! for code without debug information.
//!
//! The file is mapped, not read: uncompressed DWARF sections are read in
//! place (only the pages a lookup touches become resident) and compressed
//! ones are inflated once into buffers of their own. Sections addr2line
//! never reads (location lists, type units) are not loaded at all. The
//! symbol table is copied out, so a file without DWARF is unmapped at once.

use super::demangle::demangle;
use super::dwarf_units::{Dwarf, Reader};
use gimli::{EndianReader, RunTimeEndian};
use memmap2::Mmap;
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The bytes of one DWARF section: a range of the mapped file, or the
/// inflated contents of a compressed section. Cloning shares them.
#[derive(Clone, Debug)]
pub(super) enum SectionBytes {
    /// `len` bytes at `start` of the mapping.
    Mapped {
        map: Rc<Mmap>,
        start: usize,
        len: usize,
    },
    /// A buffer of its own (a decompressed section, or an absent one).
    Owned(Rc<Vec<u8>>),
}

impl Deref for SectionBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SectionBytes::Mapped { map, start, len } => &map[*start..*start + *len],
            SectionBytes::Owned(v) => v,
        }
    }
}

// SAFETY: the bytes live in an `Rc`-owned mapping or vector that is never
// resized or remapped, so the slice a `SectionBytes` derefs to stays at the
// same address while it (or any clone, which shares the `Rc`) lives.
unsafe impl stable_deref_trait::StableDeref for SectionBytes {}
// SAFETY: a clone shares the same `Rc`, hence derefs to the same bytes.
unsafe impl stable_deref_trait::CloneStableDeref for SectionBytes {}

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
    dwarf: Option<Dwarf>,
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

/// `path` mapped read-only if it is a regular file: a module path in a
/// damaged or crafted trace may name `/dev/zero` or a FIFO, which would
/// never end.
pub(crate) fn map_regular(path: &Path) -> Result<Rc<Mmap>, FileProblem> {
    let file = std::fs::File::open(path).map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(FileProblem::Unreadable("not a regular file".into()));
    }
    // SAFETY: the mapping is private and read-only. Were the file truncated
    // by another process while mapped, reading past its new end would fault;
    // installed libraries and debug files are replaced by rename, not
    // rewritten in place, so that is not a case this tool defends against
    // (addr2line, perf and gdb map them the same way).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    Ok(Rc::new(map))
}

impl ObjectFile {
    /// Opens `path`, which must have build id `build_id` unless that is
    /// empty (the trace did not know it). `debug_dirs` are searched for
    /// separate debug files (`.build-id/xx/yyyy.debug` and debuglinks).
    pub fn open(path: &Path, build_id: &[u8], debug_dirs: &[PathBuf]) -> Result<Self, FileProblem> {
        let data = map_regular(path)?;
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
            load_dwarf(&file, &data)
        } else {
            None
        };
        if dwarf.is_none() {
            // A separate debug file (Debian's -dbgsym packages, for one).
            for candidate in debug_file_candidates(path, &file, found, debug_dirs) {
                let Ok(data) = map_regular(&candidate) else {
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
                dwarf = load_dwarf(&debug, &data);
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
        if let Some(dwarf) = &self.dwarf {
            dwarf.with_context(probe, |ctx| frames_at(ctx, probe, &mut out));
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
        symbol_at(&self.symbols, probe).map(|(_, name)| demangle(name))
    }
}

/// Appends the frames `ctx` knows at `probe`, innermost first.
fn frames_at(ctx: &addr2line::Context<Reader>, probe: u64, out: &mut Vec<FoundFrame>) {
    let Ok(mut frames) = ctx.find_frames(probe).skip_all_loads() else {
        return;
    };
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

/// The DWARF sections of `file` (parsed from `map`), indexed for lookups.
fn load_dwarf(file: &object::File<'_>, map: &Rc<Mmap>) -> Option<Dwarf> {
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let base = map.as_ptr() as usize;
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        // Locations and type units answer no question addr2line asks.
        let wanted = !matches!(
            id,
            gimli::SectionId::DebugLoc
                | gimli::SectionId::DebugLocLists
                | gimli::SectionId::DebugTypes
        );
        let data = file
            .section_by_name(id.name())
            .filter(|_| wanted)
            .and_then(|s| s.uncompressed_data().ok());
        let bytes = match data {
            Some(Cow::Borrowed(slice)) => SectionBytes::Mapped {
                map: Rc::clone(map),
                start: slice.as_ptr() as usize - base,
                len: slice.len(),
            },
            Some(Cow::Owned(vec)) => SectionBytes::Owned(Rc::new(vec)),
            None => SectionBytes::Owned(Rc::new(Vec::new())),
        };
        Ok(EndianReader::new(bytes, endian))
    };
    Dwarf::new(gimli::DwarfSections::load(load).ok()?)
}

/// The function symbols of `file`, sorted by address.
/// The file's function symbols as `(start, size, name)`, sorted by start
/// (the largest first among equal starts, then one per start).
pub(crate) fn function_symbols(file: &object::File<'_>) -> Vec<(u64, u64, String)> {
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

/// The function of `symbols` (as [`function_symbols`] gives them) that
/// holds `probe`: its start and its name.
pub(crate) fn symbol_at(symbols: &[(u64, u64, String)], probe: u64) -> Option<(u64, &str)> {
    let i = symbols.partition_point(|s| s.0 <= probe);
    let (start, size, name) = symbols.get(i.checked_sub(1)?)?;
    (*size == 0 || probe < start + size).then_some((*start, name.as_str()))
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
