//! The segment map: one bit per 4 MiB of address space, set while a segment
//! of ours starts there.
//!
//! `free(p)` finds the segment header of `p` by masking, but it may only read
//! that header if the address really is one of our segments: the pointer may
//! come from another allocator, the stack, or be garbage, and the masked
//! address may not even be mapped. One bit test in this map makes that check
//! exact and cheap, which is what lets the allocator report invalid frees
//! instead of corrupting memory.
//!
//! The map is a static in `.bss`: 4 MiB of virtual memory covering the 47-bit
//! user address space of x86_64 (8 MiB for the 48-bit space of aarch64), of
//! which only the words for address ranges actually used are ever touched.

use crate::segment::SEGMENT_SHIFT;
use core::sync::atomic::{AtomicU64, Ordering};

#[cfg(target_arch = "x86_64")]
const ADDRESS_BITS: u32 = 47;
#[cfg(not(target_arch = "x86_64"))]
const ADDRESS_BITS: u32 = 48;

const CHUNKS: usize = 1 << (ADDRESS_BITS - SEGMENT_SHIFT);
const WORDS: usize = CHUNKS / 64;

static MAP: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

#[inline(always)]
fn index(addr: usize) -> Option<(usize, u64)> {
    let chunk = addr >> SEGMENT_SHIFT;
    if chunk >= CHUNKS {
        return None;
    }
    Some((chunk / 64, 1u64 << (chunk % 64)))
}

/// Is `segment` (a segment-aligned address) the start of a live segment?
#[inline(always)]
pub fn contains(segment: usize) -> bool {
    match index(segment) {
        Some((word, bit)) => MAP[word].load(Ordering::Relaxed) & bit != 0,
        None => false,
    }
}

/// Can a segment at this address be recorded in the map? Mappings outside
/// the covered address space are refused by the segment allocator.
pub fn covers(segment: usize) -> bool {
    index(segment).is_some()
}

/// Marks a segment as live. Called before any block of it is handed out.
pub fn insert(segment: usize) {
    if let Some((word, bit)) = index(segment) {
        MAP[word].fetch_or(bit, Ordering::Release);
    }
}

/// Marks a segment as gone. Called before its memory is unmapped.
pub fn remove(segment: usize) {
    if let Some((word, bit)) = index(segment) {
        MAP[word].fetch_and(!bit, Ordering::Release);
    }
}

/// Calls `f` with the address of every live segment, in address order (for
/// the leak scan, with the world stopped). Reads the whole map: words for
/// unused address ranges were never written and read as the zero page.
pub fn for_each(mut f: impl FnMut(usize)) {
    for (i, word) in MAP.iter().enumerate() {
        let mut bits = word.load(Ordering::Acquire);
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            f((i * 64 + b) << SEGMENT_SHIFT);
        }
    }
}

/// The map's own memory, which the leak scan must not take for roots.
pub fn static_range() -> (usize, usize) {
    (MAP.as_ptr() as usize, core::mem::size_of_val(&MAP))
}
