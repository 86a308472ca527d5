//! The load generator: closed loop (virtual users with stages and think
//! time) and open loop (constant or Poisson arrivals, coordinated-omission
//! corrected, in-flight cap, late and dropped sends counted).
//!
//! Owns sending requests and timing them; records into `measure::Recorder`.
//! It knows nothing of TorchServe beyond request presets, and never imports
//! `search` or `study`.

pub mod http;
pub mod request;
pub mod run;
pub mod stages;
pub mod tls;
pub mod window;
pub mod workload;

pub use request::{Endpoint, Protocol, RenderedRequests, RequestSpec};
pub use run::{run_load, Arrival, LoadPlan, Progress, Schedule};
pub use stages::Stages;
pub use window::StabilityRule;
pub use workload::Workload;

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
