//! Recording one load run: an HdrHistogram of latencies (µs) of successful
//! requests, errors counted by class, sends that were late, dropped or still
//! in flight when the window closed, and a per-second timeline.
//!
//! Latency is measured from the *intended* send time (coordinated-omission
//! corrected); in an open loop the latency from the actual send is kept too,
//! to show what an uncorrected generator would report. Only requests whose
//! intended start falls after the warm-up count in the figures; the
//! timeline covers the warm-up too, marked as such.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track (longer ones are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

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
    pub fn of(histogram: &Histogram<u64>) -> Self {
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

struct Second {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, significant_digits).expect("static histogram bounds are valid")
}

/// Observations of one load thread; merged into one at the end.
pub struct Recorder {
    start: Instant,
    warmup_end: Instant,
    window: Duration,
    latency: Histogram<u64>,
    uncorrected: Histogram<u64>,
    ok: u64,
    errors: ErrorCounts,
    late_sends: u64,
    dropped_sends: u64,
    unfinished: u64,
    seconds: Vec<Second>,
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

impl Recorder {
    /// A recorder for a run starting at `start`, measuring `window` after `warmup`.
    pub fn new(start: Instant, warmup: Duration, window: Duration) -> Self {
        Self {
            start,
            warmup_end: start + warmup,
            window,
            latency: histogram(3),
            uncorrected: histogram(3),
            ok: 0,
            errors: ErrorCounts::default(),
            late_sends: 0,
            dropped_sends: 0,
            unfinished: 0,
            seconds: Vec::new(),
        }
    }

    fn counts(&self, intended: Instant) -> bool {
        intended >= self.warmup_end
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let index = at.saturating_duration_since(self.start).as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(Second {
                ok: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        &mut self.seconds[index]
    }

    /// A complete HTTP response. Non-2xx statuses count as errors.
    pub fn record_response(&mut self, intended: Instant, sent: Instant, done: Instant, status: u16) {
        match ErrorClass::of_status(status) {
            Some(class) => self.record_failure(intended, done, class),
            None => {
                let latency = micros(done.saturating_duration_since(intended));
                let second = self.second(done);
                second.ok += 1;
                let _ = second.latency.record(latency);
                if self.counts(intended) {
                    self.ok += 1;
                    let _ = self.latency.record(latency);
                    let _ = self.uncorrected.record(micros(done.saturating_duration_since(sent)));
                }
            }
        }
    }

    pub fn record_failure(&mut self, intended: Instant, done: Instant, class: ErrorClass) {
        self.second(done).errors += 1;
        if self.counts(intended) {
            self.errors.add(class);
        }
    }

    /// A request still in flight when the window closed.
    pub fn record_unfinished(&mut self, intended: Instant) {
        if self.counts(intended) {
            self.unfinished += 1;
        }
    }

    /// A send that went out well after its intended time (open loop).
    pub fn record_late(&mut self, intended: Instant) {
        if self.counts(intended) {
            self.late_sends += 1;
        }
    }

    /// A scheduled send that never went out (open loop, all connections busy).
    pub fn record_dropped(&mut self, intended: Instant) {
        if self.counts(intended) {
            self.dropped_sends += 1;
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        let _ = self.latency.add(&other.latency);
        let _ = self.uncorrected.add(&other.uncorrected);
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        self.late_sends += other.late_sends;
        self.dropped_sends += other.dropped_sends;
        self.unfinished += other.unfinished;
        for (index, second) in other.seconds.into_iter().enumerate() {
            let mine = self.second(self.start + Duration::from_secs(index as u64));
            mine.ok += second.ok;
            mine.errors += second.errors;
            let _ = mine.latency.add(&second.latency);
        }
    }

    pub fn report(&self) -> LoadReport {
        let window_s = self.window.as_secs_f64();
        let failed = self.errors.total + self.dropped_sends + self.unfinished;
        let attempted = self.ok + failed;
        let warmup_seconds = self.warmup_end.saturating_duration_since(self.start).as_secs_f64();
        LoadReport {
            requests: self.ok + self.errors.total,
            ok: self.ok,
            throughput_rps: if window_s > 0.0 { self.ok as f64 / window_s } else { 0.0 },
            error_rate: if attempted > 0 {
                failed as f64 / attempted as f64
            } else {
                0.0
            },
            latency_ms: LatencySummary::of(&self.latency),
            latency_uncorrected_ms: LatencySummary::of(&self.uncorrected),
            errors: self.errors,
            late_sends: self.late_sends,
            dropped_sends: self.dropped_sends,
            unfinished_at_end: self.unfinished,
            duration_s: window_s,
            warmup_s: warmup_seconds,
            timeline: self
                .seconds
                .iter()
                .enumerate()
                .map(|(index, second)| {
                    let summary = LatencySummary::of(&second.latency);
                    SecondStats {
                        second: index as u64,
                        warmup: (index as f64) < warmup_seconds.floor(),
                        ok: second.ok,
                        errors: second.errors,
                        p50_ms: summary.p50,
                        p99_ms: summary.p99,
                    }
                })
                .collect(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_excluded_and_errors_are_classified() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(1), Duration::from_secs(2));
        let in_warmup = start + Duration::from_millis(500);
        recorder.record_response(in_warmup, in_warmup, in_warmup + Duration::from_millis(5), 200);
        let t = start + Duration::from_millis(1500);
        recorder.record_response(t, t, t + Duration::from_millis(10), 200);
        recorder.record_response(t, t, t + Duration::from_millis(1), 503);
        recorder.record_response(t, t, t + Duration::from_millis(1), 404);
        recorder.record_failure(t, t, ErrorClass::Connect);
        recorder.record_unfinished(t);
        recorder.record_dropped(in_warmup);
        let report = recorder.report();
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
    }

    #[test]
    fn merging_adds_everything() {
        let start = Instant::now();
        let mut a = Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
        let mut b = Recorder::new(start, Duration::ZERO, Duration::from_secs(1));
        a.record_response(start, start, start + Duration::from_millis(2), 200);
        b.record_response(start, start, start + Duration::from_millis(4), 200);
        b.record_failure(start, start + Duration::from_millis(1500), ErrorClass::Timeout);
        a.merge(b);
        let report = a.report();
        assert_eq!((report.ok, report.errors.timeout), (2, 1));
        assert_eq!(report.timeline.len(), 2);
        assert_eq!(report.timeline[0].ok, 2);
        assert_eq!(report.timeline[1].errors, 1);
    }
}
