//! One conformance suite for the `StateStore` port, run against SQLite and PostgreSQL, plus the
//! audit ledger service running on each (AUD-2, AUD-3).

use std::sync::Arc;
use std::time::Duration;

use cf_core::{ManualClock, SharedClock, SystemClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_ledger::{Checkpoint, NoteSigner, leaf_hash, verify_inclusion};
use cf_platform::alarm::Alarms;
use cf_platform::ports::{
    EventBus, StateStore, StoreError, StoredCheckpoint, StoredEntry, TokenRecord,
};
use cf_platform::{AuditLedger, LedgerConfig, Metrics, Principal, authz};
use cf_store::SqlStore;

struct Backend {
    store: Arc<SqlStore>,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn cleanup(self) {
        if let Some(s) = &self.schema {
            self.store.drop_schema(s).await.expect("drop schema");
        }
        self.store.close().await;
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    Backend {
        store: Arc::new(SqlStore::connect(&url, None).await.expect("sqlite")),
        schema: None,
        _dir: Some(dir),
    }
}

fn pg_url() -> Option<String> {
    let url = std::env::var("CHENGFANG_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let hostport = url
        .rsplit('@')
        .next()
        .and_then(|s| s.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    cf_testkit::service_url(
        "CHENGFANG_TEST_POSTGRES",
        &url,
        cf_testkit::tcp_open(&hostport),
    )
}

async fn postgres() -> Option<Backend> {
    let url = pg_url()?;
    let schema = format!("cft_{}", std::process::id()) + &format!("_{}", rand_suffix());
    let store = SqlStore::connect(&url, Some(&schema))
        .await
        .expect("postgres connect");
    Some(Backend {
        store: Arc::new(store),
        schema: Some(schema),
        _dir: None,
    })
}

fn rand_suffix() -> String {
    hex::encode(cf_crypto::random_bytes(&cf_crypto::OsRng, 4).expect("rng"))
}

macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let b = super::sqlite().await;
                super::$body(b.store.clone()).await;
                b.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(b) = super::postgres().await else {
                    return;
                };
                super::$body(b.store.clone()).await;
                b.cleanup().await;
            }
        }
    };
}

fn entry(seq: u64) -> StoredEntry {
    let body = format!("{{\"seq\":{seq}}}");
    StoredEntry {
        leaf_hash: leaf_hash(body.as_bytes()),
        seq,
        body,
    }
}

async fn migrations_and_ledger_rows(s: Arc<SqlStore>) {
    assert_eq!(
        s.schema_version().await.unwrap(),
        cf_store::latest_version()
    );
    assert_eq!(s.ledger_len().await.unwrap(), 0);
    let batch: Vec<_> = (0..1203).map(entry).collect();
    s.append_ledger(&batch).await.unwrap();
    assert_eq!(s.ledger_len().await.unwrap(), 1203);
    // A gap or an overlap is refused and leaves nothing behind.
    assert!(matches!(
        s.append_ledger(&[entry(1204)]).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.append_ledger(&[entry(5)]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.ledger_len().await.unwrap(), 1203);
    let got = s.ledger_entries(1000, 10).await.unwrap();
    assert_eq!(got, (1000..1010).map(entry).collect::<Vec<_>>());
    let hashes = s.ledger_leaf_hashes(1200, 100).await.unwrap();
    assert_eq!(
        hashes,
        (1200..1203).map(|i| entry(i).leaf_hash).collect::<Vec<_>>()
    );
    assert!(s.ledger_bytes().await.unwrap() > 0);
    s.ping().await.unwrap();
}
on_both!(ledger_rows, migrations_and_ledger_rows);

async fn ledger_is_append_only(s: Arc<SqlStore>) {
    s.append_ledger(&[entry(0), entry(1)]).await.unwrap();
    assert!(
        s.raw_execute("UPDATE ledger_entries SET body = 'x' WHERE seq = 0")
            .await
            .is_err()
    );
    assert!(
        s.raw_execute("DELETE FROM ledger_entries WHERE seq = 1")
            .await
            .is_err()
    );
    let cp = StoredCheckpoint {
        size: 2,
        note: "n".into(),
        time: Timestamp::from_unix_secs(1),
    };
    s.put_checkpoint(&cp).await.unwrap();
    assert!(
        s.raw_execute("DELETE FROM ledger_checkpoints")
            .await
            .is_err()
    );
    assert_eq!(
        s.ledger_entries(0, 10).await.unwrap(),
        vec![entry(0), entry(1)]
    );
}
on_both!(append_only, ledger_is_append_only);

async fn checkpoints(s: Arc<SqlStore>) {
    assert_eq!(s.latest_checkpoint().await.unwrap(), None);
    for size in [3u64, 1, 7] {
        s.put_checkpoint(&StoredCheckpoint {
            size,
            note: format!("note {size}"),
            time: Timestamp::from_unix_secs(size as i64),
        })
        .await
        .unwrap();
    }
    assert_eq!(s.latest_checkpoint().await.unwrap().unwrap().size, 7);
    assert_eq!(
        s.checkpoints()
            .await
            .unwrap()
            .iter()
            .map(|c| c.size)
            .collect::<Vec<_>>(),
        vec![1, 3, 7]
    );
    let dup = s
        .put_checkpoint(&StoredCheckpoint {
            size: 3,
            note: "other".into(),
            time: Timestamp::from_unix_secs(9),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}
on_both!(checkpoint_rows, checkpoints);

async fn tokens(s: Arc<SqlStore>) {
    let t = TokenRecord {
        id: "00112233aabbccdd".into(),
        name: "ops".into(),
        roles: "admin,auditor".into(),
        secret_hash: [7; 32],
        created: Timestamp::from_unix_nanos(1_700_000_000_123_456_789),
        expires: Some(Timestamp::from_unix_secs(1_800_000_000)),
        revoked: None,
        must_change: true,
    };
    s.insert_token(&t).await.unwrap();
    assert!(matches!(
        s.insert_token(&t).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.token(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.token("nope").await.unwrap(), None);
    assert_eq!(s.tokens().await.unwrap(), vec![t.clone()]);
    s.revoke_token(&t.id, Timestamp::from_unix_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        s.revoke_token(&t.id, Timestamp::from_unix_secs(6)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.revoke_token("nope", Timestamp::from_unix_secs(6)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.token(&t.id).await.unwrap().unwrap().revoked,
        Some(Timestamp::from_unix_secs(5))
    );
}
on_both!(token_rows, tokens);

fn record(i: usize) -> AuditRecord {
    AuditRecord::new(
        "test.append",
        Timestamp::from_unix_secs(1_700_000_000 + i as i64),
        "10.0.0.9",
        "conformance",
        format!("user:{}", i % 7),
        format!("object:{i}"),
        "create",
        Outcome::Success,
        format!("req-{i}"),
    )
}

fn ledger_parts() -> (
    NoteSigner,
    SharedClock,
    Alarms,
    Arc<Metrics>,
    Arc<cf_bus_free::NullBus>,
) {
    let signer = NoteSigner::new(
        "test.city/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[5; 32]),
    )
    .unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let bus = Arc::new(cf_bus_free::NullBus::default());
    let alarms = Alarms::new(
        bus.clone() as Arc<dyn EventBus>,
        clock.clone(),
        metrics.clone(),
        "test",
    );
    (signer, clock, alarms, metrics, bus)
}

/// A bus that records alarms, so these tests do not depend on the bus edge.
mod cf_bus_free {
    use async_trait::async_trait;
    use cf_event::Event;
    use cf_platform::ports::{BusError, EventBus, Subscription};
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct NullBus {
        pub events: Mutex<Vec<Event>>,
    }

    #[async_trait]
    impl EventBus for NullBus {
        fn backend(&self) -> &'static str {
            "null"
        }
        async fn publish(&self, event: &Event) -> Result<(), BusError> {
            self.events.lock().unwrap().push(event.clone());
            Ok(())
        }
        async fn subscribe(&self, _f: &str, _g: &str) -> Result<Subscription, BusError> {
            Err(BusError::Backend("not supported".into()))
        }
    }
}

fn cfg() -> LedgerConfig {
    LedgerConfig {
        origin: "test.city/audit".into(),
        checkpoint_interval: Duration::from_millis(20),
        ..LedgerConfig::default()
    }
}

async fn ledger_service(s: Arc<SqlStore>) {
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let vk = signer.verifier();
    let ledger = AuditLedger::open(
        s.clone(),
        signer,
        cfg(),
        clock.clone(),
        alarms,
        metrics.clone(),
    )
    .await
    .unwrap();
    // Concurrent appends form group commits; every receipt is a distinct, contiguous position.
    let mut handles = Vec::new();
    for i in 0..2000 {
        let l = ledger.clone();
        handles.push(tokio::spawn(async move {
            l.append(record(i)).await.unwrap().seq()
        }));
    }
    let mut seqs = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..2000).collect::<Vec<_>>());
    let cp = ledger
        .wait_for_checkpoint(1999, Duration::from_secs(5))
        .await
        .expect("checkpoint within 5s");
    let parsed = Checkpoint::open(&cp.note, "test.city/audit", std::slice::from_ref(&vk)).unwrap();
    assert_eq!(parsed.size, 2000);
    let auth = authz::authorize(&Principal::system(), authz::Action::ReadAudit).unwrap();
    let (leaf, proof) = ledger.inclusion_proof(&auth, 1234, 2000).unwrap();
    verify_inclusion(1234, 2000, &leaf, &proof, &parsed.root).unwrap();
    let entries = ledger.entries(&auth, 1234, 1).await.unwrap();
    assert_eq!(leaf_hash(entries[0].clone().encode().as_bytes()), leaf);
    // Reading needs the auditor right.
    let admin_only = authz::authorize(
        &Principal {
            id: "a".into(),
            roles: vec![cf_platform::Role::Admin],
            must_change: false,
        },
        authz::Action::ManageTokens,
    )
    .unwrap();
    assert!(ledger.entries(&admin_only, 0, 1).await.is_err());
    ledger.shutdown().await;
    assert!(
        ledger.append(record(1)).await.is_err(),
        "appends after shutdown are refused"
    );
    // Reopen: the tree is rebuilt and matches the signed checkpoint; appends continue.
    let (signer, clock, alarms, metrics2, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock, alarms, metrics2)
        .await
        .unwrap();
    assert_eq!(ledger.size(), 2000);
    assert_eq!(ledger.append(record(2000)).await.unwrap().seq(), 2000);
    ledger.shutdown().await;
    assert!(
        metrics
            .audit_appends
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2000
    );
}
on_both!(ledger, ledger_service);

async fn ledger_fails_closed_and_alarms(s: Arc<SqlStore>) {
    let (signer, clock, alarms, metrics, bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock, alarms, metrics.clone())
        .await
        .unwrap();
    ledger.append(record(0)).await.unwrap();
    // Break the storage underneath the ledger: every append must now fail, and raise an alarm.
    s.raw_execute("ALTER TABLE ledger_entries RENAME TO ledger_entries_gone")
        .await
        .unwrap();
    let err = ledger.append(record(1)).await.unwrap_err();
    assert_eq!(err.code(), cf_core::ErrorCode::AuditUnavailable);
    assert_eq!(
        metrics
            .audit_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let topics: Vec<String> = bus
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic.clone())
        .collect();
    assert!(
        topics.contains(&"alarm.audit.write_failed".to_string()),
        "{topics:?}"
    );
    s.raw_execute("ALTER TABLE ledger_entries_gone RENAME TO ledger_entries")
        .await
        .unwrap();
    assert_eq!(
        ledger.append(record(2)).await.unwrap().seq(),
        1,
        "the failed record took no position"
    );
    ledger.shutdown().await;
}
on_both!(fail_closed, ledger_fails_closed_and_alarms);

async fn ledger_fill_alarm(s: Arc<SqlStore>) {
    let (signer, clock, alarms, metrics, bus) = ledger_parts();
    let c = LedgerConfig {
        capacity_bytes: 1,
        fill_alarm_percent: 50,
        ..cfg()
    };
    let ledger = AuditLedger::open(s.clone(), signer, c, clock, alarms, metrics)
        .await
        .unwrap();
    ledger.append(record(0)).await.unwrap();
    ledger.shutdown().await;
    let topics: Vec<String> = bus
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic.clone())
        .collect();
    assert!(
        topics.contains(&"alarm.audit.storage_filling".to_string()),
        "{topics:?}"
    );
}
on_both!(fill_alarm, ledger_fill_alarm);

async fn ledger_refuses_to_open_when_tampered(s: Arc<SqlStore>) {
    let (signer, _clock, alarms, metrics, _bus) = ledger_parts();
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    for i in 0..10 {
        ledger.append(record(i)).await.unwrap();
    }
    ledger
        .wait_for_checkpoint(9, Duration::from_secs(5))
        .await
        .unwrap();
    ledger.shutdown().await;
    // An attacker with database access disables the guard and rewrites a leaf hash.
    for sql in [
        "DROP TRIGGER IF EXISTS ledger_entries_no_update",
        "DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries",
    ] {
        let _ = s.raw_execute(sql).await;
    }
    let hx = "00".repeat(32);
    let sql = match s.engine() {
        cf_store::Backend::Sqlite => {
            format!("UPDATE ledger_entries SET leaf_hash = X'{hx}' WHERE seq = 4")
        }
        cf_store::Backend::Postgres => {
            format!("UPDATE ledger_entries SET leaf_hash = '\\x{hx}' WHERE seq = 4")
        }
    };
    s.raw_execute(&sql).await.unwrap();
    let (signer, _c, alarms, metrics, _bus) = ledger_parts();
    let err = AuditLedger::open(s.clone(), signer, cfg(), clock, alarms, metrics)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match its latest signed checkpoint"),
        "{err}"
    );
}
on_both!(tamper_at_open, ledger_refuses_to_open_when_tampered);

async fn ledger_refuses_a_forged_unsigned_tail(s: Arc<SqlStore>) {
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock, alarms, metrics)
        .await
        .unwrap();
    for i in 0..5 {
        ledger.append(record(i)).await.unwrap();
    }
    ledger
        .wait_for_checkpoint(4, Duration::from_secs(5))
        .await
        .unwrap();
    ledger.shutdown().await;
    // A well-formed record appended behind the ledger's back, with a chain link that lies.
    let forged = cf_platform::LedgerEntry {
        seq: 5,
        prev: cf_platform::audit::GENESIS_PREV.to_string(),
        record: record(5),
    };
    let body = forged.encode();
    s.append_ledger(&[StoredEntry {
        seq: 5,
        leaf_hash: leaf_hash(body.as_bytes()),
        body,
    }])
    .await
    .unwrap();
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let err = AuditLedger::open(s.clone(), signer, cfg(), clock, alarms, metrics)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unsigned ledger record 5"),
        "{err}"
    );
}
on_both!(forged_tail, ledger_refuses_a_forged_unsigned_tail);

async fn denial_floods_are_summarised(s: Arc<SqlStore>) {
    let (signer, _clock, alarms, metrics, _bus) = ledger_parts();
    let manual = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let clock: SharedClock = manual.clone();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let tokens = cf_platform::tokens::Tokens::new(
        s.clone(),
        ledger.clone(),
        clock,
        Arc::new(cf_crypto::SeededRng::new(1)),
    );
    let ctx = cf_platform::tokens::RequestContext {
        source_addr: "203.0.113.9".into(),
        request_id: "r".into(),
    };
    for _ in 0..40 {
        tokens
            .audit_denied(&ctx, "anonymous", "/api/v1/tokens", "authenticate")
            .await;
    }
    assert_eq!(ledger.size(), cf_platform::tokens::DENIED_PER_MINUTE);
    manual.advance(Duration::from_secs(61));
    tokens
        .audit_denied(&ctx, "anonymous", "/api/v1/tokens", "authenticate")
        .await;
    let auth = authz::authorize(&Principal::system(), authz::Action::ReadAudit).unwrap();
    let entries = ledger.entries(&auth, 0, 100).await.unwrap();
    let summary = entries
        .iter()
        .find(|e| e.record.event_type == "access.denied.summary")
        .expect("a summary record");
    assert_eq!(summary.record.detail["suppressed_records"], 10);
    assert_eq!(
        entries.len() as u64,
        cf_platform::tokens::DENIED_PER_MINUTE + 2
    );
    ledger.shutdown().await;
}
on_both!(denial_summary, denial_floods_are_summarised);
