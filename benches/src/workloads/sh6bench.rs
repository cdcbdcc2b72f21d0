//! `sh6bench`: ramps of sizes freed in LIFO, FIFO and interleaved order.
//!
//! Modelled on MicroQuill's SmartHeap sh6bench as run by mimalloc-bench. Each
//! of two threads repeatedly allocates an array of objects whose sizes climb
//! from 8 bytes to 1000 bytes and back down, then frees them in an order that
//! rotates between last-in-first-out, first-in-first-out, and interleaved (every
//! other object, then refilling those holes with differently sized objects
//! before freeing the rest). The changing free order defeats allocators that
//! only do well when memory is returned in the order it was handed out, and the
//! refilled holes test how well freed blocks are reused across size classes.

use std::thread;

use super::{THREADS, scaled, seed};
use crate::block::Block;
use crate::rng::Rng;

const PASSES: usize = 5_000;
const MAX_OBJECTS: usize = 2_000;
const MIN_SIZE: usize = 8;
const MAX_SIZE: usize = 1_000;

/// The size of object `i` of `n`: rising linearly to the middle, then falling.
fn ramp(i: usize, n: usize) -> usize {
    let half = (n / 2).max(1);
    let step = if i < half { i } else { n - 1 - i };
    MIN_SIZE + step.min(half) * (MAX_SIZE - MIN_SIZE) / half
}

fn worker(seed: u64, passes: usize) {
    let mut rng = Rng::new(seed);
    let mut objects: Vec<Option<Block>> = Vec::with_capacity(MAX_OBJECTS);
    for pass in 0..passes {
        let n = rng.range(MAX_OBJECTS / 2, MAX_OBJECTS + 1);
        objects.extend((0..n).map(|i| Some(Block::new(ramp(i, n)))));
        match pass % 3 {
            0 => {
                // Last in, first out.
                while let Some(object) = objects.pop() {
                    drop(object);
                }
            }
            1 => {
                // First in, first out: `clear` drops front to back.
                objects.clear();
            }
            _ => {
                // Interleaved: free every other object, refill the holes with
                // the mirrored sizes, then free everything front to back.
                for object in objects.iter_mut().step_by(2) {
                    *object = None;
                }
                for (i, object) in objects.iter_mut().enumerate().step_by(2) {
                    *object = Some(Block::new(ramp(n - 1 - i, n) / 2 + MIN_SIZE));
                }
                objects.clear();
            }
        }
    }
}

/// Runs the workload.
pub fn run(scale: f64) {
    let passes = scaled(PASSES, scale);
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || worker(seed(9, t, 0), passes));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{MAX_SIZE, MIN_SIZE, ramp};

    #[test]
    fn ramp_rises_then_falls_within_bounds() {
        let n = 101;
        let sizes: Vec<usize> = (0..n).map(|i| ramp(i, n)).collect();
        assert_eq!(sizes[0], MIN_SIZE);
        assert_eq!(sizes[n - 1], MIN_SIZE);
        assert_eq!(*sizes.iter().max().unwrap(), MAX_SIZE);
        assert!(sizes.iter().all(|&s| (MIN_SIZE..=MAX_SIZE).contains(&s)));
        assert!(sizes[..50].windows(2).all(|w| w[0] <= w[1]));
    }
}
