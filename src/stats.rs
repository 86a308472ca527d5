//! Statistics of repeated measurements: mean, variance, median and
//! quantiles, and Student-t / Welch 95 % intervals of means, differences
//! and relative changes (`Interval`).
//!
//! A leaf: pure functions of numbers, no I/O, no imports from the crate.
//! `study` (estimates), `compare` (figures over rounds) and `replay`
//! (figures over seeds) call it.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A two-sided 95 % interval around an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }

    /// Whether the interval lies entirely above zero.
    pub fn above_zero(&self) -> bool {
        self.low > 0.0
    }

    /// Whether the interval lies entirely below zero.
    pub fn below_zero(&self) -> bool {
        self.high < 0.0
    }
}

/// The standard normal CDF (Abramowitz–Stegun 7.1.26 through erf).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The arithmetic mean; 0 for no values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The sample variance (n − 1 in the denominator; 0 for fewer than two values).
pub fn variance(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0).max(1.0)
}

/// The median (sorts `values`); None for no values.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The `q` quantile of sorted values, interpolated linearly between ranks;
/// None for no values or when it falls on an infinite value (a failure
/// counted as infinitely bad).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let value = sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64);
    value.is_finite().then_some(value)
}

/// The two-sided 97.5 % quantile of Student's t with `df` degrees of freedom.
fn t_quantile(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df.max(1.0)).map_or(1.96, |t| t.inverse_cdf(0.975))
}

/// 95 % interval of the mean of independent runs (None with fewer than two).
pub fn mean_interval(runs: &[f64]) -> Option<Interval> {
    if runs.len() < 2 {
        return None;
    }
    let n = runs.len() as f64;
    let half = t_quantile(n - 1.0) * (variance(runs) / n).sqrt();
    let estimate = mean(runs);
    Some(Interval {
        estimate,
        low: estimate - half,
        high: estimate + half,
    })
}

/// Welch's 95 % interval of mean(a) − mean(b).
pub fn difference_interval(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (va, vb) = (variance(a) / a.len() as f64, variance(b) / b.len() as f64);
    let se = (va + vb).sqrt();
    let df = if se > 0.0 {
        (va + vb).powi(2) / (va.powi(2) / (a.len() as f64 - 1.0) + vb.powi(2) / (b.len() as f64 - 1.0)).max(1e-300)
    } else {
        (a.len() + b.len() - 2) as f64
    };
    let estimate = mean(a) - mean(b);
    let half = t_quantile(df) * se;
    Some(Interval {
        estimate,
        low: estimate - half,
        high: estimate + half,
    })
}

/// 95 % interval of the relative change of `new` over `old`, in percent
/// (Welch on the logarithms, so it is a ratio of geometric means).
pub fn change_pct_interval(new: &[f64], old: &[f64]) -> Option<Interval> {
    let logs = |v: &[f64]| v.iter().map(|x| x.max(1e-9).ln()).collect::<Vec<_>>();
    let d = difference_interval(&logs(new), &logs(old))?;
    let pct = |x: f64| (x.exp() - 1.0) * 100.0;
    Some(Interval {
        estimate: pct(d.estimate),
        low: pct(d.low),
        high: pct(d.high),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_variance_and_median_of_small_samples() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(variance(&[1.0, 2.0, 6.0]), 7.0);
        assert_eq!(variance(&[4.0]), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn quantiles_interpolate_and_an_infinite_one_is_none() {
        let sorted = [1.0, 2.0, 3.0, 5.0];
        assert_eq!(quantile(&sorted, 0.0), Some(1.0));
        assert_eq!(quantile(&sorted, 0.5), Some(2.5));
        assert_eq!(quantile(&sorted, 1.0), Some(5.0));
        assert_eq!(quantile(&[1.0, f64::INFINITY], 1.0), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn intervals_come_from_between_run_variance() {
        let i = mean_interval(&[100.0, 110.0, 90.0]).expect("three runs");
        // s = 10, n = 3, t(2) = 4.303: half-width 24.8
        assert!((i.estimate - 100.0).abs() < 1e-9);
        assert!((i.half_width() - 4.303 * 10.0 / 3f64.sqrt()).abs() < 0.01, "{i:?}");
        assert!(mean_interval(&[5.0]).is_none());
        let d = difference_interval(&[200.0, 202.0, 198.0], &[100.0, 101.0, 99.0]).expect("two sides");
        assert!(d.above_zero() && !d.below_zero());
        let g = change_pct_interval(&[200.0, 202.0, 198.0], &[100.0, 101.0, 99.0]).expect("two sides");
        assert!((g.estimate - 100.0).abs() < 1.0 && g.low > 90.0, "{g:?}");
    }
}
