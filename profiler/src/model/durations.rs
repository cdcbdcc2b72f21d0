//! Distributions of durations, in ticks: how long allocator calls took
//! (allocation latency) and how long blocks lived (lifetimes), each an
//! HDR histogram (three significant digits, any range).
//!
//! They stay in ticks because the model sees a duration before the CLOCK
//! records around it; views convert with [`crate::Clock::ticks_to_ns`].
//!
//! The model records three durations per free, so recording is on its hot
//! path: `hdrhistogram`'s `record_n` took about 40 instructions (range
//! checks for auto-resizing, minimum and maximum, total), a twelfth of the
//! model's time. [`Durations`] counts into buckets of its own instead, laid
//! out as `hdrhistogram` lays out a histogram of three significant digits
//! (the same bucket boundaries), and builds the `hdrhistogram` histogram
//! from them when it is first read after a change: every figure read from
//! it (quantiles, mean, maximum) is the one recording each value into it
//! would give.

use hdrhistogram::Histogram;
use std::sync::OnceLock;

/// Values below this have a bucket each: with three significant digits,
/// `hdrhistogram` resolves every value below 2048 exactly.
const SUB_BUCKETS: u64 = 2048;
/// Above it, a bucket covers `2^b` values, for the `b` that keeps the
/// value's top eleven bits.
const SUB_BUCKET_BITS: u32 = 11;

/// A distribution of durations in ticks.
#[derive(Clone, Debug, Default)]
pub struct Durations {
    /// Count per bucket, indexed by [`bucket_of`]; grown as needed.
    counts: Vec<u64>,
    total: u64,
    /// The histogram of `counts`, built on first read.
    histogram: OnceLock<Histogram<u64>>,
}

/// The bucket of `ticks`: values below [`SUB_BUCKETS`] are their own
/// bucket; above, bucket `b << 10 | top`, where `b` is how many low bits
/// are dropped and `top` the value's top eleven bits (1024 to 2047).
#[inline]
fn bucket_of(ticks: u64) -> usize {
    let shift = (64 - SUB_BUCKET_BITS) - (ticks | (SUB_BUCKETS - 1)).leading_zeros();
    (((shift as u64) << (SUB_BUCKET_BITS - 1)) + (ticks >> shift)) as usize
}

/// The smallest value in `bucket` (the inverse of [`bucket_of`]).
fn bucket_start(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    let shift = if bucket < SUB_BUCKETS {
        0
    } else {
        (bucket >> (SUB_BUCKET_BITS - 1)) - 1
    };
    (bucket - (shift << (SUB_BUCKET_BITS - 1))) << shift
}

impl Durations {
    /// Records `count` durations of `ticks`.
    #[inline]
    pub(crate) fn record(&mut self, ticks: u64, count: u64) {
        let b = bucket_of(ticks);
        match self.counts.get_mut(b) {
            Some(c) => *c = c.saturating_add(count),
            None => self.grow(b, count),
        }
        self.total = self.total.saturating_add(count);
        if self.histogram.get().is_some() {
            self.histogram = OnceLock::new();
        }
    }

    #[cold]
    fn grow(&mut self, bucket: usize, count: u64) {
        self.counts.resize(bucket + 1, 0);
        self.counts[bucket] = count;
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The duration at quantile `q` (0.0 to 1.0), in ticks; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.histogram().value_at_quantile(q)
        }
    }

    /// The longest duration, in ticks; 0 when empty.
    pub fn max(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.histogram().max()
        }
    }

    /// The mean duration, in ticks.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.histogram().mean()
        }
    }

    /// The underlying histogram, for views that need more.
    pub fn histogram(&self) -> &Histogram<u64> {
        self.histogram.get_or_init(|| {
            // Three significant digits, auto-resizing: cannot fail.
            let mut h = Histogram::new(3).expect("valid histogram precision");
            for (bucket, &count) in self.counts.iter().enumerate() {
                if count != 0 {
                    // Auto-resizing takes any value; only a count overflow
                    // could fail, not worth stopping for.
                    let _ = h.record_n(bucket_start(bucket), count);
                }
            }
            h
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_invert_and_cover_every_value_once() {
        for b in 0..bucket_of(u64::MAX) {
            let start = bucket_start(b);
            assert_eq!(bucket_of(start), b, "bucket {b}");
            let next = bucket_start(b + 1);
            assert!(next > start);
            assert_eq!(bucket_of(next - 1), b, "end of bucket {b}");
        }
        assert_eq!(
            bucket_of(u64::MAX),
            bucket_of(bucket_start(bucket_of(u64::MAX)))
        );
    }

    /// Every figure read equals what recording each value into an
    /// `hdrhistogram` histogram gives.
    #[test]
    fn reads_match_hdrhistogram_recording_every_value() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..20 {
            let mut ours = Durations::default();
            let mut theirs = Histogram::<u64>::new(3).unwrap();
            for i in 0..2_000 {
                // Values of every magnitude, small ones often.
                let v = next() >> (next() % 64);
                let n = 1 + next() % 3;
                ours.record(v, n);
                theirs.record_n(v, n).unwrap();
                if i % 500 == 0 {
                    // Reading between records rebuilds afterwards.
                    assert_eq!(ours.max(), theirs.max(), "round {round}");
                }
            }
            assert_eq!(ours.count(), theirs.len());
            assert_eq!(ours.max(), theirs.max());
            assert_eq!(ours.mean(), theirs.mean());
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(ours.quantile(q), theirs.value_at_quantile(q), "q {q}");
            }
            let a: Vec<_> = ours.histogram().iter_recorded().collect();
            let b: Vec<_> = theirs.iter_recorded().collect();
            assert_eq!(a, b);
        }
        let empty = Durations::default();
        assert_eq!((empty.count(), empty.max(), empty.quantile(0.5)), (0, 0, 0));
    }
}
