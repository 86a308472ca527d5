//! A shared study outlives a broken connection to its database: a reset,
//! a failover, the database restarting. The study's calls that a worker or
//! leader makes between trials are retried here with a growing wait (up to
//! `RETRY_FOR` in all) on a fresh connection, instead of ending the run.
//! A retried call is safe to repeat: a claim that broke is rolled back by
//! PostgreSQL (its half-taken trial, if the commit did land, falls silent
//! and is handed out again), and a result whose store did land is
//! recognised as this worker's own and kept once. Connecting the first
//! time is not retried: a wrong URL is an error at once.

use std::time::{Duration, Instant};

use super::error::StoreError;
use super::postgres::{Appended, Claim, LostEntry, PgStorage, PgStudy, RunningTrial, StudyState};
use crate::space::Point;
use crate::trial::Entry;

/// How long a call keeps trying before its error ends the run.
const RETRY_FOR: Duration = Duration::from_secs(120);
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(8);

/// Whether `e` says the connection broke (another try may succeed).
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        // 08: connection exception; 57P01-03: the server shutting down,
        // crashed, or not accepting connections yet.
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return is_transient_io(io.kind());
        }
        source = cause.source();
    }
    false
}

impl PgStorage {
    /// Describes `e`, marked transient when the connection broke (another
    /// try may succeed: the database restarting, a reset).
    pub(super) fn db_error(&self, context: impl std::fmt::Display, e: tokio_postgres::Error) -> StoreError {
        let mut reason = format!("{context}: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let reason = super::pg_url::redact(&reason);
        match is_transient(&e) {
            true => StoreError::Transient {
                storage: self.display().to_string(),
                reason,
            },
            false => StoreError::Postgres {
                storage: self.display().to_string(),
                reason,
            },
        }
    }
}

fn is_transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected | TimedOut
    )
}

/// The waits between tries of one call.
struct Retry {
    started: Instant,
    wait: Duration,
}

impl Retry {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            wait: FIRST_WAIT,
        }
    }

    /// After a failed try: waits and says whether to try again (the error
    /// is transient, or the connection is gone, and time is left).
    async fn again(&mut self, error: &StoreError, connection_lost: bool) -> bool {
        let transient = connection_lost || error.is_transient();
        if !transient || self.started.elapsed() + self.wait > RETRY_FOR {
            return false;
        }
        tracing::warn!(
            "{error}: trying again in {:.1} s (for up to {} s in all)",
            self.wait.as_secs_f64(),
            RETRY_FOR.as_secs()
        );
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
        true
    }
}

/// Runs `$call` (an expression on `$study`) until it succeeds, fails for
/// good, or `RETRY_FOR` is spent; reconnects `$study` between tries.
macro_rules! retried {
    ($study:ident, $call:expr) => {{
        let mut retry = Retry::new();
        loop {
            match $call.await {
                Err(e) if retry.again(&e, $study.connection_lost()).await => $study.reconnect().await,
                result => break result,
            }
        }
    }};
}

impl PgStudy {
    /// Takes the next trial number for a run chosen without a claim (the
    /// baseline, a confirmation run): a `running` row, heartbeat now.
    pub async fn begin(&mut self, point: Option<&Point>) -> Result<usize, StoreError> {
        retried!(self, self.begin_once(point))
    }

    /// Opens a claim (see `claim_once`); a claim whose connection breaks
    /// is opened again on a new one.
    pub async fn claim(&self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<Claim, StoreError> {
        let mut retry = Retry::new();
        loop {
            match self.claim_once(grace, lost_entry).await {
                Err(e) if retry.again(&e, false).await => continue,
                result => break result,
            }
        }
    }

    /// Stores a trial's result (see `append_once`).
    pub async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        retried!(self, self.append_once(entry))
    }

    /// The trials being measured now, after giving up those silent for `grace`.
    pub async fn running(
        &mut self,
        grace: Duration,
        lost_entry: LostEntry<'_>,
    ) -> Result<Vec<RunningTrial>, StoreError> {
        retried!(self, self.running_once(grace, lost_entry))
    }

    /// Every finished (or failed) trial, in number order.
    pub async fn entries(&mut self) -> Result<Vec<Entry>, StoreError> {
        retried!(self, self.entries_once())
    }

    /// Every stored trial, those given up included (for the export).
    pub async fn all_entries(&mut self) -> Result<Vec<Entry>, StoreError> {
        retried!(self, self.all_entries_once())
    }

    pub async fn set_state(&mut self, state: StudyState) -> Result<(), StoreError> {
        retried!(self, self.set_state_once(state))
    }
}
