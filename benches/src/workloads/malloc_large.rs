//! `malloc-large`: a few live blocks of 5-25 MiB, replaced over and over.
//!
//! Modelled on malloc-large from mimalloc-bench. One thread keeps eight slots
//! and repeatedly frees a random one and allocates a new block of 5 to 25 MiB
//! in its place, writing every page of it as a program filling a buffer would.
//! Blocks this size come straight from the operating system, so the question
//! is whether the allocator caches and reuses them or unmaps and maps afresh,
//! paying thousands of page faults per block; the page-fault count and the
//! system time in the report show which one it does, and peak RSS shows what
//! the caching costs.

use super::{scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const LIVE_SLOTS: usize = 8;
const ITERATIONS: usize = 200;
const MIN_SIZE: usize = 5 << 20;
const MAX_SIZE: usize = 25 << 20;

/// Runs the workload.
pub fn run(scale: f64) {
    let iterations = scaled(ITERATIONS, scale);
    let mut rng = Rng::new(seed(10, 0, 0));
    let mut live: Vec<Option<Block>> = (0..LIVE_SLOTS).map(|_| None).collect();
    for _ in 0..iterations {
        let i = rng.below(LIVE_SLOTS);
        live[i] = None;
        let mut block = Block::new(rng.range(MIN_SIZE, MAX_SIZE + 1));
        block.touch_pages();
        live[i] = Some(block);
    }
}
