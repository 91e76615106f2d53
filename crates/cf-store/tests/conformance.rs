//! One conformance suite for the `StateStore` port, run against SQLite and PostgreSQL, plus the
//! audit ledger service running on each (AUD-2, AUD-3).

use std::sync::Arc;
use std::time::Duration;

use cf_core::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
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
        org: None,
    };
    s.insert_token(&t).await.unwrap();
    let tenant = TokenRecord {
        id: "99887766aabbccdd".into(),
        org: Some("water".into()),
        must_change: false,
        ..t.clone()
    };
    s.insert_token(&tenant).await.unwrap();
    assert_eq!(s.token(&tenant.id).await.unwrap(), Some(tenant.clone()));
    assert!(matches!(
        s.insert_token(&t).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.token(&t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.token("nope").await.unwrap(), None);
    assert_eq!(s.tokens().await.unwrap(), vec![t.clone(), tenant.clone()]);
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
            org: None,
            assurance: Default::default(),
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
        org: None,
        assurance: Default::default(),
    };
    let app = Principal {
        id: "tok-app".into(),
        roles: vec![authz::Role::Service],
        must_change: false,
        org: None,
        assurance: Default::default(),
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
    // A key owned by an organisation lives under its name, so names never collide across them.
    let name = info.name.clone();
    assert_eq!(name, "civil-affairs.citizens-2026");
    assert!(
        kms.create(&manage, &ctx, &new).await.is_err(),
        "names are unique"
    );
    assert!(kms.encrypt(&manage, &ctx, &name, &[]).await.is_err());

    let items: Vec<Plain> = (0..50)
        .map(|i| Plain {
            plaintext: zeroize::Zeroizing::new(format!("11010119900307{i:04}").into_bytes()),
            context: b"people.sfzh".to_vec(),
            deterministic: i % 2 == 0,
        })
        .collect();
    let (cts, r1) = kms.encrypt(&usek, &ctx, &name, &items).await.unwrap();
    assert!(r1.seq() > r0.seq());
    let back: Vec<(String, Vec<u8>)> = cts
        .iter()
        .map(|c| (c.clone(), b"people.sfzh".to_vec()))
        .collect();
    let (pts, _) = kms.decrypt(&usek, &ctx, &name, &back).await.unwrap();
    assert_eq!(&pts[7][..], b"110101199003070007");
    let wrong_ctx = vec![(cts[0].clone(), b"people.phone".to_vec())];
    let e = kms
        .decrypt(&usek, &ctx, &name, &wrong_ctx)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("items[0]:"), "{e}");

    // Rotate, rewrap, raise the minimum version: old ciphertext refused, rewrapped accepted.
    kms.rotate(&manage, &ctx, &name).await.unwrap();
    let (rewrapped, _) = kms.rewrap(&usek, &ctx, &name, &back[..3]).await.unwrap();
    assert!(
        rewrapped
            .iter()
            .all(|c| cf_kms::Envelope::from_text(c).unwrap().version == 2)
    );
    kms.configure(
        &manage,
        &ctx,
        &name,
        &KeyChange {
            min_decryption_version: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(kms.decrypt(&usek, &ctx, &name, &back[..1]).await.is_err());
    let rw: Vec<_> = rewrapped
        .iter()
        .map(|c| (c.clone(), b"people.sfzh".to_vec()))
        .collect();
    assert_eq!(
        &kms.decrypt(&usek, &ctx, &name, &rw).await.unwrap().0[1][..],
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
    assert!(kms.destroy(&manage, &ctx, &name, None).await.is_err());
    kms.configure(
        &manage,
        &ctx,
        &name,
        &KeyChange {
            deletion_allowed: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let before = s.kms_get(&name).await.unwrap().unwrap().body;
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
    let (gone, rd) = kms.destroy(&manage, &ctx, &name, None).await.unwrap();
    assert!(
        gone.versions
            .iter()
            .all(|v| v.state == cf_kms::KeyState::Destroyed)
    );
    let e = kms.decrypt(&usek, &ctx, &name, &rw).await.unwrap_err();
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
    assert!(kms2.decrypt(&usek, &ctx, &name, &rw).await.is_err());
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
        ("kms.destroy", "key:civil-affairs.citizens-2026", true)
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
    assert!(s.doc_delete("export", "a").await.unwrap());
    assert!(!s.doc_delete("export", "a").await.unwrap(), "already gone");
    assert!(s.doc_get("export", "a").await.unwrap().is_none());
}
on_both!(document_rows, documents);

/// A broker stand-in that records what the device service pushes to it.
#[derive(Debug, Default)]
struct RecordingGateway {
    crls: std::sync::Mutex<Vec<String>>,
    grants: std::sync::Mutex<Vec<cf_platform::ports::TopicGrant>>,
    commands: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl cf_platform::ports::DeviceGateway for RecordingGateway {
    async fn apply(
        &self,
        p: &cf_platform::ports::BrokerPolicy,
    ) -> Result<(), cf_platform::ports::BusError> {
        self.crls.lock().unwrap().push(p.crl_pem.clone());
        self.grants.lock().unwrap().clone_from(&p.grants);
        Ok(())
    }
    async fn command(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), cf_platform::ports::BusError> {
        self.commands.lock().unwrap().push((
            topic.to_string(),
            String::from_utf8_lossy(payload).into_owned(),
        ));
        Ok(())
    }
}

/// The device trust service end to end on each backend (DEV-1, AVL-2, INT-1): registry, import,
/// one-time enrollment, renewal, CRL, signed telemetry with forgery/replay/spoofing alerts,
/// quarantine with every step audited, firmware integrity, and state surviving a restart.
async fn device_service(s: Arc<SqlStore>) {
    use cf_crypto::devkey::{DeviceSigner, KeyAlg};
    use cf_device::firmware::Manifest;
    use cf_device::registry::{DeviceStatus, NewDevice};
    use cf_device::telemetry::{Envelope, Reject, Verdict};
    use cf_platform::devices::{DeviceCa, DeviceConfig, DeviceService};
    use cf_platform::tokens::RequestContext;

    let (signer, lclock, alarms, metrics, bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), lclock, alarms, metrics)
        .await
        .unwrap();
    let t0 = Timestamp::from_unix_secs(1_790_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let ca = cf_pki::new_ca("Test Device CA", t0, 10).unwrap();
    let gw = Arc::new(RecordingGateway::default());
    let open = |s: Arc<SqlStore>, ledger: AuditLedger| {
        let gw = gw.clone();
        let bus = bus.clone();
        let clock = clock.clone();
        let ca = DeviceCa {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        };
        async move {
            DeviceService::open(
                s,
                ledger,
                clock,
                Arc::new(cf_crypto::OsRng),
                bus,
                Some(gw),
                ca,
                DeviceConfig::default(),
            )
            .await
            .unwrap()
        }
    };
    let svc = open(s.clone(), ledger.clone()).await;
    let p = |id: &str, role| Principal {
        id: id.into(),
        roles: vec![role],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let admin = p("tok-admin", authz::Role::Admin);
    let op = p("tok-op", authz::Role::Operator);
    let manage = authz::authorize(&admin, authz::Action::ManageDevices).unwrap();
    let quarantine = authz::authorize(&op, authz::Action::QuarantineDevices).unwrap();
    let read = authz::authorize(
        &p("tok-aud", authz::Role::Auditor),
        authz::Action::ReadDevices,
    )
    .unwrap();
    assert!(authz::authorize(&op, authz::Action::ManageDevices).is_err());
    assert!(authz::authorize(&p("svc", authz::Role::Service), authz::Action::ReadDevices).is_err());
    let ctx = RequestContext::internal();
    let spec = |id: &str, kind: &str| NewDevice {
        id: id.into(),
        kind: kind.into(),
        layer: cf_core::Layer::TerminalPerception,
        district: "haidian".into(),
        lat: 39.96,
        lon: 116.3,
        owner_org: "traffic".into(),
        vendor: "Acme".into(),
        model: "ENV-1".into(),
        firmware: "1.0".into(),
    };

    // Registry: one by one, and a CSV with one good, one bad and one duplicate row.
    svc.register(&manage, &ctx, spec("env-1", "environment-sensor"))
        .await
        .unwrap();
    assert!(matches!(
        svc.register(&manage, &ctx, spec("env-1", "camera")).await,
        Err(cf_platform::PlatformError::Conflict(_))
    ));
    assert!(
        svc.register(&read, &ctx, spec("env-9", "camera"))
            .await
            .is_err(),
        "readers cannot register"
    );
    let csv = "id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\n\
env-2,environment-sensor,terminal,haidian,39.9,116.3,traffic,Acme,ENV-1,1.0\n\
env-3,environment-sensor,orbit,haidian,39.9,116.3,traffic,Acme,ENV-1,1.0\n\
env-1,environment-sensor,terminal,haidian,39.9,116.3,traffic,Acme,ENV-1,1.0\n";
    let rep = svc.import_csv(&manage, &ctx, csv.as_bytes()).await.unwrap();
    assert_eq!(rep.registered, ["env-2"]);
    assert_eq!(rep.errors.len(), 2, "{:?}", rep.errors);
    assert_eq!(
        svc.list(&read, Some("haidian"), None).await.unwrap().len(),
        2
    );

    // Enrollment: one-time token + the device's own CSR; the token cannot be used twice.
    let (tok, _, _) = svc.enrollment_token(&manage, &ctx, "env-1").await.unwrap();
    let k1 = cf_pki::device::device_key(KeyAlg::EcdsaP256, "whatever").unwrap();
    let e1 = svc.enroll(&ctx, &tok, &k1.csr_der).await.unwrap();
    let info = cf_pki::device::verify_issued_by(&e1.cert_pem, &ca.cert_pem, t0).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("env-1"));
    assert!(matches!(
        svc.enroll(&ctx, &tok, &k1.csr_der).await,
        Err(cf_platform::PlatformError::Unauthenticated(_))
    ));
    assert!(svc.enroll(&ctx, "cfe_made-up", &k1.csr_der).await.is_err());
    // Two parallel uses of one token: exactly one certificate.
    let (tok2, _, _) = svc.enrollment_token(&manage, &ctx, "env-2").await.unwrap();
    let k2 = cf_pki::device::device_key(KeyAlg::Ed25519, "env-2").unwrap();
    let (a, b) = tokio::join!(
        svc.enroll(&ctx, &tok2, &k2.csr_der),
        svc.enroll(&ctx, &tok2, &k2.csr_der)
    );
    assert_eq!(
        a.is_ok() as u8 + b.is_ok() as u8,
        1,
        "one token, one certificate"
    );
    assert_eq!(
        svc.get(&read, "env-1").await.unwrap().status,
        DeviceStatus::Active
    );

    // Telemetry signed with the enrolled key is accepted; forgeries, replays and spoofing are not.
    let dev1 = DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &k1.pkcs8).unwrap();
    let now_ms = || clock.now().unix_millis();
    let reading = |seq: u64, t: f64| {
        Envelope::seal(
            &dev1,
            "env-1",
            1,
            seq,
            now_ms(),
            format!(r#"{{"type":"reading","metrics":{{"temperature_c":{t}}}}}"#).as_bytes(),
        )
        .unwrap()
    };
    let topic = "city/haidian/env-1/telemetry";
    let m1 = reading(1, 21.5);
    assert_eq!(
        svc.ingest(&m1, topic, Some("env-1"), Some("10.1.0.7"))
            .await
            .verdict,
        Verdict::Accepted { late: false }
    );
    assert_eq!(
        svc.ingest(&m1, topic, Some("env-1"), Some("10.1.0.7"))
            .await
            .verdict,
        Verdict::Duplicate
    );
    let stranger =
        DeviceSigner::sm2(cf_crypto::Sm2SigningKey::from_seed(&[9; 32]).unwrap()).unwrap();
    let forged = Envelope::seal(&stranger, "env-1", 1, 2, now_ms(), b"{}").unwrap();
    let f = svc.ingest(&forged, topic, None, None).await;
    assert_eq!(f.verdict, Verdict::Rejected(Reject::WrongAlgorithm));
    assert_eq!(f.alerts[0].kind, "telemetry.forged");
    let spoof = svc
        .ingest(&reading(3, 20.0), topic, Some("env-2"), None)
        .await;
    assert_eq!(spoof.alerts[0].kind, "device.identity_mismatch");
    let hot = svc
        .ingest(&reading(4, 500.0), topic, Some("env-1"), None)
        .await;
    assert_eq!(hot.alerts[0].kind, "device.out_of_range");
    clock.advance(Duration::from_secs(3600));
    let replay = svc.ingest(&m1, topic, Some("env-1"), None).await;
    assert_eq!(
        replay.verdict,
        Verdict::Rejected(Reject::Replay { boot: 1, seq: 1 })
    );
    let kinds: Vec<String> = bus
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic.clone())
        .collect();
    for k in [
        "alert.telemetry.forged",
        "alert.device.identity_mismatch",
        "alert.device.out_of_range",
        "alert.telemetry.replay",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "{k} not on the bus: {kinds:?}"
        );
    }

    // Renewal with the current certificate supersedes it; the old serial lands on the CRL.
    let k1b = cf_pki::device::device_key(KeyAlg::EcdsaP256, "env-1").unwrap();
    let e1b = svc.renew(&ctx, &e1.cert_pem, &k1b.csr_der).await.unwrap();
    assert_ne!(e1b.serial, e1.serial);
    assert!(
        svc.renew(&ctx, &e1.cert_pem, &k1b.csr_der).await.is_err(),
        "superseded certificate"
    );
    let crl = svc.crl().await.unwrap();
    assert_eq!(
        cf_pki::device::crl_serials(&crl, &ca.cert_pem).unwrap(),
        vec![e1.serial.clone()]
    );
    // Grants are pushed in the background shortly after enrollment; the renewal's CRL too.
    let mut g = Vec::new();
    for _ in 0..50 {
        g = gw.grants.lock().unwrap().clone();
        let crl_has_old = gw.crls.lock().unwrap().last().is_some_and(|c| {
            cf_pki::device::crl_serials(c, &ca.cert_pem)
                .unwrap()
                .contains(&e1.serial)
        });
        if g.len() == 2 && crl_has_old {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        g.iter().map(|g| g.username.as_str()).collect::<Vec<_>>(),
        ["env-1", "env-2"]
    );
    assert_eq!(
        g[0].write,
        [
            "city/haidian/env-1/telemetry",
            "city/haidian/env-1/events",
            "city/haidian/env-1/log"
        ]
    );
    // The old key no longer verifies; the new one does.
    assert!(matches!(
        svc.ingest(&reading(10, 20.0), topic, Some("env-1"), None)
            .await
            .verdict,
        Verdict::Rejected(Reject::BadSignature)
    ));
    let dev1b = DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &k1b.pkcs8).unwrap();
    let ok = Envelope::seal(
        &dev1b,
        "env-1",
        1,
        11,
        now_ms(),
        br#"{"type":"reading","metrics":{}}"#,
    )
    .unwrap();
    assert!(matches!(
        svc.ingest(&ok, topic, Some("env-1"), None).await.verdict,
        Verdict::Accepted { .. }
    ));

    // Replay state survives a restart of the service once saved.
    svc.tick().await.unwrap();
    let svc2 = open(s.clone(), ledger.clone()).await;
    assert_eq!(
        svc2.ingest(&ok, topic, Some("env-1"), None).await.verdict,
        Verdict::Duplicate
    );

    // Quarantine: audited, certificate revoked, CRL pushed, command published, ingest blocked.
    let before = ledger.size();
    let q = svc2
        .quarantine(&quarantine, &ctx, "env-1", "operator: suspected clone")
        .await
        .unwrap();
    assert!(q.certificate_revoked && q.crl_pushed && q.command_sent && q.ingest_blocked);
    assert!(
        ledger.size() >= before + 2,
        "decision and effects are both in the ledger"
    );
    let (ctopic, cbody) = gw.commands.lock().unwrap().last().cloned().unwrap();
    assert_eq!(ctopic, "city/haidian/env-1/control");
    assert!(cbody.contains("quarantine"));
    let g = gw.grants.lock().unwrap().clone();
    assert!(
        g[0].write.is_empty() && g[0].read == ["city/haidian/env-1/control"],
        "a quarantined device keeps only its control topic"
    );
    let crl = svc2.crl().await.unwrap();
    assert!(
        cf_pki::device::crl_serials(&crl, &ca.cert_pem)
            .unwrap()
            .contains(&e1b.serial)
    );
    let ok2 = Envelope::seal(&dev1b, "env-1", 1, 12, now_ms(), b"{}").unwrap();
    assert_eq!(
        svc2.ingest(&ok2, topic, Some("env-1"), None).await.verdict,
        Verdict::Rejected(Reject::UnknownDevice)
    );
    assert!(
        svc2.enrollment_token(&manage, &ctx, "env-1").await.is_err(),
        "quarantined devices cannot re-enroll"
    );
    svc2.release(&quarantine, &ctx, "env-1").await.unwrap();
    assert_eq!(
        svc2.get(&read, "env-1").await.unwrap().status,
        DeviceStatus::Registered
    );

    // Firmware: a vendor-signed release passes; anything else alerts and quarantines.
    let vendor =
        DeviceSigner::sm2(cf_crypto::Sm2SigningKey::from_seed(&[11; 32]).unwrap()).unwrap();
    svc2.trust_vendor(
        &manage,
        &ctx,
        "Acme",
        KeyAlg::Sm2,
        &hex::encode(vendor.public().raw()),
    )
    .await
    .unwrap();
    let good = hex::encode(cf_crypto::sha256(b"acme env-1 firmware 1.0"));
    let m = Manifest {
        vendor: "Acme".into(),
        model: "ENV-1".into(),
        version: "1.0".into(),
        sha256: good.clone(),
    }
    .sign(&vendor)
    .unwrap();
    svc2.add_firmware(&manage, &ctx, m.clone()).await.unwrap();
    let mut forged_m = m.clone();
    forged_m.manifest.sha256 = hex::encode(cf_crypto::sha256(b"evil"));
    assert!(svc2.add_firmware(&manage, &ctx, forged_m).await.is_err());
    let (tok3, _, _) = svc2.enrollment_token(&manage, &ctx, "env-1").await.unwrap();
    let k1c = cf_pki::device::device_key(KeyAlg::Ed25519, "env-1").unwrap();
    svc2.enroll(&ctx, &tok3, &k1c.csr_der).await.unwrap();
    let dev1c = DeviceSigner::from_pkcs8(KeyAlg::Ed25519, &k1c.pkcs8).unwrap();
    let hello = |seq, sha: &str| {
        Envelope::seal(
            &dev1c,
            "env-1",
            2,
            seq,
            clock.now().unix_millis(),
            format!(r#"{{"type":"hello","firmware_sha256":"{sha}"}}"#).as_bytes(),
        )
        .unwrap()
    };
    let h = svc2
        .ingest(&hello(1, &good), topic, Some("env-1"), None)
        .await;
    assert!(h.alerts.is_empty(), "{:?}", h.alerts);
    let bad = svc2
        .ingest(&hello(2, &"ab".repeat(32)), topic, Some("env-1"), None)
        .await;
    assert_eq!(bad.alerts[0].kind, "device.firmware_mismatch");
    let d = svc2.get(&read, "env-1").await.unwrap();
    assert_eq!(
        d.status,
        DeviceStatus::Quarantined,
        "policy quarantines unapproved firmware"
    );
    assert_eq!(
        d.reported_firmware.as_deref(),
        Some("ab".repeat(32).as_str())
    );

    // Every step is in the ledger, and no key material is.
    let entries = s.ledger_entries(0, 10_000).await.unwrap();
    let all: String = entries.iter().map(|e| e.body.as_str()).collect();
    for ev in [
        "device.register",
        "device.enrollment_token",
        "device.enroll",
        "device.renew",
        "device.quarantine",
        "device.quarantine.applied",
        "device.release",
        "device.vendor_key",
        "device.firmware_manifest",
    ] {
        assert!(all.contains(&format!("\"{ev}\"")), "{ev} not audited");
    }
    assert!(!all.contains(&tok3), "enrollment tokens are never recorded");
    assert!(!all.contains("PRIVATE KEY"));
    ledger.shutdown().await;
}
on_both!(device_rows, device_service);

/// A new operator account for the identity tests.
fn operator(
    username: &str,
    display: &str,
    domain: &str,
    org: &str,
) -> cf_platform::identity::NewUser {
    cf_platform::identity::NewUser {
        username: username.into(),
        display_name: display.into(),
        domain: domain.into(),
        org: org.into(),
        roles: vec!["operator".into()],
        valid_until: None,
        department: None,
        post: None,
    }
}

/// An identity service on `s` (one "node"), with hashes cheap enough for tests.
fn identity_node(
    s: &Arc<SqlStore>,
    ledger: &AuditLedger,
    clock: &SharedClock,
) -> cf_platform::identity::IdentityService {
    cf_platform::identity::IdentityService::new(
        s.clone(),
        ledger.clone(),
        clock.clone(),
        Arc::new(cf_crypto::OsRng),
        cf_identity::password::Costs {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        [7; 32],
        None,
    )
    .unwrap()
}

/// Accounts and sessions on each backend (IDM-1, AUZ-3): sessions are stored, so another service
/// instance (another node, or the same after a restart) accepts them, and ending one ends it
/// everywhere.
async fn identity_service(s: Arc<SqlStore>) {
    use cf_platform::tokens::RequestContext;
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let node = || identity_node(&s, &ledger, &clock);
    let (a, b) = (node(), node());
    let admin = Principal {
        id: "tok-admin".into(),
        roles: vec![authz::Role::Admin],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let manage = authz::authorize(&admin, authz::Action::ManageUsers).unwrap();
    let ctx = RequestContext::internal();
    let (_, initial, _) = a
        .create_user(
            &manage,
            &ctx,
            operator("zhao.lei", "Zhao Lei", "enterprise", "water"),
        )
        .await
        .unwrap();
    let ok = a
        .login(&ctx, "zhao.lei", initial.expose(), None, "cli")
        .await
        .unwrap();
    assert!(ok.must_change);
    let p = b.authenticate(&ok.session, None).await.unwrap();
    assert_eq!((p.id.as_str(), p.must_change), ("user:zhao.lei", true));
    let listed = b.sessions(&manage).await.unwrap();
    assert_eq!(listed.len(), 1);
    b.end_session(&manage, &ctx, &listed[0].handle)
        .await
        .unwrap();
    assert!(
        a.authenticate(&ok.session, None).await.is_err(),
        "ended on one node, ended on all"
    );
    assert!(
        a.login(&ctx, "zhao.lei", "wrong", None, "cli")
            .await
            .is_err()
    );
    ledger.shutdown().await;
}
on_both!(identity_rows, identity_service);

/// The login throttle in the shared store (PWD-3): 64 parallel wrong guesses spread over two
/// nodes are checked no more often than the policy allows on one, and a node started afterwards
/// (a restart) still refuses.
async fn identity_throttle(s: Arc<SqlStore>) {
    use cf_platform::tokens::RequestContext;
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let node = || identity_node(&s, &ledger, &clock);
    let (a, b) = (node(), node());
    let admin = Principal {
        id: "tok-admin".into(),
        roles: vec![authz::Role::Admin],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let manage = authz::authorize(&admin, authz::Action::ManageUsers).unwrap();
    a.create_user(
        &manage,
        &RequestContext::internal(),
        operator("kong.yu", "Kong Yu", "government", "tax"),
    )
    .await
    .unwrap();
    let ctx = RequestContext {
        source_addr: "203.0.113.77".into(),
        request_id: "r".into(),
    };
    let mut tasks = Vec::new();
    for i in 0..64 {
        let n = if i % 2 == 0 { a.clone() } else { b.clone() };
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            n.login(&ctx, "kong.yu", &format!("guess-{i}"), None, "x")
                .await
                .unwrap_err()
        }));
    }
    let mut checked = 0;
    let mut throttled = 0;
    for t in tasks {
        match t.await.unwrap() {
            cf_platform::PlatformError::Unauthenticated(_) => checked += 1,
            cf_platform::PlatformError::RateLimited(_) => throttled += 1,
            // A contended throttle asks the client to come back: never a checked guess.
            cf_platform::PlatformError::Unavailable(_) => throttled += 1,
            other => panic!("{other}"),
        }
    }
    assert!(
        (1..=5).contains(&checked),
        "{checked} guesses checked across two nodes ({throttled} refused)"
    );
    // A third node, one guess at a time: contended guesses above may have been turned away
    // before they were charged, so the limit may still have room, but never more than the
    // policy's few checked guesses in all before the refusal.
    let c = node();
    let mut refused = false;
    for _ in 0..6 {
        match c.login(&ctx, "kong.yu", "another", None, "x").await {
            Err(cf_platform::PlatformError::Unauthenticated(_)) => checked += 1,
            Err(cf_platform::PlatformError::RateLimited(_)) => {
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused, "a third node kept checking guesses");
    assert!(checked <= 5, "{checked} guesses checked in all");
    ledger.shutdown().await;
}
on_both!(identity_throttle_rows, identity_throttle);

/// Places for the login risk test.
#[derive(Debug)]
struct TableGeo;

impl cf_platform::ports::GeoLookup for TableGeo {
    fn locate(&self, ip: &str) -> Option<cf_platform::ports::GeoPoint> {
        let (country, coords) = if ip.starts_with("10.20.") {
            ("CN", (39.90, 116.40))
        } else if ip.starts_with("203.0.113.") {
            ("US", (40.71, -74.01))
        } else if ip.starts_with("198.51.100.") {
            ("JP", (35.68, 139.69))
        } else {
            return None;
        };
        Some(cf_platform::ports::GeoPoint {
            country: Some(country.into()),
            coords: Some(coords),
        })
    }
}

/// The login risk engine on each backend (AUZ-2, AUZ-5, AUZ-7): the profile is kept with the
/// account, impossible travel is refused, a risky sign-in without a second factor is refused,
/// the usual one still works, and every decision is audited with its reasons.
async fn identity_risk(s: Arc<SqlStore>) {
    use cf_platform::tokens::RequestContext;
    let (signer, _, alarms, metrics, _bus) = ledger_parts();
    let start = Timestamp::parse_rfc3339("2026-11-02T01:00:00Z").unwrap();
    let manual = Arc::new(ManualClock::new(start));
    let clock: SharedClock = manual.clone();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let id = identity_node(&s, &ledger, &clock);
    id.set_geo(Arc::new(TableGeo));
    let admin = Principal {
        id: "tok-admin".into(),
        roles: vec![authz::Role::Admin],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let manage = authz::authorize(&admin, authz::Action::ManageUsers).unwrap();
    let (_, pw, _) = id
        .create_user(
            &manage,
            &RequestContext::internal(),
            operator("sun.li", "Sun Li", "government", "city"),
        )
        .await
        .unwrap();
    let from = |ip: &str| RequestContext {
        source_addr: ip.into(),
        request_id: "r".into(),
    };
    // A week of ordinary mornings in the Beijing office.
    for _ in 0..7 {
        id.login(
            &from("10.20.30.40"),
            "sun.li",
            pw.expose(),
            None,
            "Firefox/140",
        )
        .await
        .unwrap();
        manual.advance(Duration::from_secs(86_400));
    }
    // An hour later, New York with a script: impossible travel, refused.
    id.login(
        &from("10.20.30.41"),
        "sun.li",
        pw.expose(),
        None,
        "Firefox/140",
    )
    .await
    .unwrap();
    manual.advance(Duration::from_secs(3600));
    let err = id
        .login(
            &from("203.0.113.8"),
            "sun.li",
            pw.expose(),
            None,
            "curl/8.5",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sign-in refused"), "{err}");
    // Two days on, Tokyo on a new laptop: not impossible, but new device, network and country
    // need a second factor, which this account does not have.
    manual.advance(Duration::from_secs(2 * 86_400));
    let err = id
        .login(
            &from("198.51.100.7"),
            "sun.li",
            pw.expose(),
            None,
            "Edge/141",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("second factor"), "{err}");
    // The usual place and client still get in.
    let ok = id
        .login(
            &from("10.20.30.40"),
            "sun.li",
            pw.expose(),
            None,
            "Firefox/140",
        )
        .await
        .unwrap();
    // Each request of that session is scored too: from its own address it is ordinary; a
    // minute later from New York (the session stolen) it keeps only the person's own account.
    let p = id
        .authenticate(&ok.session, Some("10.20.30.40"))
        .await
        .unwrap();
    assert_eq!(p.assurance, authz::Assurance::Normal);
    // (The initial password is replaced first, so that only the risk engine refuses below.)
    let own = authz::authorize(&p, authz::Action::OwnAccount).unwrap();
    id.change_password(
        &own,
        &from("10.20.30.40"),
        pw.expose(),
        "Dong-zhi-men-88-wai!",
    )
    .await
    .unwrap();
    let p = id
        .authenticate(&ok.session, Some("10.20.30.40"))
        .await
        .unwrap();
    assert!(authz::authorize(&p, authz::Action::ReadAlerts).is_ok());
    manual.advance(Duration::from_secs(60));
    let p = id
        .authenticate(&ok.session, Some("203.0.113.9"))
        .await
        .unwrap();
    assert_eq!(p.assurance, authz::Assurance::Denied);
    assert!(authz::authorize(&p, authz::Action::OwnAccount).is_ok());
    let refused = authz::authorize(&p, authz::Action::ReadAlerts).unwrap_err();
    assert!(refused.to_string().contains("sign in again"), "{refused}");
    // Every decision is in the ledger with its reasons.
    let entries = s.ledger_entries(0, 10_000).await.unwrap();
    let logins: Vec<serde_json::Value> = entries
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.body).ok())
        .map(|v| {
            if v["record"].is_object() {
                v["record"].clone()
            } else {
                v
            }
        })
        .filter(|r| r["event_type"] == "auth.login")
        .collect();
    assert_eq!(logins.len(), 11, "{logins:?}");
    let denied: Vec<&serde_json::Value> =
        logins.iter().filter(|r| r["result"] == "denied").collect();
    assert_eq!(denied.len(), 2);
    let factors = |r: &serde_json::Value| -> Vec<String> {
        r["detail"]["risk"]["factors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(factors(denied[0]).contains(&"impossible_travel".to_string()));
    assert_eq!(denied[0]["detail"]["risk"]["decision"], "deny");
    assert_eq!(
        factors(denied[1]),
        ["new_device", "new_network", "new_country"]
    );
    assert_eq!(denied[1]["detail"]["risk"]["decision"], "step_up");
    assert_eq!(logins.last().unwrap()["detail"]["risk"]["score"], 0);
    ledger.shutdown().await;
}
on_both!(identity_risk_rows, identity_risk);

/// The alert book counts each alert event once, whoever delivers it twice (a bus redelivery
/// after a crash, a retroactive hunt run again), on both backends.
async fn alert_book(s: Arc<SqlStore>) {
    use cf_platform::alerts::AlertBook;
    let (signer, clock, alarms, metrics, _bus) = ledger_parts();
    let ledger = AuditLedger::open(s.clone(), signer, cfg(), clock.clone(), alarms, metrics)
        .await
        .unwrap();
    let book = AlertBook::new(s.clone(), ledger.clone(), clock.clone());
    let src = "203.0.113.77".to_string();
    let ev = |id: &str| cf_event::Event {
        id: format!("{src}-{id}"),
        topic: "alert.auth.brute_force".into(),
        time: cf_core::Timestamp::from_unix_secs(1_800_000_000),
        source: "chengfang/detect".into(),
        severity: cf_event::Severity::Medium,
        payload: serde_json::json!({"key": src, "failures": 20}),
    };
    for id in ["a", "b", "a", "c", "b"] {
        book.record(&ev(id)).await.unwrap();
    }
    let admin = cf_platform::authz::Principal {
        id: "tok-admin".into(),
        roles: vec![cf_platform::authz::Role::Operator],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let read =
        cf_platform::authz::authorize(&admin, cf_platform::authz::Action::ReadAlerts).unwrap();
    let all = book.list(&read, None).await.unwrap();
    let mine: Vec<_> = all
        .iter()
        .filter(|a| a.entity == format!("key:{src}"))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0].count, 3,
        "three distinct events, two of them delivered twice"
    );
    ledger.shutdown().await;
}
on_both!(alert_rows, alert_book);
