//! What a replay, a mix of models or a rate profile adds to a load run's
//! figures: each model's own figures (`models`), how closely a replay followed its log
//! (`replay`), and the figures at a profile's peak (`peak`).
//!
//! Each load thread keeps a `TrafficRecorder` next to its main `Recorder`:
//! one recorder per replayed model, one for the peak's requests, and a
//! histogram of how late sends left. Threads are merged at the end and the
//! report is taken over the same window as the main figures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::mix::Mix;
use super::profile::Profile;
use super::replay::ReplayTraffic;
use super::schedule::Schedule;
pub use crate::measure::traffic_figures::{ModelFigures, PeakFigures};
use crate::measure::{latency_histogram, LoadReport, Recorder};

/// A replay's or a profile's figures beyond the main ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficReport {
    /// Per model: the figures of its requests alone.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayFidelity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak: Option<PeakFigures>,
}

/// How closely a replay followed its log, over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayFidelity {
    pub log: String,
    pub speed: f64,
    pub looped: bool,
    /// Inference requests of the replayed slice (one pass).
    pub slice_requests: u64,
    /// Lines that were not access-log lines, skipped.
    pub unreadable_lines: u64,
    /// Access-log lines that were not inference requests (ping, management).
    pub other_lines: u64,
    /// Requests per second of the log itself over the window's part of it.
    pub recorded_rps: f64,
    /// `recorded_rps` at the replay's speed: what was asked.
    pub asked_rps: f64,
    /// Requests per second that actually left.
    pub sent_rps: f64,
    /// How long after its recorded instant (scaled) each request left.
    pub lateness_ms: Lateness,
    /// Sends more than 10 ms late.
    pub late_sends: u64,
    /// Requests never sent (every connection busy until the end).
    pub dropped: u64,
}

/// Percentiles of send lateness, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Lateness {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One thread's extra observations.
pub(super) struct TrafficRecorder {
    start: Instant,
    window_from: Instant,
    /// The model of each replayed group (an index into `models`).
    group_model: Vec<usize>,
    models: Vec<String>,
    by_model: Vec<Recorder>,
    peak: Option<(Profile, Recorder)>,
    lateness: Histogram<u64>,
}

impl TrafficRecorder {
    pub(super) fn new(
        schedule: &Schedule,
        mix: Option<&Mix>,
        start: Instant,
        warmup: Duration,
        slot: Duration,
    ) -> Self {
        let recorder = || Recorder::new(start, warmup, slot);
        let (models, group_model) = match (schedule, mix) {
            (Schedule::Replay(traffic), _) => models_of(traffic),
            (_, Some(mix)) => (mix.models.clone(), (0..mix.models.len()).collect()),
            _ => (Vec::new(), Vec::new()),
        };
        let peak = match schedule {
            Schedule::Profile { profile, .. } => Some((profile.clone(), recorder())),
            _ => None,
        };
        Self {
            start,
            window_from: start + warmup,
            by_model: models.iter().map(|_| recorder()).collect(),
            models,
            group_model,
            peak,
            lateness: latency_histogram(),
        }
    }

    /// Applies `record` to the recorders that a request of `group`
    /// intended at `intended` belongs to.
    pub(super) fn record(&mut self, group: Option<usize>, intended: Instant, record: impl Fn(&mut Recorder)) {
        let model = group.and_then(|g| self.group_model.get(g).copied());
        if let Some(recorder) = model.and_then(|m| self.by_model.get_mut(m)) {
            record(recorder);
        }
        if let Some((profile, recorder)) = &mut self.peak {
            if profile.is_peak(intended.saturating_duration_since(self.start)) {
                record(recorder);
            }
        }
    }

    /// A send due at `due` that left at `sent` (the window's only).
    pub(super) fn record_lateness(&mut self, due: Instant, sent: Instant) {
        if due >= self.window_from {
            let late_us = sent.saturating_duration_since(due).as_micros() as u64;
            let _ = self.lateness.record(late_us.clamp(1, 3_600_000_000));
        }
    }

    pub(super) fn merge(&mut self, other: TrafficRecorder) {
        for (mine, theirs) in self.by_model.iter_mut().zip(other.by_model) {
            mine.merge(theirs);
        }
        if let (Some((_, mine)), Some((_, theirs))) = (&mut self.peak, other.peak) {
            mine.merge(theirs);
        }
        let _ = self.lateness.add(&other.lateness);
    }

    /// The report over slots `[from, to)`, next to the main `report`.
    pub(super) fn report(&self, schedule: &Schedule, report: &LoadReport, from: usize, to: usize) -> TrafficReport {
        let window = (
            Duration::from_secs_f64(report.warmup_s),
            Duration::from_secs_f64(report.warmup_s + report.duration_s),
        );
        TrafficReport {
            models: self.models(from, to),
            replay: match schedule {
                Schedule::Replay(traffic) => Some(self.fidelity(traffic, report, window)),
                _ => None,
            },
            peak: self
                .peak
                .as_ref()
                .map(|(profile, recorder)| peak_figures(profile, &recorder.report(from, to), window)),
        }
    }

    fn models(&self, from: usize, to: usize) -> BTreeMap<String, ModelFigures> {
        self.models
            .iter()
            .zip(&self.by_model)
            .map(|(model, recorder)| (model.clone(), ModelFigures::of(&recorder.report(from, to))))
            .collect()
    }

    fn fidelity(&self, traffic: &ReplayTraffic, report: &LoadReport, window: (Duration, Duration)) -> ReplayFidelity {
        let seconds = report.duration_s.max(1e-9);
        let asked = traffic.requests_between(window.0, window.1) as f64 / seconds;
        let ms = |quantile: f64| self.lateness.value_at_quantile(quantile) as f64 / 1_000.0;
        ReplayFidelity {
            log: traffic.log.display().to_string(),
            speed: traffic.speed.0,
            looped: traffic.looped,
            slice_requests: traffic.entries.len() as u64,
            unreadable_lines: traffic.unreadable_lines,
            other_lines: traffic.other_lines,
            recorded_rps: asked / traffic.speed.0,
            asked_rps: asked,
            sent_rps: (report.requests + report.unfinished_at_end) as f64 / seconds,
            lateness_ms: if self.lateness.is_empty() {
                Lateness::default()
            } else {
                Lateness {
                    p50: ms(0.5),
                    p99: ms(0.99),
                    max: self.lateness.max() as f64 / 1_000.0,
                }
            },
            late_sends: report.late_sends,
            dropped: report.dropped_sends,
        }
    }
}

/// The slice's models, and the model of each of its groups.
fn models_of(traffic: &ReplayTraffic) -> (Vec<String>, Vec<usize>) {
    let models: Vec<String> = traffic.models().into_iter().map(str::to_string).collect();
    let group_model = traffic
        .groups
        .iter()
        .map(|group| {
            models
                .iter()
                .position(|m| *m == group.model)
                .expect("every group's model is listed")
        })
        .collect();
    (models, group_model)
}

fn peak_figures(profile: &Profile, peak: &LoadReport, window: (Duration, Duration)) -> PeakFigures {
    let seconds = profile.peak_seconds(window.0, window.1);
    PeakFigures {
        profile: profile.to_string(),
        rate_rps: profile.peak_rate(),
        seconds,
        requests: peak.requests,
        throughput_rps: if seconds > 0.0 { peak.ok as f64 / seconds } else { 0.0 },
        p50_ms: peak.latency_ms.p50,
        p99_ms: peak.latency_ms.p99,
        error_rate: peak.error_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::replay::{ReplayEntry, ReplayGroup, Speed};
    use std::sync::Arc;

    fn replay_of(models: &[&str]) -> Schedule {
        let groups = models
            .iter()
            .map(|model| ReplayGroup {
                method: "POST".into(),
                path: format!("/predictions/{model}"),
                model: model.to_string(),
                bodies: vec![b"x".to_vec()],
            })
            .collect();
        Schedule::Replay(Arc::new(ReplayTraffic {
            log: "access_log.log".into(),
            entries: (0..10)
                .map(|i| ReplayEntry {
                    offset: Duration::from_millis(i * 100),
                    group: (i % models.len() as u64) as u32,
                    body: 0,
                })
                .collect(),
            groups,
            period: Duration::from_secs(1),
            speed: Speed(1.0),
            looped: false,
            unreadable_lines: 3,
            other_lines: 1,
        }))
    }

    #[test]
    fn each_model_gets_its_own_figures_and_two_paths_of_one_model_count_together() {
        let schedule = replay_of(&["tiny", "big", "tiny"]);
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut main = Recorder::new(start, Duration::ZERO, second);
        let mut traffic = TrafficRecorder::new(&schedule, None, start, Duration::ZERO, second);
        for (group, latency_ms, status) in [(0, 2, 200), (2, 4, 200), (1, 50, 200), (1, 60, 503)] {
            let at = start + Duration::from_millis(10);
            let done = at + Duration::from_millis(latency_ms);
            let record = |r: &mut Recorder| r.record_response(at, at, done, status);
            record(&mut main);
            traffic.record(Some(group), at, record);
            traffic.record_lateness(at, at + Duration::from_millis(latency_ms));
        }
        let other_thread = TrafficRecorder::new(&schedule, None, start, Duration::ZERO, second);
        traffic.merge(other_thread);
        let report = main.report(0, 1);
        let figures = traffic.report(&schedule, &report, 0, 1);
        let tiny = &figures.models["tiny"];
        assert_eq!((tiny.requests, tiny.error_rate), (2, 0.0));
        assert!(
            (tiny.p99_ms - 4.0).abs() < 0.01 && (tiny.p50_ms - 2.0).abs() < 0.01,
            "{tiny:?}"
        );
        let big = &figures.models["big"];
        assert_eq!((big.requests, big.error_rate, big.throughput_rps), (2, 0.5, 1.0));
        let replay = figures.replay.expect("a replay reports its fidelity");
        assert_eq!(
            (replay.slice_requests, replay.unreadable_lines, replay.other_lines),
            (10, 3, 1)
        );
        assert_eq!((replay.asked_rps, replay.sent_rps), (10.0, 4.0));
        assert!((replay.lateness_ms.max - 60.0).abs() < 0.1, "{replay:?}");
        assert!(figures.peak.is_none());
    }

    #[test]
    fn a_profile_reports_the_requests_due_at_its_peak() {
        let profile: Profile = "step:10,40@1s".parse().unwrap();
        let schedule = Schedule::Profile {
            profile,
            arrival: crate::load::Arrival::Constant,
        };
        let start = Instant::now();
        let window = Duration::from_secs(2);
        let mut main = Recorder::new(start, Duration::ZERO, window);
        let mut traffic = TrafficRecorder::new(&schedule, None, start, Duration::ZERO, window);
        for (at_ms, latency_ms) in [(100, 1), (500, 1), (1_100, 30), (1_600, 50)] {
            let at = start + Duration::from_millis(at_ms);
            let record = |r: &mut Recorder| r.record_response(at, at, at + Duration::from_millis(latency_ms), 200);
            record(&mut main);
            traffic.record(None, at, record);
        }
        let figures = traffic.report(&schedule, &main.report(0, 1), 0, 1);
        let peak = figures.peak.expect("a profile reports its peak");
        assert_eq!((peak.rate_rps, peak.requests), (40.0, 2));
        assert!(
            (peak.seconds - 1.0).abs() < 0.02 && (peak.throughput_rps - 2.0).abs() < 0.05,
            "{peak:?}"
        );
        assert!(
            (peak.p99_ms - 50.0).abs() < 0.1 && (peak.p50_ms - 30.0).abs() < 0.1,
            "{peak:?}"
        );
        assert!(figures.models.is_empty() && figures.replay.is_none());
    }
}
