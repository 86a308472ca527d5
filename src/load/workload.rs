//! A workload: what is sent (method, bodies, content type, headers) and how
//! (closed or open loop, a rate profile or a replayed log, warm-up, window,
//! stability rule, limits), as the
//! `bench` flags and a study's `[workload]` both describe it. `plan` turns
//! one into a `LoadPlan` against a URL; both callers go through it, so a
//! study measures exactly what `bench` would.

use std::sync::Arc;
use std::time::Duration;

use super::error::LoadError;
use super::mix::Mix;
use super::request::{Endpoint, Protocol, RenderedRequests, RequestSpec};
use super::run::{resolve, LoadPlan, Schedule};
use super::tls::{tls_target, Verification};
use super::window::StabilityRule;

/// What to send and how.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Default: POST with a body, GET without.
    pub method: Option<String>,
    /// Sent round-robin; empty: the protocol's default body, if any.
    pub bodies: Vec<Vec<u8>>,
    pub protocol: Protocol,
    /// Default: the protocol's.
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub schedule: Schedule,
    pub warmup: Duration,
    pub duration: Duration,
    pub stability: Option<StabilityRule>,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub threads: usize,
    pub seed: u64,
    pub verification: Verification,
    /// Several models of one TorchServe, each request to one of them by
    /// weight (`/predictions/<model>` on the URL's host; its bodies).
    pub mix: Option<Arc<Mix>>,
}

impl Workload {
    /// A closed loop of `users` with TorchServe's defaults for the rest.
    pub fn closed(users: u32, warmup: Duration, duration: Duration) -> Self {
        Self {
            method: None,
            bodies: Vec::new(),
            protocol: Protocol::Torchserve,
            content_type: None,
            headers: Vec::new(),
            schedule: Schedule::Closed {
                stages: super::stages::Stages::constant(users, warmup + duration),
                think_time: Duration::ZERO,
            },
            warmup,
            duration,
            stability: None,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            threads: 1,
            seed: 1,
            verification: Verification::WebPki,
            mix: None,
        }
    }

    /// The most requests this workload can have in flight at once.
    pub fn max_concurrency(&self) -> usize {
        match &self.schedule {
            Schedule::Closed { stages, .. } => stages.peak_users() as usize,
            Schedule::Open { .. } | Schedule::Profile { .. } | Schedule::Replay(_) => self.max_in_flight,
        }
    }

    /// The same workload with another window (a closed loop's constant
    /// users hold past their stage's end, so only the lengths change).
    #[must_use]
    pub fn with_window(&self, warmup: Duration, duration: Duration) -> Self {
        Self {
            warmup,
            duration,
            ..self.clone()
        }
    }

    /// The request every send is made of, for `url` with `extra_headers`
    /// (e.g. a bearer key) added.
    pub fn requests(&self, url: &str, extra_headers: &[(String, String)]) -> Result<RequestSpec, LoadError> {
        let endpoint = Endpoint::parse(url)?;
        let bodies = if self.bodies.is_empty() {
            self.protocol
                .default_body()
                .map(|b| vec![b.to_vec()])
                .unwrap_or_default()
        } else {
            self.bodies.clone()
        };
        let method = self.method.clone().unwrap_or_else(|| {
            if bodies.is_empty() && self.mix.is_none() {
                "GET"
            } else {
                "POST"
            }
            .to_string()
        });
        let mut headers = self.headers.clone();
        for (name, value) in extra_headers {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                headers.push((name.clone(), value.clone()));
            }
        }
        Ok(RequestSpec {
            method: method.to_ascii_uppercase(),
            endpoint,
            headers,
            content_type: Some(
                self.content_type
                    .clone()
                    .unwrap_or_else(|| self.protocol.default_content_type().to_string()),
            ),
            bodies,
        })
    }

    /// The rendered requests: `spec`'s, or for a replay one group per
    /// replayed path (its method, its model's bodies) on `spec`'s host, or
    /// for a mix one group per model.
    fn render(&self, spec: RequestSpec) -> RenderedRequests {
        let Schedule::Replay(traffic) = &self.schedule else {
            return match &self.mix {
                Some(mix) => render_mix(mix, &spec),
                None => RenderedRequests::render(&spec),
            };
        };
        let groups: Vec<RequestSpec> = traffic
            .groups
            .iter()
            .map(|group| RequestSpec {
                method: self
                    .method
                    .clone()
                    .unwrap_or_else(|| group.method.clone())
                    .to_ascii_uppercase(),
                endpoint: Endpoint {
                    path_and_query: group.path.clone(),
                    ..spec.endpoint.clone()
                },
                bodies: group.bodies.clone(),
                ..spec.clone()
            })
            .collect();
        RenderedRequests::render_groups(&groups)
    }

    /// The load plan for `url`: resolves the host and prepares TLS.
    pub async fn plan(&self, url: &str, extra_headers: &[(String, String)]) -> Result<LoadPlan, LoadError> {
        let spec = self.requests(url, extra_headers)?;
        let endpoint = &spec.endpoint;
        let tls = endpoint
            .tls
            .then(|| tls_target(&endpoint.host, &self.verification))
            .transpose()?
            .map(Arc::new);
        Ok(LoadPlan {
            tls,
            address: resolve(&endpoint.host, endpoint.port).await?,
            requests: Arc::new(self.render(spec)),
            schedule: self.schedule.clone(),
            warmup: self.warmup,
            duration: self.duration,
            stability: self.stability,
            request_timeout: self.request_timeout,
            max_in_flight: self.max_in_flight,
            threads: self.threads,
            seed: self.seed,
            mix: self.mix.clone(),
        })
    }
}

/// One group per model of `mix`: `spec` to `/predictions/<model>`, with the
/// model's bodies.
fn render_mix(mix: &Mix, spec: &RequestSpec) -> RenderedRequests {
    let groups: Vec<RequestSpec> = mix
        .models
        .iter()
        .zip(&mix.bodies)
        .map(|(model, bodies)| RequestSpec {
            endpoint: Endpoint {
                path_and_query: format!("/predictions/{model}"),
                ..spec.endpoint.clone()
            },
            bodies: bodies.clone(),
            ..spec.clone()
        })
        .collect();
    RenderedRequests::render_groups(&groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_defaults_and_extra_headers_once() {
        let mut workload = Workload::closed(4, Duration::from_secs(1), Duration::from_secs(3));
        workload.bodies = vec![b"x".to_vec()];
        workload.headers = vec![("Authorization".into(), "Bearer mine".into())];
        let spec = workload
            .requests(
                "http://127.0.0.1:8080/predictions/tiny",
                &[
                    ("authorization".into(), "Bearer key".into()),
                    ("X-A".into(), "1".into()),
                ],
            )
            .unwrap();
        assert_eq!(spec.method, "POST");
        assert_eq!(spec.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(
            spec.headers,
            vec![
                ("Authorization".to_string(), "Bearer mine".to_string()),
                ("X-A".to_string(), "1".to_string())
            ]
        );
        assert_eq!(workload.max_concurrency(), 4);
        let longer = workload.with_window(Duration::from_secs(2), Duration::from_secs(10));
        assert_eq!(
            (longer.warmup, longer.duration),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
    }
}
