//! The workloads, one module each, and the helpers they share.
//!
//! Each workload is a deterministic function of a `scale` factor. At `1.0` it
//! is sized to take roughly 0.3-1.5 s with the system allocator on a 2-core
//! machine; smaller factors shrink the iteration counts but not the block
//! sizes or working sets, so the allocation pattern stays the same while the
//! unit tests can run every workload in a fraction of a second.

pub mod alloc_test;
pub mod cache_scratch;
pub mod glibc_simple;
pub mod glibc_thread;
pub mod larson;
pub mod malloc_large;
pub mod mstress;
pub mod rptest;
pub mod sh6bench;
pub mod xmalloc;

use crate::rng::Rng;

/// Threads used by the multi-threaded workloads: the benchmark machine has two
/// cores, and more threads than cores would measure the scheduler instead.
pub const THREADS: usize = 2;

/// Scales an iteration count, never below one so every code path still runs.
pub fn scaled(count: usize, scale: f64) -> usize {
    let value = (count as f64 * scale).round();
    if value < 1.0 { 1 } else { value as usize }
}

/// A seed that differs per workload, per thread and per thread generation, so
/// that threads do not replay each other's request streams.
pub fn seed(workload: u64, thread: usize, generation: usize) -> u64 {
    workload
        .wrapping_mul(0x0100_0000_01B3)
        .wrapping_add((thread as u64) << 32)
        .wrapping_add(generation as u64)
}

/// Draws a size between `min << 0` and `(min << buckets) - 1` bytes whose
/// power-of-two bucket is the smaller of two uniform draws, so small sizes are
/// much more common than large ones (roughly a power law), as in real programs.
///
/// Working with buckets keeps the draw to integer operations, cheap next to the
/// allocation it feeds.
pub fn skewed_size(rng: &mut Rng, min: usize, buckets: usize) -> usize {
    let bucket = rng.below(buckets).min(rng.below(buckets));
    let base = min << bucket;
    base + rng.below(base)
}

#[cfg(test)]
mod tests {
    use super::{scaled, skewed_size};
    use crate::rng::Rng;

    #[test]
    fn scaling_rounds_and_never_reaches_zero() {
        assert_eq!(scaled(1000, 1.0), 1000);
        assert_eq!(scaled(1000, 0.01), 10);
        assert_eq!(scaled(10, 0.001), 1);
        assert_eq!(scaled(3, 0.5), 2);
    }

    #[test]
    fn skewed_sizes_stay_in_range_and_favour_small_ones() {
        let mut rng = Rng::new(3);
        let mut small = 0;
        for _ in 0..10_000 {
            let size = skewed_size(&mut rng, 16, 10);
            assert!((16..16 << 10).contains(&size));
            if size < 256 {
                small += 1;
            }
        }
        assert!(
            small > 5_000,
            "only {small} of 10000 sizes were below 256 bytes"
        );
    }
}
