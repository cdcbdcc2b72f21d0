//! Thread events: their compact encoding, written by the recording thread
//! and read back by the decoder, with the per-thread model both keep in
//! step (`ThreadCodec`).
//!
//! Why a model: most of a trace is events, and most of an event is
//! predictable from what the same thread did just before. Times are stored
//! as the difference from the thread's previous event, in 32-tick units (about
//! 10 ns), and a small difference fits in the event's first byte together
//! with its kind. An allocation's address is stored as the difference from
//! the thread's previous allocation of about the same size (16-byte steps
//! up to 1 KiB, then powers of two), which an allocator with size classes
//! usually places nearby. A free of one of the thread's last eight
//! allocations (the common short-lived block) is stored
//! as that allocation's rank, one byte; other frees as the difference from
//! the previous free. Addresses are multiples of 8, so differences are
//! stored in 8-byte units. See `docs/trace-format.md` for the byte layout.

use super::encode::{Cursor, put_svar, put_u8, put_uvar};

/// Event kinds (low three bits of an event's first byte).
pub mod kind {
    /// An allocation with alignment of at most 16.
    pub const ALLOC: u8 = 1;
    /// An allocation with a larger alignment.
    pub const ALLOC_ALIGNED: u8 = 2;
    /// A free of an address coded against the previous free.
    pub const FREE: u8 = 3;
    /// A free of one of the thread's last allocations, by rank.
    pub const FREE_RECENT: u8 = 4;
    /// A reallocation.
    pub const REALLOC: u8 = 5;
    /// A user marker.
    pub const MARKER: u8 = 6;
    /// An event of a kind named by the byte that follows (`EXT_*`).
    pub const EXTENDED: u8 = 7;
    /// Extended: the thread's scope from here on (name, instance).
    pub const EXT_SCOPE: u8 = 0;
    /// Extended: a scope instance ended.
    pub const EXT_SCOPE_END: u8 = 1;
    /// Extended: the program read or wrote memory at an address (an
    /// access annotation, for the distributed models' coherence counts).
    pub const EXT_ACCESS: u8 = 2;
    /// Extended: a memory error (an invalid free or reallocation), with the
    /// offending call's stack.
    pub const EXT_ERROR: u8 = 3;
    /// Extended: a block the leak scan found unreachable.
    pub const EXT_LEAK: u8 = 4;
    /// Extended: a leak scan ended (after its `EXT_LEAK` events).
    pub const EXT_LEAK_SCAN: u8 = 5;
    /// Extended: device or network memory (see `trace::device`).
    pub const EXT_DEVICE: u8 = 6;
}

/// First-byte bit: a latency follows.
const HAS_LATENCY: u8 = 8;
/// Time unit: event times are multiples of 2^5 ticks.
pub const TIME_SHIFT: u32 = 5;
/// Latency unit: latencies are multiples of 2^3 ticks.
pub const LATENCY_SHIFT: u32 = 3;
/// Allocations remembered for `FREE_RECENT`.
const RECENT: usize = 8;
/// Size buckets for address prediction: by 16-byte steps up to 1 KiB (65
/// buckets, 0 to 64), then by bit length (up to 95); in traces of
/// versions 1 to 4, by bit length alone (up to 23). An allocator with size
/// classes places blocks of about the same size together, so the finer
/// buckets predict better where sizes mix: 20% fewer address bytes on a
/// `cc1` trace (BENCHMARKS.md).
const BUCKETS: usize = 96;
/// Buckets of traces of versions 1 to 4.
const BIT_LENGTH_BUCKETS: usize = 24;
/// The first format version with the finer buckets.
const FINE_BUCKETS_SINCE: u64 = 5;

/// The most bytes one encoded event can take.
pub const MAX_EVENT_BYTES: usize = 1 + 7 * 10 + 1;

/// What an event says, with absolute times (ticks) and addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawEvent {
    /// An allocation.
    Alloc {
        /// Ticks when it returned.
        time: u64,
        /// Block address (a multiple of 8).
        address: u64,
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
        /// Stack trie id.
        stack: u64,
        /// Ticks the call took (0: not measured).
        latency: u64,
    },
    /// A free.
    Free {
        /// Ticks when it returned.
        time: u64,
        /// Block address (a multiple of 8).
        address: u64,
        /// Ticks the call took (0: not measured).
        latency: u64,
    },
    /// A reallocation.
    Realloc {
        /// Ticks when it returned.
        time: u64,
        /// Old block address.
        old_address: u64,
        /// New block address.
        new_address: u64,
        /// New requested size.
        new_size: u64,
        /// Stack trie id.
        stack: u64,
        /// Ticks the call took (0: not measured).
        latency: u64,
    },
    /// A user marker.
    Marker {
        /// Ticks when it was set.
        time: u64,
        /// STRING id of its text.
        string: u64,
    },
    /// The thread's events from here on belong to a scope instance.
    Scope {
        /// Ticks of the first event in it.
        time: u64,
        /// STRING id of the scope's name (0: no scope).
        string: u64,
        /// The instance (0: no scope).
        instance: u64,
    },
    /// A scope instance ended.
    ScopeEnd {
        /// Ticks when it ended.
        time: u64,
        /// The instance.
        instance: u64,
    },
    /// A memory error: an invalid pointer given to `call`.
    Error {
        /// Ticks.
        time: u64,
        /// What was wrong (`trace::error::*`).
        error: u8,
        /// The pointer.
        address: u64,
        /// STRING id of the call's name (`free`, `realloc`, `dealloc`).
        call: u64,
        /// The offending call's stack.
        stack: u64,
    },
    /// A block the leak scan found unreachable: nothing outside leaked
    /// blocks points into it. `direct`: not pointed to by another leaked
    /// block either (or the representative of a leaked cycle).
    Leak {
        /// Ticks.
        time: u64,
        /// Start of the block (memtally's block, which may begin before an
        /// over-aligned pointer handed out in it).
        address: u64,
        /// Bytes of the block (its size class, at least what was asked).
        size: u64,
        /// A direct leak (else indirect).
        direct: bool,
    },
    /// A leak scan ended: its totals, over every block (in sampled mode,
    /// only sampled blocks have `Leak` events).
    LeakScan {
        /// Ticks.
        time: u64,
        /// Ticks when the world was stopped: the scan saw the heap as it
        /// was then.
        stopped_at: u64,
        /// `trace::leak_status::*`.
        status: u8,
        /// Directly leaked blocks and their bytes.
        direct: [u64; 2],
        /// Indirectly leaked blocks and their bytes.
        indirect: [u64; 2],
    },
    /// An access annotation: memory at `address` read or written.
    Access {
        /// Ticks.
        time: u64,
        /// The address.
        address: u64,
        /// A write (else a read).
        write: bool,
    },
    /// Device or network memory, seen by the gpu-shim: an allocation, a
    /// free or a failed allocation (see `trace::device`).
    Device {
        /// Ticks when the call returned.
        time: u64,
        /// `trace::device::op::*`.
        op: u8,
        /// `trace::device::memory::*`.
        memory: u8,
        /// The device's ordinal (`trace::device::HOST` for host memory).
        device: u32,
        /// STRING id of the API the program called (`cudaMalloc`,
        /// `cuMemAlloc_v2`, ...).
        api: u64,
        /// The address (0 for a failed allocation).
        address: u64,
        /// Bytes (asked for, for a failure; 0 for a free).
        size: u64,
        /// Stack trie id (0 for a free).
        stack: u64,
        /// The physical allocation a map or retain refers to (0 for other
        /// operations).
        handle: u64,
    },
}

// Every recorded event is built as a RawEvent on the recording path: a new
// kind must not make the common ones larger than an allocation's six words
// and the tag.
const _: () = assert!(core::mem::size_of::<RawEvent>() <= 56);

impl RawEvent {
    /// Ticks of the event.
    pub(crate) fn time(&self) -> u64 {
        match *self {
            RawEvent::Alloc { time, .. }
            | RawEvent::Free { time, .. }
            | RawEvent::Realloc { time, .. }
            | RawEvent::Marker { time, .. }
            | RawEvent::Scope { time, .. }
            | RawEvent::ScopeEnd { time, .. }
            | RawEvent::Access { time, .. }
            | RawEvent::Device { time, .. }
            | RawEvent::Leak { time, .. }
            | RawEvent::LeakScan { time, .. }
            | RawEvent::Error { time, .. } => time,
        }
    }
}

/// The per-thread model shared by encoder and decoder. A thread's stream
/// starts from `ThreadCodec::new()` (this version's model) or, for a trace
/// of an older version, `ThreadCodec::for_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCodec {
    time_units: u64,
    last_alloc: [u64; BUCKETS],
    last_free: u64,
    /// The thread's last allocations, most recent first; 0 marks an empty
    /// entry (no block lives at address 0).
    recent: [u64; RECENT],
    /// Size buckets by bit length alone (versions 1 to 4).
    bit_length_buckets: bool,
}

impl ThreadCodec {
    /// The state every thread's stream starts from, in this version.
    pub const fn new() -> Self {
        ThreadCodec {
            time_units: 0,
            last_alloc: [0; BUCKETS],
            last_free: 0,
            recent: [0; RECENT],
            bit_length_buckets: false,
        }
    }

    /// The state a thread's stream starts from in a trace of format
    /// `version`.
    pub const fn for_version(version: u64) -> Self {
        let mut c = Self::new();
        c.bit_length_buckets = version < FINE_BUCKETS_SINCE;
        c
    }

    /// The address-prediction bucket of an allocation of `size` bytes.
    #[inline]
    fn bucket(&self, size: u64) -> usize {
        let bits = (u64::BITS - size.leading_zeros()) as usize;
        if self.bit_length_buckets {
            bits.min(BIT_LENGTH_BUCKETS - 1)
        } else if size <= 1024 {
            (size as usize).div_ceil(16)
        } else {
            // 1025 and up: bit length 11 and up, from bucket 65.
            (65 + bits - 11).min(BUCKETS - 1)
        }
    }
}

impl Default for ThreadCodec {
    fn default() -> Self {
        Self::new()
    }
}

fn delta8(to: u64, from: u64) -> i64 {
    (to.wrapping_sub(from) as i64) >> 3
}

fn undelta8(from: u64, d: i64) -> u64 {
    from.wrapping_add((d as u64) << 3)
}

impl ThreadCodec {
    fn push_recent(&mut self, address: u64) {
        self.recent.copy_within(0..RECENT - 1, 1);
        self.recent[0] = address;
    }

    fn take_recent(&mut self, k: usize) -> u64 {
        let a = self.recent[k];
        self.recent.copy_within(k + 1.., k);
        self.recent[RECENT - 1] = 0;
        a
    }

    fn forget(&mut self, address: u64) {
        if let Some(k) = self.recent.iter().position(|&a| a == address) {
            self.take_recent(k);
        }
    }

    /// Encodes `event` (times must not go backwards within a thread).
    pub fn encode(&mut self, c: &mut Cursor<'_>, event: &RawEvent) {
        let units = (event.time() >> TIME_SHIFT).max(self.time_units);
        let dt = units - self.time_units;
        self.time_units = units;
        let head = |kind: u8, latency: u64| {
            let lat = if latency != 0 { HAS_LATENCY } else { 0 };
            let dt_bits = if dt < 15 { dt as u8 } else { 15 };
            kind | lat | (dt_bits << 4)
        };
        let tail_dt = |c: &mut Cursor<'_>| {
            if dt >= 15 {
                put_uvar(c, dt - 15);
            }
        };
        let put_latency = |c: &mut Cursor<'_>, latency: u64| {
            if latency != 0 {
                put_uvar(c, latency >> LATENCY_SHIFT);
            }
        };
        match *event {
            RawEvent::Alloc {
                address,
                size,
                align,
                stack,
                latency,
                ..
            } => {
                let aligned = align > 16;
                put_u8(
                    c,
                    head(
                        if aligned {
                            kind::ALLOC_ALIGNED
                        } else {
                            kind::ALLOC
                        },
                        latency,
                    ),
                );
                tail_dt(c);
                put_uvar(c, size);
                put_uvar(c, stack);
                let b = self.bucket(size);
                put_svar(c, delta8(address, self.last_alloc[b]));
                if aligned {
                    put_u8(c, align.trailing_zeros() as u8);
                }
                put_latency(c, latency);
                self.last_alloc[b] = address;
                self.push_recent(address);
            }
            RawEvent::Free {
                address, latency, ..
            } => {
                if let Some(k) = self.recent.iter().position(|&a| a == address && a != 0) {
                    put_u8(c, head(kind::FREE_RECENT, latency));
                    tail_dt(c);
                    put_uvar(c, k as u64);
                    self.take_recent(k);
                } else {
                    put_u8(c, head(kind::FREE, latency));
                    tail_dt(c);
                    put_svar(c, delta8(address, self.last_free));
                }
                put_latency(c, latency);
                self.last_free = address;
            }
            RawEvent::Realloc {
                old_address,
                new_address,
                new_size,
                stack,
                latency,
                ..
            } => {
                put_u8(c, head(kind::REALLOC, latency));
                tail_dt(c);
                put_svar(c, delta8(old_address, self.last_free));
                put_svar(c, delta8(new_address, old_address));
                put_uvar(c, new_size);
                put_uvar(c, stack);
                put_latency(c, latency);
                self.last_free = old_address;
                self.forget(old_address);
                let b = self.bucket(new_size);
                self.last_alloc[b] = new_address;
                self.push_recent(new_address);
            }
            RawEvent::Marker { string, .. } => {
                put_u8(c, head(kind::MARKER, 0));
                tail_dt(c);
                put_uvar(c, string);
            }
            RawEvent::Scope {
                string, instance, ..
            } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_SCOPE);
                put_uvar(c, string);
                put_uvar(c, instance);
            }
            RawEvent::ScopeEnd { instance, .. } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_SCOPE_END);
                put_uvar(c, instance);
            }
            RawEvent::Error {
                error,
                address,
                call,
                stack,
                ..
            } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_ERROR);
                put_u8(c, error);
                put_uvar(c, address);
                put_uvar(c, call);
                put_uvar(c, stack);
            }
            RawEvent::Access { address, write, .. } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_ACCESS);
                put_uvar(c, address);
                put_u8(c, u8::from(write));
            }
            RawEvent::Leak {
                address,
                size,
                direct,
                ..
            } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_LEAK);
                put_uvar(c, address);
                put_uvar(c, size);
                put_u8(c, u8::from(direct));
            }
            RawEvent::LeakScan {
                stopped_at,
                status,
                direct,
                indirect,
                ..
            } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_LEAK_SCAN);
                put_uvar(c, stopped_at);
                put_u8(c, status);
                for v in direct.into_iter().chain(indirect) {
                    put_uvar(c, v);
                }
            }
            RawEvent::Device {
                op,
                memory,
                device,
                api,
                address,
                size,
                stack,
                handle,
                ..
            } => {
                put_u8(c, head(kind::EXTENDED, 0));
                tail_dt(c);
                put_u8(c, kind::EXT_DEVICE);
                put_u8(c, op);
                put_u8(c, memory);
                put_uvar(c, u64::from(device));
                put_uvar(c, api);
                put_uvar(c, address);
                put_uvar(c, size);
                put_uvar(c, stack);
                if super::device::op::carries_handle(op) {
                    put_uvar(c, handle);
                }
            }
        }
    }
}

/// A source of event fields for [`ThreadCodec::decode`]: every read fails
/// with `None` at the end of the data.
pub trait FieldReader {
    /// One byte.
    fn u8(&mut self) -> Option<u8>;
    /// An unsigned varint.
    fn uvar(&mut self) -> Option<u64>;
    /// A signed varint.
    fn svar(&mut self) -> Option<i64>;
}

impl ThreadCodec {
    /// Decodes one event; `None` when the bytes are malformed or run out.
    pub fn decode(&mut self, r: &mut impl FieldReader) -> Option<RawEvent> {
        let head = r.u8()?;
        let k = head & 7;
        let has_latency = head & HAS_LATENCY != 0;
        let mut dt = u64::from(head >> 4);
        if dt == 15 {
            dt = dt.checked_add(r.uvar()?)?;
        }
        let units = self.time_units.checked_add(dt)?;
        self.time_units = units;
        let time = units << TIME_SHIFT;
        let latency = |r: &mut dyn FnMut() -> Option<u64>| -> Option<u64> {
            if has_latency {
                Some((r()? << LATENCY_SHIFT).max(1))
            } else {
                Some(0)
            }
        };
        Some(match k {
            kind::ALLOC | kind::ALLOC_ALIGNED => {
                let size = r.uvar()?;
                let stack = r.uvar()?;
                let b = self.bucket(size);
                let address = undelta8(self.last_alloc[b], r.svar()?);
                let align = if k == kind::ALLOC_ALIGNED {
                    let log2 = r.u8()?;
                    if log2 > 62 {
                        return None;
                    }
                    1u64 << log2
                } else {
                    16
                };
                let latency = latency(&mut || r.uvar())?;
                self.last_alloc[b] = address;
                self.push_recent(address);
                RawEvent::Alloc {
                    time,
                    address,
                    size,
                    align,
                    stack,
                    latency,
                }
            }
            kind::FREE => {
                let address = undelta8(self.last_free, r.svar()?);
                let latency = latency(&mut || r.uvar())?;
                self.last_free = address;
                RawEvent::Free {
                    time,
                    address,
                    latency,
                }
            }
            kind::FREE_RECENT => {
                let k = r.uvar()?;
                if k >= RECENT as u64 || self.recent[k as usize] == 0 {
                    return None;
                }
                let address = self.take_recent(k as usize);
                let latency = latency(&mut || r.uvar())?;
                self.last_free = address;
                RawEvent::Free {
                    time,
                    address,
                    latency,
                }
            }
            kind::REALLOC => {
                let old_address = undelta8(self.last_free, r.svar()?);
                let new_address = undelta8(old_address, r.svar()?);
                let new_size = r.uvar()?;
                let stack = r.uvar()?;
                let latency = latency(&mut || r.uvar())?;
                self.last_free = old_address;
                self.forget(old_address);
                let b = self.bucket(new_size);
                self.last_alloc[b] = new_address;
                self.push_recent(new_address);
                RawEvent::Realloc {
                    time,
                    old_address,
                    new_address,
                    new_size,
                    stack,
                    latency,
                }
            }
            kind::MARKER => RawEvent::Marker {
                time,
                string: r.uvar()?,
            },
            kind::EXTENDED => match r.u8()? {
                kind::EXT_SCOPE => RawEvent::Scope {
                    time,
                    string: r.uvar()?,
                    instance: r.uvar()?,
                },
                kind::EXT_SCOPE_END => RawEvent::ScopeEnd {
                    time,
                    instance: r.uvar()?,
                },
                kind::EXT_ERROR => RawEvent::Error {
                    time,
                    error: r.u8()?,
                    address: r.uvar()?,
                    call: r.uvar()?,
                    stack: r.uvar()?,
                },
                kind::EXT_LEAK => RawEvent::Leak {
                    time,
                    address: r.uvar()?,
                    size: r.uvar()?,
                    direct: match r.u8()? {
                        0 => false,
                        1 => true,
                        _ => return None,
                    },
                },
                kind::EXT_LEAK_SCAN => RawEvent::LeakScan {
                    time,
                    stopped_at: r.uvar()?,
                    status: r.u8()?,
                    direct: [r.uvar()?, r.uvar()?],
                    indirect: [r.uvar()?, r.uvar()?],
                },
                kind::EXT_DEVICE => {
                    let op = r.u8()?;
                    RawEvent::Device {
                        time,
                        op,
                        memory: r.u8()?,
                        device: u32::try_from(r.uvar()?).ok()?,
                        api: r.uvar()?,
                        address: r.uvar()?,
                        size: r.uvar()?,
                        stack: r.uvar()?,
                        handle: if super::device::op::carries_handle(op) {
                            r.uvar()?
                        } else {
                            0
                        },
                    }
                }
                kind::EXT_ACCESS => {
                    let address = r.uvar()?;
                    let write = match r.u8()? {
                        0 => false,
                        1 => true,
                        _ => return None,
                    };
                    RawEvent::Access {
                        time,
                        address,
                        write,
                    }
                }
                _ => return None,
            },
            _ => return None,
        })
    }
}
