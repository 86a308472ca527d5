//! Search spaces: the parameters a study may change, each with a finite,
//! ordered list of levels (its domain), a default (TorchServe's own, which
//! may follow the machine: `"cpus"`), where its value lands (`target.rs`:
//! a `config.properties` key, a field of the model in `models={…}`, the
//! server's environment, its log level), whether it changes hot (management
//! API) or cold (restart), and an optional condition under which it matters
//! (`when = "batch_size > 1"`).
//!
//! Strategies see a point as one level index per parameter; this module
//! turns points into what they set (`Realization`) and reads which levels a
//! deployment runs now (`running_levels`), so a move is hot whenever the
//! running config already has the point's cold values. It is pure: no I/O
//! besides reading the file, no server.

mod file;
mod target;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::machine::logical_cpus;
pub use file::{load_space, load_spaces, parse_space, parse_space_for, Machine, SpaceError};
pub use target::{same_value, Current, Realization, Running, RunningGateway, Target, LOG_LEVELS};

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Text(_) => None,
        }
    }
}

/// How a parameter changes on a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Apply {
    /// Through the management API (re-register or scale): no restart.
    Hot,
    /// Read at start: needs a restart.
    Cold,
}

/// A comparison that decides whether a parameter matters.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub parameter: String,
    pub op: String,
    pub value: f64,
}

impl Condition {
    fn holds(&self, value: &Value) -> bool {
        let Some(x) = value.as_f64() else {
            return false;
        };
        match self.op.as_str() {
            ">" => x > self.value,
            ">=" => x >= self.value,
            "<" => x < self.value,
            "<=" => x <= self.value,
            "==" => x == self.value,
            "!=" => x != self.value,
            _ => unreachable!("validated when parsed"),
        }
    }
}

/// One knob.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub levels: Vec<Value>,
    pub default_level: usize,
    /// Where its value lands (one parameter may set several keys).
    pub targets: Vec<Target>,
    pub apply: Apply,
    pub when: Option<Condition>,
}

/// A point of the space: one level index per parameter, in space order.
pub type Point = Vec<usize>;

/// The parameters of one study.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub parameters: Vec<Parameter>,
}

impl Space {
    pub fn dimensions(&self) -> usize {
        self.parameters.len()
    }

    /// Levels per parameter.
    pub fn sizes(&self) -> Vec<usize> {
        self.parameters.iter().map(|p| p.levels.len()).collect()
    }

    /// Number of distinct points (before conditions merge some).
    pub fn cardinality(&self) -> u128 {
        self.sizes().iter().map(|&n| n as u128).product()
    }

    pub fn default_point(&self) -> Point {
        self.normalize(&self.parameters.iter().map(|p| p.default_level).collect::<Vec<_>>())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.parameters.iter().position(|p| p.name == name)
    }

    /// Whether parameter `index` matters at `point`.
    pub fn is_active(&self, point: &[usize], index: usize) -> bool {
        let Some(condition) = &self.parameters[index].when else {
            return true;
        };
        let Some(other) = self.index_of(&condition.parameter) else {
            return true;
        };
        condition.holds(&self.parameters[other].levels[point[other]])
    }

    /// The point with every inactive parameter at its default, so points
    /// that differ only where it does not matter compare equal.
    pub fn normalize(&self, point: &[usize]) -> Point {
        point
            .iter()
            .enumerate()
            .map(|(index, &level)| {
                if self.is_active(point, index) {
                    level
                } else {
                    self.parameters[index].default_level
                }
            })
            .collect()
    }

    /// Parameter name → value at `point`.
    pub fn values(&self, point: &[usize]) -> BTreeMap<String, Value> {
        self.parameters
            .iter()
            .zip(point)
            .map(|(p, &level)| (p.name.clone(), p.levels[level].clone()))
            .collect()
    }

    /// What `point` sets, by destination (`{model}` filled in). With
    /// `from`, a parameter at its default level leaves a target that is
    /// unset there unset (TorchServe's default is that level): the config
    /// stays minimal, and an unchanged setting never costs a restart.
    pub fn realize(&self, point: &[usize], model: &str, from: Option<&Running<'_>>) -> Result<Realization, String> {
        let mut realization = Realization::default();
        for (parameter, &level) in self.parameters.iter().zip(point) {
            let value = &parameter.levels[level];
            for target in &parameter.targets {
                let stays_unset = level == parameter.default_level
                    && from.is_some_and(|running| running.value_of(target) == Current::Unset);
                if stays_unset {
                    continue;
                }
                match target {
                    Target::Config(_) => realization.assignments.push(
                        target
                            .assignment(model, value)
                            .expect("a config target")
                            .map_err(|e| format!("parameter '{}': {e}", parameter.name))?,
                    ),
                    Target::Env(name) => {
                        realization.environment.insert(name.clone(), value.to_string());
                    }
                    Target::LogLevel => realization.log_level = Some(value.to_string()),
                    Target::GatewayEnv(name) => {
                        realization.gateway_environment.insert(name.clone(), value.to_string());
                    }
                    Target::GatewayConfig(template) => realization
                        .gateway_settings
                        .push((template.replace("{model}", model), value.clone())),
                }
            }
        }
        Ok(realization)
    }

    /// The level each parameter runs at now: `Some(level)` when the
    /// deployment's value is one of the levels (an unset value runs at
    /// TorchServe's default, the parameter's default level), `None` when it
    /// is off the grid or unknown.
    pub fn running_levels(&self, running: &Running<'_>) -> Vec<Option<usize>> {
        self.parameters
            .iter()
            .map(|parameter| {
                let mut level = None;
                for (index, target) in parameter.targets.iter().enumerate() {
                    let here = match running.value_of(target) {
                        Current::Unset => Some(parameter.default_level),
                        Current::Set(text) => parameter.levels.iter().position(|l| same_value(l, &text)),
                        Current::Unknown => None,
                    };
                    if index == 0 {
                        level = here;
                    } else if level != here {
                        return None;
                    }
                }
                level
            })
            .collect()
    }

    /// Whether moving from what runs now (`running`, per parameter; None:
    /// unknown) to `to` needs a restart: some cold parameter differs.
    pub fn needs_restart_from(&self, running: &[Option<usize>], to: &[usize]) -> bool {
        self.parameters
            .iter()
            .enumerate()
            .any(|(i, p)| p.apply == Apply::Cold && running.get(i).copied().flatten() != Some(to[i]))
    }

    /// Whether moving from `from` to `to` needs a restart.
    pub fn needs_restart(&self, from: &[usize], to: &[usize]) -> bool {
        self.parameters
            .iter()
            .enumerate()
            .any(|(i, p)| p.apply == Apply::Cold && from[i] != to[i])
    }

    /// Whether any hot parameter differs between `from` and `to`.
    pub fn hot_change(&self, from: &[Option<usize>], to: &[usize]) -> bool {
        self.parameters
            .iter()
            .enumerate()
            .any(|(i, p)| p.apply == Apply::Hot && from.get(i).copied().flatten() != Some(to[i]))
    }

    /// The cold part of a point (hot levels blanked): points with equal cold
    /// keys run on one server start.
    pub fn cold_key(&self, point: &[usize]) -> Vec<Option<usize>> {
        self.parameters
            .iter()
            .zip(point)
            .map(|(p, &level)| (p.apply == Apply::Cold).then_some(level))
            .collect()
    }

    /// Indices of the cold parameters.
    pub fn cold_dimensions(&self) -> Vec<usize> {
        (0..self.dimensions())
            .filter(|&i| self.parameters[i].apply == Apply::Cold)
            .collect()
    }

    /// A readable `name=value …` rendering of a point.
    pub fn describe(&self, point: &[usize]) -> String {
        self.parameters
            .iter()
            .zip(point)
            .enumerate()
            .filter(|(i, _)| self.is_active(point, *i))
            .map(|(_, (p, &level))| format!("{}={}", p.name, p.levels[level]))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = r#"
[[parameter]]
name = "batch_size"
kind = "pow2"
min = 1
max = 8
default = 1
target = "models.{model}.batchSize"
apply = "hot"

[[parameter]]
name = "max_batch_delay"
kind = "int"
values = [5, 20, 50]
default = 50
target = "models.{model}.maxBatchDelay"
apply = "hot"
when = "batch_size > 1"

[[parameter]]
name = "netty"
kind = "int"
min = 1
max = 4
default = 2
target = "number_of_netty_threads"
apply = "cold"
"#;

    #[test]
    fn points_normalize_and_render() {
        let space = parse_space(SPACE, "test.toml").unwrap();
        assert_eq!(space.sizes(), vec![4, 3, 4]);
        assert_eq!(space.default_point(), vec![0, 2, 1]);
        assert_eq!(
            space.normalize(&[0, 0, 3]),
            vec![0, 2, 3],
            "delay is inactive at batch size 1"
        );
        assert_eq!(space.normalize(&[1, 0, 3]), vec![1, 0, 3]);
        let realization = space.realize(&[2, 1, 3], "tiny", None).unwrap();
        let assignments: Vec<String> = realization.assignments.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            assignments,
            vec![
                "models.tiny.batchSize=4",
                "models.tiny.maxBatchDelay=20",
                "number_of_netty_threads=4"
            ]
        );
        assert!(space.needs_restart(&[0, 0, 0], &[0, 0, 1]));
        assert!(!space.needs_restart(&[0, 0, 0], &[3, 2, 0]));
        assert_eq!(space.describe(&[0, 1, 0]), "batch_size=1 netty=1");
    }
}
