//! Per-site details, kept when a view asks for them
//! ([`crate::ModelOptions::site_details`]): each site's requested sizes,
//! the lifetimes of its freed blocks, and its live bytes over time. The
//! dashboard's drill-down shows them, and the growth test
//! ([`crate::growth`]) reads the series.
//!
//! They cost about 3 KiB per site (a 65-bucket size histogram, a
//! 65-bucket lifetime histogram and a series of at most
//! [`SITE_SERIES_POINTS`] points), so they are off for views that do not
//! need them.

use super::counters::Weight;
use super::series::{Point, Series};
use super::sizes::SizeHistogram;

/// The most points of a site's live-bytes series.
pub const SITE_SERIES_POINTS: usize = 64;

/// One site's details (boxed beside the site's counters).
#[derive(Clone, Debug)]
pub(crate) struct SiteDetail {
    sizes: SizeHistogram,
    lifetimes: Log2Histogram,
    live: Series,
}

impl Default for SiteDetail {
    fn default() -> Self {
        SiteDetail {
            sizes: SizeHistogram::default(),
            lifetimes: Log2Histogram::default(),
            live: Series::new(SITE_SERIES_POINTS),
        }
    }
}

/// A site's live bytes since the last point handed to its series, kept
/// inline in the site's entry.
///
/// Busy sites change many times per series bucket. Folding the changes of
/// one bucket here, beside the site's counters, and touching the boxed
/// series only when a bucket ends saves a cache miss or two per event (a
/// model with details on read a 10,000-site trace twice as slowly
/// without it).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PendingLive {
    /// The end of the bucket `point` is in.
    until: u64,
    point: Option<Point>,
}

impl PendingLive {
    /// The site holds `live` bytes from `ticks` on.
    fn change(&mut self, ticks: u64, live: u64, series: &mut Series) {
        if let Some(p) = &mut self.point
            && ticks < self.until
        {
            p.ticks = ticks;
            p.last = live;
            p.min = p.min.min(live);
            p.max = p.max.max(live);
            return;
        }
        if let Some(p) = self.point.take() {
            series.push_point(p);
        }
        self.until = series.bucket_end(ticks);
        self.point = Some(Point {
            ticks,
            last: live,
            min: live,
            max: live,
        });
    }
}

impl SiteDetail {
    /// A block of `size` was allocated here; the site holds `live` bytes
    /// at `ticks`.
    pub(crate) fn allocated(
        &mut self,
        pending: &mut PendingLive,
        size: u64,
        w: Weight,
        ticks: u64,
        live: u64,
    ) {
        self.sizes.add(size, w);
        pending.change(ticks, live, &mut self.live);
    }

    /// A block of this site was released after `lifetime` ticks (`None`
    /// when its free was never seen); the site holds `live` bytes at
    /// `ticks`.
    pub(crate) fn released(
        &mut self,
        pending: &mut PendingLive,
        lifetime: Option<u64>,
        w: Weight,
        ticks: u64,
        live: u64,
    ) {
        if let Some(l) = lifetime {
            self.lifetimes.add(l, w.blocks);
        }
        pending.change(ticks, live, &mut self.live);
    }
}

/// One site's details, as views read them.
#[derive(Clone, Copy, Debug)]
pub struct SiteDetailRef<'a> {
    pub(crate) detail: &'a SiteDetail,
    pub(crate) pending: PendingLive,
}

impl<'a> SiteDetailRef<'a> {
    /// Requested sizes.
    pub fn sizes(&self) -> &'a SizeHistogram {
        &self.detail.sizes
    }

    /// Lifetimes of the freed blocks, in ticks.
    pub fn lifetimes(&self) -> &'a Log2Histogram {
        &self.detail.lifetimes
    }

    /// Live bytes over time: at most [`SITE_SERIES_POINTS`] + 1 points of
    /// equal-width buckets, oldest first (see [`Series`]).
    pub fn live(&self) -> Vec<Point> {
        let mut points: Vec<Point> = self.detail.live.points().copied().collect();
        points.extend(self.pending.point);
        points
    }
}

/// Counts by power-of-two buckets: bucket 0 holds 0, bucket `k` holds
/// `[2^(k-1), 2^k)`.
#[derive(Clone, Debug)]
pub struct Log2Histogram {
    counts: [u64; 65],
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram { counts: [0; 65] }
    }
}

/// One bucket of a [`Log2Histogram`]: values in `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log2Bucket {
    /// The smallest value in the bucket.
    pub min: u64,
    /// The largest value in the bucket.
    pub max: u64,
    /// How many values fell in it.
    pub count: u64,
}

impl Log2Histogram {
    fn add(&mut self, value: u64, count: u64) {
        self.counts[(64 - value.leading_zeros()) as usize] += count;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The buckets from the lowest to the highest non-empty one.
    pub fn buckets(&self) -> Vec<Log2Bucket> {
        let Some(first) = self.counts.iter().position(|&n| n > 0) else {
            return Vec::new();
        };
        let last = self.counts.iter().rposition(|&n| n > 0).unwrap_or(first);
        (first..=last)
            .map(|b| {
                let (min, max) = match b {
                    0 => (0, 0),
                    64 => (1 << 63, u64::MAX),
                    _ => (1 << (b - 1), (1 << b) - 1),
                };
                Log2Bucket {
                    min,
                    max,
                    count: self.counts[b],
                }
            })
            .collect()
    }
}
