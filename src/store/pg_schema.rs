//! The study store's schema in PostgreSQL: one migration per version,
//! applied at connect under an advisory lock (two hosts starting at once do
//! not both migrate), recorded in `servetune_schema`; a database whose
//! schema is newer than this servetune knows is refused. Called by
//! `postgres` only.

use tokio_postgres::Client;

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

/// Applies the migrations this database lacks; refuses a newer schema.
pub async fn migrate(client: &mut Client) -> Result<(), String> {
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
