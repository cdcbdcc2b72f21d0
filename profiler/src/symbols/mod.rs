//! Symbolisation: from the return addresses of a stack to functions, source
//! files and lines, inlined frames included.
//!
//! An address is looked up in the module the trace says held it, in that
//! module's file at the recorded path. The file is used only if its build
//! id matches the trace's, because a rebuilt library at the same path would
//! give confidently wrong answers; otherwise (and when the file is missing)
//! the frame is shown as `module+0xoffset`, which stays meaningful on any
//! machine. Every frame but the innermost is a return address, so
//! `address - 1` is looked up for it (the call instruction, not the one
//! after it). Results are cached per address; files are opened once.
//!
//! Frames of the allocator itself are trimmed from the inner end (see
//! `trim.rs`), so that a stack's innermost frame is the program's call.

mod demangle;
mod dwarf_units;
mod object_file;
mod trim;

pub use demangle::demangle;
pub use object_file::FileProblem;
pub(crate) use object_file::{function_symbols, map_regular, symbol_at};
pub use trim::{inner_allocator_frames, inner_library_frames, is_allocator_frame};

use crate::model::Model;
use crate::modules::ModuleInfo;
use crate::stacks::{StackId, StackNode};
use object_file::ObjectFile;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

/// One frame of a symbolised stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The address recorded in the trace (a return address for every frame
    /// but the innermost).
    pub address: u64,
    /// The path of the module holding it, if known.
    pub module: Option<String>,
    /// The address in the module's file (`address - base`), if the module
    /// is known.
    pub module_offset: Option<u64>,
    /// The function (demangled), if known.
    pub function: Option<String>,
    /// The source file, if known.
    pub file: Option<String>,
    /// The source line, if known.
    pub line: Option<u32>,
    /// The source column, if known.
    pub column: Option<u32>,
    /// True when this frame was inlined into the next (outer) one: both
    /// come from the same address.
    pub inlined: bool,
}

impl Location {
    /// A frame about which nothing is known but its address.
    pub fn unknown(address: u64) -> Self {
        Location {
            address,
            module: None,
            module_offset: None,
            function: None,
            file: None,
            line: None,
            column: None,
            inlined: false,
        }
    }

    /// The module's file name (the last component of its path).
    pub fn module_name(&self) -> Option<&str> {
        let m = self.module.as_deref()?;
        m.rsplit('/').next()
    }

    /// `module+0xoffset`, or the bare address when the module is unknown.
    pub fn raw(&self) -> String {
        match (self.module_name(), self.module_offset) {
            (Some(m), Some(off)) => format!("{m}+{off:#x}"),
            _ => format!("{:#x}", self.address),
        }
    }

    /// `file:line`, if the line is known (the file's last two components).
    pub fn source(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        let short = match file.rmatch_indices('/').nth(1) {
            Some((i, _)) => &file[i + 1..],
            None => file,
        };
        Some(match self.line {
            Some(line) => format!("{short}:{line}"),
            None => short.to_owned(),
        })
    }
}

impl fmt::Display for Location {
    /// `function (file:line)`, `function (module+0xoffset)`, or
    /// `module+0xoffset`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.function, self.source()) {
            (Some(func), Some(src)) => write!(f, "{func} ({src})"),
            (Some(func), None) => write!(f, "{func} ({})", self.raw()),
            (None, Some(src)) => write!(f, "{} ({src})", self.raw()),
            (None, None) => f.write_str(&self.raw()),
        }
    }
}

/// A symbolised stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolizedStack {
    /// The frames, innermost first, after trimming, inlined frames
    /// expanded.
    pub frames: Vec<Location>,
    /// How many allocator frames were trimmed from the inner end.
    pub trimmed: usize,
    /// How many of the remaining inner frames (`frames[..library]`) are
    /// standard-library code between the allocator and the program: views
    /// name a site after `frames[library]`, the program's own call.
    pub library: usize,
}

impl SymbolizedStack {
    /// The frame that names the site: the program's innermost own frame.
    pub fn site_frame(&self) -> Option<&Location> {
        self.frames.get(self.library).or(self.frames.first())
    }
}

/// How the symboliser works.
#[derive(Clone, Debug)]
pub struct SymbolizerOptions {
    /// Trim allocator frames from the inner end of stacks.
    pub trim_allocator_frames: bool,
    /// Where separate debug files are looked for.
    pub debug_dirs: Vec<PathBuf>,
}

impl Default for SymbolizerOptions {
    fn default() -> Self {
        SymbolizerOptions {
            trim_allocator_frames: true,
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
        }
    }
}

/// A module file that could not be used, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleProblem {
    /// The module's path (as the trace recorded it).
    pub path: String,
    /// What was wrong.
    pub problem: FileProblem,
}

/// Turns addresses into locations, caching files and answers.
pub struct Symbolizer {
    options: SymbolizerOptions,
    /// Opened files by path and build id.
    files: HashMap<(String, Vec<u8>), Result<Rc<ObjectFile>, FileProblem>>,
    /// Answers by (module index, address, innermost).
    cache: HashMap<(Option<usize>, u64, bool), Rc<[Location]>>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new(SymbolizerOptions::default())
    }
}

impl Symbolizer {
    /// A symboliser with `options`.
    pub fn new(options: SymbolizerOptions) -> Self {
        Symbolizer {
            options,
            files: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// The frames of `stack` (innermost first), trimmed of allocator
    /// frames if the options say so.
    pub fn stack(&mut self, model: &Model, stack: StackId) -> SymbolizedStack {
        let mut frames = Vec::new();
        for (i, node) in model.stacks().frames(stack).iter().enumerate() {
            frames.extend(self.node(model, node, i == 0).iter().cloned());
        }
        let trimmed = if self.options.trim_allocator_frames {
            inner_allocator_frames(&frames)
        } else {
            0
        };
        frames.drain(..trimmed);
        if trimmed > 0 {
            // The gpu-shim's wrappers call out into the library they wrap,
            // which may come back into another wrapper (NCCL's
            // ncclMemAlloc into the driver's cuMemCreate): the outer
            // wrapper's frames are memtally's too, in the middle of the
            // stack. (A stack of nothing but memtally's frames is left
            // whole, as above.)
            frames.retain(|l| !trim::in_memtally_library(l));
        }
        let library = inner_library_frames(&frames);
        SymbolizedStack {
            frames,
            trimmed,
            library,
        }
    }

    /// The locations of one stack node (several when inlined), innermost
    /// first. `innermost` says whether the node is the innermost frame of
    /// the stack being shown (its address is then looked up as it is,
    /// otherwise as a return address).
    pub fn node(&mut self, model: &Model, node: &StackNode, innermost: bool) -> Rc<[Location]> {
        let key = (node.module, node.address, innermost);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let module = node.module.and_then(|i| model.modules().get(i));
        let found: Rc<[Location]> = self.resolve(module, node.address, innermost).into();
        self.cache.insert(key, found.clone());
        found
    }

    fn resolve(
        &mut self,
        module: Option<&ModuleInfo>,
        address: u64,
        innermost: bool,
    ) -> Vec<Location> {
        let mut base = Location::unknown(address);
        let Some(m) = module else {
            return vec![base];
        };
        base.module = m.path.clone();
        let vaddr = address.wrapping_sub(m.base);
        base.module_offset = Some(vaddr);
        let Some(file) = m.path.as_deref().and_then(|p| self.file(p, &m.build_id)) else {
            return vec![base];
        };
        let probe = if innermost {
            vaddr
        } else {
            vaddr.saturating_sub(1)
        };
        let found = file.lookup(probe);
        if found.is_empty() {
            return vec![base];
        }
        let n = found.len();
        found
            .into_iter()
            .enumerate()
            .map(|(i, f)| Location {
                function: f.function,
                file: f.file,
                line: f.line,
                column: f.column,
                inlined: i + 1 < n,
                ..base.clone()
            })
            .collect()
    }

    /// The opened file at `path` with `build_id`, if it can be used.
    fn file(&mut self, path: &str, build_id: &[u8]) -> Option<Rc<ObjectFile>> {
        let key = (path.to_owned(), build_id.to_vec());
        let debug_dirs = &self.options.debug_dirs;
        self.files
            .entry(key)
            .or_insert_with(|| {
                ObjectFile::open(std::path::Path::new(path), build_id, debug_dirs).map(Rc::new)
            })
            .as_ref()
            .ok()
            .cloned()
    }

    /// The module files that could not be used so far, sorted by path.
    pub fn problems(&self) -> Vec<ModuleProblem> {
        let mut out: Vec<ModuleProblem> = self
            .files
            .iter()
            .filter_map(|((path, _), r)| {
                r.as_ref().err().map(|p| ModuleProblem {
                    path: path.clone(),
                    problem: p.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}
