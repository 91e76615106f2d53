//! The state-store edge: the platform's `StateStore` port on SQLite (embedded default: WAL,
//! synchronous=FULL) and PostgreSQL, picked by URL, with versioned migrations applied at start.
//!
//! Architecture invariant: the only crate that speaks SQL. The same SQL text runs on both
//! backends wherever possible; per-backend statements are kept side by side in `migrations`.

mod migrations;
pub mod sample;

pub use migrations::latest_version;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use cf_core::Timestamp;
use cf_ledger::Hash;
use cf_platform::ports::{
    Document, KmsRecord, StateStore, StoreError, StoredCheckpoint, StoredEntry, TokenRecord,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A SQL-backed [`StateStore`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

fn be(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(d.message().to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Backend(format!("{v} exceeds the storage integer range")))
}

fn hash_of(v: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

impl SqlStore {
    /// Connect by URL (`sqlite://PATH` or `postgres://…`) and apply migrations. For PostgreSQL,
    /// `schema` (created if missing) isolates one deployment's tables.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Backend(format!(
                "unsupported storage URL scheme in `{}`: use sqlite:// or postgres://",
                redact_url(url)
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(be)?;
        if let Some(s) = schema
            && (s.is_empty()
                || s.len() > 60
                || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(StoreError::Backend(format!(
                "schema `{s}` must be 1-60 characters of A-Z a-z 0-9 _"
            )));
        }
        let schema_owned = schema.map(str::to_string);
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                let schema = schema_owned.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // Durable: WAL with a full fsync at every commit.
                            conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;").await?;
                        }
                        Backend::Postgres => {
                            // An acknowledged append must survive a crash whatever the server default.
                            conn.execute("SET synchronous_commit = on").await?;
                            if let Some(s) = schema {
                                conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"))).await?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(be)?;
        let store = SqlStore { pool, backend };
        migrations::apply(&store.pool, backend).await?;
        Ok(store)
    }

    /// Open an existing SQLite database read-only, without migrations: for offline verification
    /// of a data directory that may have been tampered with.
    pub async fn open_sqlite_read_only(path: &std::path::Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if !path.is_file() {
            return Err(StoreError::NotFound(format!(
                "no database at {}",
                path.display()
            )));
        }
        let opts = AnyConnectOptions::from_str(&format!("sqlite://{}?mode=ro", path.display()))
            .map_err(be)?;
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(be)?;
        Ok(SqlStore {
            pool,
            backend: Backend::Sqlite,
        })
    }

    /// The engine.
    pub fn engine(&self) -> Backend {
        self.backend
    }

    /// Schema version after migrations.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM cf_schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(be)?;
        row.try_get::<i64, _>(0).map_err(be)
    }

    /// Close the pool (flushes SQLite's WAL on the last connection).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Run one statement outside the port; for tests that play the attacker and for operators'
    /// maintenance commands. Never called by the platform.
    #[doc(hidden)]
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(r.rows_affected())
    }

    /// Drop a PostgreSQL schema (test clean-up).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&self.pool)
            .await
            .map_err(be)?;
        }
        Ok(())
    }
}

/// A URL with any credentials replaced, for messages and logs: the password of `user:pass@`,
/// a bare `token@`, and `password=`/`token=` query parameters.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &base[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:[redacted]{}", &base[..s + 3], &base[at..]),
                None => format!("{}[redacted]{}", &base[..s + 3], &base[at..]),
            }
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if ["password", "pass", "token", "sslpassword", "secret"]
                        .contains(&k.to_ascii_lowercase().as_str()) =>
                {
                    format!("{k}=[redacted]")
                }
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

fn token_from_row(r: &AnyRow) -> Result<TokenRecord, StoreError> {
    let opt_ts = |v: Option<i64>| v.map(Timestamp::from_unix_nanos);
    Ok(TokenRecord {
        id: r.try_get("id").map_err(be)?,
        name: r.try_get("name").map_err(be)?,
        roles: r.try_get("roles").map_err(be)?,
        secret_hash: hash_of(r.try_get("secret_hash").map_err(be)?, "token digest")?,
        created: Timestamp::from_unix_nanos(r.try_get("created_ns").map_err(be)?),
        expires: opt_ts(r.try_get("expires_ns").map_err(be)?),
        revoked: opt_ts(r.try_get("revoked_ns").map_err(be)?),
        must_change: r.try_get::<i64, _>("must_change").map_err(be)? != 0,
        org: r.try_get("org").map_err(be)?,
    })
}

const INSERT_CHUNK: usize = 500;

fn insert_sql(rows: usize, backend: Backend) -> String {
    let mut s = String::from("INSERT INTO ledger_entries (seq, body, leaf_hash) VALUES ");
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        match backend {
            // Positional `?`: SQLite resolves `$N` names per bind, quadratic in a large batch.
            Backend::Sqlite => s.push_str("(?,?,?)"),
            Backend::Postgres => {
                s.push_str(&format!("(${},${},${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            }
        }
    }
    s
}

#[async_trait]
impl StateStore for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    async fn append_ledger(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        // IMMEDIATE takes SQLite's write lock up front: a deferred transaction that reads and then
        // writes fails with SQLITE_BUSY instead of waiting when another writer got in between.
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let mut tx = self.pool.begin_with(begin).await.map_err(be)?;
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(be)?
            .try_get(0)
            .map_err(be)?;
        if next != to_i64(first.seq)? {
            return Err(StoreError::Conflict(format!(
                "ledger append at {} but the log continues at {next}",
                first.seq
            )));
        }
        for chunk in entries.chunks(INSERT_CHUNK) {
            // Built only from row counts, never from input.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len(), self.backend)));
            for e in chunk {
                q = q
                    .bind(to_i64(e.seq)?)
                    .bind(e.body.clone())
                    .bind(e.leaf_hash.to_vec());
            }
            q.execute(&mut *tx).await.map_err(be)?;
        }
        tx.commit().await.map_err(be)
    }

    async fn ledger_entries(&self, from: u64, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, body, leaf_hash FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(be)?;
        rows.iter()
            .map(|r| {
                Ok(StoredEntry {
                    seq: u64::try_from(r.try_get::<i64, _>(0).map_err(be)?)
                        .map_err(|_| StoreError::Corrupt("negative seq".into()))?,
                    body: r.try_get(1).map_err(be)?,
                    leaf_hash: hash_of(r.try_get(2).map_err(be)?, "leaf hash")?,
                })
            })
            .collect()
    }

    async fn ledger_leaf_hashes(&self, from: u64, limit: u32) -> Result<Vec<Hash>, StoreError> {
        let rows = sqlx::query(
            "SELECT leaf_hash FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(be)?;
        rows.iter()
            .map(|r| hash_of(r.try_get(0).map_err(be)?, "leaf hash"))
            .collect()
    }

    async fn ledger_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_entries")
            .fetch_one(&self.pool)
            .await
            .map_err(be)?
            .try_get(0)
            .map_err(be)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn ledger_bytes(&self) -> Result<u64, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            Backend::Postgres => {
                "SELECT CAST(pg_total_relation_size('ledger_entries') + pg_total_relation_size('ledger_checkpoints') AS BIGINT)"
            }
        };
        let n: i64 = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(be)?
            .try_get(0)
            .map_err(be)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO ledger_checkpoints (size, note, time_ns) VALUES ($1, $2, $3)")
            .bind(to_i64(cp.size)?)
            .bind(cp.note.clone())
            .bind(cp.time.unix_nanos())
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT size, note, time_ns FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?;
        row.map(|r| checkpoint_from_row(&r)).transpose()
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query("SELECT size, note, time_ns FROM ledger_checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, name, roles, secret_hash, created_ns, expires_ns, revoked_ns, must_change, org) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(t.id.clone())
            .bind(t.name.clone())
            .bind(t.roles.clone())
            .bind(t.secret_hash.to_vec())
            .bind(t.created.unix_nanos())
            .bind(t.expires.map(|x| x.unix_nanos()))
            .bind(t.revoked.map(|x| x.unix_nanos()))
            .bind(i64::from(t.must_change))
            .bind(t.org.clone())
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_ns, id")
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ns = $1 WHERE id = $2 AND revoked_ns IS NULL",
        )
        .bind(at.unix_nanos())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(be)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match self.token(id).await? {
            None => Err(StoreError::NotFound(format!("token {id}"))),
            Some(_) => Err(StoreError::Conflict(format!(
                "token {id} is already revoked"
            ))),
        }
    }

    async fn kms_insert(&self, rec: &KmsRecord) -> Result<(), StoreError> {
        let r = sqlx::query("INSERT INTO kms_keys (name, org, body, revision, updated_ns) VALUES ($1, $2, $3, 1, $4)")
            .bind(rec.name.clone())
            .bind(rec.org.clone())
            .bind(rec.body.clone())
            .bind(rec.updated.unix_nanos())
            .execute(&self.pool)
            .await;
        match r.map_err(be) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                Err(StoreError::Conflict(format!("key {} exists", rec.name)))
            }
            Err(e) => Err(e),
        }
    }

    async fn kms_update(&self, rec: &KmsRecord) -> Result<(), StoreError> {
        let prev = i64::try_from(rec.revision)
            .map_err(|_| StoreError::Conflict("revision overflow".into()))?
            - 1;
        let done = sqlx::query("UPDATE kms_keys SET body = $1, revision = $2, updated_ns = $3 WHERE name = $4 AND revision = $5")
            .bind(rec.body.clone())
            .bind(prev + 1)
            .bind(rec.updated.unix_nanos())
            .bind(rec.name.clone())
            .bind(prev)
            .execute(&self.pool)
            .await
            .map_err(be)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "key {} changed concurrently; retry",
                rec.name
            )));
        }
        if self.backend == Backend::Sqlite {
            // secure_delete zeroes the freed cells in the database file; truncating the WAL drops
            // the older page images that still held the previous (wrapped) material.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .map_err(be)?;
        }
        Ok(())
    }

    async fn kms_get(&self, name: &str) -> Result<Option<KmsRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, org, body, revision, updated_ns FROM kms_keys WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(be)?;
        row.map(|r| kms_from_row(&r)).transpose()
    }

    async fn kms_list(&self) -> Result<Vec<KmsRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT name, org, body, revision, updated_ns FROM kms_keys ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(be)?;
        rows.iter().map(kms_from_row).collect()
    }

    async fn doc_insert(&self, d: &Document) -> Result<(), StoreError> {
        let r = sqlx::query("INSERT INTO documents (kind, id, body, revision, updated_ns) VALUES ($1, $2, $3, 1, $4)")
            .bind(d.kind.clone())
            .bind(d.id.clone())
            .bind(d.body.clone())
            .bind(d.updated.unix_nanos())
            .execute(&self.pool)
            .await;
        match r.map_err(be) {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict(format!(
                "{} `{}` exists",
                d.kind, d.id
            ))),
            Err(e) => Err(e),
        }
    }

    async fn doc_update(&self, d: &Document) -> Result<(), StoreError> {
        let prev = to_i64(d.revision)? - 1;
        let done = sqlx::query("UPDATE documents SET body = $1, revision = $2, updated_ns = $3 WHERE kind = $4 AND id = $5 AND revision = $6")
            .bind(d.body.clone())
            .bind(prev + 1)
            .bind(d.updated.unix_nanos())
            .bind(d.kind.clone())
            .bind(d.id.clone())
            .bind(prev)
            .execute(&self.pool)
            .await
            .map_err(be)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "{} `{}` changed concurrently; retry",
                d.kind, d.id
            )));
        }
        Ok(())
    }

    async fn doc_get(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError> {
        let row = sqlx::query("SELECT kind, id, body, revision, updated_ns FROM documents WHERE kind = $1 AND id = $2")
            .bind(kind.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(be)?;
        row.map(|r| doc_from_row(&r)).transpose()
    }

    async fn doc_list(&self, kind: &str) -> Result<Vec<Document>, StoreError> {
        let rows = sqlx::query("SELECT kind, id, body, revision, updated_ns FROM documents WHERE kind = $1 ORDER BY id")
            .bind(kind.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(be)?;
        rows.iter().map(doc_from_row).collect()
    }

    async fn doc_delete(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM documents WHERE kind = $1 AND id = $2")
            .bind(kind.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(done.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(be)?;
        Ok(())
    }
}

fn doc_from_row(r: &AnyRow) -> Result<Document, StoreError> {
    let rev: i64 = r.try_get("revision").map_err(be)?;
    Ok(Document {
        kind: r.try_get("kind").map_err(be)?,
        id: r.try_get("id").map_err(be)?,
        body: r.try_get("body").map_err(be)?,
        revision: u64::try_from(rev)
            .map_err(|_| StoreError::Corrupt("negative document revision".into()))?,
        updated: Timestamp::from_unix_nanos(r.try_get("updated_ns").map_err(be)?),
    })
}

fn kms_from_row(r: &AnyRow) -> Result<KmsRecord, StoreError> {
    let rev: i64 = r.try_get("revision").map_err(be)?;
    Ok(KmsRecord {
        name: r.try_get("name").map_err(be)?,
        org: r.try_get("org").map_err(be)?,
        body: r.try_get("body").map_err(be)?,
        revision: u64::try_from(rev)
            .map_err(|_| StoreError::Corrupt("negative kms revision".into()))?,
        updated: Timestamp::from_unix_nanos(r.try_get("updated_ns").map_err(be)?),
    })
}

fn checkpoint_from_row(r: &AnyRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: u64::try_from(r.try_get::<i64, _>(0).map_err(be)?)
            .map_err(|_| StoreError::Corrupt("negative size".into()))?,
        note: r.try_get(1).map_err(be)?,
        time: Timestamp::from_unix_nanos(r.try_get(2).map_err(be)?),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:[redacted]@h/db"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            super::redact_url("nats://s3cret@h:4222"),
            "nats://[redacted]@h:4222"
        );
        assert_eq!(
            super::redact_url("postgres://h/db?user=u&password=p"),
            "postgres://h/db?user=u&password=[redacted]"
        );
    }
}
