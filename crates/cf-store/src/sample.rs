//! Read-only sampling of other systems' databases for discovery (DAT-2): SQLite, PostgreSQL and
//! MariaDB/MySQL by URL. Every row is fetched as one JSON object built by the database itself, so
//! any column type arrives as text without per-type decoding.

use sqlx::Row;
use sqlx::any::AnyPoolOptions;

use cf_platform::ports::StoreError;

/// A sampled table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSample {
    /// `schema.table` (PostgreSQL) or `table`.
    pub name: String,
    /// Column names in order.
    pub columns: Vec<String>,
    /// Up to the limit of rows, cells as text (NULL as empty).
    pub rows: Vec<Vec<String>>,
    /// Total rows in the table.
    pub total_rows: u64,
}

fn be(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

fn quote(k: Kind, ident: &str) -> String {
    match k {
        Kind::Mysql => format!("`{}`", ident.replace('`', "``")),
        _ => format!("\"{}\"", ident.replace('"', "\"\"")),
    }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Sample every base table of the database at `url` (read only; at most `limit` rows each);
/// on PostgreSQL, only tables of `schema` if given.
pub async fn sample_database(
    url: &str,
    schema: Option<&str>,
    limit: u32,
) -> Result<Vec<TableSample>, StoreError> {
    sqlx::any::install_default_drivers();
    let kind = if url.starts_with("sqlite:") {
        Kind::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Kind::Postgres
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        Kind::Mysql
    } else {
        return Err(StoreError::Backend(format!(
            "{}: use sqlite://, postgres:// or mysql://",
            crate::redact_url(url)
        )));
    };
    let url = url.replacen("mariadb:", "mysql:", 1);
    let url = if kind == Kind::Sqlite && !url.contains("mode=") {
        format!("{url}{}mode=ro", if url.contains('?') { "&" } else { "?" })
    } else {
        url
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(be)?;
    let tables: Vec<(String, String)> = {
        let q = match kind {
            Kind::Sqlite => {
                "SELECT '' AS s, name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Kind::Postgres => {
                "SELECT table_schema::text AS s, table_name::text AS t FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
            }
            Kind::Mysql => {
                "SELECT CAST('' AS CHAR) AS s, CAST(table_name AS CHAR) AS t FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema = DATABASE() ORDER BY 2"
            }
        };
        sqlx::query(q)
            .fetch_all(&pool)
            .await
            .map_err(be)?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("s")?, r.try_get::<String, _>("t")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(be)?
    };
    let mut out = Vec::new();
    for (schema, table) in tables
        .into_iter()
        .filter(|(s, _)| schema.is_none_or(|want| want == s))
    {
        let cols_q = match kind {
            Kind::Sqlite => format!(
                "SELECT name AS c FROM pragma_table_info({}) ORDER BY cid",
                literal(&table)
            ),
            Kind::Postgres => format!(
                "SELECT column_name::text AS c FROM information_schema.columns WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                literal(&schema),
                literal(&table)
            ),
            Kind::Mysql => format!(
                "SELECT CAST(column_name AS CHAR) AS c FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = {} ORDER BY ordinal_position",
                literal(&table)
            ),
        };
        let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(cols_q))
            .fetch_all(&pool)
            .await
            .map_err(be)?
            .iter()
            .map(|r| r.try_get::<String, _>("c"))
            .collect::<Result<_, _>>()
            .map_err(be)?;
        if columns.is_empty() {
            continue;
        }
        let from = if schema.is_empty() {
            quote(kind, &table)
        } else {
            format!("{}.{}", quote(kind, &schema), quote(kind, &table))
        };
        let pairs = columns
            .iter()
            .map(|c| format!("{}, {}", literal(c), quote(kind, c)))
            .collect::<Vec<_>>()
            .join(", ");
        let rows_q = match kind {
            Kind::Sqlite => format!("SELECT json_object({pairs}) AS j FROM {from} LIMIT {limit}"),
            Kind::Postgres => format!(
                "SELECT row_to_json(x)::text AS j FROM (SELECT * FROM {from} LIMIT {limit}) x"
            ),
            Kind::Mysql => {
                format!("SELECT CAST(JSON_OBJECT({pairs}) AS CHAR) AS j FROM {from} LIMIT {limit}")
            }
        };
        let mut rows = Vec::new();
        for r in sqlx::query(sqlx::AssertSqlSafe(rows_q))
            .fetch_all(&pool)
            .await
            .map_err(be)?
        {
            let j: String = r.try_get("j").map_err(be)?;
            let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&j)
                .map_err(|e| StoreError::Corrupt(format!("{from}: row as JSON: {e}")))?;
            rows.push(
                columns
                    .iter()
                    .map(|c| match obj.get(c) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Null) | None => String::new(),
                        Some(v) => v.to_string(),
                    })
                    .collect(),
            );
        }
        let count_q = format!(
            "SELECT CAST(count(*) AS {}) AS n FROM {from}",
            if kind == Kind::Mysql {
                "SIGNED"
            } else {
                "BIGINT"
            }
        );
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(count_q))
            .fetch_one(&pool)
            .await
            .map_err(be)?
            .try_get("n")
            .map_err(be)?;
        out.push(TableSample {
            name: if schema.is_empty() || schema == "public" {
                table
            } else {
                format!("{schema}.{table}")
            },
            columns,
            rows,
            total_rows: total.max(0) as u64,
        });
    }
    pool.close().await;
    Ok(out)
}

/// [`cf_platform::ports::DataSource`] over [`sample_database`]'s drivers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SqlDataSource;

#[async_trait::async_trait]
impl cf_platform::ports::DataSource for SqlDataSource {
    async fn read(
        &self,
        url: &str,
        table: &str,
        limit: u32,
    ) -> Result<cf_platform::ports::SourceRows, StoreError> {
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, table),
        };
        let all = sample_database(url, schema, limit).await?;
        let t = all
            .into_iter()
            .find(|t| t.name == table || t.name.rsplit('.').next() == Some(name))
            .ok_or_else(|| {
                StoreError::NotFound(format!("table `{table}` in {}", crate::redact_url(url)))
            })?;
        Ok(cf_platform::ports::SourceRows {
            columns: t.columns,
            rows: t.rows,
        })
    }
}
