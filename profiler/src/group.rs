//! Grouping of allocation sites once their stacks are symbolised: by the
//! innermost frame of the program's own code (the line that allocated,
//! past the allocator and any standard-library container code) or by that
//! frame's function. A view that wants "which
//! function allocates the most" sums sites this way instead of keeping its
//! own aggregates.

use crate::model::{Counters, Model};
use crate::stacks::StackId;
use crate::symbols::{Location, Symbolizer};
use std::collections::HashMap;

/// What sites are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// The innermost frame after trimming: function, file and line (or
    /// `module+0xoffset` when unsymbolised).
    InnermostFrame,
    /// The innermost function after trimming (its module and offset when
    /// unknown).
    Function,
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
    let mut sites: Vec<_> = model.sites().collect();
    sites.sort_by_key(|s| s.stack);
    let mut groups: HashMap<String, Group> = HashMap::new();
    for site in sites {
        let stack = symbolizer.stack(model, site.stack);
        let first = stack.site_frame();
        let key = match (by, first) {
            (_, None) => "<no stack>".to_owned(),
            (GroupBy::InnermostFrame, Some(l)) => l.to_string(),
            (GroupBy::Function, Some(l)) => l.function.clone().unwrap_or_else(|| l.raw()),
        };
        let g = groups.entry(key.clone()).or_insert_with(|| Group {
            key,
            location: first.cloned(),
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
