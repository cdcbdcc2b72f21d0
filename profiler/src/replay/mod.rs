//! Replay: a recorded trace's allocations run again against models of
//! embedded allocators (`memtally replay FILE --embedded MODELS`), to ask
//! whether the workload would fit a small fixed heap, where it would fail,
//! and how each policy fragments.
//!
//! The trace's events come through the analysis model's ordered stream
//! ([`crate::Analysis::open_visiting`]) in the recorded global order; the
//! models are sequential (an embedded heap has one lock), so the replay is
//! single-threaded in that order, with recorded addresses mapped to the
//! model's (address reuse in the trace is handled). A failed allocation is
//! counted and skipped (a later free of it is then unknown and skipped
//! too); frees of addresses the trace never allocated are counted and
//! skipped (a free that comes just before another thread's allocation of
//! its block, by the cores' clock skew, is moved after it first); what is
//! live at the end is reported as leaked.
//!
//! Per model ([`Outcome`]): the first failing event at the arena asked
//! for, the smallest arena that never fails (by binary search over whole
//! replays), the peak footprint (the highest byte ever used), external
//! fragmentation `1 - largest free / total free` after every operation
//! (its maximum and time-weighted mean), Johnstone and Wilson's measure #4
//! (peak footprint over peak live bytes requested), and the cost of each
//! operation in deterministic steps (mean, p99, max) and in nanoseconds
//! (mean over the replay, and p99 and max over every 16th operation,
//! timed on its own).
//!
//! Models: `fit.rs` (first, next, best and worst fit, FreeRTOS heap_2,
//! heap_4, heap_5, over the free-block indexes of `ordered.rs` and the
//! size bins of `bins.rs`),
//! `buddy.rs`, `tlsf.rs`, `slab.rs`; `counts.rs` counts steps.

mod bins;
pub mod buddy;
mod counts;
pub mod distributed;
pub mod fit;
mod ordered;
pub mod program;
pub mod rmm;
mod sizemap;
pub mod slab;
pub mod tlsf;

use crate::hash::IdMap;
use crate::model::{Durations, Model, ModelOptions};
use crate::read::Analysis;
use crate::stacks::StackId;
use memtally_alloc::trace::{EventKind, Ordered};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What a model says about its free memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Free bytes (block sizes, headers included).
    pub free_total: u64,
    /// The largest free block.
    pub largest_free: u64,
    /// The highest byte ever used (end of the highest block handed out).
    pub high_water: u64,
}

/// A block a model handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The user's offset.
    pub user: u64,
    /// The model's own record of the block (its offset and size, its
    /// index...), given back to [`Heap::free`]: a model needs no map of
    /// its own from user offsets to blocks.
    pub(crate) inner: (u64, u64),
}

/// An allocator model over a fixed arena. Offsets are bytes from the
/// arena's start.
pub trait Heap {
    /// Allocates `size` bytes aligned to `align`; the block, or None when
    /// nothing fits.
    fn alloc(&mut self, size: u64, align: u64) -> Option<Allocation>;
    /// Frees a live block from `alloc` (a model does not detect a second
    /// free of one: the replay gives each back once).
    fn free(&mut self, block: Allocation);
    /// The steps taken since the last call.
    fn take_steps(&mut self) -> u64;
    /// Free memory now, and the high-water mark.
    fn stats(&mut self) -> HeapStats;
    /// Checks the model's invariants (its free blocks and the `live`
    /// ones tile the arena, never overlap, are merged where the model
    /// merges); for tests.
    fn check(&self, live: &[Allocation]) -> Result<(), String>;
}

/// The models `--embedded` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// TLSF.
    Tlsf,
    /// First fit, address-ordered, coalescing.
    FirstFit,
    /// Next fit, address-ordered, coalescing.
    NextFit,
    /// Best fit, coalescing.
    BestFit,
    /// Worst fit, coalescing.
    WorstFit,
    /// Binary buddy.
    Buddy,
    /// Fixed-block pools of these sizes.
    Slab(Vec<u64>),
    /// FreeRTOS heap_2: best fit, never coalescing.
    FreeRtosHeap2,
    /// FreeRTOS heap_4: first fit, address-ordered, coalescing.
    FreeRtosHeap4,
    /// FreeRTOS heap_5: heap_4 over several regions.
    FreeRtosHeap5,
}

impl ModelKind {
    /// Every model but `slab` (which needs sizes) for `all`.
    pub fn all() -> Vec<ModelKind> {
        vec![
            ModelKind::Tlsf,
            ModelKind::FirstFit,
            ModelKind::NextFit,
            ModelKind::BestFit,
            ModelKind::WorstFit,
            ModelKind::Buddy,
            ModelKind::FreeRtosHeap2,
            ModelKind::FreeRtosHeap4,
            ModelKind::FreeRtosHeap5,
        ]
    }

    /// Parses a model name (`slab:32,64,256` with its sizes).
    pub fn parse(text: &str) -> Result<ModelKind, String> {
        Ok(match text {
            "tlsf" => ModelKind::Tlsf,
            "first-fit" => ModelKind::FirstFit,
            "next-fit" => ModelKind::NextFit,
            "best-fit" => ModelKind::BestFit,
            "worst-fit" => ModelKind::WorstFit,
            "buddy" => ModelKind::Buddy,
            "freertos-heap2" => ModelKind::FreeRtosHeap2,
            "freertos-heap4" => ModelKind::FreeRtosHeap4,
            "freertos-heap5" => ModelKind::FreeRtosHeap5,
            _ => match text.strip_prefix("slab:") {
                Some(sizes) => {
                    let sizes: Result<Vec<u64>, _> =
                        sizes.split(',').map(|s| s.trim().parse::<u64>()).collect();
                    match sizes {
                        Ok(s) if !s.is_empty() && s.iter().all(|&n| n > 0) => ModelKind::Slab(s),
                        _ => {
                            return Err(format!(
                                "invalid {text} (expected slab:SIZE,SIZE,... with sizes in bytes)"
                            ));
                        }
                    }
                }
                None => {
                    return Err(format!(
                        "unknown model {text:?} (expected tlsf, first-fit, next-fit, best-fit, worst-fit, buddy, slab:SIZES, freertos-heap2, freertos-heap4, freertos-heap5 or all)"
                    ));
                }
            },
        })
    }

    /// The model's name as given.
    pub fn name(&self) -> String {
        match self {
            ModelKind::Tlsf => "tlsf".into(),
            ModelKind::FirstFit => "first-fit".into(),
            ModelKind::NextFit => "next-fit".into(),
            ModelKind::BestFit => "best-fit".into(),
            ModelKind::WorstFit => "worst-fit".into(),
            ModelKind::Buddy => "buddy".into(),
            ModelKind::Slab(s) => format!(
                "slab:{}",
                s.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            ),
            ModelKind::FreeRtosHeap2 => "freertos-heap2".into(),
            ModelKind::FreeRtosHeap4 => "freertos-heap4".into(),
            ModelKind::FreeRtosHeap5 => "freertos-heap5".into(),
        }
    }

    /// The model over `arena` bytes.
    pub fn build(&self, arena: u64, cfg: &Config) -> Box<dyn Heap> {
        use fit::{FitHeap, Flavour, Policy};
        let one = [arena];
        let fit = |p, f| Box::new(FitHeap::new(p, f, &one, cfg.header, cfg.align)) as Box<dyn Heap>;
        match self {
            ModelKind::Tlsf => Box::new(tlsf::TlsfHeap::new(arena, cfg.header, cfg.align)),
            ModelKind::FirstFit => fit(Policy::First, Flavour::Tagged),
            ModelKind::NextFit => fit(Policy::Next, Flavour::Tagged),
            ModelKind::BestFit => fit(Policy::Best, Flavour::Tagged),
            ModelKind::WorstFit => fit(Policy::Worst, Flavour::Tagged),
            ModelKind::Buddy => {
                Box::new(buddy::BuddyHeap::new(arena, cfg.align.max(16), cfg.header))
            }
            ModelKind::Slab(sizes) => Box::new(slab::SlabHeap::new(arena, sizes, cfg.align)),
            ModelKind::FreeRtosHeap2 => fit(Policy::Best, Flavour::FreeRtosBySize),
            ModelKind::FreeRtosHeap4 => fit(Policy::First, Flavour::FreeRtosOrdered),
            ModelKind::FreeRtosHeap5 => {
                // The regions' proportions, scaled to the arena.
                let weights = if cfg.regions.is_empty() {
                    vec![1, 1]
                } else {
                    cfg.regions.clone()
                };
                let sum: u64 = weights.iter().sum::<u64>().max(1);
                let regions: Vec<u64> = weights
                    .iter()
                    .map(|w| (arena as u128 * *w as u128 / sum as u128) as u64)
                    .collect();
                Box::new(FitHeap::new(
                    Policy::First,
                    Flavour::FreeRtosOrdered,
                    &regions,
                    cfg.header,
                    cfg.align,
                ))
            }
        }
    }
}

/// How the models are set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The arena asked for (None: only the smallest that fits is found).
    pub arena: Option<u64>,
    /// Block alignment (the models' unit).
    pub align: u64,
    /// Bytes of header per block.
    pub header: u64,
    /// heap_5's region sizes (their proportions, when the arena is
    /// searched).
    pub regions: Vec<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            arena: None,
            align: 8,
            header: 8,
            regions: Vec::new(),
        }
    }
}

/// One replayed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes aligned to `align` for recorded address `addr`.
    Alloc {
        /// Recorded address.
        addr: u64,
        /// Requested size.
        size: u64,
        /// Alignment.
        align: u64,
    },
    /// Free recorded address `addr`.
    Free {
        /// Recorded address.
        addr: u64,
    },
    /// Reallocate `old` to `addr` with `size` bytes (alloc, copy, free).
    Realloc {
        /// Old recorded address (0: none).
        old: u64,
        /// New recorded address.
        addr: u64,
        /// New size.
        size: u64,
    },
    /// An access annotation (`memtally_alloc::access`): memory at `addr`
    /// read or written. Only the distributed models use it.
    Access {
        /// The address.
        addr: u64,
        /// A write.
        write: bool,
    },
    /// A synchronisation point (a marker): release consistency sends the
    /// invalidations batched since the last one. Only the distributed
    /// models use it.
    Sync,
    /// An allocation of `size` bytes that failed when recorded (RMM's
    /// `allocate failure`): replays skip it, exports keep it.
    Failed {
        /// Bytes asked for.
        size: u64,
    },
}

impl Op {
    /// True for the operations an allocator sees.
    pub fn is_allocation(&self) -> bool {
        matches!(
            self,
            Op::Alloc { .. } | Op::Free { .. } | Op::Realloc { .. }
        )
    }
}

/// An operation with its time and allocating stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timed {
    /// What to do.
    pub op: Op,
    /// Ticks.
    pub ticks: u64,
    /// The allocating stack (0 for frees).
    pub stack: StackId,
    /// The recorded thread.
    pub thread: u64,
}

/// A trace's operations, and its model (for names and times; None for an
/// imported RMM log).
pub struct Recorded {
    /// The operations in the recorded global order.
    pub ops: Vec<Timed>,
    /// The trace read.
    pub analysis: Option<Analysis>,
}

/// Reads the operations of the trace (or RAPIDS RMM CSV log) at `path`.
pub fn read(path: &Path) -> Result<Recorded, crate::Error> {
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    if rmm::looks_like(&head[..n]) {
        let text = std::fs::read_to_string(path).map_err(|source| {
            crate::Error::new(crate::ErrorKind::Open {
                path: path.to_owned(),
                source,
            })
        })?;
        let ops = rmm::read(&text).map_err(|e| {
            crate::Error::new(crate::ErrorKind::Open {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })
        })?;
        return Ok(Recorded {
            ops,
            analysis: None,
        });
    }
    read_trace(path)
}

/// Reads the device-memory operations of `device` in the trace at `path`
/// (what the gpu-shim saw: allocations, frees and failures of memory, not
/// of address space, registrations or virtual-memory handles), as RMM
/// logs one device.
pub fn read_device(path: &Path, device: u32) -> Result<Recorded, crate::Error> {
    use memtally_alloc::trace::device::{counts_in_total, key_space, memory, op};
    let mut ops = Vec::new();
    // Frees name an address only: the device of each live block.
    let mut live: std::collections::HashMap<(u8, u64), u32> = std::collections::HashMap::new();
    let analysis = Analysis::open_visiting(path, ModelOptions::default(), |item, _| {
        let Ordered::Event(e) = item else { return };
        let EventKind::Device {
            op: o,
            memory: m,
            device: d,
            address,
            size,
            stack,
            ..
        } = e.event.kind
        else {
            return;
        };
        if !counts_in_total(m) || m == memory::VMM {
            return;
        }
        let key = (key_space(m), address);
        let op = match o {
            op::ALLOC => {
                live.insert(key, d);
                if d != device {
                    return;
                }
                Op::Alloc {
                    addr: address,
                    size,
                    align: 256,
                }
            }
            op::FREE if live.remove(&key) == Some(device) => Op::Free { addr: address },
            op::FAILED if d == device => Op::Failed { size },
            _ => return,
        };
        ops.push(Timed {
            op,
            ticks: e.event.time,
            stack,
            thread: e.thread,
        });
    })?;
    Ok(Recorded {
        ops,
        analysis: Some(analysis),
    })
}

fn read_trace(path: &Path) -> Result<Recorded, crate::Error> {
    let mut ops = Vec::new();
    let analysis = Analysis::open_visiting(path, ModelOptions::default(), |item, _| {
        let Ordered::Event(e) = item else { return };
        let ticks = e.event.time;
        let thread = e.thread;
        let timed = match e.event.kind {
            EventKind::Alloc {
                address,
                size,
                align,
                stack,
                ..
            } if address != 0 => Timed {
                op: Op::Alloc {
                    addr: address,
                    size,
                    align,
                },
                ticks,
                stack,
                thread,
            },
            EventKind::Free { address, .. } if address != 0 => Timed {
                op: Op::Free { addr: address },
                ticks,
                stack: 0,
                thread,
            },
            EventKind::Realloc {
                old_address,
                new_address,
                new_size,
                stack,
                ..
            } if new_address != 0 => Timed {
                op: Op::Realloc {
                    old: old_address,
                    addr: new_address,
                    size: new_size,
                },
                ticks,
                stack,
                thread,
            },
            EventKind::Access { address, write } => Timed {
                op: Op::Access {
                    addr: address,
                    write,
                },
                ticks,
                stack: 0,
                thread,
            },
            EventKind::Marker { .. } => Timed {
                op: Op::Sync,
                ticks,
                stack: 0,
                thread,
            },
            _ => return,
        };
        ops.push(timed);
    })?;
    order_across_clock_skew(&mut ops);
    Ok(Recorded {
        ops,
        analysis: Some(analysis),
    })
}

/// Moves a free that comes just before its block's allocation by another
/// thread to just after it: threads' events are merged by time, and cores'
/// clocks disagree by some ticks, so a block handed over and freed at
/// once can look freed first (the model allows for it the same way, see
/// [`crate::model::CLOCK_SKEW_TICKS`]). Without this the replay skipped
/// the free and leaked the block.
fn order_across_clock_skew(ops: &mut [Timed]) {
    let mut live: IdMap<u64, ()> = IdMap::default();
    let mut i = 0;
    while i < ops.len() {
        match ops[i].op {
            Op::Alloc { addr, .. } => {
                live.insert(addr, ());
            }
            Op::Realloc { old, addr, .. } => {
                live.remove(&old);
                live.insert(addr, ());
            }
            Op::Free { addr } if live.remove(&addr).is_none() => {
                let (ticks, thread) = (ops[i].ticks, ops[i].thread);
                let limit = ticks.saturating_add(crate::model::CLOCK_SKEW_TICKS);
                let allocation = ops[i + 1..]
                    .iter()
                    .take_while(|t| t.ticks <= limit)
                    .position(|t| {
                        t.thread != thread
                            && matches!(t.op, Op::Alloc { addr: a, .. } | Op::Realloc { addr: a, .. } if a == addr)
                    });
                if let Some(k) = allocation {
                    // The free goes right after the allocation; the op now
                    // at `i` is looked at next.
                    ops[i..=i + 1 + k].rotate_left(1);
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The first allocation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Its index among the replayed operations.
    pub index: u64,
    /// Ticks of the event.
    pub ticks: u64,
    /// The size asked for.
    pub size: u64,
    /// The allocating stack.
    pub stack: u64,
    /// Free bytes then (fragmentation when at least the size).
    pub free_bytes: u64,
    /// The largest free block then.
    pub largest_free: u64,
}

/// What one replay through one model found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The model.
    pub model: String,
    /// The arena replayed against.
    pub arena: u64,
    /// The first failing allocation, if any.
    pub failure: Option<Failure>,
    /// Allocations that failed.
    pub failed: u64,
    /// Frees (and reallocations) of addresses not live in the replay.
    pub unknown_frees: u64,
    /// Blocks still allocated at the end.
    pub leaked_blocks: u64,
    /// The highest byte used.
    pub peak_footprint: u64,
    /// The most requested bytes live at once.
    pub max_live: u64,
    /// Johnstone and Wilson's #4: peak footprint / max live.
    pub jw4: f64,
    /// Largest `1 - largest free / total free` after any operation.
    pub frag_max: f64,
    /// Its mean over time.
    pub frag_mean: f64,
    /// Fragmentation over time: its largest value in each of
    /// [`FRAG_POINTS`] equal stretches of the recording (the first
    /// operation to the last; empty for a replay stopped at a failure).
    pub frag_series: Vec<f64>,
    /// Steps per operation.
    pub steps_mean: f64,
    /// See `steps_mean`.
    pub steps_p99: u64,
    /// See `steps_mean`.
    pub steps_max: u64,
    /// Nanoseconds per operation: the replay's mean.
    pub ns_mean: f64,
    /// 99th percentile and max over every 16th operation, timed alone.
    pub ns_p99: u64,
    /// See `ns_p99`.
    pub ns_max: u64,
    /// Operations replayed.
    pub ops: u64,
}

/// Stretches of the recording `Outcome::frag_series` has a value for.
pub const FRAG_POINTS: usize = 48;

/// `v` as an f64, exactly as `v as f64` rounds it, in the one
/// instruction a signed conversion takes where `v` fits in an i64 (every
/// byte count and tick difference here): the replay loop converts three
/// per operation, and the unsigned conversion is a branchy sequence.
#[inline(always)]
fn exact_f64(v: u64) -> f64 {
    if v <= i64::MAX as u64 {
        v as i64 as f64
    } else {
        v as f64
    }
}

/// The alignment a model gives a recorded request: the trace says 16 for
/// every request that asked for no more than malloc's natural alignment,
/// which an embedded heap serves at its own (`--align`); larger
/// alignments (`aligned_alloc`, Rust layouts) are honoured.
fn model_align(recorded: u64, cfg: &Config) -> u64 {
    if recorded <= 16 { cfg.align } else { recorded }
}

/// Replays `ops` through `kind` over `arena` bytes. With `stop_at_failure`
/// it stops at the first failed allocation (for the arena search).
pub fn run(
    kind: &ModelKind,
    cfg: &Config,
    arena: u64,
    ops: &[Timed],
    stop_at_failure: bool,
) -> Outcome {
    run_with(kind, cfg, arena, ops, &Handles::of(ops), stop_at_failure)
}

/// No handle (an operation that creates, ends or displaces none).
const NO_HANDLE: u32 = u32::MAX;

/// Which replayed block each recorded address stands for, worked out once
/// for a trace on the assumption that every allocation succeeds, as it
/// does in a replay until its first failure: each allocation takes a
/// handle (a number freed handles are reused for, so that there are no
/// more of them than blocks live at once), and a free, a reallocation or
/// an address reused while live names the handle it ends. A replay finds
/// its blocks by handle, in a vector, instead of by address in a hash map
/// (an insertion and a removal per block), and turns to the address map at
/// its first failure, from which the assumption no longer holds.
pub struct Handles {
    /// Per operation: the handle it creates, the one it ends (a free, a
    /// reallocation's old block), the one it displaces (its address was
    /// live: an allocation frees that block, a reallocation drops it).
    per_op: Vec<[u32; 3]>,
    /// How many handles there are.
    count: usize,
}

impl Handles {
    /// The handles of `ops` (none when more than 2^32 - 1 blocks are live
    /// at once: such a replay uses the address map throughout).
    pub fn of(ops: &[Timed]) -> Handles {
        let mut live: IdMap<u64, u32> = IdMap::default();
        let mut spare: Vec<u32> = Vec::new();
        let mut count = 0u32;
        let mut per_op = Vec::with_capacity(ops.len());
        for t in ops {
            // A new block at `addr`: its handle, and the one it displaces
            // (taken before that one is given back, so never the same).
            let mut create = |addr: u64, live: &mut IdMap<u64, u32>, spare: &mut Vec<u32>| {
                let h = spare.pop().unwrap_or_else(|| {
                    count += 1;
                    count - 1
                });
                let displaced = live.insert(addr, h);
                spare.extend(displaced);
                (h, displaced.unwrap_or(NO_HANDLE))
            };
            per_op.push(match t.op {
                Op::Alloc { addr, .. } => {
                    let (h, displaced) = create(addr, &mut live, &mut spare);
                    [h, NO_HANDLE, displaced]
                }
                Op::Free { addr } => {
                    let ended = live.remove(&addr);
                    spare.extend(ended);
                    [NO_HANDLE, ended.unwrap_or(NO_HANDLE), NO_HANDLE]
                }
                Op::Realloc { old, addr, .. } => {
                    // The old block's handle may be the new one's: a replay
                    // takes the old block out before it puts the new in.
                    let ended = if old != 0 { live.remove(&old) } else { None };
                    spare.extend(ended);
                    let (h, displaced) = create(addr, &mut live, &mut spare);
                    [h, ended.unwrap_or(NO_HANDLE), displaced]
                }
                Op::Access { .. } | Op::Sync | Op::Failed { .. } => [NO_HANDLE; 3],
            });
            if count == NO_HANDLE {
                return Handles {
                    per_op: Vec::new(),
                    count: 0,
                };
            }
        }
        Handles {
            per_op,
            count: count as usize,
        }
    }
}

/// The replayed blocks (the model's block, the size asked for) of a
/// replay's live recorded blocks: by handle until its first failure, by
/// recorded address after. Operation `i` names its blocks by both: its
/// handles, and the recorded address.
struct Blocks<'a> {
    handles: &'a Handles,
    /// Per handle: the block and its recorded address (empty once by
    /// address).
    slots: Vec<Option<(Allocation, u64, u64)>>,
    by_handle: bool,
    map: IdMap<u64, (Allocation, u64)>,
}

impl<'a> Blocks<'a> {
    fn new(handles: &'a Handles, ops: usize) -> Self {
        let by_handle = handles.per_op.len() == ops;
        Blocks {
            handles,
            slots: if by_handle {
                vec![None; handles.count]
            } else {
                Vec::new()
            },
            by_handle,
            map: IdMap::default(),
        }
    }

    /// Operation `i`'s handle of the given kind (0 created, 1 ended, 2
    /// displaced).
    fn handle(&self, i: usize, kind: usize) -> Option<usize> {
        let h = self.handles.per_op[i][kind];
        (h != NO_HANDLE).then_some(h as usize)
    }

    /// Is the block that operation `i` ends (at `addr`) live?
    fn holds_ended(&self, i: usize, addr: u64) -> bool {
        if self.by_handle {
            self.handle(i, 1).is_some_and(|h| self.slots[h].is_some())
        } else {
            self.map.contains_key(&addr)
        }
    }

    /// Takes out the block that operation `i` ends (at `addr`).
    fn take_ended(&mut self, i: usize, addr: u64) -> Option<(Allocation, u64)> {
        if self.by_handle {
            let h = self.handle(i, 1)?;
            self.slots[h].take().map(|(block, size, _)| (block, size))
        } else {
            self.map.remove(&addr)
        }
    }

    /// Puts back the block that operation `i` took out (its reallocation
    /// failed).
    fn restore_ended(&mut self, i: usize, addr: u64, block: (Allocation, u64)) {
        if self.by_handle {
            let h = self.handle(i, 1).expect("a block taken out by handle");
            self.slots[h] = Some((block.0, block.1, addr));
        } else {
            self.map.insert(addr, block);
        }
    }

    /// Puts the block that operation `i` creates at `addr`; returns the
    /// block it displaces (one live at the same address).
    #[inline]
    fn put(&mut self, i: usize, addr: u64, block: (Allocation, u64)) -> Option<(Allocation, u64)> {
        if !self.by_handle {
            return self.map.insert(addr, block);
        }
        let displaced = self
            .handle(i, 2)
            .and_then(|h| self.slots[h].take())
            .map(|(block, size, _)| (block, size));
        let h = self.handle(i, 0).expect("an allocation creates a handle");
        self.slots[h] = Some((block.0, block.1, addr));
        displaced
    }

    /// From now on, by recorded address.
    fn by_address(&mut self) {
        if self.by_handle {
            self.by_handle = false;
            for (block, size, addr) in self.slots.drain(..).flatten() {
                self.map.insert(addr, (block, size));
            }
        }
    }

    /// Live blocks.
    fn len(&self) -> usize {
        self.map.len() + self.slots.iter().filter(|b| b.is_some()).count()
    }
}

/// [`run`] with the handles of `ops` (from [`Handles::of`]), for callers
/// that replay the same operations many times.
pub fn run_with(
    kind: &ModelKind,
    cfg: &Config,
    arena: u64,
    ops: &[Timed],
    handles: &Handles,
    stop_at_failure: bool,
) -> Outcome {
    let mut heap = kind.build(arena, cfg);
    let mut blocks = Blocks::new(handles, ops.len());
    let mut out = Outcome {
        model: kind.name(),
        arena,
        failure: None,
        failed: 0,
        unknown_frees: 0,
        leaked_blocks: 0,
        peak_footprint: 0,
        max_live: 0,
        jw4: 0.0,
        frag_max: 0.0,
        frag_mean: 0.0,
        frag_series: Vec::new(),
        steps_mean: 0.0,
        steps_p99: 0,
        steps_max: 0,
        ns_mean: 0.0,
        ns_p99: 0,
        ns_max: 0,
        ops: 0,
    };
    let mut steps = counts::Counts::default();
    let mut timed = Durations::default();
    let mut steps_total = 0u64;
    let mut live = 0u64;
    let mut frag_area = 0.0f64;
    let first_ticks = ops.first().map_or(0, |o| o.ticks);
    let mut last_ticks = first_ticks;
    let mut last_frag = 0.0f64;
    let span = ops
        .last()
        .map_or(0, |o| o.ticks.saturating_sub(first_ticks));
    // Each stretch's largest fragmentation, below every value (which are
    // never NaN) until an operation falls in it: one comparison an
    // operation (`f64::max` also orders NaNs).
    let mut series = vec![f64::NEG_INFINITY; FRAG_POINTS];
    // A multiplication per operation (a 128-bit division cost more than
    // some models' whole operation).
    let scale = FRAG_POINTS as f64 / (span as f64 + 1.0);
    let stretch = |ticks: u64| {
        // (Through i64, which saturates as usize would: the same point.)
        ((exact_f64(ticks.saturating_sub(first_ticks)) * scale) as i64 as usize)
            .min(FRAG_POINTS - 1)
    };
    let started = Instant::now();
    let mut counted = 0u64;
    for (i, t) in ops.iter().enumerate() {
        if !t.op.is_allocation() {
            continue;
        }
        counted += 1;
        let clock = (i % 16 == 0).then(Instant::now);
        let mut failed_here = None;
        match t.op {
            // A request larger than the arena fails without asking the
            // model (whose arithmetic need not survive sizes near 2^64, as
            // a foreign log may hold).
            Op::Alloc { size, .. } | Op::Realloc { size, .. } if size > arena.min(MAX_ARENA) => {
                if let Op::Realloc { old, .. } = t.op
                    && old != 0
                    && !blocks.holds_ended(i, old)
                {
                    out.unknown_frees += 1;
                }
                failed_here = Some(size);
            }
            Op::Alloc { addr, size, align } => match heap.alloc(size, model_align(align, cfg)) {
                Some(block) => {
                    if let Some((old, old_size)) = blocks.put(i, addr, (block, size)) {
                        // The trace reused a live address: its free was lost.
                        heap.free(old);
                        live -= old_size;
                    }
                    live += size;
                }
                None => failed_here = Some(size),
            },
            Op::Free { addr } => match blocks.take_ended(i, addr) {
                Some((block, size)) => {
                    heap.free(block);
                    live -= size;
                }
                None => out.unknown_frees += 1,
            },
            Op::Realloc { old, addr, size } => {
                let previous = if old != 0 {
                    blocks.take_ended(i, old)
                } else {
                    None
                };
                if old != 0 && previous.is_none() {
                    out.unknown_frees += 1;
                }
                match heap.alloc(size, cfg.align) {
                    Some(block) => {
                        if let Some((pat, psize)) = previous {
                            // The copy: one step per word.
                            steps_total += psize.min(size).div_ceil(8);
                            heap.free(pat);
                            live -= psize;
                        }
                        // A block live at `addr` is dropped, not freed.
                        blocks.put(i, addr, (block, size));
                        live += size;
                    }
                    None => {
                        // The old block stays (realloc failed).
                        if let Some(p) = previous {
                            blocks.restore_ended(i, old, p);
                        }
                        failed_here = Some(size);
                    }
                }
            }
            Op::Access { .. } | Op::Sync | Op::Failed { .. } => unreachable!("skipped above"),
        }
        if failed_here.is_some() {
            // Handles assume that every allocation succeeds.
            blocks.by_address();
        }
        let s = heap.take_steps();
        if let Some(c) = clock {
            timed.record(c.elapsed().as_nanos() as u64, 1);
        }
        steps.record(s);
        steps_total += s;
        out.max_live = out.max_live.max(live);
        let st = heap.stats();
        frag_area += last_frag * exact_f64(t.ticks.saturating_sub(last_ticks));
        last_ticks = t.ticks;
        last_frag = if st.free_total == 0 {
            0.0
        } else {
            1.0 - exact_f64(st.largest_free) / exact_f64(st.free_total)
        };
        out.frag_max = out.frag_max.max(last_frag);
        let k = stretch(t.ticks);
        if last_frag > series[k] {
            series[k] = last_frag;
        }
        if let Some(size) = failed_here {
            out.failed += 1;
            if out.failure.is_none() {
                out.failure = Some(Failure {
                    index: i as u64,
                    ticks: t.ticks,
                    size,
                    stack: t.stack,
                    free_bytes: st.free_total,
                    largest_free: st.largest_free,
                });
            }
            if stop_at_failure {
                out.ops = counted;
                return out;
            }
        }
    }
    let elapsed = started.elapsed();
    out.ops = counted;
    let st = heap.stats();
    out.peak_footprint = st.high_water;
    out.leaked_blocks = blocks.len() as u64;
    out.jw4 = if out.max_live == 0 {
        0.0
    } else {
        st.high_water as f64 / out.max_live as f64
    };
    let span = last_ticks.saturating_sub(first_ticks);
    out.frag_mean = if span == 0 {
        last_frag
    } else {
        frag_area / span as f64
    };
    // A stretch with no operation kept the fragmentation of the last.
    let mut carried = 0.0;
    for v in &mut series {
        if *v == f64::NEG_INFINITY {
            *v = carried;
        }
        carried = *v;
    }
    out.frag_series = series;
    out.steps_mean = steps_total as f64 / out.ops.max(1) as f64;
    out.steps_p99 = steps.quantile(0.99);
    out.steps_max = steps.max();
    out.ns_mean = elapsed.as_nanos() as f64 / out.ops.max(1) as f64;
    out.ns_p99 = timed.quantile(0.99);
    out.ns_max = timed.max();
    out
}

/// What a replay skips of a trace, whatever it replays against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Frees (and reallocations) of addresses not allocated in the trace
    /// (allocated before recording began, or a foreign log's damage).
    pub unknown_frees: u64,
    /// Allocations that failed when they were recorded (an RMM log's
    /// `allocate failure` rows, device allocations that failed): not
    /// replayed.
    pub recorded_failures: u64,
}

/// Counts what every replay of `ops` skips.
pub fn skipped(ops: &[Timed]) -> Skipped {
    let mut live: IdMap<u64, ()> = IdMap::default();
    let mut s = Skipped::default();
    for t in ops {
        match t.op {
            Op::Alloc { addr, .. } => {
                live.insert(addr, ());
            }
            Op::Free { addr } => {
                if live.remove(&addr).is_none() {
                    s.unknown_frees += 1;
                }
            }
            Op::Realloc { old, addr, .. } => {
                if old != 0 && live.remove(&old).is_none() {
                    s.unknown_frees += 1;
                }
                live.insert(addr, ());
            }
            Op::Failed { .. } => s.recorded_failures += 1,
            Op::Access { .. } | Op::Sync => {}
        }
    }
    s
}

/// An arena every model fits (unless a request is larger than any block it
/// has, as a slab's): twice everything ever allocated, headers and
/// alignment included, as a power of two (for buddy); None past 1 TiB.
fn ceiling(cfg: &Config, ops: &[Timed]) -> Option<u64> {
    let total: u64 = ops
        .iter()
        .map(|t| match t.op {
            Op::Alloc { size, align, .. } => size
                .saturating_add(cfg.header)
                .saturating_add(align.max(cfg.align)),
            Op::Realloc { size, .. } => size.saturating_add(cfg.header + cfg.align),
            Op::Free { .. } | Op::Access { .. } | Op::Sync | Op::Failed { .. } => 0,
        })
        .fold(0u64, u64::saturating_add);
    let c = total
        .saturating_mul(2)
        .max(4096)
        .checked_next_power_of_two()?;
    (c <= MAX_ARENA).then_some(c)
}

/// The largest arena a model replays over (1 TiB).
pub const MAX_ARENA: u64 = 1 << 40;

/// The smallest arena through which `ops` replay with no failed
/// allocation, to within 0.1% (or one alignment unit), or None if none up
/// to 1 TiB does. The search starts from what an unbounded replay used:
/// the peak live bytes below, the peak footprint above.
pub fn smallest_arena(kind: &ModelKind, cfg: &Config, ops: &[Timed]) -> Option<u64> {
    smallest_arena_with(kind, cfg, ops, &Handles::of(ops))
}

/// [`smallest_arena`] with the handles of `ops`.
fn smallest_arena_with(
    kind: &ModelKind,
    cfg: &Config,
    ops: &[Timed],
    handles: &Handles,
) -> Option<u64> {
    let unit = cfg.align.max(8);
    let fits = |arena: u64| {
        run_with(kind, cfg, arena, ops, handles, true)
            .failure
            .is_none()
    };
    let ceiling = ceiling(cfg, ops)?;
    let unbounded = run_with(kind, cfg, ceiling, ops, handles, true);
    if unbounded.failure.is_some() {
        return None;
    }
    let mut lo = unbounded.max_live.saturating_sub(1);
    let mut hi = unbounded.peak_footprint.max(unit).div_ceil(unit) * unit;
    while !fits(hi) {
        lo = hi;
        hi = hi.checked_mul(2)?;
        if hi > 1 << 40 {
            return None;
        }
    }
    // fits(hi), and nothing below lo can fit.
    while hi - lo > unit.max(hi / 1000) {
        let mid = (lo + (hi - lo) / 2) / unit * unit;
        if mid <= lo {
            break;
        }
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The report of one model: the smallest arena that fits, and the replay
/// at the arena asked for (or at that smallest arena).
#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    /// The smallest arena that never fails (None: none up to 1 TiB).
    pub smallest_arena: Option<u64>,
    /// The replay.
    pub outcome: Outcome,
}

/// The smallest arena of each of `kinds` ([`smallest_arena`]), the
/// models' searches spread over the machine's cores: a search is a dozen
/// replays or so, one after another, and the models' are independent
/// (`--embedded all` on a python3 trace of 5.8 M operations spent about 70
/// of its 75 s in them, on one core of two).
fn smallest_arenas(
    kinds: &[ModelKind],
    cfg: &Config,
    ops: &[Timed],
    handles: &Handles,
) -> Vec<Option<u64>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(kinds.len());
    if workers <= 1 {
        return kinds
            .iter()
            .map(|k| smallest_arena_with(k, cfg, ops, handles))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut found = vec![None; kinds.len()];
    std::thread::scope(|scope| {
        let searches: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(k) = kinds.get(i) else {
                            return mine;
                        };
                        mine.push((i, smallest_arena_with(k, cfg, ops, handles)));
                    }
                })
            })
            .collect();
        for search in searches {
            for (i, arena) in search.join().expect("an arena search panicked") {
                found[i] = arena;
            }
        }
    });
    found
}

/// Replays `ops` through each of `kinds`, best first (the smallest arena
/// that fits, then the fewest steps at the worst). The smallest arenas are
/// searched for in parallel; the replays reported (whose time per
/// operation is measured) run one at a time, alone.
pub fn compare(kinds: &[ModelKind], cfg: &Config, ops: &[Timed]) -> Vec<ModelReport> {
    let handles = Handles::of(ops);
    let smallest = smallest_arenas(kinds, cfg, ops, &handles);
    let mut reports: Vec<ModelReport> = kinds
        .iter()
        .zip(smallest)
        .map(|(k, smallest)| {
            let arena = cfg
                .arena
                .or(smallest)
                .or_else(|| ceiling(cfg, ops))
                .unwrap_or(1 << 30);
            ModelReport {
                smallest_arena: smallest,
                outcome: run_with(k, cfg, arena, ops, &handles, false),
            }
        })
        .collect();
    reports.sort_by(|a, b| {
        (
            a.outcome.failure.is_some(),
            a.smallest_arena.unwrap_or(u64::MAX),
            a.outcome.steps_max,
        )
            .cmp(&(
                b.outcome.failure.is_some(),
                b.smallest_arena.unwrap_or(u64::MAX),
                b.outcome.steps_max,
            ))
    });
    reports
}

/// Where a failure happened, for people: the time since the start and the
/// allocating function.
pub fn describe_stack(model: &Model, symbolizer: &mut crate::Symbolizer, stack: StackId) -> String {
    symbolizer
        .stack(model, stack)
        .site_frame()
        .map_or_else(|| "<no stack>".to_owned(), |l| l.to_string())
}

#[cfg(test)]
mod tests;
