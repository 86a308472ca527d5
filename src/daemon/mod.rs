//! `servetune daemon`: the long-running service that keeps deployments
//! tuned. It reads one config (`config`), serves a loopback API (`api`),
//! speaks systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING), and runs one supervisor per deployment (`supervisor`): a
//! watcher that follows production from its access log and metrics
//! (`watcher`, `access_log`, `live`) and publishes triggers (`trigger`) and
//! live figures, and a cycle runner that takes the triggers — studies on a
//! shadow (`shadow`) or in place, measured on production's own replayed
//! traffic (`traffic`), and a canary with rollback (`canary`).
//! State shown by the API lives in `status`.
//!
//! Signals: SIGTERM/SIGINT stop the trial, restore, and exit 0; SIGHUP
//! reloads the config (parse, validate, swap; a broken file keeps the old
//! config and says why; a removed deployment stops its trial and restores,
//! and shutdown waits for it).

pub mod access_log;
pub mod api;
pub mod canary;
pub mod config;
pub mod live;
pub mod shadow;
pub mod status;
mod supervisor;
pub mod traffic;
mod trigger;
mod watcher;

pub use trigger::Trigger;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use config::{DaemonConfig, DeploymentConfig};
use status::{DeploymentStatus, Shared};

/// `--check`: reads and validates everything, says what it found.
pub fn check(config_path: &Path) -> anyhow::Result<String> {
    let config = DaemonConfig::load(config_path)?;
    let names: Vec<String> = config
        .deployments
        .iter()
        .map(|d| format!("{} ({:?}, study {})", d.name, d.mode, d.study_file.display()))
        .collect();
    Ok(format!(
        "{}: valid; API on {}; {} deployment(s): {}",
        config_path.display(),
        config.listen,
        names.len(),
        names.join(", ")
    ))
}

/// Sends to systemd's notify socket from a thread of its own: a datagram
/// send blocks while the receiver's queue is full, and the main loop must
/// never wait on it. Messages beyond a small backlog are dropped (the next
/// STATUS or WATCHDOG supersedes them).
static NOTIFY_PENDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Notifications waiting beyond which WATCHDOG and STATUS are skipped.
const ROUTINE_BACKLOG: usize = 4;

fn notify(states: &[NotifyState]) {
    static NOTIFIER: std::sync::OnceLock<std::sync::mpsc::SyncSender<Vec<String>>> = std::sync::OnceLock::new();
    let sender = NOTIFIER.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<String>>(64);
        std::thread::spawn(move || {
            for lines in receiver {
                let states: Vec<NotifyState> = lines.iter().map(|line| NotifyState::Custom(line)).collect();
                if let Err(e) = sd_notify::notify(&states) {
                    tracing::debug!("sd_notify: {e}");
                }
                NOTIFY_PENDING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        sender
    });
    // Routine pings give way when the reader lags, so that a state change
    // (READY, RELOADING, STOPPING) always finds room in the backlog.
    let routine = states
        .iter()
        .all(|state| matches!(state, NotifyState::Watchdog | NotifyState::Status(_)));
    if routine && NOTIFY_PENDING.load(std::sync::atomic::Ordering::SeqCst) >= ROUTINE_BACKLOG {
        return;
    }
    let lines = states.iter().map(ToString::to_string).collect();
    NOTIFY_PENDING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if sender.try_send(lines).is_err() {
        NOTIFY_PENDING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Gives queued notifications (STOPPING=1) up to a second to go out.
async fn flush_notifications() {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while NOTIFY_PENDING.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    config: watch::Sender<DeploymentConfig>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Deployments a reload removed, whose supervisors still stop their trial
/// and restore their server: shutdown waits for them too.
#[derive(Default)]
struct Draining(Vec<(String, tokio::task::JoinHandle<()>)>);

impl Draining {
    fn add(&mut self, name: String, gone: Running) {
        gone.stop.cancel();
        self.0.push((name, gone.task));
    }

    /// Forgets the supervisors that have ended.
    fn reap(&mut self) {
        self.0.retain(|(_, task)| !task.is_finished());
    }

    async fn wait(self) {
        for (name, task) in self.0 {
            if let Err(e) = task.await {
                tracing::error!(deployment = %name, "the removed deployment's supervisor ended abnormally: {e}");
            }
        }
    }
}

/// Runs until SIGTERM/SIGINT; returns Ok after every deployment is restored.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = DaemonConfig::load(config_path)?;
    let token = status::load_or_create_token(&config.token_file)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "{}: api.listen: cannot listen on {}",
            config_path.display(),
            config.listen
        )
    })?;
    let shared = Arc::new(Shared::new(config_path, token));
    let api_stop = CancellationToken::new();
    let api = tokio::spawn(api::serve(listener, shared.clone(), api_stop.clone()));
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    for deployment in &config.deployments {
        start(&mut running, deployment, &config, &shared);
    }
    let mut config = config;
    shared.set_state("running");
    tracing::info!("listening on http://{}; {} deployment(s)", config.listen, running.len());
    notify(&[NotifyState::Ready, NotifyState::Status(&shared.summary_line())]);
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    let mut tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5)));
    let mut stop = crate::signals::StopSignals::try_install().context("installing the SIGTERM and SIGINT handlers")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut last_status = String::new();
    let mut draining = Draining::default();
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = hangup.recv() => reload(config_path, &mut config, &mut running, &mut draining, &shared),
            _ = tick.tick() => {
                draining.reap();
                if watchdog.is_some() {
                    notify(&[NotifyState::Watchdog]);
                }
                let line = shared.summary_line();
                if line != last_status {
                    notify(&[NotifyState::Status(&line)]);
                    last_status = line;
                }
            }
        }
    }
    tracing::info!("stopping: a running trial stops and its server is restored");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    shared.set_state("stopping");
    for deployment in running.values() {
        deployment.stop.cancel();
    }
    for (name, deployment) in running {
        if let Err(e) = deployment.task.await {
            tracing::error!(deployment = %name, "the supervisor ended abnormally: {e}");
        }
    }
    draining.wait().await;
    api_stop.cancel();
    let _ = api.await;
    flush_notifications().await;
    Ok(())
}

fn start(
    running: &mut BTreeMap<String, Running>,
    deployment: &DeploymentConfig,
    config: &DaemonConfig,
    shared: &Arc<Shared>,
) {
    shared
        .status
        .lock()
        .expect("no panics under the lock")
        .deployments
        .push(DeploymentStatus::new(&deployment.name, deployment.mode));
    let (sender, receiver) = watch::channel(deployment.clone());
    let stop = CancellationToken::new();
    let task = supervisor::spawn(receiver, &config.results_dir, shared.clone(), stop.clone());
    running.insert(
        deployment.name.clone(),
        Running {
            config: sender,
            stop,
            task,
        },
    );
}

/// SIGHUP: parse and validate the file again; swap on success (deployments
/// added start, removed ones stop their trial, restore and drain, the others
/// take the new settings at their next cycle); on error keep the old config
/// and say why.
fn reload(
    path: &Path,
    current: &mut DaemonConfig,
    running: &mut BTreeMap<String, Running>,
    draining: &mut Draining,
    shared: &Arc<Shared>,
) {
    let monotonic = NotifyState::monotonic_usec_now().ok();
    let mut states = vec![NotifyState::Reloading];
    states.extend(monotonic);
    notify(&states);
    shared.set_state("reloading");
    match DaemonConfig::load(path) {
        Ok(new) => {
            if new.listen != current.listen || new.token_file != current.token_file {
                tracing::warn!("api.listen and api.token_file take effect at the next start");
            }
            let names: Vec<String> = running.keys().cloned().collect();
            for name in names {
                if new.deployment(&name).is_none() {
                    tracing::info!(deployment = %name, "removed from the config: stopping it");
                    if let Some(gone) = running.remove(&name) {
                        draining.add(name.clone(), gone);
                    }
                    shared
                        .status
                        .lock()
                        .expect("no panics under the lock")
                        .deployments
                        .retain(|d| d.name != name);
                }
            }
            for deployment in &new.deployments {
                match running.get(&deployment.name) {
                    Some(existing) => {
                        existing.config.send_replace(deployment.clone());
                    }
                    None => start(running, deployment, &new, shared),
                }
            }
            tracing::info!("reloaded {}", path.display());
            shared.status.lock().expect("no panics under the lock").reload_error = None;
            *current = new;
        }
        Err(error) => {
            tracing::error!("reload refused, the old config stays: {error:#}");
            shared.status.lock().expect("no panics under the lock").reload_error = Some(format!("{error:#}"));
        }
    }
    shared.set_state("running");
    notify(&[NotifyState::Ready, NotifyState::Status(&shared.summary_line())]);
}
