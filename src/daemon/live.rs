//! Live figures of a running server, gathered without adding load: request
//! rate, error rate and latency percentiles from access-log lines (over a
//! canary's whole window with [`Tally`], or over the last seconds with
//! [`LiveWindow`]), and the server-side queue and inference times per request
//! from TorchServe's Prometheus metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::daemon::access_log::AccessLine;

/// Longest latency the histograms track, in ms (one hour; longer ones are clamped).
const MAX_LATENCY_MS: u64 = 3_600_000;

/// Significant figures the latency histograms keep.
const LATENCY_SIGNIFICANT_FIGURES: u8 = 2;

/// Shortest window a rate is computed over, in seconds.
const MIN_WINDOW_S: f64 = 1.0;

/// What the figures of some stretch of time say.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct LiveFigures {
    pub window_s: f64,
    pub requests: u64,
    pub rate_rps: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub models: BTreeMap<String, u64>,
}

/// Counts of inference requests over some stretch of time, mergeable.
#[derive(Default)]
struct Counts {
    requests: u64,
    errors: u64,
    /// Latencies in ms; allocated at the first request, so idle buckets stay small.
    latency_ms: Option<Histogram<u64>>,
    models: BTreeMap<String, u64>,
}

impl Counts {
    fn record(&mut self, model: &str, line: &AccessLine) {
        self.requests += 1;
        self.errors += u64::from(line.is_error());
        *self.models.entry(model.to_string()).or_default() += 1;
        self.latency_ms
            .get_or_insert_with(empty_histogram)
            .saturating_record(clamped_ms(line.millis));
    }

    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (model, count) in &other.models {
            *self.models.entry(model.clone()).or_default() += count;
        }
        if let Some(theirs) = &other.latency_ms {
            // Same bounds on both sides, so adding cannot fail.
            let _ = self.latency_ms.get_or_insert_with(empty_histogram).add(theirs);
        }
    }

    fn figures(&self, window_s: f64) -> LiveFigures {
        let window_s = window_s.max(MIN_WINDOW_S);
        LiveFigures {
            window_s,
            requests: self.requests,
            rate_rps: self.requests as f64 / window_s,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                self.errors as f64 / self.requests as f64
            },
            p50_ms: self.percentile_ms(0.50),
            p99_ms: self.percentile_ms(0.99),
            models: self.models.clone(),
        }
    }

    fn percentile_ms(&self, quantile: f64) -> Option<f64> {
        let histogram = self.latency_ms.as_ref().filter(|histogram| !histogram.is_empty())?;
        Some(histogram.value_at_quantile(quantile) as f64)
    }
}

fn empty_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MS, LATENCY_SIGNIFICANT_FIGURES)
        .expect("static histogram bounds are valid")
}

fn clamped_ms(millis: u64) -> u64 {
    millis.clamp(1, MAX_LATENCY_MS)
}

/// Every inference request since it was made or reset (for a canary's
/// before/probation windows).
pub struct Tally {
    since: Instant,
    counts: Counts,
}

impl Tally {
    pub fn new(now: Instant) -> Self {
        Tally {
            since: now,
            counts: Counts::default(),
        }
    }

    /// Forgets everything and starts counting again from `now`.
    pub fn reset(&mut self, now: Instant) {
        *self = Tally::new(now);
    }

    /// Counts the line when it is an inference request; ignores it otherwise.
    pub fn record(&mut self, line: &AccessLine) {
        if let Some(model) = line.inference_model() {
            self.counts.record(model, line);
        }
    }

    /// The figures since creation or reset (the window is at least 1 s).
    pub fn figures(&self, now: Instant) -> LiveFigures {
        self.counts
            .figures(now.saturating_duration_since(self.since).as_secs_f64())
    }
}

/// One second of a [`LiveWindow`].
#[derive(Default)]
struct Bucket {
    /// Which second since the window's creation this bucket holds, if any.
    second: Option<u64>,
    counts: Counts,
}

/// The last `span` seconds in one-second buckets: a ring of buckets, each
/// with a small histogram, so memory stays bounded.
pub struct LiveWindow {
    created: Instant,
    buckets: Vec<Bucket>,
}

impl LiveWindow {
    /// A window over the last `span` (whole seconds, at least one).
    pub fn new(span: Duration) -> Self {
        Self::starting_at(Instant::now(), span)
    }

    fn starting_at(created: Instant, span: Duration) -> Self {
        let seconds = span.as_secs().max(1) as usize;
        LiveWindow {
            created,
            buckets: (0..seconds).map(|_| Bucket::default()).collect(),
        }
    }

    fn span_s(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn second_of(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.created).as_secs()
    }

    /// Counts the line at `now` when it is an inference request.
    pub fn record(&mut self, now: Instant, line: &AccessLine) {
        let Some(model) = line.inference_model() else { return };
        let second = self.second_of(now);
        let span = self.span_s();
        let bucket = &mut self.buckets[(second % span) as usize];
        if bucket.second != Some(second) {
            *bucket = Bucket {
                second: Some(second),
                counts: Counts::default(),
            };
        }
        bucket.counts.record(model, line);
    }

    /// The figures of the last `span` seconds (fewer when the window is
    /// younger; at least 1 s), from the buckets' merged histograms.
    pub fn figures(&self, now: Instant) -> LiveFigures {
        let current = self.second_of(now);
        let mut merged = Counts::default();
        for bucket in self
            .buckets
            .iter()
            .filter(|bucket| self.is_within_span(bucket, current))
        {
            merged.merge(&bucket.counts);
        }
        let age_s = now.saturating_duration_since(self.created).as_secs_f64();
        merged.figures(age_s.min(self.span_s() as f64))
    }

    fn is_within_span(&self, bucket: &Bucket, current: u64) -> bool {
        bucket
            .second
            .is_some_and(|second| second <= current && current - second < self.span_s())
    }
}

/// TorchServe's cumulative Prometheus counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MetricsSample {
    pub queue_us: f64,
    pub inference_us: f64,
    pub requests: f64,
}

const QUEUE_METRIC: &str = "ts_queue_latency_microseconds";
const INFERENCE_METRIC: &str = "ts_inference_latency_microseconds";
const REQUESTS_METRIC: &str = "ts_inference_requests_total";

/// One sample line of the Prometheus text format.
struct MetricLine<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

/// Sums the three counters over every model (or only `model` when Some);
/// None when the text has none of them (metrics_mode=log). TorchServe emits
/// a model's series only after its first inference, so a server that has
/// served nothing yet also gives None.
pub fn parse_metrics(text: &str, model: Option<&str>) -> Option<MetricsSample> {
    let mut sample = MetricsSample::default();
    let mut found = false;
    for metric in text.lines().filter_map(parse_metric_line) {
        let Some(total) = counter_slot(&mut sample, metric.name) else {
            continue;
        };
        found = true;
        if model.is_none_or(|wanted| label_value(metric.labels, "model_name") == Some(wanted)) {
            *total += metric.value;
        }
    }
    found.then_some(sample)
}

fn counter_slot<'a>(sample: &'a mut MetricsSample, name: &str) -> Option<&'a mut f64> {
    match name {
        QUEUE_METRIC => Some(&mut sample.queue_us),
        INFERENCE_METRIC => Some(&mut sample.inference_us),
        REQUESTS_METRIC => Some(&mut sample.requests),
        _ => None,
    }
}

/// `name{labels} value [timestamp]`; None for comments, blank or malformed lines.
fn parse_metric_line(line: &str) -> Option<MetricLine<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').filter(|&close| close > open)?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, "", rest)
        }
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some(MetricLine {
        name: name.trim(),
        labels,
        value,
    })
}

/// The value of one label in `a="x",b="y",` (escapes are not expected in
/// model names, and a value containing `",` is not supported).
fn label_value<'a>(labels: &'a str, wanted: &str) -> Option<&'a str> {
    labels.split("\",").find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim().trim_start_matches(',').trim() == wanted).then(|| value.trim().trim_matches('"'))
    })
}

/// Server-side time per request between two metrics samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq)]
pub struct ServerTimes {
    pub queue_ms: Option<f64>,
    pub inference_ms: Option<f64>,
}

/// Mean queue and inference time per request between two samples (None when
/// no request in between or a counter went down: a restarted server).
pub fn per_request(before: &MetricsSample, after: &MetricsSample) -> ServerTimes {
    let requests = after.requests - before.requests;
    let queue_us = after.queue_us - before.queue_us;
    let inference_us = after.inference_us - before.inference_us;
    if requests <= 0.0 || queue_us < 0.0 || inference_us < 0.0 {
        return ServerTimes::default();
    }
    ServerTimes {
        queue_ms: Some(queue_us / requests / 1000.0),
        inference_ms: Some(inference_us / requests / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn request(path: &str, status: u16, millis: u64) -> AccessLine {
        AccessLine {
            method: "POST".into(),
            path: path.into(),
            status,
            millis,
        }
    }

    fn inference(status: u16, millis: u64) -> AccessLine {
        request("/predictions/tiny", status, millis)
    }

    #[test]
    fn tally_counts_only_inference_requests() {
        let start = Instant::now();
        let mut tally = Tally::new(start);
        tally.record(&inference(200, 10));
        tally.record(&request("/v2/models/big/infer", 200, 20));
        tally.record(&request("/models/tiny", 200, 3));
        tally.record(&request("/ping", 200, 1));
        let figures = tally.figures(start + 4 * SECOND);
        assert_eq!(figures.requests, 2);
        assert_eq!(figures.window_s, 4.0);
        assert_eq!(figures.rate_rps, 0.5);
        assert_eq!(
            figures.models,
            BTreeMap::from([("big".to_string(), 1), ("tiny".to_string(), 1)])
        );
    }

    #[test]
    fn error_rate_counts_server_failures_and_overload_only() {
        let start = Instant::now();
        let mut tally = Tally::new(start);
        for status in [200, 200, 404, 500, 503, 429, 200, 200, 200, 200] {
            tally.record(&inference(status, 5));
        }
        assert_eq!(tally.figures(start + SECOND).error_rate, 0.3);
    }

    #[test]
    fn no_requests_means_no_percentiles() {
        let start = Instant::now();
        let figures = Tally::new(start).figures(start);
        assert_eq!((figures.requests, figures.p50_ms, figures.p99_ms), (0, None, None));
        assert_eq!((figures.window_s, figures.error_rate), (1.0, 0.0));
        let window = LiveWindow::starting_at(start, 10 * SECOND);
        assert_eq!(window.figures(start + 3 * SECOND).p99_ms, None);
    }

    #[test]
    fn tally_reset_forgets_everything() {
        let start = Instant::now();
        let mut tally = Tally::new(start);
        tally.record(&inference(500, 5));
        tally.reset(start + 10 * SECOND);
        tally.record(&inference(200, 5));
        let figures = tally.figures(start + 12 * SECOND);
        assert_eq!((figures.requests, figures.error_rate, figures.window_s), (1, 0.0, 2.0));
    }

    #[test]
    fn latencies_are_clamped_into_the_histogram_range() {
        let start = Instant::now();
        let mut tally = Tally::new(start);
        tally.record(&inference(200, 0));
        tally.record(&inference(200, u64::MAX));
        let figures = tally.figures(start);
        assert_eq!(figures.p50_ms, Some(1.0));
        let p99 = figures.p99_ms.expect("p99");
        assert!(
            (p99 - MAX_LATENCY_MS as f64).abs() / (MAX_LATENCY_MS as f64) < 0.01,
            "{p99}"
        );
    }

    #[test]
    fn window_percentiles_come_from_merged_histograms() {
        let start = Instant::now();
        let mut window = LiveWindow::starting_at(start, 10 * SECOND);
        // Second 0: 99 fast requests; second 1: one slow one. An average of
        // per-bucket medians would say 105 ms; the merged median is 10 ms.
        for _ in 0..99 {
            window.record(start, &inference(200, 10));
        }
        window.record(start + SECOND, &inference(200, 200));
        let figures = window.figures(start + 2 * SECOND);
        assert_eq!(figures.requests, 100);
        assert_eq!(figures.p50_ms, Some(10.0));
        assert_eq!(figures.p99_ms, Some(10.0));
        window.record(start + 2 * SECOND, &inference(200, 200));
        assert_eq!(window.figures(start + 2 * SECOND).p99_ms, Some(200.0));
    }

    #[test]
    fn window_forgets_buckets_older_than_its_span() {
        let start = Instant::now();
        let mut window = LiveWindow::starting_at(start, 5 * SECOND);
        window.record(start, &inference(500, 100));
        window.record(start + 3 * SECOND, &inference(200, 10));
        let young = window.figures(start + 4 * SECOND);
        assert_eq!((young.requests, young.window_s, young.error_rate), (2, 4.0, 0.5));
        let later = window.figures(start + 7 * SECOND);
        assert_eq!((later.requests, later.window_s, later.p50_ms), (1, 5.0, Some(10.0)));
        assert_eq!(later.rate_rps, 0.2);
        // Second 5 reuses second 0's slot: the old counts must not leak in.
        window.record(start + 5 * SECOND, &inference(200, 20));
        let reused = window.figures(start + 5 * SECOND);
        assert_eq!((reused.requests, reused.error_rate), (2, 0.0));
        assert_eq!(window.figures(start + 60 * SECOND).requests, 0);
    }

    #[test]
    fn window_ignores_non_inference_lines() {
        let start = Instant::now();
        let mut window = LiveWindow::new(3 * SECOND);
        window.record(start, &request("/metrics", 200, 1));
        assert_eq!(window.figures(start).requests, 0);
    }

    const METRICS: &str = r#"# HELP ts_queue_latency_microseconds Cumulative queue duration in microseconds
# TYPE ts_queue_latency_microseconds counter
ts_queue_latency_microseconds{model_name="tiny",model_version="default",hostname="vm",} 3401.5930000000003
ts_queue_latency_microseconds{model_name="big",model_version="default",hostname="vm",} 1000.0
# HELP ts_inference_latency_microseconds Cumulative inference duration in microseconds
# TYPE ts_inference_latency_microseconds counter
ts_inference_latency_microseconds{model_name="tiny",model_version="default",hostname="vm",} 160796.611
ts_inference_latency_microseconds{model_name="big",model_version="default",hostname="vm",} 20000.0
# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="tiny",model_version="default",hostname="vm",} 3.0
ts_inference_requests_total{model_name="big",model_version="default",hostname="vm",} 2.0
# TYPE Requests2XX counter
Requests2XX{Level="Host",Hostname="vm",} 5.0
"#;

    #[test]
    fn parse_metrics_sums_every_model() {
        let sample = parse_metrics(METRICS, None).expect("metrics present");
        assert!((sample.queue_us - 4401.593).abs() < 1e-6, "{sample:?}");
        assert!((sample.inference_us - 180796.611).abs() < 1e-6, "{sample:?}");
        assert_eq!(sample.requests, 5.0);
    }

    #[test]
    fn parse_metrics_filters_by_model() {
        let tiny = parse_metrics(METRICS, Some("tiny")).expect("metrics present");
        assert_eq!(
            tiny,
            MetricsSample {
                queue_us: 3401.5930000000003,
                inference_us: 160796.611,
                requests: 3.0
            }
        );
        let absent = parse_metrics(METRICS, Some("other")).expect("metrics present");
        assert_eq!(absent, MetricsSample::default());
    }

    #[test]
    fn parse_metrics_is_none_without_the_counters() {
        assert_eq!(parse_metrics("", None), None);
        assert_eq!(
            parse_metrics("# HELP x\nRequests2XX{Level=\"Host\",} 5.0\ngarbage {\n", None),
            None
        );
    }

    #[test]
    fn per_request_divides_the_growth_by_the_requests() {
        let before = MetricsSample {
            queue_us: 1000.0,
            inference_us: 10_000.0,
            requests: 1.0,
        };
        let after = MetricsSample {
            queue_us: 5000.0,
            inference_us: 50_000.0,
            requests: 5.0,
        };
        assert_eq!(
            per_request(&before, &after),
            ServerTimes {
                queue_ms: Some(1.0),
                inference_ms: Some(10.0)
            }
        );
    }

    #[test]
    fn per_request_is_none_without_requests_or_after_a_restart() {
        let before = MetricsSample {
            queue_us: 5000.0,
            inference_us: 50_000.0,
            requests: 5.0,
        };
        assert_eq!(per_request(&before, &before), ServerTimes::default());
        let restarted = MetricsSample {
            queue_us: 100.0,
            inference_us: 1000.0,
            requests: 1.0,
        };
        assert_eq!(per_request(&before, &restarted), ServerTimes::default());
        let queue_reset = MetricsSample {
            queue_us: 10.0,
            inference_us: 90_000.0,
            requests: 9.0,
        };
        assert_eq!(per_request(&before, &queue_reset), ServerTimes::default());
    }
}
