//! Lossless editing of the server's config files.
//!
//! Owns: parsing and editing `config.properties` (including the `models={…}`
//! JSON value) and the gateway's `tensorzero.toml`, the `--set` assignment
//! syntax, and safe writes with backup and restore. It never talks to a server; `apply` and `server` call it.

pub mod address;
pub mod assignment;
mod error;
pub mod escape;
pub mod file;
pub mod gateway_toml;
pub mod models;
mod models_text;
pub mod properties;

use std::path::Path;

pub use address::parse_address;
pub use assignment::{apply_assignments, Assignment, SettingKey};
pub use error::ConfigError;
pub use file::{restore, ConfigFile, RestoreOutcome};
pub use gateway_toml::{GatewayToml, TomlScalar};
pub use models::{ModelField, Models, MODELS_KEY};
pub use properties::Properties;

/// The log levels servetune writes TorchServe's log4j2 config for (the
/// `log4j.level` setting), TorchServe's default first.
pub const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

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
