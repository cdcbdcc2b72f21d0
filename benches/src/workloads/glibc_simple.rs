//! `glibc-simple`: the single-threaded fast path.
//!
//! Modelled on glibc's bench-malloc-simple as run by mimalloc-bench. One thread
//! allocates a batch of blocks of one fixed small size, then frees them in the
//! same order, for each size from 16 bytes to 1 KiB, many times over. There is
//! no contention and no size variety, so this is the cost of the allocation
//! and free fast paths and of the size-class lookup, nothing else.

use super::scaled;
use crate::block::Block;

const SIZES: [usize; 7] = [16, 32, 64, 128, 256, 512, 1024];
const BATCH: usize = 1_000;
const ROUNDS: usize = 800;

/// Runs the workload.
pub fn run(scale: f64) {
    let rounds = scaled(ROUNDS, scale);
    let mut batch: Vec<Block> = Vec::with_capacity(BATCH);
    for _ in 0..rounds {
        for size in SIZES {
            batch.extend((0..BATCH).map(|_| Block::new(size)));
            // Clearing drops, and so frees, the blocks in allocation order.
            batch.clear();
        }
    }
}
