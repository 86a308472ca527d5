//! The load generator's error: why a load run could not start (bad input,
//! an unreachable server, a failed load thread). Failures of single
//! requests are counted by kind in the report instead.

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    BadInput(String),
    #[error("cannot connect to {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("load thread failed: {0}")]
    Thread(String),
}
