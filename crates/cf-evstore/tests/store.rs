//! The event store on its own (SA-1): time partitions, field and free-text search over a real
//! sshd auth.log, de-duplication of redelivered events, retention by partition, reopening.

use cf_core::Timestamp;
use cf_evstore::TantivyEventStore;
use cf_platform::ports::{ArchivedEvent, EventQuery, EventStore, StoreError};
use serde_json::json;

const DAY: i64 = 86_400;
/// 2026-11-24T00:00:00Z.
const T0: i64 = 1_795_478_400;

fn ev(id: &str, secs: i64, host: &str, body: serde_json::Value) -> ArchivedEvent {
    ArchivedEvent {
        id: id.into(),
        time: Timestamp::from_unix_secs(secs),
        topic: "log.syslog".into(),
        source: "udp://10.0.0.9".into(),
        severity: "info".into(),
        class_uid: None,
        host: Some(host.into()),
        user: None,
        src_ip: None,
        dst_ip: None,
        body,
    }
}

fn q(text: &str) -> EventQuery {
    EventQuery {
        text: text.into(),
        from: Timestamp::from_unix_secs(T0 - DAY),
        to: Timestamp::from_unix_secs(T0 + 3 * DAY),
        limit: 100,
    }
}

fn auth_log() -> Option<Vec<String>> {
    let data = cf_testkit::datasets()?;
    let text = std::fs::read_to_string(data.join("soc/logs/auth_linux_sshd/auth.log")).unwrap();
    Some(text.lines().map(str::to_string).collect())
}

#[tokio::test]
async fn real_auth_log_is_found_by_phrase_field_and_time() {
    let Some(lines) = auth_log() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let store = TantivyEventStore::open(tmp.path()).unwrap();
    // The log spread over two days, one event a minute, in three batches.
    let events: Vec<ArchivedEvent> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let prog = l
                .split_whitespace()
                .nth(4)
                .unwrap_or("")
                .trim_end_matches(':');
            let prog = prog.split('[').next().unwrap_or("");
            ev(
                &format!("e{i}"),
                T0 + 60 * i as i64,
                if i % 2 == 0 {
                    "ip-10-77-20-248"
                } else {
                    "WEB-02"
                },
                json!({"syslog": {"msg": l, "app_name": prog}}),
            )
        })
        .collect();
    for chunk in events.chunks(1500) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    let parts = store.partitions().await.unwrap();
    let days: Vec<&str> = parts.iter().map(|p| p.day.as_str()).collect();
    assert_eq!(days, ["2026-11-24", "2026-11-25", "2026-11-26"]);
    assert_eq!(
        parts.iter().map(|p| p.events).sum::<u64>(),
        lines.len() as u64
    );

    let count = |pred: &dyn Fn(usize, &str) -> bool| {
        lines
            .iter()
            .enumerate()
            .filter(|(i, l)| pred(*i, l))
            .count() as u64
    };
    // A phrase, case-insensitive, against a direct count of the file.
    let page = store.search(&q("\"failed password\"")).await.unwrap();
    assert_eq!(page.matched, count(&|_, l| l.contains("Failed password")));
    assert_eq!(page.events.len(), 100);
    assert!(
        page.events.windows(2).all(|w| w[0].time >= w[1].time),
        "newest first"
    );
    // A field and a word together.
    let page = store.search(&q("host:web-02 AND invalid")).await.unwrap();
    assert_eq!(
        page.matched,
        count(&|i, l| i % 2 == 1
            && l.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == "invalid"))
    );
    // A payload path holds the whole value.
    let page = store.search(&q("body.syslog.app_name:CRON")).await.unwrap();
    assert_eq!(page.matched, count(&|_, l| l.contains(" CRON[")));
    assert!(page.matched > 0);
    // The time range prunes partitions and events.
    let mut one_day = q("sshd");
    one_day.from = Timestamp::from_unix_secs(T0 + DAY);
    one_day.to = Timestamp::from_unix_secs(T0 + 2 * DAY);
    let page = store.search(&one_day).await.unwrap();
    assert_eq!(page.partitions, 1);
    let in_day = |i: usize| (DAY..2 * DAY).contains(&(60 * i as i64));
    assert_eq!(
        page.matched,
        count(&|i, l| in_day(i)
            && l.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == "sshd"))
    );
    // Everything in the range, when the query is empty.
    let mut all = q("");
    all.limit = 5;
    let page = store.search(&all).await.unwrap();
    assert_eq!((page.matched, page.events.len()), (lines.len() as u64, 5));
    assert_eq!(page.events[0].id, format!("e{}", lines.len() - 1));
    // What is stored comes back whole.
    let back = store
        .search(&q("host:ip-10-77-20-248 AND \"port 22\""))
        .await
        .unwrap();
    let first = back.events.last().unwrap();
    let orig = events.iter().find(|e| e.id == first.id).unwrap();
    assert_eq!(first, orig);
}

#[tokio::test]
async fn chinese_phrases_redeliveries_retention_and_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TantivyEventStore::open(tmp.path()).unwrap();
    let a = ev(
        "a",
        T0 + 10,
        "gw-1",
        json!({"msg": "用户 zhangsan 登录失败，来源 10.1.2.3"}),
    );
    let b = ev("b", T0 + 20, "gw-1", json!({"msg": "用户 lisi 登录成功"}));
    let c = ev("c", T0 + DAY + 5, "gw-2", json!({"msg": "失败登录的告警"}));
    store.append(vec![a.clone(), b, c]).await.unwrap();
    let ids = |p: &cf_platform::ports::EventPage| -> Vec<String> {
        p.events.iter().map(|e| e.id.clone()).collect()
    };
    assert_eq!(ids(&store.search(&q("\"登录失败\"")).await.unwrap()), ["a"]);
    assert_eq!(
        ids(&store.search(&q("登录")).await.unwrap()),
        ["c", "b", "a"]
    );
    assert_eq!(ids(&store.search(&q("\"10.1.2.3\"")).await.unwrap()), ["a"]);
    assert_eq!(
        ids(&store.search(&q("NOT host:gw-1")).await.unwrap()),
        ["c"]
    );
    // Redelivered (same id): stored once.
    store.append(vec![a.clone()]).await.unwrap();
    assert_eq!(store.search(&q("zhangsan")).await.unwrap().matched, 1);
    // Bad input is refused with the reason.
    for bad in ["host:(", "nosuchfield:x"] {
        let e = store.search(&q(bad)).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{bad}: {e:?}");
    }
    let mut empty = q("x");
    empty.to = empty.from;
    assert!(matches!(
        store.search(&empty).await,
        Err(StoreError::Invalid(_))
    ));
    for bad in ["../x", "2026-11-2"] {
        assert!(matches!(
            store.drop_partition(bad).await,
            Err(StoreError::Invalid(_))
        ));
    }
    assert!(matches!(
        store.drop_partition("2020-01-01").await,
        Err(StoreError::NotFound(_))
    ));
    // Another instance (as after a restart, or the CLI) sees what was committed.
    drop(store);
    let again = TantivyEventStore::open(tmp.path()).unwrap();
    assert_eq!(again.search(&q("登录")).await.unwrap().matched, 3);
    // Retention drops a whole day.
    again.drop_partition("2026-11-24").await.unwrap();
    assert_eq!(ids(&again.search(&q("登录")).await.unwrap()), ["c"]);
    assert!(!tmp.path().join("2026-11-24").exists());
    // Writing again to a dropped day recreates it.
    again.append(vec![a]).await.unwrap();
    assert_eq!(again.search(&q("登录")).await.unwrap().matched, 2);
}

#[tokio::test]
async fn staged_batches_become_searchable_at_commit_and_survive_closing_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TantivyEventStore::open(tmp.path()).unwrap();
    let day = |d: i64, i: i64| {
        ev(
            &format!("d{d}-{i}"),
            T0 + d * DAY + i,
            "gw-1",
            json!({"msg": format!("staged event {i} of day {d}")}),
        )
    };
    // Two days, two batches: nothing is searchable before the commit.
    store.stage(vec![day(0, 1), day(1, 1)]).await.unwrap();
    store.stage(vec![day(0, 2), day(1, 2)]).await.unwrap();
    assert_eq!(store.search(&q("staged")).await.unwrap().matched, 0);
    store.commit().await.unwrap();
    assert_eq!(store.search(&q("staged")).await.unwrap().matched, 4);
    // A redelivery staged twice before one commit is kept once.
    store.stage(vec![day(0, 1)]).await.unwrap();
    store.stage(vec![day(0, 1)]).await.unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.search(&q("staged")).await.unwrap().matched, 4);
    // Eight days in one batch (more than the writers kept open): the writers closed on the
    // way commit what they staged instead of dropping it.
    let week: Vec<ArchivedEvent> = (0..8)
        .flat_map(|d| (10..13).map(move |i| (d, i)))
        .map(|(d, i)| day(d - 4, i))
        .collect();
    store.stage(week).await.unwrap();
    store.commit().await.unwrap();
    let mut all = q("staged");
    all.from = Timestamp::from_unix_secs(T0 - 5 * DAY);
    all.to = Timestamp::from_unix_secs(T0 + 5 * DAY);
    assert_eq!(store.search(&all).await.unwrap().matched, 4 + 24);
    assert_eq!(store.partitions().await.unwrap().len(), 8);
    // What is staged but never committed is not durable (the caller never acknowledged it);
    // what was committed is.
    store.stage(vec![day(0, 99)]).await.unwrap();
    drop(store);
    let again = TantivyEventStore::open(tmp.path()).unwrap();
    assert_eq!(again.search(&all).await.unwrap().matched, 4 + 24);
    // A commit with nothing staged is a no-op.
    again.commit().await.unwrap();
}

#[tokio::test]
async fn a_failed_commit_discards_what_was_staged_and_a_dropped_day_fails_the_next_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TantivyEventStore::open(tmp.path()).unwrap();
    let e = |id: &str, secs: i64| ev(id, secs, "gw-1", json!({"msg": format!("rollback {id}")}));
    // A failing commit rolls back: a later commit does not store what was staged before it.
    store
        .stage(vec![e("a", T0 + 1), e("b", T0 + 2)])
        .await
        .unwrap();
    store.fail_next_commits(1);
    assert!(store.commit().await.is_err());
    store.commit().await.unwrap();
    assert_eq!(store.search(&q("rollback")).await.unwrap().matched, 0);
    // Handed back and staged again, they are stored once.
    store
        .stage(vec![e("a", T0 + 1), e("b", T0 + 2)])
        .await
        .unwrap();
    store.commit().await.unwrap();
    assert_eq!(store.search(&q("rollback")).await.unwrap().matched, 2);
    // Retention drops a day that holds staged events: the next commit fails (the stager must
    // hand them back, not acknowledge them), and the one after is clean.
    store.stage(vec![e("c", T0 + DAY + 1)]).await.unwrap();
    store.drop_partition("2026-11-25").await.unwrap();
    assert!(store.commit().await.is_err());
    store.commit().await.unwrap();
    // An append that fails takes others' staged events with it: their commit is told.
    store.stage(vec![e("d", T0 + 3)]).await.unwrap();
    store.fail_next_commits(1);
    assert!(store.append(vec![e("x", T0 + 4)]).await.is_err());
    assert!(store.commit().await.is_err());
    assert_eq!(store.search(&q("rollback")).await.unwrap().matched, 2);
}
