//! The TensorZero gateway as a managed process: started from the Python
//! venv that holds the `tensorzero` wheel (the wheel embeds the real Rust
//! gateway; no standalone binary exists here), ready when it prints the URL
//! it listens on, stopped by closing its stdin (SIGTERM, then SIGKILL, if it
//! lingers). Every setting of the gateway is read at start: a change is a
//! restart, which takes a fraction of a second.

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

/// How to run a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The python of the venv holding `tensorzero==2026.6.0`.
    pub python: PathBuf,
    /// Its tensorzero.toml.
    pub config: PathBuf,
    /// Environment for the gateway (TOKIO_WORKER_THREADS, RUST_LOG, …).
    pub environment: BTreeMap<String, String>,
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
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT/openai/v1`: routes are `chat/completions` and `embeddings` below it.
    pub base_url: String,
}

impl Gateway {
    /// Starts the gateway and waits until it listens.
    pub async fn start(spec: &GatewaySpec) -> anyhow::Result<Self> {
        if !spec.config.is_file() {
            bail!("gateway config {} does not exist", spec.config.display());
        }
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
        Ok(Self { child, stdin, base_url })
    }

    /// The launcher's process id (the gateway runs inside it).
    pub fn pid(&self) -> Option<i32> {
        self.child.id().map(|p| p as i32)
    }

    /// Stops it: stdin closed, then SIGTERM after 5 s, then SIGKILL.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_ok()
        {
            return;
        }
        if let Some(pid) = self.pid() {
            super::process::signal(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
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
