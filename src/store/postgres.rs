//! The PostgreSQL study store: studies and their trials in tables that
//! several hosts share. The schema is versioned (`servetune_schema`) and
//! migrated at connect, under an advisory lock so that two hosts starting
//! at once do not both migrate; a database whose schema is newer than this
//! servetune knows is refused. Trial numbers are unique per study (the
//! primary key), and the study row's counter hands them out without locking
//! the table.
//!
//! Many workers, one study: a worker *claims* its next candidate under the
//! study row's lock (`SELECT … FOR UPDATE`), so claims happen one at a time
//! while measurements run in parallel; the claim sees every finished trial
//! and every point being measured, and inserts a `running` row under the
//! next number. A running trial's worker beats every few seconds; a trial
//! silent past the grace period is marked `lost` by whoever claims next, and
//! its candidate is handed out again. No table lock, no `SKIP LOCKED`: the
//! strategy must see one consistent picture, and it takes milliseconds.
//!
//! Credentials come from the URL, else `PGPASSWORD`, else the password file
//! (`PGPASSFILE`, default `~/.pgpass`); a URL is only ever shown without
//! its password. TLS follows the URL's `sslmode` and `sslrootcert` (see
//! `pg_url`, `pg_tls`); a connection that breaks mid-study (the database
//! restarting) is retried by the study's calls (see `pg_retry`).

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres::{Client, Config, GenericClient};

use super::error::StoreError;
use super::pg_tls::PgTls;
pub use super::pg_url::{password_file_lookup, redact};
use super::pg_url::{password_from_environment, take_tls_params, SslMode, TlsParams};
use super::summary::{worker_id, StudySummary};
use crate::space::Point;
use crate::trial::Entry;

/// A PostgreSQL storage: where to connect and how to show it.
#[derive(Clone)]
pub struct PgStorage {
    config: Config,
    shown: String,
    tls_params: TlsParams,
    tls: PgTls,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgStorage {
    /// Parses a `postgres://` URL; fills the password from the environment
    /// or the password file when the URL has none.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let bad = |reason: String| StoreError::Postgres {
            storage: shown.clone(),
            reason,
        };
        let (url, tls_params) = take_tls_params(url).map_err(bad)?;
        let tls = PgTls::new(&tls_params).map_err(bad)?;
        let mut config =
            Config::from_str(&url).map_err(|e| bad(format!("not a PostgreSQL URL: {}", redact(&e.to_string()))))?;
        config.ssl_mode(match tls_params.mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            _ => WireSslMode::Require,
        });
        if config.get_password().is_none() {
            if let Some(password) = password_from_environment(&config) {
                config.password(password);
            }
        }
        if config.get_dbname().is_none() {
            if let Some(user) = config.get_user().map(str::to_string) {
                config.dbname(&user);
            }
        }
        config.application_name("servetune");
        // Notices ("relation … already exists, skipping") are not news.
        config.options("-c client_min_messages=warning");
        config.connect_timeout(std::time::Duration::from_secs(10));
        Ok(Self {
            config,
            shown,
            tls_params,
            tls,
        })
    }

    pub fn display(&self) -> &str {
        &self.shown
    }

    /// How connections are secured (`sslmode=…`, what it checks).
    pub fn security(&self) -> String {
        self.tls_params.describe()
    }

    /// Whether a connection made now is encrypted (`prefer` falls back to
    /// plain text when the server offers no TLS).
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        let client = self.connect_only().await?;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }

    /// `error`, marked transient when `client`'s connection is gone.
    fn error_on(&self, client: &Client, reason: impl std::fmt::Display) -> StoreError {
        match self.error(reason) {
            StoreError::Postgres { storage, reason } if client.is_closed() => StoreError::Transient { storage, reason },
            other => other,
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            storage: self.shown.clone(),
            reason: redact(&reason.to_string()),
        }
    }

    /// Connects and brings the schema up to date.
    pub async fn connect(&self) -> Result<Client, StoreError> {
        let mut client = self.connect_only().await?;
        super::pg_schema::migrate(&mut client)
            .await
            .map_err(|e| self.error(e))?;
        Ok(client)
    }

    /// Connects without looking at the schema (for the short-lived
    /// connections of claims and heartbeats, after `connect` migrated).
    pub(super) async fn connect_only(&self) -> Result<Client, StoreError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.db_error(format_args!("cannot connect ({})", self.tls_params.mode.as_str()), e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("study store connection: {e}");
            }
        });
        Ok(client)
    }

    /// Creates the study (or joins it) and returns its finished trials. A
    /// study created with another space (another host's files differ) is
    /// refused: its trials' points would mean other settings here.
    pub async fn open_study(
        &self,
        name: &str,
        source: &Path,
        space: Option<&serde_json::Value>,
    ) -> Result<(PgStudy, Vec<Entry>), StoreError> {
        let client = self.connect().await?;
        let created = client
            .execute(
                "INSERT INTO studies (name, source, space) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                &[&name, &source.display().to_string(), &space],
            )
            .await
            .map_err(|e| self.error(format!("creating study {name}: {e}")))?
            == 1;
        let row = client
            .query_one("SELECT id, space FROM studies WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.error(format!("reading study {name}: {e}")))?;
        let study_id: i64 = row.get(0);
        let stored: Option<serde_json::Value> = row.get(1);
        if let (Some(stored), Some(ours)) = (&stored, space) {
            if stored != ours {
                return Err(self.error(format!(
                    "study {name} was created with another search space than this host's files give \
                     (stored {stored}, here {ours}): every host needs the same study and space files"
                )));
            }
        }
        let entries = finished_entries(&client, study_id)
            .await
            .map_err(|e| self.error(format!("reading the trials of {name}: {e}")))?;
        let study = PgStudy {
            storage: self.clone(),
            client,
            study_id,
            name: name.to_string(),
            worker: worker_id(),
            created,
        };
        Ok((study, entries))
    }

    /// The study file a study was created from (None: no such study).
    pub async fn study_source(&self, name: &str) -> Result<Option<(String, StudyState)>, StoreError> {
        let client = self.connect().await?;
        let row = client
            .query_opt("SELECT source, state FROM studies WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.error(format!("reading study {name}: {e}")))?;
        Ok(row.map(|row| (row.get(0), StudyState::parse(row.get(1)))))
    }

    /// Every study, with its state and best trial.
    pub async fn list_studies(&self) -> Result<Vec<StudySummary>, StoreError> {
        let client = self.connect().await?;
        let rows = client
            .query("SELECT id, name, state FROM studies ORDER BY name", &[])
            .await
            .map_err(|e| self.error(format!("listing studies: {e}")))?;
        let mut studies = Vec::new();
        for row in rows {
            let (id, name, state): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            let entries = all_entries(&client, id)
                .await
                .map_err(|e| self.error(format!("reading the trials of {name}: {e}")))?;
            studies.push(StudySummary::of(&name, &state, &entries));
        }
        Ok(studies)
    }
}

/// Where a shared study is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyState {
    /// Handing out candidates.
    Running,
    /// Its leader confirms the recommendation: no new candidates.
    Confirming,
    Finished,
}

impl StudyState {
    fn parse(text: &str) -> Self {
        match text {
            "running" => StudyState::Running,
            "confirming" => StudyState::Confirming,
            _ => StudyState::Finished,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            StudyState::Running => "running",
            StudyState::Confirming => "confirming",
            StudyState::Finished => "finished",
        }
    }
}

/// What became of a trial's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Kept,
    /// The trial had been given up (its worker fell silent past the grace
    /// period) and its candidate handed out again: the result is dropped,
    /// so that no candidate counts twice.
    GivenUp,
}

/// A trial some worker is measuring.
#[derive(Debug, Clone)]
pub struct RunningTrial {
    pub number: usize,
    /// None for the baseline and confirmation runs of the leader.
    pub point: Option<Point>,
    pub worker: String,
    /// Seconds since its worker's last heartbeat.
    pub silent_s: f64,
}

/// Builds the journal entry of a trial given up (the study knows its values).
pub type LostEntry<'a> = &'a (dyn Fn(&RunningTrial) -> Entry + Sync);

/// One study, open for appending.
pub struct PgStudy {
    storage: PgStorage,
    client: Client,
    study_id: i64,
    name: String,
    worker: String,
    /// This process created the study (else it joined one).
    created: bool,
}

impl PgStudy {
    pub fn created(&self) -> bool {
        self.created
    }

    /// Takes the next trial number for a run chosen without a claim (the
    /// baseline, a confirmation run): a `running` row, heartbeat now.
    pub(super) async fn begin_once(&mut self, point: Option<&Point>) -> Result<usize, StoreError> {
        let transaction = self.client.transaction().await.map_err(|e| self.storage.error(e))?;
        let number = insert_running(&transaction, self.study_id, point, &self.worker)
            .await
            .map_err(|e| self.storage.error(format!("starting a trial of {}: {e}", self.name)))?;
        transaction.commit().await.map_err(|e| self.storage.error(e))?;
        Ok(number)
    }

    /// Opens a claim: a connection of its own holding the study row's lock
    /// until the claim is taken or dropped, so that two workers never
    /// decide at once. Trials silent for `grace` are given up first (their
    /// candidates go back to the queue); the claim then holds every
    /// finished trial, the points being measured and a point to hand out
    /// again, if any.
    pub(super) async fn claim_once(&self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<Claim, StoreError> {
        let client = self.storage.connect_only().await?;
        let fail = |e| {
            self.storage
                .db_error(format_args!("claiming a trial of {}", self.name), e)
        };
        client.batch_execute("BEGIN").await.map_err(fail)?;
        let row = client
            .query_one(
                "SELECT state, extract(epoch FROM now() - leader_seen_at)::float8 FROM studies WHERE id = $1 FOR UPDATE",
                &[&self.study_id],
            )
            .await
            .map_err(fail)?;
        let state = StudyState::parse(row.get(0));
        let leader_silent_s: f64 = row.get(1);
        let lost = give_up_silent(&client, self.study_id, grace, lost_entry)
            .await
            .map_err(fail)?;
        // One statement, one snapshot: a trial finishing meanwhile is
        // either running or finished here, never neither.
        let trials = trial_rows(&client, self.study_id)
            .await
            .map_err(|e| self.storage.error_on(&client, e))?;
        let finished = trials
            .iter()
            .filter(|t| matches!(t.state.as_str(), "finished" | "failed"))
            .filter_map(|t| t.entry.clone())
            .collect();
        let pending = trials
            .iter()
            .filter(|t| t.state == "running")
            .filter_map(|t| t.point.clone())
            .collect();
        let requeued = lost_candidate(&trials);
        Ok(Claim {
            client,
            storage: self.storage.clone(),
            study_id: self.study_id,
            worker: self.worker.clone(),
            state,
            leader_silent_s,
            lost,
            finished,
            pending,
            requeued,
        })
    }

    /// The study's state, and seconds since its leader last beat.
    pub async fn status(&self) -> Result<(StudyState, f64), StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT state, extract(epoch FROM now() - leader_seen_at)::float8 FROM studies WHERE id = $1",
                &[&self.study_id],
            )
            .await
            .map_err(|e| self.storage.error(format!("reading study {}: {e}", self.name)))?;
        Ok((StudyState::parse(row.get(0)), row.get(1)))
    }

    /// Keeps a trial (or, for `None`, the study's leader) alive in the
    /// store until the returned guard drops: a heartbeat every `every`, on a
    /// connection of its own, whatever the measurement does meanwhile.
    pub fn keep_alive(&self, trial: Option<usize>, every: Duration) -> KeepAlive {
        let storage = self.storage.clone();
        let (study_id, worker) = (self.study_id, self.worker.clone());
        KeepAlive(tokio::spawn(async move {
            let mut client = None;
            loop {
                if client.is_none() {
                    client = storage.connect_only().await.ok();
                }
                if let Some(c) = &client {
                    let beat = match trial {
                        Some(number) => {
                            c.execute(
                                "UPDATE trials SET heartbeat_at = now()
                                 WHERE study_id = $1 AND number = $2 AND worker = $3 AND state = 'running'",
                                &[&study_id, &(number as i32), &worker],
                            )
                            .await
                        }
                        None => {
                            c.execute("UPDATE studies SET leader_seen_at = now() WHERE id = $1", &[&study_id])
                                .await
                        }
                    };
                    if let Err(e) = beat {
                        tracing::warn!("heartbeat to the study store: {e}");
                        client = None;
                    }
                }
                tokio::time::sleep(every).await;
            }
        }))
    }

    /// Stores a trial's result: completes its `running` row (or, for a
    /// trial that never had one, inserts it). A number another run holds
    /// is an error, not an overwrite.
    pub(super) async fn append_once(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
        let number = i32::try_from(entry.number).map_err(|_| self.storage.error("trial number out of range"))?;
        let point = entry.point.as_ref().map(|p| serde_json::json!(p));
        let worker = entry.worker.clone().unwrap_or_else(|| self.worker.clone());
        let state = if entry.failure.is_some() { "failed" } else { "finished" };
        let json = serde_json::to_value(entry).expect("entries serialise");
        let fail = |e: tokio_postgres::Error| {
            self.storage
                .error(format!("storing trial {number} of {}: {e}", self.name))
        };
        let transaction = self.client.transaction().await.map_err(fail)?;
        let held = transaction
            .query_opt(
                "SELECT state, worker FROM trials WHERE study_id = $1 AND number = $2 FOR UPDATE",
                &[&self.study_id, &number],
            )
            .await
            .map_err(fail)?
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)));
        match held {
            Some((held, by)) if held == "running" && by == self.worker => {
                transaction
                    .execute(
                        "UPDATE trials SET state = $3, point = $4, entry = $5, heartbeat_at = now()
                         WHERE study_id = $1 AND number = $2",
                        &[&self.study_id, &number, &state, &point, &json],
                    )
                    .await
                    .map_err(fail)?;
            }
            Some((held, by)) if held == "lost" && by == self.worker => return Ok(Appended::GivenUp),
            // Stored by an earlier try whose answer the connection lost.
            Some((_, by))
                if by == self.worker
                    && stored_entry(&transaction, self.study_id, number).await.as_ref() == Some(&json) =>
            {
                return Ok(Appended::Kept)
            }
            Some(_) => {
                return Err(self.storage.error(format!(
                    "trial {number} of study {} is already stored (is another process running this study?)",
                    self.name
                )))
            }
            None => {
                transaction
                    .execute(
                        "INSERT INTO trials (study_id, number, state, point, worker, entry) VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&self.study_id, &number, &state, &point, &worker, &json],
                    )
                    .await
                    .map_err(fail)?;
                transaction
                    .execute(
                        "UPDATE studies SET next_number = greatest(next_number, $2 + 1) WHERE id = $1",
                        &[&self.study_id, &number],
                    )
                    .await
                    .map_err(fail)?;
            }
        }
        transaction.commit().await.map_err(fail)?;
        Ok(Appended::Kept)
    }

    /// Gives up this worker's own running trial at once (an interrupted
    /// worker): its candidate goes back to the queue without the wait.
    pub async fn give_up(&self, number: usize, entry: &Entry) -> Result<(), StoreError> {
        let json = serde_json::to_value(entry).expect("entries serialise");
        self.client
            .execute(
                "UPDATE trials SET state = 'lost', entry = $4
                 WHERE study_id = $1 AND number = $2 AND worker = $3 AND state = 'running'",
                &[&self.study_id, &(number as i32), &self.worker, &json],
            )
            .await
            .map(drop)
            .map_err(|e| {
                self.storage
                    .error(format!("giving up trial {number} of {}: {e}", self.name))
            })
    }

    /// The trials being measured now, after giving up those silent for `grace`.
    pub(super) async fn running_once(
        &self,
        grace: Duration,
        lost_entry: LostEntry<'_>,
    ) -> Result<Vec<RunningTrial>, StoreError> {
        let fail = |e: tokio_postgres::Error| self.storage.error(format!("reading the trials of {}: {e}", self.name));
        give_up_silent(&self.client, self.study_id, grace, lost_entry)
            .await
            .map_err(fail)?;
        running_trials(&self.client, self.study_id).await.map_err(fail)
    }

    /// Every finished (or failed) trial, in number order.
    pub(super) async fn entries_once(&self) -> Result<Vec<Entry>, StoreError> {
        finished_entries(&self.client, self.study_id)
            .await
            .map_err(|e| self.storage.error(format!("reading the trials of {}: {e}", self.name)))
    }

    /// Every stored trial, those given up included (for the export).
    pub(super) async fn all_entries_once(&self) -> Result<Vec<Entry>, StoreError> {
        all_entries(&self.client, self.study_id)
            .await
            .map_err(|e| self.storage.error(format!("reading the trials of {}: {e}", self.name)))
    }

    pub(super) async fn set_state_once(&mut self, state: StudyState) -> Result<(), StoreError> {
        self.client
            .execute(
                "UPDATE studies SET state = $2 WHERE id = $1",
                &[&self.study_id, &state.as_str()],
            )
            .await
            .map(drop)
            .map_err(|e| {
                self.storage
                    .error(format!("marking study {} {}: {e}", self.name, state.as_str()))
            })
    }

    /// A new connection in place of one that broke (kept broken when the
    /// database cannot be reached yet: the next try fails fast and waits).
    pub(super) async fn reconnect(&mut self) {
        match self.storage.connect_only().await {
            Ok(client) => self.client = client,
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// This study's connection is gone (its errors are worth another try).
    pub(super) fn connection_lost(&self) -> bool {
        self.client.is_closed()
    }

    /// Marks the study finished.
    pub async fn finish(&mut self) -> Result<(), StoreError> {
        self.set_state(StudyState::Finished).await
    }
}

/// A claim in progress: the study row stays locked (by the claim's own
/// connection, in its own transaction) until `take` commits a trial or the
/// claim drops (the connection closes; PostgreSQL rolls back).
pub struct Claim {
    client: Client,
    storage: PgStorage,
    study_id: i64,
    worker: String,
    pub state: StudyState,
    /// Seconds since the study's leader last showed life.
    pub leader_silent_s: f64,
    /// Trials given up by this claim (their workers fell silent).
    pub lost: Vec<RunningTrial>,
    /// Every finished (or failed) trial, from every worker.
    pub finished: Vec<Entry>,
    /// The points other workers are measuring now.
    pub pending: Vec<Point>,
    /// A candidate whose worker was lost, to hand out before asking anew.
    pub requeued: Option<Point>,
}

impl Claim {
    /// Takes `point` as the next trial of this worker; returns its number.
    pub async fn take(self, point: &Point) -> Result<usize, StoreError> {
        let fail = |e| self.storage.db_error("taking a trial", e);
        let number = insert_running(&self.client, self.study_id, Some(point), &self.worker)
            .await
            .map_err(fail)?;
        self.client.batch_execute("COMMIT").await.map_err(fail)?;
        Ok(number)
    }
}

/// Stops a heartbeat when dropped.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stored entry of trial `number`, if any.
async fn stored_entry(client: &impl GenericClient, study_id: i64, number: i32) -> Option<serde_json::Value> {
    let row = client
        .query_opt(
            "SELECT entry FROM trials WHERE study_id = $1 AND number = $2",
            &[&study_id, &number],
        )
        .await
        .ok()??;
    row.get(0)
}

/// Inserts a `running` trial under the study's next number (the caller
/// holds, or takes here, the study row's lock).
async fn insert_running(
    client: &impl GenericClient,
    study_id: i64,
    point: Option<&Point>,
    worker: &str,
) -> Result<usize, tokio_postgres::Error> {
    let number: i32 = client
        .query_one(
            "UPDATE studies SET next_number = next_number + 1 WHERE id = $1 RETURNING next_number - 1",
            &[&study_id],
        )
        .await?
        .get(0);
    let point = point.map(|p| serde_json::json!(p));
    client
        .execute(
            "INSERT INTO trials (study_id, number, state, point, worker) VALUES ($1, $2, 'running', $3, $4)",
            &[&study_id, &number, &point, &worker],
        )
        .await?;
    Ok(number as usize)
}

/// Marks `lost` every running trial silent for `grace`; returns them. The
/// update re-checks the heartbeat, so a trial that beat meanwhile stays.
async fn give_up_silent(
    client: &impl GenericClient,
    study_id: i64,
    grace: Duration,
    lost_entry: LostEntry<'_>,
) -> Result<Vec<RunningTrial>, tokio_postgres::Error> {
    let grace_s = grace.as_secs_f64();
    let silent: Vec<RunningTrial> = running_trials(client, study_id)
        .await?
        .into_iter()
        .filter(|t| t.silent_s > grace_s)
        .collect();
    let mut lost = Vec::new();
    for trial in silent {
        let entry = serde_json::to_value(lost_entry(&trial)).expect("entries serialise");
        let updated = client
            .execute(
                "UPDATE trials SET state = 'lost', entry = $3
                 WHERE study_id = $1 AND number = $2 AND state = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $4)",
                &[&study_id, &(trial.number as i32), &entry, &grace_s],
            )
            .await?;
        if updated == 1 {
            tracing::warn!(
                trial = trial.number,
                worker = %trial.worker,
                "no heartbeat for {:.0} s: the trial is given up and its candidate goes back to the queue",
                trial.silent_s
            );
            lost.push(trial);
        }
    }
    Ok(lost)
}

async fn running_trials(
    client: &impl GenericClient,
    study_id: i64,
) -> Result<Vec<RunningTrial>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT number, point, worker, extract(epoch FROM now() - heartbeat_at)::float8 FROM trials
             WHERE study_id = $1 AND state = 'running' ORDER BY number",
            &[&study_id],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| RunningTrial {
            number: row.get::<_, i32>(0) as usize,
            point: row
                .get::<_, Option<serde_json::Value>>(1)
                .and_then(|p| serde_json::from_value(p).ok()),
            worker: row.get(2),
            silent_s: row.get(3),
        })
        .collect())
}

/// One stored trial, as a claim reads it.
struct TrialRow {
    state: String,
    point: Option<Point>,
    entry: Option<Entry>,
}

impl TrialRow {
    /// Measured to the end (or failed measuring): what strategies are told.
    fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "finished" | "failed")
    }
}

async fn trial_rows(client: &impl GenericClient, study_id: i64) -> Result<Vec<TrialRow>, String> {
    let rows = client
        .query(
            "SELECT number, state, point, entry FROM trials WHERE study_id = $1 ORDER BY number",
            &[&study_id],
        )
        .await
        .map_err(|e| e.to_string())?;
    rows.into_iter()
        .map(|row| {
            let number: i32 = row.get(0);
            let entry = row
                .get::<_, Option<serde_json::Value>>(3)
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| format!("trial {number}: {e}"))?;
            Ok(TrialRow {
                state: row.get(1),
                point: row
                    .get::<_, Option<serde_json::Value>>(2)
                    .and_then(|p| serde_json::from_value(p).ok()),
                entry,
            })
        })
        .collect()
}

/// A point whose trial was lost and that no live or finished trial has
/// taken since (the earliest lost first); a point lost three times is not
/// handed out again (it may be what kills its workers).
fn lost_candidate(trials: &[TrialRow]) -> Option<Point> {
    let lost = trials
        .iter()
        .filter(|t| t.state == "lost")
        .filter_map(|t| t.point.as_ref());
    for point in lost {
        let taken = trials
            .iter()
            .any(|t| t.state != "lost" && t.point.as_ref() == Some(point));
        let times_lost = trials
            .iter()
            .filter(|t| t.state == "lost" && t.point.as_ref() == Some(point))
            .count();
        if !taken && times_lost < 3 {
            return Some(point.clone());
        }
    }
    None
}

async fn finished_entries(client: &impl GenericClient, study_id: i64) -> Result<Vec<Entry>, String> {
    let rows = trial_rows(client, study_id).await?;
    Ok(rows
        .into_iter()
        .filter(TrialRow::is_finished)
        .filter_map(|t| t.entry)
        .collect())
}

async fn all_entries(client: &impl GenericClient, study_id: i64) -> Result<Vec<Entry>, String> {
    let rows = trial_rows(client, study_id).await?;
    Ok(rows.into_iter().filter_map(|t| t.entry).collect())
}
