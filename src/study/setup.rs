//! What a study checks and prepares before it touches anything: that the
//! config serves the study's models (and every model a replayed log sends
//! to), that environment parameters can be set
//! (servetune must start the server), that gateway parameters have a gateway
//! (a stack) whose config routes the model to this TorchServe, the workload
//! as `bench` would build it (with each model's bodies and share when it
//! tunes several), the space instantiated per model, and which parameters the workload cannot
//! exercise (not searched, with the reason). Reads only files it is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::apply::state::GatewayState;
use crate::config::{self, GatewayToml, Properties};
use crate::load::{Mix, Schedule, StabilityRule, Stages, Workload};
use crate::server::stack::StackSpec;
use crate::server::{logging, Endpoints, TargetSpec};
use crate::space::{Space, Target};
use crate::trial::NotSearched;

use super::gateway::StudyGateway;

use super::settings::{Offered, Settings};
use super::{lock, model_set, original};
use crate::load::request::read_bodies;
use crate::space::load_spaces;

/// The study's workload, as `bench` would build it from the same settings.
pub(super) fn workload_of(settings: &Settings, bodies: Vec<Vec<u8>>) -> Workload {
    let mut workload = Workload::closed(1, settings.warmup, settings.duration);
    workload.bodies = bodies;
    workload.protocol = settings.protocol;
    workload.content_type = settings.content_type.clone();
    workload.schedule = match settings.offered {
        Offered::Users(users) => Schedule::Closed {
            stages: Stages::constant(users, settings.warmup + settings.duration),
            think_time: Duration::ZERO,
        },
        Offered::Rate(rate) => Schedule::Open {
            rate_per_s: rate,
            arrival: crate::load::Arrival::Constant,
        },
    };
    if let Some(varying) = &settings.varying {
        workload.schedule = varying.clone();
    }
    workload.stability = settings.max_window.map(StabilityRule::within);
    workload.seed = settings.seed;
    // TLS is the target file's (`ca_file`, `insecure_tls`): the runner sets it.
    workload
}

/// The load over several models, with each one's bodies (None: one model).
fn mix_of(settings: &Settings) -> anyhow::Result<Option<Mix>> {
    let (Some(body_dir), false) = (&settings.body_dir, settings.mix.is_empty()) else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for (model, share) in &settings.mix {
        let bodies = read_bodies(&model_set::bodies_of(body_dir, model))?;
        parts.push((model.clone(), *share, bodies));
    }
    Ok(Some(Mix::new(parts)?))
}

/// Refuses a replay whose log sends requests to a model the config does
/// not serve (they would all fail, and the study would judge 404s).
fn check_replay_served(workload: &Workload, props: &Properties, config: &Path) -> anyhow::Result<()> {
    let Schedule::Replay(traffic) = &workload.schedule else {
        return Ok(());
    };
    for model in traffic.models() {
        check_model_served(props, model, config).with_context(|| {
            format!(
                "[workload] replay {}: the log sends requests to model '{model}'; serve it, or cut it out with from/to",
                traffic.log.display()
            )
        })?;
    }
    Ok(())
}

/// Refuses a study of a model the config does not serve.
pub(super) fn check_model_served(props: &Properties, model: &str, config: &Path) -> anyhow::Result<()> {
    if let Some(models) = props.get(config::MODELS_KEY) {
        let models = config::Models::parse(models).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        if models.model_names().any(|m| m == model) {
            return Ok(());
        }
    }
    let load_models = props.get("load_models").unwrap_or("");
    let listed = load_models.split(',').map(str::trim).any(|entry| {
        let (name, archive) = entry.split_once('=').unwrap_or(("", entry));
        name == model || archive.trim_end_matches(".mar") == model || entry == model
    });
    if listed || load_models.trim().eq_ignore_ascii_case("all") {
        return Ok(());
    }
    anyhow::bail!(
        "{}: the study's model '{model}' is neither in models={{…}} nor in load_models ({})",
        config.display(),
        if load_models.is_empty() { "unset" } else { load_models }
    )
}

/// The space files, for messages.
fn named(spaces: &[PathBuf]) -> String {
    spaces
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Refuses gateway parameters in a study without a gateway in front.
pub(super) fn check_gateway_targets(
    space: &Space,
    stack: Option<&StackSpec>,
    spaces: &[PathBuf],
) -> anyhow::Result<()> {
    if let Some(stack) = stack {
        if stack.gateway.service.is_none() {
            return Ok(());
        }
        for parameter in &space.parameters {
            if let Some(target) = parameter.targets.iter().find(|t| matches!(t, Target::GatewayEnv(_))) {
                anyhow::bail!(
                    "{}: parameter '{}' sets {target}, which servetune cannot set when a service manager starts \
                     the gateway (restart_command in {}); set it in the service (e.g. Environment= in its unit) \
                     and remove the parameter from the space",
                    named(spaces),
                    parameter.name,
                    stack.source.display()
                );
            }
        }
        return Ok(());
    }
    for parameter in &space.parameters {
        if let Some(target) = parameter.targets.iter().find(|t| t.is_gateway()) {
            anyhow::bail!(
                "{}: parameter '{}' sets the gateway ({target}), but this study has no gateway in front of \
                 TorchServe: name a stack (stack = \"stack.toml\") instead of target, or drop the gateway's space",
                named(spaces),
                parameter.name
            );
        }
    }
    Ok(())
}

/// The gateway's state before the study (its config file, or servetune's
/// backup of it when this study was cut short and resumes, and the stack's
/// environment for it) and the gateway the study runs; checks that its
/// config parses and routes `model` to this TorchServe, and that the
/// python to run it exists.
pub(super) fn gateway_of(
    stack: &StackSpec,
    model: &str,
    original: &Properties,
    from_backup: bool,
) -> anyhow::Result<(GatewayState, StudyGateway)> {
    let path = &stack.gateway.config;
    let backup = config::file::BackupPaths::of(path).original;
    let bytes = match std::fs::read(&backup) {
        Ok(bytes) if from_backup => bytes,
        _ => std::fs::read(path).with_context(|| format!("reading the gateway's config {}", path.display()))?,
    };
    GatewayToml::parse(&bytes, path)?;
    let model = stack
        .models
        .iter()
        .find(|m| m.name == model)
        .with_context(|| format!("{}: no [[models]] entry for '{model}'", stack.source.display()))?;
    let inference = Endpoints::from_properties(original).inference.base_url();
    stack.check_gateway_routes(std::slice::from_ref(model), &inference)?;
    if stack.gateway.service.is_none() && !stack.gateway.python.is_file() {
        anyhow::bail!(
            "{}: no python at {} to run the TensorZero gateway with (the venv with tensorzero; set [gateway] python)",
            stack.source.display(),
            stack.gateway.python.display()
        );
    }
    let state = GatewayState {
        config: bytes,
        environment: stack.gateway.environment.clone(),
    };
    Ok((state, StudyGateway::new(&stack.gateway, &model.route)))
}

/// Refuses environment parameters when servetune does not start the server.
pub(super) fn check_targets_reachable(space: &Space, spec: &TargetSpec, spaces: &[PathBuf]) -> anyhow::Result<()> {
    if spec.control.starts_server() {
        return Ok(());
    }
    for parameter in &space.parameters {
        if let Some(Target::Env(name)) = parameter.targets.iter().find(|t| matches!(t, Target::Env(_))) {
            anyhow::bail!(
                "{}: parameter '{}' sets {name} in TorchServe's environment, which servetune cannot set when \
                 a service manager starts TorchServe (restart_command in {}); set it there (e.g. Environment= \
                 in the unit) and remove the parameter from the space",
                named(spaces),
                parameter.name,
                spec.source.display()
            );
        }
    }
    Ok(())
}

/// Drops parameters the workload cannot exercise, or servetune must not
/// touch, and says why.
pub(super) fn prune(space: Space, workload: &Workload, original: &Properties) -> (Space, Vec<NotSearched>) {
    let concurrency = workload.max_concurrency();
    let foreign_logging = logging::level_of(original.get("vmargs")).is_none();
    let referenced: Vec<String> = space
        .parameters
        .iter()
        .filter_map(|p| p.when.as_ref().map(|w| w.parameter.clone()))
        .collect();
    let mut kept = Vec::new();
    let mut not_searched = Vec::new();
    for parameter in space.parameters {
        let queue = parameter
            .targets
            .iter()
            .any(|t| *t == Target::Config("job_queue_size".into()));
        let all_above = parameter
            .levels
            .iter()
            .all(|l| l.as_f64().is_some_and(|x| x >= concurrency as f64));
        let reason = if queue && all_above && !referenced.contains(&parameter.name) {
            Some(format!(
                "the workload never has more than {concurrency} requests in flight, so a queue of {} or more \
                 never fills: every level measures the same",
                parameter
                    .levels
                    .iter()
                    .filter_map(|l| l.as_f64())
                    .fold(f64::INFINITY, f64::min)
            ))
        } else if parameter.targets.contains(&Target::LogLevel) && foreign_logging {
            Some("the deployment's vmargs name a log4j2 config of its own; servetune does not replace it".into())
        } else {
            None
        };
        match reason {
            Some(reason) => not_searched.push(NotSearched {
                parameter: parameter.name.clone(),
                reason,
            }),
            None => kept.push(parameter),
        }
    }
    (Space { parameters: kept }, not_searched)
}

/// What a study works with, read and checked before any server is touched.
pub struct Prepared {
    pub space: Space,
    pub not_searched: Vec<NotSearched>,
    pub spec: TargetSpec,
    /// The config as it was (servetune's backup when this study resumes a cut-short run).
    pub original_bytes: Vec<u8>,
    /// The gateway's original state and the gateway the study runs (a stack study).
    pub gateway: Option<GatewayState>,
    pub study_gateway: Option<StudyGateway>,
    pub workload: Workload,
}

/// Reads the spaces, the target, the stack and the original config; checks
/// that no other study holds the deployment, the model is served, the ports
/// do not clash and every parameter reaches its target; prunes what the
/// workload cannot exercise.
pub fn prepare(settings: &Settings, resume: bool) -> anyhow::Result<Prepared> {
    let space = load_spaces(&settings.spaces)?.for_models(&settings.models);
    let spec = TargetSpec::load(&settings.target)?;
    crate::server::tls::announce_spec(&spec);
    let stack = settings.stack.as_deref().map(StackSpec::load).transpose()?;
    let config_path = spec.config.clone();
    // The original config: servetune's backup only when this study was cut short here.
    let original::Original {
        bytes: original_bytes,
        props: original_props,
        from_backup,
    } = original::read(&config_path, &settings.name, resume)?;
    if let Some(holder) = lock::holder(&config_path) {
        let ours = resume && holder.study == settings.name && !lock::running(&holder);
        if !ours {
            anyhow::bail!("{}", lock::refusal(&config_path, &holder));
        }
    }
    for model in &settings.models {
        check_model_served(&original_props, model, &config_path)?;
    }
    if let Some((first, second, port)) = crate::server::Endpoints::from_properties(&original_props).clash() {
        anyhow::bail!("{}: {first} and {second} both use port {port}", config_path.display());
    }
    check_targets_reachable(&space, &spec, &settings.spaces)?;
    check_gateway_targets(&space, stack.as_ref(), &settings.spaces)?;
    let (gateway, study_gateway) = match &stack {
        Some(stack) => {
            let (state, gateway) = gateway_of(stack, &settings.model, &original_props, from_backup)?;
            (Some(state), Some(gateway))
        }
        None => (None, None),
    };
    let bodies = match &settings.body {
        Some(path) => read_bodies(path)?,
        None => Vec::new(),
    };
    let mut workload = workload_of(settings, bodies);
    check_replay_served(&workload, &original_props, &config_path)?;
    workload.mix = mix_of(settings)?.map(Arc::new);
    let (space, not_searched) = prune(space, &workload, &original_props);
    Ok(Prepared {
        space,
        not_searched,
        spec,
        original_bytes,
        gateway,
        study_gateway,
        workload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::parse_space;

    #[test]
    fn a_queue_the_workload_cannot_fill_is_not_searched() {
        let space = parse_space(
            "[[parameter]]\nname = \"job_queue_size\"\nkind = \"int\"\nvalues = [50, 100]\ndefault = 100\n\
             target = \"job_queue_size\"\napply = \"cold\"\n\
             [[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 8\ndefault = 1\n\
             target = \"models.{model}.batchSize\"\napply = \"hot\"\n",
            "s.toml",
        )
        .unwrap();
        let props = Properties::parse(b"a=1\n".to_vec()).unwrap();
        let closed = Workload::closed(16, Duration::from_secs(1), Duration::from_secs(3));
        let (kept, dropped) = prune(space.clone(), &closed, &props);
        assert_eq!(kept.dimensions(), 1);
        assert_eq!(dropped[0].parameter, "job_queue_size");
        assert!(dropped[0].reason.contains("16 requests"), "{}", dropped[0].reason);
        let crowded = Workload::closed(64, Duration::from_secs(1), Duration::from_secs(3));
        let (kept, dropped) = prune(space, &crowded, &props);
        assert_eq!(
            (kept.dimensions(), dropped.len()),
            (2, 0),
            "64 users can fill a queue of 50"
        );
    }

    #[test]
    fn a_model_the_config_does_not_serve_is_refused() {
        let props = Properties::parse(b"load_models=tiny.mar\n".to_vec()).unwrap();
        assert!(check_model_served(&props, "tiny", Path::new("c.properties")).is_ok());
        let e = check_model_served(&props, "big", Path::new("c.properties")).unwrap_err();
        assert!(
            e.to_string().contains("'big'") && e.to_string().contains("c.properties"),
            "{e}"
        );
        let with_models =
            Properties::parse(b"models={\"resnet\": {\"1\": {\"marName\": \"r.mar\"}}}\n".to_vec()).unwrap();
        assert!(check_model_served(&with_models, "resnet", Path::new("c")).is_ok());
    }

    #[test]
    fn gateway_parameters_need_a_gateway_servetune_can_set() {
        let space = parse_space(
            "[[parameter]]\nname = \"threads\"\nkind = \"int\"\nvalues = [1, 2]\ndefault = 2\n\
             target = \"gateway.env.TOKIO_WORKER_THREADS\"\napply = \"hot\"\n",
            "tz.toml",
        )
        .unwrap();
        let spaces = [PathBuf::from("tz.toml")];
        let e = check_gateway_targets(&space, None, &spaces).unwrap_err().to_string();
        assert!(e.contains("tz.toml") && e.contains("no gateway in front"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.properties"),
            "inference_address=http://127.0.0.1:8100\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("target.toml"),
            "config = \"c.properties\"\nmodel_store = \"s\"\ntorchserve = \"/opt/ts/bin/torchserve\"\n",
        )
        .unwrap();
        let stack_file = |gateway: &str| {
            let path = dir.path().join("stack.toml");
            std::fs::write(
                &path,
                format!(
                    "torchserve = \"target.toml\"\n[gateway]\nconfig = \"tz.toml\"\n{gateway}\
                     [[models]]\nname = \"bert\"\nroute = \"embeddings\"\nbody = \"b.json\"\np99_ms = 500\n"
                ),
            )
            .unwrap();
            StackSpec::load(&path).unwrap()
        };
        let managed = stack_file("");
        check_gateway_targets(&space, Some(&managed), &spaces).unwrap();
        let service =
            stack_file("restart_command = [\"systemctl\", \"restart\", \"tz\"]\nurl = \"http://127.0.0.1:3000\"\n");
        let e = check_gateway_targets(&space, Some(&service), &spaces)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gateway.env.TOKIO_WORKER_THREADS") && e.contains("Environment="),
            "{e}"
        );
    }
}
