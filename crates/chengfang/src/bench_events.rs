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

/// The process's resident memory, bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Run.
pub async fn run(
    syslog: PathBuf,
    n: usize,
    overload_s: u64,
    bus_url: &str,
    json: bool,
) -> Result<()> {
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
            cf_platform::archive::archived(ev)
        })
        .collect();
    let t = Instant::now();
    // As the archive does under load: batches staged, one commit per `COMMIT_EVERY` events.
    let mut staged = 0;
    for chunk in events.chunks(cf_platform::archive::BATCH) {
        store.stage(chunk.to_vec()).await?;
        staged += chunk.len();
        if staged >= cf_platform::archive::COMMIT_EVERY {
            store.commit().await?;
            staged = 0;
        }
    }
    store.commit().await?;
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
    //    (the journal: every batch committed before the intake returns) or on JetStream.
    let tmp2 = tempfile::Builder::new().prefix("cf-bench-e2e-").tempdir()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let mut nats = None;
    let bus: Arc<dyn EventBus> = if bus_url == "journal" {
        Arc::new(cf_bus::JournalBus::open(&tmp2.path().join("bus.db")).await?)
    } else if bus_url.starts_with("nats://") {
        let stream = format!("BENCH{}", std::process::id());
        let b = Arc::new(cf_bus::NatsBus::connect(bus_url, &stream).await?);
        nats = Some(b.clone());
        b
    } else {
        anyhow::bail!("--bus: `{bus_url}` is neither `journal` nor a nats:// URL");
    };
    // The JetStream stream of this run is deleted whether the run succeeds or fails.
    let run = async {
        out.insert("bus".into(), bus.backend().into());
        let dd = crate::datadir::DataDir::open(tmp2.path())?;
        let state =
            cf_store::SqlStore::connect(&format!("sqlite://{}", dd.state_db().display()), None)
                .await?;
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
        let archive = cf_platform::archive::EventArchive::new(
            e2e_store,
            ledger.clone(),
            clock.clone(),
            36_500,
        );
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
        let e2e_rate = sent as f64 / e2e_s;
        out.insert("intake_per_s".into(), (sent as f64 / intake_s).into());
        out.insert("end_to_end_per_s".into(), e2e_rate.into());

        // 4. Overload: open-loop senders offer twice the end-to-end rate through the intake's
        //    admission (as HTTPS batches are: a waiting batch holds no body), while memory is sampled.
        if overload_s > 0 {
            let body = Arc::new(body);
            let cuts: Vec<usize> = std::iter::once(0)
                .chain(
                    body.iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect();
            let marks: Vec<usize> = cuts
                .iter()
                .step_by(500)
                .copied()
                .chain(std::iter::once(body.len()))
                .collect();
            let ranges: Arc<Vec<(usize, usize)>> = Arc::new(
                marks
                    .windows(2)
                    .map(|w| (w[0], w[1]))
                    .filter(|(a, b)| b > a)
                    .collect(),
            );
            anyhow::ensure!(!ranges.is_empty(), "no lines to offer");
            let offered = 2.0 * e2e_rate;
            let per_batch = 500.0;
            let gap = std::time::Duration::from_secs_f64(per_batch / offered);
            let stored0 = archive.counters().stored.load(Ordering::Relaxed);
            let rss0 = rss_bytes();
            let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let t = Instant::now();
            let end = t + std::time::Duration::from_secs(overload_s);
            let mut senders = tokio::task::JoinSet::new();
            let mut samples: Vec<(f64, u64, u64)> = Vec::new();
            let mut next_sample = t;
            let mut i = 0usize;
            let mut offered_lines = 0u64;
            while Instant::now() < end {
                let (body, ranges, intake, accepted) = (
                    body.clone(),
                    ranges.clone(),
                    intake.clone(),
                    accepted.clone(),
                );
                let k = i % ranges.len();
                offered_lines += 500;
                senders.spawn(async move {
                    let Some(_slot) = intake.admit().await else {
                        return;
                    };
                    let (a, b) = ranges[k];
                    if let Ok(r) = intake
                        .batch(
                            &body[a..b],
                            cf_platform::logs::LineFormat::Syslog,
                            "10.0.0.1",
                            "udp",
                        )
                        .await
                    {
                        accepted.fetch_add(r.received, Ordering::Relaxed);
                    }
                });
                i += 1;
                if Instant::now() >= next_sample {
                    let stored = archive.counters().stored.load(Ordering::Relaxed) - stored0;
                    samples.push((t.elapsed().as_secs_f64(), rss_bytes(), stored));
                    next_sample += std::time::Duration::from_millis(250);
                }
                while let Some(r) = senders.try_join_next() {
                    r?;
                }
                tokio::time::sleep_until((t + gap * i as u32).into()).await;
            }
            let offered_s = t.elapsed().as_secs_f64();
            let waiting_at_end = senders.len();
            while let Some(r) = senders.join_next().await {
                r?;
            }
            let acked = accepted.load(Ordering::Relaxed);
            let accept_s = t.elapsed().as_secs_f64();
            loop {
                let stored = archive.counters().stored.load(Ordering::Relaxed) - stored0;
                if stored >= acked {
                    break;
                }
                if t.elapsed().as_secs() > overload_s * 20 + 600 {
                    anyhow::bail!(
                        "overload: the archive stored {stored} of {acked} acknowledged events"
                    );
                }
                samples.push((t.elapsed().as_secs_f64(), rss_bytes(), stored));
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            let drain_s = t.elapsed().as_secs_f64();
            let peak = samples.iter().map(|s| s.1).max().unwrap_or(rss0).max(rss0);
            // Memory in each quarter of the offered period: flat means bounded, rising means not.
            let quarter = |q: f64| {
                samples
                    .iter()
                    .filter(|s| s.0 <= offered_s * q && s.0 > offered_s * (q - 0.25))
                    .map(|s| s.1)
                    .max()
                    .unwrap_or(0)
            };
            out.insert(
                "overload_offered_per_s".into(),
                (offered_lines as f64 / offered_s).into(),
            );
            out.insert(
                "overload_accepted_per_s".into(),
                (acked as f64 / accept_s).into(),
            );
            out.insert(
                "overload_senders_waiting_at_end".into(),
                waiting_at_end.into(),
            );
            out.insert("overload_acknowledged".into(), acked.into());
            out.insert("overload_all_stored_after_s".into(), drain_s.into());
            out.insert("overload_rss_start".into(), rss0.into());
            out.insert("overload_rss_peak".into(), peak.into());
            out.insert(
                "overload_rss_quarters".into(),
                serde_json::json!([quarter(0.25), quarter(0.5), quarter(0.75), quarter(1.0)]),
            );
            out.insert(
                "overload_batches_waited".into(),
                intake
                    .counters()
                    .batches_waited
                    .load(Ordering::Relaxed)
                    .into(),
            );
        }
        let _ = stop_tx.send(true);
        let _ = task.await;
        ledger.shutdown().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(b) = nats {
        match (b.delete_stream().await, &run) {
            (Err(e), Ok(())) => return Err(e.into()),
            (Err(e), Err(_)) => eprintln!("the run's stream could not be deleted: {e}"),
            (Ok(()), _) => {}
        }
    }
    run?;
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
            "  event store appends (batches of {}, one commit per {}): {:>10.0} events/s; {:.0} bytes/event on disk ({:.2}× the raw text)",
            cf_platform::archive::BATCH,
            cf_platform::archive::COMMIT_EVERY,
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
            "  end to end (intake → {} → archive):   {:>10.0} events/s (intake alone {:.0}/s)",
            v["bus"].as_str().unwrap_or("bus"),
            f("end_to_end_per_s"),
            f("intake_per_s")
        );
        if v.get("overload_offered_per_s").is_some() {
            let mb = |x: u64| x / 1_000_000;
            let q: Vec<String> = v["overload_rss_quarters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| format!("{}", mb(x.as_u64().unwrap_or(0))))
                .collect();
            println!(
                "  overload ({} s): offered {:.0}/s, accepted {:.0}/s, {} batches held back; all {} acknowledged stored after {:.1} s",
                overload_s,
                f("overload_offered_per_s"),
                f("overload_accepted_per_s"),
                v["overload_batches_waited"],
                v["overload_acknowledged"],
                f("overload_all_stored_after_s")
            );
            println!(
                "    memory: {} MB at start, peak {} MB; by quarter of the offered period {} MB",
                mb(v["overload_rss_start"].as_u64().unwrap_or(0)),
                mb(v["overload_rss_peak"].as_u64().unwrap_or(0)),
                q.join(" / ")
            );
        }
    }
    Ok(())
}
