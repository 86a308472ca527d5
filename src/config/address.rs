//! TorchServe's listen addresses (`inference_address=http://host:port` and
//! the like) read as host and port.

/// Parses a TorchServe address (`http://host:port`, `https://…`) into host
/// and port. `0.0.0.0` stands for every interface; callers connect to loopback.
pub fn parse_address(text: &str) -> Option<(String, u16)> {
    let (scheme, rest) = text.trim().split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if host.contains(':') && !host.starts_with('[') {
                (authority, default_port)
            } else {
                (host, port.parse().ok()?)
            }
        }
        _ => (authority, default_port),
    };
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_torchserve_addresses() {
        assert_eq!(parse_address("http://127.0.0.1:8080"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(parse_address("https://0.0.0.0:8443"), Some(("0.0.0.0".into(), 8443)));
        assert_eq!(parse_address("http://localhost"), Some(("localhost".into(), 80)));
        assert_eq!(parse_address("http://[::1]:9000"), Some(("::1".into(), 9000)));
        assert_eq!(parse_address("localhost:8080"), None);
        assert_eq!(parse_address("http://h:notaport"), None);
    }
}
