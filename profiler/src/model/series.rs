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
    /// Where the last point's bucket ends (ticks, exclusive; 0 with no
    /// points): a value before it joins that point without a division.
    /// The heap series takes a value per event, nearly all of them here.
    last_end: u64,
}

impl Series {
    /// An empty series of at most `limit` points.
    pub fn new(limit: usize) -> Self {
        Series {
            points: Vec::new(),
            origin: None,
            width: 1,
            limit: limit.max(2) as u64,
            last_end: 0,
        }
    }

    /// Adds `value` at `ticks`. Values should come in time order; an older
    /// one joins the last bucket.
    #[inline]
    pub fn push(&mut self, ticks: u64, value: u64) {
        if ticks < self.last_end
            && let Some((_, last)) = self.points.last_mut()
        {
            last.ticks = last.ticks.max(ticks);
            last.last = value;
            last.min = last.min.min(value);
            last.max = last.max.max(value);
            return;
        }
        self.push_past_last(ticks, value);
    }

    /// [`Series::push`] of a value past the last point's bucket.
    #[inline(never)]
    fn push_past_last(&mut self, ticks: u64, value: u64) {
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
        self.note_last_end();
    }

    /// Sets `last_end` from the last point's bucket.
    fn note_last_end(&mut self) {
        let origin = self.origin.unwrap_or(0);
        self.last_end = self.points.last().map_or(0, |&(b, _)| {
            origin.saturating_add((b + 1).saturating_mul(self.width))
        });
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
        self.note_last_end();
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

    /// Every value through the division (`push_past_last`), as `push`
    /// took them all before it kept `last_end`.
    fn pushed_by_division(limit: usize, values: &[(u64, u64)]) -> Vec<Point> {
        let mut s = Series::new(limit);
        for &(ticks, value) in values {
            s.push_past_last(ticks, value);
        }
        s.points().copied().collect()
    }

    #[test]
    fn the_last_bucket_shortcut_changes_no_point() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for limit in [2, 3, 16, 100] {
            let mut values = Vec::new();
            let mut t = next() % 1000;
            for _ in 0..5_000 {
                // Mostly forward in small steps, sometimes a jump, sometimes
                // a value a little in the past (clock skew between threads).
                match next() % 10 {
                    0 => t += next() % 100_000,
                    1 => t = t.saturating_sub(next() % 50),
                    _ => t += next() % 20,
                }
                values.push((t, next() % 1_000_000));
            }
            let mut s = Series::new(limit);
            for &(t, v) in &values {
                s.push(t, v);
            }
            let got: Vec<Point> = s.points().copied().collect();
            assert_eq!(got, pushed_by_division(limit, &values), "limit {limit}");
        }
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
