//! `glibc-thread`: per-thread random replacement with mostly small sizes.
//!
//! Modelled on glibc's bench-malloc-thread as run by mimalloc-bench. Each of
//! two threads owns an array of slots and repeatedly frees a random slot and
//! refills it with a block whose size is usually below 128 bytes, sometimes up
//! to 2 KiB and rarely up to 32 KiB. Threads never share blocks, so this
//! measures the thread-local fast paths under a realistic size mix, plus how
//! well the allocator copes with a fragmented working set that never drains.

use std::thread;

use super::{THREADS, scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const SLOTS: usize = 2_000;
const OPS_PER_THREAD: usize = 8_000_000;

/// A size mix skewed towards small objects: 85% below 128 bytes, 12% up to
/// 2 KiB and 3% up to 32 KiB.
fn size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=84 => rng.range(8, 128),
        85..=96 => rng.range(128, 2048),
        _ => rng.range(2048, 32 * 1024 + 1),
    }
}

/// Runs the workload.
pub fn run(scale: f64) {
    let ops = scaled(OPS_PER_THREAD, scale);
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut rng = Rng::new(seed(5, t, 0));
                let mut slots: Vec<Option<Block>> = (0..SLOTS).map(|_| None).collect();
                for _ in 0..ops {
                    let i = rng.below(SLOTS);
                    slots[i] = None;
                    let size = size(&mut rng);
                    slots[i] = Some(Block::new(size));
                }
            });
        }
    });
}
