//! Which study holds a deployment: `.servetune/study.lock` beside its config
//! file, written when a study starts moving the server and removed when the
//! study has put it back. A lock left behind means a study was killed: the
//! server may still run one of its candidates and the config file may hold
//! one. Other commands then refuse to touch the deployment and say how to
//! recover (`tune --resume`, or `restore`), instead of starting a new study
//! on top of a half-finished one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::server::process::is_alive;

/// What the lock file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub study: String,
    pub results_dir: PathBuf,
    pub pid: u32,
    /// Whether TorchServe was running when the study first took the
    /// deployment: a study leaves it as found, and a resume after a kill
    /// learns it here (the server it finds may be the killed study's).
    /// Absent in locks written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_was_running: Option<bool>,
}

/// Where the lock of the deployment configured by `config` lives.
pub fn lock_path(config: &Path) -> PathBuf {
    config
        .parent()
        .unwrap_or(Path::new("."))
        .join(".servetune")
        .join("study.lock")
}

/// Where the holding study keeps its original config beside the lock: the
/// bytes it puts back at the end, which a resume of it reads (servetune's
/// backup may be older: an operator's `apply` before the study).
pub fn original_path(config: &Path) -> PathBuf {
    lock_path(config).with_file_name("study.original")
}

/// Keeps the holding study's original beside the lock (with the config's permissions).
pub fn keep_original(config: &Path, original: &[u8]) -> Result<(), crate::config::ConfigError> {
    crate::config::file::write_atomically(&original_path(config), original, config)
}

/// The original the holding study kept, if any.
pub fn kept_original(config: &Path) -> Option<Vec<u8>> {
    std::fs::read(original_path(config)).ok()
}

/// The study holding the deployment, if any.
pub fn holder(config: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(lock_path(config)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the holder's process still runs.
pub fn running(holder: &Holder) -> bool {
    holder.pid != std::process::id() && is_alive(holder.pid as i32)
}

/// Why the deployment is not free, in words that say how to recover.
pub fn refusal(config: &Path, holder: &Holder) -> String {
    if running(holder) {
        return format!(
            "study '{}' (pid {}) is running on the deployment of {}; wait for it, or stop it (Ctrl-C, SIGTERM: it puts \
             the server back)",
            holder.study,
            holder.pid,
            config.display()
        );
    }
    format!(
        "an interrupted study '{study}' holds the deployment of {config} (it was killed; the server may still run one of \
         its candidates). Resume it: `servetune tune --resume {study} --results-dir {results}`; or put the original \
         config back: `servetune restore --config {config} --restart --target TARGET.toml`",
        study = holder.study,
        config = config.display(),
        results = holder.results_dir.display()
    )
}

/// Fails with the refusal when some study holds the deployment.
pub fn check_free(config: &Path) -> Result<(), String> {
    match holder(config) {
        Some(holder) => Err(refusal(config, &holder)),
        None => Ok(()),
    }
}

/// Marks the deployment as held by `holder`.
pub fn acquire(config: &Path, holder: &Holder) -> Result<(), crate::config::ConfigError> {
    let path = lock_path(config);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| crate::config::ConfigError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let text = serde_json::to_string(holder).expect("a holder serialises");
    crate::config::file::write_data_atomically(&path, text.as_bytes())
}

/// Frees the deployment (and the `.servetune/` folder when it is empty).
pub fn release(config: &Path) {
    let path = lock_path(config);
    let _ = std::fs::remove_file(original_path(config));
    let _ = std::fs::remove_file(&path);
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_left_by_a_killed_study_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.properties");
        assert!(check_free(&config).is_ok());
        let dead = Holder {
            study: "tiny".into(),
            results_dir: PathBuf::from("/srv/results"),
            pid: 999_999_999,
            server_was_running: Some(false),
        };
        acquire(&config, &dead).unwrap();
        let e = check_free(&config).unwrap_err();
        assert!(
            e.contains("interrupted study 'tiny'") && e.contains("tune --resume tiny") && e.contains("restore"),
            "{e}"
        );
        assert_eq!(holder(&config), Some(dead.clone()), "the lock keeps what it was given");
        let alive = Holder { pid: 1, ..dead.clone() };
        acquire(&config, &alive).unwrap();
        assert!(check_free(&config).unwrap_err().contains("is running"));
        release(&config);
        assert!(check_free(&config).is_ok());
        assert!(!dir.path().join(".servetune").exists());
    }
}
