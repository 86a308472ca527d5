//! The config editor's error: what went wrong with a config file, every
//! variant naming the file (and the line, where there is one).

use std::path::PathBuf;

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
