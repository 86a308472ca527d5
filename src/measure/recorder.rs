//! Recording one load run: an HdrHistogram of latencies (µs) of successful
//! requests, errors counted by class, sends that were late, dropped or still
//! in flight when the window closed, and a per-second timeline.
//!
//! Latency is measured from the *intended* send time (coordinated-omission
//! corrected); in an open loop the latency from the actual send is kept too,
//! to show what an uncorrected generator would report. Observations are
//! kept per second of intended send time, so the measured window (which
//! seconds are warm-up, where it ends) is chosen when the report is made;
//! the timeline covers the warm-up too, marked as such.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track (longer ones are clamped). Kept
/// per second of the run, so bounded to keep those histograms small.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Classes of failed requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection refused, unreachable, or connect timed out.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No complete answer within the request timeout.
    Timeout,
    /// HTTP 503: TorchServe's queue is full or no worker is free.
    QueueFull,
    /// Any other 4xx.
    Client,
    /// Any other 5xx.
    Server,
    /// The connection broke mid-exchange, or the answer was not HTTP.
    Io,
    /// A status outside 2xx/4xx/5xx (1xx, 3xx).
    OtherStatus,
}

impl ErrorClass {
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            503 => Some(ErrorClass::QueueFull),
            400..=499 => Some(ErrorClass::Client),
            500..=599 => Some(ErrorClass::Server),
            _ => Some(ErrorClass::OtherStatus),
        }
    }
}

/// Failed requests by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub total: u64,
    pub connect: u64,
    pub tls: u64,
    pub timeout: u64,
    pub status_503: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub io: u64,
    pub status_other: u64,
}

impl ErrorCounts {
    pub fn add(&mut self, class: ErrorClass) {
        self.total += 1;
        let slot = match class {
            ErrorClass::Connect => &mut self.connect,
            ErrorClass::Tls => &mut self.tls,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::QueueFull => &mut self.status_503,
            ErrorClass::Client => &mut self.status_4xx,
            ErrorClass::Server => &mut self.status_5xx,
            ErrorClass::Io => &mut self.io,
            ErrorClass::OtherStatus => &mut self.status_other,
        };
        *slot += 1;
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        self.total += other.total;
        self.connect += other.connect;
        self.tls += other.tls;
        self.timeout += other.timeout;
        self.status_503 += other.status_503;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.io += other.io;
        self.status_other += other.status_other;
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencySummary {
    pub fn of<C: hdrhistogram::Counter>(histogram: &Histogram<C>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// One second of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondStats {
    /// Seconds since the run started (warm-up included).
    pub second: u64,
    pub warmup: bool,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Everything observed for requests *intended* within one second of the run.
struct Second {
    ok: u64,
    errors: ErrorCounts,
    late_sends: u64,
    dropped_sends: u64,
    unfinished: u64,
    /// Corrected latency (from the intended send), 3 significant digits.
    latency: Histogram<u32>,
    /// Latency from the actual send, 2 significant digits (informational).
    uncorrected: Histogram<u32>,
}

impl Second {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: ErrorCounts::default(),
            late_sends: 0,
            dropped_sends: 0,
            unfinished: 0,
            latency: histogram(3),
            uncorrected: histogram(2),
        }
    }

    fn merge(&mut self, other: &Second) {
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.late_sends += other.late_sends;
        self.dropped_sends += other.dropped_sends;
        self.unfinished += other.unfinished;
        let _ = self.latency.add(&other.latency);
        let _ = self.uncorrected.add(&other.uncorrected);
    }
}

fn histogram<C: hdrhistogram::Counter>(significant_digits: u8) -> Histogram<C> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_digits).expect("static histogram bounds are valid")
}

/// A histogram of latencies (µs), for callers that merge runs.
pub fn latency_histogram() -> Histogram<u64> {
    histogram(3)
}

/// Observations of one load thread, bucketed by the second (since the
/// start of the run) in which each request was meant to be sent; merged
/// into one at the end. Which seconds are the measured window is decided
/// when the report is made, so a window can end, or its warm-up grow, after
/// the load has run.
pub struct Recorder {
    start: Instant,
    seconds: Vec<Second>,
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

impl Recorder {
    /// A recorder for a run starting at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            seconds: Vec::new(),
        }
    }

    fn second(&mut self, intended: Instant) -> &mut Second {
        let index = intended.saturating_duration_since(self.start).as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(Second::new());
        }
        &mut self.seconds[index]
    }

    /// A complete HTTP response. Non-2xx statuses count as errors.
    pub fn record_response(&mut self, intended: Instant, sent: Instant, done: Instant, status: u16) {
        match ErrorClass::of_status(status) {
            Some(class) => self.record_failure(intended, done, class),
            None => {
                let second = self.second(intended);
                second.ok += 1;
                let _ = second.latency.record(micros(done.saturating_duration_since(intended)));
                let _ = second.uncorrected.record(micros(done.saturating_duration_since(sent)));
            }
        }
    }

    pub fn record_failure(&mut self, intended: Instant, _done: Instant, class: ErrorClass) {
        self.second(intended).errors.add(class);
    }

    /// A request still in flight when the window closed.
    pub fn record_unfinished(&mut self, intended: Instant) {
        self.second(intended).unfinished += 1;
    }

    /// A send that went out well after its intended time (open loop).
    pub fn record_late(&mut self, intended: Instant) {
        self.second(intended).late_sends += 1;
    }

    /// A scheduled send that never went out (open loop, all connections busy).
    pub fn record_dropped(&mut self, intended: Instant) {
        self.second(intended).dropped_sends += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        for (index, second) in other.seconds.iter().enumerate() {
            self.second(self.start + Duration::from_secs(index as u64))
                .merge(second);
        }
    }

    /// Successful requests intended in each second so far (the timeline's counts).
    pub fn ok_per_second(&self) -> Vec<u64> {
        self.seconds.iter().map(|s| s.ok).collect()
    }

    /// The figures of the requests intended in `[from, to)` (seconds since
    /// the start; `to` may be fractional for a window that ended mid-second).
    pub fn report(&self, from_s: u64, to_s: f64) -> LoadReport {
        let mut window = Second::new();
        let last = (to_s.ceil() as usize).min(self.seconds.len());
        for second in self.seconds.iter().take(last).skip(from_s as usize) {
            window.merge(second);
        }
        let window_s = (to_s - from_s as f64).max(0.0);
        let failed = window.errors.total + window.dropped_sends + window.unfinished;
        let attempted = window.ok + failed;
        let mut latency = latency_histogram();
        for bucket in window.latency.iter_recorded() {
            let _ = latency.record_n(bucket.value_iterated_to(), bucket.count_at_value() as u64);
        }
        LoadReport {
            requests: window.ok + window.errors.total,
            ok: window.ok,
            throughput_rps: if window_s > 0.0 {
                window.ok as f64 / window_s
            } else {
                0.0
            },
            error_rate: if attempted > 0 {
                failed as f64 / attempted as f64
            } else {
                0.0
            },
            latency_ms: LatencySummary::of(&latency),
            latency_uncorrected_ms: LatencySummary::of(&window.uncorrected),
            errors: window.errors,
            late_sends: window.late_sends,
            dropped_sends: window.dropped_sends,
            unfinished_at_end: window.unfinished,
            duration_s: window_s,
            warmup_s: from_s as f64,
            timeline: self
                .seconds
                .iter()
                .enumerate()
                .map(|(index, second)| {
                    let summary = LatencySummary::of(&second.latency);
                    SecondStats {
                        second: index as u64,
                        warmup: (index as u64) < from_s,
                        ok: second.ok,
                        errors: second.errors.total,
                        p50_ms: summary.p50,
                        p99_ms: summary.p99,
                    }
                })
                .collect(),
            stability: None,
            histogram: latency,
        }
    }
}

/// The figures of one load run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Completed requests in the window (successes and errors).
    pub requests: u64,
    pub ok: u64,
    /// Successful requests per second over the window.
    pub throughput_rps: f64,
    /// (errors + dropped + unfinished) / all attempted in the window.
    pub error_rate: f64,
    /// Latency of successful requests from their intended send time.
    pub latency_ms: LatencySummary,
    /// The same from the actual send time (what an uncorrected tool reports).
    pub latency_uncorrected_ms: LatencySummary,
    pub errors: ErrorCounts,
    /// Open loop: sends that left more than 10 ms after their intended time.
    pub late_sends: u64,
    /// Open loop: sends that never left (every connection busy until the end).
    pub dropped_sends: u64,
    /// Requests still in flight after the window and its drain.
    pub unfinished_at_end: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub timeline: Vec<SecondStats>,
    /// How steady throughput was over the window's sub-windows (adaptive windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stability: Option<Stability>,
    /// Latencies (µs) of the window's successful requests, for merging runs.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// How steady a window was: throughput of each sub-window after the
/// minimum warm-up, and whether the last ones agreed within the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    pub sub_window_s: f64,
    /// Successful requests per second in each sub-window, warm-up excluded.
    pub sub_window_rps: Vec<f64>,
    /// Spread (max − min) / mean of the measured sub-windows, in percent.
    pub spread_pct: f64,
    pub tolerance_pct: f64,
    pub stable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_excluded_and_errors_are_classified() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start);
        let in_warmup = start + Duration::from_millis(500);
        recorder.record_response(in_warmup, in_warmup, in_warmup + Duration::from_millis(5), 200);
        let t = start + Duration::from_millis(1500);
        recorder.record_response(t, t, t + Duration::from_millis(10), 200);
        recorder.record_response(t, t, t + Duration::from_millis(1), 503);
        recorder.record_response(t, t, t + Duration::from_millis(1), 404);
        recorder.record_failure(t, t, ErrorClass::Connect);
        recorder.record_unfinished(t);
        recorder.record_dropped(in_warmup);
        let report = recorder.report(1, 3.0);
        assert_eq!(report.ok, 1);
        assert_eq!(report.requests, 4);
        assert_eq!(
            (
                report.errors.total,
                report.errors.status_503,
                report.errors.status_4xx,
                report.errors.connect
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(report.unfinished_at_end, 1);
        assert_eq!(report.dropped_sends, 0);
        assert!((report.latency_ms.p50 - 10.0).abs() < 0.1);
        assert_eq!(report.throughput_rps, 0.5);
        assert!((report.error_rate - 4.0 / 5.0).abs() < 1e-9);
        assert!(report.timeline[0].warmup && !report.timeline[1].warmup);
        assert_eq!(report.timeline[0].ok, 1);
        assert_eq!(report.histogram.len(), 1, "the window's latencies, for merging runs");
    }

    #[test]
    fn the_window_is_chosen_when_reporting() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start);
        for second in 0..6u64 {
            let latency = if second < 2 { 50 } else { 10 };
            for i in 0..10 {
                let t = start + Duration::from_millis(second * 1000 + i * 90);
                recorder.record_response(t, t, t + Duration::from_millis(latency), 200);
            }
        }
        let all = recorder.report(0, 6.0);
        let steady = recorder.report(2, 6.0);
        assert_eq!((all.ok, steady.ok), (60, 40));
        assert!(all.latency_ms.p99 > 40.0 && steady.latency_ms.p99 < 11.0);
        assert_eq!(steady.throughput_rps, 10.0);
        assert_eq!(recorder.ok_per_second(), vec![10; 6]);
    }

    #[test]
    fn merging_adds_everything() {
        let start = Instant::now();
        let mut a = Recorder::new(start);
        let mut b = Recorder::new(start);
        a.record_response(start, start, start + Duration::from_millis(2), 200);
        b.record_response(start, start, start + Duration::from_millis(4), 200);
        b.record_failure(start + Duration::from_millis(1500), start, ErrorClass::Timeout);
        a.merge(b);
        let report = a.report(0, 2.0);
        assert_eq!((report.ok, report.errors.timeout), (2, 1));
        assert_eq!(report.timeline.len(), 2);
        assert_eq!(report.timeline[0].ok, 2);
        assert_eq!(report.timeline[1].errors, 1);
    }
}
