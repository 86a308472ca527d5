//! TLS to a TorchServe whose addresses are https (`keystore`, or
//! `certificate_file` and `private_key_file` in its config.properties): the
//! target file's `ca_file` (a PEM file of the CA, relative to the target
//! file) or `insecure_tls = true` (a self-signed test certificate), else the
//! Mozilla roots.
//!
//! Owns the HTTP client of the management, inference
//! and metrics APIs, the warning line every command that talks to such a
//! server prints, and the hint an unknown CA gets. The TLS config itself is
//! built in `load::tls`, so the load generator speaks the same TLS.

use std::path::Path;
use std::time::Duration;

use crate::config::Properties;
use crate::load::tls::{chain_verifies, client_config, Verification};

use super::endpoints::Endpoints;
use super::error::ServerError;
use super::spec::TargetSpec;

/// What to do about an https TorchServe, for the target file's keys.
const WHAT_TO_DO: &str = "set ca_file = \"PEM file of the CA that signed TorchServe's certificate\" \
     (or of the certificate itself) in the target file, or insecure_tls = true for a self-signed \
     test certificate";

/// The HTTP client for TorchServe's APIs, speaking TLS as `verification` says.
pub fn http_client(verification: &Verification, timeout: Duration) -> Result<reqwest::Client, ServerError> {
    let tls = client_config(verification, &[b"http/1.1"]).map_err(|e| ServerError::Unsupported(e.to_string()))?;
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| ServerError::Unsupported(format!("building the HTTP client for TorchServe: {e}")))
}

/// The addresses of `endpoints` that are https, by property.
fn https_properties(endpoints: &Endpoints) -> Vec<&'static str> {
    [&endpoints.inference, &endpoints.management, &endpoints.metrics]
        .into_iter()
        .filter(|e| e.scheme == "https")
        .map(|e| e.property)
        .collect()
}

/// The line saying how servetune checks an https TorchServe's certificate
/// (None when no address is https); `target` names the target file.
pub fn notice(endpoints: &Endpoints, verification: &Verification, target: &Path) -> Option<String> {
    let https = https_properties(endpoints);
    if https.is_empty() {
        return None;
    }
    let https = https.join(", ");
    Some(match verification {
        Verification::Insecure => format!(
            "insecure_tls = true in {}: TorchServe's certificate ({https}: https) is NOT checked",
            target.display()
        ),
        Verification::CaFile(path) => format!(
            "TLS to TorchServe ({https}: https): certificate checked against ca_file {}",
            path.display()
        ),
        Verification::WebPki => format!(
            "TLS to TorchServe ({https}: https): certificate checked against the Mozilla roots \
             (no ca_file or insecure_tls in {})",
            target.display()
        ),
    })
}

/// Prints `notice` as a warning line (insecure) or an info line.
pub fn announce(endpoints: &Endpoints, verification: &Verification, target: &Path) {
    match (notice(endpoints, verification, target), verification) {
        (Some(line), Verification::Insecure) => tracing::warn!("{line}"),
        (Some(line), _) => tracing::info!("{line}"),
        (None, _) => {}
    }
}

/// `announce` for the config file a target names, as it is now.
pub fn announce_spec(spec: &TargetSpec) {
    if let Ok((_, props)) = crate::config::read_properties(&spec.config) {
        announce(&Endpoints::from_properties(&props), &spec.tls, &spec.source);
    }
}

/// What `init` writes into the target file of an https deployment, and the
/// line it prints about what it guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitGuess {
    pub toml: String,
    pub note: String,
}

/// The TLS keys for a target file of the deployment whose config is
/// `properties` (in `config_dir`); None when no address is https.
pub fn guess_for_init(properties: &Properties, endpoints: &Endpoints, config_dir: &Path) -> Option<InitGuess> {
    let https = https_properties(endpoints);
    let first = [&endpoints.inference, &endpoints.management, &endpoints.metrics]
        .into_iter()
        .find(|e| e.scheme == "https")?;
    let host = match first.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        host => host,
    };
    let https = https.join(", ");
    let certificate = properties
        .get("certificate_file")
        .map(|f| config_dir.join(f.trim()))
        .filter(|f| f.is_file());
    let toml_path = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    if let Some(certificate) = &certificate {
        if chain_verifies(&Verification::CaFile(certificate.clone()), certificate, host) {
            return Some(InitGuess {
                toml: format!(
                    "# TorchServe serves https with a self-signed certificate: trusted as its own CA.\nca_file = {}\n",
                    toml_path(certificate)
                ),
                note: format!(
                    "https ({https}): certificate_file {} is self-signed and valid for {host}: ca_file = it (guessed)",
                    certificate.display()
                ),
            });
        }
        if chain_verifies(&Verification::WebPki, certificate, host) {
            return Some(InitGuess {
                toml:
                    "# TorchServe serves https with a certificate of a public CA (checked against the Mozilla roots).\n"
                        .into(),
                note: format!("https ({https}): certificate_file is signed by a public CA: nothing to set (guessed)"),
            });
        }
    }
    let what = match (&certificate, properties.get("keystore")) {
        (Some(certificate), _) => format!("the CA that signed {}", certificate.display()),
        (None, Some(keystore)) => format!("the CA of the keystore {}", keystore.trim()),
        (None, None) => "the CA of TorchServe's certificate".to_string(),
    };
    Some(InitGuess {
        toml: format!(
            "# TorchServe serves https; servetune could not tell who signed its certificate.\n\
             # ca_file = \"ca.pem\"   # the PEM file of {what}: set it, and remove insecure_tls\n\
             insecure_tls = true   # checks no certificate (a self-signed test deployment)\n"
        ),
        note: format!(
            "https ({https}): cannot check TorchServe's certificate from here: wrote insecure_tls = true (guessed); \
             set ca_file in target.toml to the PEM file of {what}"
        ),
    })
}

/// The error of a request to `url` that failed: a refused certificate (an
/// unknown CA, a name it does not cover) says what to do, and is not worth
/// retrying; anything else is an unreachable server.
pub fn request_error(url: &str, error: reqwest::Error, verification: &Verification) -> ServerError {
    let reason = chain(&error.without_url());
    if !reason.contains("invalid peer certificate") {
        return ServerError::Unreachable {
            url: url.to_string(),
            reason,
        };
    }
    let advice = match verification {
        Verification::WebPki => format!("TorchServe's certificate is not signed by a known CA: {WHAT_TO_DO}"),
        Verification::CaFile(path) => format!(
            "TorchServe's certificate is not signed by ca_file {}, or does not name this host",
            path.display()
        ),
        Verification::Insecure => "TorchServe's certificate was refused".to_string(),
    };
    ServerError::Certificate {
        url: url.to_string(),
        reason: format!("{reason}: {advice}"),
    }
}

/// The error and its sources, as one line.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_https_addresses_and_the_setting() {
        let props = Properties::parse(
            b"inference_address=https://127.0.0.1:8443\nmanagement_address=https://127.0.0.1:8444\n".to_vec(),
        )
        .unwrap();
        let endpoints = Endpoints::from_properties(&props);
        let target = Path::new("target.toml");
        let line = notice(&endpoints, &Verification::Insecure, target).unwrap();
        assert!(
            line.contains("insecure_tls = true in target.toml")
                && line.contains("inference_address, management_address")
                && line.contains("NOT checked"),
            "{line}"
        );
        let plain = Endpoints::from_properties(&Properties::parse(b"".to_vec()).unwrap());
        assert_eq!(notice(&plain, &Verification::Insecure, target), None);
    }

    #[test]
    fn init_trusts_a_self_signed_certificate_for_the_address_and_else_guesses_insecure() {
        let dir = tempfile::tempdir().unwrap();
        let write_certificate = |name: &str, host: &str| {
            let certified = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
            std::fs::write(dir.path().join(name), certified.cert.pem()).unwrap();
        };
        write_certificate("local.pem", "127.0.0.1");
        write_certificate("other.pem", "other.example");
        let guess = |certificate: &str| {
            let text = format!("inference_address=https://0.0.0.0:8443\ncertificate_file={certificate}\n");
            let props = Properties::parse(text.into_bytes()).unwrap();
            guess_for_init(&props, &Endpoints::from_properties(&props), dir.path())
        };
        let trusted = guess("local.pem").unwrap();
        let path = dir.path().join("local.pem");
        assert!(
            trusted.toml.contains(&format!("ca_file = \"{}\"", path.display())),
            "{}",
            trusted.toml
        );
        assert!(
            trusted.note.contains("self-signed and valid for 127.0.0.1"),
            "{}",
            trusted.note
        );
        let unknown = guess("other.pem").unwrap();
        assert!(
            unknown.toml.contains("\ninsecure_tls = true") && unknown.toml.contains("# ca_file = "),
            "{}",
            unknown.toml
        );
        assert!(
            unknown.note.contains("insecure_tls = true (guessed)"),
            "{}",
            unknown.note
        );
        let plain = Properties::parse(b"inference_address=http://0.0.0.0:8080\n".to_vec()).unwrap();
        assert_eq!(
            guess_for_init(&plain, &Endpoints::from_properties(&plain), dir.path()),
            None
        );
    }
}
