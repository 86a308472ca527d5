//! Where a parameter's value lands, and what a point of the space sets.
//!
//! A target is one of three kinds, written in a space file as a string:
//! - a `config.properties` key (`job_queue_size`) or a field of the study's
//!   model in `models={…}` (`models.{model}.batchSize`): edited in the file;
//! - `env.NAME`: an environment variable of the TorchServe process, which its
//!   workers inherit (`env.OMP_NUM_THREADS`: torch's intra-op threads per
//!   worker); set when servetune starts the server;
//! - `log4j.level`: TorchServe's own log level, through a log4j2 config that
//!   servetune writes and names in `vmargs` (see `server::logging`);
//! - `gateway.env.NAME` and `gateway.toml.KEY.PATH`: the TensorZero gateway
//!   in front of TorchServe (a stack study): a variable of its environment
//!   (`TOKIO_WORKER_THREADS`, `RUST_LOG`) or a key of its `tensorzero.toml`.
//!   The gateway reads both at start, and restarting it takes a fraction of
//!   a second while TorchServe runs on: for the study these are hot.
//!
//! - `runtime`: which archive of the study's model TorchServe loads
//!   (`eager` `<model>.mar`, `torchscript` `<model>-ts.mar`, `onnx`
//!   `<model>-onnx.mar`), through its `load_models` entry (`runtime.rs`); cold.
//!
//! This module only says what a point sets (`Realization`) and reads back
//! what a deployment runs now; `apply` and `server` make it so.

use std::collections::BTreeMap;
use std::fmt;

use super::runtime;
use super::value::Value;
use crate::config::{Assignment, GatewayToml, Properties, SettingKey, LOG_LEVELS};

/// Where one parameter's value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A properties key or `models.{model}.FIELD` (`{model}`: the study's model).
    Config(String),
    /// An environment variable of the server process.
    Env(String),
    /// TorchServe's frontend log level.
    LogLevel,
    /// An environment variable of the gateway process.
    GatewayEnv(String),
    /// A dotted key of the gateway's `tensorzero.toml` (`{model}`: the study's model).
    GatewayConfig(String),
    /// Which archive of a model is loaded (`load_models`): the study's
    /// model, or the named one (a parameter of one model in a study of several).
    Runtime(Option<String>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Config(key) => f.write_str(key),
            Target::Env(name) => write!(f, "env.{name}"),
            Target::LogLevel => f.write_str("log4j.level"),
            Target::GatewayEnv(name) => write!(f, "gateway.env.{name}"),
            Target::GatewayConfig(key) => write!(f, "gateway.toml.{key}"),
            Target::Runtime(None) => f.write_str("runtime"),
            Target::Runtime(Some(model)) => write!(f, "runtime.{model}"),
        }
    }
}

impl Target {
    /// Parses a space file's target string.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("gateway.env.") {
            return variable_name(name, text).map(Target::GatewayEnv);
        }
        if let Some(key) = text.strip_prefix("gateway.toml.") {
            let valid = key
                .split('.')
                .all(|part| !part.is_empty() && !part.contains(char::is_whitespace));
            if !valid {
                return Err(format!(
                    "'{text}': gateway.toml.KEY needs a dotted key of tensorzero.toml"
                ));
            }
            return Ok(Target::GatewayConfig(key.to_string()));
        }
        if text.starts_with("gateway.") {
            return Err(format!(
                "'{text}': a gateway target is gateway.env.NAME or gateway.toml.KEY"
            ));
        }
        if let Some(name) = text.strip_prefix("env.") {
            return variable_name(name, text).map(Target::Env);
        }
        if text == "log4j.level" {
            return Ok(Target::LogLevel);
        }
        if text == "runtime" {
            return Ok(Target::Runtime(None));
        }
        if text.starts_with("log4j.") {
            return Err(format!("'{text}': the only log4j target is log4j.level"));
        }
        match text.replace("{model}", "m").parse::<SettingKey>() {
            Ok(_) => Ok(Target::Config(text.to_string())),
            Err(e) => Err(format!("target '{text}': {e}")),
        }
    }

    /// The config assignment of `value` for `model` (config targets only).
    pub fn assignment(&self, model: &str, value: &Value) -> Option<Result<Assignment, String>> {
        let Target::Config(template) = self else {
            return None;
        };
        let key = template.replace("{model}", model);
        Some(
            format!("{key}={value}")
                .parse::<Assignment>()
                .map_err(|e| format!("{key}={value}: {e}")),
        )
    }

    /// Whether TorchServe reads this target's value only at start.
    pub fn needs_restart(&self) -> bool {
        match self {
            Target::Config(template) => {
                let Ok(key) = template.replace("{model}", "m").parse::<SettingKey>() else {
                    return true;
                };
                match key {
                    SettingKey::Property(_) => true,
                    SettingKey::ModelField { field, .. } => !field.is_live(),
                }
            }
            Target::Env(_) | Target::LogLevel | Target::Runtime(_) => true,
            // Only the gateway restarts; TorchServe keeps running, warm.
            Target::GatewayEnv(_) | Target::GatewayConfig(_) => false,
        }
    }

    /// Whether the value lands in the gateway (a stack study).
    pub fn is_gateway(&self) -> bool {
        matches!(self, Target::GatewayEnv(_) | Target::GatewayConfig(_))
    }

    /// Checks that `value` is one TorchServe accepts here.
    pub fn check_value(&self, value: &Value) -> Result<(), String> {
        match self {
            Target::Config(_) => {
                let readable = |e: String| e.replace("models.m.", "models.{model}.");
                let assignment = self
                    .assignment("m", value)
                    .expect("a config target")
                    .map_err(readable)?;
                match assignment.key {
                    SettingKey::ModelField { field, .. } => field
                        .parse_value(&assignment.value)
                        .map(drop)
                        .map_err(|e| readable(format!("{}: {e}", assignment.key))),
                    SettingKey::Property(_) => Ok(()),
                }
            }
            Target::Env(name) | Target::GatewayEnv(name) => {
                let text = value.to_string();
                if text.is_empty() || text.contains(['\n', '\r', '\0']) {
                    return Err(format!("{self}: '{text}' is not a usable value"));
                }
                let threads = name.ends_with("_NUM_THREADS") || name.ends_with("_WORKER_THREADS");
                if threads && !matches!(value, Value::Int(n) if *n >= 1) {
                    return Err(format!("{self} takes a whole number ≥ 1, not '{text}'"));
                }
                Ok(())
            }
            Target::GatewayConfig(_) => Ok(()),
            Target::Runtime(_) => match value {
                Value::Text(text) if runtime::RUNTIMES.contains(&text.as_str()) => Ok(()),
                other => Err(runtime::unknown(&other.to_string())),
            },
            Target::LogLevel => {
                let text = value.to_string();
                if LOG_LEVELS.contains(&text.as_str()) {
                    Ok(())
                } else {
                    Err(format!(
                        "log4j.level takes one of {}, not '{text}'",
                        LOG_LEVELS.join(", ")
                    ))
                }
            }
        }
    }
}

/// A variable name: letters, digits and '_', not starting with a digit.
fn variable_name(name: &str, text: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "'{text}': env.NAME needs a variable name (letters, digits, '_')"
        ))
    }
}

/// What a point sets, by destination.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Realization {
    /// Edits of `config.properties` (properties and model fields).
    pub assignments: Vec<Assignment>,
    /// The server's environment variables (set at start).
    pub environment: BTreeMap<String, String>,
    /// TorchServe's log level (set at start).
    pub log_level: Option<String>,
    /// The gateway's environment variables.
    pub gateway_environment: BTreeMap<String, String>,
    /// Keys of the gateway's `tensorzero.toml` (`{model}` filled in).
    pub gateway_settings: Vec<(String, Value)>,
}

/// What a deployment runs now, as far as a space's targets can see it.
#[derive(Debug, Clone, Default)]
pub struct Running<'a> {
    pub properties: Option<&'a Properties>,
    pub environment: BTreeMap<String, String>,
    /// None: a log4j2 config servetune does not manage.
    pub log_level: Option<String>,
    pub model: &'a str,
    /// The gateway in front (a stack), if any.
    pub gateway: Option<RunningGateway<'a>>,
}

/// What the gateway runs now.
#[derive(Debug, Clone)]
pub struct RunningGateway<'a> {
    pub config: &'a GatewayToml,
    /// Its whole environment (servetune's and the stack's).
    pub environment: BTreeMap<String, String>,
}

/// A target's value in a running deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Set to this text.
    Set(String),
    /// Not set: TorchServe runs at its own default.
    Unset,
    /// Cannot be told (no config read, a log4j2 config servetune did not write).
    Unknown,
}

impl Running<'_> {
    /// `target`'s current value.
    pub fn value_of(&self, target: &Target) -> Current {
        match target {
            Target::Env(name) => self.environment.get(name).cloned().map_or(Current::Unset, Current::Set),
            Target::LogLevel => self.log_level.clone().map_or(Current::Unknown, Current::Set),
            Target::Config(template) => self.config_value(template),
            Target::Runtime(model) => match self.properties {
                Some(properties) => runtime::runtime_in(
                    properties.get("load_models").unwrap_or(""),
                    model.as_deref().unwrap_or(self.model),
                )
                .map_or(Current::Unset, |r| Current::Set(r.to_string())),
                None => Current::Unknown,
            },
            Target::GatewayEnv(name) => match &self.gateway {
                Some(gateway) => gateway
                    .environment
                    .get(name)
                    .cloned()
                    .map_or(Current::Unset, Current::Set),
                None => Current::Unknown,
            },
            Target::GatewayConfig(template) => match &self.gateway {
                Some(gateway) => gateway
                    .config
                    .get(&template.replace("{model}", self.model))
                    .map_or(Current::Unset, Current::Set),
                None => Current::Unknown,
            },
        }
    }

    fn config_value(&self, template: &str) -> Current {
        let Some(properties) = self.properties else {
            return Current::Unknown;
        };
        let Ok(key) = template.replace("{model}", self.model).parse::<SettingKey>() else {
            return Current::Unknown;
        };
        match key {
            SettingKey::Property(key) => properties
                .get(&key)
                .map_or(Current::Unset, |v| Current::Set(v.trim().to_string())),
            SettingKey::ModelField { model, field } => {
                let Some(models) = properties.get(crate::config::MODELS_KEY) else {
                    return Current::Unset;
                };
                let Ok(models) = crate::config::Models::parse(models) else {
                    return Current::Unknown;
                };
                match models.field(&model, field) {
                    Ok(Some(serde_json::Value::String(s))) => Current::Set(s.clone()),
                    Ok(Some(other)) => Current::Set(other.to_string()),
                    Ok(None) => Current::Unset,
                    Err(_) => Current::Unknown,
                }
            }
        }
    }
}

/// Whether a level's value equals a value read from a file or environment.
pub fn same_value(level: &Value, text: &str) -> bool {
    match level {
        Value::Int(i) => text.trim().parse::<i64>().is_ok_and(|x| x == *i),
        Value::Float(f) => text.trim().parse::<f64>().is_ok_and(|x| x == *f),
        Value::Bool(b) => text.trim().eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Text(t) => t == text.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_kind() {
        assert_eq!(
            Target::parse("env.OMP_NUM_THREADS"),
            Ok(Target::Env("OMP_NUM_THREADS".into()))
        );
        assert_eq!(Target::parse("log4j.level"), Ok(Target::LogLevel));
        assert_eq!(
            Target::parse("models.{model}.batchSize"),
            Ok(Target::Config("models.{model}.batchSize".into()))
        );
        assert!(Target::parse("env.").is_err());
        assert!(Target::parse("env.1X").is_err());
        assert!(Target::parse("log4j.root").is_err());
        assert!(Target::parse("models.x").is_err());
        assert!(Target::parse("models.{model}.bogusField").is_err());
    }

    #[test]
    fn gateway_targets_parse_and_restart_only_the_gateway() {
        let threads = Target::parse("gateway.env.TOKIO_WORKER_THREADS").unwrap();
        assert_eq!(threads, Target::GatewayEnv("TOKIO_WORKER_THREADS".into()));
        let debug = Target::parse("gateway.toml.gateway.debug").unwrap();
        assert_eq!(debug, Target::GatewayConfig("gateway.debug".into()));
        assert_eq!(debug.to_string(), "gateway.toml.gateway.debug");
        assert!(!threads.needs_restart() && !debug.needs_restart() && threads.is_gateway());
        assert!(Target::parse("gateway.debug").unwrap_err().contains("gateway.env.NAME"));
        assert!(Target::parse("gateway.toml.a..b").is_err());
        assert!(Target::parse("gateway.env.1X").is_err());
        assert!(threads.check_value(&Value::Int(0)).is_err());
        assert!(threads.check_value(&Value::Int(2)).is_ok());

        let config = GatewayToml::parse(
            b"[gateway]\ndebug = true\n[models.gpt2]\nrouting = [\"ts\"]\n",
            std::path::Path::new("tz.toml"),
        )
        .unwrap();
        let running = Running {
            model: "gpt2",
            gateway: Some(RunningGateway {
                config: &config,
                environment: [("RUST_LOG".to_string(), "warn".to_string())].into(),
            }),
            ..Running::default()
        };
        let get = |t: &str| running.value_of(&Target::parse(t).unwrap());
        assert_eq!(get("gateway.toml.gateway.debug"), Current::Set("true".into()));
        assert_eq!(get("gateway.toml.models.{model}.timeouts.x"), Current::Unset);
        assert_eq!(get("gateway.env.RUST_LOG"), Current::Set("warn".into()));
        assert_eq!(get("gateway.env.TOKIO_WORKER_THREADS"), Current::Unset);
        let alone = Running::default();
        assert_eq!(alone.value_of(&threads), Current::Unknown, "no gateway: unknown");
    }

    #[test]
    fn the_runtime_target_reads_and_checks_load_models() {
        let runtime = Target::parse("runtime").unwrap();
        assert_eq!(runtime, Target::Runtime(None));
        assert_eq!(runtime.to_string(), "runtime");
        assert!(runtime.needs_restart(), "TorchServe reads load_models at start");
        assert!(runtime.check_value(&Value::Text("onnx".into())).is_ok());
        assert!(runtime.check_value(&Value::Text("tensorrt".into())).is_err());
        let props = Properties::parse(b"load_models=tiny=tiny-onnx.mar,bert.mar\n".to_vec()).unwrap();
        let running = |model| Running {
            properties: Some(&props),
            model,
            ..Running::default()
        };
        assert_eq!(running("tiny").value_of(&runtime), Current::Set("onnx".into()));
        assert_eq!(running("bert").value_of(&runtime), Current::Set("eager".into()));
        assert_eq!(running("gpt2").value_of(&runtime), Current::Unset);
    }

    #[test]
    fn restart_needs_follow_torchserve() {
        assert!(!Target::parse("models.{model}.batchSize").unwrap().needs_restart());
        assert!(!Target::parse("models.{model}.minWorkers").unwrap().needs_restart());
        assert!(Target::parse("models.{model}.responseTimeout").unwrap().needs_restart());
        assert!(Target::parse("number_of_netty_threads").unwrap().needs_restart());
        assert!(Target::parse("env.OMP_NUM_THREADS").unwrap().needs_restart());
        assert!(Target::LogLevel.needs_restart());
    }

    #[test]
    fn values_are_checked_against_what_torchserve_takes() {
        let workers = Target::parse("models.{model}.minWorkers").unwrap();
        assert!(workers.check_value(&Value::Int(2)).is_ok());
        let e = workers.check_value(&Value::Int(-1)).unwrap_err();
        assert!(e.contains("models.{model}.minWorkers"), "{e}");
        assert!(Target::parse("job_queue_size")
            .unwrap()
            .check_value(&Value::Int(0))
            .is_err());
        assert!(Target::parse("async_logging")
            .unwrap()
            .check_value(&Value::Bool(true))
            .is_ok());
        let threads = Target::parse("env.OMP_NUM_THREADS").unwrap();
        assert!(threads.check_value(&Value::Int(0)).is_err());
        assert!(Target::LogLevel.check_value(&Value::Text("info".into())).is_ok());
        assert!(Target::LogLevel.check_value(&Value::Text("loud".into())).is_err());
    }

    #[test]
    fn running_values_are_read_from_the_config() {
        let props = Properties::parse(
            b"number_of_netty_threads=4\nasync_logging=true\nmodels={\"tiny\": {\"1.0\": {\"batchSize\": 8, \"marName\": \"t.mar\"}}}\n".to_vec(),
        )
        .unwrap();
        let running = Running {
            properties: Some(&props),
            environment: [("OMP_NUM_THREADS".to_string(), "1".to_string())].into(),
            log_level: Some("debug".into()),
            model: "tiny",
            gateway: None,
        };
        let get = |t: &str| running.value_of(&Target::parse(t).unwrap());
        let set = |v: &str| Current::Set(v.into());
        assert_eq!(get("number_of_netty_threads"), set("4"));
        assert_eq!(get("job_queue_size"), Current::Unset);
        assert_eq!(get("async_logging"), set("true"), "a bool key reads like any other");
        assert_eq!(get("models.{model}.batchSize"), set("8"));
        assert_eq!(get("models.{model}.maxBatchDelay"), Current::Unset);
        assert_eq!(get("env.OMP_NUM_THREADS"), set("1"));
        assert_eq!(get("log4j.level"), set("debug"));
        assert!(same_value(&Value::Int(4), "4"));
        assert!(same_value(&Value::Bool(true), "true"));
        assert!(!same_value(&Value::Int(4), "four"));
    }
}
