//! The distribution of a replay's steps per operation: small integers,
//! one recorded per operation, so recording must cost next to nothing.
//!
//! Values below `EXACT` are counted in a vector indexed by value (an
//! increment); larger ones go to an HDR histogram, which is exact below
//! `EXACT` too (three significant digits), so quantiles are what the
//! histogram alone would give.

use crate::model::Durations;

/// Values counted exactly, by index.
const EXACT: u64 = 2048;

/// Counts of values.
#[derive(Default)]
pub struct Counts {
    /// Per value below `EXACT`, how many (grown as needed).
    exact: Vec<u64>,
    beyond: Durations,
    total: u64,
}

impl Counts {
    /// Counts one `value`.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.total += 1;
        if value < EXACT {
            let i = value as usize;
            if i >= self.exact.len() {
                self.exact.resize(i + 1, 0);
            }
            self.exact[i] += 1;
        } else {
            self.beyond.record(value, 1);
        }
    }

    /// The value at quantile `q` (above 0.0, to 1.0), as an HDR histogram
    /// ranks it: the first value whose cumulative count reaches `q` of the
    /// total (at least one); 0 when empty. (At `q` = 0 the histogram gives
    /// the lowest value of the first bucket, which differs past `EXACT`.)
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.min(1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (value, &n) in self.exact.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value as u64;
            }
        }
        for v in self.beyond.histogram().iter_recorded() {
            seen += v.count_at_value();
            if seen >= rank {
                return v.value_iterated_to();
            }
        }
        self.max()
    }

    /// The largest value; 0 when empty.
    pub fn max(&self) -> u64 {
        if self.beyond.count() > 0 {
            self.beyond.max()
        } else {
            self.exact.iter().rposition(|&n| n > 0).unwrap_or(0) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Quantiles and the maximum are the HDR histogram's own.
        #[test]
        fn quantiles_as_the_histogram_gives_them(
            values in proptest::collection::vec(prop_oneof![0u64..100, 0u64..5000, 0u64..1_000_000], 0..300),
            q in 0.001f64..1.0,
        ) {
            let mut counts = Counts::default();
            let mut hdr = Durations::default();
            for &v in &values {
                counts.record(v);
                hdr.record(v, 1);
            }
            for q in [q, 0.5, 0.99, 1.0] {
                prop_assert_eq!(counts.quantile(q), hdr.quantile(q), "q {}", q);
            }
            prop_assert_eq!(counts.max(), hdr.max());
        }
    }
}
