//! A load run seen second by second: what was offered (users or target
//! rate), what came back (throughput, p50 and p99, errors, from the
//! recorder's per-second timeline), the server's memory (`track`), and
//! where the stages start and end. `measure_observed` runs one measurement
//! with the memory track alongside; `report::timeline` draws the result.
//!
//! Called by the `bench` command (every fixed-load, stages and soak run)
//! and by `soak`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::track::{MemoryTrack, MemoryTracker};
use super::{measure_traffic, Measurement, ServerProbe};
use crate::load::{LoadError, LoadPlan, Progress, Schedule, TrafficReport};
use crate::measure::SecondStats;

/// How often the memory track reads the processes.
pub const TRACK_INTERVAL: Duration = Duration::from_secs(1);

/// One stage of a closed-loop run, as the timeline marks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageMark {
    pub start_s: f64,
    pub end_s: f64,
    /// e.g. "0 → 100 users" or "hold 100 users".
    pub label: String,
}

/// What was offered: virtual users (closed loop) or a target rate (open loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offered {
    Users,
    TargetRate,
}

/// Everything the timeline picture shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// e.g. "closed loop stages (peak 100 users)".
    pub mode: String,
    pub offered: Offered,
    /// (second, users or target req/s) at the middle of each second.
    pub offered_series: Vec<(f64, f64)>,
    /// The recorder's seconds (by intended send time), warm-up included.
    pub seconds: Vec<SecondStats>,
    /// (second, RSS of the server's processes in MB); empty when not observed.
    pub memory_mb: Vec<(f64, f64)>,
    pub stages: Vec<StageMark>,
    pub warmup_s: f64,
}

/// A measurement with its memory track and timeline.
#[derive(Debug, Clone)]
pub struct Observed {
    pub measurement: Measurement,
    /// A replay's or a profile's own figures (per model, fidelity, peak).
    pub traffic: TrafficReport,
    pub memory: MemoryTrack,
    pub timeline: Timeline,
}

fn stage_label(from: u32, to: u32) -> String {
    if from == to {
        format!("hold {to} users")
    } else {
        format!("{from} → {to} users")
    }
}

/// The stages of `schedule` (none for an open loop or a single constant stage).
pub fn stage_marks(schedule: &Schedule) -> Vec<StageMark> {
    let Schedule::Closed { stages, .. } = schedule else {
        return Vec::new();
    };
    if stages.stages().len() < 2 {
        return Vec::new();
    }
    let mut start = 0.0;
    stages
        .stages()
        .iter()
        .map(|stage| {
            let end = start + stage.duration.as_secs_f64();
            let mark = StageMark {
                start_s: start,
                end_s: end,
                label: stage_label(stage.from, stage.to),
            };
            start = end;
            mark
        })
        .collect()
}

/// Users or target rate at the middle of each of `seconds` seconds.
pub fn offered_series(schedule: &Schedule, seconds: usize) -> (Offered, Vec<(f64, f64)>) {
    let at = |s: usize| s as f64 + 0.5;
    match schedule {
        Schedule::Open { rate_per_s, .. } => (
            Offered::TargetRate,
            (0..seconds).map(|s| (at(s), *rate_per_s)).collect(),
        ),
        Schedule::Closed { stages, .. } => (
            Offered::Users,
            (0..seconds)
                .map(|s| (at(s), f64::from(stages.users_at(Duration::from_secs_f64(at(s))))))
                .collect(),
        ),
        Schedule::Profile { profile, .. } => (
            Offered::TargetRate,
            (0..seconds)
                .map(|s| (at(s), profile.rate_at(Duration::from_secs_f64(at(s)))))
                .collect(),
        ),
        // A replay offers what its log sends in each second.
        Schedule::Replay(traffic) => (
            Offered::TargetRate,
            (0..seconds)
                .map(|s| {
                    let from = Duration::from_secs(s as u64);
                    (
                        at(s),
                        traffic.requests_between(from, from + Duration::from_secs(1)) as f64,
                    )
                })
                .collect(),
        ),
    }
}

/// The timeline of a finished run.
pub fn timeline_of(mode: &str, schedule: &Schedule, measurement: &Measurement, memory: &MemoryTrack) -> Timeline {
    // A last second cut short by the window's end would read as a collapse.
    let run_s = measurement.load.warmup_s + measurement.load.duration_s;
    let seconds: Vec<SecondStats> = measurement
        .load
        .timeline
        .iter()
        .filter(|s| (s.second + 1) as f64 <= run_s + 1e-6)
        .cloned()
        .collect();
    let (offered, offered_series) = offered_series(schedule, seconds.len());
    Timeline {
        mode: mode.to_string(),
        offered,
        offered_series,
        seconds,
        memory_mb: memory.total_mb.clone(),
        stages: stage_marks(schedule),
        warmup_s: measurement.load.warmup_s,
    }
}

/// Runs `plan` like `measure_once`, with every process's memory tracked
/// from the start (warm-up included) when the probe names a server.
pub async fn measure_observed(
    plan: LoadPlan,
    mode: &str,
    probe: &ServerProbe,
    token: CancellationToken,
    progress: Arc<Progress>,
) -> Result<Observed, LoadError> {
    let schedule = plan.schedule.clone();
    let roots: Vec<i32> = probe.pid.into_iter().chain(probe.also.iter().copied()).collect();
    let tracker = (!roots.is_empty()).then(|| MemoryTracker::start(roots, TRACK_INTERVAL, Instant::now()));
    let measured = measure_traffic(plan, probe, token, progress).await;
    let memory = tracker.map(MemoryTracker::finish).unwrap_or_default();
    let (measurement, traffic) = measured?;
    let timeline = timeline_of(mode, &schedule, &measurement, &memory);
    Ok(Observed {
        measurement,
        traffic,
        memory,
        timeline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Arrival, Stages};

    #[test]
    fn stages_are_marked_and_users_follow_the_ramp() {
        let stages: Stages = "0:100@60s,100@300s".parse().unwrap();
        let schedule = Schedule::Closed {
            stages,
            think_time: Duration::ZERO,
        };
        let marks = stage_marks(&schedule);
        assert_eq!(marks.len(), 2);
        assert_eq!((marks[0].start_s, marks[0].end_s), (0.0, 60.0));
        assert_eq!(marks[0].label, "0 → 100 users");
        assert_eq!((marks[1].end_s, marks[1].label.as_str()), (360.0, "hold 100 users"));
        let (offered, users) = offered_series(&schedule, 360);
        assert_eq!(offered, Offered::Users);
        assert_eq!(users[0].1, 1.0, "half a second into a 60 s ramp to 100");
        assert_eq!(users[29].1, 49.0);
        assert_eq!(users[200].1, 100.0);
    }

    #[test]
    fn an_open_loop_offers_its_rate_and_has_no_stages() {
        let schedule = Schedule::Open {
            rate_per_s: 50.0,
            arrival: Arrival::Constant,
        };
        assert!(stage_marks(&schedule).is_empty());
        let (offered, rate) = offered_series(&schedule, 3);
        assert_eq!(offered, Offered::TargetRate);
        assert_eq!(rate, vec![(0.5, 50.0), (1.5, 50.0), (2.5, 50.0)]);
    }
}
