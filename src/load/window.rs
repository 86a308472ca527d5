//! The measurement window of one load run: which seconds are warm-up, when
//! sending stops, and when requests still in flight are cut.
//!
//! One monitor task decides; the load lanes only watch its two tokens
//! (`closed`: send nothing more; `hard_stop`: cut what is in flight). Two
//! kinds of window, one code path:
//!
//! - **Fixed**: warm-up W, then D.
//! - **Until stable** (`StabilityRule`): after the warm-up, throughput is
//!   read every sub-window (D/3). The window is the last three
//!   sub-windows once they agree: each within the tolerance of their mean
//!   (±10 %, perf_analyzer's rule for its windows, widened to 3/√n when a
//!   sub-window holds only n completions, so that counting noise alone does
//!   not keep a slow model from ever being stable). Until they agree, the
//!   oldest sub-window is counted as warm-up and one more is measured (a
//!   JIT still compiling, a cache still filling), up to `max_window`; a
//!   window that hit the cap is reported as not stable.
//!
//! Sub-window rates come from completions as they happen (the `Progress`
//! counters); the figures themselves are computed afterwards from the
//! recorder's per-second buckets over the chosen seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::measure::Stability;

/// When an adaptive window counts as stable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StabilityRule {
    /// Relative half-width the last sub-windows must agree within (0.10 = ±10 %).
    pub tolerance: f64,
    /// Longest measured time (extra warm-up included) before giving up.
    pub max_window: Duration,
}

impl StabilityRule {
    /// ±10 % over three sub-windows, at most `max_window`.
    pub fn within(max_window: Duration) -> Self {
        Self {
            tolerance: 0.10,
            max_window,
        }
    }
}

/// Sub-windows that must agree.
pub const SUB_WINDOWS: usize = 3;

/// The tokens the lanes watch, and the end once known.
#[derive(Debug)]
pub struct WindowTokens {
    pub closed: CancellationToken,
    pub hard_stop: CancellationToken,
    start: Instant,
    end_us: AtomicU64,
}

impl WindowTokens {
    pub fn new(start: Instant, latest_end: Instant) -> Self {
        Self {
            closed: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            start,
            end_us: AtomicU64::new(latest_end.saturating_duration_since(start).as_micros() as u64),
        }
    }

    /// The end of sending: the latest possible one until the window closes.
    pub fn end(&self) -> Instant {
        self.start + Duration::from_micros(self.end_us.load(Ordering::Acquire))
    }

    fn close_at(&self, end: Instant) {
        self.end_us.store(
            end.saturating_duration_since(self.start).as_micros() as u64,
            Ordering::Release,
        );
        self.closed.cancel();
    }
}

/// What the monitor decided, in slots (sub-windows) after the least
/// warm-up: slots before `from` are warm-up too, `to` ends the window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOutcome {
    pub from: usize,
    pub to: usize,
    pub stability: Option<Stability>,
}

/// The shape of the window, as the monitor needs it.
#[derive(Debug, Clone, Copy)]
pub struct WindowShape {
    pub warmup: Duration,
    pub duration: Duration,
    pub rule: Option<StabilityRule>,
    pub drain: Duration,
}

impl WindowShape {
    /// The length of one slot: a third of the window when waiting for
    /// steadiness, the whole window when it is fixed.
    pub fn slot(&self) -> Duration {
        match self.rule {
            None => self.duration,
            Some(_) => self.duration / SUB_WINDOWS as u32,
        }
        .max(Duration::from_millis(100))
    }

    /// Slots after the warm-up that may be measured at most.
    fn max_slots(&self) -> usize {
        match self.rule {
            None => 1,
            Some(rule) => {
                let cap = (rule.max_window.as_secs_f64() / self.slot().as_secs_f64()).floor() as usize;
                cap.max(SUB_WINDOWS)
            }
        }
    }

    /// The latest moment sending may go on.
    pub fn latest_end(&self, start: Instant) -> Instant {
        start + self.warmup + self.slot() * self.max_slots() as u32
    }
}

/// Drives the window: closes it, reports the outcome, then cuts what is
/// still in flight after the drain. `decided` gets the outcome at close.
pub async fn drive(
    shape: WindowShape,
    start: Instant,
    tokens: Arc<WindowTokens>,
    progress: Arc<Progress>,
    token: CancellationToken,
    decided: tokio::sync::oneshot::Sender<WindowOutcome>,
) {
    let outcome = tokio::select! {
        outcome = decide(shape, start, &progress) => outcome,
        _ = token.cancelled() => WindowOutcome {
            from: 0,
            to: shape.max_slots(),
            stability: None,
        },
    };
    let end = start + shape.warmup + shape.slot() * outcome.to as u32;
    tokens.close_at(end.min(Instant::now().max(start)));
    let _ = decided.send(outcome);
    tokio::select! {
        _ = sleep_until((end + shape.drain).into()) => {}
        _ = token.cancelled() => {}
    }
    tokens.hard_stop.cancel();
}

async fn decide(shape: WindowShape, start: Instant, progress: &Progress) -> WindowOutcome {
    let Some(rule) = shape.rule else {
        sleep_until((start + shape.warmup + shape.duration).into()).await;
        return WindowOutcome {
            from: 0,
            to: 1,
            stability: None,
        };
    };
    let slot = shape.slot();
    let boundary = |k: usize| start + shape.warmup + slot * k as u32;
    sleep_until(boundary(0).into()).await;
    let mut previous = progress.ok.load(Ordering::Relaxed);
    let mut counts: Vec<u64> = Vec::new();
    loop {
        sleep_until(boundary(counts.len() + 1).into()).await;
        let now = progress.ok.load(Ordering::Relaxed);
        counts.push(now - previous);
        previous = now;
        if counts.len() < SUB_WINDOWS {
            continue;
        }
        let verdict = judge(&counts[counts.len() - SUB_WINDOWS..], rule.tolerance);
        if verdict.stable || counts.len() >= shape.max_slots() {
            return WindowOutcome {
                from: counts.len() - SUB_WINDOWS,
                to: counts.len(),
                stability: Some(Stability {
                    sub_window_s: slot.as_secs_f64(),
                    sub_window_rps: counts.iter().map(|&n| n as f64 / slot.as_secs_f64()).collect(),
                    spread_pct: verdict.spread * 100.0,
                    tolerance_pct: verdict.tolerance * 100.0,
                    stable: verdict.stable,
                }),
            };
        }
    }
}

/// Whether sub-window counts are steady.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub stable: bool,
    /// (max − min) / mean.
    pub spread: f64,
    /// The tolerance applied: the rule's, or wider for small counts.
    pub tolerance: f64,
}

/// Steady: no monotone run (ties allowed) from first to last of more than
/// `tolerance` of the mean, the first sub-window within twice it of the
/// later ones' mean, and a spread of at most three times it (the tolerance
/// at least 3/√mean).
pub fn judge(counts: &[u64], tolerance: f64) -> Verdict {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
    if mean <= 0.0 {
        return Verdict {
            stable: false,
            spread: 0.0,
            tolerance,
        };
    }
    let tolerance = tolerance.max(3.0 / mean.sqrt());
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let min = counts.iter().copied().min().unwrap_or(0) as f64;
    let spread = (max - min) / mean;
    // Monotone, ties allowed: a ramp that has just levelled off
    // ([596, 682, 682]) still counts; noise that goes up and down does not.
    let rising = counts.windows(2).all(|w| w[1] >= w[0]);
    let falling = counts.windows(2).all(|w| w[1] <= w[0]);
    let first = counts.first().copied().unwrap_or(0) as f64;
    let last = counts.last().copied().unwrap_or(0) as f64;
    let trend = if rising || falling {
        (last - first).abs() / mean
    } else {
        0.0
    };
    // The oldest sub-window carries what is left of a warm-up: a ramp that
    // levelled off with noise on top ([2074, 2664, 2587]) is not monotone,
    // but its first sub-window sits well below the others.
    let rest = &counts[1.min(counts.len())..];
    let rest_mean = rest.iter().sum::<u64>() as f64 / rest.len().max(1) as f64;
    let first_off = if rest_mean > 0.0 {
        (first - rest_mean).abs() / rest_mean
    } else {
        0.0
    };
    Verdict {
        stable: trend <= tolerance && first_off <= 2.0 * tolerance && spread <= 3.0 * tolerance,
        spread,
        tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_are_unsteady_noise_is_not_and_small_counts_get_room() {
        assert!(judge(&[1000, 1040, 980], 0.10).stable);
        assert!(judge(&[2048, 1794, 2332], 0.10).stable, "±13 % without a trend: noise");
        assert!(
            !judge(&[1800, 1950, 2100], 0.10).stable,
            "a JIT still warming up: a 15 % ramp"
        );
        assert!(
            judge(&[1950, 2000, 2050], 0.10).stable,
            "a 5 % ramp is within the tolerance"
        );
        assert!(!judge(&[700, 1000, 1020], 0.10).stable, "spread over 30 %");
        assert!(!judge(&[2000, 1000, 2000], 0.10).stable, "a stall");
        let few = judge(&[8, 10, 14], 0.10);
        assert!(few.stable, "counting noise of ~10 requests is not instability: {few:?}");
        assert!((few.tolerance - 3.0 / (32.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!(!judge(&[0, 0, 0], 0.10).stable);
    }

    #[test]
    fn shapes_cut_the_window_into_slots_and_cap_it() {
        let fixed = WindowShape {
            warmup: Duration::from_millis(1500),
            duration: Duration::from_secs(3),
            rule: None,
            drain: Duration::from_secs(2),
        };
        let start = Instant::now();
        assert_eq!(fixed.slot(), Duration::from_secs(3));
        assert_eq!(fixed.latest_end(start), start + Duration::from_millis(4500));
        let adaptive = WindowShape {
            rule: Some(StabilityRule::within(Duration::from_secs(6))),
            duration: Duration::from_secs(2),
            ..fixed
        };
        assert_eq!(adaptive.slot(), Duration::from_secs(2) / 3);
        assert_eq!(adaptive.max_slots(), 9);
        assert!(adaptive.latest_end(start) <= start + Duration::from_millis(7500));
    }

    #[test]
    fn an_unsteady_start_becomes_warm_up() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let progress = Arc::new(Progress::default());
            let start = Instant::now();
            let shape = WindowShape {
                warmup: Duration::from_secs(1),
                duration: Duration::from_secs(3),
                rule: Some(StabilityRule::within(Duration::from_secs(20))),
                drain: Duration::ZERO,
            };
            // A ramp after the warm-up (400/s, 700/s), then 1000/s.
            let feeder = {
                let progress = Arc::clone(&progress);
                tokio::spawn(async move {
                    for second in 0..30u64 {
                        let rate = match second {
                            1 => 400,
                            2 => 700,
                            _ => 1000,
                        };
                        tokio::time::sleep(Duration::from_millis(999)).await;
                        progress.ok.fetch_add(rate, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            };
            let outcome = decide(shape, start, &progress).await;
            feeder.abort();
            let stability = outcome.stability.unwrap();
            assert!(stability.stable, "{stability:?}");
            assert_eq!((outcome.from, outcome.to), (2, 5), "the ramp counts as warm-up");
            assert_eq!(stability.sub_window_rps, vec![400.0, 700.0, 1000.0, 1000.0, 1000.0]);
        });
    }
}
