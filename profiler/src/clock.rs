//! Converts trace ticks to nanoseconds using the trace's CLOCK records.
//!
//! Ticks are whatever the recorder's clock counts (the time-stamp counter on
//! x86_64). A time is converted by linear interpolation between the two
//! CLOCK records nearest to it, extrapolating from the first two or last two
//! at the ends, as the trace format specifies. With fewer than two distinct
//! calibration points the clock is *uncalibrated* and one tick is taken to be
//! one nanosecond; reports say so.
//!
//! Durations (latencies, lifetimes) are stored by the model in ticks and
//! converted with the mean rate over the whole trace ([`Clock::ticks_to_ns`]):
//! the model sees a duration before the CLOCK records that bracket it, and
//! the tick rate of a modern CPU's invariant counter is constant anyway.

/// One calibration point: a tick count and the monotonic time it stood for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPoint {
    /// Ticks of the recording clock.
    pub ticks: u64,
    /// `CLOCK_MONOTONIC` nanoseconds at that tick count.
    pub monotonic_ns: u64,
}

/// The tick-to-time calibration of one trace.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Calibration points sorted by ticks, without duplicate tick counts.
    points: Vec<ClockPoint>,
}

impl Clock {
    /// A clock with no calibration (one tick per nanosecond).
    pub fn new() -> Self {
        Clock::default()
    }

    /// Adds a calibration point. Points normally arrive in order; one that
    /// does not is inserted where it belongs, and a repeated tick count keeps
    /// the first point.
    pub fn add(&mut self, ticks: u64, monotonic_ns: u64) {
        let point = ClockPoint {
            ticks,
            monotonic_ns,
        };
        match self.points.last() {
            Some(last) if last.ticks < ticks => self.points.push(point),
            None => self.points.push(point),
            _ => {
                let i = self.points.partition_point(|p| p.ticks < ticks);
                if self.points.get(i).is_none_or(|p| p.ticks != ticks) {
                    self.points.insert(i, point);
                }
            }
        }
    }

    /// The calibration points, sorted by ticks.
    pub fn points(&self) -> &[ClockPoint] {
        &self.points
    }

    /// True when at least two calibration points exist, so that ticks are
    /// converted at the measured rate rather than assumed to be nanoseconds.
    pub fn is_calibrated(&self) -> bool {
        self.points.len() >= 2
    }

    /// The tick count of the first calibration point (the recording's
    /// start), if there is one.
    pub fn first_ticks(&self) -> Option<u64> {
        self.points.first().map(|p| p.ticks)
    }

    /// Monotonic nanoseconds at `ticks`.
    pub fn to_ns(&self, ticks: u64) -> u64 {
        let (a, b) = match self.points.len() {
            0 => return ticks,
            1 => {
                let p = self.points[0];
                let ns = i128::from(p.monotonic_ns) + i128::from(ticks) - i128::from(p.ticks);
                return clamp(ns);
            }
            n => {
                let i = self.points.partition_point(|p| p.ticks <= ticks);
                let i = i.clamp(1, n - 1);
                (self.points[i - 1], self.points[i])
            }
        };
        let dt = i128::from(ticks) - i128::from(a.ticks);
        let dns = i128::from(b.monotonic_ns) - i128::from(a.monotonic_ns);
        let dticks = i128::from(b.ticks) - i128::from(a.ticks);
        clamp(i128::from(a.monotonic_ns) + dt * dns / dticks)
    }

    /// The ticks at monotonic nanoseconds `ns`: the inverse of
    /// [`Clock::to_ns`] (extrapolated beyond the calibration points).
    pub fn ticks_at_ns(&self, ns: u64) -> u64 {
        let (a, b) = match self.points.len() {
            0 => return ns,
            1 => {
                let p = self.points[0];
                let t = i128::from(p.ticks) + i128::from(ns) - i128::from(p.monotonic_ns);
                return clamp(t);
            }
            n => {
                let i = self.points.partition_point(|p| p.monotonic_ns <= ns);
                let i = i.clamp(1, n - 1);
                (self.points[i - 1], self.points[i])
            }
        };
        let dns = i128::from(ns) - i128::from(a.monotonic_ns);
        let span_ns = i128::from(b.monotonic_ns) - i128::from(a.monotonic_ns);
        let span_ticks = i128::from(b.ticks) - i128::from(a.ticks);
        if span_ns == 0 {
            return a.ticks;
        }
        clamp(i128::from(a.ticks) + dns * span_ticks / span_ns)
    }

    /// Nanoseconds from `from` to `to` (0 if `to` is earlier).
    pub fn elapsed_ns(&self, from: u64, to: u64) -> u64 {
        self.to_ns(to).saturating_sub(self.to_ns(from))
    }

    /// Mean nanoseconds per tick over the calibrated span (1.0 when
    /// uncalibrated).
    pub fn ns_per_tick(&self) -> f64 {
        match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) if b.ticks > a.ticks => {
                (b.monotonic_ns.saturating_sub(a.monotonic_ns)) as f64 / (b.ticks - a.ticks) as f64
            }
            _ => 1.0,
        }
    }

    /// A duration of `ticks` in nanoseconds, at the mean rate.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick()).round() as u64
    }
}

fn clamp(ns: i128) -> u64 {
    ns.clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_and_extrapolates_beyond_the_points() {
        let mut c = Clock::new();
        c.add(1000, 0);
        c.add(3000, 1000);
        c.add(5000, 3000);
        assert!(c.is_calibrated());
        assert_eq!(c.to_ns(1000), 0);
        assert_eq!(c.to_ns(2000), 500);
        assert_eq!(c.to_ns(4000), 2000);
        // Before the first point: the first segment's rate (0.5 ns/tick).
        assert_eq!(c.to_ns(0), 0);
        assert_eq!(c.to_ns(600), 0);
        // After the last point: the last segment's rate (1 ns/tick).
        assert_eq!(c.to_ns(6000), 4000);
        assert_eq!(c.elapsed_ns(2000, 4000), 1500);
        assert!((c.ns_per_tick() - 0.75).abs() < 1e-9);
        assert_eq!(c.ticks_to_ns(400), 300);
    }

    #[test]
    fn uncalibrated_clocks_count_one_tick_as_one_nanosecond() {
        let mut c = Clock::new();
        assert!(!c.is_calibrated());
        assert_eq!(c.to_ns(1234), 1234);
        c.add(1000, 50_000);
        assert!(!c.is_calibrated());
        assert_eq!(c.to_ns(1500), 50_500);
        assert_eq!(c.ticks_to_ns(77), 77);
    }

    #[test]
    fn out_of_order_and_repeated_points_are_tolerated() {
        let mut c = Clock::new();
        c.add(3000, 2000);
        c.add(1000, 0);
        c.add(1000, 999);
        assert_eq!(c.points().len(), 2);
        assert_eq!(c.to_ns(2000), 1000);
    }
}
