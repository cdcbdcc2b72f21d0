//! Live bytes over time of a few chosen groups of sites, for timelines
//! stacked by site (`memtally plot`). Which sites matter is only known
//! once a trace has been read, so a view reads it twice: the first model
//! ranks the sites, the second tracks the chosen groups
//! ([`crate::Model::track_groups`]). Tracking costs one map lookup per
//! event and one series per group.
//!
//! The sites outside every group are tracked too, as one more group, the
//! last: a view that drew "the rest" as the heap minus the groups would
//! subtract series sampled at different moments (each series keeps the
//! last value of each of its buckets, and buckets differ between series)
//! and draw memory nobody held.

use super::series::Series;
use crate::hash::IdMap;
use crate::stacks::StackId;

/// The tracked groups.
#[derive(Clone, Debug)]
pub(crate) struct SiteGroups {
    /// The group of each tracked site.
    of: IdMap<StackId, usize>,
    /// Each group's live bytes now.
    live: Vec<u64>,
    /// Each group's live bytes over time (a value pushed when it changes).
    series: Vec<Series>,
}

impl SiteGroups {
    /// Tracks `groups` (each a list of sites) and the rest, with series of
    /// at most `points` points.
    pub(crate) fn new(groups: &[Vec<StackId>], points: usize) -> Self {
        let mut of = IdMap::default();
        for (g, sites) in groups.iter().enumerate() {
            for &s in sites {
                of.insert(s, g);
            }
        }
        SiteGroups {
            of,
            live: vec![0; groups.len() + 1],
            series: (0..=groups.len()).map(|_| Series::new(points)).collect(),
        }
    }

    /// Site `stack` gained (`grow`) or lost `bytes` at `ticks`.
    pub(crate) fn change(&mut self, stack: StackId, bytes: u64, grow: bool, ticks: u64) {
        let g = self.of.get(&stack).copied().unwrap_or(self.live.len() - 1);
        let live = &mut self.live[g];
        *live = if grow {
            live.saturating_add(bytes)
        } else {
            live.saturating_sub(bytes)
        };
        self.series[g].push(ticks, *live);
    }

    /// Each group's series, in the order given, then the rest's.
    pub(crate) fn series(&self) -> &[Series] {
        &self.series
    }
}
