//! Which traffic a daemon cycle's study measures. By default production's
//! own: the last `replay_window` of its `access_log.log` (default: one
//! study window, warm-up included), replayed on the shadow at its recorded
//! instants, looped, with bodies from the deployment's sample folders
//! (`samples/<model>/`; default: the folder above the study's `body`, when
//! it holds the model's). Every study window replays that slice from its
//! start, so every candidate meets the same requests. Without samples, or
//! without inference requests in the window, the cycle says why and
//! measures the study's own workload. `replay = false` turns it off; a
//! study whose `[workload]` already replays or follows a profile keeps it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::load::replay::{ReplayLog, ReplayOptions, ReplayTraffic, Speed, TimePoint};
use crate::load::Schedule;
use crate::study::settings::Settings;

/// What a cycle measures, and the line that says so (in its decision).
#[derive(Debug, Clone)]
pub struct CycleTraffic {
    /// The replayed slice (None: the study's own workload).
    pub schedule: Option<Schedule>,
    pub description: String,
}

/// How a deployment's cycles replay production (the daemon config's keys).
#[derive(Debug, Clone, Default)]
pub struct ProductionReplay {
    /// `replay = false`: measure the study's workload.
    pub off: bool,
    /// `replay_window`: how much of the log's end is replayed.
    pub window: Option<Duration>,
    /// `samples`: one folder of sample bodies per model.
    pub samples: Option<PathBuf>,
}

impl ProductionReplay {
    /// The traffic of a cycle of the study `settings` with production's
    /// log at `access_log`.
    pub fn cycle_traffic(&self, settings: &Settings, access_log: &Path) -> CycleTraffic {
        let synthetic = |why: String| CycleTraffic {
            schedule: None,
            description: format!("the study's own workload ({why})"),
        };
        if settings.varying.is_some() {
            return synthetic("its [workload] replays a log or follows a profile".into());
        }
        if self.off {
            return synthetic("replay = false".into());
        }
        let Some(samples) = self.samples.clone().or_else(|| default_samples(settings)) else {
            return synthetic(
                "no sample bodies per model to replay production with: set samples = \"bodies\" (bodies/<model>/)"
                    .into(),
            );
        };
        let window = self.window.unwrap_or(settings.warmup + settings.duration);
        match replay_slice(access_log, window, &samples) {
            Ok(traffic) => CycleTraffic {
                description: format!(
                    "production's traffic: the last {} of {} ({} requests, {}), bodies from {}",
                    humantime::format_duration(window),
                    access_log.display(),
                    traffic.entries.len(),
                    traffic.models().join(", "),
                    samples.display()
                ),
                schedule: Some(Schedule::Replay(Arc::new(traffic))),
            },
            Err(why) => synthetic(format!("production's log cannot be replayed: {why}")),
        }
    }
}

/// The study's folder of bodies per model (a study of several models), or
/// the folder above its body folder, when it holds one folder per model
/// (the model's among them).
fn default_samples(settings: &Settings) -> Option<PathBuf> {
    if let Some(body_dir) = &settings.body_dir {
        return Some(body_dir.clone());
    }
    let parent = settings.body.as_deref()?.parent()?;
    parent.join(&settings.model).is_dir().then(|| parent.to_path_buf())
}

/// The last `window` of the log at `access_log`, looped, with bodies from `samples`.
fn replay_slice(access_log: &Path, window: Duration, samples: &Path) -> Result<ReplayTraffic, String> {
    let log = ReplayLog::read(access_log).map_err(|e| e.to_string())?;
    let last = log
        .requests
        .last()
        .ok_or_else(|| format!("{} holds no inference request", access_log.display()))?
        .at_ms;
    let options = ReplayOptions {
        speed: Speed(1.0),
        from: Some(TimePoint::At(last - window.as_millis() as i64)),
        to: None,
        looped: true,
    };
    ReplayTraffic::build(&log, &options, samples).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::settings::Overrides;

    fn settings() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Settings::load(&root.join("examples/deployment/study.toml"), &Overrides::default()).unwrap()
    }

    /// A log of `tiny` at 10 requests/s for `seconds`, and one ping.
    fn log(dir: &Path, seconds: u32) -> PathBuf {
        let mut text = String::from("2026-11-28T10:00:00,000 - /127.0.0.1:1 \"GET /ping HTTP/1.1\" 200 1\n");
        for i in 0..seconds * 10 {
            let ms = i * 100;
            text.push_str(&format!(
                "2026-11-28T10:{:02}:{:02},{:03} - /127.0.0.1:1 \"POST /predictions/tiny HTTP/1.1\" 200 3\n",
                ms / 60_000,
                (ms / 1000) % 60,
                ms % 1000
            ));
        }
        let path = dir.join("access_log.log");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_cycle_replays_the_end_of_productions_log_with_the_study_bodies() {
        let settings = settings();
        let dir = tempfile::tempdir().unwrap();
        let access_log = log(dir.path(), 120);
        let replay = ProductionReplay {
            window: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let traffic = replay.cycle_traffic(&settings, &access_log);
        let Some(Schedule::Replay(slice)) = &traffic.schedule else {
            panic!("{}", traffic.description);
        };
        // The last 30 s at 10/s (the edges may add one).
        assert!((300..=302).contains(&slice.entries.len()), "{}", slice.entries.len());
        assert!(slice.looped);
        assert!(
            traffic.description.contains("production's traffic") && traffic.description.contains("tiny"),
            "{}",
            traffic.description
        );
    }

    #[test]
    fn without_samples_or_requests_a_cycle_says_why_and_measures_the_study_workload() {
        let mut settings = settings();
        let dir = tempfile::tempdir().unwrap();
        let access_log = log(dir.path(), 0);
        let replay = ProductionReplay::default();
        let empty = replay.cycle_traffic(&settings, &access_log);
        assert!(empty.schedule.is_none());
        assert!(
            empty.description.contains("no inference request"),
            "{}",
            empty.description
        );
        settings.body = None;
        let access_log = log(dir.path(), 10);
        let bodiless = replay.cycle_traffic(&settings, &access_log);
        assert!(bodiless.schedule.is_none());
        assert!(bodiless.description.contains("samples"), "{}", bodiless.description);
        let off = ProductionReplay {
            off: true,
            ..Default::default()
        };
        assert!(off
            .cycle_traffic(&settings, &access_log)
            .description
            .contains("replay = false"));
    }
}
