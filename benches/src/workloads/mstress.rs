//! `mstress`: mixed sizes, a shared transfer array and recreated threads.
//!
//! Modelled on the mstress test that ships with mimalloc and is run by
//! mimalloc-bench. Threads allocate objects of random sizes (mostly under
//! 512 bytes, sometimes up to 16 KiB, rarely 64-384 KiB). Some are freed at
//! once, most are kept in a thread-local array, and a quarter are swapped into
//! a transfer array shared by all threads, which frees whatever another thread
//! left in that slot. The threads are torn down and recreated several times, so
//! blocks outlive the thread that allocated them. This exercises remote frees,
//! abandoned-heap reclaim and the jump between small, medium and large paths.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::thread;

use super::{THREADS, scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const GENERATIONS: usize = 10;
const OPS_PER_THREAD: usize = 300_000;
const LOCAL_SLOTS: usize = 500;
const TRANSFER_SLOTS: usize = 1_000;

/// Mostly small sizes, sometimes medium and very rarely large ones.
fn size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0 => rng.range(64 * 1024, 384 * 1024),
        1..=49 => rng.range(512, 16 * 1024),
        _ => rng.range(8, 512),
    }
}

/// Puts `block` into a shared slot and frees the block it displaces.
fn exchange(slot: &AtomicPtr<u8>, block: Option<Block>) {
    let new = block.map_or(ptr::null_mut(), |b| b.into_raw().as_ptr());
    // Acquire-release: the thread that takes a block must see its header,
    // which the publishing thread wrote before the swap.
    let old = slot.swap(new, Ordering::AcqRel);
    if let Some(old) = NonNull::new(old) {
        // SAFETY: only `exchange` stores into the transfer slots, and only
        // pointers from `Block::into_raw`; the swap gives us sole ownership.
        drop(unsafe { Block::from_raw(old) });
    }
}

fn worker(transfer: &[AtomicPtr<u8>], seed: u64, ops: usize) {
    let mut rng = Rng::new(seed);
    let mut local: Vec<Option<Block>> = (0..LOCAL_SLOTS).map(|_| None).collect();
    for _ in 0..ops {
        let block = Block::new(size(&mut rng));
        match rng.below(8) {
            // A temporary: freed as soon as it was made.
            0 => drop(block),
            // Published for another thread (or a later generation) to free.
            1 | 2 => exchange(&transfer[rng.below(TRANSFER_SLOTS)], Some(block)),
            // Kept locally until a later allocation displaces it.
            _ => local[rng.below(LOCAL_SLOTS)] = Some(block),
        }
    }
    // The local array is freed as the thread exits; the transfer array lives on.
}

/// Runs the workload.
pub fn run(scale: f64) {
    let ops = scaled(OPS_PER_THREAD, scale);
    let transfer: Vec<AtomicPtr<u8>> = (0..TRANSFER_SLOTS)
        .map(|_| AtomicPtr::new(ptr::null_mut()))
        .collect();
    for generation in 0..GENERATIONS {
        thread::scope(|s| {
            for t in 0..THREADS {
                let transfer = &transfer;
                s.spawn(move || worker(transfer, seed(6, t, generation), ops));
            }
        });
    }
    for slot in &transfer {
        exchange(slot, None);
    }
}
