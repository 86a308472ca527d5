//! Reading and validating search-space files (`search-spaces/*.toml`).
//!
//! ```toml
//! [[parameter]]
//! name = "batch_size"
//! kind = "pow2"            # int | pow2 | float | choice | bool
//! min = 1
//! max = 32                 # or: values = [1, 2, 4] (int, float, choice)
//! default = 1
//! target = "models.{model}.batchSize"   # or a list; see target.rs for kinds
//! apply = "hot"            # hot | cold
//! when = "batch_size > 1"  # optional
//! ```
//! `min`, `max` and `default` of int and pow2 parameters may be `"cpus"`: the
//! number of logical CPUs of the machine servetune runs on (TorchServe sizes
//! its default workers and netty threads by it). A default that is not a level
//! becomes the nearest level. Every level is checked against what its targets
//! accept, and whether the target really is hot or cold. Errors name the file
//! and the line of the offending parameter.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::domain::{Apply, Condition, Parameter, Space};
use super::target::Target;
use super::value::Value;

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct SpaceError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    #[serde(default)]
    parameter: Vec<Spanned<ParameterFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Targets {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Int,
    Pow2,
    Float,
    Choice,
    Bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterFile {
    name: String,
    kind: Kind,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    step: Option<i64>,
    /// Float: number of levels between min and max.
    levels: Option<usize>,
    /// Float: spread levels geometrically.
    #[serde(default)]
    log: bool,
    values: Option<Vec<toml::Value>>,
    default: toml::Value,
    target: Targets,
    apply: Apply,
    when: Option<String>,
    /// Free text for the reader of the file.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

/// Most levels a parameter may have (a guard against typos like max = 1e9).
const MAX_LEVELS: usize = 4096;

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn to_value(value: &toml::Value, kind: Kind) -> Result<Value, String> {
    match (kind, value) {
        (Kind::Int | Kind::Pow2, toml::Value::Integer(i)) => Ok(Value::Int(*i)),
        (Kind::Float, toml::Value::Float(x)) => Ok(Value::Float(*x)),
        (Kind::Float, toml::Value::Integer(i)) => Ok(Value::Float(*i as f64)),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::Choice, toml::Value::String(s)) => Ok(Value::Text(s.clone())),
        (Kind::Choice, toml::Value::Integer(i)) => Ok(Value::Int(*i)),
        (Kind::Choice, toml::Value::Float(x)) => Ok(Value::Float(*x)),
        (kind, other) => Err(format!("{other} is not a {kind:?} value").to_lowercase()),
    }
}

/// The machine a space is resolved for (`"cpus"` in min/max/default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub cpus: i64,
}

/// `"cpus"` as a number; other values as they are.
fn resolve_cpus(value: &toml::Value, machine: Machine) -> toml::Value {
    match value {
        toml::Value::String(s) if s == "cpus" => toml::Value::Integer(machine.cpus),
        other => other.clone(),
    }
}

fn levels_of(p: &ParameterFile, machine: Machine) -> Result<Vec<Value>, String> {
    let resolved = |v: &Option<toml::Value>| v.as_ref().map(|v| resolve_cpus(v, machine));
    let (min, max) = (resolved(&p.min), resolved(&p.max));
    if let Some(values) = &p.values {
        if p.kind == Kind::Bool || p.kind == Kind::Pow2 {
            return Err("values = […] is for int, float and choice; bool and pow2 take min/max".into());
        }
        return values.iter().map(|v| to_value(v, p.kind)).collect();
    }
    let int = |v: &Option<toml::Value>, name: &str| match v {
        Some(toml::Value::Integer(i)) => Ok(*i),
        Some(other) => Err(format!("{name} = {other} is not a whole number")),
        None => Err(format!("{name} is required (or give values = […])")),
    };
    let float = |v: &Option<toml::Value>, name: &str| match v {
        Some(toml::Value::Float(x)) => Ok(*x),
        Some(toml::Value::Integer(i)) => Ok(*i as f64),
        Some(other) => Err(format!("{name} = {other} is not a number")),
        None => Err(format!("{name} is required (or give values = […])")),
    };
    match p.kind {
        Kind::Bool => Ok(vec![Value::Bool(false), Value::Bool(true)]),
        Kind::Choice => Err("a choice needs values = […]".into()),
        Kind::Int => {
            let (min, max, step) = (int(&min, "min")?, int(&max, "max")?, p.step.unwrap_or(1));
            if step < 1 {
                return Err("step must be at least 1".into());
            }
            if max < min || (max - min) / step >= MAX_LEVELS as i64 {
                return Err(format!("min {min}, max {max}, step {step} give no levels or too many"));
            }
            Ok((0..=(max - min) / step).map(|i| Value::Int(min + i * step)).collect())
        }
        Kind::Pow2 => {
            let (min, max) = (int(&min, "min")?, int(&max, "max")?);
            if min < 1 {
                return Err("pow2 needs min ≥ 1".into());
            }
            let mut levels = Vec::new();
            let mut value = 1i64;
            while value <= max {
                if value >= min {
                    levels.push(Value::Int(value));
                }
                value *= 2;
            }
            Ok(levels)
        }
        Kind::Float => {
            let (min, max) = (float(&min, "min")?, float(&max, "max")?);
            let count = p.levels.unwrap_or(8);
            if min.is_nan() || max.is_nan() || min >= max || !(2..=MAX_LEVELS).contains(&count) || (p.log && min <= 0.0)
            {
                return Err(format!(
                    "min {min}, max {max}, levels {count}: need min < max, 2 ≤ levels, and min > 0 with log"
                ));
            }
            Ok((0..count)
                .map(|i| {
                    let t = i as f64 / (count - 1) as f64;
                    Value::Float(if p.log {
                        min * (max / min).powf(t)
                    } else {
                        min + (max - min) * t
                    })
                })
                .collect())
        }
    }
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [parameter, op, value] = parts.as_slice() else {
        return Err(format!(
            "when = \"{text}\": expected NAME OP NUMBER, e.g. \"batch_size > 1\""
        ));
    };
    if !matches!(*op, ">" | ">=" | "<" | "<=" | "==" | "!=") {
        return Err(format!("when = \"{text}\": unknown operator '{op}'"));
    }
    let value = value
        .parse::<f64>()
        .map_err(|_| format!("when = \"{text}\": '{value}' is not a number"))?;
    Ok(Condition {
        parameter: parameter.to_string(),
        op: op.to_string(),
        value,
    })
}

/// The level nearest to `default` (its own when it is a level).
fn default_level_of(levels: &[Value], default: &Value) -> Option<usize> {
    if let Some(exact) = levels.iter().position(|level| level == default) {
        return Some(exact);
    }
    let x = default.as_f64()?;
    levels
        .iter()
        .enumerate()
        .filter_map(|(i, level)| level.as_f64().map(|l| (i, (l - x).abs())))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Checks that the declared `apply` matches what the targets need, and that
/// every level is a value each target accepts.
fn check_targets(targets: &[Target], apply: Apply, levels: &[Value]) -> Result<(), String> {
    for target in targets {
        if let Target::Config(key) = target {
            let is_property = matches!(key.parse(), Ok(crate::config::SettingKey::Property(_)));
            if is_property && !crate::config::assignment::is_known_property(key) {
                return Err(format!(
                    "target '{key}': TorchServe 0.12 has no such property (a typo?); a model field is models.{{model}}.FIELD"
                ));
            }
        }
        if apply == Apply::Hot && target.needs_restart() {
            return Err(format!(
                "target '{target}' is read only when TorchServe starts: declare apply = \"cold\""
            ));
        }
        for level in levels {
            target.check_value(level).map_err(|e| format!("level {level}: {e}"))?;
        }
    }
    Ok(())
}

/// Parses a space file's text for this machine; `file` names it in errors.
pub fn parse_space(text: &str, file: &str) -> Result<Space, SpaceError> {
    parse_space_for(
        text,
        file,
        Machine {
            cpus: crate::machine::logical_cpus(),
        },
    )
}

/// Parses a space file's text for `machine`; `file` names it in errors.
pub fn parse_space_for(text: &str, file: &str, machine: Machine) -> Result<Space, SpaceError> {
    let error = |line: usize, reason: String| SpaceError {
        file: file.to_string(),
        line,
        reason,
    };
    let parsed: SpaceFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(text, span));
        error(line, e.message().to_string())
    })?;
    if parsed.parameter.is_empty() {
        return Err(error(1, "no [[parameter]] in the file".into()));
    }
    let mut parameters: Vec<Parameter> = Vec::new();
    let mut lines = Vec::new();
    for spanned in &parsed.parameter {
        let line = line_of(text, spanned.span());
        let p = spanned.get_ref();
        let fail = |reason: String| error(line, format!("parameter '{}': {reason}", p.name));
        if parameters.iter().any(|q| q.name == p.name) {
            return Err(fail("defined twice".into()));
        }
        let levels = levels_of(p, machine).map_err(fail)?;
        if levels.is_empty() {
            return Err(fail("its domain is empty".into()));
        }
        let machine_default = matches!(&p.default, toml::Value::String(s) if s == "cpus");
        let default =
            to_value(&resolve_cpus(&p.default, machine), p.kind).map_err(|e| fail(format!("default: {e}")))?;
        let default_level = if machine_default {
            default_level_of(&levels, &default)
        } else {
            levels.iter().position(|level| *level == default)
        }
        .ok_or_else(|| fail(format!("default {default} is outside its domain")))?;
        let target_texts = match &p.target {
            Targets::One(t) => vec![t.clone()],
            Targets::Many(ts) => ts.clone(),
        };
        if target_texts.is_empty() {
            return Err(fail("target names no key".into()));
        }
        let targets = target_texts
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        check_targets(&targets, p.apply, &levels).map_err(fail)?;
        let when = p.when.as_deref().map(parse_condition).transpose().map_err(fail)?;
        parameters.push(Parameter {
            name: p.name.clone(),
            levels,
            default_level,
            targets,
            apply: p.apply,
            when,
            model: None,
        });
        lines.push(line);
    }
    for (parameter, line) in parameters.iter().zip(&lines) {
        if let Some(condition) = &parameter.when {
            if !parameters.iter().any(|p| p.name == condition.parameter) {
                return Err(error(
                    *line,
                    format!(
                        "parameter '{}': when names unknown parameter '{}'",
                        parameter.name, condition.parameter
                    ),
                ));
            }
        }
    }
    Ok(Space { parameters })
}

/// Reads and validates a space file.
pub fn load_space(path: &Path) -> Result<Space, SpaceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpaceError {
        file: path.display().to_string(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse_space(&text, &path.display().to_string())
}

/// Reads several space files as one space; a parameter name may appear in
/// only one of them.
pub fn load_spaces(paths: &[std::path::PathBuf]) -> Result<Space, SpaceError> {
    let mut parameters: Vec<(Parameter, &std::path::PathBuf)> = Vec::new();
    for path in paths {
        for parameter in load_space(path)?.parameters {
            if let Some((_, first)) = parameters.iter().find(|(p, _)| p.name == parameter.name) {
                return Err(SpaceError {
                    file: path.display().to_string(),
                    line: 0,
                    reason: format!("parameter '{}' is also in {}", parameter.name, first.display()),
                });
            }
            parameters.push((parameter, path));
        }
    }
    Ok(Space {
        parameters: parameters.into_iter().map(|(p, _)| p).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse_space(text, "s.toml").unwrap_err().to_string()
    }

    const OK: &str = "[[parameter]]\nname = \"b\"\nkind = \"int\"\nmin = 1\nmax = 3\ndefault = 1\ntarget = \"job_queue_size\"\napply = \"cold\"\n";

    #[test]
    fn kinds_give_levels() {
        let space = parse_space(
            &format!(
                "{OK}\n[[parameter]]\nname = \"p\"\nkind = \"pow2\"\nmin = 2\nmax = 20\ndefault = 4\ntarget = \"models.{{model}}.batchSize\"\napply = \"hot\"\n\
                 \n[[parameter]]\nname = \"f\"\nkind = \"float\"\nmin = 1\nmax = 100\nlevels = 3\nlog = true\ndefault = 10.0\ntarget = \"metrics_mode\"\napply = \"cold\"\n\
                 \n[[parameter]]\nname = \"c\"\nkind = \"choice\"\nvalues = [\"a\", \"b\"]\ndefault = \"b\"\ntarget = \"metrics_mode\"\napply = \"cold\"\n"
            ),
            "s.toml",
        )
        .unwrap();
        assert_eq!(space.sizes(), vec![3, 4, 3, 2]);
        assert_eq!(
            space.parameters[1].levels,
            vec![Value::Int(2), Value::Int(4), Value::Int(8), Value::Int(16)]
        );
        assert_eq!(space.parameters[2].default_level, 1);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = error_of(&format!("{OK}\n[[parameter]]\nname = \"x\"\nkind = \"int\"\nmin = 5\nmax = 1\ndefault = 1\ntarget = \"a\"\napply = \"hot\"\n"));
        assert!(e.starts_with("s.toml:10:") && e.contains("'x'"), "{e}");
        let e = error_of(&OK.replace("default = 1", "default = 7"));
        assert!(e.starts_with("s.toml:1:") && e.contains("outside its domain"), "{e}");
        let e = error_of(&OK.replace("apply = \"cold\"", "apply = \"cold\"\nbogus = 1"));
        assert!(e.contains("s.toml:") && e.contains("bogus"), "{e}");
        let e = error_of(&OK.replace("kind = \"int\"\nmin = 1\nmax = 3", "kind = \"int\"\nvalues = []"));
        assert!(e.contains("domain is empty"), "{e}");
        let e = error_of(&format!("{OK}when = \"zz > 1\"\n"));
        assert!(e.contains("unknown parameter 'zz'"), "{e}");
        let e = error_of(&OK.replace("job_queue_size", "models.x"));
        assert!(e.contains("target"), "{e}");
        let e = error_of(&OK.replace("job_queue_size", "job_queue_sise"));
        assert!(e.starts_with("s.toml:1:") && e.contains("no such property"), "{e}");
        assert!(error_of("").contains("no [[parameter]]"));
    }

    #[test]
    fn spaces_merge_and_a_name_may_be_in_one_only() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search-spaces");
        let both = [root.join("torchserve-cpu.toml"), root.join("tensorzero.toml")];
        let space = load_spaces(&both).unwrap();
        let threads = space
            .index_of("gateway_worker_threads")
            .expect("the gateway's parameters follow");
        assert!(space.parameters[threads].targets[0].is_gateway());
        assert!(space.index_of("batch_size").is_some());
        let twice = [root.join("tensorzero.toml"), root.join("tensorzero.toml")];
        let e = load_spaces(&twice).unwrap_err().to_string();
        assert!(
            e.contains("'gateway_worker_threads' is also in") && e.contains("tensorzero.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_bundled_spaces_are_valid_and_follow_the_machine() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search-spaces");
        for (name, cpus) in [
            ("torchserve-cpu.toml", 2),
            ("torchserve-cpu.toml", 16),
            ("torchserve-gpu.toml", 4),
            ("tensorzero.toml", 2),
        ] {
            let text = std::fs::read_to_string(root.join(name)).unwrap();
            let space = parse_space_for(&text, name, Machine { cpus }).unwrap();
            if let Some(workers) = space.index_of("workers").filter(|_| name.contains("cpu")) {
                let p = &space.parameters[workers];
                let default = p.levels[p.default_level].as_f64().unwrap();
                assert_eq!(
                    default,
                    (cpus as f64).min(4.0),
                    "{name}: workers default to the CPUs (within the domain)"
                );
            }
            if let Some(threads) = space.index_of("threads_per_worker") {
                let p = &space.parameters[threads];
                assert_eq!(p.levels.last().and_then(Value::as_f64), Some(cpus as f64));
            }
        }
    }

    #[test]
    fn a_level_torchserve_refuses_or_a_wrong_apply_is_an_error() {
        let e = error_of(
            &OK.replace("min = 1\nmax = 3", "values = [-1, 2]")
                .replace("default = 1", "default = 2"),
        );
        assert!(e.contains("level -1") && e.contains("job_queue_size"), "{e}");
        let e = error_of(&OK.replace("apply = \"cold\"", "apply = \"hot\""));
        assert!(e.contains("read only when TorchServe starts"), "{e}");
        let e = error_of(
            &OK.replace("job_queue_size", "env.OMP_NUM_THREADS")
                .replace("min = 1\nmax = 3", "values = [0, 1]"),
        );
        assert!(e.contains("env.OMP_NUM_THREADS"), "{e}");
    }
}
