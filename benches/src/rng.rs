//! A small seeded pseudo-random number generator for the workloads.
//!
//! Every workload must make exactly the same sequence of allocation requests
//! under every allocator, otherwise the comparison is not fair. A seeded
//! xorshift64* generator gives that at a cost of a few instructions per draw,
//! which keeps the generator out of the measurements, and avoids depending on
//! a `rand` crate whose behaviour could change between versions.

/// A xorshift64* generator seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// Creates a generator from `seed`.
    ///
    /// The seed is scrambled with SplitMix64 first so that neighbouring seeds
    /// (such as thread indices) give unrelated streams, and so that the
    /// xorshift state is never zero, which would make it stick at zero.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let state = if z == 0 { 0x2545_F491_4F6C_DD1D } else { z };
        Rng { state }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Returns a value in `0..n`; `n` must be non-zero.
    ///
    /// This uses the multiply-and-shift reduction, which is cheaper than a
    /// division and whose bias is far below anything a benchmark could notice.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "Rng::below needs a non-empty range");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Returns a value in `lo..hi`; the range must be non-empty.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo < hi, "Rng::range needs lo < hi");
        lo + self.below(hi - lo)
    }

    /// Returns true with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn ranges_stay_in_bounds_and_cover_them() {
        let mut rng = Rng::new(42);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = rng.range(5, 15);
            assert!((5..15).contains(&v));
            seen[v - 5] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "every value in the range should appear"
        );
    }
}
