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

/// Each site's naming frame (see [`crate::SymbolizedStack::site_frame`])
/// and the frames outward from it, remembered: one model's stacks never
/// change once defined, so a view that groups the same model many times
/// symbolises each site once (again only when a deeper path is asked for
/// than was kept). Use one per model.
#[derive(Default)]
pub struct SiteFrames {
    frames: IdMap<StackId, Option<Rc<Location>>>,
    paths: IdMap<StackId, Rc<[Location]>>,
    /// Each site's key under `keyed_by` (formatting ten thousand keys
    /// took a third of a dashboard frame).
    keys: IdMap<StackId, Rc<str>>,
    keyed_by: Option<(GroupBy, usize)>,
}

/// Deepest path a grouping takes.
pub const MAX_GROUP_DEPTH: usize = 16;

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

    /// Up to `depth` frames of site `stack`, from its naming frame outward.
    pub fn path(
        &mut self,
        model: &Model,
        symbolizer: &mut Symbolizer,
        stack: StackId,
        depth: usize,
    ) -> Rc<[Location]> {
        if let Some(p) = self.paths.get(&stack)
            && p.len() >= depth
        {
            return p.clone();
        }
        let symbolized = symbolizer.stack(model, stack);
        let start = if symbolized.frames.get(symbolized.library).is_some() {
            symbolized.library
        } else {
            0
        };
        let path: Rc<[Location]> = symbolized
            .frames
            .iter()
            .skip(start)
            .take(depth.max(1))
            .cloned()
            .collect();
        self.paths.insert(stack, path.clone());
        path
    }

    /// Site `stack`'s key when grouped `by` at `depth`.
    fn key(
        &mut self,
        model: &Model,
        symbolizer: &mut Symbolizer,
        stack: StackId,
        by: GroupBy,
        depth: usize,
    ) -> Rc<str> {
        if self.keyed_by != Some((by, depth)) {
            self.keys.clear();
            self.keyed_by = Some((by, depth));
        }
        if let Some(k) = self.keys.get(&stack) {
            return k.clone();
        }
        let k: Rc<str> = if depth == 1 {
            key(by, self.get(model, symbolizer, stack).as_deref()).into()
        } else {
            path_key(by, &self.path(model, symbolizer, stack, depth)).into()
        };
        self.keys.insert(stack, k.clone());
        k
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
    pub location: Option<Rc<Location>>,
    /// The sum of the sites' counters (`max_live_bytes` is then an upper
    /// bound: the sites' own maxima may fall at different times).
    pub counters: Counters,
    /// The sites, by stack id.
    pub sites: Vec<StackId>,
}

/// The key of a site whose path (naming frame first) is `path`: each
/// frame's key, joined callee to caller with ` <- `; a frame that repeats
/// the previous one's key (a function's lines, by function) once.
fn path_key(by: GroupBy, path: &[Location]) -> String {
    let mut keys: Vec<String> = Vec::with_capacity(path.len());
    for l in path {
        let k = key(by, Some(l));
        if keys.last() != Some(&k) || by == GroupBy::InnermostFrame {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        return key(by, None);
    }
    keys.join(" <- ")
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
        1,
    )
}

/// As [`group_sites`] for `sites` of `model` (all of them, or those of one
/// thread: [`Model::thread_sites`]), with the sites' frames remembered in
/// `frames` (which must be used with this model only). `depth` frames
/// from each site's naming frame outward make its key (1: the naming
/// frame alone; at most [`MAX_GROUP_DEPTH`]).
pub fn group_sites_with(
    model: &Model,
    sites: impl Iterator<Item = Site>,
    symbolizer: &mut Symbolizer,
    frames: &mut SiteFrames,
    by: GroupBy,
    depth: usize,
) -> Vec<Group> {
    let depth = depth.clamp(1, MAX_GROUP_DEPTH);
    let hint = sites.size_hint().0;
    let mut index: IdMap<Rc<str>, usize> =
        IdMap::with_capacity_and_hasher(hint, Default::default());
    let mut out: Vec<Group> = Vec::with_capacity(hint);
    for site in sites {
        let key = frames.key(model, symbolizer, site.stack, by, depth);
        let i = *index.entry(key).or_insert_with_key(|key| {
            out.push(Group {
                key: key.to_string(),
                location: None,
                counters: Counters::default(),
                sites: Vec::new(),
            });
            out.len() - 1
        });
        let g = &mut out[i];
        g.counters.add(&site.counters);
        g.sites.push(site.stack);
    }
    for g in &mut out {
        g.sites.sort_unstable();
        g.location = frames.get(model, symbolizer, g.sites[0]);
    }
    let order = sorted_order(&out, |a, b| {
        b.counters
            .bytes_allocated
            .cmp(&a.counters.bytes_allocated)
            .then_with(|| a.key.cmp(&b.key))
    });
    permuted(out, &order)
}

/// The order of `items` under `compare` (stable), as indices: sorting
/// indices moves 4 bytes an element where sorting the items would move
/// each whole item (a group is about 200 bytes) once per merge pass.
pub fn sorted_order<T>(items: &[T], compare: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<u32> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_by(|&a, &b| compare(&items[a as usize], &items[b as usize]));
    order
}

/// `items` in `order` (a permutation of their indices), each moved once.
pub fn permuted<T>(items: Vec<T>, order: &[u32]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&i| slots[i as usize].take().expect("a permutation"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_by_index_is_the_stable_sort() {
        // Pairs (value, arrival): equal values must keep their arrival order.
        let items: Vec<(u32, usize)> = [5, 3, 5, 1, 3, 5, 0, 1]
            .iter()
            .copied()
            .enumerate()
            .map(|(i, v)| (v, i))
            .collect();
        let mut expected = items.clone();
        expected.sort_by_key(|b| std::cmp::Reverse(b.0));
        let order = sorted_order(&items, |a, b| b.0.cmp(&a.0));
        assert_eq!(permuted(items, &order), expected);
    }
}
