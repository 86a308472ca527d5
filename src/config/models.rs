//! Structured editing of TorchServe's `models={…}` property: a JSON object
//! `{ model: { version: { field: value } } }` holding per-model settings.
//!
//! Edits keep the object's key order (serde_json `preserve_order`). They are
//! written back in place in the user's layout where `models_text` can, and
//! otherwise pretty-printed as continuation lines ([`Models::to_lines`]), so
//! the value stays readable in `config.properties`.

use serde_json::{Map, Value};

/// The property key TorchServe reads per-model settings from.
pub const MODELS_KEY: &str = "models";

/// A per-model field servetune knows how to set, and the JSON type it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelField {
    MinWorkers,
    MaxWorkers,
    BatchSize,
    MaxBatchDelay,
    ResponseTimeout,
    StartupTimeout,
    DefaultVersion,
    MarName,
}

impl ModelField {
    pub const ALL: [ModelField; 8] = [
        ModelField::MinWorkers,
        ModelField::MaxWorkers,
        ModelField::BatchSize,
        ModelField::MaxBatchDelay,
        ModelField::ResponseTimeout,
        ModelField::StartupTimeout,
        ModelField::DefaultVersion,
        ModelField::MarName,
    ];

    /// The field's name in the JSON, as TorchServe spells it.
    pub fn name(self) -> &'static str {
        match self {
            ModelField::MinWorkers => "minWorkers",
            ModelField::MaxWorkers => "maxWorkers",
            ModelField::BatchSize => "batchSize",
            ModelField::MaxBatchDelay => "maxBatchDelay",
            ModelField::ResponseTimeout => "responseTimeout",
            ModelField::StartupTimeout => "startupTimeout",
            ModelField::DefaultVersion => "defaultVersion",
            ModelField::MarName => "marName",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == name)
    }

    /// Whether the management API changes this field on a running server
    /// (re-registering the model, or scaling its workers).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ModelField::BatchSize | ModelField::MaxBatchDelay | ModelField::MinWorkers | ModelField::MaxWorkers
        )
    }

    /// Parses a command-line value into the JSON this field holds.
    pub fn parse_value(self, text: &str) -> Result<Value, String> {
        match self {
            ModelField::DefaultVersion => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("{} takes true or false, not '{text}'", self.name())),
            },
            ModelField::MarName => {
                if text.is_empty() {
                    Err("marName must not be empty".to_string())
                } else {
                    Ok(Value::String(text.to_string()))
                }
            }
            _ => {
                let minimum = match self {
                    ModelField::BatchSize | ModelField::ResponseTimeout | ModelField::StartupTimeout => 1,
                    _ => 0,
                };
                match text.parse::<u64>() {
                    Ok(number) if number >= minimum && number <= i32::MAX as u64 => Ok(Value::from(number)),
                    _ => Err(format!(
                        "{} takes a whole number from {minimum} to {}, not '{text}'",
                        self.name(),
                        i32::MAX
                    )),
                }
            }
        }
    }
}

/// Why a `models=` value could not be read or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelsError {
    #[error("models= is not valid JSON: {0}")]
    Json(String),
    #[error("models= must be a JSON object of models, each an object of versions")]
    Shape,
    #[error("model '{model}' is not in models= (models there: {known})")]
    UnknownModel { model: String, known: String },
    #[error("model '{model}' has several versions and none with \"defaultVersion\": true")]
    NoDefaultVersion { model: String },
}

/// The parsed `models=` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Models {
    root: Map<String, Value>,
}

impl Models {
    pub fn parse(value: &str) -> Result<Self, ModelsError> {
        let parsed: Value = serde_json::from_str(value).map_err(|e| ModelsError::Json(e.to_string()))?;
        let Value::Object(root) = parsed else {
            return Err(ModelsError::Shape);
        };
        let well_formed = root.values().all(|versions| {
            versions
                .as_object()
                .is_some_and(|versions| versions.values().all(Value::is_object))
        });
        if !well_formed {
            return Err(ModelsError::Shape);
        }
        Ok(Self { root })
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.root.keys().map(String::as_str)
    }

    /// The version servetune edits for `model`: the one marked
    /// `defaultVersion`, or the only one.
    pub fn default_version(&self, model: &str) -> Result<&str, ModelsError> {
        let versions = self.versions(model)?;
        let marked = versions
            .iter()
            .find(|(_, fields)| fields.get("defaultVersion") == Some(&Value::Bool(true)));
        match marked {
            Some((version, _)) => Ok(version),
            None if versions.len() == 1 => Ok(versions.keys().next().expect("one version")),
            None => Err(ModelsError::NoDefaultVersion {
                model: model.to_string(),
            }),
        }
    }

    /// A field of the model's default version.
    pub fn field(&self, model: &str, field: ModelField) -> Result<Option<&Value>, ModelsError> {
        let version = self.default_version(model)?;
        Ok(self.versions(model)?[version].get(field.name()))
    }

    /// Every field of the model's default version (None: no such model).
    pub fn default_version_fields(&self, model: &str) -> Option<Map<String, Value>> {
        let version = self.default_version(model).ok()?;
        self.versions(model).ok()?.get(version)?.as_object().cloned()
    }

    /// Sets a field of the model's default version.
    pub fn set_field(&mut self, model: &str, field: ModelField, value: Value) -> Result<(), ModelsError> {
        let version = self.default_version(model)?.to_string();
        let fields = self
            .root
            .get_mut(model)
            .and_then(Value::as_object_mut)
            .and_then(|versions| versions.get_mut(&version))
            .and_then(Value::as_object_mut)
            .expect("default_version checked the model and version exist");
        fields.insert(field.name().to_string(), value);
        Ok(())
    }

    /// The JSON, pretty-printed, one element per line (for continuation lines).
    pub fn to_lines(&self) -> Vec<String> {
        serde_json::to_string_pretty(&self.root)
            .expect("a JSON map always serialises")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn versions(&self, model: &str) -> Result<&Map<String, Value>, ModelsError> {
        self.root
            .get(model)
            .and_then(Value::as_object)
            .ok_or_else(|| ModelsError::UnknownModel {
                model: model.to_string(),
                known: self.root.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_VERSIONS: &str =
        r#"{"tiny": {"1.0": {"batchSize": 1}, "2.0": {"defaultVersion": true, "batchSize": 2}}}"#;

    #[test]
    fn edits_the_default_version_and_keeps_key_order() {
        let mut models = Models::parse(TWO_VERSIONS).unwrap();
        models.set_field("tiny", ModelField::BatchSize, Value::from(8)).unwrap();
        let reparsed = Models::parse(&models.to_lines().concat()).unwrap();
        assert_eq!(
            reparsed.field("tiny", ModelField::BatchSize).unwrap(),
            Some(&Value::from(8))
        );
        let json = models.to_lines().concat();
        assert!(json.find("\"1.0\"").unwrap() < json.find("\"2.0\"").unwrap());
        assert!(json.find("defaultVersion").unwrap() < json.find("batchSize\": 8").unwrap());
    }

    #[test]
    fn a_single_version_is_the_default() {
        let models = Models::parse(r#"{"m": {"3": {}}}"#).unwrap();
        assert_eq!(models.default_version("m").unwrap(), "3");
    }

    #[test]
    fn errors_name_the_problem() {
        let models = Models::parse(r#"{"a": {"1": {}, "2": {}}}"#).unwrap();
        assert_eq!(
            models.default_version("a"),
            Err(ModelsError::NoDefaultVersion { model: "a".into() })
        );
        assert!(matches!(
            models.default_version("b"),
            Err(ModelsError::UnknownModel { .. })
        ));
        assert!(matches!(Models::parse("{"), Err(ModelsError::Json(_))));
        assert_eq!(Models::parse(r#"{"a": 1}"#), Err(ModelsError::Shape));
    }

    #[test]
    fn field_values_are_checked() {
        assert_eq!(ModelField::BatchSize.parse_value("8"), Ok(Value::from(8)));
        assert!(ModelField::BatchSize.parse_value("0").is_err());
        assert!(ModelField::MinWorkers.parse_value("-1").is_err());
        assert!(ModelField::DefaultVersion.parse_value("yes").is_err());
        assert_eq!(ModelField::MinWorkers.parse_value("0"), Ok(Value::from(0)));
    }
}
