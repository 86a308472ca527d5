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
//! its password.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use tokio_postgres::{Client, Config, GenericClient, NoTls};

use super::{StoreError, StudySummary};
use crate::space::Point;
use crate::trial::Entry;

/// The schema, one migration per version (index + 1).
const MIGRATIONS: &[&str] = &[
    // 1: studies and trials.
    "CREATE TABLE studies (
        id bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        source text NOT NULL,
        state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished')),
        next_number integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE trials (
        study_id bigint NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
        number integer NOT NULL,
        state text NOT NULL CHECK (state IN ('running', 'finished', 'failed')),
        point jsonb,
        worker text NOT NULL,
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        entry jsonb,
        PRIMARY KEY (study_id, number)
    );",
    // 2: shared studies. A study stops handing out work while its leader
    // confirms; a trial whose worker fell silent is `lost` (its candidate
    // goes back to the queue); the space a study was created with, so that
    // a host whose files differ is refused; the leader's last sign of life.
    "ALTER TABLE studies DROP CONSTRAINT studies_state_check;
    ALTER TABLE studies ADD CONSTRAINT studies_state_check CHECK (state IN ('running', 'confirming', 'finished'));
    ALTER TABLE studies ADD COLUMN space jsonb;
    ALTER TABLE studies ADD COLUMN leader_seen_at timestamptz NOT NULL DEFAULT now();
    ALTER TABLE trials DROP CONSTRAINT trials_state_check;
    ALTER TABLE trials ADD CONSTRAINT trials_state_check CHECK (state IN ('running', 'finished', 'failed', 'lost'));
    CREATE INDEX trials_running ON trials (study_id) WHERE state = 'running';",
];

/// The advisory lock key migrations run under ("servetun" in ASCII).
const MIGRATION_LOCK: i64 = 0x7365_7276_6574_756e;

/// A PostgreSQL storage: where to connect and how to show it.
#[derive(Clone)]
pub struct PgStorage {
    config: Config,
    shown: String,
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
        let mut config = Config::from_str(url).map_err(|e| StoreError::Postgres {
            storage: shown.clone(),
            reason: format!("not a PostgreSQL URL: {}", redact(&e.to_string())),
        })?;
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
        Ok(Self { config, shown })
    }

    pub fn display(&self) -> &str {
        &self.shown
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
        migrate(&mut client).await.map_err(|e| self.error(e))?;
        Ok(client)
    }

    /// Connects without looking at the schema (for the short-lived
    /// connections of claims and heartbeats, after `connect` migrated).
    async fn connect_only(&self) -> Result<Client, StoreError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.error(format!("cannot connect: {e}")))?;
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
            worker: super::worker_id(),
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
    pub async fn begin(&mut self, point: Option<&Point>) -> Result<usize, StoreError> {
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
    pub async fn claim(&self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<Claim, StoreError> {
        let client = self.storage.connect_only().await?;
        let fail = |e: tokio_postgres::Error| self.storage.error(format!("claiming a trial of {}: {e}", self.name));
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
            .map_err(|e| self.storage.error(e))?;
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
    pub async fn append(&mut self, entry: &Entry) -> Result<Appended, StoreError> {
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
    pub async fn running(&self, grace: Duration, lost_entry: LostEntry<'_>) -> Result<Vec<RunningTrial>, StoreError> {
        let fail = |e: tokio_postgres::Error| self.storage.error(format!("reading the trials of {}: {e}", self.name));
        give_up_silent(&self.client, self.study_id, grace, lost_entry)
            .await
            .map_err(fail)?;
        running_trials(&self.client, self.study_id).await.map_err(fail)
    }

    /// Every finished (or failed) trial, in number order.
    pub async fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        finished_entries(&self.client, self.study_id)
            .await
            .map_err(|e| self.storage.error(format!("reading the trials of {}: {e}", self.name)))
    }

    /// Every stored trial, those given up included (for the export).
    pub async fn all_entries(&self) -> Result<Vec<Entry>, StoreError> {
        all_entries(&self.client, self.study_id)
            .await
            .map_err(|e| self.storage.error(format!("reading the trials of {}: {e}", self.name)))
    }

    pub async fn set_state(&mut self, state: StudyState) -> Result<(), StoreError> {
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
        let fail = |e: tokio_postgres::Error| self.storage.error(format!("taking a trial: {e}"));
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

/// Applies the migrations this database lacks; refuses a newer schema.
async fn migrate(client: &mut Client) -> Result<(), String> {
    let transaction = client.transaction().await.map_err(|e| e.to_string())?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS servetune_schema (version integer NOT NULL)")
        .await
        .map_err(|e| format!("creating the schema table: {e}"))?;
    let found: i32 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM servetune_schema", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if found > known {
        return Err(format!(
            "its schema is version {found}, newer than this servetune knows ({known}): upgrade servetune"
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i32 + 1;
        transaction
            .batch_execute(sql)
            .await
            .map_err(|e| format!("migrating to schema version {version}: {e}"))?;
        transaction
            .execute("INSERT INTO servetune_schema (version) VALUES ($1)", &[&version])
            .await
            .map_err(|e| e.to_string())?;
    }
    transaction.commit().await.map_err(|e| e.to_string())
}

/// `text` with the password of any URL in it replaced by `***`.
pub fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &text[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => text.to_string(),
    }
}

/// `PGPASSWORD`, else the matching line of the password file.
fn password_from_environment(config: &Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    password_file_lookup(&text, &host, &port, database, user)
}

/// The password for (host, port, database, user) in a `.pgpass` text:
/// `host:port:database:user:password`, `*` matching anything, `\` escaping.
pub fn password_file_lookup(text: &str, host: &str, port: &str, database: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_escaped(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if matches(&fields[0], host)
            && matches(&fields[1], port)
            && matches(&fields[2], database)
            && matches(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_escaped(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field at least").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field at least").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            redact("postgres://tuner:s3cret@db:5432/studies"),
            "postgres://tuner:***@db:5432/studies"
        );
        assert_eq!(redact("postgres://tuner@db/studies"), "postgres://tuner@db/studies");
        assert_eq!(redact("not a url"), "not a url");
        let storage = PgStorage::parse("postgres://tuner:s3cret@db:5432/studies").unwrap();
        assert!(!format!("{storage:?} {}", storage.display()).contains("s3cret"));
        let e = PgStorage::parse("postgres://tuner:s3cret@db:notaport/x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret") && e.contains("tuner:***@db"), "{e}");
    }

    #[test]
    fn the_password_file_is_matched_like_libpq() {
        let text = "# comment\ndb:5432:studies:tuner:first\n*:*:*:other:sec\\:ond\n";
        assert_eq!(
            password_file_lookup(text, "db", "5432", "studies", "tuner").as_deref(),
            Some("first")
        );
        assert_eq!(
            password_file_lookup(text, "h", "1", "d", "other").as_deref(),
            Some("sec:ond")
        );
        assert_eq!(password_file_lookup(text, "db", "5433", "studies", "tuner"), None);
    }
}
