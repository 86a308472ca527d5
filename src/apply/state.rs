//! A deployment's whole state as servetune controls it — the bytes of
//! `config.properties` and the environment servetune starts the server with
//! — and how to get from one state to another: nothing, a live change
//! (scale workers, or re-register the model with another batch size or
//! delay), or a restart. States are compared by parsed value (the effective
//! properties, each model's fields), never by "is this the original file",
//! so a move is live whenever only live settings differ.
//!
//! `realize` turns a point of a search space into the state that runs it:
//! the original config with the point's assignments (edited losslessly),
//! its log level named in `vmargs`, its environment variables added.
//!
//! In a stack the state also holds the gateway's `tensorzero.toml` and
//! environment. The gateway reads both only at start, and restarts in a
//! fraction of a second without touching TorchServe: `gateway_changes` says
//! whether a move must restart it, apart from TorchServe's transition.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{
    apply_assignments, Assignment, GatewayToml, ModelField, Models, Properties, SettingKey, TomlScalar, MODELS_KEY,
};
use crate::server::logging;
use crate::space::{Current, Running, RunningGateway, Space, Target, Value};
use crate::trial::Switch;

/// What servetune sets for the server: its config file and environment
/// (and, in a stack, the gateway's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deployment {
    pub config: Vec<u8>,
    /// Variables set on top of servetune's own environment at start.
    pub environment: BTreeMap<String, String>,
    /// The gateway in front of TorchServe, in a stack.
    pub gateway: Option<GatewayState>,
}

/// The gateway's part of a stack's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayState {
    /// The bytes of its `tensorzero.toml`.
    pub config: Vec<u8>,
    /// Variables set on top of servetune's own environment at its start.
    pub environment: BTreeMap<String, String>,
}

impl GatewayState {
    pub fn parsed(&self) -> Result<GatewayToml, String> {
        GatewayToml::parse(&self.config, Path::new("tensorzero.toml")).map_err(|e| e.to_string())
    }
}

/// How to move between two states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The server already runs it (the file may still differ in layout).
    Nothing,
    /// Live model-field changes through the management API.
    Live {
        assignments: Vec<Assignment>,
        switch: Switch,
    },
    /// Something read only at start differs.
    Restart,
}

impl Transition {
    pub fn switch(&self) -> Switch {
        match self {
            Transition::Nothing => Switch::None,
            Transition::Live { switch, .. } => *switch,
            Transition::Restart => Switch::Restart,
        }
    }
}

impl Deployment {
    pub fn properties(&self) -> Result<Properties, String> {
        Properties::parse(self.config.clone()).map_err(|e| e.to_string())
    }

    /// What runs now, for a space's `running_levels` (`gateway`: this
    /// state's gateway config, parsed).
    pub fn running<'a>(
        &self,
        properties: &'a Properties,
        gateway: Option<&'a GatewayToml>,
        model: &'a str,
    ) -> Running<'a> {
        let with_ours = |extra: &BTreeMap<String, String>| {
            let mut environment: BTreeMap<String, String> = std::env::vars().collect();
            environment.extend(extra.clone());
            environment
        };
        Running {
            properties: Some(properties),
            environment: with_ours(&self.environment),
            log_level: logging::level_of(properties.get("vmargs")),
            model,
            gateway: match (gateway, &self.gateway) {
                (Some(config), Some(state)) => Some(RunningGateway {
                    config,
                    environment: with_ours(&state.environment),
                }),
                _ => None,
            },
        }
    }

    /// The level each parameter of `space` runs at in this state (None where unknown).
    pub fn running_levels(&self, space: &Space, model: &str) -> Vec<Option<usize>> {
        let gateway = self.gateway.as_ref().map(GatewayState::parsed).transpose();
        match (self.properties(), gateway) {
            (Ok(props), Ok(gateway)) => space.running_levels(&self.running(&props, gateway.as_ref(), model)),
            _ => vec![None; space.dimensions()],
        }
    }

    /// A target's value in this state.
    pub fn current(&self, target: &Target, model: &str) -> Current {
        let gateway = self.gateway.as_ref().map(GatewayState::parsed).transpose();
        match (self.properties(), gateway) {
            (Ok(props), Ok(gateway)) => self.running(&props, gateway.as_ref(), model).value_of(target),
            _ => Current::Unknown,
        }
    }

    /// Whether moving from `self` to `to` must restart the gateway: its
    /// environment or its config (by value) differs.
    pub fn gateway_changes(&self, to: &Deployment) -> bool {
        match (&self.gateway, &to.gateway) {
            (Some(from), Some(to)) => {
                from.environment != to.environment
                    || match (from.parsed(), to.parsed()) {
                        (Ok(a), Ok(b)) => !a.same_as(&b),
                        _ => from.config != to.config,
                    }
            }
            (None, None) => false,
            _ => true,
        }
    }

    /// The way from `self` (what runs) to `to`.
    pub fn transition_to(&self, to: &Deployment) -> Transition {
        if self.environment != to.environment {
            return Transition::Restart;
        }
        let (Ok(from_props), Ok(to_props)) = (self.properties(), to.properties()) else {
            return Transition::Restart;
        };
        let others = |props: &Properties| -> BTreeMap<String, String> {
            props
                .effective()
                .into_iter()
                .filter(|(key, _)| *key != MODELS_KEY)
                .map(|(key, value)| (key.to_string(), value.trim().to_string()))
                .collect()
        };
        if others(&from_props) != others(&to_props) {
            return Transition::Restart;
        }
        live_model_changes(from_props.get(MODELS_KEY), to_props.get(MODELS_KEY))
    }

    /// The state that runs `point`: `original` with the point realized.
    pub fn realize(
        original: &Deployment,
        space: &Space,
        point: &[usize],
        model: &str,
        config_dir: &Path,
    ) -> Result<Deployment, String> {
        let mut props = original.properties()?;
        let gateway_config = original.gateway.as_ref().map(GatewayState::parsed).transpose()?;
        let realization = space.realize(
            point,
            model,
            Some(&original.running(&props, gateway_config.as_ref(), model)),
        )?;
        apply_assignments(&mut props, &realization.assignments).map_err(|e| e.to_string())?;
        if let Some(level) = &realization.log_level {
            match logging::vmargs_with(props.get("vmargs"), level, config_dir) {
                Some(vmargs) => props.set("vmargs", &vmargs),
                None => {
                    props.remove("vmargs");
                }
            }
        }
        let mut environment = original.environment.clone();
        environment.extend(realization.environment);
        let gateway = realize_gateway(
            original,
            gateway_config,
            realization.gateway_environment,
            realization.gateway_settings,
        )?;
        Ok(Deployment {
            config: props.into_bytes(),
            environment,
            gateway,
        })
    }
}

/// The gateway's state with a point's gateway settings applied.
fn realize_gateway(
    original: &Deployment,
    config: Option<GatewayToml>,
    environment: BTreeMap<String, String>,
    settings: Vec<(String, Value)>,
) -> Result<Option<GatewayState>, String> {
    let (Some(state), Some(mut config)) = (original.gateway.clone(), config) else {
        if let Some((key, _)) = settings.first() {
            return Err(format!(
                "gateway.toml.{key}: this target has no gateway in front (tune a stack)"
            ));
        }
        if let Some(name) = environment.keys().next() {
            return Err(format!(
                "gateway.env.{name}: this target has no gateway in front (tune a stack)"
            ));
        }
        return Ok(None);
    };
    for (key, value) in settings {
        let scalar = match value {
            Value::Bool(b) => TomlScalar::Bool(b),
            Value::Int(i) => TomlScalar::Int(i),
            Value::Float(x) => TomlScalar::Float(x),
            Value::Text(t) => TomlScalar::Text(t),
        };
        config.set(&key, scalar).map_err(|e| format!("gateway.toml.{e}"))?;
    }
    let mut with_point = state.environment;
    with_point.extend(environment);
    Ok(Some(GatewayState {
        config: config.to_bytes(),
        environment: with_point,
    }))
}

/// Per model, the default version's fields with the live ones set aside.
fn split_live(models: &Models) -> BTreeMap<String, (serde_json::Value, Vec<(ModelField, serde_json::Value)>)> {
    let mut out = BTreeMap::new();
    for model in models.model_names() {
        let mut rest = models.default_version_fields(model).unwrap_or_default();
        let mut live = Vec::new();
        for field in ModelField::ALL.into_iter().filter(|f| f.is_live()) {
            if let Some(value) = rest.remove(field.name()) {
                live.push((field, value));
            }
        }
        out.insert(model.to_string(), (serde_json::Value::Object(rest), live));
    }
    out
}

fn live_model_changes(from: Option<&str>, to: Option<&str>) -> Transition {
    let parse = |text: Option<&str>| Models::parse(text.unwrap_or("{}"));
    let (Ok(from), Ok(to)) = (parse(from), parse(to)) else {
        return Transition::Restart;
    };
    let (from, to) = (split_live(&from), split_live(&to));
    if from.keys().ne(to.keys()) {
        return Transition::Restart;
    }
    let mut assignments = Vec::new();
    let mut register = false;
    for (model, (to_rest, to_live)) in &to {
        let (from_rest, from_live) = &from[model];
        if from_rest != to_rest {
            return Transition::Restart;
        }
        for field in ModelField::ALL.into_iter().filter(|f| f.is_live()) {
            let value_in = |fields: &[(ModelField, serde_json::Value)]| {
                fields.iter().find(|(f, _)| *f == field).map(|(_, v)| v.clone())
            };
            let (old, new) = (value_in(from_live), value_in(to_live));
            if old == new {
                continue;
            }
            let Some(new) = new else {
                // A live field removed: TorchServe's default applies at start.
                return Transition::Restart;
            };
            register |= matches!(field, ModelField::BatchSize | ModelField::MaxBatchDelay);
            assignments.push(Assignment {
                key: SettingKey::ModelField {
                    model: model.clone(),
                    field,
                },
                value: new.to_string(),
            });
        }
    }
    if assignments.is_empty() {
        Transition::Nothing
    } else {
        Transition::Live {
            assignments,
            switch: if register { Switch::Register } else { Switch::Scale },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(text: &str) -> Deployment {
        Deployment {
            config: text.as_bytes().to_vec(),
            ..Deployment::default()
        }
    }

    const BASE: &str = "number_of_netty_threads=2\nmodels={\"tiny\": {\"1.0\": {\"marName\": \"tiny.mar\", \"batchSize\": 1, \"minWorkers\": 1, \"maxWorkers\": 1}}}\n";

    #[test]
    fn states_compare_by_value() {
        let base = deployment(BASE);
        let relaid = deployment(&BASE.replace("number_of_netty_threads=2", "# a comment\nnumber_of_netty_threads = 2"));
        assert_eq!(base.transition_to(&relaid), Transition::Nothing);
        let batch = deployment(&BASE.replace("\"batchSize\": 1", "\"batchSize\": 8"));
        match base.transition_to(&batch) {
            Transition::Live { assignments, switch } => {
                assert_eq!(switch, Switch::Register);
                assert_eq!(assignments[0].to_string(), "models.tiny.batchSize=8");
            }
            other => panic!("{other:?}"),
        }
        let workers = deployment(&BASE.replace(
            "\"minWorkers\": 1, \"maxWorkers\": 1",
            "\"minWorkers\": 2, \"maxWorkers\": 2",
        ));
        assert_eq!(base.transition_to(&workers).switch(), Switch::Scale);
        let netty = deployment(&BASE.replace("threads=2", "threads=4"));
        assert_eq!(base.transition_to(&netty), Transition::Restart);
        let timeout = deployment(&BASE.replace("\"batchSize\": 1", "\"batchSize\": 1, \"responseTimeout\": 5"));
        assert_eq!(base.transition_to(&timeout), Transition::Restart);
        let mut threads = base.clone();
        threads.environment.insert("OMP_NUM_THREADS".into(), "1".into());
        assert_eq!(base.transition_to(&threads), Transition::Restart);
    }
}
#[cfg(test)]
mod gateway_tests {
    use super::*;

    const SPACE: &str = "[[parameter]]\nname = \"threads\"\nkind = \"int\"\nvalues = [1, 2]\ndefault = 2\n\
                         target = \"gateway.env.TOKIO_WORKER_THREADS\"\napply = \"hot\"\n\
                         [[parameter]]\nname = \"debug\"\nkind = \"bool\"\ndefault = false\n\
                         target = \"gateway.toml.gateway.debug\"\napply = \"hot\"\n";

    fn stack() -> Deployment {
        Deployment {
            config: b"number_of_netty_threads=2\n".to_vec(),
            environment: BTreeMap::new(),
            gateway: Some(GatewayState {
                config: b"# routes\n[gateway]\nobservability.enabled = false\n".to_vec(),
                environment: [("RUST_LOG".to_string(), "warn".to_string())].into(),
            }),
        }
    }

    #[test]
    fn a_gateway_point_changes_only_the_gateway() {
        let space = crate::space::parse_space_for(SPACE, "tz.toml", crate::space::Machine { cpus: 2 }).unwrap();
        let original = stack();
        let same = Deployment::realize(&original, &space, &space.default_point(), "m", Path::new("/x")).unwrap();
        assert!(!original.gateway_changes(&same), "defaults that are unset stay unset");
        let point = Deployment::realize(&original, &space, &[0, 1], "m", Path::new("/x")).unwrap();
        assert_eq!(
            original.transition_to(&point),
            Transition::Nothing,
            "TorchServe runs on"
        );
        assert!(original.gateway_changes(&point));
        let gateway = point.gateway.as_ref().unwrap();
        assert_eq!(
            String::from_utf8(gateway.config.clone()).unwrap(),
            "# routes\n[gateway]\nobservability.enabled = false\ndebug = true\n"
        );
        assert_eq!(gateway.environment["TOKIO_WORKER_THREADS"], "1");
        assert_eq!(
            gateway.environment["RUST_LOG"], "warn",
            "the stack's own variables stay"
        );
        assert_eq!(point.running_levels(&space, "m"), vec![Some(0), Some(1)]);

        let alone = Deployment {
            gateway: None,
            ..original
        };
        let e = Deployment::realize(&alone, &space, &[0, 1], "m", Path::new("/x")).unwrap_err();
        assert!(e.contains("no gateway in front"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// The bundled example runs TorchServe's cold defaults already (netty and
    /// client threads = 2 on two cores, no log4j2 config, no OMP_NUM_THREADS):
    /// moving it to the space's default point is a live change, and the
    /// defaults it already has by being unset are not written.
    #[test]
    fn the_examples_move_to_the_defaults_is_live() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let space = crate::space::parse_space_for(
            &std::fs::read_to_string(root.join("search-spaces/torchserve-cpu.toml")).unwrap(),
            "torchserve-cpu.toml",
            crate::space::Machine { cpus: 2 },
        )
        .unwrap();
        let original = Deployment {
            config: std::fs::read(root.join("examples/deployment/config.properties")).unwrap(),
            ..Deployment::default()
        };
        let defaults = Deployment::realize(&original, &space, &space.default_point(), "tiny", Path::new("/x")).unwrap();
        assert_eq!(original.transition_to(&defaults).switch(), Switch::Scale);
        let text = String::from_utf8(defaults.config).unwrap();
        assert!(!text.contains("async_logging") && !text.contains("vmargs"), "{text}");
        assert!(defaults.environment.is_empty());
    }
}
