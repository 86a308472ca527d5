//! Before a replay or a mix of models sends any load: one request per
//! path, so that a log or a mix naming a model the server does not serve
//! (HTTP 404) is refused with its name instead of turning into a run of
//! errors.
//!
//! Called by `bench --replay` (and by whatever replays a log against a
//! server) with the plan it is about to run.

use std::time::Duration;

use crate::load::http::{Connection, Failure};
use crate::load::{LoadError, LoadPlan, Schedule};

/// How long the check waits for each model's answer at most.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends each replayed (or mixed) path's first body once; a 404 names the model.
pub async fn check_models_served(plan: &LoadPlan) -> Result<(), LoadError> {
    let paths: Vec<(String, String)> = match (&plan.schedule, &plan.mix) {
        (Schedule::Replay(traffic), _) => traffic
            .groups
            .iter()
            .map(|group| {
                let why = format!(
                    "--replay {}: the log sends requests to model '{}' ({} {})",
                    traffic.log.display(),
                    group.model,
                    group.method,
                    group.path
                );
                (group.path.clone(), why)
            })
            .collect(),
        (_, Some(mix)) => mix
            .models
            .iter()
            .map(|model| (format!("/predictions/{model}"), format!("--mix: model '{model}'")))
            .collect(),
        _ => return Ok(()),
    };
    let unreachable = |reason: String| LoadError::Unreachable {
        address: plan.address.to_string(),
        reason,
    };
    for (index, (path, why)) in paths.iter().enumerate() {
        let timeout = CHECK_TIMEOUT.min(plan.request_timeout);
        let mut connection = Connection::open(plan.address, timeout, plan.tls.as_deref())
            .await
            .map_err(|e| unreachable(describe(e)))?;
        let request = plan.requests.get_in(index as u32, 0);
        let response = tokio::time::timeout(timeout, connection.exchange(request))
            .await
            .map_err(|_| unreachable(format!("no answer to {path} within {timeout:?}")))?
            .map_err(|e| unreachable(describe(e)))?;
        if response.status == 404 {
            return Err(LoadError::BadInput(format!(
                "{why}, which the server does not serve (HTTP 404); register it{}",
                if plan.mix.is_some() {
                    ""
                } else {
                    ", or cut it out with --from/--to"
                }
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
