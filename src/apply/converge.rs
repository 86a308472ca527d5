//! `converge`: the one way a server is moved from the deployment state it
//! runs to another. It owns the whole move: the parsed transition (nothing,
//! a live change, or a restart — or what the caller insists on), the log4j2
//! file a log level names, the environment TorchServe starts with, and, in a
//! stack, the gateway in front. The study's trials and its final restore,
//! the daemon's canary and `servetune apply` all call it; none of them edits
//! the config file or restarts the server itself.
//!
//! What runs is tracked by the caller as `Option<Deployment>` (None:
//! unknown, so the move restarts); `converge` keeps it true: the new state
//! after a move, the old one after a rollback, None when even that failed.
//! It does not decide whether a move is wise (the canary's probation, the
//! operator's flags): it performs it and says how and how long it took.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::state::{Deployment, GatewayState, Transition};
use super::{apply_hot, apply_with_restart_in, ApplyError, Edit};
use crate::config::{Assignment, ConfigFile};
use crate::server::{logging, TargetSpec, TorchServe};
use crate::trial::Switch;

/// How a move may reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way<'a> {
    /// Whatever the parsed difference needs: nothing, a live change or a
    /// restart (a restart also when what runs is unknown or not ready).
    Least,
    /// A restart whatever differs (the operator asked for one).
    Restart,
    /// A live change of exactly these model fields; anything that needs a
    /// restart is refused before the server is touched.
    Live(&'a [Assignment]),
    /// The server is left down on the state: its files (config, log4j2)
    /// say it, the environment is the next start's; TorchServe is stopped
    /// when `stop` (it was found stopped), not touched otherwise (it never
    /// came up: starting it again would only fail again), and a managed
    /// gateway ends as at the study's end.
    Down { stop: bool },
}

/// What the move is for: it decides what a failure leaves, what becomes of
/// the gateway, and whether the environment outlives the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A study's trial: a failure puts back what ran; the gateway restarts
    /// onto the state when it differs or TorchServe restarted.
    Trial,
    /// The study's end: the server must end on the state, so a failed live
    /// change becomes a restart on it; a managed gateway stops.
    Final,
    /// A deployment kept beyond servetune (production, the operator's
    /// apply): a failure puts back what ran, a new environment is written to
    /// the target file too, and a server whose service sets its environment
    /// refuses one.
    Deploy,
}

/// How to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan<'a> {
    pub way: Way<'a>,
    pub purpose: Purpose,
}

impl Plan<'static> {
    /// A trial's move: the least the difference needs.
    pub const TRIAL: Self = Self {
        way: Way::Least,
        purpose: Purpose::Trial,
    };
    /// The study's final state.
    pub const FINAL: Self = Self {
        way: Way::Least,
        purpose: Purpose::Final,
    };
}

impl<'a> Plan<'a> {
    /// A deployment kept beyond servetune, moved `way`.
    pub fn deploy(way: Way<'a>) -> Self {
        Self {
            way,
            purpose: Purpose::Deploy,
        }
    }
}

/// How the server was moved, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moved {
    pub switch: Switch,
    pub took: Duration,
}

/// The gateway in front of TorchServe in a stack, as a move sees it.
pub trait FrontGateway {
    /// The state it runs, if known.
    fn state(&self) -> Option<&GatewayState>;

    /// Whether it holds TorchServe's inference key (new at each TorchServe
    /// start), so that a TorchServe restart restarts it too.
    fn holds_torchserve_key(&self) -> bool;

    /// Restarts it on `state`; on failure it runs what its `state` says.
    fn restart_on(
        &mut self,
        state: &GatewayState,
        server: &TorchServe,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The study's end: its file says `state`, and it runs on it or stops.
    fn finish_on(
        &mut self,
        state: &GatewayState,
        server: &TorchServe,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// TorchServe alone: no gateway in front.
struct NoGateway;

impl FrontGateway for NoGateway {
    fn state(&self) -> Option<&GatewayState> {
        None
    }

    fn holds_torchserve_key(&self) -> bool {
        false
    }

    async fn restart_on(&mut self, _: &GatewayState, _: &TorchServe) -> anyhow::Result<()> {
        Ok(())
    }

    async fn finish_on(&mut self, _: &GatewayState, _: &TorchServe) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Moves `server` (and `gateway`, in a stack) from what runs (`running`) to
/// `to` as `plan` says; `running` is what runs afterwards, whatever happened.
pub async fn converge<G: FrontGateway>(
    server: &TorchServe,
    running: &mut Option<Deployment>,
    to: &Deployment,
    plan: Plan<'_>,
    gateway: Option<&mut G>,
) -> anyhow::Result<Moved> {
    let started = Instant::now();
    if let Way::Down { stop } = plan.way {
        leave_down(server, to, stop, gateway).await?;
        *running = None;
        return Ok(Moved {
            switch: if stop { Switch::Restart } else { Switch::None },
            took: started.elapsed(),
        });
    }
    if plan.way == Way::Least && running.is_some() && !server.is_ready().await {
        tracing::warn!("TorchServe is not ready before the move (it may have died); restarting it");
        *running = None;
    }
    check_environment(server, running.as_ref(), to, plan.purpose)?;
    write_log4j(server, to)?;
    let transition = transition(running.as_ref(), to, plan.way);
    let torchserve = match plan.purpose {
        Purpose::Final => finish_torchserve(server, to, &transition).await,
        Purpose::Trial | Purpose::Deploy => move_torchserve(server, to, &transition).await,
    };
    if let Err(error) = torchserve {
        // A rollback put back what ran; when even that failed the state is
        // unknown and the next move restarts.
        if plan.purpose == Purpose::Final || !server.is_ready().await {
            *running = None;
        }
        return Err(error);
    }
    if plan.purpose == Purpose::Deploy {
        keep_environment(server, to)?;
    }
    *running = Some(to.clone());
    let restarted = transition == Transition::Restart;
    let gateway_restarted = match (gateway, &to.gateway) {
        (Some(gateway), Some(state)) => move_gateway(gateway, state, server, restarted, plan.purpose, running).await?,
        _ => false,
    };
    let switch = match transition {
        Transition::Nothing if gateway_restarted => Switch::Gateway,
        transition => transition.switch(),
    };
    Ok(Moved {
        switch,
        took: started.elapsed(),
    })
}

/// `converge` for TorchServe alone, no gateway in front.
pub async fn converge_torchserve(
    server: &TorchServe,
    running: &mut Option<Deployment>,
    to: &Deployment,
    plan: Plan<'_>,
) -> anyhow::Result<Moved> {
    converge(server, running, to, plan, None::<&mut NoGateway>).await
}

/// `converge` for an operator's edit of TorchServe's config (`servetune
/// apply`): from the file as `edit` read it, with the environment TorchServe
/// starts with now, to the edited file with `environment` (None: the same).
pub async fn deploy_edit(
    server: &TorchServe,
    edit: &Edit,
    environment: Option<BTreeMap<String, String>>,
    way: Way<'_>,
) -> anyhow::Result<Moved> {
    let mut running = Some(Deployment {
        config: edit.before.as_bytes().to_vec(),
        environment: server.environment(),
        gateway: None,
    });
    let to = Deployment {
        config: edit.after.as_bytes().to_vec(),
        environment: environment.unwrap_or_else(|| server.environment()),
        gateway: None,
    };
    converge_torchserve(server, &mut running, &to, Plan::deploy(way)).await
}

/// The transition `way` takes from `running` (unknown: a restart) to `to`.
fn transition(running: Option<&Deployment>, to: &Deployment, way: Way<'_>) -> Transition {
    let least = running.map_or(Transition::Restart, |from| from.transition_to(to));
    match way {
        Way::Least => least,
        Way::Restart | Way::Down { .. } => Transition::Restart,
        Way::Live(assignments) => Transition::Live {
            assignments: assignments.to_vec(),
            switch: match least {
                Transition::Live { switch, .. } => switch,
                _ => Switch::Register,
            },
        },
    }
}

/// A deployment's environment is TorchServe's only when servetune starts
/// TorchServe itself; a service sets its own.
fn check_environment(
    server: &TorchServe,
    running: Option<&Deployment>,
    to: &Deployment,
    purpose: Purpose,
) -> Result<(), ApplyError> {
    let changes = running.is_some_and(|from| from.environment != to.environment);
    if purpose == Purpose::Deploy && changes && !server.spec().control.sets_environment() {
        return Err(ApplyError::Refused(format!(
            "TorchServe would need the environment {:?}, and {} restarts it through its restart_command: set it in \
             the service",
            to.environment,
            server.spec().source.display()
        )));
    }
    Ok(())
}

/// Writes the log4j2 file `to`'s `vmargs` names, beside the config.
fn write_log4j(server: &TorchServe, to: &Deployment) -> anyhow::Result<()> {
    let properties = to.properties().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(level) = logging::level_of(properties.get("vmargs")) {
        let config_dir = server.spec().config.parent().unwrap_or(Path::new("."));
        logging::ensure_written(config_dir, &level)
            .with_context(|| format!("writing the log4j2 config for level {level}"))?;
    }
    Ok(())
}

/// Moves TorchServe along `transition`; a failure puts back what ran.
async fn move_torchserve(server: &TorchServe, to: &Deployment, transition: &Transition) -> anyhow::Result<()> {
    let edit = Edit::replace(&server.spec().config, &to.config)?;
    match transition {
        Transition::Nothing => write_if_changed(edit),
        Transition::Live { assignments, .. } => Ok(apply_hot(server, edit, assignments).await?),
        Transition::Restart => Ok(apply_with_restart_in(server, edit, to.environment.clone()).await?),
    }
}

/// Puts TorchServe on `to` for good: a live change when that is all it
/// needs, a restart on `to` otherwise or when the live change failed.
async fn finish_torchserve(server: &TorchServe, to: &Deployment, transition: &Transition) -> anyhow::Result<()> {
    let edit = Edit::replace(&server.spec().config, &to.config)?;
    let done = match transition {
        Transition::Nothing => write_if_changed(edit).map(|()| true)?,
        Transition::Live { assignments, .. } => apply_hot(server, edit, assignments).await.is_ok(),
        Transition::Restart => false,
    };
    if done {
        return Ok(());
    }
    // (A failed live change rolled the file back: write it again.)
    let mut file = ConfigFile::read(&server.spec().config)?;
    if file.bytes() != to.config.as_slice() {
        file.write(&to.config)?;
    }
    server.set_environment(to.environment.clone());
    server
        .restart()
        .await
        .context("restarting TorchServe on the final config")
}

/// `Way::Down`: the gateway finished and TorchServe stopped (when
/// `stop`), then `to`'s files on disk and its environment for the next start.
async fn leave_down<G: FrontGateway>(
    server: &TorchServe,
    to: &Deployment,
    stop: bool,
    gateway: Option<&mut G>,
) -> anyhow::Result<()> {
    if stop {
        if let (Some(gateway), Some(state)) = (gateway, &to.gateway) {
            gateway
                .finish_on(state, server)
                .await
                .context("putting the gateway on the final config")?;
        }
        server
            .stop()
            .await
            .context("stopping TorchServe (it was not running before the study)")?;
    }
    write_log4j(server, to)?;
    let mut file = ConfigFile::read(&server.spec().config)?;
    if file.bytes() != to.config.as_slice() {
        file.write(&to.config)?;
    }
    server.set_environment(to.environment.clone());
    Ok(())
}

fn write_if_changed(mut edit: Edit) -> anyhow::Result<()> {
    if edit.before.as_bytes() != edit.after.as_bytes() {
        edit.write()?;
    }
    Ok(())
}

/// A deployment's new environment goes to the target file: the next start
/// (by servetune or not) keeps it.
/// The file is read again: another move may have written it since `server`
/// was made.
fn keep_environment(server: &TorchServe, to: &Deployment) -> anyhow::Result<()> {
    let source = &server.spec().source;
    let on_file = TargetSpec::load(source).unwrap_or_else(|_| server.spec().clone());
    on_file
        .write_environment(&to.environment)
        .with_context(|| format!("writing the environment to {}", source.display()))
}

/// Moves the gateway after TorchServe; returns whether it restarted. On
/// failure `running` records the gateway state that runs.
async fn move_gateway<G: FrontGateway>(
    gateway: &mut G,
    state: &GatewayState,
    server: &TorchServe,
    torchserve_restarted: bool,
    purpose: Purpose,
    running: &mut Option<Deployment>,
) -> anyhow::Result<bool> {
    if purpose == Purpose::Final {
        gateway
            .finish_on(state, server)
            .await
            .context("putting the gateway on the final config")?;
        return Ok(false);
    }
    let key_changed = torchserve_restarted && gateway.holds_torchserve_key();
    if !key_changed && gateway.state() == Some(state) {
        return Ok(false);
    }
    let moved = gateway.restart_on(state, server).await;
    if moved.is_err() {
        if let Some(deployed) = running.as_mut() {
            deployed.gateway = gateway.state().cloned();
        }
    }
    moved.map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "inference_address=http://127.0.0.1:8080\n\
                          models={\"tiny\": {\"1.0\": {\"marName\": \"tiny.mar\", \"batchSize\": 1, \"minWorkers\": 1}}}\n";

    fn state(config: &str, environment: &[(&str, &str)]) -> Deployment {
        Deployment {
            config: config.as_bytes().to_vec(),
            environment: environment
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            gateway: None,
        }
    }

    /// A server described by a target file in `dir` (nothing is started);
    /// a managed one starts with A=1.
    fn server(dir: &Path, control: &str) -> TorchServe {
        std::fs::write(dir.join("config.properties"), CONFIG).unwrap();
        let environment = if control.starts_with("restart_command") {
            ""
        } else {
            "[environment]\nA = \"1\"\n"
        };
        std::fs::write(
            dir.join("target.toml"),
            format!("config = \"config.properties\"\n{control}\n{environment}"),
        )
        .unwrap();
        TorchServe::new(TargetSpec::load(&dir.join("target.toml")).unwrap())
    }

    #[test]
    fn the_least_move_follows_the_parsed_difference() {
        let from = state(CONFIG, &[]);
        let relaid = state(&CONFIG.replace("=", " = "), &[]);
        assert_eq!(transition(Some(&from), &relaid, Way::Least), Transition::Nothing);
        let batch = state(&CONFIG.replace("\"batchSize\": 1", "\"batchSize\": 8"), &[]);
        assert!(matches!(
            transition(Some(&from), &batch, Way::Least),
            Transition::Live { ref assignments, switch: Switch::Register } if assignments.len() == 1
        ));
        let cold = state(&format!("{CONFIG}job_queue_size=200\n"), &[]);
        assert_eq!(transition(Some(&from), &cold, Way::Least), Transition::Restart);
        let environment = state(CONFIG, &[("OMP_NUM_THREADS", "1")]);
        assert_eq!(transition(Some(&from), &environment, Way::Least), Transition::Restart);
        assert_eq!(
            transition(None, &from, Way::Least),
            Transition::Restart,
            "an unknown state restarts"
        );
    }

    #[test]
    fn an_operators_way_is_taken_as_asked() {
        let from = state(CONFIG, &[]);
        assert_eq!(transition(Some(&from), &from, Way::Restart), Transition::Restart);
        let asked: Vec<Assignment> = vec!["models.tiny.minWorkers=2".parse().unwrap()];
        let to = state(&CONFIG.replace("\"minWorkers\": 1", "\"minWorkers\": 2"), &[]);
        assert_eq!(
            transition(Some(&from), &to, Way::Live(&asked)),
            Transition::Live {
                assignments: asked.clone(),
                switch: Switch::Scale
            }
        );
    }

    #[test]
    fn the_log4j_file_a_level_names_is_written_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path(), "model_store = \"store\"");
        let vmargs = logging::vmargs_with(None, "warn", dir.path()).unwrap();
        write_log4j(&server, &state(&format!("{CONFIG}vmargs={vmargs}\n"), &[])).unwrap();
        let written = std::fs::read_to_string(logging::config_file(dir.path(), "warn")).unwrap();
        assert_eq!(written, logging::render("warn"));
        write_log4j(&server, &state(CONFIG, &[])).unwrap();
        assert!(
            !logging::config_file(dir.path(), logging::DEFAULT_LEVEL).exists(),
            "TorchServe's default needs no file"
        );
    }

    #[test]
    fn a_service_that_sets_its_own_environment_refuses_a_deployed_one() {
        let dir = tempfile::tempdir().unwrap();
        let service = server(dir.path(), "restart_command = [\"true\"]");
        let (from, to) = (state(CONFIG, &[]), state(CONFIG, &[("OMP_NUM_THREADS", "1")]));
        let refused = check_environment(&service, Some(&from), &to, Purpose::Deploy).unwrap_err();
        assert!(
            refused.to_string().contains("restart_command") && refused.to_string().contains("nothing was changed"),
            "{refused}"
        );
        assert!(check_environment(&service, Some(&from), &from, Purpose::Deploy).is_ok());
        assert!(check_environment(&service, Some(&from), &to, Purpose::Trial).is_ok());
        let managed_dir = tempfile::tempdir().unwrap();
        let managed = server(managed_dir.path(), "model_store = \"store\"");
        assert!(check_environment(&managed, Some(&from), &to, Purpose::Deploy).is_ok());
    }

    #[test]
    fn a_deployed_environment_is_kept_in_the_target_file_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let server = server(dir.path(), "model_store = \"store\"");
        keep_environment(&server, &state(CONFIG, &[("B", "2")])).unwrap();
        let on_file = TargetSpec::load(&dir.path().join("target.toml")).unwrap();
        assert_eq!(on_file.environment, state(CONFIG, &[("B", "2")]).environment);
        // Back to what `server` was made with: the file is read again, so
        // this is a change although `server` still says A=1.
        keep_environment(&server, &state(CONFIG, &[("A", "1")])).unwrap();
        let on_file = TargetSpec::load(&dir.path().join("target.toml")).unwrap();
        assert_eq!(on_file.environment, state(CONFIG, &[("A", "1")]).environment);
    }
}
