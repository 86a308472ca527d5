//! What went wrong with a server: its target file, its config, its key
//! file, its APIs, its ports, its start or its readiness.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong with the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {reason}", path = .path.display())]
    Spec { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{path}: {reason}", path = .path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("{url}: TorchServe rejected the key from the key file (token authorization)")]
    KeyRejected { url: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: TLS certificate refused: {reason}")]
    Certificate { url: String, reason: String },
    #[error("management API: {method} {path} returned {status}: {body}")]
    Api {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer to {path}: {reason}")]
    Protocol { path: String, reason: String },
    #[error("port {port} ({property} in {config}) is already in use", config = .config.display())]
    PortInUse {
        property: &'static str,
        port: u16,
        config: PathBuf,
    },
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{what} failed: {reason}\n--- last lines of {log} ---\n{tail}", log = .log.display())]
    StartFailed {
        what: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("TorchServe was not ready after {timeout:?}: {state}\n--- last lines of {log} ---\n{tail}", log = .log.display())]
    NotReady {
        timeout: Duration,
        state: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Unsupported(String),
}
