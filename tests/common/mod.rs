//! Helpers for integration tests against a real TorchServe 0.12.0, as
//! provisioned by `scripts/setup-torchserve.sh`.
//!
//! Each test gets its own deployment in a temporary directory: its own
//! config.properties with free inference/management/metrics/gRPC ports, its
//! own worker port range, work dir (TMPDIR, pid file, key file, logs) and
//! model store. Dropping the deployment kills whatever TorchServe it left
//! running, also when the test panics.

#![allow(dead_code)] // each test binary uses a different part

pub mod postgres;

use std::path::PathBuf;

use servetune::server::{process, TargetSpec, TorchServe};

/// What the setup script provisions.
pub struct Provisioned {
    pub torchserve: PathBuf,
    /// The example model store (`tiny.mar`, `resnet50.mar`), shared read-only.
    pub model_store: PathBuf,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_torchserve() -> PathBuf {
    if let Some(path) = std::env::var_os("SERVETUNE_TORCHSERVE") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("SERVETUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"))
                .join("servetune")
        });
    cache.join("venv-ts-0.12.0/bin/torchserve")
}

/// The provisioned TorchServe. Tests that need it carry
/// `#[cfg_attr(torchserve_missing, ignore = "…")]` (set by `build.rs` when it
/// is missing outside CI), so a missing TorchServe shows as an ignored test
/// with the reason, and under `CI=true` as a failure, never as a pass.
pub fn provisioned() -> Provisioned {
    let torchserve = default_torchserve();
    let model_store = repo_root().join("examples/deployment/model-store");
    let missing: Vec<String> = [
        &torchserve,
        &model_store.join("tiny.mar"),
        &model_store.join("resnet50.mar"),
    ]
    .iter()
    .filter(|path| !path.exists())
    .map(|path| path.display().to_string())
    .collect();
    assert!(
        missing.is_empty(),
        "TorchServe is not provisioned (missing: {}). Run `make test`, or `scripts/setup-torchserve.sh` then `cargo test`.",
        missing.join(", ")
    );
    Provisioned {
        torchserve,
        model_store,
    }
}

/// The provisioned TorchServe (the test fails when it is missing).
#[macro_export]
macro_rules! require_torchserve {
    () => {
        common::provisioned()
    };
}

/// A port for a test server to bind later: below Linux's ephemeral range
/// (32768 and up), so no outgoing connection of another test can take it
/// between this check and TorchServe's bind, and never handed out twice in
/// one test process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(given.len());
        let port = 10_000 + (hasher.finish() % 20_000) as u16;
        if given.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

/// A worker port range of 500 no live server uses: worker sockets are
/// `/tmp/.ts.sock.<port>` and the port grows with every worker (re)start. A
/// socket file left by a killed server is no obstacle (nothing listens on
/// it, and TorchServe replaces it); after 200 tries any range will do.
fn worker_port_base() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let in_use = |port: u16| std::os::unix::net::UnixStream::connect(format!("/tmp/.ts.sock.{port}")).is_ok();
    let mut base = 20_000;
    for _ in 0..200 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        base = 20_000 + (hasher.finish() % 80) as u16 * 500;
        if !(base..base + 500).any(in_use) {
            break;
        }
    }
    base
}

pub struct Ports {
    pub inference: u16,
    pub management: u16,
    pub metrics: u16,
    pub grpc_inference: u16,
    pub grpc_management: u16,
}

/// One TorchServe deployment of one example model in a temporary directory.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub target: PathBuf,
    pub ports: Ports,
}

impl Deployment {
    /// The `tiny` model.
    pub fn new(provisioned: &Provisioned) -> Self {
        Self::serving(provisioned, "tiny", "")
    }

    /// The `tiny` model, with `extra` TOML lines appended to the target file.
    pub fn with_target_extra(provisioned: &Provisioned, extra: &str) -> Self {
        Self::serving(provisioned, "tiny", extra)
    }

    /// `model` from the example store, with `extra` TOML lines in the target file.
    pub fn serving(provisioned: &Provisioned, model: &str, extra: &str) -> Self {
        Self::serving_models(provisioned, &[model], extra)
    }

    /// Several models of the example store, one worker each.
    pub fn serving_models(provisioned: &Provisioned, models: &[&str], extra: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("servetune-test-").tempdir().unwrap();
        let store = dir.path().join("model-store");
        std::os::unix::fs::symlink(&provisioned.model_store, &store).unwrap();
        let ports = Ports {
            inference: free_port(),
            management: free_port(),
            metrics: free_port(),
            grpc_inference: free_port(),
            grpc_management: free_port(),
        };
        let config = dir.path().join("config.properties");
        std::fs::write(&config, config_text(models, &ports, worker_port_base())).unwrap();
        let target = dir.path().join("target.toml");
        let ready = if extra.contains("ready_timeout") {
            ""
        } else {
            "ready_timeout = \"120s\"\n"
        };
        let target_text = if extra.contains("restart_command") {
            format!("config = \"config.properties\"\nwork_dir = \"run\"\n{ready}{extra}\n")
        } else {
            format!(
                "config = \"config.properties\"\nmodel_store = \"model-store\"\nwork_dir = \"run\"\n\
                 torchserve = \"{}\"\n{ready}{extra}\n",
                provisioned.torchserve.display()
            )
        };
        std::fs::write(&target, target_text).unwrap();
        Self {
            dir,
            config,
            target,
            ports,
        }
    }

    pub fn spec(&self) -> TargetSpec {
        TargetSpec::load(&self.target).unwrap()
    }

    pub fn server(&self) -> TorchServe {
        TorchServe::new(self.spec())
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn jvm(&self) -> Option<i32> {
        process::running_jvm(&self.work_dir().join("tmp")).or_else(|| process::jvm_in(&self.work_dir()))
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.config).unwrap()
    }
}

impl Drop for Deployment {
    /// Kills every TorchServe under the folder, also those a test started
    /// elsewhere in it (init's, a daemon's shadow) and left on a panic.
    fn drop(&mut self) {
        if let Some(jvm) = self.jvm() {
            process::kill_tree(jvm);
        }
        for jvm in process::jvms_under(self.dir.path()) {
            process::kill_tree(jvm);
        }
    }
}

fn config_text(models: &[&str], ports: &Ports, worker_port: u16) -> String {
    let entries: Vec<String> = models
        .iter()
        .map(|model| {
            format!(
                "  \"{model}\": {{\\\n    \"1.0\": {{\\\n      \"defaultVersion\": true,\\\n      \"marName\": \"{model}.mar\",\\\n      \
                 \"minWorkers\": 1,\\\n      \"maxWorkers\": 1,\\\n      \"batchSize\": 1,\\\n      \"maxBatchDelay\": 100,\\\n      \
                 \"responseTimeout\": 120\\\n    }}\\\n  }}"
            )
        })
        .collect();
    let archives: Vec<String> = models.iter().map(|m| format!("{m}.mar")).collect();
    format!(
        "# test deployment of {}\n\
         inference_address=http://127.0.0.1:{}\n\
         management_address=http://127.0.0.1:{}\n\
         metrics_address=http://127.0.0.1:{}\n\
         grpc_inference_port={}\n\
         grpc_management_port={}\n\
         initial_worker_port={worker_port}\n\
         metrics_mode=prometheus\n\
         enable_model_api=true\n\
         number_of_netty_threads=2\n\
         job_queue_size=100\n\
         default_workers_per_model=1\n\
         load_models={}\n\
         models={{\\\n{}\\\n}}\n",
        models.join(", "),
        ports.inference,
        ports.management,
        ports.metrics,
        ports.grpc_inference,
        ports.grpc_management,
        archives.join(","),
        entries.join(",\\\n")
    )
}

/// Runs `servetune tune --study STUDY --results-dir RESULTS` and asserts it succeeds.
pub fn tune(study: &std::path::Path, results: &std::path::Path) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args([
            "tune",
            "--study",
            study.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ])
        .env("SERVETUNE_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// A runtime for tests that drive async code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
