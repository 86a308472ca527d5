//! Paired differences and their bootstrap intervals: the statistics of the
//! low-load overhead measurement, where the two paths alternate request by
//! request and each pair's difference (second path minus first) is free of
//! the drift both requests of a pair share.
//!
//! Pure functions of numbers (no I/O); the bootstrap is seeded, so one
//! input gives one interval. `compare` calls it on the measured pairs.

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

use crate::stats::{quantile, Interval};

/// Resamples of the bootstrap.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
/// Seed of the bootstrap's generator (a fixed one: the interval is a
/// function of the data).
const BOOTSTRAP_SEED: u64 = 0x5e7e_7e57;

/// `b[i] − a[i]` for each pair (the shorter length wins).
pub fn paired_differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| y - x).collect()
}

/// The `q` quantile of `values` (any order), interpolated between ranks.
pub fn quantile_of(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, q)
}

/// The `q` quantile of `values` with a percentile-bootstrap 95 % interval
/// (`resamples` resamples with replacement; the 2.5th and 97.5th
/// percentiles of their quantiles). None for fewer than two values.
pub fn bootstrap_quantile(values: &[f64], q: f64, resamples: usize) -> Option<Interval> {
    if values.len() < 2 || resamples == 0 {
        return None;
    }
    let estimate = quantile_of(values, q)?;
    let mut rng = SmallRng::seed_from_u64(BOOTSTRAP_SEED);
    let mut sample = vec![0.0; values.len()];
    let mut estimates = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in sample.iter_mut() {
            *slot = values[rng.random_range(0..values.len())];
        }
        sample.sort_by(f64::total_cmp);
        estimates.extend(quantile(&sample, q));
    }
    estimates.sort_by(f64::total_cmp);
    Some(Interval {
        estimate,
        low: quantile(&estimates, 0.025)?,
        high: quantile(&estimates, 0.975)?,
    })
}

/// The median and p99 of paired differences, each with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedSummary {
    pub p50: Interval,
    pub p99: Interval,
    pub pairs: usize,
}

/// Summarises the pairs `(first, second)`: second minus first.
pub fn summarize_pairs(first: &[f64], second: &[f64]) -> Option<PairedSummary> {
    let differences = paired_differences(first, second);
    Some(PairedSummary {
        p50: bootstrap_quantile(&differences, 0.5, BOOTSTRAP_RESAMPLES)?,
        p99: bootstrap_quantile(&differences, 0.99, BOOTSTRAP_RESAMPLES)?,
        pairs: differences.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_second_minus_first_pair_by_pair() {
        assert_eq!(
            paired_differences(&[1.0, 2.0, 3.0], &[1.5, 2.0, 2.0]),
            vec![0.5, 0.0, -1.0]
        );
        assert_eq!(paired_differences(&[1.0, 2.0], &[4.0]), vec![3.0]);
        assert_eq!(quantile_of(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    }

    #[test]
    fn a_constant_difference_has_a_zero_width_interval() {
        let first: Vec<f64> = (0..200).map(|i| 10.0 + (i % 7) as f64).collect();
        let second: Vec<f64> = first.iter().map(|x| x + 0.8).collect();
        let summary = summarize_pairs(&first, &second).expect("200 pairs");
        assert_eq!(summary.pairs, 200);
        for interval in [summary.p50, summary.p99] {
            assert!((interval.estimate - 0.8).abs() < 1e-9, "{interval:?}");
            assert!((interval.low - 0.8).abs() < 1e-9 && (interval.high - 0.8).abs() < 1e-9);
        }
    }

    #[test]
    fn the_bootstrap_interval_of_a_median_covers_it_and_narrows_with_more_data() {
        // Differences 0, 1, …, 100: the median is 50; the interval of the
        // median of n uniform values is about ±1.96 · 100 / (2 √n) ≈ ±9.8.
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let small = bootstrap_quantile(&values, 0.5, 2000).expect("101 values");
        assert_eq!(small.estimate, 50.0);
        assert!(small.low < 50.0 && small.high > 50.0, "{small:?}");
        assert!(small.half_width() > 5.0 && small.half_width() < 15.0, "{small:?}");
        let many: Vec<f64> = (0..10_000).map(|i| f64::from(i % 101)).collect();
        let large = bootstrap_quantile(&many, 0.5, 500).expect("10k values");
        assert_eq!(large.estimate, 50.0);
        assert!(
            large.half_width() <= 2.0,
            "100 times the data: a tenth of the width: {large:?}"
        );
        // Seeded: the same data gives the same interval.
        assert_eq!(bootstrap_quantile(&values, 0.5, 2000), Some(small));
    }

    #[test]
    fn the_p99_of_differences_sees_the_tail() {
        // 990 differences of 1 ms and 10 of 50 ms: the median is 1, p99 is in the tail.
        let differences: Vec<f64> = (0..1000).map(|i| if i % 100 == 0 { 50.0 } else { 1.0 }).collect();
        let p50 = bootstrap_quantile(&differences, 0.5, 300).expect("values");
        let p99 = bootstrap_quantile(&differences, 0.99, 300).expect("values");
        assert_eq!((p50.estimate, p50.low, p50.high), (1.0, 1.0, 1.0));
        assert!(p99.estimate > 1.0 && p99.high <= 50.0, "{p99:?}");
        assert!(bootstrap_quantile(&[1.0], 0.5, 100).is_none());
    }
}
