//! The archive end to end (SA-1, AUD-1): real sshd syslog lines go through the log intake onto the
//! bus, the archive stores them, operators and auditors search them (each search audited),
//! administrators may not, and retention removes old days with an audit record first.

use std::sync::Arc;
use std::time::Duration;

use cf_core::{ManualClock, SharedClock, Timestamp};
use cf_evstore::TantivyEventStore;
use cf_platform::alarm::Alarms;
use cf_platform::archive::EventArchive;
use cf_platform::logs::LogIntake;
use cf_platform::ports::{EventQuery, EventStore};
use cf_platform::tokens::RequestContext;
use cf_platform::{Action, AuditLedger, LedgerConfig, Metrics, Principal, Role, authz};

async fn ledger(
    dir: &std::path::Path,
    clock: SharedClock,
    bus: Arc<dyn cf_platform::ports::EventBus>,
) -> AuditLedger {
    let url = format!("sqlite://{}", dir.join("state.db").display());
    let store = Arc::new(cf_store::SqlStore::connect(&url, None).await.unwrap());
    let metrics = Arc::new(Metrics::default());
    let alarms = Alarms::new(bus, clock.clone(), metrics.clone(), "t");
    let signer = cf_ledger::NoteSigner::new(
        "t.city/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[7; 32]),
    )
    .unwrap();
    AuditLedger::open(
        store,
        signer,
        LedgerConfig {
            origin: "t.city/audit".into(),
            ..LedgerConfig::default()
        },
        clock,
        alarms,
        metrics,
    )
    .await
    .unwrap()
}

/// Run `archive` on `bus` until the returned sender says stop; its subscriptions are in place
/// when this returns.
async fn start(
    archive: &EventArchive,
    bus: &Arc<dyn cf_platform::ports::EventBus>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(archive.clone().run(bus.clone(), stop));
    tokio::time::sleep(Duration::from_millis(100)).await;
    (stop_tx, task)
}

/// Syslog lines through the intake as one batch from `peer`; the number received.
async fn send_syslog(intake: &LogIntake, body: &str, peer: &str) -> u64 {
    intake
        .batch(
            body.as_bytes(),
            cf_platform::logs::LineFormat::Syslog,
            peer,
            "udp",
        )
        .await
        .unwrap()
        .received
}

/// What the archive has stored once it reached `want` (or after 10 s).
async fn stored_at_least(archive: &EventArchive, want: u64) -> u64 {
    let mut stored = 0;
    for _ in 0..200 {
        stored = archive
            .counters()
            .stored
            .load(std::sync::atomic::Ordering::Relaxed);
        if stored >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stored
}

fn who(role: Role) -> Principal {
    Principal {
        id: format!("user:{}", role.as_str()),
        roles: vec![role],
        must_change: false,
        org: None,
        assurance: Default::default(),
    }
}

#[tokio::test]
async fn syslog_to_search_with_audit_and_retention() {
    let Some(data) = cf_testkit::datasets() else {
        return;
    };
    let text = std::fs::read_to_string(data.join("soc/logs/auth_linux_sshd/auth.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tmp = tempfile::tempdir().unwrap();
    // 2026-11-25T12:00Z; the syslog lines carry no year and are dated in the current year.
    let manual = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_795_608_000)));
    let clock: SharedClock = manual.clone();
    let bus = cf_bus::connect("memory://", None).await.unwrap();
    let ledger = ledger(tmp.path(), clock.clone(), bus.clone()).await;
    let store = Arc::new(TantivyEventStore::open(&tmp.path().join("events")).unwrap());
    let archive = EventArchive::new(store.clone(), ledger.clone(), clock.clone(), 180);
    let (stop_tx, task) = start(&archive, &bus).await;

    let intake = LogIntake::new(bus.clone(), clock.clone(), "t", Arc::default());
    let want = send_syslog(&intake, &lines.join("\n"), "10.77.20.248").await;
    assert_eq!(want, lines.len() as u64);
    // Everything published is archived (alerts from the brute-force detector as well).
    let mut stored = stored_at_least(&archive, want).await;
    assert!(stored >= want, "{stored} of {want} archived");
    // Then the alerts raised on the way (published after their lines) settle too.
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = archive
            .counters()
            .stored
            .load(std::sync::atomic::Ordering::Relaxed);
        if now == stored {
            break;
        }
        stored = now;
    }

    let ctx = RequestContext::internal();
    let op = authz::authorize(&who(Role::Operator), Action::SearchEvents).unwrap();
    let all_year = EventQuery {
        text: String::new(),
        from: Timestamp::from_unix_secs(1_767_225_600), // 2026-01-01
        to: Timestamp::from_unix_secs(1_798_761_600),   // 2027-01-01
        limit: 20,
    };
    let q = |text: &str| EventQuery {
        text: text.into(),
        ..all_year.clone()
    };
    let before = ledger.size();
    let page = archive
        .search(&op, &ctx, &q("\"failed password\" AND topic:log.syslog"))
        .await
        .unwrap();
    assert_eq!(
        page.matched,
        lines
            .iter()
            .filter(|l| l.contains("Failed password"))
            .count() as u64
    );
    assert_eq!(ledger.size(), before + 1, "the search was audited");
    // The syslog fields were lifted out: the sender's host name is a field.
    let page = archive
        .search(&op, &ctx, &q("host:ip-10-77-20-248 AND sudo"))
        .await
        .unwrap();
    assert!(page.matched > 0);
    // Brute-force alerts raised by the intake were archived as detection findings.
    let alerts = archive
        .search(&op, &ctx, &q("class_uid:2004"))
        .await
        .unwrap();
    assert!(alerts.matched > 0, "the sshd brute force raised alerts");
    assert!(alerts.events.iter().all(|e| e.topic.starts_with("alert.")));
    // Auditors may search; administrators and services may not.
    let aud = authz::authorize(&who(Role::Auditor), Action::SearchEvents).unwrap();
    assert!(
        archive
            .partitions(&aud)
            .await
            .unwrap()
            .iter()
            .map(|p| p.events)
            .sum::<u64>()
            >= want
    );
    for r in [Role::Admin, Role::Service] {
        assert!(
            authz::authorize(&who(r), Action::SearchEvents).is_err(),
            "{r:?}"
        );
    }
    let wrong = authz::authorize(&who(Role::Operator), Action::ReadAlerts).unwrap();
    assert!(archive.search(&wrong, &ctx, &q("x")).await.is_err());
    // Bad queries are refused with the reason.
    let e = archive.search(&op, &ctx, &q("host:(")).await.unwrap_err();
    assert!(e.to_string().contains("query"), "{e}");

    // A year later, retention (180 days) removes every partition, each audited first.
    let days = store.partitions().await.unwrap().len();
    assert!(days >= 1);
    manual.advance(Duration::from_secs(400 * 86_400));
    let size = ledger.size();
    let removed = archive.apply_retention().await.unwrap();
    assert_eq!(removed.len(), days);
    assert_eq!(ledger.size(), size + days as u64);
    assert!(store.partitions().await.unwrap().is_empty());
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_failed_commit_hands_its_batches_back_and_nothing_is_stored_twice() {
    use std::sync::atomic::Ordering::SeqCst;
    let tmp = tempfile::tempdir().unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_795_608_000)));
    let bus = cf_bus::connect("memory://", None).await.unwrap();
    let ledger = ledger(tmp.path(), clock.clone(), bus.clone()).await;
    let store = Arc::new(TantivyEventStore::open(&tmp.path().join("events")).unwrap());
    // The first two commits fail as a full disk would: what they had staged is rolled back.
    store.fail_next_commits(2);
    let archive = EventArchive::new(store.clone(), ledger, clock.clone(), 180);
    let (stop_tx, task) = start(&archive, &bus).await;
    let intake = LogIntake::new(bus.clone(), clock, "t", Arc::default());
    let n = 3_000u64;
    let body: String = (0..n)
        .map(|i| {
            format!("<13>1 2026-11-25T10:00:00Z gw-1 app {i} - - event number {i} of the test\n")
        })
        .collect();
    assert_eq!(send_syslog(&intake, &body, "10.0.0.9").await, n);
    let stored = stored_at_least(&archive, n).await;
    // Two commits failed (their events went back to the bus, and the archive waited a second
    // after each); a later one stored everything, once — the archive counts only committed
    // events.
    assert_eq!(stored, n);
    assert_eq!(archive.counters().failed_batches.load(SeqCst), 2);
    let page = store
        .search(&EventQuery {
            text: "\"of the test\"".into(),
            from: Timestamp::from_unix_secs(1_795_564_800),
            to: Timestamp::from_unix_secs(1_795_651_200),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(page.matched, n);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}
