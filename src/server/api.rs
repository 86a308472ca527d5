//! TorchServe's inference and management APIs, as servetune uses them:
//! health, model descriptions, scaling workers, and re-registering a model.
//!
//! With token authorization on, every call carries the bearer key read from
//! `key_file.json`; when TorchServe rejects a key (it renews them at each
//! start, and they expire), the file is read again and the call retried once.
//! A management call that meets TorchServe's own race (500,
//! `ConcurrentModificationException`) is tried again after a pause, up to
//! three times.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::auth::Keys;
use super::endpoints::Endpoints;
use super::error::ServerError;
use super::tls::{http_client, request_error};
use crate::load::tls::Verification;

/// Which API a call goes to (and so which key it carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Inference,
    Management,
}

/// One worker of a model, as `GET /models/{m}` reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Worker {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub pid: Option<i64>,
}

/// A model's live settings, as `GET /models/{m}` reports them.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    pub model_name: String,
    pub model_version: String,
    pub model_url: String,
    pub min_workers: u32,
    pub max_workers: u32,
    pub batch_size: u32,
    pub max_batch_delay: u32,
    #[serde(default)]
    pub response_timeout: Option<u32>,
    #[serde(default)]
    pub workers: Vec<Worker>,
    #[serde(default)]
    pub job_queue_status: Option<JobQueueStatus>,
}

/// The model's request queue (its capacity is `job_queue_size`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobQueueStatus {
    pub remaining_capacity: u64,
    pub pending_requests: u64,
}

impl ModelStatus {
    /// Every worker is READY and there are at least `min_workers` of them.
    pub fn is_ready(&self) -> bool {
        self.workers.len() >= self.min_workers as usize && self.workers.iter().all(|w| w.status == "READY")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelList {
    models: Vec<ModelListEntry>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelListEntry {
    model_name: String,
}

/// Parameters of a model registration (`POST /models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub url: String,
    pub model_name: String,
    pub batch_size: u32,
    pub max_batch_delay: u32,
    pub initial_workers: u32,
    pub response_timeout: Option<u32>,
}

/// A client for one TorchServe.
pub struct TorchServeApi {
    http: reqwest::Client,
    verification: Verification,
    endpoints: Endpoints,
    key_file: Option<PathBuf>,
    keys: Mutex<Option<Keys>>,
}

impl TorchServeApi {
    /// A client of the server at `endpoints`, checking an https address's
    /// certificate as `verification` says.
    pub fn new(endpoints: Endpoints, key_file: PathBuf, verification: Verification) -> Result<Self, ServerError> {
        let http = http_client(&verification, Duration::from_secs(300))?;
        let key_file = endpoints.token_auth.then_some(key_file);
        Ok(Self {
            http,
            verification,
            endpoints,
            key_file,
            keys: Mutex::new(None),
        })
    }

    /// How an https address's certificate is checked (for the load generator).
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The current inference key (for a load generator's bearer header).
    pub fn inference_key(&self) -> Result<Option<String>, ServerError> {
        Ok(self.keys(false)?.map(|k| k.inference))
    }

    fn keys(&self, reload: bool) -> Result<Option<Keys>, ServerError> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let mut cached = self.keys.lock().expect("no panics while the lock is held");
        if reload || cached.is_none() {
            *cached = Some(Keys::read(path)?);
        }
        Ok(cached.clone())
    }

    async fn call(&self, api: Api, method: Method, path_and_query: &str) -> Result<(StatusCode, String), ServerError> {
        let base = match api {
            Api::Inference => self.endpoints.inference.base_url(),
            Api::Management => self.endpoints.management.base_url(),
        };
        let url = format!("{base}{path_and_query}");
        for attempt in 0..2 {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(keys) = self.keys(attempt > 0)? {
                let key = match api {
                    Api::Inference => keys.inference,
                    Api::Management => keys.management,
                };
                request = request.bearer_auth(key);
            }
            let response = request
                .send()
                .await
                .map_err(|e| request_error(&url, e, &self.verification))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let key_rejected = body.contains("InvalidKeyException")
                && (status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED);
            if key_rejected && attempt == 0 && self.key_file.is_some() {
                continue;
            }
            if key_rejected {
                return Err(ServerError::KeyRejected { url });
            }
            return Ok((status, body));
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn call_ok(&self, api: Api, method: Method, path_and_query: &str) -> Result<String, ServerError> {
        let mut pauses = TRANSIENT_PAUSES.iter();
        let (status, body) = loop {
            let (status, body) = self.call(api, method.clone(), path_and_query).await?;
            match pauses.next() {
                Some(pause) if transient_failure(status, &body) => {
                    tracing::debug!("{method} {path_and_query}: TorchServe's race (500 {CONCURRENT_MODIFICATION}); again in {pause:?}");
                    tokio::time::sleep(*pause).await;
                }
                _ => break (status, body),
            }
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(ServerError::Api {
                method: method.to_string(),
                path: path_and_query.to_string(),
                status: status.as_u16(),
                body: body.trim().chars().take(400).collect(),
            })
        }
    }

    /// `GET /ping` answers "Healthy".
    pub async fn ping(&self) -> Result<bool, ServerError> {
        let (status, body) = self.call(Api::Inference, Method::GET, "/ping").await?;
        Ok(status.is_success() && body.contains("Healthy"))
    }

    /// Names of every registered model.
    pub async fn list_models(&self) -> Result<Vec<String>, ServerError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let path = match &next {
                Some(token) => format!("/models?limit=100&next_page_token={token}"),
                None => "/models?limit=100".to_string(),
            };
            let body = self.call_ok(Api::Management, Method::GET, &path).await?;
            let page: ModelList = serde_json::from_str(&body).map_err(|e| ServerError::Protocol {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            names.extend(page.models.into_iter().map(|m| m.model_name));
            match page.next_page_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => return Ok(names),
            }
        }
    }

    /// `GET /models/{model}`: the default version's live settings and workers.
    pub async fn describe_model(&self, model: &str) -> Result<ModelStatus, ServerError> {
        let path = format!("/models/{model}");
        let body = self.call_ok(Api::Management, Method::GET, &path).await?;
        let mut versions: Vec<ModelStatus> = serde_json::from_str(&body).map_err(|e| ServerError::Protocol {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if versions.is_empty() {
            return Err(ServerError::Protocol {
                path,
                reason: "no model version in the answer".into(),
            });
        }
        Ok(versions.swap_remove(0))
    }

    /// `GET /models/{model}/all`: every registered version of the model.
    pub async fn model_versions(&self, model: &str) -> Result<Vec<String>, ServerError> {
        let path = format!("/models/{model}/all");
        let body = self.call_ok(Api::Management, Method::GET, &path).await?;
        let versions: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| ServerError::Protocol {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut names: Vec<String> = versions
            .iter()
            .filter_map(|v| v["modelVersion"].as_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `PUT /models/{model}?min_worker=…&max_worker=…&synchronous=true`.
    pub async fn scale_workers(&self, model: &str, min_workers: u32, max_workers: u32) -> Result<(), ServerError> {
        let path = format!("/models/{model}?min_worker={min_workers}&max_worker={max_workers}&synchronous=true");
        self.call_ok(Api::Management, Method::PUT, &path).await.map(drop)
    }

    /// `DELETE /models/{model}/{version}` (needs `enable_model_api=true`).
    pub async fn unregister(&self, model: &str, version: &str) -> Result<(), ServerError> {
        let path = format!("/models/{model}/{version}");
        self.call_ok(Api::Management, Method::DELETE, &path).await.map(drop)
    }

    /// `POST /models?…&synchronous=true` (needs `enable_model_api=true`).
    pub async fn register(&self, registration: &Registration) -> Result<(), ServerError> {
        let mut path = format!(
            "/models?url={}&model_name={}&batch_size={}&max_batch_delay={}&initial_workers={}&synchronous=true",
            registration.url,
            registration.model_name,
            registration.batch_size,
            registration.max_batch_delay,
            registration.initial_workers
        );
        if let Some(timeout) = registration.response_timeout {
            path.push_str(&format!("&response_timeout={timeout}"));
        }
        self.call_ok(Api::Management, Method::POST, &path).await.map(drop)
    }
}

/// TorchServe's management API sometimes answers 500 with this exception
/// when a model is unregistered or registered while its workers are busy
/// (seen on 0.12.0 by `benches/record-landscape.sh`: `DELETE
/// /models/resnet50/1.0` in the middle of a grid): its own race, not a refusal, and the same call a moment
/// later goes through.
const CONCURRENT_MODIFICATION: &str = "ConcurrentModificationException";

/// The pauses before each retry of a call that met that race.
const TRANSIENT_PAUSES: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Whether an answer is TorchServe's race rather than a refusal (a retry
/// that then finds the model gone or already there fails as before).
fn transient_failure(status: StatusCode, body: &str) -> bool {
    status == StatusCode::INTERNAL_SERVER_ERROR && body.contains(CONCURRENT_MODIFICATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_torchserves_race_is_tried_again() {
        let race = "{\n  \"code\": 500,\n  \"type\": \"ConcurrentModificationException\"\n}";
        assert!(transient_failure(StatusCode::INTERNAL_SERVER_ERROR, race));
        assert!(!transient_failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"type\": \"InternalServerException\"}"
        ));
        assert!(!transient_failure(StatusCode::NOT_FOUND, race));
        assert!(!transient_failure(StatusCode::OK, ""));
    }
}
