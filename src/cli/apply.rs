//! `servetune apply`: sets properties, model fields, TorchServe's log level
//! or its environment (`--set`), or deploys a recommended tier (`--from`,
//! in `apply_from`), and moves the running server onto the result through
//! `apply::converge`: a restart (`--restart`) or a live change (`--hot`),
//! rolled back when the server does not come up. Without either flag only
//! the files change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::apply_from;
use super::server::{load_server, print_status};
use super::setup::runtime;
use crate::apply::converge::{deploy_edit, Way};
use crate::apply::Edit;
use crate::config::{self, Assignment};
use crate::server::TorchServe;
use crate::space::Target;

#[derive(Debug, clap::Args)]
pub(super) struct ApplyArgs {
    /// The config.properties to edit.
    #[arg(long, value_name = "FILE", required_unless_present = "from", conflicts_with = "from")]
    config: Option<PathBuf>,
    /// Deploy a recommended tier (results/<study>/recommended/<tier>/) the way
    /// it was measured: only the keys it changes, its environment and log4j2
    /// file; needs --target and --restart (or --hot when every change is live).
    #[arg(long, value_name = "TIER_DIR", requires = "target", conflicts_with = "settings")]
    from: Option<PathBuf>,
    /// With --from: deploy a tier that was measured on another deployment.
    #[arg(long, requires = "from")]
    force: bool,
    /// KEY=VALUE: a property (job_queue_size=200), a model field of the
    /// model's default version (models.tiny.batchSize=8), TorchServe's log
    /// level (log4j.level=info) or a variable of its environment
    /// (env.OMP_NUM_THREADS=1, written to the target file; needs --target).
    /// Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", required_unless_present = "from", value_parser = parse_setting)]
    settings: Vec<Setting>,
    /// Restart the server on the new config and wait until it is ready;
    /// roll back if it does not come up.
    #[arg(long, requires = "target", conflicts_with = "hot")]
    restart: bool,
    /// Change the running server through its management API instead of
    /// restarting (batchSize, maxBatchDelay, minWorkers, maxWorkers only).
    #[arg(long, requires = "target")]
    hot: bool,
    /// The target file describing the deployment (needed with --restart/--hot).
    #[arg(long, value_name = "TARGET.toml")]
    target: Option<PathBuf>,
}

/// One `--set`: where it lands and the value.
#[derive(Debug, Clone)]
struct Setting {
    target: Target,
    value: String,
}

fn parse_setting(text: &str) -> Result<Setting, String> {
    let (key, value) = text.split_once('=').ok_or_else(|| "expected KEY=VALUE".to_string())?;
    if value.contains(['\n', '\r', '\0']) {
        return Err(format!("{key}: a value must be one line"));
    }
    let target = Target::parse(key.trim())?;
    if let Target::Config(_) = target {
        text.parse::<Assignment>()?;
    }
    Ok(Setting {
        target,
        value: value.to_string(),
    })
}

/// The `--set`s split by destination.
struct SplitSettings {
    /// Config edits (the log level among them, as a `vmargs` edit).
    assignments: Vec<Assignment>,
    environment: std::collections::BTreeMap<String, String>,
    /// The log level, whose log4j2 file must be written.
    log_level: Option<String>,
}

fn split_settings(settings: &[Setting], config: &Path) -> anyhow::Result<SplitSettings> {
    let mut assignments = Vec::new();
    let mut environment = std::collections::BTreeMap::new();
    let mut log_level = None;
    for setting in settings {
        match &setting.target {
            Target::Config(key) => assignments.push(
                format!("{key}={}", setting.value)
                    .parse::<Assignment>()
                    .map_err(|e| anyhow::anyhow!("--set {key}={}: {e}", setting.value))?,
            ),
            Target::Env(name) => {
                environment.insert(name.clone(), setting.value.clone());
            }
            Target::LogLevel => {
                let level = setting.value.trim().to_ascii_lowercase();
                if !crate::space::LOG_LEVELS.contains(&level.as_str()) {
                    bail!(
                        "--set log4j.level={}: one of {}",
                        setting.value,
                        crate::space::LOG_LEVELS.join(", ")
                    );
                }
                log_level = Some(level);
            }
            Target::Runtime(_) => bail!(
                "--set runtime={}: the runtime is the archive load_models names; \
                 set load_models=MODEL=MODEL-onnx.mar (or -ts.mar) instead",
                setting.value
            ),
            Target::GatewayEnv(_) | Target::GatewayConfig(_) => bail!(
                "--set {}: the gateway's settings are tuned in a stack study (stack = \"stack.toml\"); \
                 apply changes TorchServe only",
                setting.target
            ),
        }
    }
    if let Some(level) = &log_level {
        let (_, props) = config::read_properties(config)?;
        let config_dir = config.parent().unwrap_or(Path::new("."));
        if crate::server::logging::level_of(props.get("vmargs")).is_none() {
            bail!(
                "{}: vmargs names a log4j2 config of the deployment's own; servetune will not replace it",
                config.display()
            );
        }
        let vmargs = crate::server::logging::vmargs_with(props.get("vmargs"), level, config_dir).unwrap_or_default();
        assignments.push(Assignment {
            key: config::SettingKey::Property("vmargs".into()),
            value: vmargs,
        });
    }
    Ok(SplitSettings {
        assignments,
        environment,
        log_level,
    })
}

pub(super) fn run(args: ApplyArgs) -> anyhow::Result<()> {
    if let (Some(from), Some(target)) = (&args.from, &args.target) {
        let mode = match (args.restart, args.hot) {
            (true, _) => apply_from::Mode::Restart,
            (_, true) => apply_from::Mode::Hot,
            _ => bail!(
                "--from {}: say how to deploy the tier: --restart (restart TorchServe on it, rolled back if it does \
                 not come up) or --hot (live, when every change is live)",
                from.display()
            ),
        };
        return apply_from::run(from, target, mode, args.force);
    }
    let config = args.config.clone().context("--config FILE is needed with --set")?;
    crate::study::lock::check_free(&config).map_err(|e| anyhow::anyhow!(e))?;
    let SplitSettings {
        assignments,
        environment,
        log_level,
    } = split_settings(&args.settings, &config)?;
    warn_unknown_properties(&assignments);
    let server = match &args.target {
        Some(target) => Some(load_server(target, Some(&config))?),
        None => None,
    };
    let new_environment = environment_with(&args, server.as_ref(), &environment)?;
    if args.hot && log_level.is_some() {
        bail!("--set log4j.level: the log level is read only at start; use --restart");
    }
    let mut edit = Edit::prepare(&config, &assignments)?;
    let changes = edit.changes();
    for (name, value) in &environment {
        println!(
            "{}: env {name}={value}",
            args.target.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    if changes.is_empty() && environment.is_empty() {
        println!("{}: already set, nothing to change", config.display());
    }
    for change in &changes {
        println!("{}: {change}", config.display());
    }
    match server {
        Some(server) if args.restart => {
            runtime()?.block_on(deploy_edit(&server, &edit, new_environment, Way::Restart))?;
            println!("TorchServe restarted on the new config and ready");
            print_status(&server)?;
        }
        Some(server) if args.hot => {
            runtime()?.block_on(deploy_edit(&server, &edit, None, Way::Live(&assignments)))?;
            println!("TorchServe changed live and ready");
            print_status(&server)?;
        }
        server => {
            if let Some(level) = &log_level {
                let config_dir = config.parent().unwrap_or(Path::new("."));
                crate::server::logging::ensure_written(config_dir, level)
                    .with_context(|| format!("writing the log4j2 config for level {level}"))?;
            }
            if !changes.is_empty() {
                edit.write()?;
            }
            if let (Some(server), Some(environment)) = (server, &new_environment) {
                server.spec().write_environment(environment)?;
            }
        }
    }
    Ok(())
}

fn warn_unknown_properties(assignments: &[Assignment]) {
    for assignment in assignments {
        if let config::SettingKey::Property(key) = &assignment.key {
            if !config::assignment::is_known_property(key) {
                tracing::warn!("--set {assignment}: TorchServe 0.12 does not document '{key}'; check the spelling");
            }
        }
    }
}

/// The whole environment TorchServe is to start with, when `--set env.*`
/// changes it (None otherwise).
fn environment_with(
    args: &ApplyArgs,
    server: Option<&TorchServe>,
    environment: &BTreeMap<String, String>,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    match (server, environment.is_empty()) {
        (_, true) => Ok(None),
        (None, false) => bail!("--set env.NAME=VALUE needs --target: the environment is the target file's"),
        (Some(server), false) => {
            if !server.spec().control.sets_environment() {
                bail!(
                    "--set env.*: {} restarts TorchServe through its restart_command; set the environment in the service",
                    server.spec().source.display()
                );
            }
            if args.hot {
                bail!("--set env.*: the environment is read only at start; use --restart");
            }
            let mut all = server.environment();
            all.extend(environment.clone());
            Ok(Some(all))
        }
    }
}
