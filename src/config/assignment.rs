//! Assignments (`--set KEY=VALUE`): their syntax, the values TorchServe
//! accepts for the keys servetune knows, and applying them to a document.
//!
//! A key is a top-level property (`job_queue_size`) or a field of one model's
//! default version in `models={…}` (`models.tiny.batchSize`).

use std::fmt;
use std::str::FromStr;

use super::models::{ModelField, Models, MODELS_KEY};
use super::models_text::{write_models, FieldEdit};
use super::properties::Properties;

/// What an assignment sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingKey {
    Property(String),
    ModelField { model: String, field: ModelField },
}

impl fmt::Display for SettingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingKey::Property(key) => f.write_str(key),
            SettingKey::ModelField { model, field } => {
                write!(f, "{MODELS_KEY}.{model}.{}", field.name())
            }
        }
    }
}

/// One `KEY=VALUE` pair, syntax checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub key: SettingKey,
    pub value: String,
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

fn is_property_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl FromStr for SettingKey {
    type Err = String;

    /// A key alone: `job_queue_size` or `models.<model>.<field>`.
    fn from_str(key: &str) -> Result<Self, String> {
        let key = key.trim();
        if let Some(rest) = key.strip_prefix("models.") {
            let (model, field) = rest
                .rsplit_once('.')
                .filter(|(model, field)| !model.is_empty() && !field.is_empty())
                .ok_or_else(|| format!("'{key}': a model key is models.<model>.<field>"))?;
            let field = ModelField::from_name(field).ok_or_else(|| {
                let known: Vec<&str> = ModelField::ALL.iter().map(|f| f.name()).collect();
                format!("unknown model field '{field}' (known: {})", known.join(", "))
            })?;
            Ok(SettingKey::ModelField {
                model: model.to_string(),
                field,
            })
        } else if key == MODELS_KEY {
            Err("set one model field at a time: models.<model>.<field>=VALUE".to_string())
        } else if is_property_key(key) {
            Ok(SettingKey::Property(key.to_string()))
        } else {
            Err(format!(
                "'{key}' is not a property key (letters, digits, '_', '.', '-')"
            ))
        }
    }
}

impl FromStr for Assignment {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = text.split_once('=').ok_or_else(|| "expected KEY=VALUE".to_string())?;
        let key: SettingKey = key.parse()?;
        if let SettingKey::Property(property) = &key {
            check_property_value(property, value)?;
        }
        Ok(Assignment {
            key,
            value: value.to_string(),
        })
    }
}

/// The kind of value a known TorchServe property takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    PositiveInt,
    NonNegativeInt,
    Bool,
    Address,
    Text,
}

/// TorchServe 0.12 properties servetune checks values of. Others are passed
/// through as text, with a warning (a typo would otherwise do nothing).
const KNOWN_PROPERTIES: &[(&str, ValueKind)] = &[
    ("number_of_netty_threads", ValueKind::PositiveInt),
    ("netty_client_threads", ValueKind::PositiveInt),
    ("job_queue_size", ValueKind::PositiveInt),
    ("default_workers_per_model", ValueKind::NonNegativeInt),
    ("default_response_timeout", ValueKind::PositiveInt),
    ("default_startup_timeout", ValueKind::PositiveInt),
    ("unregister_model_timeout", ValueKind::PositiveInt),
    ("max_request_size", ValueKind::PositiveInt),
    ("max_response_size", ValueKind::PositiveInt),
    ("number_of_gpu", ValueKind::NonNegativeInt),
    ("initial_worker_port", ValueKind::PositiveInt),
    ("grpc_inference_port", ValueKind::PositiveInt),
    ("grpc_management_port", ValueKind::PositiveInt),
    ("token_expiration_min", ValueKind::PositiveInt),
    ("io_ratio", ValueKind::PositiveInt),
    ("metric_time_interval", ValueKind::PositiveInt),
    ("inference_address", ValueKind::Address),
    ("management_address", ValueKind::Address),
    ("metrics_address", ValueKind::Address),
    ("prefer_direct_buffer", ValueKind::Bool),
    ("use_native_io", ValueKind::Bool),
    ("async_logging", ValueKind::Bool),
    ("enable_model_api", ValueKind::Bool),
    ("disable_token_authorization", ValueKind::Bool),
    ("enable_metrics_api", ValueKind::Bool),
    ("disable_system_metrics", ValueKind::Bool),
    ("cpu_launcher_enable", ValueKind::Bool),
    ("ipex_enable", ValueKind::Bool),
    ("install_py_dep_per_model", ValueKind::Bool),
    ("enable_envvars_config", ValueKind::Bool),
    ("metrics_mode", ValueKind::Text),
    ("load_models", ValueKind::Text),
    ("model_store", ValueKind::Text),
    ("vmargs", ValueKind::Text),
    ("cpu_launcher_args", ValueKind::Text),
    ("blacklist_env_vars", ValueKind::Text),
    ("allowed_urls", ValueKind::Text),
    ("workflow_store", ValueKind::Text),
    ("grpc_inference_address", ValueKind::Text),
    ("grpc_management_address", ValueKind::Text),
    ("keystore", ValueKind::Text),
    ("certificate_file", ValueKind::Text),
    ("private_key_file", ValueKind::Text),
    ("cors_allowed_origin", ValueKind::Text),
    ("cors_allowed_methods", ValueKind::Text),
    ("cors_allowed_headers", ValueKind::Text),
];

/// Whether TorchServe 0.12 reads `key` (a typo check, not a gate).
pub fn is_known_property(key: &str) -> bool {
    KNOWN_PROPERTIES.iter().any(|(known, _)| *known == key)
}

fn check_property_value(key: &str, value: &str) -> Result<(), String> {
    let Some((_, kind)) = KNOWN_PROPERTIES.iter().find(|(known, _)| *known == key) else {
        return Ok(());
    };
    let ok = match kind {
        ValueKind::PositiveInt => value.parse::<u32>().is_ok_and(|n| n >= 1 && n <= i32::MAX as u32),
        ValueKind::NonNegativeInt => value.parse::<u32>().is_ok_and(|n| n <= i32::MAX as u32),
        ValueKind::Bool => matches!(value, "true" | "false"),
        ValueKind::Address => super::address::parse_address(value).is_some(),
        ValueKind::Text => true,
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        ValueKind::PositiveInt => "a whole number ≥ 1",
        ValueKind::NonNegativeInt => "a whole number ≥ 0",
        ValueKind::Bool => "true or false",
        ValueKind::Address => "an address like http://127.0.0.1:8080",
        ValueKind::Text => unreachable!("text accepts anything"),
    };
    Err(format!("{key} takes {expected}, not '{value}'"))
}

/// Why an assignment could not be applied to a document (the caller adds the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{key}: there is no models= property to hold it")]
    NoModels { key: String },
    #[error("line {line}: {error}")]
    Models {
        line: usize,
        error: super::models::ModelsError,
    },
    #[error("{key}: {reason}")]
    Value { key: String, reason: String },
}

/// Applies `assignments` in order. Model fields are applied to the parsed
/// `models=` object and written back once, in place in the user's layout
/// where possible (see `models_text`).
pub fn apply_assignments(props: &mut Properties, assignments: &[Assignment]) -> Result<(), ApplyError> {
    let mut models: Option<(Models, usize)> = None;
    let mut edits = Vec::new();
    for assignment in assignments {
        match &assignment.key {
            SettingKey::Property(key) => props.set(key, &assignment.value),
            SettingKey::ModelField { model, field } => {
                if models.is_none() {
                    let entry = props.entry(MODELS_KEY).ok_or_else(|| ApplyError::NoModels {
                        key: assignment.key.to_string(),
                    })?;
                    let parsed = Models::parse(&entry.value).map_err(|error| ApplyError::Models {
                        line: entry.line,
                        error,
                    })?;
                    models = Some((parsed, entry.line));
                }
                let (parsed, line) = models.as_mut().expect("parsed just above");
                let value = field
                    .parse_value(&assignment.value)
                    .map_err(|reason| ApplyError::Value {
                        key: assignment.key.to_string(),
                        reason,
                    })?;
                let version = parsed
                    .default_version(model)
                    .map_err(|error| ApplyError::Models { line: *line, error })?
                    .to_string();
                parsed
                    .set_field(model, *field, value.clone())
                    .map_err(|error| ApplyError::Models { line: *line, error })?;
                edits.push(FieldEdit {
                    model: model.clone(),
                    version,
                    field: *field,
                    value,
                });
            }
        }
    }
    if let Some((parsed, _)) = models {
        write_models(props, &parsed, &edits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_key_kinds() {
        let a: Assignment = "number_of_netty_threads=4".parse().unwrap();
        assert_eq!(a.key, SettingKey::Property("number_of_netty_threads".into()));
        let b: Assignment = "models.my.model.batchSize=8".parse().unwrap();
        assert_eq!(
            b.key,
            SettingKey::ModelField {
                model: "my.model".into(),
                field: ModelField::BatchSize
            }
        );
        assert_eq!(b.to_string(), "models.my.model.batchSize=8");
    }

    #[test]
    fn rejects_bad_syntax_and_values() {
        for bad in [
            "no_equals",
            "=3",
            "models.tiny=3",
            "models.tiny.batchsize=3",
            "models=3",
            "a b=1",
            "number_of_netty_threads=four",
            "job_queue_size=0",
            "enable_model_api=yes",
            "inference_address=localhost",
        ] {
            assert!(bad.parse::<Assignment>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn applies_properties_and_model_fields() {
        let mut props =
            Properties::parse(b"a=1\nmodels={\"tiny\": {\"1.0\": {\"batchSize\": 1}}}\n# end\n".to_vec()).unwrap();
        let assignments: Vec<Assignment> = ["a=2", "models.tiny.batchSize=8", "models.tiny.maxBatchDelay=5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        apply_assignments(&mut props, &assignments).unwrap();
        let models = Models::parse(props.get("models").unwrap()).unwrap();
        assert_eq!(models.field("tiny", ModelField::BatchSize).unwrap(), Some(&8.into()));
        assert_eq!(
            models.field("tiny", ModelField::MaxBatchDelay).unwrap(),
            Some(&5.into())
        );
        assert_eq!(props.get("a"), Some("2"));
        assert!(props.as_bytes().ends_with(b"}\n# end\n"));
    }

    const LAYOUT: &str = "a=1\nmodels={\\\n  \"tiny\": {\\\n    \"1.0\": {\\\n      \"defaultVersion\": true,\\\n      \"marName\": \"tiny.mar\",\\\n      \"minWorkers\": 1,\\\n      \"batchSize\": 1\\\n    }\\\n  }\\\n}\n# end\n";

    const LAYOUT_ONE_FIELD: &str =
        "models={\\\n  \"tiny\": {\\\n    \"1.0\": {\\\n      \"batchSize\": 1\\\n    }\\\n  }\\\n}\n";

    /// `text` with `sets` applied.
    fn apply(text: &str, sets: &[&str]) -> String {
        let mut props = Properties::parse(text.as_bytes().to_vec()).unwrap();
        let assignments: Vec<Assignment> = sets.iter().map(|s| s.parse().unwrap()).collect();
        apply_assignments(&mut props, &assignments).unwrap();
        String::from_utf8(props.into_bytes()).unwrap()
    }

    /// Asserts that the `models=` JSON of `edited` is that of `text` with the
    /// model fields in `sets` set structurally (`Models::set_field`).
    fn assert_models_edited(text: &str, sets: &[&str], edited: &str) {
        let before = Properties::parse(text.as_bytes().to_vec()).unwrap();
        let mut want = Models::parse(before.get(MODELS_KEY).unwrap()).unwrap();
        for set in sets {
            let assignment: Assignment = set.parse().unwrap();
            if let SettingKey::ModelField { model, field } = assignment.key {
                want.set_field(&model, field, field.parse_value(&assignment.value).unwrap())
                    .unwrap();
            }
        }
        let after = Properties::parse(edited.as_bytes().to_vec()).unwrap();
        let got = Models::parse(after.get(MODELS_KEY).unwrap()).unwrap();
        assert_eq!(got.to_lines(), want.to_lines(), "{edited}");
    }

    #[test]
    fn setting_a_model_field_changes_only_its_line() {
        for eol in ["\n", "\r\n"] {
            let text = LAYOUT.replace('\n', eol);
            let edited = apply(&text, &["models.tiny.batchSize=8"]);
            assert_eq!(edited, text.replace("\"batchSize\": 1", "\"batchSize\": 8"), "{eol:?}");
            let changed = text.lines().zip(edited.lines()).filter(|(a, b)| a != b).count();
            assert_eq!(changed, 1, "{edited}");
            assert_models_edited(&text, &["models.tiny.batchSize=8"], &edited);
        }
    }

    #[test]
    fn adding_a_model_field_inserts_one_line_with_the_same_indentation() {
        for eol in ["\n", "\r\n"] {
            let text = LAYOUT.replace('\n', eol);
            let edited = apply(&text, &["models.tiny.maxBatchDelay=5"]);
            let last = format!("      \"batchSize\": 1\\{eol}");
            let added = format!("      \"batchSize\": 1,\\{eol}      \"maxBatchDelay\": 5\\{eol}");
            assert_eq!(edited, text.replace(&last, &added), "{eol:?}");
            assert_eq!(edited.lines().count(), text.lines().count() + 1);
            assert_models_edited(&text, &["models.tiny.maxBatchDelay=5"], &edited);
        }
    }

    #[test]
    fn several_model_fields_and_properties_in_one_call() {
        let sets = [
            "models.tiny.minWorkers=2",
            "a=2",
            "models.tiny.maxBatchDelay=5",
            "models.tiny.marName=t.mar",
            "models.tiny.maxBatchDelay=7",
        ];
        let edited = apply(LAYOUT, &sets);
        let want = LAYOUT
            .replace("a=1", "a=2")
            .replace("\"minWorkers\": 1", "\"minWorkers\": 2")
            .replace("tiny.mar", "t.mar")
            .replace(
                "\"batchSize\": 1\\",
                "\"batchSize\": 1,\\\n      \"maxBatchDelay\": 7\\",
            );
        assert_eq!(edited, want);
        assert_models_edited(LAYOUT, &sets, &edited);
    }

    #[test]
    fn a_one_line_models_value_stays_one_line() {
        let text = "models={\"tiny\":{\"1.0\":{\"batchSize\":1}}}\n";
        let edited = apply(text, &["models.tiny.batchSize=8"]);
        assert_eq!(edited, "models={\"tiny\":{\"1.0\":{\"batchSize\":8}}}\n");
        let text = "models = {\"tiny\": {\"1.0\": {\"batchSize\": 1, \"marName\": \"t.mar\"}}}";
        let edited = apply(text, &["models.tiny.minWorkers=3"]);
        assert_eq!(
            edited,
            "models = {\"tiny\": {\"1.0\": {\"batchSize\": 1, \"marName\": \"t.mar\", \"minWorkers\": 3}}}"
        );
    }

    #[test]
    fn the_default_version_is_the_one_edited_in_place() {
        let text =
            "models={\"m\": {\"1.0\": {\"batchSize\": 1}, \"2.0\": {\"defaultVersion\": true, \"batchSize\": 1}}}\n";
        let edited = apply(text, &["models.m.batchSize=4"]);
        assert_eq!(
            edited,
            "models={\"m\": {\"1.0\": {\"batchSize\": 1}, \"2.0\": {\"defaultVersion\": true, \"batchSize\": 4}}}\n"
        );
    }

    #[test]
    fn falls_back_to_re_rendering_what_it_cannot_edit_in_place() {
        let cases: [(&str, &[&str]); 6] = [
            // a properties escape in the value
            (
                "models={\"tiny\"\\: {\"1.0\": {\"batchSize\": 1}}}\n",
                &["models.tiny.batchSize=8"],
            ),
            (
                "models={\"tiny\": {\"1.0\": {\"batchSize\": \\u0031}}}\n",
                &["models.tiny.batchSize=8"],
            ),
            // a continuation inside a JSON string
            (
                "models={\"tiny\": {\"1.0\": {\"marName\": \"t\\\n  .mar\", \"batchSize\": 1}}}\n",
                &["models.tiny.batchSize=8"],
            ),
            // a field to add with no layout to copy
            (LAYOUT_ONE_FIELD, &["models.tiny.maxBatchDelay=5"]),
            // a value that needs escaping
            (LAYOUT, &["models.tiny.batchSize=2", "models.tiny.marName=\u{e9}.mar"]),
            // the value begins on a later line than the key
            (
                "models\\\n  ={\"tiny\": {\"1.0\": {\"batchSize\": 1}}}\n",
                &["models.tiny.batchSize=8"],
            ),
        ];
        for (text, sets) in cases {
            let edited = apply(text, sets);
            assert!(edited.contains("{\\\n  \"tiny\": {\\\n"), "not re-rendered: {edited}");
            assert_models_edited(text, sets, &edited);
        }
    }

    #[test]
    fn unknown_model_reports_the_models_line() {
        let mut props = Properties::parse(b"x=1\nmodels={\"tiny\": {\"1.0\": {}}}\n".to_vec()).unwrap();
        let error = apply_assignments(&mut props, &["models.big.batchSize=2".parse().unwrap()]).unwrap_err();
        assert!(matches!(error, ApplyError::Models { line: 2, .. }), "{error}");
    }
}
