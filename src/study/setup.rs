//! What a study checks and prepares before it touches anything: that the
//! config serves the study's model, that environment parameters can be set
//! (servetune must start the server), the workload as `bench` would build it,
//! and which parameters the workload cannot exercise (not searched, with the
//! reason). Pure: reads only what it is given.

use std::path::Path;
use std::time::Duration;

use crate::config::{self, Properties};
use crate::load::{Schedule, StabilityRule, Stages, Workload};
use crate::server::{logging, Control, TargetSpec};
use crate::space::{Space, Target};
use crate::trial::NotSearched;

use super::settings::{Offered, Settings};

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
    workload.stability = settings.max_window.map(StabilityRule::within);
    workload.seed = settings.seed;
    // servetune manages this server: a self-signed certificate is expected.
    workload.verification = crate::load::tls::Verification::Insecure;
    workload
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

/// Refuses environment parameters when servetune does not start the server.
pub(super) fn check_targets_reachable(space: &Space, spec: &TargetSpec, space_file: &Path) -> anyhow::Result<()> {
    if matches!(spec.control, Control::Managed { .. }) {
        return Ok(());
    }
    for parameter in &space.parameters {
        if let Some(Target::Env(name)) = parameter.targets.iter().find(|t| matches!(t, Target::Env(_))) {
            anyhow::bail!(
                "{}: parameter '{}' sets {name} in TorchServe's environment, which servetune cannot set when \
                 a service manager starts TorchServe (restart_command in {}); set it there (e.g. Environment= \
                 in the unit) and remove the parameter from the space",
                space_file.display(),
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
}
