//! TorchServe's lifecycle: start, stop, restart and readiness.
//!
//! Managed mode starts `torchserve --start --ts-config F --ncs --model-store S`
//! in the target's work directory, which is TorchServe's cwd (its
//! `key_file.json` lands there), its `TMPDIR` (the pid file) and its log
//! location. The launcher forks the JVM and exits; the JVM and its workers
//! live on in their own process group, so a servetune command can end while
//! the server keeps running, and the next command finds it by its pid file.
//!
//! Readiness is `/ping` healthy **and** every registered model having all
//! its workers `READY` (`/ping` is healthy while workers still start).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::api::TorchServeApi;
use super::endpoints::Endpoints;
use super::error::ServerError;
use super::process;
use super::spec::{Control, TargetSpec};
use crate::config;

/// How long the launcher script may take to fork the JVM.
const LAUNCHER_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 25;

/// What a readiness probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Ready,
    NotYet(String),
}

/// One TorchServe deployment, as its target file describes it.
#[derive(Debug)]
pub struct TorchServe {
    spec: TargetSpec,
    /// The environment the next (managed) start uses; the target file's
    /// until a study sets another.
    environment: Mutex<BTreeMap<String, String>>,
}

impl Clone for TorchServe {
    fn clone(&self) -> Self {
        Self {
            spec: self.spec.clone(),
            environment: Mutex::new(self.environment()),
        }
    }
}

impl TorchServe {
    pub fn new(spec: TargetSpec) -> Self {
        let environment = Mutex::new(spec.environment.clone());
        Self { spec, environment }
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    /// The variables the next start sets for TorchServe and its workers.
    pub fn environment(&self) -> BTreeMap<String, String> {
        self.environment
            .lock()
            .expect("no panics while the lock is held")
            .clone()
    }

    /// Sets the environment of the next start; returns the previous one.
    pub fn set_environment(&self, environment: BTreeMap<String, String>) -> BTreeMap<String, String> {
        std::mem::replace(
            &mut *self.environment.lock().expect("no panics while the lock is held"),
            environment,
        )
    }

    /// The addresses and switches of the config file as it is now.
    pub fn endpoints(&self) -> Result<Endpoints, ServerError> {
        let (_, props) = config::read_properties(&self.spec.config)?;
        Ok(Endpoints::from_properties(&props))
    }

    /// An API client for the config file as it is now.
    pub fn api(&self) -> Result<TorchServeApi, ServerError> {
        TorchServeApi::new(self.endpoints()?, self.spec.key_file.clone(), self.spec.tls.clone())
    }

    fn work_dir(&self) -> Option<&Path> {
        match &self.spec.control {
            Control::Managed { work_dir, .. } => Some(work_dir),
            Control::RestartCommand { .. } => None,
        }
    }

    /// `$TMPDIR` of a managed server (holds `.model_server.pid`).
    pub fn tmp_dir(&self) -> Option<PathBuf> {
        self.work_dir().map(|dir| dir.join("tmp"))
    }

    /// Where a managed server's console output goes.
    pub fn console_log(&self) -> Option<PathBuf> {
        self.work_dir().map(|dir| dir.join("logs").join("console.log"))
    }

    /// The JVM of a managed server, when it is running: the one its pid file
    /// names, else one still running in its work directory (a stop in
    /// progress, or a servetune killed mid-restart).
    pub fn running_jvm(&self) -> Option<i32> {
        process::running_jvm(&self.tmp_dir()?).or_else(|| process::jvm_in(self.work_dir()?))
    }

    /// Fails with a clear error when a port the config names is taken, or
    /// named twice.
    pub fn check_ports_free(&self, endpoints: &Endpoints) -> Result<(), ServerError> {
        if let Some((first, second, port)) = endpoints.clash() {
            return Err(ServerError::Unsupported(format!(
                "{}: {first} and {second} both use port {port}",
                self.spec.config.display()
            )));
        }
        for (property, host, port) in endpoints.bound_ports() {
            if std::net::TcpListener::bind((host.as_str(), port)).is_err() {
                return Err(ServerError::PortInUse {
                    property,
                    port,
                    config: self.spec.config.clone(),
                });
            }
        }
        Ok(())
    }

    /// Starts a managed TorchServe and waits until it is ready. On failure
    /// nothing of it is left running, and the error carries its log's tail.
    pub async fn start(&self) -> Result<(), ServerError> {
        let Control::Managed {
            torchserve,
            model_store,
            work_dir,
            extra_args,
        } = &self.spec.control
        else {
            return Err(ServerError::Unsupported(
                "this target is restarted by its restart_command; servetune does not start it".into(),
            ));
        };
        if let Some(pid) = self.running_jvm() {
            return Err(ServerError::Unsupported(format!(
                "TorchServe is already running (pid {pid}); stop it first"
            )));
        }
        self.check_ports_free(&self.endpoints()?)?;
        let tmp_dir = work_dir.join("tmp");
        let log_dir = work_dir.join("logs");
        for dir in [&tmp_dir, &log_dir] {
            std::fs::create_dir_all(dir).map_err(|e| ServerError::Spawn {
                program: torchserve.display().to_string(),
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let console_path = log_dir.join("console.log");
        let console = std::fs::File::create(&console_path).map_err(|e| ServerError::Spawn {
            program: torchserve.display().to_string(),
            reason: format!("cannot create {}: {e}", console_path.display()),
        })?;
        let console_err = console.try_clone().map_err(|e| ServerError::Spawn {
            program: torchserve.display().to_string(),
            reason: e.to_string(),
        })?;
        tracing::info!(config = %self.spec.config.display(), "starting TorchServe");
        let mut launcher = Command::new(torchserve)
            .arg("--start")
            .arg("--ts-config")
            .arg(&self.spec.config)
            .arg("--ncs")
            .arg("--model-store")
            .arg(model_store)
            .args(extra_args)
            .current_dir(work_dir)
            .envs(self.environment())
            .env("TMPDIR", &tmp_dir)
            .env("LOG_LOCATION", &log_dir)
            .env("METRICS_LOCATION", &log_dir)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| ServerError::Spawn {
                program: torchserve.display().to_string(),
                reason: e.to_string(),
            })?;
        // The launcher and the wait for READY share one ready_timeout.
        let deadline = Instant::now() + self.spec.ready_timeout;
        let launcher_timeout = LAUNCHER_TIMEOUT.min(self.spec.ready_timeout);
        let status = tokio::time::timeout(launcher_timeout, launcher.wait()).await;
        let failed = |reason: String| ServerError::StartFailed {
            what: "starting TorchServe".into(),
            reason,
            log: console_path.clone(),
            tail: process::tail(&console_path, LOG_TAIL_LINES),
        };
        match status {
            Err(_) => {
                // The launcher leads its own process group: end all of it.
                if let Some(pid) = launcher.id() {
                    process::signal(-(pid as i32), libc::SIGKILL);
                }
                let _ = launcher.start_kill();
                let _ = launcher.wait().await;
                return Err(failed(format!(
                    "the torchserve launcher did not return within {launcher_timeout:?}"
                )));
            }
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Ok(Ok(status)) if !status.success() => {
                return Err(failed(format!("the torchserve launcher exited with {status}")))
            }
            Ok(Ok(_)) => {}
        }
        match self.wait_ready_until(deadline).await {
            Ok(()) => Ok(()),
            Err(error) => {
                if let Err(stop_error) = self.stop().await {
                    tracing::warn!("stopping the TorchServe that failed to start: {stop_error}");
                }
                Err(error)
            }
        }
    }

    /// Stops a managed TorchServe: `torchserve --stop`, then waits (bounded)
    /// until the JVM and every worker are gone, then kills what is left.
    pub async fn stop(&self) -> Result<(), ServerError> {
        let Control::Managed {
            torchserve, work_dir, ..
        } = &self.spec.control
        else {
            return Err(ServerError::Unsupported(
                "this target is restarted by its restart_command; servetune does not stop it".into(),
            ));
        };
        let Some(jvm) = self.running_jvm() else {
            return Ok(());
        };
        let tree = process::process_tree(jvm);
        tracing::info!(pid = jvm, processes = tree.len(), "stopping TorchServe");
        let tmp_dir = work_dir.join("tmp");
        let stop = Command::new(torchserve)
            .arg("--stop")
            .current_dir(work_dir)
            .env("TMPDIR", &tmp_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // `--stop` only knows the JVM its pid file names; SIGTERM, what it
        // sends, reaches one found by its work directory too.
        let _ = tokio::time::timeout(Duration::from_secs(30), stop).await;
        process::signal(jvm, libc::SIGTERM);
        let left = process::wait_all_exit(&tree, self.spec.stop_timeout).await;
        if !left.is_empty() {
            tracing::warn!(
                ?left,
                "TorchServe did not exit in {:?}; killing it",
                self.spec.stop_timeout
            );
            process::kill_tree(jvm);
            for pid in &left {
                process::signal(*pid, libc::SIGKILL);
            }
            let still = process::wait_all_exit(&left, Duration::from_secs(10)).await;
            if !still.is_empty() {
                return Err(ServerError::Unsupported(format!(
                    "TorchServe processes {still:?} survived SIGKILL"
                )));
            }
        }
        let _ = std::fs::remove_file(tmp_dir.join(".model_server.pid"));
        let _ = std::fs::remove_file(&self.spec.key_file);
        Ok(())
    }

    /// Restarts the server and waits until it is ready: stop and start in
    /// managed mode, the configured argv in production mode.
    pub async fn restart(&self) -> Result<(), ServerError> {
        match &self.spec.control {
            Control::Managed { .. } => {
                self.stop().await?;
                self.start().await
            }
            Control::RestartCommand { argv } => {
                tracing::info!(?argv, "restarting TorchServe");
                let status = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).output();
                let output = tokio::time::timeout(self.spec.ready_timeout, status)
                    .await
                    .map_err(|_| ServerError::Spawn {
                        program: argv.join(" "),
                        reason: format!("did not finish within {:?}", self.spec.ready_timeout),
                    })?
                    .map_err(|e| ServerError::Spawn {
                        program: argv.join(" "),
                        reason: e.to_string(),
                    })?;
                if !output.status.success() {
                    return Err(ServerError::Spawn {
                        program: argv.join(" "),
                        reason: format!(
                            "exited with {}: {}",
                            output.status,
                            String::from_utf8_lossy(&output.stderr).trim()
                        ),
                    });
                }
                self.wait_ready().await
            }
        }
    }

    /// Starts the server unless it is ready already; whether it started it
    /// (a command that borrows a server stops only what it started: `stop_if_started`).
    pub async fn start_unless_ready(&self) -> Result<bool, ServerError> {
        if self.is_ready().await {
            return Ok(false);
        }
        self.start().await?;
        Ok(true)
    }

    /// Stops the server when `started` (by `start_unless_ready`); a failure is a warning.
    pub async fn stop_if_started(&self, started: bool) {
        if started {
            if let Err(e) = self.stop().await {
                tracing::warn!("stopping the TorchServe this command started: {e}");
            }
        }
    }

    /// One readiness probe: healthy and every worker READY, right now.
    pub async fn is_ready(&self) -> bool {
        match self.api() {
            Ok(api) => matches!(probe(&api).await, Ok(Probe::Ready)),
            Err(_) => false,
        }
    }

    /// Waits until `/ping` is healthy and every model's workers are READY.
    pub async fn wait_ready(&self) -> Result<(), ServerError> {
        self.wait_ready_until(Instant::now() + self.spec.ready_timeout).await
    }

    /// `wait_ready` until `deadline` (a start's launcher took part of the time).
    async fn wait_ready_until(&self, deadline: Instant) -> Result<(), ServerError> {
        let timeout = self.spec.ready_timeout;
        let api = self.api()?;
        let log = self.console_log().unwrap_or_default();
        loop {
            if self.work_dir().is_some() && self.running_jvm().is_none() {
                return Err(ServerError::StartFailed {
                    what: "starting TorchServe".into(),
                    reason: "the JVM exited".into(),
                    tail: process::tail(&log, LOG_TAIL_LINES),
                    log,
                });
            }
            let state = match probe(&api).await {
                Ok(Probe::Ready) => return Ok(()),
                Ok(Probe::NotYet(seen)) => seen,
                // Waiting does not make a refused certificate acceptable.
                Err(error @ ServerError::Certificate { .. }) => return Err(error),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    timeout,
                    state,
                    tail: process::tail(&log, LOG_TAIL_LINES),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn probe(api: &TorchServeApi) -> Result<Probe, ServerError> {
    if !api.ping().await? {
        return Ok(Probe::NotYet("/ping is not healthy yet".into()));
    }
    for model in api.list_models().await? {
        let status = api.describe_model(&model).await?;
        if !status.is_ready() {
            let ready = status.workers.iter().filter(|w| w.status == "READY").count();
            return Ok(Probe::NotYet(format!(
                "model {model}: {ready} of {} workers READY (min {})",
                status.workers.len(),
                status.min_workers
            )));
        }
    }
    Ok(Probe::Ready)
}
