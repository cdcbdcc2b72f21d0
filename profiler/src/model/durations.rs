//! Distributions of durations, in ticks: how long allocator calls took
//! (allocation latency) and how long blocks lived (lifetimes), each an
//! HDR histogram (three significant digits, any range).
//!
//! They stay in ticks because the model sees a duration before the CLOCK
//! records around it; views convert with [`crate::Clock::ticks_to_ns`].

use hdrhistogram::Histogram;

/// A distribution of durations in ticks.
#[derive(Clone, Debug)]
pub struct Durations {
    histogram: Histogram<u64>,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            // Three significant digits, auto-resizing: cannot fail.
            histogram: Histogram::new(3).expect("valid histogram precision"),
        }
    }
}

impl Durations {
    /// Records `count` durations of `ticks`.
    pub(crate) fn record(&mut self, ticks: u64, count: u64) {
        // Auto-resizing histograms accept any value; a failure could only
        // come from a count overflow, which is not worth stopping for.
        let _ = self.histogram.record_n(ticks, count);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The duration at quantile `q` (0.0 to 1.0), in ticks; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(q)
        }
    }

    /// The longest duration, in ticks; 0 when empty.
    pub fn max(&self) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.max()
        }
    }

    /// The mean duration, in ticks.
    pub fn mean(&self) -> f64 {
        if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.mean()
        }
    }

    /// The underlying histogram, for views that need more.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }
}
