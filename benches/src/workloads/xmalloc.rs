//! `xmalloc`: a producer thread allocates, a consumer thread frees.
//!
//! Modelled on xmalloc-test (Lever & Boreham) as run by mimalloc-bench. The
//! producer allocates blocks of 8..512 bytes, initialises them, and sends them
//! in batches through a bounded queue to the consumer, which frees them. Almost
//! every free is a remote free, so this measures how cheaply an allocator gives
//! memory back to a heap owned by another thread, and, through peak RSS,
//! whether it lets those frees pile up before the owner can reuse them.

use std::sync::mpsc;
use std::thread;

use super::{scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const BATCH: usize = 128;
const BATCHES: usize = 12_000;
/// Batches in flight at most; the bound keeps the producer from running away
/// from the consumer, as a real pipeline with back-pressure would.
const QUEUE_DEPTH: usize = 32;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 512;

/// Runs the workload.
pub fn run(scale: f64) {
    let batches = scaled(BATCHES, scale);
    let (sender, receiver) = mpsc::sync_channel::<Vec<Block>>(QUEUE_DEPTH);
    thread::scope(|s| {
        s.spawn(move || {
            let mut rng = Rng::new(seed(2, 0, 0));
            for _ in 0..batches {
                let batch: Vec<Block> = (0..BATCH)
                    .map(|_| {
                        let size = rng.range(MIN_SIZE, MAX_SIZE + 1);
                        // Small messages are written in full, as a producer would.
                        if size <= 64 {
                            Block::filled(size, 0x5A)
                        } else {
                            Block::new(size)
                        }
                    })
                    .collect();
                sender.send(batch).expect("the xmalloc consumer hung up");
            }
        });
        s.spawn(move || {
            // Dropping a batch frees its blocks and the vector holding them,
            // all of which the producer allocated.
            for batch in receiver {
                drop(batch);
            }
        });
    });
}
