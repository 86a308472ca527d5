//! Where a study's trials are kept: the file journal in `results/<study>/`
//! (the default: embedded, nothing to start), or a PostgreSQL database that
//! several hosts can share (`--storage postgres://…`, or `storage = "…"` in
//! the study file). The loop sees one interface, `TrialStore`: open a study
//! (creating it, or joining it with its trials so far), number a trial,
//! keep it alive while it runs, append it finished, mark the study finished;
//! `list_studies` says what a storage holds. A shared store (`shared()`)
//! also hands out candidates by claims (see `postgres`).
//!
//! Each trial names the worker that measured it (`host:pid`), so a study
//! measured on several hosts can be read per host.

pub mod file;
pub mod pg_retry;
pub mod pg_schema;
pub mod pg_tls;
pub mod pg_url;
pub mod postgres;

use std::path::{Path, PathBuf};

use crate::objective::Figures;
use crate::trial::Entry;
use file::{Journal, JournalError};

pub use postgres::{Appended, Claim, KeepAlive, LostEntry, PgStorage, PgStudy, RunningTrial, StudyState};

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

/// Which storage a study uses.
#[derive(Debug, Clone)]
pub enum Storage {
    /// `results/<study>/trials.jsonl`.
    File,
    Postgres(Box<PgStorage>),
}

impl Storage {
    /// Parses `--storage` (or the study file's `storage`).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text == "file" {
            return Ok(Storage::File);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return PgStorage::parse(text).map(|pg| Storage::Postgres(Box::new(pg)));
        }
        Err(StoreError::Unknown(postgres::redact(text)))
    }

    /// The line that says where trials go and how the connection is
    /// secured (None for the file journal).
    pub fn announcement(&self) -> Option<String> {
        match self {
            Storage::File => None,
            Storage::Postgres(pg) => Some(format!("study store: {}, {}", pg.display(), pg.security())),
        }
    }

    /// How the storage shows in messages (a URL without its password).
    pub fn display(&self) -> String {
        match self {
            Storage::File => "file".into(),
            Storage::Postgres(pg) => pg.display().to_string(),
        }
    }
}

/// This process, as trials name it: `host:pid`.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A study as the storage knows it.
pub struct StudyRecord<'a> {
    pub name: &'a str,
    /// The study file it was created from (where a worker finds it).
    pub source: &'a Path,
    /// Where the file journal lives (file storage).
    pub journal: PathBuf,
    /// The searched space (names and levels): a shared study refuses a
    /// host whose files give another.
    pub space: Option<serde_json::Value>,
}

/// One study's trials, open for appending.
pub enum TrialStore {
    File(Journal),
    Postgres(Box<postgres::PgStudy>),
}

impl TrialStore {
    /// Opens (creating, or joining) the study; returns the trials so far.
    pub async fn open(storage: &Storage, study: &StudyRecord<'_>) -> Result<(Self, Vec<Entry>), StoreError> {
        match storage {
            Storage::File => {
                let (journal, entries) = Journal::open(&study.journal)?;
                Ok((TrialStore::File(journal), entries))
            }
            Storage::Postgres(pg) => {
                let (study, entries) = pg.open_study(study.name, study.source, study.space.as_ref()).await?;
                Ok((TrialStore::Postgres(Box::new(study)), entries))
            }
        }
    }

    /// The number of the next trial: in a file journal the next line
    /// (`next_local`); in a shared store a `running` row of this worker.
    pub async fn begin(&mut self, point: Option<&crate::space::Point>, next_local: usize) -> Result<usize, StoreError> {
        match self {
            TrialStore::File(_) => Ok(next_local),
            TrialStore::Postgres(study) => study.begin(point).await,
        }
    }

    /// Heartbeats for trial `number` while the guard lives (shared stores only).
    pub fn keep_alive(&self, number: usize, every: std::time::Duration) -> Option<KeepAlive> {
        match self {
            TrialStore::File(_) => None,
            TrialStore::Postgres(study) => Some(study.keep_alive(Some(number), every)),
        }
    }

    /// Appends a finished trial (durably, before the strategy hears of it).
    pub async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        match self {
            TrialStore::File(journal) => {
                journal.append(entry)?;
                Ok(Appended::Kept)
            }
            TrialStore::Postgres(study) => study.append(entry).await,
        }
    }

    /// The shared store, when the study is in one.
    pub fn shared(&mut self) -> Option<&mut PgStudy> {
        match self {
            TrialStore::File(_) => None,
            TrialStore::Postgres(study) => Some(study),
        }
    }

    /// Marks the study finished (a shared study stops handing out work).
    pub async fn finish(&mut self) -> Result<(), StoreError> {
        match self {
            TrialStore::File(_) => Ok(()),
            TrialStore::Postgres(study) => study.finish().await,
        }
    }
}

/// A study in a storage, for `servetune studies`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudySummary {
    pub name: String,
    /// `running` or `finished`.
    pub state: String,
    pub trials: usize,
    pub failed: usize,
    /// The workers that measured its trials.
    pub workers: Vec<String>,
    /// The feasible trial with the lowest loss, if any.
    pub best: Option<BestTrial>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BestTrial {
    pub number: usize,
    pub description: String,
    pub figures: Figures,
}

impl StudySummary {
    /// Sums up a study's trials.
    pub fn of(name: &str, state: &str, entries: &[Entry]) -> Self {
        let mut workers: Vec<String> = entries.iter().filter_map(|e| e.worker.clone()).collect();
        workers.sort();
        workers.dedup();
        let best = entries
            .iter()
            .filter(|e| e.feasible && e.figures.is_some())
            .min_by(|a, b| a.loss.total_cmp(&b.loss))
            .map(|e| BestTrial {
                number: e.number,
                description: if e.point.is_none() {
                    "the config as it was (baseline)".into()
                } else {
                    e.values
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                figures: e.figures.expect("filtered on figures"),
            });
        Self {
            name: name.to_string(),
            state: state.to_string(),
            trials: entries.len(),
            failed: entries.iter().filter(|e| e.failure.is_some()).count(),
            workers,
            best,
        }
    }
}

/// The studies a storage holds (for file storage: each `results/*/trials.jsonl`).
pub async fn list_studies(storage: &Storage, results: &Path) -> Result<Vec<StudySummary>, StoreError> {
    match storage {
        Storage::File => {
            let mut studies = Vec::new();
            let Ok(dirs) = std::fs::read_dir(results) else {
                return Ok(studies);
            };
            let mut dirs: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
            dirs.sort();
            for dir in dirs {
                let journal = dir.join("trials.jsonl");
                if !journal.is_file() {
                    continue;
                }
                let entries = file::read(&journal)?;
                let finished = dir.join("report.json").is_file();
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                studies.push(StudySummary::of(
                    &name,
                    if finished { "finished" } else { "running" },
                    &entries,
                ));
            }
            Ok(studies)
        }
        Storage::Postgres(pg) => pg.list_studies().await,
    }
}
