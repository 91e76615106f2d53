//! `chengfang bench events`: the security-operations pipeline's throughput on real syslog lines —
//! parse + normalise alone, the event store alone (append, bytes per event, search latency), and
//! end to end (syslog lines → intake → OCSF + brute-force detector → journal bus → archive → store).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use cf_core::{SharedClock, SystemClock, Timestamp};
use cf_platform::ports::{ArchivedEvent, EventBus, EventQuery, EventStore};

/// The lines to replay: the file's lines repeated to `n`, each copy with its own process id so no
/// two events are the same.
fn corpus(file: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} (use --syslog FILE)", file.display()))?;
    let base: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!base.is_empty(), "{}: no lines", file.display());
    Ok((0..n)
        .map(|i| {
            let l = base[i % base.len()];
            // `host prog[pid]:` → a pid unique to this copy.
            match l.find("]: ") {
                Some(end) => match l[..end].rfind('[') {
                    Some(start) => format!("{}[{}{}", &l[..start], 100_000 + i, &l[end..]),
                    None => l.to_string(),
                },
                None => format!("{l} #{i}"),
            }
        })
        .collect())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            let m = e.metadata().ok();
            if m.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                dir_bytes(&e.path())
            } else {
                m.map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// Run.
pub async fn run(syslog: PathBuf, n: usize, json: bool) -> Result<()> {
    let lines = corpus(&syslog, n)?;
    let raw_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let recv = Timestamp::parse_rfc3339("2026-12-31T00:00:00Z")?;
    let mut out = serde_json::Map::new();
    out.insert("events".into(), n.into());
    out.insert("raw_bytes".into(), raw_bytes.into());

    // 1. Parse + normalise, one core.
    let t = Instant::now();
    let mut parsed = Vec::with_capacity(n);
    for l in &lines {
        if let Ok(m) = cf_ingest::syslog::parse(l.as_bytes(), recv) {
            let o = cf_ingest::ocsf::from_syslog(&m);
            parsed.push((m, o));
        }
    }
    let parse_s = t.elapsed().as_secs_f64();
    out.insert("parse_normalise_per_s".into(), (n as f64 / parse_s).into());

    // 2. The store alone: appends in batches as the archive makes them, then searches.
    let tmp = tempfile::Builder::new()
        .prefix("cf-bench-events-")
        .tempdir()?;
    let store = cf_evstore::TantivyEventStore::open(&tmp.path().join("events"))?;
    let events: Vec<ArchivedEvent> = parsed
        .iter()
        .enumerate()
        .map(|(i, (m, o))| {
            let ev = cf_event::Event {
                id: format!("bench-{i}"),
                topic: "log.syslog".into(),
                time: m.time.unwrap_or(recv),
                source: "udp://10.0.0.1".into(),
                severity: cf_event::Severity::Info,
                payload: serde_json::json!({"peer": "10.0.0.1", "transport": "udp", "syslog": m, "ocsf": o}),
            };
            cf_platform::archive::archived(&ev)
        })
        .collect();
    let t = Instant::now();
    for chunk in events.chunks(2000) {
        store.append(chunk.to_vec()).await?;
    }
    let store_s = t.elapsed().as_secs_f64();
    let bytes = dir_bytes(&tmp.path().join("events"));
    out.insert("store_appends_per_s".into(), (n as f64 / store_s).into());
    out.insert("store_bytes".into(), bytes.into());
    out.insert(
        "store_bytes_per_event".into(),
        (bytes as f64 / n as f64).into(),
    );
    out.insert(
        "store_bytes_over_raw".into(),
        (bytes as f64 / raw_bytes as f64).into(),
    );
    let year = |y: i32| -> Result<Timestamp> {
        Ok(Timestamp::parse_rfc3339(&format!("{y}-01-01T00:00:00Z"))?)
    };
    let queries = [
        "\"failed password\"",
        "sshd AND invalid",
        "host:ip-10-77-20-248 AND sudo",
        "body.syslog.app:cron",
        "NOT topic:log.syslog",
        "src_ip:24.151.103.17",
    ];
    let mut lat = Vec::new();
    let mut matched = serde_json::Map::new();
    for _round in 0..5 {
        for q in queries {
            let t = Instant::now();
            let page = store
                .search(&EventQuery {
                    text: q.into(),
                    from: year(2026)?,
                    to: year(2027)?,
                    limit: 100,
                })
                .await?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            matched.insert(q.into(), page.matched.into());
        }
    }
    out.insert("search_ms_median".into(), percentile(&mut lat, 0.5).into());
    out.insert("search_ms_p99".into(), percentile(&mut lat, 0.99).into());
    out.insert("search_matched".into(), matched.into());

    // 3. End to end through the platform's own services on the bus `serve` runs by default
    //    (the journal: every batch committed before the intake returns).
    let tmp2 = tempfile::Builder::new().prefix("cf-bench-e2e-").tempdir()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let bus: Arc<dyn EventBus> =
        Arc::new(cf_bus::JournalBus::open(&tmp2.path().join("bus.db")).await?);
    let dd = crate::datadir::DataDir::open(tmp2.path())?;
    let state =
        cf_store::SqlStore::connect(&format!("sqlite://{}", dd.state_db().display()), None).await?;
    let metrics = Arc::new(cf_platform::Metrics::default());
    let ledger = cf_platform::AuditLedger::open(
        Arc::new(state),
        dd.ledger_signer("bench.city/audit")?,
        cf_platform::LedgerConfig {
            origin: "bench.city/audit".into(),
            ..Default::default()
        },
        clock.clone(),
        cf_platform::alarm::Alarms::new(bus.clone(), clock.clone(), metrics.clone(), "bench"),
        metrics,
    )
    .await?;
    let e2e_store = Arc::new(cf_evstore::TantivyEventStore::open(
        &tmp2.path().join("events"),
    )?);
    let archive =
        cf_platform::archive::EventArchive::new(e2e_store, ledger.clone(), clock.clone(), 36_500);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(archive.clone().run(bus.clone(), stop));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let intake = cf_platform::logs::LogIntake::new(bus.clone(), clock, "bench", Arc::default());
    let body: Vec<u8> = lines.join("\n").into_bytes();
    let t = Instant::now();
    let mut sent = 0u64;
    for chunk in body
        .split_inclusive(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .chunks(500)
    {
        let batch: Vec<u8> = chunk.concat();
        sent += intake
            .batch(
                &batch,
                cf_platform::logs::LineFormat::Syslog,
                "10.0.0.1",
                "udp",
            )
            .await?
            .received;
    }
    let intake_s = t.elapsed().as_secs_f64();
    // Alerts raised on the way are archived too; wait for every log line.
    let want = sent;
    loop {
        let stored = archive.counters().stored.load(Ordering::Relaxed);
        if stored >= want {
            break;
        }
        if t.elapsed().as_secs() > 600 {
            anyhow::bail!("the archive stored {stored} of {want} events in 10 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e2e_s = t.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let _ = task.await;
    ledger.shutdown().await;
    out.insert("intake_per_s".into(), (sent as f64 / intake_s).into());
    out.insert("end_to_end_per_s".into(), (sent as f64 / e2e_s).into());
    out.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .into(),
    );

    let v = serde_json::Value::Object(out);
    if json {
        println!("{v}");
    } else {
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "{} syslog lines ({} MB) from {}, {} cores",
            n,
            raw_bytes / 1_000_000,
            syslog.display(),
            v["cores"]
        );
        println!(
            "  parse + OCSF normalise (1 core):       {:>10.0} lines/s",
            f("parse_normalise_per_s")
        );
        println!(
            "  event store appends (batches of 2000): {:>10.0} events/s; {:.0} bytes/event on disk ({:.2}× the raw text)",
            f("store_appends_per_s"),
            f("store_bytes_per_event"),
            f("store_bytes_over_raw")
        );
        println!(
            "  search (6 queries × 5, one year):      median {:.1} ms, p99 {:.1} ms",
            f("search_ms_median"),
            f("search_ms_p99")
        );
        println!(
            "  end to end (intake → bus → archive):   {:>10.0} events/s (intake alone {:.0}/s)",
            f("end_to_end_per_s"),
            f("intake_per_s")
        );
    }
    Ok(())
}
