//! What a PostgreSQL URL says beyond what `tokio-postgres` reads: the
//! TLS parameters of libpq (`sslmode`, with the stricter `verify-ca` and
//! `verify-full` that `tokio-postgres` does not know, and `sslrootcert`),
//! taken out of the URL before the rest is handed on; the password from the
//! environment or the password file; and the URL as it may be shown
//! (without its password). Parsing only: connecting is `postgres` and
//! `pg_tls`.

use std::path::{Path, PathBuf};

use tokio_postgres::Config;

/// libpq's `sslmode`: how much TLS a connection insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, plain text otherwise; no certificate check.
    Prefer,
    /// TLS or no connection; no certificate check (unless `sslrootcert` is given).
    Require,
    /// TLS, the server's chain checked against the root certificates.
    VerifyCa,
    /// `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca, verify-full";

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the root certificates of `verify-ca`/`verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file (`sslrootcert=FILE`, or libpq's `~/.postgresql/root.crt`).
    File(PathBuf),
    /// The Mozilla roots (`sslrootcert=system`).
    System,
}

/// The TLS parameters of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    /// Set for the verifying modes (and `require` with `sslrootcert`).
    pub roots: Option<RootCerts>,
}

impl TlsParams {
    /// How the connection is secured, for messages.
    pub fn describe(&self) -> String {
        let roots = match &self.roots {
            Some(RootCerts::File(path)) => format!(", CA {}", path.display()),
            Some(RootCerts::System) => ", the system's CAs".into(),
            None => String::new(),
        };
        let what = match (self.mode, &self.roots) {
            (SslMode::Disable, _) => "no TLS",
            (SslMode::Prefer, _) => "TLS if the server offers it, certificate not checked",
            (SslMode::Require, None) => "TLS, certificate not checked",
            (SslMode::Require | SslMode::VerifyCa, _) => "TLS, certificate chain checked",
            (SslMode::VerifyFull, _) => "TLS, certificate chain and host name checked",
        };
        format!("sslmode={} ({what}{roots})", self.mode.as_str())
    }
}

/// Takes `sslmode` and `sslrootcert` out of a postgres:// URL: returns
/// the URL without them and what they say (default `prefer`, like libpq).
/// A mode libpq does not know, or a root file that does not exist, is an
/// error naming the parameter.
pub fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let text = percent_decode(value);
                mode = Some(SslMode::parse(&text).ok_or_else(|| {
                    format!(
                        "--storage: sslmode={text} is not a TLS mode (one of {})",
                        SslMode::NAMES
                    )
                })?);
            }
            "sslrootcert" => root = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let mode = mode.unwrap_or(SslMode::Prefer);
    let roots = root_certs(mode, root.as_deref())?;
    let rest = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((rest, TlsParams { mode, roots }))
}

/// The root certificates a mode checks against: `sslrootcert` (which must
/// exist), else for the verifying modes libpq's `~/.postgresql/root.crt`.
fn root_certs(mode: SslMode, given: Option<&str>) -> Result<Option<RootCerts>, String> {
    let verifying = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
    match given {
        Some("system") => Ok(Some(RootCerts::System)),
        Some(file) => {
            let path = PathBuf::from(file);
            if !path.is_file() {
                return Err(format!("--storage: sslrootcert={file}: no such file"));
            }
            Ok((mode != SslMode::Disable && mode != SslMode::Prefer).then_some(RootCerts::File(path)))
        }
        None if verifying => {
            let default = std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"));
            match default.filter(|path| path.is_file()) {
                Some(path) => Ok(Some(RootCerts::File(path))),
                None => Err(format!(
                    "--storage: sslmode={} checks the server's certificate: name the CA with sslrootcert=FILE \
                     (or sslrootcert=system for the public CAs)",
                    mode.as_str()
                )),
            }
        }
        None => Ok(None),
    }
}

/// `%XX` escapes of a URL parameter, decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with the password of any URL in it replaced by `***`.
pub fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &text[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => text.to_string(),
    }
}

/// `PGPASSWORD`, else the matching line of the password file.
pub fn password_from_environment(config: &Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    password_file_lookup(&text, &host, &port, database, user)
}

/// The password for (host, port, database, user) in a `.pgpass` text:
/// `host:port:database:user:password`, `*` matching anything, `\` escaping.
pub fn password_file_lookup(text: &str, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_escaped(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if matches(&fields[0], host)
            && matches(&fields[1], port)
            && matches(&fields[2], database)
            && matches(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_escaped(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field at least").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field at least").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, tls) = take_tls_params("postgres://u@db:5432/s?application_name=x&sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u@db:5432/s?application_name=x");
        assert_eq!(
            tls,
            TlsParams {
                mode: SslMode::Require,
                roots: None
            }
        );
        let (rest, tls) = take_tls_params("postgres://u@db/s").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://u@db/s", SslMode::Prefer));
        let ca = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "postgres://u@db/s?sslmode=verify-full&sslrootcert={}",
            ca.path().display()
        );
        let (rest, tls) = take_tls_params(&url).unwrap();
        assert_eq!(rest, "postgres://u@db/s");
        assert_eq!(tls.roots, Some(RootCerts::File(ca.path().to_path_buf())));
        assert!(tls.describe().contains("verify-full"), "{}", tls.describe());
        let (_, tls) = take_tls_params("postgres://u@db/s?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!(tls.roots, Some(RootCerts::System));
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        let e = take_tls_params("postgres://u@db/s?sslmode=allow-maybe").unwrap_err();
        assert!(e.contains("sslmode=allow-maybe") && e.contains("verify-full"), "{e}");
        let e = take_tls_params("postgres://u@db/s?sslmode=verify-ca&sslrootcert=/no/such/ca.pem").unwrap_err();
        assert!(e.contains("sslrootcert=/no/such/ca.pem"), "{e}");
        assert_eq!(percent_decode("%2Fetc%2Fca.pem"), "/etc/ca.pem");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://tuner:s3cret@db:5432/studies"),
            "postgres://tuner:***@db:5432/studies"
        );
        assert_eq!(redact("postgres://tuner@db/studies"), "postgres://tuner@db/studies");
        assert_eq!(redact("not a url"), "not a url");
        let storage = crate::store::PgStorage::parse("postgres://tuner:s3cret@db:5432/studies").unwrap();
        assert!(!format!("{storage:?} {}", storage.display()).contains("s3cret"));
        let e = crate::store::PgStorage::parse("postgres://tuner:s3cret@db:notaport/x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("tuner:***@db"), "{e}");
    }

    #[test]
    fn the_password_file_is_matched_like_libpq() {
        let text = "# comment\ndb:5432:studies:tuner:first\n*:*:*:other:sec\\:ond\n";
        assert_eq!(
            password_file_lookup(text, "db", "5432", "studies", "tuner").as_deref(),
            Some("first")
        );
        assert_eq!(
            password_file_lookup(text, "h", "1", "d", "other").as_deref(),
            Some("sec:ond")
        );
        assert_eq!(password_file_lookup(text, "db", "5433", "studies", "tuner"), None);
    }
}
