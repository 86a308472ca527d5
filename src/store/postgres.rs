//! The PostgreSQL study store: studies and their trials in tables that
//! several hosts share. The schema is versioned (`servetune_schema`) and
//! migrated at connect, under an advisory lock so that two hosts starting
//! at once do not both migrate; a database whose schema is newer than this
//! servetune knows is refused. Trial numbers are unique per study (the
//! primary key), and the study row's counter hands them out without locking
//! the table. The trial table already holds what shared claims need (state,
//! worker, heartbeat), for workers on several hosts.
//!
//! Credentials come from the URL, else `PGPASSWORD`, else the password file
//! (`PGPASSFILE`, default `~/.pgpass`); a URL is only ever shown without
//! its password.

use std::path::Path;
use std::str::FromStr as _;

use tokio_postgres::{Client, Config, NoTls};

use super::{StoreError, StudySummary};
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
        let (mut client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| self.error(format!("cannot connect: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!("study store connection: {e}");
            }
        });
        migrate(&mut client).await.map_err(|e| self.error(e))?;
        Ok(client)
    }

    /// Creates the study (or joins it) and returns its finished trials.
    pub async fn open_study(&self, name: &str, source: &Path) -> Result<(PgStudy, Vec<Entry>), StoreError> {
        let client = self.connect().await?;
        client
            .execute(
                "INSERT INTO studies (name, source) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &source.display().to_string()],
            )
            .await
            .map_err(|e| self.error(format!("creating study {name}: {e}")))?;
        let row = client
            .query_one("SELECT id FROM studies WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.error(format!("reading study {name}: {e}")))?;
        let study_id: i64 = row.get(0);
        let entries = finished_entries(&client, study_id)
            .await
            .map_err(|e| self.error(format!("reading the trials of {name}: {e}")))?;
        let study = PgStudy {
            storage: self.clone(),
            client,
            study_id,
            name: name.to_string(),
        };
        Ok((study, entries))
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
            let entries = finished_entries(&client, id)
                .await
                .map_err(|e| self.error(format!("reading the trials of {name}: {e}")))?;
            studies.push(StudySummary::of(&name, &state, &entries));
        }
        Ok(studies)
    }
}

/// One study, open for appending.
pub struct PgStudy {
    storage: PgStorage,
    client: Client,
    study_id: i64,
    name: String,
}

impl PgStudy {
    /// Stores a finished trial under its number; a number already taken
    /// (another process on this study) is an error, not an overwrite.
    pub async fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        let number = i32::try_from(entry.number).map_err(|_| self.storage.error("trial number out of range"))?;
        let point = entry.point.as_ref().map(|p| serde_json::json!(p));
        let worker = entry.worker.clone().unwrap_or_else(super::worker_id);
        let state = if entry.failure.is_some() { "failed" } else { "finished" };
        let json = serde_json::to_value(entry).expect("entries serialise");
        let transaction = self.client.transaction().await.map_err(|e| self.storage.error(e))?;
        let inserted = transaction
            .execute(
                "INSERT INTO trials (study_id, number, state, point, worker, entry) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (study_id, number) DO NOTHING",
                &[&self.study_id, &number, &state, &point, &worker, &json],
            )
            .await
            .map_err(|e| {
                self.storage
                    .error(format!("storing trial {number} of {}: {e}", self.name))
            })?;
        if inserted == 0 {
            return Err(self.storage.error(format!(
                "trial {number} of study {} is already stored (is another process running this study?)",
                self.name
            )));
        }
        transaction
            .execute(
                "UPDATE studies SET next_number = greatest(next_number, $2 + 1) WHERE id = $1",
                &[&self.study_id, &number],
            )
            .await
            .map_err(|e| self.storage.error(e))?;
        transaction.commit().await.map_err(|e| self.storage.error(e))
    }

    /// Marks the study finished.
    pub async fn finish(&mut self) -> Result<(), StoreError> {
        self.client
            .execute("UPDATE studies SET state = 'finished' WHERE id = $1", &[&self.study_id])
            .await
            .map(drop)
            .map_err(|e| self.storage.error(format!("finishing study {}: {e}", self.name)))
    }
}

async fn finished_entries(client: &Client, study_id: i64) -> Result<Vec<Entry>, String> {
    let rows = client
        .query(
            "SELECT number, entry FROM trials WHERE study_id = $1 AND entry IS NOT NULL ORDER BY number",
            &[&study_id],
        )
        .await
        .map_err(|e| e.to_string())?;
    rows.into_iter()
        .map(|row| {
            let number: i32 = row.get(0);
            serde_json::from_value(row.get(1)).map_err(|e| format!("trial {number}: {e}"))
        })
        .collect()
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
