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

/// The timeline's view of one second (requests by intended send time).
struct Second {
    ok: u64,
    errors: u64,
    /// 2 significant digits: enough for the timeline's p50/p99.
    latency: Histogram<u32>,
}

impl Second {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            latency: histogram(2),
        }
    }
}

/// Everything observed for requests *intended* within one slot of the
/// measured window (a sub-window; the whole window when it is fixed).
struct Slot {
    ok: u64,
    errors: ErrorCounts,
    late_sends: u64,
    dropped_sends: u64,
    unfinished: u64,
    /// Corrected latency (from the intended send), 3 significant digits.
    latency: Histogram<u64>,
    /// Latency from the actual send, 2 significant digits (informational).
    uncorrected: Histogram<u32>,
}

impl Slot {
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

    fn merge(&mut self, other: &Slot) {
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

/// Observations of one load thread, merged into one at the end. Requests
/// are filed by their *intended* send time: per second for the timeline
/// (small histograms), and per slot of the measured window for the figures
/// (full precision). The window starts after the warm-up and is cut into
/// slots of equal length (sub-windows); which slots are measured is
/// decided when the report is made, so a window can end, or its warm-up
/// grow, after the load has run. Memory stays bounded: the slots of a
/// window are few (a fixed window is one).
pub struct Recorder {
    start: Instant,
    /// Start of the first slot (the end of the least warm-up).
    slots_from: Instant,
    slot: Duration,
    seconds: Vec<Second>,
    slots: Vec<Slot>,
}

fn micros(duration: Duration) -> u64 {
    (duration.as_micros() as u64).clamp(1, MAX_LATENCY_US)
}

impl Recorder {
    /// A recorder for a run starting at `start` whose measured window
    /// begins after `warmup`, cut in slots of `slot`.
    pub fn new(start: Instant, warmup: Duration, slot: Duration) -> Self {
        Self {
            start,
            slots_from: start + warmup,
            slot: slot.max(Duration::from_millis(1)),
            seconds: Vec::new(),
            slots: Vec::new(),
        }
    }

    fn second(&mut self, intended: Instant) -> &mut Second {
        let index = intended.saturating_duration_since(self.start).as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(Second::new());
        }
        &mut self.seconds[index]
    }

    /// The slot of a request intended at `intended` (None: in the warm-up).
    fn slot(&mut self, intended: Instant) -> Option<&mut Slot> {
        let offset = intended.checked_duration_since(self.slots_from)?;
        let index = (offset.as_nanos() / self.slot.as_nanos()) as usize;
        while self.slots.len() <= index {
            self.slots.push(Slot::new());
        }
        Some(&mut self.slots[index])
    }

    /// A complete HTTP response. Non-2xx statuses count as errors.
    pub fn record_response(&mut self, intended: Instant, sent: Instant, done: Instant, status: u16) {
        match ErrorClass::of_status(status) {
            Some(class) => self.record_failure(intended, done, class),
            None => {
                let latency = micros(done.saturating_duration_since(intended));
                let second = self.second(intended);
                second.ok += 1;
                let _ = second.latency.record(latency);
                if let Some(slot) = self.slot(intended) {
                    slot.ok += 1;
                    let _ = slot.latency.record(latency);
                    let _ = slot.uncorrected.record(micros(done.saturating_duration_since(sent)));
                }
            }
        }
    }

    pub fn record_failure(&mut self, intended: Instant, _done: Instant, class: ErrorClass) {
        self.second(intended).errors += 1;
        if let Some(slot) = self.slot(intended) {
            slot.errors.add(class);
        }
    }

    /// A request still in flight when the window closed.
    pub fn record_unfinished(&mut self, intended: Instant) {
        if let Some(slot) = self.slot(intended) {
            slot.unfinished += 1;
        }
    }

    /// A send that went out well after its intended time (open loop).
    pub fn record_late(&mut self, intended: Instant) {
        if let Some(slot) = self.slot(intended) {
            slot.late_sends += 1;
        }
    }

    /// A scheduled send that never went out (open loop, all connections busy).
    pub fn record_dropped(&mut self, intended: Instant) {
        if let Some(slot) = self.slot(intended) {
            slot.dropped_sends += 1;
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (index, second) in other.seconds.iter().enumerate() {
            let mine = self.second(self.start + Duration::from_secs(index as u64));
            mine.ok += second.ok;
            mine.errors += second.errors;
            let _ = mine.latency.add(&second.latency);
        }
        for (index, slot) in other.slots.iter().enumerate() {
            let at = self.slots_from + self.slot * index as u32;
            if let Some(mine) = self.slot(at) {
                mine.merge(slot);
            }
        }
    }

    /// The figures of the requests intended in slots `[from, to)`.
    pub fn report(&self, from: usize, to: usize) -> LoadReport {
        let mut window = Slot::new();
        for slot in self.slots.iter().take(to).skip(from) {
            window.merge(slot);
        }
        let window_s = self.slot.as_secs_f64() * to.saturating_sub(from) as f64;
        let warmup_s = self.slots_from.duration_since(self.start).as_secs_f64() + self.slot.as_secs_f64() * from as f64;
        let failed = window.errors.total + window.dropped_sends + window.unfinished;
        let attempted = window.ok + failed;
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
            latency_ms: LatencySummary::of(&window.latency),
            latency_uncorrected_ms: LatencySummary::of(&window.uncorrected),
            errors: window.errors,
            late_sends: window.late_sends,
            dropped_sends: window.dropped_sends,
            unfinished_at_end: window.unfinished,
            duration_s: window_s,
            warmup_s,
            timeline: self
                .seconds
                .iter()
                .enumerate()
                .map(|(index, second)| {
                    let summary = LatencySummary::of(&second.latency);
                    SecondStats {
                        second: index as u64,
                        warmup: ((index + 1) as f64) <= warmup_s,
                        ok: second.ok,
                        errors: second.errors,
                        p50_ms: summary.p50,
                        p99_ms: summary.p99,
                    }
                })
                .collect(),
            stability: None,
            histogram: window.latency,
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

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn warmup_is_excluded_and_errors_are_classified() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, SECOND, 2 * SECOND);
        let in_warmup = start + Duration::from_millis(500);
        recorder.record_response(in_warmup, in_warmup, in_warmup + Duration::from_millis(5), 200);
        let t = start + Duration::from_millis(1500);
        recorder.record_response(t, t, t + Duration::from_millis(10), 200);
        recorder.record_response(t, t, t + Duration::from_millis(1), 503);
        recorder.record_response(t, t, t + Duration::from_millis(1), 404);
        recorder.record_failure(t, t, ErrorClass::Connect);
        recorder.record_unfinished(t);
        recorder.record_dropped(in_warmup);
        let report = recorder.report(0, 1);
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
        assert_eq!((report.warmup_s, report.duration_s), (1.0, 2.0));
        assert!(report.timeline[0].warmup && !report.timeline[1].warmup);
        assert_eq!(report.timeline[0].ok, 1);
        assert_eq!(report.histogram.len(), 1, "the window's latencies, for merging runs");
    }

    #[test]
    fn the_window_is_chosen_when_reporting_and_slots_may_be_fractional() {
        let start = Instant::now();
        // Sub-windows of 2/3 s after a 1 s warm-up.
        let slot = Duration::from_millis(2000) / 3;
        let mut recorder = Recorder::new(start, SECOND, slot);
        for tick in 0..50u64 {
            let t = start + SECOND + Duration::from_millis(tick * 100);
            let latency = if tick < 20 { 50 } else { 10 };
            recorder.record_response(t, t, t + Duration::from_millis(latency), 200);
        }
        let all = recorder.report(0, 7);
        let steady = recorder.report(3, 6);
        assert!(
            all.latency_ms.p99 > 40.0 && steady.latency_ms.p99 < 11.0,
            "{all:?} {steady:?}"
        );
        assert_eq!(steady.ok, 20);
        assert!((steady.duration_s - 2.0).abs() < 1e-6 && (steady.warmup_s - 3.0).abs() < 1e-6);
        assert!((steady.throughput_rps - 10.0).abs() < 1e-6);
    }

    #[test]
    fn merging_adds_everything() {
        let start = Instant::now();
        let mut a = Recorder::new(start, Duration::ZERO, SECOND);
        let mut b = Recorder::new(start, Duration::ZERO, SECOND);
        a.record_response(start, start, start + Duration::from_millis(2), 200);
        b.record_response(start, start, start + Duration::from_millis(4), 200);
        b.record_failure(start + Duration::from_millis(1500), start, ErrorClass::Timeout);
        a.merge(b);
        let report = a.report(0, 2);
        assert_eq!((report.ok, report.errors.timeout), (2, 1));
        assert_eq!(report.timeline.len(), 2);
        assert_eq!(report.timeline[0].ok, 2);
        assert_eq!(report.timeline[1].errors, 1);
    }
}
