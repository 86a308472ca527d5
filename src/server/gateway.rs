//! The TensorZero gateway, run one of two ways:
//! - managed: servetune starts it from the Python venv that holds the
//!   `tensorzero` wheel (the wheel embeds the real Rust gateway; no
//!   standalone binary exists here); ready when it prints the URL it listens
//!   on, stopped by closing its stdin (SIGTERM, then SIGKILL, if it lingers);
//! - as a service (production): a service manager runs it at a fixed URL;
//!   servetune restarts it with the stack's `restart_command` (an argv, never
//!   a shell, as for TorchServe), waits until it serves HTTP, and finds
//!   its process by the port it listens on (its memory counts); stopping it
//!   is the service manager's business, so `stop` leaves it running.
//!
//! Every setting of the gateway is read at start: a change is a restart,
//! which takes a fraction of a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The launcher the venv's python runs (kept as a file for readers).
const LAUNCHER: &str = include_str!("gateway_launcher.py");

/// What the launcher's ready line starts with.
const READY_MARKER: &str = "servetune-gateway-ready";

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The variable the gateway's providers read TorchServe's inference key
/// from (`api_key_location = "env::TORCHSERVE_INFERENCE_KEY"`).
pub const INFERENCE_KEY_VARIABLE: &str = "TORCHSERVE_INFERENCE_KEY";

/// TorchServe's inference key (a placeholder when token authorization is
/// off: TorchServe then ignores the header).
pub fn inference_key(server: &super::torchserve::TorchServe) -> anyhow::Result<String> {
    Ok(server
        .api()?
        .inference_key()?
        .unwrap_or_else(|| "token-authorization-off".into()))
}

/// How to run a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The python of the venv holding `tensorzero==2026.6.0`.
    pub python: PathBuf,
    /// Its tensorzero.toml.
    pub config: PathBuf,
    /// Environment for the gateway (TOKIO_WORKER_THREADS, RUST_LOG, …).
    pub environment: BTreeMap<String, String>,
    /// Set when a service manager runs the gateway (production).
    pub service: Option<GatewayService>,
}

/// A gateway a service manager runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayService {
    /// Restarts it (an argv, e.g. `["systemctl", "restart", "tensorzero-gateway"]`).
    pub restart_command: Vec<String>,
    /// Where it listens, e.g. `http://127.0.0.1:3000`.
    pub url: String,
}

impl GatewaySpec {
    /// The python beside a venv's `torchserve` executable: the setup script
    /// installs the gateway into TorchServe's venv.
    /// A bare `torchserve` is looked up on PATH, as starting it would.
    pub fn python_beside(torchserve: &Path) -> PathBuf {
        let found = if torchserve.components().count() == 1 {
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
                .map(|dir| dir.join(torchserve))
                .find(|candidate| candidate.is_file())
        } else {
            None
        };
        found
            .unwrap_or_else(|| torchserve.to_path_buf())
            .with_file_name("python")
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The launcher servetune runs (None: a service's gateway).
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// A service's gateway process, found by its port.
    service_pid: Option<i32>,
    /// `http://127.0.0.1:PORT/openai/v1`: routes are `chat/completions` and `embeddings` below it.
    pub base_url: String,
}

impl Gateway {
    /// Starts the gateway (a service's: restarts it) and waits until it listens.
    pub async fn start(spec: &GatewaySpec) -> anyhow::Result<Self> {
        if !spec.config.is_file() {
            bail!("gateway config {} does not exist", spec.config.display());
        }
        match &spec.service {
            Some(service) => {
                restart_service(service).await?;
                Self::attach(service).await
            }
            None => Self::launch(spec).await,
        }
    }

    /// A service's gateway as it runs, once it answers `GET /health`.
    pub async fn attach(service: &GatewayService) -> anyhow::Result<Self> {
        let base = service.url.trim_end_matches('/');
        wait_healthy(base).await?;
        let port = reqwest::Url::parse(base)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .with_context(|| format!("gateway url {base}: no port"))?;
        Ok(Self {
            child: None,
            stdin: None,
            service_pid: super::process::listening_pid(port),
            base_url: format!("{base}/openai/v1"),
        })
    }

    async fn launch(spec: &GatewaySpec) -> anyhow::Result<Self> {
        let mut child = Command::new(&spec.python)
            .arg("-c")
            .arg(LAUNCHER)
            .arg(&spec.config)
            .envs(&spec.environment)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {} (the venv with tensorzero)", spec.python.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let mut said = Vec::new();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Some(url) = base_url_of(&line) {
                    return Some(url);
                }
                said.push(line);
            }
            None
        })
        .await;
        let base_url = match ready {
            Ok(Some(url)) => url,
            Ok(None) => {
                let _ = child.wait().await;
                let mut errors = String::new();
                let _ = stderr.read_to_string(&mut errors).await;
                said.extend(errors.lines().map(str::to_string));
                bail!(
                    "the TensorZero gateway did not start on {}:\n{}",
                    spec.config.display(),
                    last_lines(&said, 15)
                );
            }
            Err(_) => {
                let _ = child.start_kill();
                bail!("the TensorZero gateway did not start within {START_TIMEOUT:?}");
            }
        };
        // The gateway logs to stdout and Python to stderr: both are read to
        // the end, so a full or closed pipe never stalls or fails a request.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                tracing::debug!(target: "gateway", "{line}");
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "gateway", "{line}");
            }
        });
        let stdin = child.stdin.take();
        tracing::info!(%base_url, config = %spec.config.display(), "TensorZero gateway ready");
        Ok(Self {
            child: Some(child),
            stdin,
            service_pid: None,
            base_url,
        })
    }

    /// The gateway's process: the launcher servetune runs (the gateway runs
    /// inside it), or the service's process listening on its port.
    pub fn pid(&self) -> Option<i32> {
        match &self.child {
            Some(child) => child.id().map(|p| p as i32),
            None => self.service_pid,
        }
    }

    /// Whether servetune runs this gateway (else a service manager does).
    pub fn is_managed(&self) -> bool {
        self.child.is_some()
    }

    /// Stops a gateway servetune runs: stdin closed, then SIGTERM after
    /// 5 s, then SIGKILL. A service's gateway keeps running.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_ok() {
            return;
        }
        if let Some(pid) = child.id() {
            super::process::signal(pid as i32, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Runs a service's restart command; a failure says what it printed.
async fn restart_service(service: &GatewayService) -> anyhow::Result<()> {
    let (program, args) = service
        .restart_command
        .split_first()
        .context("restart_command is empty")?;
    let output = tokio::time::timeout(START_TIMEOUT, Command::new(program).args(args).output())
        .await
        .with_context(|| {
            format!(
                "{} did not finish within {START_TIMEOUT:?}",
                service.restart_command.join(" ")
            )
        })?
        .with_context(|| format!("running {}", service.restart_command.join(" ")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        bail!(
            "restarting the gateway ({}) failed with {}:\n{}",
            service.restart_command.join(" "),
            output.status,
            last_lines(&said.lines().map(str::to_string).collect::<Vec<_>>(), 15)
        );
    }
    Ok(())
}

/// Waits until the gateway serves HTTP: `GET {base}/health` answers 200
/// (the standalone gateway), or 404 (the wheel's embedded gateway has no
/// health route, but answers once it serves).
async fn wait_healthy(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("plain client builds");
    let url = format!("{base}/health");
    let started = std::time::Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < START_TIMEOUT {
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() || response.status() == reqwest::StatusCode::NOT_FOUND => {
                return Ok(())
            }
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the TensorZero gateway at {base} is not healthy after {START_TIMEOUT:?} (GET /health: {last})")
}

/// The URL in the launcher's ready line.
fn base_url_of(line: &str) -> Option<String> {
    let json = line.trim().strip_prefix(READY_MARKER)?;
    let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    value["base_url"].as_str().map(|s| s.trim_end_matches('/').to_string())
}

fn last_lines(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_base_url() {
        assert_eq!(
            base_url_of("servetune-gateway-ready {\"base_url\": \"http://127.0.0.1:4242/openai/v1/\"}\n").as_deref(),
            Some("http://127.0.0.1:4242/openai/v1")
        );
        assert_eq!(
            base_url_of("{\"base_url\": \"http://127.0.0.1:4242/openai/v1/\"}"),
            None
        );
        assert_eq!(base_url_of("Traceback (most recent call last):"), None);
    }

    #[test]
    fn the_python_is_the_one_beside_torchserve() {
        assert_eq!(
            GatewaySpec::python_beside(Path::new("/opt/ts/bin/torchserve")),
            PathBuf::from("/opt/ts/bin/python")
        );
    }
}
