//! The load generator: closed loop (virtual users with stages and think
//! time) and open loop (constant or Poisson arrivals, a rate profile, or a
//! replayed access log; coordinated-omission corrected, in-flight cap, late
//! and dropped sends counted).
//!
//! Owns sending requests and timing them; records into `measure::Recorder`.
//! It knows nothing of TorchServe beyond request presets, and never imports
//! `search` or `study`.

pub mod access_log;
mod due;
mod error;
pub mod http;
pub mod mix;
pub mod profile;
pub mod progress;
pub mod replay;
pub mod request;
pub mod run;
mod schedule;
pub mod stages;
pub mod tls;
pub mod traffic;
pub mod window;
pub mod workload;

pub use error::LoadError;
pub use mix::Mix;
pub use profile::Profile;
pub use progress::Progress;
pub use request::{Endpoint, Protocol, RenderedRequests, RequestSpec};
pub use run::{run_load, run_load_traffic, Arrival, LoadPlan, Schedule};
pub use stages::Stages;
pub use traffic::TrafficReport;
pub use window::StabilityRule;
pub use workload::Workload;
