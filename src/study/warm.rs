//! Warm start: a study that takes up what an earlier study of the same
//! deployment learned (`tune --warm-start results/<study>`).
//!
//! What is reused, and how much it is trusted:
//! - *Measured first*: the earlier balanced and max-throughput
//!   recommendations, then the earlier study's best screening candidates
//!   (`FIRST_CANDIDATES` in all), right after the baseline — a fresh
//!   measurement of each, on the server as it is now.
//! - *Told to the strategy*: every earlier screening trial, before this
//!   study's own, with its loss at half weight (`PRIOR_WEIGHT`): the earlier
//!   trials order the search among themselves, and a fresh measurement
//!   with the same figures ranks above them — the server, the models or
//!   the traffic may have changed since. They are not this study's trials:
//!   no estimate, tier or report figure comes from them, and any point may
//!   be measured again.
//! - *Unchanged*: once the points measured first are in, when the earlier
//!   best (its max-throughput recommendation, judged by the same loss as
//!   the search) still beats every one of them and its throughput is
//!   within `UNCHANGED_TOLERANCE` of what the earlier study measured, the
//!   search stops ("unchanged") and the rest of the budget goes to the
//!   confirmation, or is saved.
//!
//! A warm start is refused when the earlier study tuned another model or
//! config file, or another space (its `fingerprint.json`, written by every
//! study). Spaces that differ only in which parameters were searched — the
//! same deployment under two workloads prunes differently: `job_queue_size`
//! is not searched under a closed loop that cannot fill it, and is under an
//! open-loop replay — are matched by name: each earlier point keeps its
//! levels of the shared parameters (which must have the same levels) and
//! takes the default of a parameter the earlier study did not search.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::objective::Tier;
use crate::report::WarmStartSummary;
use crate::search::Trial;
use crate::space::{Point, Space};
use crate::trial::{Entry, TrialKind};

use super::estimator;
use super::planner::{Plan, Planner};

/// How many earlier points are measured first (the recommendation included).
pub const FIRST_CANDIDATES: usize = 3;
/// The weight of an earlier loss told to the strategy.
pub const PRIOR_WEIGHT: f64 = 0.5;
/// How far the earlier recommendation's throughput may move and still be "unchanged".
pub const UNCHANGED_TOLERANCE: f64 = 0.10;

/// What a study is, for telling whether an earlier one tuned the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Each parameter's name and levels.
    pub space: serde_json::Value,
    pub model: String,
    /// The config file tuned (absolute).
    pub config: PathBuf,
}

impl Fingerprint {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("fingerprint.json")
    }

    /// Why an earlier study's fingerprint is not this one's, if it is not.
    fn differs_from(&self, earlier: &Fingerprint) -> Option<String> {
        if self.model != earlier.model {
            return Some(format!(
                "it tuned model {}, this study tunes {}",
                earlier.model, self.model
            ));
        }
        if self.config != earlier.config {
            return Some(format!(
                "it tuned {}, this study tunes {}",
                earlier.config.display(),
                self.config.display()
            ));
        }
        None
    }
}

/// What an earlier study hands to a new one.
#[derive(Debug, Clone)]
pub struct WarmStart {
    pub from: PathBuf,
    /// Measured first, in this order.
    pub first: Vec<Point>,
    /// Earlier screening trials, at half weight.
    pub prior: Vec<Trial>,
    /// The earlier best (its max-throughput recommendation, else its best
    /// screening trial) and the throughput it was measured at.
    pub previous_best: Option<(Point, f64)>,
}

impl WarmStart {
    /// Reads the earlier study in `dir`; refuses one of another space,
    /// model or config file.
    pub fn load(dir: &Path, fingerprint: &Fingerprint, space: &Space, plan: &Plan) -> anyhow::Result<Self> {
        let refuse = |why: String| anyhow::anyhow!("--warm-start {}: {why}", dir.display());
        let text = std::fs::read_to_string(Fingerprint::path(dir)).map_err(|e| {
            refuse(format!(
                "cannot read fingerprint.json ({e}): not the results folder of a study (or one too old to warm-start from)"
            ))
        })?;
        let earlier: Fingerprint = serde_json::from_str(&text)
            .with_context(|| format!("{}", Fingerprint::path(dir).display()))
            .map_err(|e| refuse(format!("{e:#}")))?;
        if let Some(why) = fingerprint.differs_from(&earlier) {
            return Err(refuse(format!(
                "{why}; a warm start needs a study of the same deployment and space"
            )));
        }
        let journal = dir.join("trials.jsonl");
        let mut entries = crate::store::file::read(&journal).map_err(|e| refuse(e.to_string()))?;
        if fingerprint.space != earlier.space {
            let map = translation(&earlier.space, space).ok_or_else(|| {
                refuse(
                    "it searched another space (other parameters or levels); a warm start needs a study of the \
                     same deployment and space"
                        .into(),
                )
            })?;
            for entry in &mut entries {
                entry.point = entry.point.take().map(|point| translate(&point, &map, space));
            }
            tracing::info!(
                "--warm-start {}: its space differs in which parameters it searched; its points are matched by \
                 name ({} of {} parameters), the others at their defaults",
                dir.display(),
                map.iter().flatten().count(),
                space.dimensions()
            );
        }
        let warm = Self::from_entries(dir, &entries, space, plan);
        if warm.prior.is_empty() {
            return Err(refuse("the earlier study has no screening trial to start from".into()));
        }
        Ok(warm)
    }

    /// What the trials `entries` of an earlier study of `space` hand on.
    pub fn from_entries(from: &Path, entries: &[Entry], space: &Space, plan: &Plan) -> Self {
        let screened: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.kind == TrialKind::Screen && e.server_lost.is_none() && e.point.is_some())
            .collect();
        let prior = screened
            .iter()
            .filter_map(|e| {
                Some(Trial {
                    point: e.point.clone()?,
                    loss: e.loss * PRIOR_WEIGHT,
                })
            })
            .collect();
        let recommended = |tier| recommendation(entries, space, plan, tier);
        let previous_best = recommended(Tier::MaxThroughput).or_else(|| best_screened(entries));
        let mut ranked: Vec<&Entry> = screened.iter().copied().filter(|e| e.feasible).collect();
        ranked.sort_by(|a, b| a.loss.total_cmp(&b.loss));
        let earlier_points = [recommended(Tier::Balanced), previous_best.clone()]
            .into_iter()
            .flatten()
            .map(|(point, _)| point)
            .chain(ranked.iter().filter_map(|e| e.point.clone()));
        let mut first: Vec<Point> = Vec::new();
        for point in earlier_points {
            if first.len() >= FIRST_CANDIDATES {
                break;
            }
            if !first.contains(&point) {
                first.push(point);
            }
        }
        Self {
            from: from.to_path_buf(),
            first,
            prior,
            previous_best,
        }
    }

    /// The next point to measure first that is not measured or in flight.
    pub fn next_first(&self, measured: impl Fn(&Point) -> bool) -> Option<Point> {
        self.first.iter().find(|p| !measured(p)).cloned()
    }

    /// Whether the earlier recommendation, measured again among the points
    /// measured first (`screened`: this study's screening trials), still
    /// wins and moved less than the tolerance.
    pub fn unchanged(&self, screened: &[Entry]) -> bool {
        let Some((best, earlier_rps)) = &self.previous_best else {
            return false;
        };
        let fresh = |point: &Point| {
            screened
                .iter()
                .filter(|e| e.point.as_ref() == Some(point) && e.server_lost.is_none())
                .min_by(|a, b| a.loss.total_cmp(&b.loss))
        };
        let Some(now) = fresh(best) else {
            return false;
        };
        let all_in = self.first.iter().all(|p| fresh(p).is_some());
        let still_wins = self.first.iter().filter_map(fresh).all(|e| now.loss <= e.loss);
        let throughput = now.figures.map_or(0.0, |f| f.throughput_rps);
        let moved = (throughput - earlier_rps).abs() / earlier_rps.max(f64::MIN_POSITIVE);
        all_in && now.feasible && still_wins && moved <= UNCHANGED_TOLERANCE
    }

    /// What the report says of it.
    pub fn summary(&self, unchanged: bool) -> WarmStartSummary {
        WarmStartSummary {
            from: self.from.display().to_string(),
            earlier_trials: self.prior.len(),
            measured_first: self.first.len(),
            prior_weight: PRIOR_WEIGHT,
            unchanged,
        }
    }
}

/// For each parameter of `now`, its index in an earlier study's space
/// (its fingerprint), or None when the earlier study did not search it;
/// None when a shared parameter has other levels, or nothing is shared.
fn translation(earlier: &serde_json::Value, now: &Space) -> Option<Vec<Option<usize>>> {
    let earlier: Vec<(&str, Vec<&str>)> = earlier
        .as_array()?
        .iter()
        .map(|p| {
            let levels = p["levels"]
                .as_array()?
                .iter()
                .map(|l| l.as_str())
                .collect::<Option<Vec<_>>>()?;
            Some((p["name"].as_str()?, levels))
        })
        .collect::<Option<_>>()?;
    let mut map = Vec::new();
    for parameter in &now.parameters {
        let Some(index) = earlier.iter().position(|(name, _)| *name == parameter.name) else {
            map.push(None);
            continue;
        };
        let levels: Vec<String> = parameter.levels.iter().map(|l| l.to_string()).collect();
        if earlier[index].1 != levels {
            return None;
        }
        map.push(Some(index));
    }
    map.iter().any(Option::is_some).then_some(map)
}

/// An earlier point in this study's space (`translation`'s map).
fn translate(earlier: &[usize], map: &[Option<usize>], space: &Space) -> Point {
    let point: Point = map
        .iter()
        .zip(&space.parameters)
        .map(|(index, parameter)| {
            index
                .and_then(|i| earlier.get(i).copied())
                .unwrap_or(parameter.default_level)
        })
        .collect();
    space.normalize(&point)
}

/// The earlier study's recommendation for `tier` (a confirmed candidate
/// that changes something) and its throughput.
fn recommendation(entries: &[Entry], space: &Space, plan: &Plan, tier: Tier) -> Option<(Point, f64)> {
    let planner = Planner {
        plan,
        space,
        entries,
        running: None,
        baseline_levels: Vec::new(),
    };
    let constraints = planner.constraints();
    let candidates = estimator::candidates(entries, space);
    let reference = estimator::reference_figures(&candidates, space);
    let decisions = estimator::decide_tiers(&candidates, &constraints, &plan.weights, &reference);
    let decision = decisions.iter().find(|d| d.tier == tier && !d.keep_current)?;
    let chosen = &candidates[decision.chosen];
    Some((chosen.point.clone()?, chosen.figures.throughput_rps))
}

/// The earlier study's best feasible screening trial (when it confirmed nothing).
fn best_screened(entries: &[Entry]) -> Option<(Point, f64)> {
    entries
        .iter()
        .filter(|e| e.kind == TrialKind::Screen && e.feasible && e.server_lost.is_none())
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .and_then(|e| Some((e.point.clone()?, e.figures?.throughput_rps)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::settings::{Overrides, Settings};

    fn settings() -> Settings {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Settings::load(&root.join("examples/deployment/study.toml"), &Overrides::default()).unwrap()
    }

    fn fingerprint(space: &Space, model: &str, config: &str) -> Fingerprint {
        Fingerprint {
            space: crate::study::shared::space_fingerprint(space),
            model: model.into(),
            config: PathBuf::from(config),
        }
    }

    /// An earlier study's folder with `fingerprint` and one screening trial of the defaults.
    fn earlier(dir: &Path, fingerprint: &Fingerprint, space: &Space) {
        std::fs::write(Fingerprint::path(dir), serde_json::to_vec(fingerprint).unwrap()).unwrap();
        let entry = crate::study::shared::lost_entry(
            space,
            &crate::store::RunningTrial {
                number: 0,
                point: Some(space.default_point()),
                worker: "here:1".into(),
                silent_s: 0.0,
            },
            std::time::Duration::from_secs(60),
        );
        let line = serde_json::to_string(&entry).unwrap();
        std::fs::write(dir.join("trials.jsonl"), format!("{line}\n")).unwrap();
    }

    #[test]
    fn a_warm_start_from_another_deployment_model_or_space_is_refused_with_the_reason() {
        let settings = settings();
        let space = crate::space::load_spaces(&settings.spaces).unwrap();
        let plan = Plan::from(&settings);
        let here = fingerprint(&space, "tiny", "/srv/ts/config.properties");
        let dir = tempfile::tempdir().unwrap();
        earlier(dir.path(), &here, &space);
        assert!(WarmStart::load(dir.path(), &here, &space, &plan).is_ok());
        let cases = [
            (fingerprint(&space, "bert", "/srv/ts/config.properties"), "model bert"),
            (
                fingerprint(&space, "tiny", "/srv/other/config.properties"),
                "/srv/other",
            ),
        ];
        for (other, says) in cases {
            earlier(dir.path(), &other, &space);
            let e = WarmStart::load(dir.path(), &here, &space, &plan)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--warm-start") && e.contains(says), "{e}");
        }
        let mut narrower = here.clone();
        narrower.space = serde_json::json!([{"name": "batch_size", "levels": ["1"]}]);
        earlier(dir.path(), &narrower, &space);
        let e = WarmStart::load(dir.path(), &here, &space, &plan)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another space"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = WarmStart::load(empty.path(), &here, &space, &plan)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fingerprint.json"), "{e}");
    }

    #[test]
    fn earlier_losses_are_told_at_their_weight_and_the_best_comes_first() {
        let settings = settings();
        let space = crate::space::load_spaces(&settings.spaces).unwrap();
        let plan = Plan::from(&settings);
        let mut entries = Vec::new();
        let points = [space.default_point(), space.normalize(&vec![1; space.dimensions()])];
        for (number, (point, throughput)) in points.iter().zip([100.0, 300.0]).enumerate() {
            let mut entry = crate::study::shared::lost_entry(
                &space,
                &crate::store::RunningTrial {
                    number,
                    point: Some(point.clone()),
                    worker: "here:1".into(),
                    silent_s: 0.0,
                },
                std::time::Duration::from_secs(60),
            );
            entry.failure = None;
            entry.feasible = true;
            entry.loss = -throughput;
            entry.figures = Some(crate::objective::Figures {
                throughput_rps: throughput,
                p50_ms: 5.0,
                p99_ms: 10.0,
                error_rate: 0.0,
                memory_mb: 100.0,
                model_excess: 0.0,
            });
            entries.push(entry);
        }
        let warm = WarmStart::from_entries(Path::new("r/s"), &entries, &space, &plan);
        assert_eq!(warm.prior.iter().map(|t| t.loss).collect::<Vec<_>>(), [-50.0, -150.0]);
        assert_eq!(warm.first, [points[1].clone(), points[0].clone()]);
        assert_eq!(warm.previous_best, Some((points[1].clone(), 300.0)));
        // Measured again within the tolerance and still the best: unchanged.
        let mut again = entries.clone();
        again[1].figures.as_mut().unwrap().throughput_rps = 280.0;
        again[1].loss = -280.0;
        assert!(warm.unchanged(&again));
        // Down by more than the tolerance, or beaten: not.
        again[1].figures.as_mut().unwrap().throughput_rps = 250.0;
        assert!(!warm.unchanged(&again));
        again[1].figures.as_mut().unwrap().throughput_rps = 300.0;
        again[0].loss = -400.0;
        assert!(!warm.unchanged(&again));
        // Not everything measured first is in yet: not decided.
        assert!(!warm.unchanged(&entries[1..]));
    }

    #[test]
    fn a_study_that_searched_fewer_parameters_warm_starts_by_name() {
        let settings = settings();
        let space = crate::space::load_spaces(&settings.spaces).unwrap();
        let plan = Plan::from(&settings);
        let here = fingerprint(&space, "tiny", "/srv/ts/config.properties");
        // The earlier study did not search the first parameter (pruned under its workload).
        let pruned = Space {
            parameters: space.parameters[1..].to_vec(),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut before = fingerprint(&pruned, "tiny", "/srv/ts/config.properties");
        earlier(dir.path(), &before, &pruned);
        let warm = WarmStart::load(dir.path(), &here, &space, &plan).unwrap();
        assert_eq!(
            warm.prior[0].point,
            space.default_point(),
            "matched by name, defaults elsewhere"
        );
        // A shared parameter with other levels is another space.
        before.space[0]["levels"] = serde_json::json!(["7"]);
        earlier(dir.path(), &before, &pruned);
        let e = WarmStart::load(dir.path(), &here, &space, &plan)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another space"), "{e}");
    }
}
