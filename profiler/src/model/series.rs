//! A time series downsampled to a bounded number of points as it streams
//! in: the heap size after each event, or the resident set size of each
//! MEMORY record.
//!
//! Points are time buckets of equal width. When a value falls past the last
//! bucket, the width doubles and neighbouring buckets merge, so a series
//! never holds more than its limit however long the trace, and the time
//! axis stays uniform. Each point keeps the last value in its bucket and
//! the bucket's minimum and maximum, so that downsampling never hides a
//! peak.

/// One point of a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Ticks of the last value in the bucket.
    pub ticks: u64,
    /// The last value in the bucket.
    pub last: u64,
    /// The smallest value in the bucket.
    pub min: u64,
    /// The largest value in the bucket.
    pub max: u64,
}

/// A downsampled series.
#[derive(Clone, Debug)]
pub struct Series {
    /// Points with their bucket numbers, in increasing bucket order.
    points: Vec<(u64, Point)>,
    /// The time of the first value.
    origin: Option<u64>,
    /// Ticks per bucket (a power of two).
    width: u64,
    /// The most points kept (at least 2).
    limit: u64,
}

impl Series {
    /// An empty series of at most `limit` points.
    pub fn new(limit: usize) -> Self {
        Series {
            points: Vec::new(),
            origin: None,
            width: 1,
            limit: limit.max(2) as u64,
        }
    }

    /// Adds `value` at `ticks`. Values should come in time order; an older
    /// one joins the last bucket.
    pub fn push(&mut self, ticks: u64, value: u64) {
        let origin = *self.origin.get_or_insert(ticks);
        let mut bucket = ticks.saturating_sub(origin) / self.width;
        while bucket >= self.limit {
            self.halve();
            bucket = ticks.saturating_sub(origin) / self.width;
        }
        let p = Point {
            ticks,
            last: value,
            min: value,
            max: value,
        };
        match self.points.last_mut() {
            Some((b, last)) if *b >= bucket => merge(last, &p),
            _ => self.points.push((bucket, p)),
        }
    }

    /// Adds a point that stands for several values already folded (their
    /// last, smallest and largest, `p.ticks` the time of the last).
    pub(crate) fn push_point(&mut self, p: Point) {
        self.push(p.ticks, p.min);
        self.push(p.ticks, p.max);
        self.push(p.ticks, p.last);
    }

    /// The time at which the bucket holding `ticks` ends, as the series
    /// stands (its origin taken as `ticks` if it has none yet).
    pub(crate) fn bucket_end(&self, ticks: u64) -> u64 {
        let origin = self.origin.unwrap_or(ticks);
        let bucket = ticks.saturating_sub(origin) / self.width;
        origin.saturating_add((bucket + 1).saturating_mul(self.width))
    }

    /// Doubles the bucket width, merging neighbours.
    fn halve(&mut self) {
        self.width = self.width.saturating_mul(2);
        let mut out: Vec<(u64, Point)> = Vec::with_capacity(self.points.len() / 2 + 1);
        for &(b, p) in &self.points {
            let b = b / 2;
            match out.last_mut() {
                Some((ob, op)) if *ob == b => merge(op, &p),
                _ => out.push((b, p)),
            }
        }
        self.points = out;
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = &Point> + '_ {
        self.points.iter().map(|(_, p)| p)
    }

    /// How many points are held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no value was pushed.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

fn merge(into: &mut Point, later: &Point) {
    into.ticks = into.ticks.max(later.ticks);
    into.last = later.last;
    into.min = into.min.min(later.min);
    into.max = into.max.max(later.max);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_the_maximum() {
        let mut s = Series::new(16);
        for t in 0..10_000u64 {
            let v = if t == 5_000 { 1_000_000 } else { t % 100 };
            s.push(t, v);
        }
        assert!(s.len() <= 16, "{}", s.len());
        assert!(s.len() >= 8);
        assert_eq!(s.points().map(|p| p.max).max(), Some(1_000_000));
        let last = s.points().last().unwrap();
        assert_eq!((last.ticks, last.last), (9_999, 99));
        // Points are in time order.
        let ticks: Vec<u64> = s.points().map(|p| p.ticks).collect();
        assert!(ticks.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn a_few_values_are_kept_exactly() {
        let mut s = Series::new(1024);
        s.push(100, 1);
        s.push(200, 5);
        s.push(150, 3);
        let pts: Vec<(u64, u64)> = s.points().map(|p| (p.ticks, p.last)).collect();
        assert_eq!(pts, [(100, 1), (200, 3)]);
    }
}
