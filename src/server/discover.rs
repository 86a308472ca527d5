//! Reading a TorchServe deployment as it is, for `servetune init`: its
//! config file, model store, models, addresses, token authorization and key
//! file, whether a TorchServe runs on it now and how it was started (a
//! systemd unit, or a plain process), CPU or GPU, and sample requests that
//! ship with a model. Reads only: it never changes the deployment.

use std::path::{Path, PathBuf};

use super::endpoints::Endpoints;
use super::process::is_alive;
use crate::config::{self, Models, Properties, MODELS_KEY};

/// The class TorchServe's JVM runs.
const MODEL_SERVER_CLASS: &str = "org.pytorch.serve.ModelServer";

/// A TorchServe running on the deployment's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningServer {
    pub pid: i32,
    /// Its working directory (where it writes `key_file.json`).
    pub cwd: PathBuf,
    /// The systemd unit it runs in, if any.
    pub systemd_unit: Option<String>,
    /// The `--model-store` it was started with.
    pub model_store: Option<PathBuf>,
}

/// What `init` found.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub config: PathBuf,
    pub properties: Properties,
    pub endpoints: Endpoints,
    /// Models of `models={…}` and `load_models`, in that order, deduplicated.
    pub models: Vec<String>,
    pub model_store: Option<PathBuf>,
    pub running: Option<RunningServer>,
    pub gpus: usize,
    pub cpus: i64,
}

/// Why a deployment cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Unusable(String),
}

/// Reads the deployment whose config is `config`.
pub fn discover(config: &Path) -> Result<Deployment, DiscoverError> {
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let (_, properties) = config::read_properties(&config)?;
    let endpoints = Endpoints::from_properties(&properties);
    let models = models_of(&properties);
    let running = running_on(&config);
    let config_dir = config.parent().unwrap_or(Path::new("/")).to_path_buf();
    let model_store = properties
        .get("model_store")
        .map(|s| resolve(&config_dir, s.trim()))
        .or_else(|| running.as_ref().and_then(|r| r.model_store.clone()))
        .or_else(|| Some(config_dir.join("model-store")).filter(|p| p.is_dir()));
    let gpus = properties
        .get("number_of_gpu")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(visible_gpus);
    Ok(Deployment {
        config,
        properties,
        endpoints,
        models,
        model_store,
        running,
        gpus,
        cpus: crate::machine::logical_cpus(),
    })
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Model names from `models={…}` and `load_models` (`name=archive.mar`,
/// `archive.mar`, `name`; `all` names none).
pub fn models_of(properties: &Properties) -> Vec<String> {
    let mut names: Vec<String> = properties
        .get(MODELS_KEY)
        .and_then(|m| Models::parse(m).ok())
        .map(|m| m.model_names().map(str::to_string).collect())
        .unwrap_or_default();
    for entry in properties.get("load_models").unwrap_or("").split(',') {
        let entry = entry.trim();
        if entry.is_empty() || entry.eq_ignore_ascii_case("all") {
            continue;
        }
        let name = match entry.split_once('=') {
            Some((name, _)) => name.trim().to_string(),
            None => Path::new(entry)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| entry.to_string()),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// GPUs `nvidia-smi -L` lists (0 without one).
fn visible_gpus() -> usize {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        })
}

/// A TorchServe JVM started with `-f <config>` (what `torchserve
/// --ts-config` passes), with its working directory and systemd unit.
fn running_on(config: &Path) -> Option<RunningServer> {
    let wanted = config.canonicalize().ok()?;
    procfs::process::all_processes()
        .ok()?
        .filter_map(Result::ok)
        .find_map(|process| {
            let cmdline = process.cmdline().ok()?;
            if !cmdline.iter().any(|a| a == MODEL_SERVER_CLASS) || !is_alive(process.pid) {
                return None;
            }
            let argument = |flag: &str| {
                cmdline
                    .iter()
                    .position(|a| a == flag)
                    .and_then(|i| cmdline.get(i + 1))
                    .map(PathBuf::from)
            };
            let cwd = process.cwd().ok()?;
            let config_arg = argument("-f")?;
            let config_arg = if config_arg.is_absolute() {
                config_arg
            } else {
                cwd.join(config_arg)
            };
            if config_arg.canonicalize().ok()? != wanted {
                return None;
            }
            Some(RunningServer {
                pid: process.pid,
                systemd_unit: systemd_unit(process.pid),
                model_store: argument("-s").map(|s| if s.is_absolute() { s } else { cwd.join(s) }),
                cwd,
            })
        })
}

/// The `.service` unit of a process, from its cgroup (cgroup v2 or v1).
pub fn systemd_unit(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_of_cgroup(&text)
}

fn unit_of_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.rsplit(':').next())
        .flat_map(|path| path.split('/'))
        .rfind(|segment| segment.ends_with(".service") && !segment.starts_with("user@"))
        .map(str::to_string)
}

/// Files that look like sample requests for `model`: beside its archive or
/// the config (`<dir>/bodies/<model>/`, `<dir>/samples/<model>/`,
/// `<store>/<model>-samples/`), or inside the archive's `sample*` entries
/// extracted by the caller. Returns the first that exists.
pub fn sample_requests(model: &str, config_dir: &Path, model_store: Option<&Path>) -> Option<PathBuf> {
    let mut candidates = vec![
        config_dir.join("bodies").join(model),
        config_dir.join("samples").join(model),
        config_dir.join(format!("{model}-samples")),
    ];
    if let Some(store) = model_store {
        candidates.push(store.join(format!("{model}-samples")));
        candidates.push(store.join("samples").join(model));
        if let Some(parent) = store.parent() {
            candidates.push(parent.join("bodies").join(model));
            candidates.push(parent.join("samples").join(model));
        }
    }
    candidates.into_iter().find(|dir| {
        std::fs::read_dir(dir)
            .map(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_come_from_both_properties() {
        let props = Properties::parse(
            b"load_models=tiny.mar,big=resnet.mar,all\nmodels={\"tiny\": {\"1.0\": {\"marName\": \"tiny.mar\"}}, \"extra\": {\"1\": {}}}\n"
                .to_vec(),
        )
        .unwrap();
        assert_eq!(models_of(&props), vec!["tiny", "extra", "big"]);
    }

    #[test]
    fn a_systemd_unit_is_read_from_the_cgroup() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/torchserve.service\n"),
            Some("torchserve.service".into())
        );
        assert_eq!(
            unit_of_cgroup("12:pids:/system.slice/ts-prod.service\n1:name=systemd:/system.slice/ts-prod.service\n"),
            Some("ts-prod.service".into())
        );
        assert_eq!(unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"), None);
        assert_eq!(unit_of_cgroup("0::/\n"), None);
    }

    #[test]
    fn samples_are_found_beside_the_store_or_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("model-store");
        std::fs::create_dir_all(&store).unwrap();
        assert_eq!(sample_requests("tiny", dir.path(), Some(&store)), None);
        let bodies = dir.path().join("bodies/tiny");
        std::fs::create_dir_all(&bodies).unwrap();
        assert_eq!(
            sample_requests("tiny", dir.path(), Some(&store)),
            None,
            "an empty folder is no sample"
        );
        std::fs::write(bodies.join("a.bin"), b"x").unwrap();
        assert_eq!(sample_requests("tiny", dir.path(), Some(&store)), Some(bodies));
    }
}
