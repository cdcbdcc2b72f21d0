//! The size histogram: requested sizes in power-of-two buckets.
//!
//! Bucket 0 holds zero-byte requests; bucket `k` (1..=64) holds sizes in
//! `[2^(k-1), 2^k)`.

use super::counters::Weight;

/// Blocks and bytes per power-of-two size bucket.
#[derive(Clone, Debug)]
pub struct SizeHistogram {
    blocks: [u64; 65],
    bytes: [u64; 65],
}

/// One bucket of a [`SizeHistogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeBucket {
    /// The smallest size in the bucket.
    pub min: u64,
    /// The largest size in the bucket.
    pub max: u64,
    /// Blocks allocated with a size in the bucket.
    pub blocks: u64,
    /// Their requested bytes.
    pub bytes: u64,
}

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram {
            blocks: [0; 65],
            bytes: [0; 65],
        }
    }
}

/// The bucket of `size`.
fn bucket(size: u64) -> usize {
    (64 - size.leading_zeros()) as usize
}

impl SizeHistogram {
    /// Counts a block of requested `size` with weight `w`.
    pub(crate) fn add(&mut self, size: u64, w: Weight) {
        let b = bucket(size);
        self.blocks[b] += w.blocks;
        self.bytes[b] += w.bytes;
    }

    /// The buckets from the smallest to the largest non-empty one (empty
    /// buckets in between included, so that the shape shows).
    pub fn buckets(&self) -> Vec<SizeBucket> {
        let Some(first) = self.blocks.iter().position(|&n| n > 0) else {
            return Vec::new();
        };
        let last = self.blocks.iter().rposition(|&n| n > 0).unwrap_or(first);
        (first..=last)
            .map(|b| {
                let (min, max) = match b {
                    0 => (0, 0),
                    64 => (1 << 63, u64::MAX),
                    _ => (1u64 << (b - 1), (1u64 << b) - 1),
                };
                SizeBucket {
                    min,
                    max,
                    blocks: self.blocks[b],
                    bytes: self.bytes[b],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fall_in_power_of_two_buckets() {
        let mut h = SizeHistogram::default();
        let one = |bytes| Weight { bytes, blocks: 1 };
        for s in [16, 17, 31, 32, 100] {
            h.add(s, one(s));
        }
        let b = h.buckets();
        let got: Vec<(u64, u64, u64)> = b.iter().map(|b| (b.min, b.max, b.blocks)).collect();
        assert_eq!(got, [(16, 31, 3), (32, 63, 1), (64, 127, 1)]);
        h.add(0, one(0));
        h.add(u64::MAX, one(0));
        let b = h.buckets();
        assert_eq!((b[0].min, b[0].max), (0, 0));
        assert_eq!(b.last().unwrap().max, u64::MAX);
    }
}
