//! TorchServe token authorization: reading `key_file.json`.
//!
//! TorchServe (0.12, on by default) writes the file into its working
//! directory at start, with new keys each time; keys expire (60 min by
//! default). Keys are never printed: `Debug` redacts them.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::error::ServerError;

#[derive(Deserialize)]
struct KeyEntry {
    key: String,
}

#[derive(Deserialize)]
struct KeyFile {
    management: KeyEntry,
    inference: KeyEntry,
    #[serde(rename = "API")]
    api: KeyEntry,
}

/// The three keys of a running TorchServe.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub inference: String,
    pub management: String,
    /// The token API key, which renews the other two when they expire.
    pub api: String,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys { <redacted> }")
    }
}

impl Keys {
    pub fn read(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| ServerError::KeyFile {
            path: path.to_path_buf(),
            reason: format!("not a TorchServe key file: {e}"),
        })?;
        Ok(Self {
            inference: file.inference.key,
            management: file.management.key,
            api: file.api.key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_torchserve_key_file_and_never_shows_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key_file.json");
        std::fs::write(
            &path,
            r#"{"management": {"key": "M-key", "expiration time": "2026-01-01T00:00:00Z"},
                "inference": {"key": "I-key", "expiration time": "2026-01-01T00:00:00Z"},
                "API": {"key": "A-key"}}"#,
        )
        .unwrap();
        let keys = Keys::read(&path).unwrap();
        assert_eq!(
            (keys.inference.as_str(), keys.management.as_str(), keys.api.as_str()),
            ("I-key", "M-key", "A-key")
        );
        assert!(!format!("{keys:?}").contains("key\""));
        assert!(!format!("{keys:?}").contains("I-key"));
        std::fs::write(&path, "{}").unwrap();
        assert!(Keys::read(&path).is_err());
    }
}
