//! `larson`: a server whose short-lived worker threads churn small objects.
//!
//! Modelled on the Larson & Krishnan server benchmark as run by mimalloc-bench.
//! Each of two chains of threads owns an array of slots; a thread repeatedly
//! frees a random slot and refills it with a block of 8..1000 bytes. At the end
//! of its round the thread spawns a successor, hands it the whole array and
//! exits. Nearly every free is therefore of a block allocated by a thread that
//! no longer exists, so this measures remote frees, the reclaiming of exited
//! threads' heaps and small-object churn together: the pattern on which
//! thread-caching allocators tend to stall or let memory pile up.

use std::thread::{self, JoinHandle};

use super::{THREADS, scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const SLOTS: usize = 1_000;
const OPS_PER_ROUND: usize = 10_000;
const ROUNDS: usize = 600;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 1_000;

/// The state a thread hands to its successor.
struct Chain {
    slots: Vec<Option<Block>>,
    rng: Rng,
    rounds_left: usize,
}

/// What a finished thread leaves behind: the successor it spawned, if any.
struct Handoff(Option<JoinHandle<Handoff>>);

/// One thread's round: churn the slots, then pass them on and exit.
fn round(mut chain: Chain) -> Handoff {
    for _ in 0..OPS_PER_ROUND {
        let i = chain.rng.below(SLOTS);
        // Free before allocating, as a server replacing a request buffer does.
        chain.slots[i] = None;
        let size = chain.rng.range(MIN_SIZE, MAX_SIZE + 1);
        chain.slots[i] = Some(Block::new(size));
    }
    chain.rounds_left -= 1;
    if chain.rounds_left == 0 {
        // The last thread of the chain frees whatever is left as it returns.
        Handoff(None)
    } else {
        Handoff(Some(thread::spawn(move || round(chain))))
    }
}

/// Runs the workload.
pub fn run(scale: f64) {
    let rounds = scaled(ROUNDS, scale);
    let mut current: Vec<Option<JoinHandle<Handoff>>> = (0..THREADS)
        .map(|t| {
            let mut rng = Rng::new(seed(1, t, 0));
            // The main thread allocates the initial blocks, so even the first
            // generation of workers frees memory that another thread owns.
            let slots = (0..SLOTS)
                .map(|_| Some(Block::new(rng.range(MIN_SIZE, MAX_SIZE + 1))))
                .collect();
            let chain = Chain {
                slots,
                rng,
                rounds_left: rounds,
            };
            Some(thread::spawn(move || round(chain)))
        })
        .collect();
    // Join the chains side by side so finished threads are reaped promptly.
    while current.iter().any(Option::is_some) {
        for slot in &mut current {
            if let Some(handle) = slot.take() {
                *slot = handle.join().expect("a larson thread panicked").0;
            }
        }
    }
}
