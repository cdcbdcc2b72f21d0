//! `alloc-test1` and `alloc-testN`: a skewed size mix with three lifetimes.
//!
//! Modelled on the alloc-test benchmark (from node-dot-cpp) as run by
//! mimalloc-bench. Sizes are mostly under 64 bytes, with a tail up to 64 KiB.
//! Each new block goes to one of three pools: a short-lived FIFO ring (most
//! blocks, freed 64 allocations later), a medium pool of random replacement,
//! and a large long-lived pool that is rarely touched. Mixing lifetimes this
//! way leaves long-lived blocks scattered among short-lived ones, which tests
//! fragmentation and page reuse as well as speed. `alloc-testN` runs the same
//! per-thread work on two independent threads, so ideally it takes as long as
//! `alloc-test1`; the gap shows how well the allocator scales.

use std::collections::VecDeque;
use std::thread;

use super::{THREADS, scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const OPS_PER_THREAD: usize = 8_000_000;
const SHORT_RING: usize = 64;
const MEDIUM_SLOTS: usize = 1_024;
const LONG_SLOTS: usize = 16_384;

/// 70% up to 64 bytes, 25% up to 1 KiB, 4.5% up to 8 KiB, 0.5% up to 64 KiB.
fn size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => rng.range(8, 65),
        700..=949 => rng.range(65, 1025),
        950..=994 => rng.range(1025, 8193),
        _ => rng.range(8193, 64 * 1024 + 1),
    }
}

fn worker(seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let mut short: VecDeque<Block> = VecDeque::with_capacity(SHORT_RING);
    let mut medium: Vec<Option<Block>> = (0..MEDIUM_SLOTS).map(|_| None).collect();
    let mut long: Vec<Option<Block>> = (0..LONG_SLOTS).map(|_| None).collect();
    for _ in 0..ops {
        let block = Block::new(size(&mut rng));
        match rng.below(16) {
            0..=10 => {
                if short.len() == SHORT_RING {
                    short.pop_front();
                }
                short.push_back(block);
            }
            11..=14 => medium[rng.below(MEDIUM_SLOTS)] = Some(block),
            _ => long[rng.below(LONG_SLOTS)] = Some(block),
        }
    }
}

/// Runs the single-threaded variant.
pub fn run_single(scale: f64) {
    worker(seed(8, 0, 0), scaled(OPS_PER_THREAD, scale));
}

/// Runs the two-thread variant: the same work per thread, on two threads.
pub fn run_threads(scale: f64) {
    let ops = scaled(OPS_PER_THREAD, scale);
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || worker(seed(8, t, 0), ops));
        }
    });
}
