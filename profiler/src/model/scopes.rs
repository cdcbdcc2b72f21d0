//! Memory by scope: per scope name (a route, a task kind, a span name) and
//! per instance (one request), what was allocated, what is live, and what
//! outlived its instance.
//!
//! Semantics (see `docs/scopes.md`): a block belongs to the scope instance
//! its allocating thread was in when it allocated it, wherever the block
//! is freed. An instance exists from the first event of a thread in it to
//! its `ScopeEnd`; at its end, the bytes it allocated go into its scope's
//! bytes-per-instance histogram, and if any of its blocks are still live
//! the instance *outlived* its scope (a per-request leak, or memory handed
//! on on purpose: a cache entry). An instance is forgotten once it has
//! ended and its last block is freed, so memory grows with live instances
//! and with instances that left blocks behind, not with the number of
//! requests.

use super::counters::{Counters, Tracked, Weight};
use super::durations::Durations;
use crate::hash::IdMap;

/// One scope name's aggregates.
#[derive(Clone, Debug)]
pub(crate) struct ScopeEntry {
    pub(crate) tracked: Tracked,
    /// Instances seen.
    pub(crate) instances: u64,
    /// Instances that ended.
    pub(crate) ended: u64,
    /// Instances that ended with blocks still live.
    pub(crate) outlived: u64,
    /// Bytes still live when their instance ended (summed over instances).
    pub(crate) outlived_bytes: u64,
    /// Bytes allocated per ended instance.
    pub(crate) per_instance: Durations,
}

/// One instance being followed.
#[derive(Clone, Copy, Debug)]
struct Instance {
    /// The scope name's STRING id.
    name: u64,
    allocated: u64,
    live_bytes: u64,
    live_blocks: u64,
    ended: bool,
}

/// Scope names and live instances.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scopes {
    pub(crate) by_name: IdMap<u64, ScopeEntry>,
    instances: IdMap<u64, Instance>,
}

impl Scopes {
    /// A thread entered instance `instance` of scope `name`.
    pub(crate) fn entered(&mut self, name: u64, instance: u64, generation: u64) {
        if instance == 0 || self.instances.contains_key(&instance) {
            return;
        }
        self.instances.insert(
            instance,
            Instance {
                name,
                allocated: 0,
                live_bytes: 0,
                live_blocks: 0,
                ended: false,
            },
        );
        self.by_name
            .entry(name)
            .or_insert_with(|| ScopeEntry {
                tracked: Tracked::new(generation),
                instances: 0,
                ended: 0,
                outlived: 0,
                outlived_bytes: 0,
                per_instance: Durations::default(),
            })
            .instances += 1;
    }

    /// The scope counters of `instance`, for updating at `generation`.
    fn counters(
        &mut self,
        instance: u64,
        generation: u64,
    ) -> Option<(&mut Instance, &mut Counters)> {
        let i = self.instances.get_mut(&instance)?;
        let s = self.by_name.get_mut(&i.name)?;
        Some((i, s.tracked.update(generation)))
    }

    /// A block of weight `w` was created in `instance`.
    pub(crate) fn created(&mut self, instance: u64, w: Weight, realloc: bool, generation: u64) {
        if let Some((i, c)) = self.counters(instance, generation) {
            i.allocated += w.bytes;
            i.live_bytes += w.bytes;
            i.live_blocks += w.blocks;
            c.created(w);
            if realloc {
                c.reallocations += w.blocks;
            }
        }
    }

    /// A block of weight `w` created in `instance` was released
    /// (`counted`: freed, not lost).
    pub(crate) fn released(
        &mut self,
        instance: u64,
        w: Weight,
        temporary: bool,
        counted: bool,
        generation: u64,
    ) {
        let Some((i, c)) = self.counters(instance, generation) else {
            return;
        };
        i.live_bytes = i.live_bytes.saturating_sub(w.bytes);
        i.live_blocks = i.live_blocks.saturating_sub(w.blocks);
        if counted {
            c.released(w, temporary);
        } else {
            c.live_blocks = c.live_blocks.saturating_sub(w.blocks);
            c.live_bytes = c.live_bytes.saturating_sub(w.bytes);
        }
        if i.ended && i.live_blocks == 0 {
            self.instances.remove(&instance);
        }
    }

    /// Instance `instance` ended.
    pub(crate) fn ended(&mut self, instance: u64) {
        let Some(i) = self.instances.get_mut(&instance) else {
            return;
        };
        if i.ended {
            return;
        }
        i.ended = true;
        let i = *i;
        if let Some(s) = self.by_name.get_mut(&i.name) {
            s.ended += 1;
            s.per_instance.record(i.allocated, 1);
            if i.live_blocks > 0 {
                s.outlived += 1;
                s.outlived_bytes += i.live_bytes;
            }
        }
        if i.live_blocks == 0 {
            self.instances.remove(&instance);
        }
    }

    /// The scope name of a live instance, and whether it has ended.
    pub(crate) fn instance(&self, instance: u64) -> Option<(u64, bool)> {
        self.instances.get(&instance).map(|i| (i.name, i.ended))
    }

    /// Instances followed now (live, or ended with blocks live).
    pub(crate) fn followed(&self) -> usize {
        self.instances.len()
    }
}
