//! A recommended tier as something to deploy. A study writes `tier.json`
//! into each `recommended/<tier>/` folder: what the tier changes relative to
//! the config the study started from (properties, model fields, the log
//! level, environment variables) and which deployment it measured (the
//! config file's path and the SHA-256 of its bytes when the study started).
//!
//! `servetune apply --from` reads it back and applies only those changes to
//! the deployment's config as it is now, so a hand edit made since the study
//! survives, and the environment and log4j2 file go with them: a tier is
//! deployed the way it was measured. This module owns the manifest, the
//! check that the tier was measured on this deployment, and turning the
//! manifest into an edit; `cli` runs the edit through `apply`'s move and
//! rollback. It never starts or stops a server itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::Edit;
use crate::config::{self, Assignment, ModelField, Models, Properties, SettingKey, MODELS_KEY};
use crate::server::logging;

/// The manifest's file name in a tier folder.
pub const TIER_FILE: &str = "tier.json";
/// The manifest's format; a newer one is refused by name.
const FORMAT: u32 = 1;
const VMARGS: &str = "vmargs";
const LOG4J_FLAG: &str = "-Dlog4j.configurationFile=";

/// What a tier changes and where it was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierManifest {
    pub format: u32,
    pub study: String,
    pub tier: String,
    pub model: String,
    /// The config file the study measured (absolute).
    pub measured_config: PathBuf,
    /// SHA-256 (hex) of that file's bytes when the study started.
    pub original_sha256: String,
    /// `KEY=VALUE` for every property and model field the tier sets to
    /// another value than the original (`vmargs` without a log4j2 file).
    pub changes: Vec<String>,
    /// Properties the tier does not have and the original had.
    pub removed: Vec<String>,
    /// Environment variables of the tier that differ from the original's.
    pub environment: BTreeMap<String, String>,
    /// TorchServe's log level, when the tier's differs from the original's.
    pub log_level: Option<String>,
    /// The tier also sets the gateway's files (a stack).
    pub gateway: bool,
}

/// Both ends of a tier: the config and environment a study started from,
/// and those of the tier.
pub struct TierStates<'a> {
    pub original_config: &'a [u8],
    pub original_environment: &'a BTreeMap<String, String>,
    pub tier_config: &'a [u8],
    pub tier_environment: &'a BTreeMap<String, String>,
}

/// Which study, tier and deployment a manifest is for.
pub struct TierOrigin<'a> {
    pub study: &'a str,
    pub tier: &'a str,
    pub model: &'a str,
    pub measured_config: &'a Path,
    pub gateway: bool,
}

impl TierManifest {
    /// The manifest of a tier: its differences from the original.
    pub fn between(origin: &TierOrigin, states: &TierStates) -> Result<Self, String> {
        let original = Properties::parse(states.original_config.to_vec()).map_err(|e| e.to_string())?;
        let tier = Properties::parse(states.tier_config.to_vec()).map_err(|e| e.to_string())?;
        let (mut changes, removed) = property_changes(&original, &tier);
        changes.extend(model_changes(original.get(MODELS_KEY), tier.get(MODELS_KEY)));
        let (original_level, tier_level) = (
            logging::level_of(original.get(VMARGS)),
            logging::level_of(tier.get(VMARGS)),
        );
        Ok(Self {
            format: FORMAT,
            study: origin.study.to_string(),
            tier: origin.tier.to_string(),
            model: origin.model.to_string(),
            measured_config: origin.measured_config.to_path_buf(),
            original_sha256: config::file::digest(states.original_config),
            changes,
            removed,
            environment: states
                .tier_environment
                .iter()
                .filter(|(name, value)| states.original_environment.get(*name) != Some(*value))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            log_level: tier_level.filter(|level| original_level.as_ref() != Some(level)),
            gateway: origin.gateway,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a tier manifest serialises")
    }

    /// Reads `dir/tier.json`; says plainly when `dir` is not a tier folder.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            bail!(
                "--from {}: not a folder (expected results/<study>/recommended/<tier>/)",
                dir.display()
            );
        }
        let path = dir.join(TIER_FILE);
        if !path.exists() {
            bail!(
                "--from {}: not a tier folder: it has no {TIER_FILE} (expected results/<study>/recommended/<tier>/ \
                 as a study exports it)",
                dir.display()
            );
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Self =
            serde_json::from_str(&text).with_context(|| format!("{}: not a tier manifest", path.display()))?;
        if manifest.format != FORMAT {
            bail!(
                "{}: format {} is not one this servetune reads (it reads {FORMAT})",
                path.display(),
                manifest.format
            );
        }
        manifest
            .assignments()
            .with_context(|| format!("{}: changes", path.display()))?;
        Ok(manifest)
    }

    /// The changes as assignments.
    pub fn assignments(&self) -> anyhow::Result<Vec<Assignment>> {
        self.changes
            .iter()
            .map(|change| {
                let assignment = change
                    .parse::<Assignment>()
                    .map_err(|e| anyhow::anyhow!("'{change}': {e}"))?;
                if let SettingKey::ModelField { field, .. } = &assignment.key {
                    field
                        .parse_value(&assignment.value)
                        .map_err(|e| anyhow::anyhow!("'{change}': {e}"))?;
                }
                Ok(assignment)
            })
            .collect()
    }

    /// Refuses a tier measured on another deployment: its config file is
    /// neither the one the study measured nor byte-identical to the config
    /// the study started from.
    pub fn check_measured_here(&self, config: &Path, current: &[u8]) -> Result<(), String> {
        let same_file = match (config.canonicalize(), self.measured_config.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => config == self.measured_config,
        };
        if same_file || config::file::digest(current) == self.original_sha256 {
            return Ok(());
        }
        Err(format!(
            "tier '{}' of study '{}' was measured on another deployment ({}, config sha256 {}), not on {}: its \
             figures need not hold here. Tune this deployment, or deploy the tier anyway with --force",
            self.tier,
            self.study,
            self.measured_config.display(),
            short(&self.original_sha256),
            config.display()
        ))
    }

    /// The edit of `config` that deploys this tier: its changes over the
    /// config as it is now, the removed properties gone, and the log level's
    /// log4j2 file named for this deployment's folder.
    pub fn edit(&self, config: &Path) -> anyhow::Result<Edit> {
        let mut edit = Edit::prepare(config, &self.assignments()?)?;
        for key in &self.removed {
            edit.after.remove(key);
        }
        if let Some(level) = &self.log_level {
            let config_dir = config.parent().unwrap_or(Path::new("."));
            match logging::vmargs_with(edit.after.get(VMARGS), level, config_dir) {
                Some(vmargs) => edit.after.set(VMARGS, &vmargs),
                None => {
                    edit.after.remove(VMARGS);
                }
            }
        }
        Ok(edit)
    }

    /// The changes `props` does not have yet (what a live apply must move).
    pub fn pending(&self, props: &Properties) -> anyhow::Result<Vec<Assignment>> {
        Ok(self
            .assignments()?
            .into_iter()
            .filter(|assignment| !already_set(props, assignment))
            .collect())
    }
}

/// Whether `props` already holds `assignment`'s value.
fn already_set(props: &Properties, assignment: &Assignment) -> bool {
    match &assignment.key {
        SettingKey::Property(key) => props.get(key).map(str::trim) == Some(assignment.value.trim()),
        SettingKey::ModelField { model, field } => {
            let current = props
                .get(MODELS_KEY)
                .and_then(|text| Models::parse(text).ok())
                .and_then(|models| models.field(model, *field).ok().flatten().cloned());
            current.is_some() && current == field.parse_value(&assignment.value).ok()
        }
    }
}

/// `vmargs` without servetune's log4j2 flag (the log level is its own change).
fn without_log_flag(vmargs: &str) -> String {
    vmargs
        .split_whitespace()
        .filter(|word| !word.starts_with(LOG4J_FLAG))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Top-level properties (not `models=`) the tier sets and removes.
fn property_changes(original: &Properties, tier: &Properties) -> (Vec<String>, Vec<String>) {
    let values = |props: &Properties| -> BTreeMap<String, String> {
        props
            .effective()
            .into_iter()
            .filter(|(key, _)| *key != MODELS_KEY)
            .map(|(key, value)| {
                let value = match key {
                    VMARGS => without_log_flag(value),
                    _ => value.trim().to_string(),
                };
                (key.to_string(), value)
            })
            .filter(|(key, value)| key != VMARGS || !value.is_empty())
            .collect()
    };
    let (before, after) = (values(original), values(tier));
    let changes = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let removed = before
        .keys()
        .filter(|key| !after.contains_key(*key) && *key != VMARGS)
        .cloned()
        .collect();
    (changes, removed)
}

/// Model fields the tier sets to another value (`models.M.F=V`).
fn model_changes(original: Option<&str>, tier: Option<&str>) -> Vec<String> {
    let parse = |text: Option<&str>| text.and_then(|t| Models::parse(t).ok());
    let (Some(before), Some(after)) = (parse(original), parse(tier)) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for model in after.model_names() {
        for field in ModelField::ALL {
            let old = before.field(model, field).ok().flatten();
            let Some(new) = after.field(model, field).ok().flatten() else {
                continue;
            };
            if old != Some(new) {
                let value = new.as_str().map_or_else(|| new.to_string(), str::to_string);
                changes.push(format!("{MODELS_KEY}.{model}.{}={value}", field.name()));
            }
        }
    }
    changes
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "inference_address=http://127.0.0.1:8080\njob_queue_size=100\n\
        models={\"tiny\": {\"1.0\": {\"defaultVersion\": true, \"marName\": \"tiny.mar\", \"batchSize\": 1, \"maxBatchDelay\": 100}}}\n";
    const TIER: &str = "inference_address=http://127.0.0.1:8080\njob_queue_size=200\n\
        models={\"tiny\": {\"1.0\": {\"defaultVersion\": true, \"marName\": \"tiny.mar\", \"batchSize\": 8, \"maxBatchDelay\": 100}}}\n\
        vmargs=-Dlog4j.configurationFile=file:///srv/a/.servetune/log4j2-warn.xml\n";

    fn manifest(measured: &Path) -> TierManifest {
        let original_environment = BTreeMap::from([("KEEP".to_string(), "1".to_string())]);
        let tier_environment = BTreeMap::from([
            ("KEEP".to_string(), "1".to_string()),
            ("OMP_NUM_THREADS".to_string(), "1".to_string()),
        ]);
        TierManifest::between(
            &TierOrigin {
                study: "s",
                tier: "balanced",
                model: "tiny",
                measured_config: measured,
                gateway: false,
            },
            &TierStates {
                original_config: ORIGINAL.as_bytes(),
                original_environment: &original_environment,
                tier_config: TIER.as_bytes(),
                tier_environment: &tier_environment,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_manifest_holds_only_what_the_tier_changes() {
        let m = manifest(Path::new("/srv/a/config.properties"));
        assert_eq!(m.changes, vec!["job_queue_size=200", "models.tiny.batchSize=8"]);
        assert!(m.removed.is_empty());
        assert_eq!(m.environment, BTreeMap::from([("OMP_NUM_THREADS".into(), "1".into())]));
        assert_eq!(m.log_level.as_deref(), Some("warn"));
        assert_eq!(m.original_sha256, config::file::digest(ORIGINAL.as_bytes()));
        let round_trip: TierManifest = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(round_trip, m);
    }

    #[test]
    fn the_edit_keeps_a_hand_edit_and_names_this_deployments_log4j_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        let edited = ORIGINAL.replace("inference_address", "# moved by hand\ninference_address");
        let edited = format!("{edited}default_response_timeout=60\n");
        std::fs::write(&config, &edited).unwrap();
        let edit = manifest(Path::new("/srv/a/config.properties")).edit(&config).unwrap();
        let text = String::from_utf8(edit.after.as_bytes().to_vec()).unwrap();
        assert!(
            text.contains("# moved by hand") && text.contains("default_response_timeout=60"),
            "{text}"
        );
        assert!(
            text.contains("job_queue_size=200") && text.contains("\"batchSize\": 8"),
            "{text}"
        );
        let vmargs = edit.after.get("vmargs").unwrap();
        assert!(
            vmargs.contains(&dir.path().join(".servetune/log4j2-warn.xml").display().to_string()),
            "{vmargs}"
        );
    }

    #[test]
    fn a_tier_of_another_deployment_is_refused_by_path_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        std::fs::write(&config, ORIGINAL).unwrap();
        let elsewhere = manifest(Path::new("/srv/elsewhere/config.properties"));
        // The same bytes as the study started from: the same deployment.
        assert!(elsewhere.check_measured_here(&config, ORIGINAL.as_bytes()).is_ok());
        let e = elsewhere
            .check_measured_here(&config, b"job_queue_size=5\n")
            .unwrap_err();
        assert!(e.contains("another deployment") && e.contains("--force"), "{e}");
        // The same file, edited since: still this deployment.
        let here = manifest(&config);
        assert!(here.check_measured_here(&config, b"job_queue_size=5\n").is_ok());
    }

    #[test]
    fn a_broken_manifest_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(Path::new("/srv/a/config.properties"));
        let text = m
            .to_json()
            .replace("\"changes\": [", "\"changes\": [\n  \"models.tiny.batchSize=zero\",");
        std::fs::write(dir.path().join(TIER_FILE), &text).unwrap();
        let e = format!("{:#}", TierManifest::load(dir.path()).unwrap_err());
        assert!(e.contains("tier.json") && e.contains("batchSize=zero"), "{e}");
        std::fs::write(dir.path().join(TIER_FILE), "{\n  \"format\": 1,\n  oops\n}").unwrap();
        let e = format!("{:#}", TierManifest::load(dir.path()).unwrap_err());
        assert!(e.contains("tier.json") && e.contains("line 3"), "{e}");
        std::fs::write(
            dir.path().join(TIER_FILE),
            m.to_json().replace("\"format\": 1", "\"format\": 9"),
        )
        .unwrap();
        let e = format!("{:#}", TierManifest::load(dir.path()).unwrap_err());
        assert!(e.contains("format 9"), "{e}");
    }

    #[test]
    fn live_changes_leave_out_what_is_already_set() {
        let m = manifest(Path::new("/srv/a/config.properties"));
        let props = Properties::parse(TIER.as_bytes().to_vec()).unwrap();
        assert!(m.pending(&props).unwrap().is_empty());
        let props = Properties::parse(ORIGINAL.as_bytes().to_vec()).unwrap();
        assert_eq!(m.pending(&props).unwrap().len(), 2);
    }
}
