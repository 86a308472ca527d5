//! Long-running stability (`bench --soak 2h`, the study's `soak = "20m"`):
//! one fixed-window run of the soak's length with every process's memory
//! tracked, then a verdict.
//!
//! - Memory: a least-squares line through each process's RSS over the
//!   window (and through the trees' total), its slope in MB/h with a 95 %
//!   Student-t interval.
//! - Throughput and p99 drift: the first tenth of the window against the
//!   last (throughput: successes per second; p99: the median of the
//!   seconds' p99s, robust to one slow second).
//! - Errors over the window.
//!
//! The verdict (thresholds below, repeated in the README): `grows N MB/h`
//! when the total's slope is above zero with 95 % confidence, at least
//! `GROWTH_MB_PER_H` and `GROWTH_SHARE_PER_H` of the mean, and the line
//! gained `GROWTH_MIN_MB` over the window; `p99 degrades`
//! when the last tenth's p99 is `P99_DEGRADES_PCT` over the first's and at
//! least `P99_DEGRADES_MS` more; `throughput drops` when the last tenth
//! serves `THROUGHPUT_DROPS_PCT` less; `errors` when the error rate is over
//! `ERROR_RATE`; else `stable`.
//!
//! Pure analysis (`analyse`) apart from `run_soak`, which measures.
//! Called by the `bench` command; the study calls `run_soak` on its
//! balanced recommendation.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use tokio_util::sync::CancellationToken;

use super::timeline::{measure_observed, Observed};
use super::track::MemoryTrack;
use super::ServerProbe;
use crate::load::{LoadError, LoadPlan, Progress};
use crate::measure::SecondStats;
use crate::stats::Interval;

/// Memory grows when its slope is at least this many MB per hour …
pub const GROWTH_MB_PER_H: f64 = 10.0;
/// … and at least this share of its mean per hour (1 %) …
pub const GROWTH_SHARE_PER_H: f64 = 0.01;
/// … and the fitted line gained at least this many MB over the soak (a
/// short soak extrapolates a JVM's first megabytes to an hour otherwise).
pub const GROWTH_MIN_MB: f64 = 10.0;
/// p99 degrades when the last tenth's is this much higher (percent) …
pub const P99_DEGRADES_PCT: f64 = 25.0;
/// … and by at least this many milliseconds.
pub const P99_DEGRADES_MS: f64 = 1.0;
/// Throughput drops when the last tenth's is this much lower (percent).
pub const THROUGHPUT_DROPS_PCT: f64 = 15.0;
/// Errors are worth a verdict above this rate.
pub const ERROR_RATE: f64 = 0.01;

/// A least-squares line through (time, MB) samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryTrend {
    pub mean_mb: f64,
    pub first_mb: f64,
    pub last_mb: f64,
    /// The slope in MB per hour, with its 95 % interval (None with fewer than three samples).
    pub slope_mb_per_h: Option<Interval>,
    pub samples: usize,
    /// Seconds from the first sample to the last.
    pub span_s: f64,
}

/// One process's memory trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessTrend {
    pub pid: i32,
    pub role: String,
    #[serde(flatten)]
    pub trend: MemoryTrend,
}

/// What the soak found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakReport {
    pub duration_s: f64,
    /// `stable`, or what is wrong: `grows N MB/h`, `p99 degrades`, `throughput drops`, `errors`.
    pub verdict: String,
    pub stable: bool,
    /// The trees' total RSS.
    pub memory: Option<MemoryTrend>,
    pub processes: Vec<ProcessTrend>,
    pub throughput_first_rps: f64,
    pub throughput_last_rps: f64,
    pub throughput_drift_pct: f64,
    pub p99_first_ms: f64,
    pub p99_last_ms: f64,
    pub p99_drift_pct: f64,
    pub errors: u64,
    pub error_rate: f64,
}

impl SoakReport {
    /// The soak in lines of text, for the `bench` output.
    pub fn text(&self) -> String {
        let slope = |t: &MemoryTrend| {
            t.slope_mb_per_h.map_or("n/a (too few samples)".into(), |i| {
                format!("{:+.1} MB/h [{:+.1}, {:+.1}]", i.estimate, i.low, i.high)
            })
        };
        let mut text = format!(
            "soak          {:.0} s measured: {}\n",
            self.duration_s,
            self.verdict.to_uppercase()
        );
        if let Some(total) = &self.memory {
            text.push_str(&format!(
                "  memory      all processes {:.0} -> {:.0} MB (RSS), slope {}\n",
                total.first_mb,
                total.last_mb,
                slope(total)
            ));
        }
        for p in &self.processes {
            text.push_str(&format!(
                "  {:<11} pid {:<7} {:.0} -> {:.0} MB, slope {}\n",
                p.role,
                p.pid,
                p.trend.first_mb,
                p.trend.last_mb,
                slope(&p.trend)
            ));
        }
        text.push_str(&format!(
            "  drift       throughput {:.1} -> {:.1} req/s ({:+.1}%)   p99 {:.2} -> {:.2} ms ({:+.1}%)   (first vs last tenth)\n",
            self.throughput_first_rps,
            self.throughput_last_rps,
            self.throughput_drift_pct,
            self.p99_first_ms,
            self.p99_last_ms,
            self.p99_drift_pct
        ));
        text.push_str(&format!(
            "  errors      {} ({:.2}%)",
            self.errors,
            self.error_rate * 100.0
        ));
        text
    }
}

/// A soak's measurement and its verdict.
#[derive(Debug, Clone)]
pub struct Soaked {
    pub observed: Observed,
    pub report: SoakReport,
}

/// The least-squares line through `points` (seconds, MB): slope per hour
/// with its 95 % interval.
pub fn trend(points: &[(f64, f64)]) -> Option<MemoryTrend> {
    let (first, last) = (points.first()?, points.last()?);
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope_mb_per_h = (points.len() >= 3 && sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        let intercept = mean_y - slope * mean_x;
        let residuals: f64 = points.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
        let se = (residuals / (n - 2.0) / sxx).sqrt();
        let t = StudentsT::new(0.0, 1.0, n - 2.0).map_or(1.96, |t| t.inverse_cdf(0.975));
        let per_hour = 3600.0;
        Interval {
            estimate: slope * per_hour,
            low: (slope - t * se) * per_hour,
            high: (slope + t * se) * per_hour,
        }
    });
    Some(MemoryTrend {
        mean_mb: mean_y,
        first_mb: first.1,
        last_mb: last.1,
        slope_mb_per_h,
        samples: points.len(),
        span_s: last.0 - first.0,
    })
}

/// Whether a trend grows by the verdict's thresholds.
pub fn grows(trend: &MemoryTrend) -> bool {
    trend.slope_mb_per_h.is_some_and(|slope| {
        slope.above_zero()
            && slope.estimate >= GROWTH_MB_PER_H.max(GROWTH_SHARE_PER_H * trend.mean_mb)
            && slope.estimate * trend.span_s / 3600.0 >= GROWTH_MIN_MB
    })
}

/// The median of the p99s of `seconds` that served something.
fn median_p99(seconds: &[&SecondStats]) -> f64 {
    let mut p99s: Vec<f64> = seconds.iter().filter(|s| s.ok > 0).map(|s| s.p99_ms).collect();
    crate::stats::median(&mut p99s).unwrap_or(0.0)
}

fn drift_pct(first: f64, last: f64) -> f64 {
    if first > 0.0 {
        (last / first - 1.0) * 100.0
    } else {
        0.0
    }
}

/// The verdict on a soak's window: its seconds (warm-up excluded here),
/// the memory track (samples before `from_s` are left out), the errors.
pub fn analyse(seconds: &[SecondStats], memory: &MemoryTrack, from_s: f64, error_rate: f64) -> SoakReport {
    let window: Vec<&SecondStats> = seconds.iter().filter(|s| !s.warmup).collect();
    let tenth = (window.len() / 10).max(1).min(window.len());
    let (first, last) = (&window[..tenth], &window[window.len() - tenth..]);
    let rps = |part: &[&SecondStats]| part.iter().map(|s| s.ok as f64).sum::<f64>() / part.len().max(1) as f64;
    let after =
        |points: &[(f64, f64)]| -> Vec<(f64, f64)> { points.iter().copied().filter(|p| p.0 >= from_s).collect() };
    let processes: Vec<ProcessTrend> = memory
        .processes
        .iter()
        .filter_map(|p| {
            trend(&after(&p.rss_mb)).map(|trend| ProcessTrend {
                pid: p.pid,
                role: p.role.clone(),
                trend,
            })
        })
        .collect();
    let mut report = SoakReport {
        duration_s: window.len() as f64,
        verdict: String::new(),
        stable: true,
        memory: trend(&after(&memory.total_mb)),
        processes,
        throughput_first_rps: rps(first),
        throughput_last_rps: rps(last),
        throughput_drift_pct: drift_pct(rps(first), rps(last)),
        p99_first_ms: median_p99(first),
        p99_last_ms: median_p99(last),
        p99_drift_pct: drift_pct(median_p99(first), median_p99(last)),
        errors: window.iter().map(|s| s.errors).sum(),
        error_rate,
    };
    let problems = problems_of(&report);
    report.stable = problems.is_empty();
    report.verdict = if problems.is_empty() {
        "stable".into()
    } else {
        problems.join(", ")
    };
    report
}

/// What is wrong with a soak, by the thresholds above.
fn problems_of(r: &SoakReport) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(memory) = r.memory.as_ref().filter(|m| grows(m)) {
        let slope = memory.slope_mb_per_h.expect("grows has a slope").estimate;
        problems.push(format!("grows {slope:.0} MB/h"));
    }
    if r.p99_drift_pct >= P99_DEGRADES_PCT && r.p99_last_ms - r.p99_first_ms >= P99_DEGRADES_MS {
        problems.push("p99 degrades".into());
    }
    if r.throughput_drift_pct <= -THROUGHPUT_DROPS_PCT {
        problems.push("throughput drops".into());
    }
    if r.error_rate > ERROR_RATE {
        problems.push("errors".into());
    }
    problems
}

/// Soaks the server `probe` names under `plan` (its window is the soak's
/// length, measured as given, no steadiness rule) and says how it held up.
pub async fn run_soak(
    mut plan: LoadPlan,
    soak: Duration,
    mode: &str,
    probe: &ServerProbe,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<Soaked, LoadError> {
    plan.duration = soak;
    plan.stability = None;
    let observed = measure_observed(plan, mode, probe, token, progress).await?;
    let load = &observed.measurement.load;
    let report = analyse(&load.timeline, &observed.memory, load.warmup_s, load.error_rate);
    Ok(Soaked { observed, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::track::ProcessSeries;
    use proptest::prelude::*;

    fn seconds(count: u64, ok: impl Fn(u64) -> u64, p99: impl Fn(u64) -> f64) -> Vec<SecondStats> {
        (0..count)
            .map(|s| SecondStats {
                second: s,
                warmup: s < 2,
                ok: ok(s),
                errors: 0,
                p50_ms: p99(s) / 2.0,
                p99_ms: p99(s),
            })
            .collect()
    }

    fn track(mb: impl Fn(f64) -> f64, count: usize) -> MemoryTrack {
        let points: Vec<(f64, f64)> = (0..count).map(|i| (i as f64, mb(i as f64))).collect();
        MemoryTrack {
            processes: vec![ProcessSeries {
                pid: 7,
                role: "worker".into(),
                rss_mb: points.clone(),
            }],
            total_mb: points,
        }
    }

    #[test]
    fn a_flat_server_is_stable() {
        let wobble = |t: f64| 500.0 + if (t as u64) % 2 == 0 { 1.0 } else { -1.0 };
        let r = analyse(&seconds(600, |_| 100, |_| 20.0), &track(wobble, 600), 2.0, 0.0);
        assert_eq!(r.verdict, "stable");
        assert!(r.stable);
        let slope = r.memory.unwrap().slope_mb_per_h.unwrap();
        assert!(slope.low < 0.0 || slope.estimate < GROWTH_MB_PER_H, "{slope:?}");
        assert_eq!(r.processes[0].role, "worker");
        assert!((r.throughput_first_rps - 100.0).abs() < 1e-9 && r.throughput_drift_pct.abs() < 1e-9);
    }

    #[test]
    fn a_leak_is_measured_in_mb_per_hour() {
        // 1 MB every 60 s: 60 MB/h, plus a small wobble.
        let leak = |t: f64| 800.0 + t / 60.0 + (t * 1.7).sin();
        let r = analyse(&seconds(1800, |_| 50, |_| 30.0), &track(leak, 1800), 2.0, 0.0);
        let slope = r.memory.unwrap().slope_mb_per_h.unwrap();
        assert!((slope.estimate - 60.0).abs() < 2.0, "{slope:?}");
        assert!(slope.low > 50.0 && slope.high < 70.0, "{slope:?}");
        assert_eq!(r.verdict, "grows 60 MB/h");
        assert!(!r.stable);
        let text = r.text();
        assert!(
            text.contains("GROWS 60 MB/H") && text.contains("worker      pid 7"),
            "{text}"
        );
        assert!(text.contains("slope +60.0 MB/h ["), "{text}");
    }

    #[test]
    fn a_short_soak_does_not_extrapolate_a_few_megabytes_to_an_hour() {
        // 2 MB over 20 s is 360 MB/h, but only 2 MB: too little to call.
        let r = analyse(
            &seconds(22, |_| 50, |_| 30.0),
            &track(|t| 700.0 + t / 10.0, 22),
            2.0,
            0.0,
        );
        assert!(r.memory.unwrap().slope_mb_per_h.unwrap().low > 300.0);
        assert_eq!(r.verdict, "stable");
    }

    #[test]
    fn a_tail_that_slows_down_degrades() {
        let r = analyse(
            &seconds(200, |s| if s > 180 { 70 } else { 100 }, |s| 10.0 + s as f64 / 10.0),
            &track(|_| 500.0, 200),
            2.0,
            0.02,
        );
        assert!(r.p99_last_ms > r.p99_first_ms * 1.25, "{r:?}");
        assert_eq!(r.verdict, "p99 degrades, throughput drops, errors");
    }

    #[test]
    fn a_window_without_memory_still_gets_a_verdict() {
        let r = analyse(&seconds(5, |_| 10, |_| 5.0), &MemoryTrack::default(), 2.0, 0.0);
        assert!(r.memory.is_none() && r.processes.is_empty());
        assert_eq!(r.verdict, "stable");
    }

    proptest! {
        /// The fitted slope of a noiseless line is the line's slope, and its
        /// interval holds it.
        #[test]
        fn the_slope_of_a_line_is_recovered(mb_per_h in -500.0f64..500.0, base in 10.0f64..5000.0, count in 3usize..400) {
            let points: Vec<(f64, f64)> = (0..count).map(|i| (i as f64 * 2.0, base + mb_per_h * i as f64 * 2.0 / 3600.0)).collect();
            let slope = trend(&points).unwrap().slope_mb_per_h.unwrap();
            prop_assert!((slope.estimate - mb_per_h).abs() < 1e-6 * mb_per_h.abs().max(1.0));
            prop_assert!(slope.low <= slope.estimate + 1e-9 && slope.high >= slope.estimate - 1e-9);
        }

        /// Adding a constant never changes the slope; a steeper line never
        /// gets a smaller one.
        #[test]
        fn the_slope_ignores_offsets(offset in -100.0f64..100.0, noise in proptest::collection::vec(-5.0f64..5.0, 3..100)) {
            let points: Vec<(f64, f64)> = noise.iter().enumerate().map(|(i, n)| (i as f64, 100.0 + n)).collect();
            let shifted: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1 + offset)).collect();
            let steeper: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1 + p.0 * 0.5)).collect();
            let (a, b, c) = (trend(&points).unwrap(), trend(&shifted).unwrap(), trend(&steeper).unwrap());
            let slope = |t: MemoryTrend| t.slope_mb_per_h.unwrap().estimate;
            prop_assert!((slope(a) - slope(b)).abs() < 1e-6);
            prop_assert!(slope(c) > slope(a));
        }
    }
}
