//! The space itself: parameters with their ordered levels, defaults,
//! targets, hot or cold application and conditions, and the points over
//! them (one level index per parameter): normalising, realising a point
//! into what it sets, and reading which levels a deployment runs now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Assignment;

use super::target::{same_value, Current, Realization, Running, Target};
use super::value::Value;

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
    /// In a study of several models, the model this instance of a model
    /// field belongs to (`models.rs`); None for server-wide parameters and
    /// in a study of one model.
    pub model: Option<String>,
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
        // Runtimes of several models fold into one `load_models` value.
        let mut load_models: Option<String> = None;
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
                    Target::Runtime(of) => {
                        let listed = load_models.take().unwrap_or_else(|| listed_models(from));
                        let with =
                            super::runtime::with_runtime(&listed, of.as_deref().unwrap_or(model), &value.to_string())
                                .map_err(|e| format!("parameter '{}': {e}", parameter.name))?;
                        load_models = Some(with);
                    }
                }
            }
        }
        if let Some(load_models) = load_models {
            realization.assignments.push(
                format!("load_models={load_models}")
                    .parse::<Assignment>()
                    .map_err(|e| format!("load_models: {e}"))?,
            );
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

/// `load_models` with the study model's entry pointing at the archive of
/// `value`'s runtime (from the running config's `load_models`).
/// The `load_models` value of the config a point starts from.
fn listed_models(from: Option<&Running<'_>>) -> String {
    from.and_then(|running| running.properties)
        .and_then(|properties| properties.get("load_models"))
        .unwrap_or("")
        .to_string()
}
