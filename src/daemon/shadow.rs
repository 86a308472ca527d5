//! The shadow server and the way back to production: a copy of production's
//! `config.properties` on ports of its own (HTTP, gRPC, worker sockets),
//! served from the same model store by a TorchServe servetune starts, so a
//! study can load it while production serves untouched; and the reverse, a
//! recommended config brought back onto production's ports and paths.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::apply::state::Deployment;
use crate::config::Properties;
use crate::load::tls::Verification;
use crate::server::{logging, TargetSpec};

/// The properties that place a server: they differ between a shadow and
/// production and nothing else does.
pub const PLACEMENT_KEYS: [&str; 6] = [
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_port",
    "grpc_management_port",
    "initial_worker_port",
];

/// Files of a deployment's shadow.
pub struct ShadowFiles {
    pub dir: PathBuf,
    pub target: PathBuf,
    pub config: PathBuf,
}

impl ShadowFiles {
    pub fn of(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            target: dir.join("target.toml"),
            config: dir.join("config.properties"),
        }
    }

    /// The shadow's target, when one was written (a study to resume).
    pub fn load(&self) -> anyhow::Result<TargetSpec> {
        Ok(TargetSpec::load(&self.target)?)
    }

    /// Writes a fresh shadow of `production` on free ports.
    pub fn write(&self, production: &TargetSpec) -> anyhow::Result<TargetSpec> {
        let (torchserve, model_store, environment) = shadow_launch(production)?;
        let bytes = std::fs::read(&production.config)
            .with_context(|| format!("cannot read {}", production.config.display()))?;
        let mut props = Properties::parse(bytes).with_context(|| format!("{}", production.config.display()))?;
        place_on_free_ports(&mut props)?;
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_file(&self.config, &props.into_bytes())?;
        let mut target = toml_edit::DocumentMut::new();
        target["config"] = toml_edit::value("config.properties");
        target["model_store"] = toml_edit::value(model_store.display().to_string());
        target["work_dir"] = toml_edit::value("run");
        if torchserve.is_absolute() {
            target["torchserve"] = toml_edit::value(torchserve.display().to_string());
        }
        target["ready_timeout"] = toml_edit::value(humantime::format_duration(production.ready_timeout).to_string());
        match &production.tls {
            Verification::CaFile(path) => target["ca_file"] = toml_edit::value(path.display().to_string()),
            Verification::Insecure => target["insecure_tls"] = toml_edit::value(true),
            Verification::WebPki => {}
        }
        let mut env = toml_edit::Table::new();
        for (key, value) in environment {
            env[key.as_str()] = toml_edit::value(value);
        }
        target["environment"] = toml_edit::Item::Table(env);
        let header = "# The shadow of a production TorchServe, written by `servetune daemon`:\n\
                      # the same config and model store on ports of its own.\n";
        write_file(&self.target, format!("{header}{target}").as_bytes())?;
        self.load()
    }
}

/// Atomically: a daemon killed mid-write leaves the previous file whole.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::config::file::write_data_atomically(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// What a shadow starts with: production's TorchServe, model store and
/// environment when servetune manages it, else TorchServe from
/// `$SERVETUNE_TORCHSERVE`/PATH and the config's `model_store`.
fn shadow_launch(
    production: &TargetSpec,
) -> anyhow::Result<(PathBuf, PathBuf, std::collections::BTreeMap<String, String>)> {
    if let Some((torchserve, model_store)) = production.control.launcher() {
        let environment = production.environment.clone();
        return Ok((torchserve.to_path_buf(), model_store.to_path_buf(), environment));
    }
    let bytes =
        std::fs::read(&production.config).with_context(|| format!("cannot read {}", production.config.display()))?;
    let props = Properties::parse(bytes)?;
    let Some(store) = props.get("model_store").map(|s| PathBuf::from(s.trim())) else {
        bail!(
            "{}: a shadow needs the model store: set model_store (an absolute path) in it",
            production.config.display()
        );
    };
    if !store.is_absolute() {
        bail!(
            "{}: model_store = {} is relative to TorchServe's working directory: make it absolute for a shadow",
            production.config.display(),
            store.display()
        );
    }
    let torchserve = std::env::var_os("SERVETUNE_TORCHSERVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("torchserve"));
    Ok((torchserve, store, production.environment.clone()))
}

/// Loopback addresses on ports free now; worker sockets counted from a base
/// no `/tmp/.ts.sock.*` uses.
fn place_on_free_ports(props: &mut Properties) -> anyhow::Result<()> {
    let mut held = Vec::new();
    let mut free_port = || -> anyhow::Result<u16> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the shadow")?;
        let port = listener.local_addr()?.port();
        held.push(listener);
        Ok(port)
    };
    for key in ["inference_address", "management_address", "metrics_address"] {
        // An https production is shadowed over https (the same certificate).
        let https = props.get(key).is_some_and(|a| a.trim_start().starts_with("https"));
        let scheme = if https { "https" } else { "http" };
        props.set(key, &format!("{scheme}://127.0.0.1:{}", free_port()?));
    }
    for key in ["grpc_inference_port", "grpc_management_port"] {
        props.set(key, &free_port()?.to_string());
    }
    props.set("initial_worker_port", &free_worker_base().to_string());
    Ok(())
}

/// A stale socket file (a killed server's) does not count: nothing answers
/// on it, and TorchServe replaces it.
fn free_worker_base() -> u16 {
    let live = |port: u16| std::os::unix::net::UnixStream::connect(format!("/tmp/.ts.sock.{port}")).is_ok();
    let taken = |base: u16| (base..base + 64).any(live);
    (0..200)
        .map(|i| 21_000 + i * 64)
        .find(|&base| !taken(base))
        .unwrap_or(21_000)
}

/// `recommended` (a shadow's config) on production: production's placement
/// keys, its log4j file beside production's config, the environment as
/// recommended.
pub fn to_production(recommended: &Deployment, production_config: &Path) -> anyhow::Result<Deployment> {
    let production_bytes =
        std::fs::read(production_config).with_context(|| format!("cannot read {}", production_config.display()))?;
    let production = Properties::parse(production_bytes)?;
    let mut props = recommended
        .properties()
        .map_err(|e| anyhow::anyhow!("the recommended config: {e}"))?;
    for key in PLACEMENT_KEYS {
        match production.get(key) {
            Some(value) => props.set(key, value.trim()),
            None => {
                props.remove(key);
            }
        }
    }
    let config_dir = production_config.parent().unwrap_or(Path::new("."));
    match logging::level_of(props.get("vmargs")) {
        Some(level) => {
            logging::ensure_written(config_dir, &level).context("writing the log4j2 config beside production's")?;
            match logging::vmargs_with(production.get("vmargs"), &level, config_dir) {
                Some(vmargs) => props.set("vmargs", &vmargs),
                None => {
                    props.remove("vmargs");
                }
            }
        }
        None => match production.get("vmargs") {
            Some(vmargs) => props.set("vmargs", vmargs.trim()),
            None => {
                props.remove("vmargs");
            }
        },
    }
    Ok(Deployment {
        config: props.into_bytes(),
        environment: recommended.environment.clone(),
        gateway: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_config_comes_back_on_productions_ports() {
        let dir = tempfile::tempdir().unwrap();
        let production = dir.path().join("config.properties");
        std::fs::write(
            &production,
            "inference_address=http://127.0.0.1:8080\nnumber_of_netty_threads=2\njob_queue_size=100\n",
        )
        .unwrap();
        let mut shadow = Properties::parse(std::fs::read(&production).unwrap()).unwrap();
        place_on_free_ports(&mut shadow).unwrap();
        assert_ne!(shadow.get("inference_address"), Some("http://127.0.0.1:8080"));
        shadow.set("number_of_netty_threads", "4");
        let recommended = Deployment {
            config: shadow.into_bytes(),
            environment: [("OMP_NUM_THREADS".to_string(), "1".to_string())].into(),
            gateway: None,
        };
        let back = to_production(&recommended, &production).unwrap();
        let props = back.properties().unwrap();
        assert_eq!(props.get("inference_address"), Some("http://127.0.0.1:8080"));
        assert_eq!(props.get("number_of_netty_threads"), Some("4"));
        assert_eq!(props.get("job_queue_size"), Some("100"));
        for key in ["management_address", "grpc_inference_port", "initial_worker_port"] {
            assert_eq!(props.get(key), None, "{key} is production's (unset)");
        }
        assert_eq!(back.environment["OMP_NUM_THREADS"], "1");
    }

    #[test]
    fn an_https_production_is_shadowed_over_https_with_its_tls_setting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.properties"),
            "inference_address=https://127.0.0.1:8443\nmanagement_address=http://127.0.0.1:8081\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("target.toml"),
            "config = \"config.properties\"\nmodel_store = \"store\"\ninsecure_tls = true\n",
        )
        .unwrap();
        let production = TargetSpec::load(&dir.path().join("target.toml")).unwrap();
        let shadow = ShadowFiles::of(&dir.path().join("shadow")).write(&production).unwrap();
        assert_eq!(shadow.tls, Verification::Insecure);
        let (_, props) = crate::config::read_properties(&shadow.config).unwrap();
        assert!(props
            .get("inference_address")
            .unwrap()
            .starts_with("https://127.0.0.1:"));
        assert!(props
            .get("management_address")
            .unwrap()
            .starts_with("http://127.0.0.1:"));
        assert_ne!(props.get("inference_address"), Some("https://127.0.0.1:8443"));
    }
}
