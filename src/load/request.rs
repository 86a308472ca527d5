//! What each request is: method, URL, headers and bodies, rendered once into
//! the exact HTTP/1.1 bytes sent on the wire (round-robin over the bodies).
//!
//! Protocol presets set the content type the server expects: TorchServe
//! `/predictions/{model}` (raw bytes), KServe v2 `/v2/models/{m}/infer` and
//! OpenAI-style `/v1/chat/completions` (JSON).

use std::path::{Path, PathBuf};

use super::error::LoadError;

/// The API a body is meant for (decides the default content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// TorchServe `/predictions/{model}`: raw bytes.
    Torchserve,
    /// KServe v2 `/v2/models/{model}/infer`: JSON.
    KserveV2,
    /// OpenAI-style `/v1/chat/completions`: JSON.
    Openai,
}

impl Protocol {
    pub fn default_content_type(self) -> &'static str {
        match self {
            Protocol::Torchserve => "application/octet-stream",
            Protocol::KserveV2 | Protocol::Openai => "application/json",
        }
    }

    /// A body for when none is given (OpenAI only; the others need the model's input).
    pub fn default_body(self) -> Option<&'static [u8]> {
        match self {
            Protocol::Openai => Some(
                br#"{"model": "default", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}"#,
            ),
            Protocol::Torchserve | Protocol::KserveV2 => None,
        }
    }
}

/// Where requests go: scheme, host, port and path, from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`: TLS to the host.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path_and_query: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let bad = |reason: &str| LoadError::BadInput(format!("--url '{url}': {reason}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http://host:port/path"))?;
        let tls = match scheme {
            "http" => false,
            "https" => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => (host, port.parse::<u16>().map_err(|_| bad("bad port"))?),
            Some(_) => return Err(bad("no host")),
            None if !authority.is_empty() => (authority, if tls { 443 } else { 80 }),
            None => return Err(bad("no host")),
        };
        Ok(Self {
            tls,
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            port,
            path_and_query: path.to_string(),
        })
    }
}

/// Everything needed to render requests.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: String,
    pub endpoint: Endpoint,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub bodies: Vec<Vec<u8>>,
}

/// Reads a body file, or every file of a directory (sorted by name).
pub fn read_bodies(path: &Path) -> Result<Vec<Vec<u8>>, LoadError> {
    let bad = |reason: String| LoadError::BadInput(format!("--body {}: {reason}", path.display()));
    let metadata = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if metadata.is_file() {
        return Ok(vec![std::fs::read(path).map_err(|e| bad(e.to_string()))?]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| bad(e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad("the directory holds no files".to_string()));
    }
    files
        .iter()
        .map(|file| std::fs::read(file).map_err(|e| bad(format!("{}: {e}", file.display()))))
        .collect()
}

/// Parses a `K:V` header argument.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}': expected NAME:VALUE"))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("'{name}' is not a header name"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(format!("header {name}: line breaks are not allowed"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The rendered requests: one byte string per body, sent round-robin; or
/// several groups of them (a replay: one group per path), picked by group
/// and body.
#[derive(Debug, Clone)]
pub struct RenderedRequests {
    groups: Vec<Vec<Vec<u8>>>,
}

impl RenderedRequests {
    pub fn render(spec: &RequestSpec) -> Self {
        Self::render_groups(std::slice::from_ref(spec))
    }

    /// One group per spec, in order.
    pub fn render_groups(specs: &[RequestSpec]) -> Self {
        Self {
            groups: specs.iter().map(render_one).collect(),
        }
    }

    /// The bytes of request number `index` (of the first group).
    pub fn get(&self, index: u64) -> &[u8] {
        let wire = &self.groups[0];
        &wire[(index % wire.len() as u64) as usize]
    }

    /// The bytes of body `body` of group `group`.
    pub fn get_in(&self, group: u32, body: u32) -> &[u8] {
        let wire = &self.groups[group as usize];
        &wire[body as usize % wire.len()]
    }
}

/// Every body of `spec`, rendered.
fn render_one(spec: &RequestSpec) -> Vec<Vec<u8>> {
    let bodies: Vec<&[u8]> = if spec.bodies.is_empty() {
        vec![&[]]
    } else {
        spec.bodies.iter().map(Vec::as_slice).collect()
    };
    bodies
        .into_iter()
        .map(|body| {
            let mut head = format!(
                "{} {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: servetune\r\nAccept: */*\r\n",
                spec.method, spec.endpoint.path_and_query, spec.endpoint.host, spec.endpoint.port
            );
            let has = |name: &str| spec.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            if let Some(content_type) = &spec.content_type {
                if !has("content-type") && !body.is_empty() {
                    head.push_str(&format!("Content-Type: {content_type}\r\n"));
                }
            }
            for (name, value) in &spec.headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            if !body.is_empty() || spec.method != "GET" {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let endpoint = Endpoint::parse("http://127.0.0.1:8080/predictions/tiny").unwrap();
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port, endpoint.path_and_query.as_str()),
            ("127.0.0.1", 8080, "/predictions/tiny")
        );
        assert_eq!(Endpoint::parse("http://example").unwrap().port, 80);
        let secure = Endpoint::parse("https://h/x").unwrap();
        assert!(secure.tls && secure.port == 443);
        assert!(!Endpoint::parse("http://h/").unwrap().tls);
        assert!(Endpoint::parse("ftp://h/").is_err());
        assert!(Endpoint::parse("h:80/x").is_err());
        assert!(Endpoint::parse("http://h:99999/").is_err());
    }

    #[test]
    fn renders_round_robin_requests() {
        let spec = RequestSpec {
            method: "POST".into(),
            endpoint: Endpoint::parse("http://h:1/p").unwrap(),
            headers: vec![("Authorization".into(), "Bearer k".into())],
            content_type: Some("application/octet-stream".into()),
            bodies: vec![b"one".to_vec(), b"two!".to_vec()],
        };
        let requests = RenderedRequests::render(&spec);
        let first = String::from_utf8(requests.get(0).to_vec()).unwrap();
        assert!(first.starts_with("POST /p HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(first.contains(
            "Content-Type: application/octet-stream\r\nAuthorization: Bearer k\r\nContent-Length: 3\r\n\r\none"
        ));
        assert!(requests.get(3).ends_with(b"\r\n\r\ntwo!"));
    }

    #[test]
    fn header_and_body_errors_are_clear() {
        assert!(parse_header("X-Key: v").is_ok());
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("bad name: v").is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(read_bodies(empty.path()).unwrap_err().to_string().contains("no files"));
        assert!(read_bodies(&empty.path().join("missing")).is_err());
    }
}
