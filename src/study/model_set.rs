//! Which models a study tunes, in what mix they are sent, and each one's
//! own limits: `model = "tiny"` (one model, as ever), or `models =
//! ["resnet50", "bert"]` / `models = "all"` (every model the config serves)
//! with `[workload] mix = { resnet50 = 0.7, bert = 0.3 }` (default: equal
//! shares; a replayed log brings its own mix) and `[constraints.bert]
//! p99_ms = 300`. Read and checked here, before any server is touched; the
//! space is instantiated per model (`space::for_models`) and the load is
//! shared by `load::Mix`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Models, Properties, MODELS_KEY};
use crate::load::Protocol;
use crate::objective::{ModelLimit, ModelLimits};
use crate::server::TargetSpec;

/// `models =` as written: a list, or `"all"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ModelsFile {
    List(Vec<String>),
    All(String),
}

/// `[constraints.<model>]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ModelLimitFile {
    p99_ms: Option<f64>,
    error_rate: Option<f64>,
}

/// The keys of a study file that say which models it tunes and how.
pub struct AsWritten<'a> {
    pub model: Option<&'a str>,
    pub models: Option<&'a ModelsFile>,
    /// `[workload] mix`.
    pub mix: Option<&'a BTreeMap<String, f64>>,
    /// The `[constraints.<model>]` tables (and any unknown key of `[constraints]`).
    pub limits: &'a BTreeMap<String, toml::Value>,
    /// `[workload] body` is given.
    pub body: bool,
    /// `[workload] body_dir`, resolved.
    pub body_dir: Option<PathBuf>,
    pub protocol: Option<Protocol>,
    /// The workload replays a log (which brings its own mix).
    pub replayed: bool,
}

/// What the study tunes, checked.
pub struct Chosen {
    pub models: Vec<String>,
    /// Each model's share of a synthetic load (several models, no replay).
    pub mix: Vec<(String, f64)>,
    pub body_dir: Option<PathBuf>,
    pub limits: ModelLimits,
}

/// Checks the model keys of a study file whose target is `target`.
pub fn choose(written: &AsWritten<'_>, target: &Path) -> Result<Chosen, String> {
    let models = models_of(written.model, written.models, target)?;
    let several = models.len() > 1;
    if written.body_dir.is_some() && !several && !written.replayed {
        return Err("[workload] body_dir needs replay = \"access_log.log\" or several models (models = […])".into());
    }
    let mix = match (several, written.replayed) {
        (_, true) if written.mix.is_some() => {
            return Err("[workload] mix: a replay sends the log's own mix; leave mix out".into())
        }
        (true, true) => Vec::new(),
        (true, false) => mix_of(written.mix, &models)?,
        (false, _) if written.mix.is_some() => return Err("[workload] mix needs several models (models = […])".into()),
        (false, _) => Vec::new(),
    };
    if !mix.is_empty() {
        check_mix_workload(written, &mix)?;
    }
    Ok(Chosen {
        limits: limits_of(written.limits, &models)?,
        models,
        mix,
        body_dir: written.body_dir.clone(),
    })
}

/// A synthetic load over several models takes each model's bodies from
/// `body_dir/<model>/` and speaks TorchServe's inference API.
fn check_mix_workload(written: &AsWritten<'_>, mix: &[(String, f64)]) -> Result<(), String> {
    if written.body {
        return Err(
            "[workload] body: a study of several models takes body_dir = \"bodies\" (a folder per model) instead"
                .into(),
        );
    }
    if written.protocol.is_some_and(|p| p != Protocol::Torchserve) {
        return Err("[workload] protocol: a study of several models sends TorchServe's /predictions/<model>".into());
    }
    let body_dir = written.body_dir.as_deref().ok_or(
        "[workload] a study of several models needs body_dir = \"bodies\": one folder of sample bodies per model",
    )?;
    for (model, _) in mix {
        let folder = bodies_of(body_dir, model);
        if !folder.is_dir() {
            return Err(format!(
                "[workload] body_dir: no folder {} of sample bodies for model '{model}'",
                folder.display()
            ));
        }
    }
    Ok(())
}

/// The study's models, the first one the study's `model` (its URL, its
/// readiness, its name in messages).
pub fn models_of(model: Option<&str>, models: Option<&ModelsFile>, target: &Path) -> Result<Vec<String>, String> {
    let names = match (model, models) {
        (Some(model), None) => vec![model.to_string()],
        (None, Some(ModelsFile::List(list))) => list.clone(),
        (None, Some(ModelsFile::All(all))) if all == "all" => served_models(target)?,
        (None, Some(ModelsFile::All(other))) => {
            return Err(format!("models = \"{other}\": give a list of model names, or \"all\""))
        }
        (Some(_), Some(_)) => return Err("give model = \"…\" (one model) or models = […] (several), not both".into()),
        (None, None) => return Err("name the model the study tunes: model = \"…\" (or models = […])".into()),
    };
    if names.is_empty() {
        return Err("models = []: name at least one model".into());
    }
    for (index, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.contains(['/', ' ', '\n', '.']) {
            return Err(format!("model '{name}': name a model the config serves"));
        }
        if names[..index].contains(name) {
            return Err(format!("models: '{name}' is listed twice"));
        }
    }
    Ok(names)
}

/// The models `target`'s config serves, by name (`models = "all"`).
fn served_models(target: &Path) -> Result<Vec<String>, String> {
    let spec = TargetSpec::load(target).map_err(|e| format!("models = \"all\": {e:#}"))?;
    let bytes = std::fs::read(&spec.config).map_err(|e| format!("models = \"all\": {}: {e}", spec.config.display()))?;
    let props = Properties::parse(bytes).map_err(|e| format!("models = \"all\": {}: {e}", spec.config.display()))?;
    let names = served_in(&props);
    if names.is_empty() {
        return Err(format!(
            "models = \"all\": {} names no models (models={{…}} or load_models=a.mar,b.mar); list them in models = […]",
            spec.config.display()
        ));
    }
    Ok(names)
}

/// Model names of a config: the keys of `models={…}`, else the entries of
/// `load_models` (`name=archive.mar` or `archive.mar`; `all` names none).
pub fn served_in(props: &Properties) -> Vec<String> {
    if let Some(Ok(models)) = props.get(MODELS_KEY).map(Models::parse) {
        let names: Vec<String> = models.model_names().map(str::to_string).collect();
        if !names.is_empty() {
            return names;
        }
    }
    props
        .get("load_models")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty() && !entry.eq_ignore_ascii_case("all"))
        .map(|entry| {
            let (name, archive) = entry.split_once('=').unwrap_or(("", entry));
            if name.is_empty() {
                archive.trim_end_matches(".mar").to_string()
            } else {
                name.trim().to_string()
            }
        })
        .collect()
}

/// Each model's share of a synthetic load: `mix` as written, checked
/// against the models, or equal shares.
pub fn mix_of(mix: Option<&BTreeMap<String, f64>>, models: &[String]) -> Result<Vec<(String, f64)>, String> {
    let Some(mix) = mix else {
        return Ok(models.iter().map(|m| (m.clone(), 1.0 / models.len() as f64)).collect());
    };
    if let Some(stranger) = mix.keys().find(|name| !models.contains(name)) {
        return Err(format!(
            "[workload] mix names '{stranger}', which is not one of the study's models ({})",
            models.join(", ")
        ));
    }
    if let Some((model, weight)) = mix.iter().find(|(_, w)| !(w.is_finite() && **w >= 0.0)) {
        return Err(format!("[workload] mix: {model} = {weight}: a share is a number ≥ 0"));
    }
    let total: f64 = mix.values().sum();
    if total <= 0.0 {
        return Err("[workload] mix: the shares sum to 0; give at least one model a positive share".into());
    }
    Ok(models
        .iter()
        .map(|m| (m.clone(), mix.get(m).copied().unwrap_or(0.0) / total))
        .collect())
}

/// `[constraints.<model>]` tables (the keys of `[constraints]` that are not
/// its own limits), checked against the models.
pub fn limits_of(tables: &BTreeMap<String, toml::Value>, models: &[String]) -> Result<ModelLimits, String> {
    let mut limits = BTreeMap::new();
    for (name, value) in tables {
        if !value.is_table() {
            return Err(format!(
                "[constraints] {name}: not a limit (p99_ms, error_rate, memory_mb, throughput_rps) \
                 nor a model's table ([constraints.<model>])"
            ));
        }
        if !models.contains(name) {
            return Err(format!(
                "[constraints.{name}]: '{name}' is not one of the study's models ({})",
                models.join(", ")
            ));
        }
        let file: ModelLimitFile = value
            .clone()
            .try_into()
            .map_err(|e| format!("[constraints.{name}]: {}", e.to_string().trim_end()))?;
        if file.p99_ms.is_some_and(|p| !(p.is_finite() && p > 0.0)) {
            return Err(format!(
                "[constraints.{name}] p99_ms must be a number of milliseconds > 0"
            ));
        }
        if file.error_rate.is_some_and(|e| !(0.0..=1.0).contains(&e)) {
            return Err(format!("[constraints.{name}] error_rate must be within [0, 1]"));
        }
        limits.insert(
            name.clone(),
            ModelLimit {
                p99_ms: file.p99_ms,
                error_rate: file.error_rate,
            },
        );
    }
    Ok(ModelLimits(limits))
}

/// The folder of `model`'s sample bodies under `body_dir`.
pub fn bodies_of(body_dir: &Path, model: &str) -> PathBuf {
    body_dir.join(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn models_are_one_or_a_list_never_both() {
        let none = Path::new("absent.toml");
        assert_eq!(models_of(Some("tiny"), None, none).unwrap(), names(&["tiny"]));
        let list = ModelsFile::List(names(&["a", "b"]));
        assert_eq!(models_of(None, Some(&list), none).unwrap(), names(&["a", "b"]));
        assert!(models_of(Some("a"), Some(&list), none)
            .unwrap_err()
            .contains("not both"));
        assert!(models_of(None, None, none).is_err());
        let twice = ModelsFile::List(names(&["a", "a"]));
        assert!(models_of(None, Some(&twice), none).unwrap_err().contains("twice"));
        let odd = ModelsFile::All("some".into());
        assert!(models_of(None, Some(&odd), none).unwrap_err().contains("\"all\""));
    }

    #[test]
    fn a_config_names_its_models_by_models_or_load_models() {
        let props = |text: &str| Properties::parse(text.as_bytes().to_vec()).unwrap();
        assert_eq!(
            served_in(&props("load_models=tiny.mar,b=bert-onnx.mar\n")),
            names(&["tiny", "b"])
        );
        assert_eq!(
            served_in(&props(
                "load_models=all\nmodels={\"x\": {\"1.0\": {\"marName\": \"x.mar\"}}}\n"
            )),
            names(&["x"])
        );
        assert!(served_in(&props("load_models=all\n")).is_empty());
    }

    #[test]
    fn a_mix_is_checked_and_normalised() {
        let models = names(&["a", "b"]);
        assert_eq!(
            mix_of(None, &models).unwrap(),
            vec![("a".into(), 0.5), ("b".into(), 0.5)]
        );
        let mix: BTreeMap<String, f64> = [("a".to_string(), 3.0), ("b".to_string(), 1.0)].into();
        assert_eq!(
            mix_of(Some(&mix), &models).unwrap(),
            vec![("a".into(), 0.75), ("b".into(), 0.25)]
        );
        let zero: BTreeMap<String, f64> = [("a".to_string(), 0.0)].into();
        assert!(mix_of(Some(&zero), &models).unwrap_err().contains("sum to 0"));
        let stranger: BTreeMap<String, f64> = [("c".to_string(), 1.0)].into();
        assert!(mix_of(Some(&stranger), &models).unwrap_err().contains("'c'"));
        let negative: BTreeMap<String, f64> = [("a".to_string(), -1.0), ("b".to_string(), 2.0)].into();
        assert!(mix_of(Some(&negative), &models).is_err());
    }

    #[test]
    fn per_model_limits_name_study_models() {
        let models = names(&["a", "b"]);
        let tables: BTreeMap<String, toml::Value> = toml::from_str("[b]\np99_ms = 300.0\n").unwrap();
        let limits = limits_of(&tables, &models).unwrap();
        assert_eq!(limits.0["b"].p99_ms, Some(300.0));
        let stranger: BTreeMap<String, toml::Value> = toml::from_str("[c]\np99_ms = 3.0\n").unwrap();
        assert!(limits_of(&stranger, &models).unwrap_err().contains("[constraints.c]"));
        let typo: BTreeMap<String, toml::Value> = toml::from_str("p99 = 3.0\n").unwrap();
        assert!(limits_of(&typo, &models).unwrap_err().contains("p99"));
        let field: BTreeMap<String, toml::Value> = toml::from_str("[a]\nmemory_mb = 3.0\n").unwrap();
        assert!(limits_of(&field, &models).is_err());
    }
}
