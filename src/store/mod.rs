//! Where a study's trials are kept: the file journal in `results/<study>/`
//! (the default: embedded, nothing to start), or a PostgreSQL database that
//! several hosts can share (`--storage postgres://…`, or `storage = "…"` in
//! the study file). Both are members of one family, the `Store` trait:
//! number a trial, keep it alive while it runs, append it finished, claim
//! the next one (a file journal is the one-worker case: its claim hands out
//! the next line), mark the study finished. `TrialStore` opens a study
//! (creating it, or joining it with its trials so far) in whichever member
//! and dispatches to it, so the study never asks which it is; `file` is the
//! journal, `postgres` the shared store, `memory` a shared study held in
//! memory (a simulated one); `list_studies` says what a storage
//! holds. Nothing here imports the study.
//!
//! Each trial names the worker that measured it (`host:pid`), so a study
//! measured on several hosts can be read per host.

mod error;
pub mod file;
pub mod memory;
pub mod pg_retry;
pub mod pg_schema;
pub mod pg_tls;
pub mod pg_url;
pub mod postgres;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::space::Point;

use crate::trial::Entry;
use file::Journal;

pub use error::StoreError;
pub use postgres::{Appended, Claim, KeepAlive, LostEntry, PgStorage, PgStudy, RunningTrial, StudyState};
pub use summary::{worker_id, BestTrial, StudySummary};

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

/// What a study asks of the place its trials live: the file journal and
/// PostgreSQL are its members; a local study is the one-worker case of
/// claims. The study holds a `TrialStore` and never asks which it is.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The number of the next trial: in a file journal the next line
    /// (`next_local`); in a shared store a `running` row of this worker.
    async fn begin(&mut self, point: Option<&Point>, next_local: usize) -> Result<usize, StoreError>;

    /// Heartbeats for trial `number` while the guard lives (shared stores only).
    fn keep_alive(&self, number: usize, every: Duration) -> Option<KeepAlive>;

    /// Appends a finished trial (durably, before the strategy hears of it).
    async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError>;

    /// Claims the next trial (see `Claimed`).
    async fn claim_next(
        &mut self,
        grace: Duration,
        lost_entry: LostEntry<'_>,
        next_local: usize,
    ) -> Result<Claimed, StoreError>;

    /// Marks the study finished (a shared study stops handing out work).
    async fn finish(&mut self) -> Result<(), StoreError>;

    /// The study's own sign of life while its leader runs (shared stores only).
    fn keep_study_alive(&self, every: Duration) -> Option<KeepAlive>;

    /// Gives trial `number` up at once (an interrupted worker), so its
    /// candidate goes back to the queue; `entry` says why.
    async fn give_up(&mut self, number: usize, entry: &Entry) -> Result<(), StoreError>;

    /// Stops handing out candidates (the search is over; confirmation follows).
    async fn close_claims(&mut self) -> Result<(), StoreError>;

    /// How many trials other workers are measuring now, after giving up
    /// those silent for `grace`.
    async fn running_elsewhere(&mut self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<usize, StoreError>;

    /// Every finished trial of every worker (None: the caller has them all).
    async fn finished_entries(&mut self) -> Result<Option<Vec<Entry>>, StoreError>;

    /// Every stored trial, those given up included (None: the caller's
    /// journal file already holds them).
    async fn every_entry(&mut self) -> Result<Option<Vec<Entry>>, StoreError>;

    /// The shared store, when the study is in one.
    fn shared(&mut self) -> Option<&mut PgStudy>;
}

/// The file journal: one worker, every trial in the caller's hands.
impl Store for Journal {
    async fn begin(&mut self, _point: Option<&Point>, next_local: usize) -> Result<usize, StoreError> {
        Ok(next_local)
    }

    fn keep_alive(&self, _number: usize, _every: Duration) -> Option<KeepAlive> {
        None
    }

    async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        Journal::append(self, entry)?;
        Ok(Appended::Kept)
    }

    /// Its study runs, nothing is pending or given up, and the trial takes
    /// the next line; the caller's trials are all there is.
    async fn claim_next(
        &mut self,
        _grace: Duration,
        _lost: LostEntry<'_>,
        next_local: usize,
    ) -> Result<Claimed, StoreError> {
        Ok(Claimed {
            state: StudyState::Running,
            leader_silent_s: 0.0,
            finished: None,
            pending: Vec::new(),
            requeued: None,
            taker: Taker::Local(next_local),
        })
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn keep_study_alive(&self, _every: Duration) -> Option<KeepAlive> {
        None
    }

    async fn give_up(&mut self, _number: usize, _entry: &Entry) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close_claims(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn running_elsewhere(&mut self, _grace: Duration, _lost: LostEntry<'_>) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn finished_entries(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        Ok(None)
    }

    async fn every_entry(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        Ok(None)
    }

    fn shared(&mut self) -> Option<&mut PgStudy> {
        None
    }
}

/// A shared study in PostgreSQL: claims under the study row's lock.
impl Store for PgStudy {
    async fn begin(&mut self, point: Option<&Point>, _next_local: usize) -> Result<usize, StoreError> {
        PgStudy::begin(self, point).await
    }

    fn keep_alive(&self, number: usize, every: Duration) -> Option<KeepAlive> {
        Some(PgStudy::keep_alive(self, Some(number), every))
    }

    async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        PgStudy::append(self, entry).await
    }

    async fn claim_next(
        &mut self,
        grace: Duration,
        lost_entry: LostEntry<'_>,
        _next_local: usize,
    ) -> Result<Claimed, StoreError> {
        let mut claim = PgStudy::claim(self, grace, lost_entry).await?;
        Ok(Claimed {
            state: claim.state,
            leader_silent_s: claim.leader_silent_s,
            finished: Some(std::mem::take(&mut claim.finished)),
            pending: std::mem::take(&mut claim.pending),
            requeued: claim.requeued.take(),
            taker: Taker::Shared(Box::new(claim)),
        })
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        PgStudy::finish(self).await
    }

    fn keep_study_alive(&self, every: Duration) -> Option<KeepAlive> {
        Some(PgStudy::keep_alive(self, None, every))
    }

    async fn give_up(&mut self, number: usize, entry: &Entry) -> Result<(), StoreError> {
        PgStudy::give_up(self, number, entry).await
    }

    async fn close_claims(&mut self) -> Result<(), StoreError> {
        self.set_state(StudyState::Confirming).await
    }

    async fn running_elsewhere(&mut self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<usize, StoreError> {
        Ok(self.running(grace, lost_entry).await?.len())
    }

    async fn finished_entries(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        self.entries().await.map(Some)
    }

    async fn every_entry(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        self.all_entries().await.map(Some)
    }

    fn shared(&mut self) -> Option<&mut PgStudy> {
        Some(self)
    }
}

/// One study's trials, open for appending, in whichever member of the family.
pub enum TrialStore {
    File(Journal),
    Postgres(Box<PgStudy>),
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
}

impl Store for TrialStore {
    async fn begin(&mut self, point: Option<&Point>, next_local: usize) -> Result<usize, StoreError> {
        match self {
            TrialStore::File(journal) => Store::begin(journal, point, next_local).await,
            TrialStore::Postgres(study) => Store::begin(study.as_mut(), point, next_local).await,
        }
    }

    fn keep_alive(&self, number: usize, every: Duration) -> Option<KeepAlive> {
        match self {
            TrialStore::File(journal) => Store::keep_alive(journal, number, every),
            TrialStore::Postgres(study) => Store::keep_alive(study.as_ref(), number, every),
        }
    }

    async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        match self {
            TrialStore::File(journal) => Store::append(journal, entry).await,
            TrialStore::Postgres(study) => Store::append(study.as_mut(), entry).await,
        }
    }

    async fn claim_next(
        &mut self,
        grace: Duration,
        lost_entry: LostEntry<'_>,
        next_local: usize,
    ) -> Result<Claimed, StoreError> {
        match self {
            TrialStore::File(journal) => Store::claim_next(journal, grace, lost_entry, next_local).await,
            TrialStore::Postgres(study) => Store::claim_next(study.as_mut(), grace, lost_entry, next_local).await,
        }
    }

    async fn finish(&mut self) -> Result<(), StoreError> {
        match self {
            TrialStore::File(journal) => Store::finish(journal).await,
            TrialStore::Postgres(study) => Store::finish(study.as_mut()).await,
        }
    }

    fn keep_study_alive(&self, every: Duration) -> Option<KeepAlive> {
        match self {
            TrialStore::File(journal) => Store::keep_study_alive(journal, every),
            TrialStore::Postgres(study) => Store::keep_study_alive(study.as_ref(), every),
        }
    }

    async fn give_up(&mut self, number: usize, entry: &Entry) -> Result<(), StoreError> {
        match self {
            TrialStore::File(journal) => Store::give_up(journal, number, entry).await,
            TrialStore::Postgres(study) => Store::give_up(study.as_mut(), number, entry).await,
        }
    }

    async fn close_claims(&mut self) -> Result<(), StoreError> {
        match self {
            TrialStore::File(journal) => Store::close_claims(journal).await,
            TrialStore::Postgres(study) => Store::close_claims(study.as_mut()).await,
        }
    }

    async fn running_elsewhere(&mut self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<usize, StoreError> {
        match self {
            TrialStore::File(journal) => Store::running_elsewhere(journal, grace, lost_entry).await,
            TrialStore::Postgres(study) => Store::running_elsewhere(study.as_mut(), grace, lost_entry).await,
        }
    }

    async fn finished_entries(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        match self {
            TrialStore::File(journal) => Store::finished_entries(journal).await,
            TrialStore::Postgres(study) => Store::finished_entries(study.as_mut()).await,
        }
    }

    async fn every_entry(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        match self {
            TrialStore::File(journal) => Store::every_entry(journal).await,
            TrialStore::Postgres(study) => Store::every_entry(study.as_mut()).await,
        }
    }

    fn shared(&mut self) -> Option<&mut PgStudy> {
        match self {
            TrialStore::File(journal) => Store::shared(journal),
            TrialStore::Postgres(study) => Store::shared(study.as_mut()),
        }
    }
}

/// What a claim found, whichever the store.
pub struct Claimed {
    pub state: StudyState,
    /// Seconds since the study's leader last showed life.
    pub leader_silent_s: f64,
    /// Every finished trial from every worker (None: the claimant has them all).
    pub finished: Option<Vec<Entry>>,
    /// The points other workers are measuring now.
    pub pending: Vec<Point>,
    /// A candidate whose worker was lost, to hand out before asking anew.
    pub requeued: Option<Point>,
    taker: Taker,
}

/// How a claim takes its trial.
enum Taker {
    Local(usize),
    Shared(Box<Claim>),
    /// A store in this process numbers it at once (`memory`).
    InProcess(Box<dyn FnOnce(&Point) -> usize + Send>),
}

impl Claimed {
    /// A claim on a store in this process, which `take` numbers.
    pub fn in_process(
        state: StudyState,
        finished: Vec<Entry>,
        pending: Vec<Point>,
        take: impl FnOnce(&Point) -> usize + Send + 'static,
    ) -> Self {
        Self {
            state,
            leader_silent_s: 0.0,
            finished: Some(finished),
            pending,
            requeued: None,
            taker: Taker::InProcess(Box::new(take)),
        }
    }

    /// Takes `point` as the next trial of this claimant; returns its number.
    pub async fn take(self, point: &Point) -> Result<usize, StoreError> {
        match self.taker {
            Taker::Local(number) => Ok(number),
            Taker::Shared(claim) => claim.take(point).await,
            Taker::InProcess(take) => Ok(take(point)),
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
