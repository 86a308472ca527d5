//! The daemon's HTTP API on a loopback address: `GET /healthz`, `GET
//! /status` (JSON), `GET /metrics` (Prometheus text) without a token, and
//! `POST /deployments/{name}/tune` with `Authorization: Bearer <token>`.
//!
//! Four routes, one request per connection: a small HTTP/1.1 reader on
//! `httparse` is all it takes, and keeps the daemon's footprint small.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::status::Shared;
use super::trigger::Trigger;

const MAX_HEAD: usize = 16 * 1024;

/// Serves until `stop` is cancelled.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &shared)).await;
                });
            }
            Err(error) => {
                tracing::warn!("api: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    bearer: Option<String>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: format!("{value}\n"),
        }
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let response = match read_request(&mut stream).await? {
        Some(request) => route(&request, shared).await,
        None => Response::json(400, serde_json::json!({"error": "bad request"})),
    };
    let reason = match response.status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n{}\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        if response.status == 401 {
            "www-authenticate: Bearer\r\n"
        } else {
            ""
        }
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads the request head (bodies are not used by any route).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buffer) {
            Ok(httparse::Status::Complete(_)) => {
                let bearer = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().strip_prefix("Bearer "))
                    .map(|v| v.trim().to_string());
                return Ok(Some(Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    path: parsed.path.unwrap_or("").to_string(),
                    bearer,
                }));
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => continue,
            _ => return Ok(None),
        }
    }
}

async fn route(request: &Request, shared: &Shared) -> Response {
    let path = request.path.split('?').next().unwrap_or("");
    match (request.method.as_str(), path) {
        ("GET", "/healthz") => Response {
            status: 200,
            content_type: "text/plain",
            body: "ok\n".into(),
        },
        ("GET", "/status") => Response::json(200, shared.status_json()),
        ("GET", "/metrics") => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: shared.metrics_text(),
        },
        (method, path) if path.starts_with("/deployments/") && path.ends_with("/tune") => {
            if method != "POST" {
                return Response::json(405, serde_json::json!({"error": "use POST"}));
            }
            if !shared.token_matches(request.bearer.as_deref()) {
                return Response::json(
                    401,
                    serde_json::json!({"error": "needs Authorization: Bearer <token> (the daemon's token_file)"}),
                );
            }
            let name = &path["/deployments/".len()..path.len() - "/tune".len()];
            match shared.trigger(name, Trigger::Manual).await {
                Ok(note) => Response::json(
                    202,
                    serde_json::json!({"deployment": name, "queued": true, "note": note}),
                ),
                Err(why) => Response::json(404, serde_json::json!({"error": why})),
            }
        }
        _ => Response::json(404, serde_json::json!({"error": "no such route"})),
    }
}
