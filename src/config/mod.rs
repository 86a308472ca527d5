//! Lossless editing of the server's config files.
//!
//! Owns: parsing and editing `config.properties` (including the `models={…}`
//! JSON value) and the gateway's `tensorzero.toml`, the `--set` assignment
//! syntax, and safe writes with backup and restore. It never talks to a server; `apply` and `server` call it.

pub mod assignment;
pub mod escape;
pub mod file;
pub mod gateway_toml;
pub mod models;
mod models_text;
pub mod properties;

use std::path::{Path, PathBuf};

pub use assignment::{apply_assignments, Assignment, SettingKey};
pub use file::{restore, ConfigFile, RestoreOutcome};
pub use gateway_toml::{GatewayToml, TomlScalar};
pub use models::{ModelField, Models, MODELS_KEY};
pub use properties::Properties;

/// What went wrong with a config file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}", path = .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}", path = .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}", path = .path.display())]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error("{path}: {reason}", path = .path.display())]
    Assignment { path: PathBuf, reason: String },
    #[error("{path} was changed by someone else since servetune read it; not overwriting it", path = .path.display())]
    ChangedSinceRead { path: PathBuf },
    #[error(
        "{path} was changed by someone else after servetune's last write; restore with --force to discard that change",
        path = .path.display()
    )]
    ChangedSinceWrite { path: PathBuf },
    #[error("{path}: servetune has no backup of it ({backup} is missing): nothing to restore", path = .path.display(), backup = .backup.display())]
    NoBackup { path: PathBuf, backup: PathBuf },
}

/// Reads and parses a `.properties` file, naming the file in every error.
pub fn read_properties(path: &Path) -> Result<(ConfigFile, Properties), ConfigError> {
    let file = ConfigFile::read(path)?;
    let props = Properties::parse(file.bytes().to_vec()).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: e.line,
        reason: e.error.to_string(),
    })?;
    if let Some(entry) = props.entry(MODELS_KEY) {
        Models::parse(&entry.value).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: entry.line,
            reason: e.to_string(),
        })?;
    }
    Ok((file, props))
}

/// Applies assignments to a parsed document, naming `path` in errors.
pub fn apply_to(path: &Path, props: &mut Properties, assignments: &[Assignment]) -> Result<(), ConfigError> {
    apply_assignments(props, assignments).map_err(|error| match error {
        assignment::ApplyError::Models { line, error } => ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            reason: error.to_string(),
        },
        other => ConfigError::Assignment {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

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
