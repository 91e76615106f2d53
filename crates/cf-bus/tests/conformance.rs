//! One conformance suite for the `EventBus` port, run on the SQLite journal (embedded default),
//! in memory and on NATS JetStream:
//! fan-out across groups, work sharing inside a group, redelivery on nack, idempotent consumers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cf_core::Timestamp;
use cf_event::{Event, Severity};
use cf_platform::ports::{EventBus, SeenIds, Subscription};

fn event(topic: &str, n: u32) -> Event {
    Event {
        id: format!("evt-{topic}-{n}"),
        topic: topic.to_string(),
        time: Timestamp::from_unix_secs(1_700_000_000 + i64::from(n)),
        source: "conformance".into(),
        severity: Severity::Info,
        payload: serde_json::json!({ "n": n }),
    }
}

async fn next(sub: &mut Subscription) -> Option<cf_platform::ports::Delivery> {
    tokio::time::timeout(Duration::from_secs(10), sub.rx.recv())
        .await
        .ok()
        .flatten()
}

async fn memory() -> (Arc<dyn EventBus>, Option<cf_bus::NatsBus>) {
    (Arc::new(cf_bus::MemoryBus::new()), None)
}

async fn journal() -> (Arc<dyn EventBus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let bus = cf_bus::JournalBus::open(&dir.path().join("bus.db"))
        .await
        .expect("open journal");
    (Arc::new(bus), dir)
}

async fn nats() -> Option<(Arc<dyn EventBus>, Option<cf_bus::NatsBus>)> {
    let url = cf_testkit::service_url(
        "CHENGFANG_TEST_NATS",
        "nats://127.0.0.1:4222",
        cf_testkit::tcp_open("127.0.0.1:4222"),
    )?;
    let stream = format!(
        "T{}",
        hex::encode(cf_crypto::random_bytes(&cf_crypto::OsRng, 5).unwrap())
    );
    let bus = cf_bus::NatsBus::connect(&url, &stream)
        .await
        .expect("nats connect");
    Some((Arc::new(bus.clone()), Some(bus)))
}

macro_rules! on_both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let (b, _) = super::memory().await;
                super::$body(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn journal() {
                let (b, _dir) = super::journal().await;
                super::$body(b).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                let Some((b, n)) = super::nats().await else {
                    return;
                };
                super::$body(b).await;
                if let Some(n) = n {
                    n.delete_stream().await.expect("delete stream");
                }
            }
        }
    };
}

async fn fan_out_to_every_group(bus: Arc<dyn EventBus>) {
    let mut a = bus.subscribe("alarm.>", "group-a").await.unwrap();
    let mut b = bus.subscribe("alarm.audit.*", "group-b").await.unwrap();
    let mut other = bus.subscribe("city.>", "group-c").await.unwrap();
    bus.publish(&event("alarm.audit.write_failed", 1))
        .await
        .unwrap();
    bus.publish(&event("alarm.device.silent", 2)).await.unwrap();
    let d = next(&mut a).await.expect("a gets 1");
    assert_eq!(d.event, event("alarm.audit.write_failed", 1));
    d.ack().await.unwrap();
    next(&mut a).await.expect("a gets 2").ack().await.unwrap();
    let d = next(&mut b).await.expect("b gets 1");
    assert_eq!(d.event.id, "evt-alarm.audit.write_failed-1");
    d.ack().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b.rx.recv())
            .await
            .is_err(),
        "b must not get alarm.device.*"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.rx.recv())
            .await
            .is_err(),
        "c matches nothing"
    );
}
on_both!(fan_out, fan_out_to_every_group);

async fn group_members_share_work(bus: Arc<dyn EventBus>) {
    let mut m1 = bus.subscribe("work.>", "workers").await.unwrap();
    let mut m2 = bus.subscribe("work.>", "workers").await.unwrap();
    for n in 0..40 {
        bus.publish(&event("work.item", n)).await.unwrap();
    }
    let mut seen = Vec::new();
    let (mut c1, mut c2) = (0, 0);
    while seen.len() < 40 {
        tokio::select! {
            Some(d) = m1.rx.recv() => { c1 += 1; seen.push(d.event.id.clone()); d.ack().await.unwrap(); }
            Some(d) = m2.rx.recv() => { c2 += 1; seen.push(d.event.id.clone()); d.ack().await.unwrap(); }
            _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("only {} of 40 delivered", seen.len()),
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 40, "each event once within the group");
    assert!(c1 > 0 && c2 > 0, "both members got work: {c1} / {c2}");
}
on_both!(work_sharing, group_members_share_work);

async fn nack_redelivers_and_consumers_are_idempotent(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("jobs.>", "retry").await.unwrap();
    bus.publish(&event("jobs.x", 7)).await.unwrap();
    let d = next(&mut sub).await.expect("first delivery");
    assert_eq!(d.attempt, 1);
    d.nack().await.unwrap();
    let d = next(&mut sub).await.expect("redelivery after nack");
    assert_eq!(d.event, event("jobs.x", 7), "redelivered whole");
    assert!(d.attempt >= 2, "attempt {}", d.attempt);
    let mut seen = SeenIds::new(100);
    assert!(seen.first_time(&d.event.id));
    assert!(!seen.first_time(&d.event.id), "a duplicate is recognised");
    d.ack().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.rx.recv())
            .await
            .is_err(),
        "acked: no further delivery"
    );
}
on_both!(redelivery, nack_redelivers_and_consumers_are_idempotent);

async fn owned_batches_reach_every_group_whole(bus: Arc<dyn EventBus>) {
    let mut a = bus.subscribe("owned.>", "owned-a").await.unwrap();
    let mut b = bus.subscribe("owned.>", "owned-b").await.unwrap();
    let sent: Vec<Event> = (0..5).map(|n| event("owned.x", n)).collect();
    bus.publish_owned(sent.clone()).await.unwrap();
    for sub in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..5 {
            let d = next(sub).await.expect("delivery");
            got.push(d.event.clone());
            d.ack().await.unwrap();
        }
        got.sort_by_key(|e| e.id.clone());
        assert_eq!(got, sent);
    }
}
on_both!(owned, owned_batches_reach_every_group_whole);

async fn invalid_topics_are_refused(bus: Arc<dyn EventBus>) {
    assert!(bus.publish(&event("bad..topic", 1)).await.is_err());
    assert!(bus.publish(&event("wild.>", 1)).await.is_err());
    assert!(bus.subscribe("a.>.b", "g").await.is_err());
    assert!(bus.subscribe("a.>", "bad group").await.is_err());
}
on_both!(validation, invalid_topics_are_refused);
