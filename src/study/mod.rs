//! The study: the tuning loop that ties every stage together, on a real
//! deployment.
//!
//! Phases (the generic `study_loop`, the same loop `servetune replay` runs
//! on a recorded landscape): the config as it is (the baseline) →
//! TorchServe's defaults → whatever the strategy proposes, until the
//! budget (kept back for what follows), the trial limit, the space or a
//! signal stops it → confirmation (`scheduler`, planned by `planner`): the
//! baseline, the best candidates and each tier's leader re-measured in
//! alternating rounds on one server, grouped by cold config → tier
//! decisions among the confirmed only (`estimator`) → the server back on
//! the original config (or, with `--apply`, the balanced recommendation),
//! left as it was found (`served`) → the report exported (`findings`,
//! `way_out`), each step of the way out under a deadline.
//!
//! This module opens a study (`open`: settings, space, the original
//! deployment, the store, whether this process may take part) and runs it
//! as the leader (`run_study`: `tune`, the daemon) or as a worker of a
//! shared study (`run_worker`: `servetune worker`, each on its own
//! server, claiming candidates the strategy proposes from every worker's
//! trials; only the leader checks the budget and confirms).

mod baseline_window;
pub mod clock;
pub mod estimator;
mod exit;
pub mod exit_steps;
mod findings;
pub mod gateway;
pub mod journal;
pub mod lock;
pub mod model_set;
mod original;
pub mod planner;
mod prior;
pub mod recorded;
pub mod runner;
pub mod scheduler;
pub mod served;
mod server_loss;
mod server_snapshot;
pub mod settings;
mod setup;
mod shared;
mod shortfall;
pub mod study_loop;
pub mod testbed;
pub mod warm;
pub mod way_out;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::apply::state::Deployment;
use crate::config;
use crate::report::Report;
use crate::search::make_strategy;
use crate::server::TorchServe;
use crate::space::Space;
use crate::store::{Store as _, StudyRecord, TrialStore};
use crate::trial::{Entry, NotSearched};
use planner::Plan;
use runner::Runner;
use served::Served;
use settings::Settings;
use shared::{joins_shared, space_fingerprint, Joined, Role};
use study_loop::StudyLoop;

pub use crate::trial::StopReason;
pub use study_loop::TrialUpdate;

/// Where a study keeps its files.
pub fn study_dir(results: &Path, name: &str) -> PathBuf {
    results.join(name)
}

/// The path of the study file a study was started from (for `--resume`).
pub fn source_marker(dir: &Path) -> PathBuf {
    dir.join("study-source.txt")
}

/// How a study is started.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Go on with the study of this name where it stopped.
    pub resume: bool,
    /// End on the balanced recommendation instead of the original config.
    pub apply_best: bool,
    /// Start from what an earlier study learned (`warm`).
    pub warm_start: Option<WarmFrom>,
    /// Start from the landscape model's prediction (`predict --json`'s file).
    pub prior: Option<PathBuf>,
}

/// Where a warm start comes from.
#[derive(Debug, Clone)]
pub enum WarmFrom {
    /// The operator named it (`--warm-start`): a study of another
    /// deployment or space is refused.
    Asked(PathBuf),
    /// The deployment's last study (the daemon): one that does not fit is
    /// ignored, with a note.
    Earlier(PathBuf),
}

/// Runs (or resumes) a study; returns the report that was exported. Every
/// exit puts the original config (or, with `apply_best`, the balanced
/// recommendation) back and leaves the server as found (`served`).
pub async fn run_study(
    settings: &Settings,
    results: &Path,
    launch: Launch,
    token: CancellationToken,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> anyhow::Result<Report> {
    let Launch {
        resume,
        apply_best,
        warm_start,
        prior,
    } = launch;
    let prior = match &prior {
        Some(path) => Some(prior::Prior::load(
            path,
            &settings.model,
            &settings.models,
            match (&settings.offered, &settings.varying) {
                (settings::Offered::Users(users), None) => Some(*users),
                _ => None,
            },
        )?),
        None => None,
    };
    let opened = Opened::open(
        settings,
        results,
        resume,
        Role::Leader,
        warm_start.as_ref(),
        token.clone(),
    )
    .await?;
    use exit_steps::{EXPORT, RELEASE_LOCK, RESTORE, STOP_TRIAL};
    exit_steps::begin(&opened.config_path(), &[STOP_TRIAL, RESTORE, RELEASE_LOCK, EXPORT]);
    let plan = Plan::from(settings);
    let Opened {
        space,
        not_searched,
        served,
        store,
        entries,
        dir,
        resumed,
        warm,
    } = opened;
    let guesses = prior
        .map(|p| p.guesses(&space, &settings.constraints))
        .unwrap_or_default();
    let study = study_loop(settings, &plan, &space, served, store, entries)
        .guided_by(guesses)
        .with_token(token)
        .resuming(resumed)
        .applying_best(apply_best)
        .warm_started(warm);
    let finished = study.run(on_trial).await;
    let found = findings::Found {
        settings,
        plan: &plan,
        space: &space,
        not_searched: &not_searched,
    };
    way_out::wind_up(&found, &dir, finished).await
}

/// Runs a worker of a shared study (`servetune worker`): claims candidates,
/// measures them on this host's server, stores the results, until the
/// study stops handing them out; then puts the server back on its original
/// config. Returns the number of trials this worker measured.
pub async fn run_worker(
    settings: &Settings,
    results: &Path,
    token: CancellationToken,
    on_trial: &(dyn Fn(&TrialUpdate) + Sync),
) -> anyhow::Result<usize> {
    if settings.stack.is_some() {
        anyhow::bail!(
            "study {} tunes a stack: its gateway and TorchServe are measured by the leader alone \
             (workers take TorchServe studies)",
            settings.name
        );
    }
    let mut opened = Opened::open(settings, results, true, Role::Worker, None, token.clone()).await?;
    if opened.store.shared().is_none() {
        anyhow::bail!("a worker needs a shared store (--storage postgres://…)");
    }
    use exit_steps::{RELEASE_LOCK, RESTORE, STOP_TRIAL};
    exit_steps::begin(&opened.config_path(), &[STOP_TRIAL, RESTORE, RELEASE_LOCK]);
    let plan = Plan::from(settings);
    let Opened {
        space,
        served,
        store,
        entries,
        ..
    } = opened;
    let study = study_loop(settings, &plan, &space, served, store, entries)
        .with_token(token)
        .as_role(Role::Worker)
        .resuming(true);
    let finished = study.run(on_trial).await;
    let me = crate::store::worker_id();
    let measured = finished
        .entries
        .iter()
        .filter(|e| e.worker.as_deref() == Some(me.as_str()))
        .count();
    exit::with_restore(
        finished.failure,
        finished.restored,
        "the worker stopped; its server is back on its original config",
    )?;
    Ok(measured)
}

/// The warm start `from` hands on: an earlier study the operator named
/// must fit; the daemon's last one is ignored, with a note, when it does not.
fn warm_start_from(
    from: &WarmFrom,
    fingerprint: &warm::Fingerprint,
    space: &Space,
    plan: &Plan,
) -> anyhow::Result<Option<warm::WarmStart>> {
    match from {
        WarmFrom::Asked(dir) => warm::WarmStart::load(dir, fingerprint, space, plan).map(Some),
        WarmFrom::Earlier(dir) => match warm::WarmStart::load(dir, fingerprint, space, plan) {
            Ok(warm) => Ok(Some(warm)),
            Err(e) => {
                tracing::warn!("not warm-starting: {e:#}");
                Ok(None)
            }
        },
    }
}

/// The study loop of `settings` on `served`, its trials in `store`.
fn study_loop<'a>(
    settings: &'a Settings,
    plan: &'a Plan,
    space: &'a Space,
    served: Served,
    store: TrialStore,
    entries: Vec<Entry>,
) -> StudyLoop<'a, Served, TrialStore> {
    let (kind, seed) = (settings.strategy, settings.seed);
    StudyLoop::new(plan, space, served, make_strategy(kind, seed))
        .judging_models(settings.model_limits.clone())
        .with_store(store, entries)
}

/// A study opened by this process, before any server is touched.
struct Opened {
    space: Space,
    not_searched: Vec<NotSearched>,
    served: Served,
    store: TrialStore,
    /// Its trials so far.
    entries: Vec<Entry>,
    dir: PathBuf,
    /// The study goes on from an earlier run (or, shared, another process's).
    resumed: bool,
    /// What an earlier study hands on (`Launch::warm_start`).
    warm: Option<warm::WarmStart>,
}

impl Opened {
    /// Reads and checks everything before any server is touched.
    async fn open(
        settings: &Settings,
        results: &Path,
        resume: bool,
        role: Role,
        warm_from: Option<&WarmFrom>,
        token: CancellationToken,
    ) -> anyhow::Result<Self> {
        // A worker joins a study under way: like a resume, it takes its
        // server's original from the backup a cut-short run left.
        let resume = resume || role == Role::Worker;
        let setup::Prepared {
            space,
            not_searched,
            spec,
            original_bytes,
            gateway,
            study_gateway,
            workload,
        } = setup::prepare(settings, resume)?;
        let fingerprint = warm::Fingerprint {
            space: space_fingerprint(&space),
            model: settings.model.clone(),
            config: std::path::absolute(&spec.config).unwrap_or_else(|_| spec.config.clone()),
        };
        let warm = match warm_from {
            Some(from) => warm_start_from(from, &fingerprint, &space, &Plan::from(settings))?,
            None => None,
        };
        let dir = study_dir(results, &settings.name);
        let create_dir = || std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()));
        // The file journal lives in the folder; a shared store's study
        // makes it only once this process may take part (a refusal writes nothing).
        if matches!(settings.storage, crate::store::Storage::File) {
            create_dir()?;
        }
        let journal_path = dir.join("trials.jsonl");
        // Absolute: workers on other hosts find the study's files by it.
        let source = std::path::absolute(&settings.source).unwrap_or_else(|_| settings.source.clone());
        let record = StudyRecord {
            name: &settings.name,
            source: &source,
            journal: journal_path.clone(),
            space: Some(space_fingerprint(&space)),
        };
        let (mut store, entries) = TrialStore::open(&settings.storage, &record).await?;
        let resumed = match store.shared() {
            Some(shared) => {
                let (state, leader_silent_s) = shared.status().await?;
                let joined = Joined {
                    created: shared.created(),
                    state,
                    leader_silent_s,
                };
                joins_shared(settings, role, resume, &joined)?
            }
            None if !resume && !entries.is_empty() => anyhow::bail!(
                "study '{}' already has {} trials in {}; continue it with --resume {} or choose another name",
                settings.name,
                entries.len(),
                journal_path.display(),
                settings.name
            ),
            None => resume,
        };
        create_dir()?;
        if role == Role::Leader {
            config::file::write_data_atomically(&source_marker(&dir), source.display().to_string().as_bytes())
                .context("writing the study's source marker")?;
            let json = serde_json::to_vec_pretty(&fingerprint).expect("a fingerprint serialises");
            let path = warm::Fingerprint::path(&dir);
            config::file::write_data_atomically(&path, &json).with_context(|| format!("writing {}", path.display()))?;
        }
        let original = Deployment {
            config: original_bytes,
            environment: spec.environment.clone(),
            gateway,
        };
        let mut runner = Runner::new(TorchServe::new(spec), &settings.model, original, workload, token)
            .with_models(&settings.models);
        if let Some(gateway) = study_gateway {
            runner = runner.with_gateway(gateway);
        }
        let served = Served::new(runner, &settings.name, results, &settings.spaces);
        Ok(Self {
            space,
            not_searched,
            served,
            store,
            entries,
            dir,
            resumed,
            warm,
        })
    }

    fn config_path(&self) -> PathBuf {
        self.served.runner.server.spec().config.clone()
    }
}
