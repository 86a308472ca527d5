//! Search spaces: the parameters a study may change, each with a finite,
//! ordered list of levels (its domain), a default, where its value lands
//! (`config.properties` key or a field of a model in `models={…}`), whether
//! it changes hot (management API) or cold (restart), and an optional
//! condition under which it matters (`when = "batch_size > 1"`).
//!
//! Strategies see a point as one level index per parameter; this module
//! turns points into candidates' assignments. It is pure: no I/O besides
//! reading the file, no server.

mod file;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use file::{load_space, parse_space, SpaceError};

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
    fn as_f64(&self) -> Option<f64> {
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
    /// Keys it sets: `number_of_netty_threads` or `models.{model}.batchSize`.
    pub targets: Vec<String>,
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

    /// `KEY=VALUE` assignments that realise `point` (`{model}` filled in).
    pub fn assignments(&self, point: &[usize], model: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (parameter, &level) in self.parameters.iter().zip(point) {
            for target in &parameter.targets {
                out.push(format!(
                    "{}={}",
                    target.replace("{model}", model),
                    parameter.levels[level]
                ));
            }
        }
        out
    }

    /// Whether moving from `from` to `to` needs a restart.
    pub fn needs_restart(&self, from: &[usize], to: &[usize]) -> bool {
        self.parameters
            .iter()
            .enumerate()
            .any(|(i, p)| p.apply == Apply::Cold && from[i] != to[i])
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
        assert_eq!(
            space.assignments(&[2, 1, 3], "tiny"),
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
