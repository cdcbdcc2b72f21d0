//! `cache-scratch`: passive false sharing.
//!
//! Modelled on the cache-scratch test from the Hoard suite as run by
//! mimalloc-bench. The main thread allocates small objects for the workers,
//! back to back and alternating between them, and hands them over. Each worker
//! frees its objects, then repeatedly allocates objects of the same size,
//! writes them many times and frees them. An allocator that lets a thread
//! reuse blocks freed into its cache but carved from another thread's cache
//! lines keeps both workers writing to shared lines, and the ping-pong of
//! those lines between cores shows up as a many-fold slowdown. The allocations
//! are few; what is measured is where the allocator puts them.
//!
//! The original hands each worker one object. Whether two such objects share a
//! 64-byte line then depends on where the heap happens to start (with glibc on
//! the benchmark machine they did not), so each worker gets four interleaved
//! objects instead, which guarantees that neighbours from different workers
//! share a line whenever the allocator places them densely.

use std::thread;

use super::{THREADS, scaled};
use crate::block::Block;

const OBJECT_SIZE: usize = 8;
const OBJECTS_PER_WORKER: usize = 4;
const ITERATIONS: usize = 1_000;
const WRITES_PER_ITERATION: usize = 28_000;

/// Runs the workload.
pub fn run(scale: f64) {
    let iterations = scaled(ITERATIONS, scale);
    // The vectors are allocated first so that the objects themselves are
    // allocated consecutively, alternating between the workers.
    let mut handouts: Vec<Vec<Block>> = (0..THREADS)
        .map(|_| Vec::with_capacity(OBJECTS_PER_WORKER))
        .collect();
    for _ in 0..OBJECTS_PER_WORKER {
        for handout in &mut handouts {
            handout.push(Block::filled(OBJECT_SIZE, 0));
        }
    }
    thread::scope(|s| {
        for handout in handouts {
            s.spawn(move || worker(handout, iterations));
        }
    });
}

fn worker(handout: Vec<Block>, iterations: usize) {
    drop(handout);
    for _ in 0..iterations {
        let mut objects: [Block; OBJECTS_PER_WORKER] =
            std::array::from_fn(|_| Block::filled(OBJECT_SIZE, 0));
        for write in 0..WRITES_PER_ITERATION {
            let object = write % OBJECTS_PER_WORKER;
            objects[object].bump(write / OBJECTS_PER_WORKER % OBJECT_SIZE);
        }
    }
}
