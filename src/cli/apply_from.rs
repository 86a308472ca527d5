//! `servetune apply --from results/<study>/recommended/<tier>/ --target
//! TARGET.toml --restart|--hot`: deploys a recommended tier the way it was
//! measured. Its `tier.json` (see `apply::tier`) says which keys the tier
//! changes relative to the config the study started from; only those are
//! applied to the config as it is now, with the tier's environment (written
//! to the target file) and log4j2 file, through `apply::converge`:
//! when TorchServe does not come up the config is put back byte-identical
//! and the server restarted on it. A tier measured on another deployment is
//! refused unless `--force`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};

use super::server::{load_server, print_status};
use super::setup::runtime;
use crate::apply::converge::{deploy_edit, Way};
use crate::apply::tier::TierManifest;
use crate::apply::Edit;
use crate::config::{Assignment, SettingKey};
use crate::server::TorchServe;

/// How the tier reaches the running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Restart,
    Hot,
}

pub(super) fn run(from: &Path, target: &Path, mode: Mode, force: bool) -> anyhow::Result<()> {
    let manifest = TierManifest::load(from)?;
    check_confirmed(from, force)?;
    let server = load_server(target, None)?;
    let config = server.spec().config.clone();
    crate::study::lock::check_free(&config).map_err(|e| anyhow::anyhow!(e))?;
    let current = std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
    if let Err(refusal) = manifest.check_measured_here(&config, &current) {
        if !force {
            bail!("{refusal}\n(nothing was changed)");
        }
        println!("--force: {}", refusal.lines().next().unwrap_or_default());
    }
    let environment = environment_changes(&manifest, &server)?;
    let pending = manifest.pending(&crate::config::read_properties(&config)?.1)?;
    let edit = match mode {
        Mode::Restart => manifest.edit(&config)?,
        Mode::Hot => {
            refuse_cold_parts(&manifest, &environment, &pending)?;
            Edit::prepare(&config, &pending)?
        }
    };
    let changes = edit.changes();
    describe(&manifest, &config, target, &changes, &environment);
    if changes.is_empty() && environment.is_empty() {
        return Ok(());
    }
    match mode {
        Mode::Restart => {
            let mut all = server.environment();
            all.extend(environment);
            runtime()?.block_on(deploy_edit(&server, &edit, Some(all), Way::Restart))?;
            println!("TorchServe restarted on the tier and ready");
        }
        Mode::Hot => {
            runtime()?.block_on(deploy_edit(&server, &edit, None, Way::Live(&pending)))?;
            println!("TorchServe changed live to tier '{}' and ready", manifest.tier);
        }
    }
    print_status(&server)
}

/// A study whose confirmation could not complete exports the screening's
/// suggestion under `recommended/balanced-not-confirmed/`, its README
/// headed NOT CONFIRMED: deployed only with `--force`.
fn check_confirmed(from: &Path, force: bool) -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(from.join("README.md")).unwrap_or_default();
    let not_confirmed = readme.starts_with("# NOT CONFIRMED")
        || from
            .file_name()
            .is_some_and(|name| name == crate::report::NOT_CONFIRMED_DIR);
    match (not_confirmed, force) {
        (false, _) => Ok(()),
        (true, true) => {
            println!("--force: deploying a suggestion the confirmation rounds did not confirm");
            Ok(())
        }
        (true, false) => bail!(
            "--from {}: this suggestion was NOT CONFIRMED (the study's confirmation rounds did not complete; see its \
             README.md); pass --force to deploy it anyway\n(nothing was changed)",
            from.display()
        ),
    }
}

/// The tier's variables the target does not start TorchServe with yet.
fn environment_changes(manifest: &TierManifest, server: &TorchServe) -> anyhow::Result<BTreeMap<String, String>> {
    let now = server.environment();
    let changes: BTreeMap<String, String> = manifest
        .environment
        .iter()
        .filter(|(name, value)| now.get(*name) != Some(*value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !changes.is_empty() && !server.spec().control.sets_environment() {
        let list: Vec<String> = changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        bail!(
            "tier '{}' runs TorchServe with {}; {} restarts TorchServe through its restart_command: set these in the \
             service (e.g. its EnvironmentFile=, the tier's `environment` file), then apply again\n(nothing was changed)",
            manifest.tier,
            list.join(" "),
            server.spec().source.display()
        );
    }
    Ok(changes)
}

/// A live apply moves model fields only: the environment, the log level and
/// removed properties need a restart.
fn refuse_cold_parts(
    manifest: &TierManifest,
    environment: &BTreeMap<String, String>,
    pending: &[Assignment],
) -> anyhow::Result<()> {
    let restart = |what: String| {
        anyhow::anyhow!(
            "tier '{}' changes {what}, which TorchServe reads only at start: use --restart\n(nothing was changed)",
            manifest.tier
        )
    };
    if let Some((name, value)) = environment.iter().next() {
        return Err(restart(format!("the environment ({name}={value})")));
    }
    if let Some(level) = &manifest.log_level {
        return Err(restart(format!("the log level (to {level})")));
    }
    if let Some(key) = manifest.removed.first() {
        return Err(restart(format!("the property {key} (removed)")));
    }
    let cold = pending.iter().find(|a| match &a.key {
        SettingKey::Property(_) => true,
        SettingKey::ModelField { field, .. } => !field.is_live(),
    });
    if let Some(assignment) = cold {
        return Err(restart(assignment.to_string()));
    }
    Ok(())
}

fn describe(
    manifest: &TierManifest,
    config: &Path,
    target: &Path,
    changes: &[String],
    environment: &BTreeMap<String, String>,
) {
    println!(
        "tier '{}' of study '{}' (model {})",
        manifest.tier, manifest.study, manifest.model
    );
    for change in changes {
        println!("{}: {change}", config.display());
    }
    for (name, value) in environment {
        println!("{}: env {name}={value}", target.display());
    }
    if changes.is_empty() && environment.is_empty() {
        println!("{}: already runs this tier, nothing to change", config.display());
    }
    if manifest.gateway {
        println!(
            "this tier also sets the TensorZero gateway's config and environment (in its folder): apply changes \
             TorchServe only; deploy those with the stack"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_confirmed_suggestion_is_deployed_only_with_force() {
        let results = tempfile::tempdir().unwrap();
        let confirmed = results.path().join("balanced");
        let unconfirmed = results.path().join(crate::report::NOT_CONFIRMED_DIR);
        let copied = results.path().join("copied-elsewhere");
        for dir in [&confirmed, &unconfirmed, &copied] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::write(copied.join("README.md"), "# NOT CONFIRMED\n\nscreening only\n").unwrap();
        assert!(check_confirmed(&confirmed, false).is_ok());
        for dir in [&unconfirmed, &copied] {
            let refusal = check_confirmed(dir, false).unwrap_err().to_string();
            assert!(
                refusal.contains("NOT CONFIRMED") && refusal.contains("--force"),
                "{refusal}"
            );
            assert!(check_confirmed(dir, true).is_ok());
        }
    }
}
