//! The size histogram: requested sizes in power-of-two buckets.
//!
//! Bucket 0 holds zero-byte requests; bucket `k` (1..=64) holds sizes in
//! `[2^(k-1), 2^k)`. Each bucket also counts the bytes memtally's size
//! classes serve those requests with ([`served_bytes`]): the difference is
//! the internal waste of the rounding.

use super::counters::Weight;

/// Blocks and bytes per power-of-two size bucket. A bucket's three counts
/// sit together: an allocation touches one cache line of a site's
/// histogram, not three (a dashboard following a busy program updates
/// thousands of sites' histograms at random).
#[derive(Clone, Debug)]
pub struct SizeHistogram {
    counts: [Counts; 65],
}

/// One bucket's counts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    blocks: u64,
    bytes: u64,
    served: u64,
}

/// The bytes memtally's allocator hands out for a request of `size`: its
/// size class, or for a huge block the size rounded to 4 KiB pages.
pub fn served_bytes(size: u64) -> u64 {
    usize::try_from(size)
        .ok()
        .and_then(memtally_alloc::debug::class_size_for)
        .map_or(size.div_ceil(4096).saturating_mul(4096), |c| c as u64)
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
    /// The bytes memtally's size classes serve them with.
    pub served: u64,
}

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram {
            counts: [Counts::default(); 65],
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
        let c = &mut self.counts[bucket(size)];
        c.blocks += w.blocks;
        c.bytes += w.bytes;
        c.served += served_bytes(size).saturating_mul(w.blocks);
    }

    /// The buckets from the smallest to the largest non-empty one (empty
    /// buckets in between included, so that the shape shows).
    pub fn buckets(&self) -> Vec<SizeBucket> {
        let Some(first) = self.counts.iter().position(|c| c.blocks > 0) else {
            return Vec::new();
        };
        let last = self
            .counts
            .iter()
            .rposition(|c| c.blocks > 0)
            .unwrap_or(first);
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
                    blocks: self.counts[b].blocks,
                    bytes: self.counts[b].bytes,
                    served: self.counts[b].served,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_bytes_follow_memtally_size_classes() {
        let mut h = SizeHistogram::default();
        let one = Weight {
            bytes: 100,
            blocks: 1,
        };
        h.add(100, one);
        let class = memtally_alloc::debug::class_size_for(100).unwrap() as u64;
        assert!(class >= 100);
        let b = h.buckets().into_iter().find(|b| b.blocks == 1).unwrap();
        assert_eq!((b.bytes, b.served), (100, class));
        // Huge blocks: whole pages.
        assert_eq!(served_bytes(600 * 1024 + 1), 601 * 1024 + 3072);
    }

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
