//! How much one recorded allocation stands for.
//!
//! In full mode every block is recorded and weighs itself. In sampled mode
//! (Poisson sampling by bytes with mean interval `s`) a block of `size`
//! bytes was recorded with probability `p = 1 - exp(-size / s)`, so it
//! stands for `size / p` bytes and `1 / p` blocks: unbiased estimates, as
//! jemalloc and tcmalloc compute them. The requested size is used.
//!
//! Counters are integers, so weights are rounded. Bytes round to the
//! nearest byte (at most half a byte off per sample). Block weights are near
//! 1 for blocks larger than the interval, where plain rounding would be
//! biased by up to 50%, so they are rounded by error diffusion: each
//! aggregate carries the fraction left over and adds it to its next sample,
//! which keeps its block estimate within one block of the exact sum.

use super::counters::Weight;

/// The recording mode's weighting rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// Every event is recorded; each block weighs itself.
    Full,
    /// Allocations are sampled with this mean interval in bytes.
    Sampled {
        /// The mean sampling interval in bytes.
        interval: u64,
    },
}

impl Sampling {
    /// The rule for a trace header's mode and interval. A sampled trace
    /// with an interval of 0 cannot be weighted and is read as full.
    pub fn from_header(mode: u8, sample_bytes: u64) -> Self {
        if mode == memtally_alloc::trace::mode::SAMPLED && sample_bytes > 0 {
            Sampling::Sampled {
                interval: sample_bytes,
            }
        } else {
            Sampling::Full
        }
    }

    /// True when counts are estimates.
    pub fn is_estimate(&self) -> bool {
        matches!(self, Sampling::Sampled { .. })
    }

    /// The unrounded weight of a block of `size` bytes: `(bytes, blocks)`.
    pub fn exact(&self, size: u64) -> (f64, f64) {
        match *self {
            Sampling::Full => (size as f64, 1.0),
            Sampling::Sampled { interval } => {
                if size == 0 {
                    // A zero-byte request cannot be drawn by byte sampling;
                    // if the recorder kept one anyway it stands for itself.
                    return (0.0, 1.0);
                }
                let p = -(-(size as f64) / interval as f64).exp_m1();
                (size as f64 / p, 1.0 / p)
            }
        }
    }

    /// The weight of a block of `size` bytes, with `carry` the aggregate's
    /// leftover block fraction (updated).
    pub fn weigh(&self, size: u64, carry: &mut f64) -> Weight {
        match self {
            Sampling::Full => Weight {
                bytes: size,
                blocks: 1,
            },
            Sampling::Sampled { .. } => {
                let (bytes, blocks) = self.exact(size);
                let sum = *carry + blocks;
                let whole = sum.floor().max(1.0);
                *carry = (sum - whole).max(0.0);
                Weight {
                    bytes: bytes.round() as u64,
                    blocks: whole as u64,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mode_weighs_blocks_as_themselves() {
        let mut carry = 0.0;
        let w = Sampling::Full.weigh(100, &mut carry);
        assert_eq!((w.bytes, w.blocks), (100, 1));
    }

    #[test]
    fn sampled_weights_follow_the_inverse_probability() {
        let s = Sampling::Sampled { interval: 1000 };
        let (bytes, blocks) = s.exact(1000);
        let p = 1.0 - (-1.0f64).exp();
        assert!((bytes - 1000.0 / p).abs() < 1e-6);
        assert!((blocks - 1.0 / p).abs() < 1e-9);
        // 1/p = 1.582: error diffusion gives 1, 2, 1, 2, 2, ... summing to
        // within one block of the exact total.
        let mut carry = 0.0;
        let total: u64 = (0..1000).map(|_| s.weigh(1000, &mut carry).blocks).sum();
        assert!((total as f64 - 1000.0 / p).abs() <= 1.0, "{total}");
        // Tiny blocks stand for many: 1/p = 1000.5 for a 1-byte block.
        let w = s.weigh(1, &mut 0.0);
        assert_eq!(w.bytes, 1001);
        assert_eq!(w.blocks, 1000);
        // Huge blocks stand for themselves.
        let w = s.weigh(1 << 30, &mut 0.0);
        assert_eq!((w.bytes, w.blocks), (1 << 30, 1));
        assert_eq!(s.weigh(0, &mut 0.0).blocks, 1);
    }
}
