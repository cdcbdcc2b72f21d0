//! The modules (executable and shared libraries) a trace says were loaded
//! (MODULE and MODULE_GONE records), and the lookup from a runtime address
//! to the module and file address that holds it.
//!
//! Modules are kept for the whole trace, unloaded ones included, because
//! stacks recorded while a module was loaded still point into it; stack
//! nodes remember the index of their module (see `stacks.rs`).

use memtally_alloc::trace::Module;

/// A module as the trace described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Load bias: runtime address = file virtual address + base.
    pub base: u64,
    /// STRING id of the module's path.
    pub path_id: u64,
    /// The path, once its STRING record is known.
    pub path: Option<String>,
    /// The GNU build id (empty if the module has none).
    pub build_id: Vec<u8>,
    /// Executable segments as `(start, end)` runtime addresses.
    pub segments: Vec<(u64, u64)>,
    /// True once a MODULE_GONE record unloaded it.
    pub unloaded: bool,
}

impl ModuleInfo {
    /// True when `address` lies in one of its executable segments.
    pub fn contains(&self, address: u64) -> bool {
        self.segments
            .iter()
            .any(|&(start, end)| start <= address && address < end)
    }

    /// The file name of the module (the last component of its path), or
    /// `?` when the path is unknown.
    pub fn name(&self) -> &str {
        match &self.path {
            Some(p) => p.rsplit('/').next().unwrap_or(p),
            None => "?",
        }
    }
}

/// Every module the trace has described, in order.
#[derive(Clone, Debug, Default)]
pub struct Modules {
    list: Vec<ModuleInfo>,
}

impl Modules {
    /// Adds a loaded module; `path` is its path if already known.
    pub fn load(&mut self, m: &Module, path: Option<String>) {
        self.list.push(ModuleInfo {
            base: m.base,
            path_id: m.path,
            // The vDSO has an empty path: there is no file to read.
            path: path.filter(|p| !p.is_empty()),
            build_id: m.build_id.clone(),
            segments: m.segments.iter().map(|s| (s.start, s.end)).collect(),
            unloaded: false,
        });
    }

    /// Marks the loaded module with load bias `base` as unloaded.
    pub fn unload(&mut self, base: u64) {
        if let Some(m) = self
            .list
            .iter_mut()
            .rev()
            .find(|m| !m.unloaded && m.base == base)
        {
            m.unloaded = true;
        }
    }

    /// Fills in the path of modules waiting for STRING `id`.
    pub fn name_path(&mut self, id: u64, text: &str) {
        if text.is_empty() {
            return;
        }
        for m in self.list.iter_mut().filter(|m| m.path_id == id) {
            m.path = Some(text.to_owned());
        }
    }

    /// The index of the loaded module holding `address`, newest first.
    pub fn find_loaded(&self, address: u64) -> Option<usize> {
        self.list
            .iter()
            .rposition(|m| !m.unloaded && m.contains(address))
    }

    /// Module `index`.
    pub fn get(&self, index: usize) -> Option<&ModuleInfo> {
        self.list.get(index)
    }

    /// All modules, in the order they were described.
    pub fn all(&self) -> &[ModuleInfo] {
        &self.list
    }
}
