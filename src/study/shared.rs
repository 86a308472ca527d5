//! A study in a shared store, from this process's side: its role (leader
//! or worker), whether it may take a study up, what a claim came to, and
//! the entry of a trial given up because its worker fell silent. Pure
//! except for the pause between empty claims; the study uses these.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::space::{Point, Space};
use crate::trial::{Entry, StopReason, TrialKind};

use super::clock::Clock;
use super::settings::Settings;
use super::testbed::point_values;

/// How this process takes part in a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `tune`: creates (or resumes) the study, measures, decides when the
    /// search ends, confirms on its own server, reports.
    Leader,
    /// `worker`: joins a shared study and measures candidates on its own
    /// server until the study stops handing them out.
    Worker,
}

/// A shared study as `open` found it.
pub struct Joined {
    /// This process created it.
    pub created: bool,
    pub state: crate::store::StudyState,
    pub leader_silent_s: f64,
}

/// Whether this process takes up a shared study it did not create (as a
/// resume does), or why it may not: a finished study takes no more work; a
/// leader that still beats keeps its study (another host joins as a worker,
/// a resume waits for the grace period); a silent leader's study is taken
/// over by the next `tune` of it, from any host.
pub fn joins_shared(settings: &Settings, role: Role, resume: bool, joined: &Joined) -> anyhow::Result<bool> {
    let name = &settings.name;
    if role == Role::Worker || joined.created {
        return Ok(resume);
    }
    if joined.state == crate::store::StudyState::Finished {
        anyhow::bail!(
            "study '{name}' is finished in {}: its results are exported; choose another name for a new study",
            settings.storage.display()
        );
    }
    let grace = settings.heartbeat_grace;
    if joined.leader_silent_s <= grace.as_secs_f64() {
        anyhow::bail!(
            "study '{name}' is led by a running `servetune tune` (its last sign {:.0} s ago, grace {}): \
             to add this host, run `servetune worker --storage {} --study {name} --target TARGET.toml`; \
             to take the study over, stop that leader and wait out the grace period",
            joined.leader_silent_s,
            humantime::format_duration(grace),
            settings.storage.display()
        );
    }
    if !resume {
        tracing::info!(
            "taking up study {name}: its leader fell silent {:.0} s ago",
            joined.leader_silent_s
        );
    }
    Ok(true)
}

/// A second's wait between claims that found nothing to do.
/// (On the study's clock: simulated studies wait simulated time.)
pub async fn pause(clock: &Clock, token: CancellationToken) {
    tokio::select! {
        biased;
        _ = token.cancelled() => {}
        _ = clock.pass(Duration::from_secs(1)) => {}
    }
}

/// What a claim on a shared study came to.
pub enum ClaimStep {
    /// Measure `point` as trial `number`, or journal it on the baseline
    /// entry `on_baseline` when that window stands for it.
    Measure {
        number: usize,
        point: Point,
        on_baseline: Option<Box<crate::trial::Entry>>,
    },
    /// Nothing to hand out until other workers' trials finish.
    Wait,
    /// The search is over (for the leader; workers wait for it to say so).
    Stop(StopReason),
    /// The study no longer hands out candidates.
    Closed,
    /// The leader has been silent this many seconds.
    LeaderGone(f64),
}

/// The journal entry of a trial given up: no figures, the worst loss, and
/// the reason, naming the worker.
pub fn lost_entry(space: &Space, trial: &crate::store::RunningTrial, grace: Duration) -> Entry {
    let values = trial
        .point
        .as_ref()
        .map(|point| point_values(space, point))
        .unwrap_or_default();
    Entry {
        number: trial.number,
        kind: if trial.point.is_some() {
            TrialKind::Screen
        } else {
            TrialKind::Baseline
        },
        point: trial.point.clone(),
        values,
        figures: None,
        failure: Some(format!(
            "lost: worker {} sent no heartbeat for {:.0} s (grace {}); the candidate went back to the queue",
            trial.worker,
            trial.silent_s,
            humantime::format_duration(grace)
        )),
        loss: crate::search::FAILED_LOSS,
        feasible: false,
        restarted: false,
        throughput_ci95: None,
        duration_s: 0.0,
        elapsed_s: 0.0,
        switch: Default::default(),
        switch_s: 0.0,
        warmup_s: 0.0,
        stability: None,
        round: None,
        latency_histogram: None,
        server_cpu_cores: None,
        observer_cpu_share: None,
        incidents: Vec::new(),
        worker: Some(trial.worker.clone()),
        server_lost: None,
        models: Default::default(),
        peak: None,
        window_of: None,
    }
}

/// The space as a shared study stores it: each parameter's name and levels.
pub fn space_fingerprint(space: &Space) -> serde_json::Value {
    serde_json::Value::Array(
        space
            .parameters
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "levels": p.levels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StudyState;
    use crate::study::settings;
    use std::path::Path;

    fn settings() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let overrides = settings::Overrides {
            storage: Some("postgres://tuner@db/studies".into()),
            ..Default::default()
        };
        Settings::load(&root.join("examples/deployment/study.toml"), &overrides).unwrap()
    }

    fn found(created: bool, state: StudyState, leader_silent_s: f64) -> Joined {
        Joined {
            created,
            state,
            leader_silent_s,
        }
    }

    #[test]
    fn a_tune_takes_up_a_shared_study_only_from_a_silent_leader() {
        let s = settings();
        let grace = s.heartbeat_grace.as_secs_f64();
        // Created here: a new study (or the resume asked for).
        assert!(!joins_shared(&s, Role::Leader, false, &found(true, StudyState::Running, 0.0)).unwrap());
        // A live leader keeps its study, also against a resume; the error says how to help.
        for resume in [false, true] {
            let e = joins_shared(&s, Role::Leader, resume, &found(false, StudyState::Running, 1.0))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("servetune worker --storage postgres://tuner@db/studies"),
                "{e}"
            );
        }
        // A silent leader's study is taken up, as a resume.
        assert!(joins_shared(&s, Role::Leader, false, &found(false, StudyState::Running, grace + 1.0)).unwrap());
        // A finished study takes no more work.
        let e = joins_shared(&s, Role::Leader, true, &found(false, StudyState::Finished, 1e6))
            .unwrap_err()
            .to_string();
        assert!(e.contains("finished"), "{e}");
        // Workers always join (they watch the leader at each claim).
        assert!(!joins_shared(&s, Role::Worker, false, &found(false, StudyState::Running, 0.0)).unwrap());
    }

    #[test]
    fn a_lost_trial_names_its_worker_and_counts_as_failed() {
        let space = crate::space::load_spaces(&settings().spaces).unwrap();
        let trial = crate::store::RunningTrial {
            number: 7,
            point: Some(space.default_point()),
            worker: "host-b:42".into(),
            silent_s: 75.0,
        };
        let entry = lost_entry(&space, &trial, Duration::from_secs(60));
        let failure = entry.failure.unwrap();
        assert!(
            failure.contains("host-b:42") && failure.contains("75 s") && failure.contains("1m"),
            "{failure}"
        );
        assert_eq!(
            (entry.number, entry.kind, entry.feasible),
            (7, TrialKind::Screen, false)
        );
        assert_eq!(entry.loss, crate::search::FAILED_LOSS);
        assert_eq!(entry.values.len(), space.parameters.len());
        assert_eq!(entry.worker.as_deref(), Some("host-b:42"));
    }
}
