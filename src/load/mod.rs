//! The load generator: closed loop (virtual users with stages and think
//! time) and open loop (constant or Poisson arrivals, coordinated-omission
//! corrected, in-flight cap, late and dropped sends counted).
//!
//! Owns sending requests and timing them; records into `measure::Recorder`.
//! It knows nothing of TorchServe beyond request presets, and never imports
//! `search` or `study`.

mod error;
pub mod http;
pub mod progress;
pub mod request;
pub mod run;
pub mod stages;
pub mod tls;
pub mod window;
pub mod workload;

pub use error::LoadError;
pub use progress::Progress;
pub use request::{Endpoint, Protocol, RenderedRequests, RequestSpec};
pub use run::{run_load, Arrival, LoadPlan, Schedule};
pub use stages::Stages;
pub use window::StabilityRule;
pub use workload::Workload;
