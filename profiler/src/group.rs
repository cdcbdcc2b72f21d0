//! Grouping of allocation sites once their stacks are symbolised: by the
//! innermost frame of the program's own code (the line that allocated,
//! past the allocator and any standard-library container code) or by that
//! frame's function, source file or library. A view that wants "which
//! function allocates the most" sums sites this way instead of keeping its
//! own aggregates. A live view that groups a growing model again at every
//! frame keeps a [`SiteFrames`], so each site is symbolised once.

use crate::hash::IdMap;
use crate::model::{Counters, Model, Site};
use crate::stacks::StackId;
use crate::symbols::{Location, Symbolizer};
use std::collections::HashMap;
use std::rc::Rc;

/// What sites are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The innermost frame after trimming: function, file and line (or
    /// `module+0xoffset` when unsymbolised).
    InnermostFrame,
    /// The innermost function after trimming (its module and offset when
    /// unknown).
    Function,
    /// The source file of the innermost frame after trimming (its module
    /// when unknown).
    File,
    /// The module (executable or shared library) of the innermost frame
    /// after trimming.
    Library,
}

impl GroupBy {
    /// The grouping's name as shown to people.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::InnermostFrame => "line",
            GroupBy::Function => "function",
            GroupBy::File => "file",
            GroupBy::Library => "library",
        }
    }
}

/// Each site's naming frame (see [`crate::SymbolizedStack::site_frame`]),
/// remembered: one model's stacks never change once defined, so a view
/// that groups the same model many times symbolises each site once. Use
/// one per model.
#[derive(Default)]
pub struct SiteFrames {
    frames: IdMap<StackId, Option<Rc<Location>>>,
}

impl SiteFrames {
    /// The frame that names site `stack`.
    pub fn get(
        &mut self,
        model: &Model,
        symbolizer: &mut Symbolizer,
        stack: StackId,
    ) -> Option<Rc<Location>> {
        self.frames
            .entry(stack)
            .or_insert_with(|| {
                symbolizer
                    .stack(model, stack)
                    .site_frame()
                    .cloned()
                    .map(Rc::new)
            })
            .clone()
    }
}

/// The key of a site whose naming frame is `frame`.
fn key(by: GroupBy, frame: Option<&Location>) -> String {
    let Some(l) = frame else {
        return "<no stack>".to_owned();
    };
    match by {
        GroupBy::InnermostFrame => l.to_string(),
        GroupBy::Function => l.function.clone().unwrap_or_else(|| l.raw()),
        GroupBy::File => match &l.file {
            Some(f) => f.clone(),
            None => l.module.clone().unwrap_or_else(|| l.raw()),
        },
        GroupBy::Library => l
            .module
            .clone()
            .unwrap_or_else(|| "<unknown module>".into()),
    }
}

/// Sites that share a key.
#[derive(Clone, Debug)]
pub struct Group {
    /// The shared frame or function, as shown to people.
    pub key: String,
    /// The innermost frame of the group's first site (by stack id).
    pub location: Option<Location>,
    /// The sum of the sites' counters (`max_live_bytes` is then an upper
    /// bound: the sites' own maxima may fall at different times).
    pub counters: Counters,
    /// The sites, by stack id.
    pub sites: Vec<StackId>,
}

/// Groups every site of `model` by `by`. The result is sorted by bytes
/// allocated, largest first.
pub fn group_sites(model: &Model, symbolizer: &mut Symbolizer, by: GroupBy) -> Vec<Group> {
    group_sites_with(
        model,
        model.sites(),
        symbolizer,
        &mut SiteFrames::default(),
        by,
    )
}

/// As [`group_sites`] for `sites` of `model` (all of them, or those of one
/// thread: [`Model::thread_sites`]), with the sites' frames remembered in
/// `frames` (which must be used with this model only).
pub fn group_sites_with(
    model: &Model,
    sites: impl Iterator<Item = Site>,
    symbolizer: &mut Symbolizer,
    frames: &mut SiteFrames,
    by: GroupBy,
) -> Vec<Group> {
    let mut sites: Vec<Site> = sites.collect();
    sites.sort_by_key(|s| s.stack);
    let mut groups: HashMap<String, Group> = HashMap::new();
    for site in sites {
        let first = frames.get(model, symbolizer, site.stack);
        let key = key(by, first.as_deref());
        let g = groups.entry(key).or_insert_with_key(|key| Group {
            key: key.clone(),
            location: first.as_deref().cloned(),
            counters: Counters::default(),
            sites: Vec::new(),
        });
        g.counters.add(&site.counters);
        g.sites.push(site.stack);
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|a, b| {
        b.counters
            .bytes_allocated
            .cmp(&a.counters.bytes_allocated)
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}
