//! Applying an assignment to a deployment: edit the config file, then either
//! restart the server (cold) or change it live through the management API
//! (hot), and roll back when the server does not come up.
//!
//! The promise to the operator: on failure the config file is back to its
//! previous bytes and the server is running on it again (with its previous
//! environment); when even that fails, the error says so plainly. Called by
//! `converge`, the one move every caller makes; `state` says what a whole
//! deployment state is and which of these a move between two states needs.

pub mod converge;
pub mod state;
pub mod tier;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{
    self, Assignment, ConfigError, ConfigFile, ModelField, Models, Properties, SettingKey, MODELS_KEY,
};
use crate::server::api::Registration;
use crate::server::{Endpoints, ModelStatus, ServerError, TorchServe, TorchServeApi};

/// Why an apply failed, and what state it left behind.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}\n(nothing was changed)")]
    Refused(String),
    #[error(transparent)]
    Target(#[from] ServerError),
    #[error("{cause}\n{config} was put back as it was, and TorchServe is running on it again", config = .config.display())]
    RolledBack { cause: Box<ServerError>, config: PathBuf },
    #[error(
        "{cause}\nservetune put {config} back as it was, but bringing TorchServe back on it also failed: {rollback}",
        config = .config.display()
    )]
    RollbackFailed {
        cause: Box<ServerError>,
        config: PathBuf,
        rollback: String,
    },
}

/// A config file read and edited in memory, not yet written.
pub struct Edit {
    pub file: ConfigFile,
    pub before: Properties,
    pub after: Properties,
}

impl Edit {
    /// Reads `path` and applies `assignments` in memory; errors name the file.
    pub fn prepare(path: &Path, assignments: &[Assignment]) -> Result<Self, ConfigError> {
        let (file, before) = config::read_properties(path)?;
        let mut after = before.clone();
        config::apply_to(path, &mut after, assignments)?;
        Ok(Self { file, before, after })
    }

    /// Reads `path` and replaces its bytes with `bytes` in memory.
    pub fn replace(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let (file, before) = config::read_properties(path)?;
        let after = Properties::parse(bytes.to_vec()).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: e.line,
            reason: e.error.to_string(),
        })?;
        Ok(Self { file, before, after })
    }

    /// Lines like `job_queue_size: 100 -> 200` for every key whose value changed.
    pub fn changes(&self) -> Vec<String> {
        let before: BTreeMap<&str, &str> = self.before.effective().into_iter().collect();
        let after: BTreeMap<&str, &str> = self.after.effective().into_iter().collect();
        let mut lines = Vec::new();
        for (key, value) in &after {
            if *key == MODELS_KEY {
                lines.extend(model_changes(before.get(key).copied().unwrap_or("{}"), value));
                continue;
            }
            match before.get(key) {
                Some(old) if old == value => {}
                Some(old) => lines.push(format!("{key}: {} -> {}", shorten(old), shorten(value))),
                None => lines.push(format!("{key}: (unset) -> {}", shorten(value))),
            }
        }
        lines
    }

    /// Writes the edited file (atomically, backing up the original).
    pub fn write(&mut self) -> Result<(), ConfigError> {
        let bytes = self.after.as_bytes().to_vec();
        self.file.write(&bytes)
    }

    /// Puts the previous bytes back.
    fn revert(&mut self) -> Result<(), ConfigError> {
        let bytes = self.before.as_bytes().to_vec();
        self.file.write(&bytes)
    }
}

/// Field-level changes inside `models={…}`: `models.tiny.batchSize: 1 -> 8`.
fn model_changes(before: &str, after: &str) -> Vec<String> {
    let (Ok(before), Ok(after)) = (Models::parse(before), Models::parse(after)) else {
        return vec![format!("{MODELS_KEY}: {} -> {}", shorten(before), shorten(after))];
    };
    let mut lines = Vec::new();
    for model in after.model_names() {
        for field in ModelField::ALL {
            let old = before.field(model, field).ok().flatten();
            let new = after.field(model, field).ok().flatten();
            if old != new {
                let show = |v: Option<&serde_json::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
                lines.push(format!(
                    "{MODELS_KEY}.{model}.{}: {} -> {}",
                    field.name(),
                    show(old),
                    show(new)
                ));
            }
        }
    }
    lines
}

fn shorten(value: &str) -> String {
    if value.chars().count() > 60 {
        format!("{}…", value.chars().take(60).collect::<String>())
    } else {
        value.to_string()
    }
}

/// Edits the file and restarts the server on it; rolls back on failure.
pub async fn apply_with_restart(server: &TorchServe, edit: Edit) -> Result<(), ApplyError> {
    let environment = server.environment();
    apply_with_restart_in(server, edit, environment).await
}

/// Edits the file and restarts the server on it with `environment`; on
/// failure puts back the file and the previous environment and restarts.
pub async fn apply_with_restart_in(
    server: &TorchServe,
    mut edit: Edit,
    environment: BTreeMap<String, String>,
) -> Result<(), ApplyError> {
    check_new_ports_free(server, &edit)?;
    edit.write()?;
    let previous = server.set_environment(environment);
    let Err(cause) = server.restart().await else {
        return Ok(());
    };
    tracing::warn!("TorchServe did not come up on the new config; rolling back");
    server.set_environment(previous);
    Err(roll_back(&mut edit, cause, server.restart()).await)
}

/// Puts the previous bytes of the file back, then awaits `bring_back` to get
/// the server running on them; says which of the two failed, if any.
async fn roll_back(
    edit: &mut Edit,
    cause: ServerError,
    bring_back: impl std::future::Future<Output = Result<(), ServerError>>,
) -> ApplyError {
    let config = edit.file.path().to_path_buf();
    let cause = Box::new(cause);
    if let Err(e) = edit.revert() {
        return ApplyError::RollbackFailed {
            cause,
            config,
            rollback: e.to_string(),
        };
    }
    match bring_back.await {
        Ok(()) => ApplyError::RolledBack { cause, config },
        Err(e) => ApplyError::RollbackFailed {
            cause,
            config,
            rollback: e.to_string(),
        },
    }
}

/// Ports that the new config adds must be free before the server is touched.
fn check_new_ports_free(server: &TorchServe, edit: &Edit) -> Result<(), ApplyError> {
    let before = Endpoints::from_properties(&edit.before).bound_ports();
    let after = Endpoints::from_properties(&edit.after);
    if let Some((first, second, port)) = after.clash() {
        return Err(ApplyError::Refused(format!(
            "{}: {first} and {second} would both use port {port}",
            server.spec().config.display()
        )));
    }
    for (property, host, port) in after.bound_ports() {
        if before.iter().any(|(_, _, old)| *old == port) {
            continue;
        }
        if std::net::TcpListener::bind((host.as_str(), port)).is_err() {
            return Err(ApplyError::Refused(
                ServerError::PortInUse {
                    property,
                    port,
                    config: server.spec().config.clone(),
                }
                .to_string(),
            ));
        }
    }
    Ok(())
}

/// The live settings servetune can change without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LiveSettings {
    batch_size: u32,
    max_batch_delay: u32,
    min_workers: u32,
    max_workers: u32,
}

impl LiveSettings {
    fn of(status: &ModelStatus) -> Self {
        Self {
            batch_size: status.batch_size,
            max_batch_delay: status.max_batch_delay,
            min_workers: status.min_workers,
            max_workers: status.max_workers,
        }
    }

    fn set(&mut self, field: ModelField, value: u32) {
        match field {
            ModelField::BatchSize => self.batch_size = value,
            ModelField::MaxBatchDelay => self.max_batch_delay = value,
            ModelField::MinWorkers => self.min_workers = value,
            ModelField::MaxWorkers => self.max_workers = value,
            _ => unreachable!("only live fields are set"),
        }
    }

    fn needs_registration(&self, other: &Self) -> bool {
        self.batch_size != other.batch_size || self.max_batch_delay != other.max_batch_delay
    }
}

/// One model's change: what the server runs now and what it should run.
struct LiveChange {
    status: ModelStatus,
    from: LiveSettings,
    to: LiveSettings,
}

/// Checks that every assignment can be applied live and works out, per
/// model, the settings to move to.
async fn plan_live_changes(api: &TorchServeApi, assignments: &[Assignment]) -> Result<Vec<LiveChange>, ApplyError> {
    let mut per_model: BTreeMap<String, Vec<(ModelField, u32)>> = BTreeMap::new();
    for assignment in assignments {
        let SettingKey::ModelField { model, field } = &assignment.key else {
            return Err(ApplyError::Refused(format!(
                "--set {assignment}: a top-level property is read only at start; use --restart"
            )));
        };
        if !field.is_live() {
            return Err(ApplyError::Refused(format!(
                "--set {assignment}: only batchSize, maxBatchDelay, minWorkers and maxWorkers change live; use --restart"
            )));
        }
        let value = assignment
            .value
            .parse::<u32>()
            .map_err(|_| ApplyError::Refused(format!("--set {assignment}: not a whole number")))?;
        per_model.entry(model.clone()).or_default().push((*field, value));
    }
    let mut changes = Vec::new();
    for (model, fields) in per_model {
        let status = api.describe_model(&model).await?;
        let from = LiveSettings::of(&status);
        let mut to = from;
        for (field, value) in fields {
            to.set(field, value);
        }
        if to.min_workers > to.max_workers {
            return Err(ApplyError::Refused(format!(
                "model {model}: minWorkers {} would exceed maxWorkers {}",
                to.min_workers, to.max_workers
            )));
        }
        if to.needs_registration(&from) && !api.endpoints().model_api {
            return Err(ApplyError::Refused(format!(
                "model {model}: batchSize and maxBatchDelay change live only by re-registering the model, \
                 which needs enable_model_api=true; use --restart"
            )));
        }
        changes.push(LiveChange { status, from, to });
    }
    Ok(changes)
}

/// Registration of `status`'s model archive with `settings`.
fn registration(status: &ModelStatus, settings: LiveSettings) -> Registration {
    Registration {
        url: status.model_url.clone(),
        model_name: status.model_name.clone(),
        batch_size: settings.batch_size,
        max_batch_delay: settings.max_batch_delay,
        initial_workers: settings.min_workers,
        response_timeout: status.response_timeout,
    }
}

/// Moves one model from `from` to `to` through the management API.
async fn move_model(
    api: &TorchServeApi,
    status: &ModelStatus,
    from: LiveSettings,
    to: LiveSettings,
) -> Result<(), ServerError> {
    if to.needs_registration(&from) {
        api.unregister(&status.model_name, &status.model_version).await?;
        api.register(&registration(status, to)).await?;
        api.scale_workers(&status.model_name, to.min_workers, to.max_workers)
            .await
    } else if to != from {
        api.scale_workers(&status.model_name, to.min_workers, to.max_workers)
            .await
    } else {
        Ok(())
    }
}

/// Brings one model back to `settings`, whether or not it is still registered
/// (a failed re-registration leaves it unregistered).
async fn put_model_back(api: &TorchServeApi, status: &ModelStatus, settings: LiveSettings) -> Result<(), ServerError> {
    match api.describe_model(&status.model_name).await {
        Ok(now) => move_model(api, status, LiveSettings::of(&now), settings).await,
        Err(_) => {
            api.register(&registration(status, settings)).await?;
            api.scale_workers(&status.model_name, settings.min_workers, settings.max_workers)
                .await
        }
    }
}

/// Edits the file and changes the running server to match, without a
/// restart; rolls back (live, else by restart) on failure.
pub async fn apply_hot(server: &TorchServe, mut edit: Edit, assignments: &[Assignment]) -> Result<(), ApplyError> {
    let api = server.api()?;
    let changes = plan_live_changes(&api, assignments).await?;
    edit.write()?;
    let moved = async {
        for change in &changes {
            move_model(&api, &change.status, change.from, change.to).await?;
        }
        server.wait_ready().await
    };
    let Err(cause) = moved.await else {
        return Ok(());
    };
    tracing::warn!("live change failed ({cause}); rolling back");
    let bring_back = async {
        let mut live = Ok(());
        for change in &changes {
            live = put_model_back(&api, &change.status, change.from).await;
            if live.is_err() {
                break;
            }
        }
        let live = match live {
            Ok(()) => server.wait_ready().await,
            Err(e) => Err(e),
        };
        if let Err(live_error) = live {
            tracing::warn!("live rollback failed ({live_error}); restarting TorchServe on the previous config");
            return server.restart().await;
        }
        Ok(())
    };
    Err(roll_back(&mut edit, cause, bring_back).await)
}
