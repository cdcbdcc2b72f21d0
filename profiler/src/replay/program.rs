//! A replay program: a trace's operations in a compact file that a replay
//! worker (one process per real allocator, `memtally replay --against`)
//! reads and runs, so that each allocator's time and peak RSS are its
//! own.
//!
//! Recorded addresses become dense *slots* (a freed slot is reused), so a
//! worker keeps its live blocks in a plain array; recorded threads become
//! dense thread numbers. Frees of addresses the trace never allocated are
//! left out. Layout: `MTREPLAY1\n`, then varints: thread count, slot count,
//! operation count, and per operation a kind byte (0 alloc, 1 free, 2
//! realloc), the thread, then alloc: slot, size, log2 alignment; free:
//! slot; realloc: old slot + 1 (0: none), new slot, size.

use super::{Op, Timed};
use crate::hash::IdMap;

const MAGIC: &[u8] = b"MTREPLAY1\n";

/// One operation of a replay program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Allocate into `slot`.
    Alloc {
        /// The slot.
        slot: u32,
        /// Size.
        size: u64,
        /// Alignment.
        align: u64,
    },
    /// Free `slot`.
    Free {
        /// The slot.
        slot: u32,
    },
    /// Reallocate `old` (or nothing) into `slot`.
    Realloc {
        /// The old slot.
        old: Option<u32>,
        /// The new slot.
        slot: u32,
        /// New size.
        size: u64,
    },
}

/// A replay program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// Threads (dense).
    pub threads: u32,
    /// Slots (dense).
    pub slots: u32,
    /// The operations in the global order, each with its thread.
    pub steps: Vec<(u32, Step)>,
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Builds the program of `ops`.
pub fn build(ops: &[Timed]) -> Program {
    let mut threads: IdMap<u64, u32> = IdMap::default();
    let mut slots: IdMap<u64, u32> = IdMap::default();
    let mut spare: Vec<u32> = Vec::new();
    let mut next_slot = 0u32;
    let mut p = Program::default();
    let mut slot_for = |addr: u64, slots: &mut IdMap<u64, u32>, spare: &mut Vec<u32>| -> u32 {
        let s = spare.pop().unwrap_or_else(|| {
            next_slot += 1;
            next_slot - 1
        });
        // A recorded block still at this address was never freed: its
        // slot stays taken.
        slots.insert(addr, s);
        s
    };
    let mut freed: Vec<u32> = Vec::new();
    for t in ops {
        let n = threads.len() as u32;
        let thread = *threads.entry(t.thread).or_insert(n);
        let step = match t.op {
            Op::Alloc { addr, size, align } => Step::Alloc {
                slot: slot_for(addr, &mut slots, &mut spare),
                size,
                align,
            },
            Op::Free { addr } => match slots.remove(&addr) {
                Some(slot) => {
                    freed.push(slot);
                    Step::Free { slot }
                }
                None => continue,
            },
            Op::Access { .. } | Op::Sync | Op::Failed { .. } => continue,
            Op::Realloc { old, addr, size } => {
                let old = if old != 0 { slots.remove(&old) } else { None };
                if let Some(o) = old {
                    freed.push(o);
                }
                Step::Realloc {
                    old,
                    slot: slot_for(addr, &mut slots, &mut spare),
                    size,
                }
            }
        };
        p.steps.push((thread, step));
        // A slot freed by this step may serve the next allocation.
        spare.append(&mut freed);
    }
    p.threads = threads.len() as u32;
    p.slots = next_slot;
    p
}

/// The program as bytes.
pub fn encode(p: &Program) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put(&mut out, u64::from(p.threads));
    put(&mut out, u64::from(p.slots));
    put(&mut out, p.steps.len() as u64);
    for &(thread, step) in &p.steps {
        match step {
            Step::Alloc { slot, size, align } => {
                out.push(0);
                put(&mut out, u64::from(thread));
                put(&mut out, u64::from(slot));
                put(&mut out, size);
                out.push(align.max(1).trailing_zeros() as u8);
            }
            Step::Free { slot } => {
                out.push(1);
                put(&mut out, u64::from(thread));
                put(&mut out, u64::from(slot));
            }
            Step::Realloc { old, slot, size } => {
                out.push(2);
                put(&mut out, u64::from(thread));
                put(&mut out, old.map_or(0, |o| u64::from(o) + 1));
                put(&mut out, u64::from(slot));
                put(&mut out, size);
            }
        }
    }
    out
}

/// A program's counts, and its steps as an iterator over the bytes
/// (allocation-free, for workers that must not disturb the allocator they
/// measure).
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    /// Threads.
    pub threads: u32,
    /// Slots.
    pub slots: u32,
    /// Steps.
    pub count: u64,
    body: &'a [u8],
    pos: usize,
    index: u64,
}

impl<'a> Reader<'a> {
    /// Reads the counts of the program in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Reader<'a>, String> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a memtally replay program (bad magic)")?;
        let mut r = Reader {
            threads: 0,
            slots: 0,
            count: 0,
            body,
            pos: 0,
            index: 0,
        };
        r.threads = r.get()? as u32;
        r.slots = r.get()? as u32;
        r.count = r.get()?;
        Ok(r)
    }

    fn get(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.body.get(self.pos).ok_or("replay program cut short")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("bad varint in replay program".into())
    }

    fn slot(&mut self) -> Result<u32, String> {
        let s = self.get()?;
        if s < u64::from(self.slots) {
            Ok(s as u32)
        } else {
            Err(format!("slot {s} out of range ({} slots)", self.slots))
        }
    }

    fn step(&mut self) -> Result<(u64, u32, Step), String> {
        let kind = self.get()?;
        let thread = self.get()? as u32;
        if thread >= self.threads {
            return Err(format!(
                "thread {thread} out of range ({} threads)",
                self.threads
            ));
        }
        let step = match kind {
            0 => {
                let slot = self.slot()?;
                let size = self.get()?;
                let log2 = self.get()?;
                if log2 > 40 {
                    return Err(format!("alignment 2^{log2} out of range"));
                }
                Step::Alloc {
                    slot,
                    size,
                    align: 1 << log2,
                }
            }
            1 => Step::Free { slot: self.slot()? },
            2 => {
                let old = match self.get()? {
                    0 => None,
                    o if o <= u64::from(self.slots) => Some(o as u32 - 1),
                    o => {
                        return Err(format!(
                            "slot {} out of range ({} slots)",
                            o - 1,
                            self.slots
                        ));
                    }
                };
                let slot = self.slot()?;
                Step::Realloc {
                    old,
                    slot,
                    size: self.get()?,
                }
            }
            k => return Err(format!("unknown step kind {k}")),
        };
        let index = self.index;
        self.index += 1;
        Ok((index, thread, step))
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<(u64, u32, Step), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            // Stop after an error.
            self.index = self.count;
        }
        Some(r)
    }
}

/// Reads a program; an error names what is wrong.
pub fn decode(bytes: &[u8]) -> Result<Program, String> {
    let r = Reader::new(bytes)?;
    let (threads, slots) = (r.threads, r.slots);
    let mut steps = Vec::with_capacity(r.count.min(1 << 28) as usize);
    for s in r {
        let (_, thread, step) = s?;
        steps.push((thread, step));
    }
    Ok(Program {
        threads,
        slots,
        steps,
    })
}
