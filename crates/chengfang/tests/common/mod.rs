//! Helpers shared by the binary's end-to-end tests: start `chengfang serve` in a fresh data
//! directory, an HTTPS client that trusts its CA, and JSON request shortcuts.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chengfang")
}

pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    pub token: String,
    pub output: Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    /// A failing test must not leave its server running (it would hold the test's pipes open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(dir: &Path) -> Server {
    start_server_with(dir, &[], true)
}

/// Start `serve`; on a restart (`fresh` false) no bootstrap credential is printed, so the
/// server counts as up once it has printed its CA line.
pub fn start_server_with(dir: &Path, env: &[(&str, String)], fresh: bool) -> Server {
    let mut child = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("CHENGFANG_SERVER__LISTEN", "127.0.0.1:0")
        .env("CHENGFANG_LEDGER__ORIGIN", "test.city/audit")
        .env("CHENGFANG_SERVER__BODY_LIMIT_BYTES", "16384")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let output = Arc::new(std::sync::Mutex::new(String::new()));
    let err = child.stderr.take().unwrap();
    let o = output.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            o.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let o = output.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            o.lock().unwrap().push_str(&(l.clone() + "\n"));
            let _ = tx.send(l);
        }
    });
    let (mut url, mut token) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (url.is_none() || token.is_none()) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            if let Some(u) = l.strip_prefix("Chengfang serving on ") {
                url = Some(u.trim().to_string());
            }
            if l.trim_start().starts_with("cfk_") {
                token = Some(l.trim().to_string());
            }
            if !fresh && l.trim_start().starts_with("platform CA") {
                token = Some(String::new());
            }
        }
    }
    let (Some(url), Some(token)) = (url, token) else {
        let _ = child.kill();
        panic!("server did not start: {}", output.lock().unwrap());
    };
    Server {
        child,
        url,
        token,
        output,
    }
}

/// Start `serve` with cheap password hashes (Argon2id 1 MiB, one pass) and `env`: for tests of
/// identity flows, where the policy, not the hash, is under test.
pub fn start_identity_server(dir: &Path, env: &[(&str, String)]) -> Server {
    let mut env = env.to_vec();
    env.push(("CHENGFANG_IDENTITY__ARGON2_MEMORY_KIB", "1024".into()));
    env.push(("CHENGFANG_IDENTITY__ARGON2_PASSES", "1".into()));
    start_server_with(dir, &env, true)
}

pub fn client(dir: &Path) -> reqwest::Client {
    client_with(dir, |b| b)
}

/// A client trusting the server's CA, with the builder adjusted by `adjust` (source address,
/// redirect policy, user agent …).
pub fn client_with(
    dir: &Path,
    adjust: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(dir.join("ca/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    adjust(reqwest::Client::builder().tls_backend_preconfigured(cfg))
        .build()
        .unwrap()
}

/// A PostgreSQL URL and a fresh schema name for a server test on the scale-out backend, or
/// `None` (after a loud message) when PostgreSQL is not reachable outside CI.
pub fn postgres_env(prefix: &str) -> Option<(String, String)> {
    let url = std::env::var("CHENGFANG_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let url = cf_testkit::service_url(
        "CHENGFANG_TEST_POSTGRES",
        &url,
        cf_testkit::tcp_open("127.0.0.1:5432"),
    )?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Some((
        url,
        format!("{prefix}_{}_{}", std::process::id(), nanos % 100_000),
    ))
}

/// A fresh PostgreSQL schema for a server test on the scale-out backend: `env` points `serve`
/// at it; `drop` removes it afterwards.
pub struct PgSchema {
    /// The environment for [`start_server_with`].
    pub env: Vec<(&'static str, String)>,
    url: String,
    schema: String,
}

impl PgSchema {
    /// A schema named after `prefix`, or `None` (after a loud message) when PostgreSQL is not
    /// reachable outside CI.
    pub fn new(prefix: &str) -> Option<Self> {
        let (url, schema) = postgres_env(prefix)?;
        Some(PgSchema {
            env: vec![
                ("CHENGFANG_STORAGE__URL", url.clone()),
                ("CHENGFANG_STORAGE__SCHEMA", schema.clone()),
            ],
            url,
            schema,
        })
    }

    /// Drop the schema.
    pub async fn drop(self) {
        let store = cf_store::SqlStore::connect(&self.url, Some(&self.schema))
            .await
            .unwrap();
        store.drop_schema(&self.schema).await.unwrap();
    }
}

/// Create an account through `by` (an administrator) and sign it in with a permanent password
/// `permanent`: its session secret and session handle.
pub async fn person(
    c: &reqwest::Client,
    base: &str,
    by: &str,
    new_user: serde_json::Value,
    permanent: &str,
) -> (String, String) {
    let name = new_user["username"].as_str().unwrap().to_string();
    let (s, v) = post_json(c, format!("{base}/api/v1/users"), by, &new_user).await;
    assert_eq!(s, 201, "{name}: {v}");
    let initial = v["initial_password"].as_str().unwrap().to_string();
    let (s, v) = json(
        c.post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": name, "password": initial}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let sess = v["session"].as_str().unwrap().to_string();
    let handle = v["handle"].as_str().unwrap().to_string();
    let (s, v) = post_json(
        c,
        format!("{base}/api/v1/account/password"),
        &sess,
        &serde_json::json!({"old": initial, "new": permanent}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    (sess, handle)
}

/// Exchange the server's bootstrap credential for the first administrator token.
pub async fn rotate_bootstrap(c: &reqwest::Client, srv: &Server) -> String {
    let (s, v) = json(
        c.post(format!("{}/api/v1/auth/rotate", srv.url))
            .bearer_auth(&srv.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!((200..300).contains(&s), "{s}: {v}");
    v["token"].as_str().unwrap().to_string()
}

/// A new API token named `name` with `roles`, made by the administrator `admin`.
pub async fn new_token(
    c: &reqwest::Client,
    srv: &Server,
    admin: &str,
    name: &str,
    roles: &[&str],
) -> String {
    let (s, v) = post_json(
        c,
        format!("{}/api/v1/tokens", srv.url),
        admin,
        &serde_json::json!({"name": name, "roles": roles}),
    )
    .await;
    assert!((200..300).contains(&s), "{s}: {v}");
    v["token"].as_str().unwrap().to_string()
}

/// The first open alert of `kind`, waiting up to five seconds for the pipeline to raise it.
pub async fn open_alert(
    c: &reqwest::Client,
    srv: &Server,
    tok: &str,
    kind: &str,
) -> serde_json::Value {
    for _ in 0..50 {
        let (_, a) = get_json(c, format!("{}/api/v1/alerts?status=open", srv.url), tok).await;
        if let Some(x) = a
            .as_array()
            .and_then(|a| a.iter().find(|x| x["kind"] == kind))
        {
            return x.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no open {kind} alert");
}

/// The Prometheus text of `srv`, read with `tok`.
pub async fn metrics(c: &reqwest::Client, srv: &Server, tok: &str) -> String {
    c.get(format!("{}/metrics", srv.url))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// POST a JSON body with a bearer token; the status and the JSON answer.
pub async fn post_json(
    c: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    tok: impl std::fmt::Display,
    body: &impl serde::Serialize,
) -> (u16, serde_json::Value) {
    json(
        c.post(url)
            .bearer_auth(tok)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// GET with a bearer token; the status and the JSON answer.
pub async fn get_json(
    c: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    tok: impl std::fmt::Display,
) -> (u16, serde_json::Value) {
    json(c.get(url).bearer_auth(tok).send().await.unwrap()).await
}

pub async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The two tests of a walk over a live server: on the embedded SQLite store, and on a fresh
/// PostgreSQL schema named after `$prefix` (dropped afterwards; skipped loudly outside CI when
/// PostgreSQL is missing, as [`PgSchema::new`] says).
#[macro_export]
macro_rules! on_both_backends {
    ($walk:ident, $sqlite:ident, $pg:ident, $prefix:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $walk(&[]).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            let Some(pg) = PgSchema::new($prefix) else {
                return;
            };
            $walk(&pg.env).await;
            pg.drop().await;
        }
    };
}
