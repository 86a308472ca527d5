//! Measurement: latency histograms, throughput, errors by class, a
//! per-second timeline (`recorder`), the server's memory and CPU
//! (`process`), and TorchServe's own metrics (`metrics`).
//!
//! Owns turning raw observations into figures. It sends no load (that is
//! `load`) and judges nothing (that is `objective`, later).

pub mod metrics;
pub mod process;
pub mod recorder;
pub mod traffic_figures;

pub use recorder::{
    latency_histogram, ErrorClass, ErrorCounts, LatencySummary, LoadReport, Recorder, SecondStats, Stability,
};
