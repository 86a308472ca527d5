//! Before a replay sends any load: one request per replayed path, so that
//! a log naming a model the server does not serve (HTTP 404) is refused
//! with its name instead of turning into a run of errors.
//!
//! Called by `bench --replay` (and by whatever replays a log against a
//! server) with the plan it is about to run.

use std::time::Duration;

use crate::load::http::{Connection, Failure};
use crate::load::{LoadError, LoadPlan, Schedule};

/// How long the check waits for each model's answer at most.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends each replayed path's first body once; a 404 names the model.
pub async fn check_models_served(plan: &LoadPlan) -> Result<(), LoadError> {
    let Schedule::Replay(traffic) = &plan.schedule else {
        return Ok(());
    };
    let unreachable = |reason: String| LoadError::Unreachable {
        address: plan.address.to_string(),
        reason,
    };
    for (index, group) in traffic.groups.iter().enumerate() {
        let timeout = CHECK_TIMEOUT.min(plan.request_timeout);
        let mut connection = Connection::open(plan.address, timeout, plan.tls.as_deref())
            .await
            .map_err(|e| unreachable(describe(e)))?;
        let request = plan.requests.get_in(index as u32, 0);
        let response = tokio::time::timeout(timeout, connection.exchange(request))
            .await
            .map_err(|_| unreachable(format!("no answer to {} within {timeout:?}", group.path)))?
            .map_err(|e| unreachable(describe(e)))?;
        if response.status == 404 {
            return Err(LoadError::BadInput(format!(
                "--replay {}: the log sends requests to model '{}' ({} {}), which the server does not serve (HTTP 404); register it, or cut it out with --from/--to",
                traffic.log.display(),
                group.model,
                group.method,
                group.path
            )));
        }
    }
    Ok(())
}

fn describe(failure: Failure) -> String {
    match failure {
        Failure::Connect(e) | Failure::Io(e) | Failure::Tls(e) => e.to_string(),
        Failure::Protocol(reason) => reason,
    }
}
