//! When requests are sent: by virtual users (closed loop), at a constant or
//! Poisson rate, at a rate that follows a profile, or at a replayed log's
//! instants (open loops). `run` sends a schedule; `due` turns an open one
//! into due times.

use std::sync::Arc;
use std::time::Duration;

use super::profile::Profile;
use super::replay::ReplayTraffic;
use super::stages::Stages;

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    Constant,
    Poisson,
}

/// When requests are sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Virtual users: each sends its next request when the last one answered.
    Closed { stages: Stages, think_time: Duration },
    /// Requests at a rate, whether or not earlier ones answered.
    Open { rate_per_s: f64, arrival: Arrival },
    /// Requests at a rate that follows a profile over time (open loop).
    Profile { profile: Profile, arrival: Arrival },
    /// A log's requests at their recorded instants (open loop).
    Replay(Arc<ReplayTraffic>),
}

impl Schedule {
    /// Whether requests are sent at due times (not by virtual users).
    pub fn is_open(&self) -> bool {
        !matches!(self, Schedule::Closed { .. })
    }
}
