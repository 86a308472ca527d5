//! What went wrong with a store: one error type for the file journal and
//! PostgreSQL, telling a broken connection (worth another try) from the rest.

use super::file::JournalError;

/// What went wrong with a store; every variant names it (never a password).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("storage {storage}: {reason}")]
    Postgres { storage: String, reason: String },
    /// The connection broke (a reset, the database restarting): another
    /// try on a new connection may succeed.
    #[error("storage {storage}: {reason}")]
    Transient { storage: String, reason: String },
    #[error(
        "--storage '{0}': a postgres://user@host:port/database URL, or \"file\" (the journal in results/<study>/)"
    )]
    Unknown(String),
}

impl StoreError {
    /// Whether another try may succeed (see `pg_retry`).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}
