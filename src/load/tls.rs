//! TLS to the server under test (rustls, ring): the one place that builds
//! a client TLS config, for the load generator (one connector per run) and
//! for the HTTP client of TorchServe's management, inference and metrics
//! APIs (`server::tls`). Certificates are checked against the Mozilla roots
//! (webpki-roots), against the CAs of a PEM file (`ca_file` of a target
//! file), or not at all (`--insecure-tls`, `insecure_tls = true`: TorchServe
//! deployments often use self-signed certificates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::error::LoadError;
use crate::cert_check::ChainOnly;

/// How to speak TLS to one host.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({:?})", self.server_name)
    }
}

/// Whether server certificates are checked, and against what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Verification {
    /// Against the Mozilla root store.
    #[default]
    WebPki,
    /// Against the CA certificates of this PEM file (a private CA, or a
    /// self-signed server certificate itself).
    CaFile(PathBuf),
    /// Not at all (self-signed servers); the handshake signatures still are.
    Insecure,
}

/// The certificates of a PEM file; an error says what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file of certificates: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let mut roots = RootCertStore::empty();
    let (_, rejected) = roots.add_parsable_certificates(certificates.iter().cloned());
    if rejected > 0 {
        return Err(format!("{rejected} of its certificates cannot be parsed"));
    }
    Ok(certificates)
}

/// The client TLS config for `verification`, offering `alpn` protocols.
pub fn client_config(verification: &Verification, alpn: &[&[u8]]) -> Result<ClientConfig, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = certificate_verifier(verification, Arc::clone(&provider))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::BadInput(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The check of server certificates that `verification` asks for.
fn certificate_verifier(
    verification: &Verification,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, LoadError> {
    let webpki = |roots: RootCertStore, provider: Arc<CryptoProvider>| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| LoadError::BadInput(format!("TLS setup: {e}")))
    };
    Ok(match verification {
        Verification::WebPki => webpki(
            RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            provider,
        )?,
        Verification::CaFile(path) => {
            let pinned =
                read_ca_file(path).map_err(|e| LoadError::BadInput(format!("ca_file {}: {e}", path.display())))?;
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(pinned.iter().cloned());
            Arc::new(CaFileVerifier {
                webpki: webpki(roots, provider)?,
                pinned,
            })
        }
        Verification::Insecure => Arc::new(ChainOnly { roots: None, provider }),
    })
}

/// Whether the certificate chain in PEM file `chain` is valid for `host`
/// as `verification` checks it (`init` uses it to tell a self-signed or
/// publicly signed certificate from one it cannot check).
pub fn chain_verifies(verification: &Verification, chain: &Path, host: &str) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) = certificate_verifier(verification, provider) else {
        return false;
    };
    let Ok(certificates) = read_ca_file(chain) else {
        return false;
    };
    let Some((end_entity, intermediates)) = certificates.split_first() else {
        return false;
    };
    let Ok(server_name) = ServerName::try_from(host.to_string()) else {
        return false;
    };
    verifier
        .verify_server_cert(end_entity, intermediates, &server_name, &[], UnixTime::now())
        .is_ok()
}

/// Checks against the CAs of a `ca_file`; a server certificate that is
/// itself in the file (a self-signed one, which webpki refuses when it says
/// it is a CA, as `openssl req -x509` makes them) is accepted as pinned when
/// it names the host.
#[derive(Debug)]
struct CaFileVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(verified) => return Ok(verified),
            Err(refused) => refused,
        };
        if !self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

pub fn tls_target(host: &str, verification: &Verification) -> Result<TlsTarget, LoadError> {
    let config = client_config(verification, &[b"http/1.1"])?;
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| LoadError::BadInput(format!("'{host}' is not a valid TLS server name")))?;
    Ok(TlsTarget {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `host` that says it is a CA, as
    /// `openssl req -x509` makes them, in a PEM file in `dir`.
    fn self_signed_ca(dir: &Path, host: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let path = dir.join(format!("{host}.pem"));
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    #[test]
    fn a_self_signed_certificate_in_the_ca_file_is_pinned_for_its_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let certificate = self_signed_ca(dir.path(), "127.0.0.1");
        let pinned = Verification::CaFile(certificate.clone());
        assert!(chain_verifies(&pinned, &certificate, "127.0.0.1"));
        assert!(
            !chain_verifies(&pinned, &certificate, "localhost"),
            "a name it does not cover"
        );
        assert!(!chain_verifies(&Verification::WebPki, &certificate, "127.0.0.1"));
        let other = self_signed_ca(dir.path(), "localhost");
        assert!(
            !chain_verifies(&Verification::CaFile(other), &certificate, "127.0.0.1"),
            "another self-signed certificate is no CA of this one"
        );
        assert!(chain_verifies(&Verification::Insecure, &certificate, "anything"));
    }
}
