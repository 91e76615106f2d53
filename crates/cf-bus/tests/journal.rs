//! The journal bus keeps what it acknowledged (AUD-1, SA-1): events not yet acknowledged by a
//! group come again after a crash or a restart, acknowledged ones do not pile up, and a group
//! that stops reading neither blocks publishers nor holds events in memory.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cf_core::Timestamp;
use cf_event::{Event, Severity};
use cf_platform::ports::{Delivery, EventBus, Subscription};

fn event(topic: &str, n: u32) -> Event {
    Event {
        id: format!("evt-{n}"),
        topic: topic.to_string(),
        time: Timestamp::from_unix_secs(1_700_000_000 + i64::from(n)),
        source: "journal-test".into(),
        severity: Severity::Info,
        payload: serde_json::json!({ "n": n, "pad": "x".repeat(200) }),
    }
}

async fn next(sub: &mut Subscription) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(10), sub.rx.recv())
        .await
        .ok()
        .flatten()
}

fn n_of(d: &Delivery) -> u32 {
    d.event.payload["n"].as_u64().unwrap() as u32
}

/// What a crash leaves on disk: the database and its write-ahead log as they are this instant.
fn snapshot(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let src = format!("{}{suffix}", from.display());
        if Path::new(&src).exists() {
            std::fs::copy(&src, format!("{}{suffix}", to.display())).unwrap();
        }
    }
}

async fn rows(path: &Path) -> i64 {
    use sqlx::{ConnectOptions, Row};
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query("SELECT COUNT(*) FROM bus_events")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_redelivers_every_event_not_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let bus = cf_bus::JournalBus::open(&path).await.unwrap();
    let mut archive = bus.subscribe("log.>", "archive").await.unwrap();
    let mut alerts = bus.subscribe("alert.>", "alert-book").await.unwrap();
    let batch: Vec<Event> = (0..100).map(|n| event("log.json", n)).collect();
    bus.publish_batch(&batch).await.unwrap();
    bus.publish(&event("alert.dns.tunnel", 100)).await.unwrap();
    // The archive finishes the first 60; the alert book has not answered yet.
    for _ in 0..60 {
        next(&mut archive).await.unwrap().ack().await.unwrap();
    }
    let held = next(&mut alerts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let crashed = dir.path().join("crashed.db");
    snapshot(&path, &crashed);
    drop(held);

    let bus = cf_bus::JournalBus::open(&crashed).await.unwrap();
    let mut archive = bus.subscribe("log.>", "archive").await.unwrap();
    let mut got = BTreeSet::new();
    while got.len() < 40 {
        let d = next(&mut archive).await.expect("redelivered");
        assert_eq!(d.attempt, 2, "a redelivery says so");
        got.insert(n_of(&d));
        d.ack().await.unwrap();
    }
    assert_eq!(got, (60..100).collect::<BTreeSet<u32>>());
    assert!(
        tokio::time::timeout(Duration::from_millis(400), archive.rx.recv())
            .await
            .is_err(),
        "events saved as acknowledged before the crash are not delivered again"
    );
    let mut alerts = bus.subscribe("alert.>", "alert-book").await.unwrap();
    assert_eq!(n_of(&next(&mut alerts).await.unwrap()), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_are_deleted_and_new_groups_start_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    {
        let bus = cf_bus::JournalBus::open(&path).await.unwrap();
        let mut g = bus.subscribe("log.>", "archive").await.unwrap();
        let batch: Vec<Event> = (0..500).map(|n| event("log.json", n)).collect();
        bus.publish_batch(&batch).await.unwrap();
        for _ in 0..500 {
            next(&mut g).await.unwrap().ack().await.unwrap();
        }
        // An event no group wants is not kept either.
        bus.publish(&event("city.weather", 9)).await.unwrap();
    }
    // Dropping the last handle saves the watermarks; the next start deletes what all acked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bus = cf_bus::JournalBus::open(&path).await.unwrap();
    let mut g = bus.subscribe("log.>", "archive").await.unwrap();
    let mut late = bus.subscribe("log.>", "late-joiner").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rows(&path).await, 0, "nothing left to deliver");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), g.rx.recv())
            .await
            .is_err()
    );
    bus.publish(&event("log.json", 1_000)).await.unwrap();
    assert_eq!(
        n_of(&next(&mut late).await.unwrap()),
        1_000,
        "a new group starts at the end"
    );
    assert_eq!(n_of(&next(&mut g).await.unwrap()), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_stops_reading_blocks_nobody_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(
        cf_bus::JournalBus::open(&dir.path().join("bus.db"))
            .await
            .unwrap(),
    );
    let mut slow = bus.subscribe("log.>", "slow").await.unwrap();
    let mut fast = bus.subscribe("log.>", "fast").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut n = 0u32;
        while n < 30_000 {
            let d = next(&mut fast).await.expect("fast group keeps up");
            assert_eq!(n_of(&d), n, "in order");
            d.ack().await.unwrap();
            n += 1;
        }
    });
    // Far more than the in-memory group queue: publishing must finish while `slow` reads nothing.
    let publish = async {
        for chunk in (0..30_000u32).collect::<Vec<_>>().chunks(500) {
            let b: Vec<Event> = chunk.iter().map(|n| event("log.json", *n)).collect();
            bus.publish_batch(&b).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), publish)
        .await
        .expect("publishers are not held up by a group that does not read");
    reader.await.unwrap();
    let mut got = Vec::with_capacity(30_000);
    while got.len() < 30_000 {
        let d = next(&mut slow)
            .await
            .expect("the slow group is fed from the journal");
        got.push(n_of(&d));
        d.ack().await.unwrap();
    }
    let unique: BTreeSet<u32> = got.iter().copied().collect();
    assert_eq!(unique.len(), 30_000, "every event, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_journal_urls_and_paths_are_refused_with_the_reason() {
    let e = cf_bus::connect("journal://", None).await.unwrap_err();
    assert!(e.to_string().contains("file path"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let e = cf_bus::JournalBus::open(&dir.path().join("file/bus.db"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("file/bus.db") || e.to_string().contains("cannot create"),
        "{e}"
    );
}
