//! `rptest`: power-law sizes, random lifetimes and some cross-thread frees.
//!
//! Modelled on the rpmalloc benchmark (rptest) as run by mimalloc-bench. Each
//! of two threads keeps a working set of slots and repeatedly replaces a random
//! one with a block of 16 bytes to 16 KiB, small sizes being far more likely;
//! a quarter of the new blocks are temporaries freed at once. One displaced
//! block in eight is not freed locally but passed, in batches, to the other
//! thread, which frees it the next time it drains its inbox (unless that
//! inbox is already full, when it is freed locally). This mixes the
//! local fast paths with a steady trickle of remote frees across the size range
//! where allocators switch from small to medium classes.

use std::mem;
use std::sync::Mutex;
use std::thread;

use super::{THREADS, scaled, seed, skewed_size};
use crate::block::Block;
use crate::rng::Rng;

const WORKING_SET: usize = 4_096;
const OPS_PER_THREAD: usize = 2_500_000;
const REMOTE_ONE_IN: usize = 8;
const OUTBOX_BATCH: usize = 64;
const DRAIN_EVERY: usize = 256;
/// Blocks an inbox may hold before senders free locally instead. A real
/// program would apply back-pressure the same way; an unbounded inbox would
/// make peak RSS depend on how long the scheduler parks the receiving thread
/// on a shared machine rather than on the allocator.
const MAX_PENDING: usize = 1_024;
/// Sizes run from 16 bytes through ten power-of-two buckets, so up to 16 KiB.
const MIN_SIZE: usize = 16;
const SIZE_BUCKETS: usize = 10;

fn worker(me: usize, inboxes: &[Mutex<Vec<Block>>], ops: usize) {
    let other = (me + 1) % inboxes.len();
    let mut rng = Rng::new(seed(7, me, 0));
    let mut slots: Vec<Option<Block>> = (0..WORKING_SET).map(|_| None).collect();
    let mut outbox: Vec<Block> = Vec::with_capacity(OUTBOX_BATCH);
    for op in 0..ops {
        let i = rng.below(WORKING_SET);
        match slots[i].take() {
            Some(old) if rng.one_in(REMOTE_ONE_IN) => {
                outbox.push(old);
                if outbox.len() == OUTBOX_BATCH {
                    let mut inbox = inboxes[other].lock().expect("rptest inbox poisoned");
                    if inbox.len() < MAX_PENDING {
                        inbox.append(&mut outbox);
                    } else {
                        // The other thread has fallen behind (it was probably
                        // descheduled); free the batch here instead.
                        drop(inbox);
                        outbox.clear();
                    }
                }
            }
            // Everything else that was displaced is freed here, locally.
            displaced => drop(displaced),
        }
        let block = Block::new(skewed_size(&mut rng, MIN_SIZE, SIZE_BUCKETS));
        // One block in four is a temporary, freed as soon as it was made.
        if !rng.one_in(4) {
            slots[i] = Some(block);
        }
        if op % DRAIN_EVERY == 0 {
            // Take the whole inbox under the lock, free it outside.
            let incoming = mem::take(&mut *inboxes[me].lock().expect("rptest inbox poisoned"));
            drop(incoming);
        }
    }
    inboxes[other]
        .lock()
        .expect("rptest inbox poisoned")
        .append(&mut outbox);
}

/// Runs the workload.
pub fn run(scale: f64) {
    let ops = scaled(OPS_PER_THREAD, scale);
    let inboxes: Vec<Mutex<Vec<Block>>> = (0..THREADS).map(|_| Mutex::new(Vec::new())).collect();
    thread::scope(|s| {
        for t in 0..THREADS {
            let inboxes = &inboxes;
            s.spawn(move || worker(t, inboxes, ops));
        }
    });
    // Whatever was sent after the receiver's last drain is freed here.
    drop(inboxes);
}
