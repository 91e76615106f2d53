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

/// The test NATS server's URL and a stream name of this test's own.
fn nats_target() -> Option<(String, String)> {
    let url = cf_testkit::service_url(
        "CHENGFANG_TEST_NATS",
        "nats://127.0.0.1:4222",
        cf_testkit::tcp_open("127.0.0.1:4222"),
    )?;
    let stream = format!(
        "T{}",
        hex::encode(cf_crypto::random_bytes(&cf_crypto::OsRng, 5).unwrap())
    );
    Some((url, stream))
}

async fn nats() -> Option<(Arc<dyn EventBus>, Option<cf_bus::NatsBus>)> {
    let (url, stream) = nats_target()?;
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

/// The archive holds every delivery of a commit (tens of thousands) before acknowledging any: a
/// bus must keep feeding a group that holds more than JetStream's default of 1,000.
async fn a_group_holding_many_unacked_deliveries_is_still_fed(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("held.>", "holder").await.unwrap();
    for chunk in (0..3_000).collect::<Vec<u32>>().chunks(500) {
        bus.publish_owned(chunk.iter().map(|n| event("held.x", *n)).collect())
            .await
            .unwrap();
    }
    let mut held = Vec::new();
    while held.len() < 3_000 {
        let d = next(&mut sub)
            .await
            .unwrap_or_else(|| panic!("fed only {} while holding them", held.len()));
        held.push(d);
    }
    let ids: HashSet<String> = held.iter().map(|d| d.event.id.clone()).collect();
    assert_eq!(ids.len(), 3_000);
    for d in held {
        d.ack().await.unwrap();
    }
}
on_both!(held, a_group_holding_many_unacked_deliveries_is_still_fed);

async fn invalid_topics_are_refused(bus: Arc<dyn EventBus>) {
    assert!(bus.publish(&event("bad..topic", 1)).await.is_err());
    assert!(bus.publish(&event("wild.>", 1)).await.is_err());
    assert!(bus.subscribe("a.>.b", "g").await.is_err());
    assert!(bus.subscribe("a.>", "bad group").await.is_err());
}
on_both!(validation, invalid_topics_are_refused);

/// A consumer group created by an earlier version (JetStream's default limit of 1,000 unacked)
/// keeps its name and position and is raised to the port's limit when the platform subscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_group_of_an_earlier_version_gets_the_unacked_limit() {
    let Some((url, stream)) = nats_target() else {
        return;
    };
    let bus = cf_bus::NatsBus::connect(&url, &stream).await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let limit = |js: async_nats::jetstream::Context, stream: String| async move {
        let s = js.get_stream(&stream).await.unwrap();
        let mut c: async_nats::jetstream::consumer::PullConsumer =
            s.get_consumer("upgraded").await.unwrap();
        c.info().await.unwrap().config.max_ack_pending
    };
    drop(bus.subscribe("up.>", "upgraded").await.unwrap());
    assert_eq!(
        limit(js.clone(), stream.clone()).await,
        cf_platform::ports::MAX_UNACKED as i64
    );
    // What an earlier version left: the same group with the server's default.
    let s = js.get_stream(&stream).await.unwrap();
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        s.get_consumer("upgraded").await.unwrap();
    let mut old = c.info().await.unwrap().config.clone();
    old.max_ack_pending = 1_000;
    s.create_consumer(old).await.unwrap();
    assert_eq!(limit(js.clone(), stream.clone()).await, 1_000);
    // Published while no member is subscribed: the raised group must still deliver it (its
    // position is kept, not reset to "new events only").
    bus.publish(&event("up.x", 1)).await.unwrap();
    let mut sub = bus.subscribe("up.>", "upgraded").await.unwrap();
    assert_eq!(
        limit(js.clone(), stream.clone()).await,
        cf_platform::ports::MAX_UNACKED as i64
    );
    let d = next(&mut sub).await.expect("kept its position");
    assert_eq!(d.event.id, "evt-up.x-1");
    d.ack().await.unwrap();
    bus.delete_stream().await.unwrap();
}
