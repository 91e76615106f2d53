//! Versioned schema migrations, applied in order at start inside one transaction each and
//! recorded in `cf_schema_migrations`. A migration, once released, is never edited.

use cf_platform::ports::StoreError;
use sqlx::{AnyPool, Executor};

use crate::{Backend, be};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger and api tokens",
        sqlite: r#"
CREATE TABLE ledger_entries (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, leaf_hash BLOB NOT NULL);
CREATE TABLE ledger_checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL, time_ns INTEGER NOT NULL);
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN SELECT RAISE(ABORT, 'ledger records are append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN SELECT RAISE(ABORT, 'ledger records are append-only'); END;
CREATE TRIGGER ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TABLE api_tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, secret_hash BLOB NOT NULL,
  created_ns INTEGER NOT NULL, expires_ns INTEGER, revoked_ns INTEGER, must_change INTEGER NOT NULL);
"#,
        postgres: r#"
CREATE TABLE ledger_entries (seq BIGINT PRIMARY KEY, body TEXT NOT NULL, leaf_hash BYTEA NOT NULL);
CREATE TABLE ledger_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL, time_ns BIGINT NOT NULL);
CREATE FUNCTION cf_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'ledger records are append-only'; END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries FOR EACH ROW EXECUTE FUNCTION cf_append_only();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints FOR EACH ROW EXECUTE FUNCTION cf_append_only();
CREATE TABLE api_tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, secret_hash BYTEA NOT NULL,
  created_ns BIGINT NOT NULL, expires_ns BIGINT, revoked_ns BIGINT, must_change BIGINT NOT NULL);
"#,
    },
    Migration {
        version: 2,
        name: "kms keys",
        sqlite: r#"
CREATE TABLE kms_keys (name TEXT PRIMARY KEY, org TEXT NOT NULL, body TEXT NOT NULL, revision INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
CREATE INDEX kms_keys_org ON kms_keys (org);
"#,
        postgres: r#"
CREATE TABLE kms_keys (name TEXT PRIMARY KEY, org TEXT NOT NULL, body TEXT NOT NULL, revision BIGINT NOT NULL, updated_ns BIGINT NOT NULL);
CREATE INDEX kms_keys_org ON kms_keys (org);
"#,
    },
    Migration {
        version: 3,
        name: "documents",
        sqlite: r#"
CREATE TABLE documents (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, revision INTEGER NOT NULL, updated_ns INTEGER NOT NULL, PRIMARY KEY (kind, id));
"#,
        postgres: r#"
CREATE TABLE documents (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, revision BIGINT NOT NULL, updated_ns BIGINT NOT NULL, PRIMARY KEY (kind, id));
"#,
    },
    Migration {
        version: 4,
        name: "tokens confined to an organisation",
        sqlite: r#"
ALTER TABLE api_tokens ADD COLUMN org TEXT;
"#,
        postgres: r#"
ALTER TABLE api_tokens ADD COLUMN org TEXT;
"#,
    },
];

/// Apply every migration newer than the database's version.
pub(crate) async fn apply(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(be)?;
    if backend == Backend::Postgres {
        // Serialise concurrent starts of several nodes against one database.
        conn.execute("SELECT pg_advisory_lock(7215064)")
            .await
            .map_err(be)?;
    }
    let result = async {
        conn.execute("CREATE TABLE IF NOT EXISTS cf_schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .await
            .map_err(be)?;
        for m in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM cf_schema_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *conn)
                .await
                .map_err(be)?;
            if done.is_some() {
                continue;
            }
            let sql = match backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(be)?;
            tx.execute(sql).await.map_err(|e| StoreError::Backend(format!("migration {} ({}): {e}", m.version, m.name)))?;
            sqlx::query("INSERT INTO cf_schema_migrations (version, name) VALUES ($1, $2)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut *tx)
                .await
                .map_err(be)?;
            tx.commit().await.map_err(be)?;
        }
        Ok(())
    }
    .await;
    if backend == Backend::Postgres {
        let _ = conn.execute("SELECT pg_advisory_unlock(7215064)").await;
    }
    result
}

/// Latest version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
