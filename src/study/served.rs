//! A real deployment as the study loop's testbed: the `Runner` (TorchServe,
//! managed or through its restart command, alone or behind its gateway)
//! plus what holding a production server takes — the study lock, leaving
//! it as found, and a deadline on the way out.
//!
//! As found: before anything is touched, the study learns whether
//! TorchServe runs (a resume: as its cut-short run found it, from the
//! lock) and keeps that in the lock; on the way out a server that ran is
//! put back running and ready (`Runner::finish_on`), one that was stopped
//! gets its final config on disk and is stopped again
//! (`Runner::finish_down`), and one that never came up during the study
//! only gets its files back (starting it again would only fail again). A
//! server restarted by its service manager (`restart_command`) counts as
//! running: servetune never stops it. The restore runs under a deadline;
//! on success the lock is released, else it stays and says how to recover.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::apply::state::Deployment;
use crate::bench::soak::SoakReport;
use crate::server::TorchServe;
use crate::space::{Point, Space};

use super::clock::Clock;
use super::exit_steps::{done, within, RELEASE_LOCK, RESTORE, STOP_TRIAL};
use super::runner::{values_of, Runner};
use super::testbed::{Subject, Testbed, TrialResult, Window};
use super::{lock, original};

/// A TorchServe deployment held by a study.
pub struct Served {
    pub runner: Runner,
    /// The study's name (the lock's holder).
    study: String,
    /// Where the study's results go (the lock says so).
    results_dir: PathBuf,
    /// The space files, for errors of a point they cannot realise.
    spaces: String,
    /// Whether the study moved the server (else nothing needs restoring).
    touched: bool,
    /// Whether the server was ever ready during the study.
    pub server_up: bool,
    /// TorchServe was not running before the study: it is stopped again at the end.
    found_stopped: bool,
}

impl Served {
    pub fn new(runner: Runner, study: &str, results_dir: &Path, spaces: &[PathBuf]) -> Self {
        Self {
            runner,
            study: study.to_string(),
            results_dir: std::path::absolute(results_dir).unwrap_or_else(|_| results_dir.to_path_buf()),
            spaces: spaces
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            touched: false,
            server_up: false,
            found_stopped: false,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.runner.server.spec().config.clone()
    }

    /// Takes the deployment for the study: finds out whether its server
    /// runs and locks the deployment with that fact; from here on every
    /// way out restores it.
    async fn take_server(&mut self, resumed: bool) -> anyhow::Result<()> {
        let running = match self.recorded_running(resumed) {
            Some(running) => running,
            None => server_runs_now(&self.runner.server).await,
        };
        self.found_stopped = !running;
        if !running {
            tracing::info!("TorchServe is not running: the study starts it, and stops it again when it ends");
        }
        let config = self.config_path();
        lock::acquire(
            &config,
            &lock::Holder {
                study: self.study.clone(),
                results_dir: self.results_dir.clone(),
                pid: std::process::id(),
                server_was_running: Some(running),
            },
        )?;
        lock::keep_original(&config, &self.runner.original.config)?;
        self.touched = true;
        Ok(())
    }

    /// What the lock of this study's cut-short run says about the server
    /// before that run (None: not a resume, no such lock, or an older lock).
    fn recorded_running(&self, resumed: bool) -> Option<bool> {
        if !resumed {
            return None;
        }
        let holder = lock::holder(&self.config_path())?;
        (holder.study == self.study)
            .then_some(holder.server_was_running)
            .flatten()
    }

    /// Puts `target` on disk and the server as it was found: running and
    /// ready on `target`, stopped, or (never up) its files alone.
    async fn leave_as_found(&mut self, target: &Deployment) -> anyhow::Result<()> {
        if !self.server_up {
            return self.runner.finish_down(target, false).await;
        }
        if self.found_stopped {
            tracing::info!("TorchServe was not running before the study: stopping it");
            self.runner.finish_down(target, true).await
        } else {
            self.runner.finish_on(target).await
        }
    }

    /// Puts `target` (None: the original) on disk and the server on it, as found.
    async fn restore_onto(&mut self, target: Option<Deployment>) -> anyhow::Result<()> {
        if !self.touched {
            return Ok(());
        }
        let config_path = self.config_path();
        let applying = target.is_some();
        let target = target.unwrap_or_else(|| self.runner.original.clone());
        self.leave_as_found(&target).await?;
        if applying {
            tracing::info!("left {} on the balanced recommendation", config_path.display());
            self.runner
                .server
                .spec()
                .write_environment(&target.environment)
                .context("writing the recommendation's environment into the target file")?;
        } else {
            // The files are the originals again: drop servetune's backups of them.
            original::forget_backup_if_original(&config_path, &target.config);
            if let (Some(path), Some(gateway)) = (self.runner.gateway_config_path(), &target.gateway) {
                original::forget_backup_if_original(&path, &gateway.config);
            }
        }
        Ok(())
    }

    /// The longest a restore may take: a stop, then a start whose launcher
    /// and wait for READY share one ready_timeout, a live change or a
    /// gateway's restart besides, and a minute of slack.
    fn restore_deadline(&self) -> Duration {
        let spec = self.runner.server.spec();
        spec.ready_timeout * 2 + spec.stop_timeout + Duration::from_secs(60)
    }

    /// The deployment that runs `subject`, or why the space cannot realise it.
    fn deployment_of(&self, space: &Space, subject: &Subject) -> anyhow::Result<Deployment> {
        self.runner
            .deployment_of(space, subject)
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", self.spaces))
    }
}

impl Testbed for Served {
    fn running(&self, space: &Space) -> Option<Vec<Option<usize>>> {
        self.runner.deployed().map(|_| self.runner.running_levels(space))
    }

    fn baseline_levels(&self, space: &Space) -> Vec<Option<usize>> {
        self.runner.original.running_levels(space, self.runner.model())
    }

    fn clock(&self) -> Clock {
        self.runner.clock()
    }

    fn values(&self, space: &Space, subject: &Subject) -> BTreeMap<String, String> {
        values_of(space, subject, &self.runner.original, self.runner.model())
    }

    /// Locks the deployment, then brings its server up, noting whether
    /// TorchServe ever was.
    async fn start(&mut self, resumed: bool) -> anyhow::Result<bool> {
        self.take_server(resumed).await?;
        let started = self.runner.start(resumed).await;
        self.server_up = started.is_ok() || self.runner.server.is_ready().await;
        started
    }

    async fn run(&mut self, space: &Space, subject: &Subject, window: Window) -> anyhow::Result<TrialResult> {
        let target = self.deployment_of(space, subject)?;
        Ok(self
            .runner
            .run(&target, window.warmup, window.duration, window.max_window)
            .await)
    }

    async fn soak(&mut self, space: &Space, point: &Point, length: Duration) -> anyhow::Result<Option<SoakReport>> {
        let target = self.deployment_of(space, &Subject::Point(point.clone()))?;
        self.runner.soak(&target, length).await.map(Some)
    }

    /// The restore under its deadline; on success the deployment is freed,
    /// else the lock stays and the error says how to recover.
    async fn restore(&mut self, space: &Space, onto: Option<&Point>) -> anyhow::Result<()> {
        done(STOP_TRIAL);
        let target = match onto {
            Some(point) => Some(self.deployment_of(space, &Subject::Point(point.clone()))?),
            None => None,
        };
        let config = self.config_path();
        let deadline = self.restore_deadline();
        match within(deadline, RESTORE, self.restore_onto(target)).await {
            Ok(()) => {
                done(RESTORE);
                lock::release(&config);
                done(RELEASE_LOCK);
                Ok(())
            }
            Err(error) => Err(match lock::holder(&config) {
                Some(holder) => error.context(format!(
                    "the study lock stays on the deployment; {}",
                    lock::refusal(&config, &holder)
                )),
                None => error,
            }),
        }
    }
}

/// Whether `server` runs now (a JVM in its work directory, or a server
/// answering ready on its ports).
async fn server_runs_now(server: &TorchServe) -> bool {
    // A service manager's TorchServe is its business: taken as running.
    !server.spec().control.starts_server() || server.running_jvm().is_some() || server.is_ready().await
}
