//! Sites whose live bytes keep growing: the leak that never ends in a
//! long-running process (a cache without eviction, a log never trimmed),
//! which a leak report at exit cannot tell from memory kept on purpose.
//!
//! Each site's live bytes over time ([`crate::SiteDetailRef::live`]) are
//! sampled at [`SAMPLES`] evenly spaced instants from the site's first
//! allocation to the end of the recording (the value in force at each, so
//! a site that stopped changing long ago shows as flat since). A site
//! grows when:
//!
//! - the Mann-Kendall trend test finds an upward trend over all samples
//!   (one-sided, z >= [`Z_ALL`], about p < 0.01): a rank test, so one
//!   large step or a few outliers do not make a trend;
//! - and over the later half too (z >= [`Z_LATER`], about p < 0.05), so a
//!   cache that filled early and then stayed flat is not reported;
//! - and the Theil-Sen slope (the median of the pairwise slopes, robust
//!   to outliers) is positive: the growth rate reported, in bytes per
//!   second.

use crate::model::Model;
use crate::stacks::StackId;

/// Samples per site.
pub const SAMPLES: usize = 32;
/// The smallest z of the whole series for a trend.
pub const Z_ALL: f64 = 2.33;
/// The smallest z of the later half.
pub const Z_LATER: f64 = 1.645;

/// A site found growing.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    /// The site.
    pub stack: StackId,
    /// Its live bytes at the end.
    pub live_bytes: u64,
    /// The Theil-Sen slope, in bytes per second.
    pub bytes_per_second: f64,
    /// The Mann-Kendall z of all samples.
    pub z: f64,
    /// Nanoseconds from the site's first allocation to the end.
    pub span_ns: u64,
}

/// The growing sites of `model` (which must keep site details), fastest
/// first. Sites observed over less than `min_span_ns` are not judged.
pub fn growing_sites(model: &Model, min_span_ns: u64) -> Vec<Growth> {
    let mut out: Vec<Growth> = model
        .sites()
        .filter_map(|s| site_growth(model, s.stack, min_span_ns))
        .collect();
    sort_fastest_first(&mut out);
    out
}

/// Fastest growth first (ties by stack id).
pub fn sort_fastest_first(growth: &mut [Growth]) {
    growth.sort_by(|a, b| {
        b.bytes_per_second
            .total_cmp(&a.bytes_per_second)
            .then(a.stack.cmp(&b.stack))
    });
}

/// Site `stack`'s growth, if it keeps growing (see the module's comment);
/// `None` too when the model keeps no details or the site was observed
/// for less than `min_span_ns`. A view that must not stall can test a
/// few sites at a time with this.
pub fn site_growth(model: &Model, stack: StackId, min_span_ns: u64) -> Option<Growth> {
    let end = model.end_ticks();
    let detail = model.site_detail(stack)?;
    let points: Vec<(u64, u64)> = detail.live().iter().map(|p| (p.ticks, p.last)).collect();
    let &(first, _) = points.first()?;
    let span_ns = model.clock().elapsed_ns(first, end);
    if span_ns < min_span_ns || end <= first {
        return None;
    }
    // (seconds since the first allocation, bytes) at each instant.
    let samples: Vec<(f64, f64)> = (1..=SAMPLES)
        .map(|i| {
            let t = first + ((end - first) as u128 * i as u128 / SAMPLES as u128) as u64;
            let n = points.partition_point(|p| p.0 <= t);
            let v = if n == 0 { 0 } else { points[n - 1].1 };
            (span_ns as f64 / 1e9 * i as f64 / SAMPLES as f64, v as f64)
        })
        .collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.1).collect();
    // Cheapest test first: most sites of a busy program have no trend.
    if ys[SAMPLES - 1] <= ys[0] {
        return None;
    }
    let z = mann_kendall_z(&ys);
    if z < Z_ALL || mann_kendall_z(&ys[SAMPLES / 2..]) < Z_LATER {
        return None;
    }
    let slope = theil_sen(&samples);
    (slope > 0.0).then(|| Growth {
        stack,
        live_bytes: model.site(stack).map_or(0, |c| c.live_bytes),
        bytes_per_second: slope,
        z,
        span_ns,
    })
}

/// The Mann-Kendall statistic's z score (with the tie correction and the
/// continuity correction): large and positive for an upward trend; 0 for
/// fewer than three values or all equal.
pub fn mann_kendall_z(ys: &[f64]) -> f64 {
    let n = ys.len();
    if n < 3 {
        return 0.0;
    }
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match ys[j].partial_cmp(&ys[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    // Ties: groups of equal values reduce the variance.
    let mut sorted = ys.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && sorted[j + 1] == sorted[i] {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j + 1;
    }
    let nf = n as f64;
    let var = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0;
    if var <= 0.0 {
        return 0.0;
    }
    let s = s as f64;
    if s > 0.0 {
        (s - 1.0) / var.sqrt()
    } else if s < 0.0 {
        (s + 1.0) / var.sqrt()
    } else {
        0.0
    }
}

/// The Theil-Sen slope of `(x, y)` points: the median of the slopes
/// between every pair with different x; 0 when there is none.
pub fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    // The median, by selection (a full sort took most of the dashboard's
    // growth test).
    let m = slopes.len() / 2;
    let odd = slopes.len() % 2 == 1;
    let (below, &mut upper, _) = slopes.select_nth_unstable_by(m, f64::total_cmp);
    if odd {
        upper
    } else {
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(upper);
        (lower + upper) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_kendall_matches_the_hand_computed_values() {
        // Strictly increasing, n = 10: S = 45, Var = 10*9*25/18 = 125,
        // z = 44 / sqrt(125).
        let up: Vec<f64> = (0..10).map(f64::from).collect();
        assert!((mann_kendall_z(&up) - 44.0 / 125f64.sqrt()).abs() < 1e-12);
        let down: Vec<f64> = up.iter().rev().copied().collect();
        assert!((mann_kendall_z(&down) + 44.0 / 125f64.sqrt()).abs() < 1e-12);
        // Flat: no trend.
        assert_eq!(mann_kendall_z(&[3.0; 8]), 0.0);
        // 1, 2, 2, 3: S = 5 (one tie); Var = (4*3*13 - 2*1*9)/18 = 7.667.
        let z = mann_kendall_z(&[1.0, 2.0, 2.0, 3.0]);
        assert!((z - 4.0 / (138.0f64 / 18.0).sqrt()).abs() < 1e-12, "{z}");
    }

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..11).map(|i| (i as f64, 3.0 * i as f64)).collect();
        pts[5].1 = 1000.0;
        assert_eq!(theil_sen(&pts), 3.0);
        assert_eq!(theil_sen(&[(1.0, 1.0)]), 0.0);
    }
}
