//! Discovery sampling (DAT-2) on the three database engines a city runs: SQLite, PostgreSQL and
//! MariaDB, each with a table of mixed column types and NULLs.

use cf_store::sample::sample_database;
use sqlx::Executor;

const ROWS: &[(i64, &str, &str, Option<&str>, f64)] = &[
    (1, "张伟", "11010519491231002X", Some("13800138000"), 12.5),
    (2, "李娜", "110105195506197724", None, 0.0),
    (
        3,
        "O'Brien",
        "440306198504118436",
        Some("17130374649"),
        -3.25,
    ),
];

async fn fill(pool: &sqlx::AnyPool, table: &str, text: &str, real: &str) {
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id INTEGER, xm {text}, sfzh {text}, sjh {text}, amount {real})"
    )))
    .await
    .unwrap();
    for (id, n, s, p, a) in ROWS {
        let p = p.map_or("NULL".to_string(), |p| format!("'{p}'"));
        pool.execute(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} VALUES ({id}, '{}', '{s}', {p}, {a})",
            n.replace('\'', "''")
        )))
        .await
        .unwrap();
    }
}

fn check(samples: &[cf_store::sample::TableSample], name: &str) {
    let t = samples.iter().find(|t| t.name == name).unwrap_or_else(|| {
        panic!(
            "{name} not sampled: {:?}",
            samples.iter().map(|t| &t.name).collect::<Vec<_>>()
        )
    });
    assert_eq!(t.columns, ["id", "xm", "sfzh", "sjh", "amount"]);
    assert_eq!(t.total_rows, 3);
    assert_eq!(t.rows.len(), 2, "limit applies");
    let mut rows = t.rows.clone();
    rows.sort();
    assert_eq!(
        rows[0][..4],
        ["1", "张伟", "11010519491231002X", "13800138000"]
    );
    assert_eq!(rows[1][3], "", "NULL arrives empty");
    assert!(rows[0][4].starts_with("12.5"), "{:?}", rows[0]);
}

fn suffix() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[tokio::test]
async fn sqlite() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("city.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    fill(&pool, "people", "TEXT", "REAL").await;
    pool.close().await;
    let s = sample_database(
        &format!("sqlite://{}", dir.path().join("city.db").display()),
        None,
        2,
    )
    .await
    .unwrap();
    check(&s, "people");
}

#[tokio::test]
async fn postgres() {
    let Some(url) = cf_testkit::service_url(
        "CHENGFANG_TEST_POSTGRES",
        "postgres://postgres@127.0.0.1:5432/test",
        cf_testkit::tcp_open("127.0.0.1:5432"),
    ) else {
        return;
    };
    sqlx::any::install_default_drivers();
    let schema = format!("cf_disc_{}", suffix());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    fill(
        &pool,
        &format!("{schema}.people"),
        "TEXT",
        "DOUBLE PRECISION",
    )
    .await;
    let s = sample_database(&url, Some(&schema), 2).await;
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    check(&s.unwrap(), &format!("{schema}.people"));
}

#[tokio::test]
async fn mariadb() {
    let Some(url) = cf_testkit::service_url(
        "CHENGFANG_TEST_MARIADB",
        "mysql://root@127.0.0.1:3306/test",
        cf_testkit::tcp_open("127.0.0.1:3306"),
    ) else {
        return;
    };
    sqlx::any::install_default_drivers();
    let table = format!("cf_disc_{}", suffix());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    fill(&pool, &table, "VARCHAR(64) CHARACTER SET utf8mb4", "DOUBLE").await;
    let s = sample_database(&url, None, 2).await;
    pool.execute(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .await
        .unwrap();
    check(&s.unwrap(), &table);
}
