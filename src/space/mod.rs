//! Search spaces: the parameters a study may change, each with a finite,
//! ordered list of levels (its domain), a default (TorchServe's own, which
//! may follow the machine: `"cpus"`), where its value lands (`target.rs`:
//! a `config.properties` key, a field of the model in `models={…}`, the
//! server's environment, its log level, the model's runtime: which
//! archive — eager, TorchScript, ONNX — serves it, `runtime.rs`), whether it changes hot (management
//! API) or cold (restart), and an optional condition under which it matters
//! (`when = "batch_size > 1"`).
//!
//! Strategies see a point as one level index per parameter; this module
//! turns points into what they set (`Realization`) and reads which levels a
//! deployment runs now (`running_levels`), so a move is hot whenever the
//! running config already has the point's cold values. It is pure: no I/O
//! besides reading the file, no server.

mod domain;
mod file;
mod models;
pub mod runtime;
mod target;
mod value;

pub use crate::config::LOG_LEVELS;
pub use crate::machine::logical_cpus;
pub use domain::{Apply, Condition, Parameter, Point, Space};
pub use file::{load_space, load_spaces, parse_space, parse_space_for, Machine, SpaceError};
pub use models::family;
pub use target::{same_value, Current, Realization, Running, RunningGateway, Target};
pub use value::Value;

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
