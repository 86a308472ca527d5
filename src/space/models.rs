//! A space for a study of several models on one TorchServe: every parameter
//! of the study's model (a `models.{model}.FIELD` target, the runtime) is
//! instantiated once per model — `resnet50.batch_size`, `bert.batch_size`
//! — next to the server-wide ones, which stay as they are. Conditions
//! follow their model (`bert.max_batch_delay` matters when
//! `bert.batch_size > 1`), and each instance remembers its model, so a
//! strategy can move one field of every model in one step (`family`).

use super::domain::{Condition, Parameter, Space};
use super::target::Target;

impl Space {
    /// The space instantiated for `models` (unchanged for one model: its
    /// parameters keep their names, and `{model}` is filled in when a point
    /// is realised).
    #[must_use]
    pub fn for_models(&self, models: &[String]) -> Space {
        if models.len() < 2 {
            return self.clone();
        }
        let per_model: Vec<&str> = self
            .parameters
            .iter()
            .filter(|p| is_per_model(p))
            .map(|p| p.name.as_str())
            .collect();
        let mut parameters = Vec::new();
        for parameter in &self.parameters {
            if !is_per_model(parameter) {
                parameters.push(parameter.clone());
                continue;
            }
            for model in models {
                parameters.push(instance(parameter, model, &per_model));
            }
        }
        Space { parameters }
    }

    /// Indices of the parameters that are one field of different models
    /// (`resnet50.batch_size`, `bert.batch_size`): groups of two or more.
    pub fn families(&self) -> Vec<Vec<usize>> {
        let mut families: Vec<(String, Vec<usize>)> = Vec::new();
        for (index, parameter) in self.parameters.iter().enumerate() {
            let Some(field) = family(parameter) else { continue };
            match families.iter_mut().find(|(name, _)| name == field) {
                Some((_, members)) => members.push(index),
                None => families.push((field.to_string(), vec![index])),
            }
        }
        families
            .into_iter()
            .map(|(_, members)| members)
            .filter(|members| members.len() > 1)
            .collect()
    }
}

/// The field an instance of a model parameter stands for (`batch_size`).
pub fn family(parameter: &Parameter) -> Option<&str> {
    let model = parameter.model.as_deref()?;
    parameter.name.strip_prefix(model)?.strip_prefix('.')
}

/// Whether a parameter sets something of the study's model.
fn is_per_model(parameter: &Parameter) -> bool {
    parameter.targets.iter().any(|target| match target {
        Target::Config(template) | Target::GatewayConfig(template) => template.contains("{model}"),
        Target::Runtime(model) => model.is_none(),
        Target::Env(_) | Target::LogLevel | Target::GatewayEnv(_) => false,
    })
}

/// `parameter` for `model`: named `model.name`, its targets filled in, its
/// condition on the same model's instance when that is one too.
fn instance(parameter: &Parameter, model: &str, per_model: &[&str]) -> Parameter {
    let targets = parameter
        .targets
        .iter()
        .map(|target| match target {
            Target::Config(template) => Target::Config(template.replace("{model}", model)),
            Target::GatewayConfig(template) => Target::GatewayConfig(template.replace("{model}", model)),
            Target::Runtime(None) => Target::Runtime(Some(model.to_string())),
            other => other.clone(),
        })
        .collect();
    let when = parameter.when.as_ref().map(|condition| Condition {
        parameter: if per_model.contains(&condition.parameter.as_str()) {
            format!("{model}.{}", condition.parameter)
        } else {
            condition.parameter.clone()
        },
        ..condition.clone()
    });
    Parameter {
        name: format!("{model}.{}", parameter.name),
        targets,
        when,
        model: Some(model.to_string()),
        ..parameter.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Properties;
    use crate::space::{parse_space, Running};

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
values = [5, 50]
default = 50
target = "models.{model}.maxBatchDelay"
apply = "hot"
when = "batch_size > 1"

[[parameter]]
name = "netty"
kind = "int"
values = [1, 2]
default = 2
target = "number_of_netty_threads"
apply = "cold"

[[parameter]]
name = "runtime"
kind = "choice"
values = ["eager", "onnx"]
default = "eager"
target = "runtime"
apply = "cold"
"#;

    fn models() -> Vec<String> {
        vec!["a".to_string(), "b".to_string()]
    }

    #[test]
    fn model_fields_are_instantiated_per_model_beside_server_wide_ones() {
        let space = parse_space(SPACE, "s.toml").unwrap();
        assert_eq!(space.for_models(&["a".to_string()]), space, "one model: unchanged");
        let both = space.for_models(&models());
        let names: Vec<&str> = both.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a.batch_size",
                "b.batch_size",
                "a.max_batch_delay",
                "b.max_batch_delay",
                "netty",
                "a.runtime",
                "b.runtime"
            ]
        );
        assert_eq!(both.families(), vec![vec![0, 1], vec![2, 3], vec![5, 6]]);
        // b's delay follows b's batch size, not a's.
        let point = both.normalize(&[2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(point, vec![2, 0, 0, 1, 0, 0, 0]);
        let next = crate::search::neighbours(&both, &both.default_point());
        assert_eq!(
            next[0],
            vec![1, 1, 1, 1, 1, 0, 0],
            "both batch sizes up in one move, first"
        );
        assert!(next.contains(&vec![1, 0, 1, 1, 1, 0, 0]), "and each model alone");
    }

    #[test]
    fn a_point_sets_each_models_own_fields_and_one_load_models() {
        let both = parse_space(SPACE, "s.toml").unwrap().for_models(&models());
        let props = Properties::parse(b"load_models=a=a.mar,b=b.mar\n".to_vec()).unwrap();
        let running = Running {
            properties: Some(&props),
            model: "a",
            ..Running::default()
        };
        let realization = both.realize(&[3, 0, 0, 1, 0, 1, 1], "a", Some(&running)).unwrap();
        let set: Vec<String> = realization.assignments.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            set,
            [
                "models.a.batchSize=8",
                "models.a.maxBatchDelay=5",
                "number_of_netty_threads=1",
                "load_models=a=a-onnx.mar,b=b-onnx.mar"
            ]
        );
        assert_eq!(both.running_levels(&running)[5], Some(0), "a runs eager");
    }
}
