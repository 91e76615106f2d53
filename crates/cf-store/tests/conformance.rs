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

/// The KMS service on each backend (ENC-1, DES-1): keys persist only wrapped, uses and changes
/// are audited before they take effect, administrators manage keys but cannot use them, and a
/// destroyed key leaves its ciphertext unrecoverable and its material nowhere in the database.
async fn kms_service(s: Arc<SqlStore>, db_dir: Option<std::path::PathBuf>) {
    use cf_kms::keyring::KeyType;
    use cf_platform::kms::{KeyChange, Kms, NewKey, Plain};
    use cf_platform::tokens::RequestContext;

    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let rng: Arc<dyn cf_crypto::Rng> = Arc::new(cf_crypto::OsRng);
    let root = cf_kms::seal::Kek::generate(rng.as_ref()).unwrap();
    let root_copy = cf_kms::seal::Kek::from_bytes(root.expose()).unwrap();
    let kms = Kms::open(
        s.clone(),
        ledger.clone(),
        clock.clone(),
        rng.clone(),
        Arc::new(root),
    )
    .await
    .unwrap();
    let admin = Principal {
        id: "tok-admin".into(),
        roles: vec![authz::Role::Admin],
        must_change: false,
    };
    let app = Principal {
        id: "tok-app".into(),
        roles: vec![authz::Role::Service],
        must_change: false,
    };
    let manage = authz::authorize(&admin, authz::Action::ManageKeys).unwrap();
    let usek = authz::authorize(&app, authz::Action::UseKeys).unwrap();
    assert!(
        authz::authorize(&admin, authz::Action::UseKeys).is_err(),
        "admins do not read data"
    );
    assert!(authz::authorize(&app, authz::Action::ManageKeys).is_err());
    let ctx = RequestContext::internal();

    let new = NewKey {
        name: "citizens-2026".into(),
        key_type: KeyType::Sm4Gcm,
        org: Some("civil-affairs".into()),
        convergent: true,
        derived: false,
        deletion_allowed: false,
    };
    let (info, r0) = kms.create(&manage, &ctx, &new).await.unwrap();
    assert_eq!(
        (info.latest_version, info.org.as_str()),
        (1, "civil-affairs")
    );
    assert!(
        kms.create(&manage, &ctx, &new).await.is_err(),
        "names are unique"
    );
    assert!(
        kms.encrypt(&manage, &ctx, "citizens-2026", &[])
            .await
            .is_err()
    );

    let items: Vec<Plain> = (0..50)
        .map(|i| Plain {
            plaintext: zeroize::Zeroizing::new(format!("11010119900307{i:04}").into_bytes()),
            context: b"people.sfzh".to_vec(),
            deterministic: i % 2 == 0,
        })
        .collect();
    let (cts, r1) = kms
        .encrypt(&usek, &ctx, "citizens-2026", &items)
        .await
        .unwrap();
    assert!(r1.seq() > r0.seq());
    let back: Vec<(String, Vec<u8>)> = cts
        .iter()
        .map(|c| (c.clone(), b"people.sfzh".to_vec()))
        .collect();
    let (pts, _) = kms
        .decrypt(&usek, &ctx, "citizens-2026", &back)
        .await
        .unwrap();
    assert_eq!(&pts[7][..], b"110101199003070007");
    let wrong_ctx = vec![(cts[0].clone(), b"people.phone".to_vec())];
    let e = kms
        .decrypt(&usek, &ctx, "citizens-2026", &wrong_ctx)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("items[0]:"), "{e}");

    // Rotate, rewrap, raise the minimum version: old ciphertext refused, rewrapped accepted.
    kms.rotate(&manage, &ctx, "citizens-2026").await.unwrap();
    let (rewrapped, _) = kms
        .rewrap(&usek, &ctx, "citizens-2026", &back[..3])
        .await
        .unwrap();
    assert!(
        rewrapped
            .iter()
            .all(|c| cf_kms::Envelope::from_text(c).unwrap().version == 2)
    );
    kms.configure(
        &manage,
        &ctx,
        "citizens-2026",
        &KeyChange {
            min_decryption_version: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        kms.decrypt(&usek, &ctx, "citizens-2026", &back[..1])
            .await
            .is_err()
    );
    let rw: Vec<_> = rewrapped
        .iter()
        .map(|c| (c.clone(), b"people.sfzh".to_vec()))
        .collect();
    assert_eq!(
        &kms.decrypt(&usek, &ctx, "citizens-2026", &rw)
            .await
            .unwrap()
            .0[1][..],
        b"110101199003070001"
    );

    // BYOK: material encrypted to the platform's SM2 wrapping key.
    let wk = kms.wrapping_key().unwrap();
    let material = [0x5Au8; 32];
    let wrapped = cf_kms::sm2enc::encrypt(&wk, &material, rng.as_ref()).unwrap();
    let byok = NewKey {
        name: "byok-aes".into(),
        key_type: KeyType::Aes256Gcm,
        org: None,
        convergent: false,
        derived: false,
        deletion_allowed: true,
    };
    let (bi, _) = kms.import(&manage, &ctx, &byok, &wrapped).await.unwrap();
    assert!(bi.imported);
    let (c, _) = kms
        .encrypt(
            &usek,
            &ctx,
            "byok-aes",
            &[Plain {
                plaintext: zeroize::Zeroizing::new(b"x".to_vec()),
                context: vec![],
                deterministic: false,
            }],
        )
        .await
        .unwrap();
    let env = cf_kms::Envelope::from_text(&c[0]).unwrap();
    assert_eq!(
        &cf_kms::aead::open(
            cf_kms::Algorithm::Aes256Gcm,
            &material,
            &env.nonce,
            &env.aad(b""),
            &env.body
        )
        .unwrap()[..],
        b"x",
        "imported material is what encrypts"
    );

    // Crypto-shredding: refused until allowed, then every version gone.
    assert!(
        kms.destroy(&manage, &ctx, "citizens-2026", None)
            .await
            .is_err()
    );
    kms.configure(
        &manage,
        &ctx,
        "citizens-2026",
        &KeyChange {
            deletion_allowed: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let before = s.kms_get("citizens-2026").await.unwrap().unwrap().body;
    let wrapped_v1 =
        serde_json::from_str::<serde_json::Value>(&before).unwrap()["versions"][0]["wrapped"]
            .as_str()
            .unwrap()
            .to_string();
    let on_disk = |needle: &[u8]| -> bool {
        db_dir.as_ref().is_some_and(|dir| {
            std::fs::read_dir(dir).unwrap().any(|f| {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
        })
    };
    let needle = wrapped_v1.trim_start_matches("w1:").as_bytes()[..40].to_vec();
    assert_eq!(
        on_disk(&needle),
        db_dir.is_some(),
        "the scan can see stored material"
    );
    let (gone, rd) = kms
        .destroy(&manage, &ctx, "citizens-2026", None)
        .await
        .unwrap();
    assert!(
        gone.versions
            .iter()
            .all(|v| v.state == cf_kms::KeyState::Destroyed)
    );
    let e = kms
        .decrypt(&usek, &ctx, "citizens-2026", &rw)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("destroyed"), "{e}");
    // A second service over the same store and root sees the destruction too.
    let (signer2, clock2, alarms2, metrics2, _b) = ledger_parts();
    let _ = (signer2, alarms2, metrics2);
    let kms2 = Kms::open(
        s.clone(),
        ledger.clone(),
        clock2,
        rng.clone(),
        Arc::new(root_copy),
    )
    .await
    .unwrap();
    assert_eq!(
        kms2.wrapping_key().unwrap(),
        kms.wrapping_key().unwrap(),
        "nodes agree on derived keys"
    );
    assert!(
        kms2.decrypt(&usek, &ctx, "citizens-2026", &rw)
            .await
            .is_err()
    );
    assert_eq!(
        kms2.info(&usek, "byok-aes").await.unwrap().latest_version,
        1
    );

    // The destruction record is in the ledger, privileged, naming the versions.
    let reader = authz::authorize(&Principal::system(), authz::Action::ReadAudit).unwrap();
    let entries = ledger.entries(&reader, rd.seq(), 1).await.unwrap();
    let rec = &entries[0].record;
    assert_eq!(
        (rec.event_type.as_str(), rec.object.as_str(), rec.privileged),
        ("kms.destroy", "key:citizens-2026", true)
    );
    assert_eq!(rec.detail["destroyed_versions"], serde_json::json!([1, 2]));
    // No record holds plaintext or key bytes.
    let all = ledger.entries(&reader, 0, 1000).await.unwrap();
    let text = serde_json::to_string(&all.iter().map(|e| &e.record).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("1101011990030700") && !text.contains(&hex::encode(material)));
    assert!(all.iter().any(|e| e.record.event_type == "kms.decrypt"));

    // secure_delete + WAL truncation: the destroyed version's wrapped bytes are in no file.
    assert!(!on_disk(&needle), "destroyed material remains on disk");
    ledger.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_on_sqlite() {
    let b = sqlite().await;
    let dir = b._dir.as_ref().map(|d| d.path().to_path_buf());
    kms_service(b.store.clone(), dir).await;
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_on_postgres() {
    let Some(b) = postgres().await else { return };
    kms_service(b.store.clone(), None).await;
    b.cleanup().await;
}

async fn documents(s: Arc<SqlStore>) {
    use cf_platform::ports::Document;
    let t = Timestamp::from_unix_secs(1_790_000_000);
    let d = |id: &str, body: &str, revision| Document {
        kind: "export".into(),
        id: id.into(),
        body: body.into(),
        revision,
        updated: t,
    };
    s.doc_insert(&d("b", "{\"n\":1}", 1)).await.unwrap();
    s.doc_insert(&d("a", "{}", 1)).await.unwrap();
    assert!(matches!(
        s.doc_insert(&d("a", "{}", 1)).await,
        Err(StoreError::Conflict(_))
    ));
    s.doc_update(&d("b", "{\"n\":2}", 2)).await.unwrap();
    // A writer that read revision 1 loses: optimistic concurrency.
    assert!(matches!(
        s.doc_update(&d("b", "{\"n\":3}", 2)).await,
        Err(StoreError::Conflict(_))
    ));
    let got = s.doc_get("export", "b").await.unwrap().unwrap();
    assert_eq!((got.body.as_str(), got.revision), ("{\"n\":2}", 2));
    assert!(s.doc_get("dataset", "b").await.unwrap().is_none());
    let ids: Vec<String> = s
        .doc_list("export")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
}
on_both!(document_rows, documents);
