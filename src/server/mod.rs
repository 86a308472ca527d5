//! The servers under tuning: starting, stopping and restarting TorchServe,
//! waiting until it is ready, and changing settings live through its
//! management API; the TensorZero gateway in front of it (`gateway`) and
//! the stack file that names both (`stack`).
//!
//! Owns process handling and HTTP calls to the server's control APIs. It does
//! not edit config files (that is `config`) and does not decide what to
//! change (that is `apply`, later `study`).

pub mod api;
pub mod auth;
pub mod discover;
pub mod endpoints;
pub mod gateway;
pub mod logging;
pub mod process;
pub mod spec;
pub mod stack;
pub mod tls;
pub mod torchserve;

use std::path::PathBuf;
use std::time::Duration;

pub use api::{ModelStatus, TorchServeApi};
pub use auth::Keys;
pub use endpoints::Endpoints;
pub use spec::{Control, TargetSpec};
pub use torchserve::TorchServe;

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
