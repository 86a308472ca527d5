//! Where a TorchServe listens and which of its features are on, as its
//! `config.properties` says (with TorchServe 0.12's defaults).

use crate::config::{parse_address, Properties};

/// One listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The property that sets it (for error messages).
    pub property: &'static str,
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Base URL to connect to (a wildcard bind address becomes loopback).
    pub fn base_url(&self) -> String {
        let host = match self.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "[::1]",
            host if host.contains(':') => return format!("{}://[{host}]:{}", self.scheme, self.port),
            host => host,
        };
        format!("{}://{host}:{}", self.scheme, self.port)
    }

    /// Address to test with a bind whether the port is free.
    pub fn bind_host(&self) -> &str {
        if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        }
    }
}

/// The addresses and switches servetune needs from a TorchServe config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub inference: Endpoint,
    pub management: Endpoint,
    pub metrics: Endpoint,
    pub grpc_ports: Vec<(&'static str, u16)>,
    pub token_auth: bool,
    pub model_api: bool,
}

fn endpoint(props: &Properties, property: &'static str, default_port: u16) -> Endpoint {
    let text = props.get(property).map(str::to_string);
    let parsed = text.as_deref().and_then(parse_address);
    let scheme = match text.as_deref() {
        Some(t) if t.trim_start().starts_with("https") => "https",
        _ => "http",
    };
    let (host, port) = parsed.unwrap_or_else(|| ("127.0.0.1".to_string(), default_port));
    Endpoint {
        property,
        scheme,
        host,
        port,
    }
}

impl Endpoints {
    pub fn from_properties(props: &Properties) -> Self {
        let port = |key: &str, default: u16| props.get(key).and_then(|v| v.trim().parse().ok()).unwrap_or(default);
        Self {
            inference: endpoint(props, "inference_address", 8080),
            management: endpoint(props, "management_address", 8081),
            metrics: endpoint(props, "metrics_address", 8082),
            grpc_ports: vec![
                ("grpc_inference_port", port("grpc_inference_port", 7070)),
                ("grpc_management_port", port("grpc_management_port", 7071)),
            ],
            token_auth: props.get("disable_token_authorization").map(str::trim) != Some("true"),
            model_api: props.get("enable_model_api").map(str::trim) == Some("true"),
        }
    }

    /// Every port the server will bind, with the property that sets it.
    pub fn bound_ports(&self) -> Vec<(&'static str, String, u16)> {
        let mut ports: Vec<(&'static str, String, u16)> = [&self.inference, &self.management, &self.metrics]
            .into_iter()
            .map(|e| (e.property, e.bind_host().to_string(), e.port))
            .collect();
        for (property, port) in &self.grpc_ports {
            ports.push((property, "0.0.0.0".to_string(), *port));
        }
        ports
    }

    /// Two addresses of the config on one port (TorchServe would fail to
    /// bind the second): the two properties and the port.
    pub fn clash(&self) -> Option<(&'static str, &'static str, u16)> {
        let ports = self.bound_ports();
        ports.iter().enumerate().find_map(|(i, (a, _, port))| {
            ports[i + 1..]
                .iter()
                .find(|(_, _, other)| other == port)
                .map(|(b, _, _)| (*a, *b, *port))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_addresses_on_one_port_clash() {
        let props = Properties::parse(
            b"inference_address=http://127.0.0.1:9000\nmetrics_address=http://127.0.0.1:9000\n".to_vec(),
        )
        .unwrap();
        assert_eq!(
            Endpoints::from_properties(&props).clash(),
            Some(("inference_address", "metrics_address", 9000))
        );
        let fine = Properties::parse(b"inference_address=http://127.0.0.1:9000\n".to_vec()).unwrap();
        assert_eq!(Endpoints::from_properties(&fine).clash(), None);
    }

    #[test]
    fn defaults_and_overrides() {
        let props =
            Properties::parse(b"inference_address=http://0.0.0.0:9080\nenable_model_api=true\n".to_vec()).unwrap();
        let endpoints = Endpoints::from_properties(&props);
        assert_eq!(endpoints.inference.base_url(), "http://127.0.0.1:9080");
        assert_eq!(endpoints.management.base_url(), "http://127.0.0.1:8081");
        assert!(endpoints.token_auth);
        assert!(endpoints.model_api);
        assert_eq!(endpoints.bound_ports().len(), 5);
    }
}
