//! `chengfang bench …`: the benchmarks behind docs/benchmarks.md, printed as a table or JSON,
//! with the machine's physical limit (`openssl speed sha256`) measured in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cf_core::{SharedClock, SystemClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_platform::alarm::Alarms;
use cf_platform::ports::StateStore;
use cf_platform::{AuditLedger, LedgerConfig, Metrics};
use cf_store::SqlStore;
use clap::Subcommand;

/// Benchmark commands.
#[derive(Subcommand)]
pub enum BenchCmd {
    /// Audit ledger: durable appends/s with group commit (SQLite, PostgreSQL), append-to-signed-
    /// checkpoint latency, inclusion/consistency proof latency at large sizes, and SHA-256 limits.
    Ledger {
        /// Records to append per backend.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Concurrent appenders.
        #[arg(long, default_value_t = 2048)]
        clients: u64,
        /// Backends to measure.
        #[arg(long, default_value = "sqlite,postgres")]
        backends: String,
        /// PostgreSQL URL.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
        /// Tree sizes for the proof benchmark.
        #[arg(long, default_value = "1000000,10000000")]
        proof_sizes: String,
        /// Proofs sampled per size.
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Field and bulk encryption (AES-256-GCM, SM4-GCM, ChaCha20-Poly1305) through the KMS engine,
    /// beside `openssl speed` on the same machine in the same run.
    Kms {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Field size in bytes.
        #[arg(long, default_value_t = 64)]
        field_bytes: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Device telemetry verification inside the platform (no broker): enrolled devices' signed
    /// messages through `DeviceService::ingest` on the same sharded workers as MQTT ingest, per
    /// key algorithm. The end-to-end figure through Mosquitto comes from `simulate devices`.
    Devices {
        /// Enrolled devices.
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Messages per algorithm.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Parallel workers (the MQTT ingest uses 4).
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The security-operations pipeline on real syslog lines: parse + OCSF, the event store
    /// (appends, bytes per event, search latency) and end to end through intake, bus and archive.
    Events {
        /// Syslog file replayed (its lines repeated with distinct process ids).
        #[arg(
            long,
            default_value = "../shared/datasets/soc/logs/auth_linux_sshd/auth.log"
        )]
        syslog: PathBuf,
        /// Events.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Then offer twice the measured end-to-end rate for this many seconds (0: skip) and
        /// report memory, backlog and backpressure.
        #[arg(long, default_value_t = 20)]
        overload_seconds: u64,
        /// The bus of the end-to-end phase: `journal` (the embedded default `serve` runs) or a
        /// NATS JetStream URL (`nats://127.0.0.1:4222`; a stream of its own, deleted after).
        #[arg(long, default_value = "journal")]
        bus: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Identity: Cedar authorisation decisions, OIDC client-credential grants, token
    /// introspections and full password logins through the platform services (embedded store).
    Identity {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Argon2id memory for the login measurement, KiB (Keycloak's benchmark used 7168).
        #[arg(long, default_value_t = 19456)]
        argon2_memory_kib: u32,
        /// Argon2id passes (Keycloak's benchmark used 5).
        #[arg(long, default_value_t = 2)]
        argon2_passes: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Append records as fast as possible, printing `ACK <seq>` for each acknowledged one
    /// (used by the crash test; stops after --count, or when killed).
    #[command(hide = true)]
    AppendLoop {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Stop after this many.
        #[arg(long)]
        count: Option<u64>,
    },
}

fn record(i: u64) -> AuditRecord {
    AuditRecord::new(
        "bench.append",
        Timestamp::from_unix_secs(1_790_000_000 + (i % 86_400) as i64),
        "10.20.30.40",
        "chengfang-bench",
        format!("user:{}", i % 1000),
        format!("object:{i}"),
        "update",
        Outcome::Success,
        format!("req-{i}"),
    )
}

pub(crate) struct Opened {
    pub(crate) ledger: AuditLedger,
    pub(crate) store: Arc<SqlStore>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

/// A ledger on a fresh embedded store in a temporary directory (removed when dropped).
pub(crate) async fn open_sqlite_ledger() -> Result<Opened> {
    open("sqlite", "", None, LedgerConfig::default()).await
}

async fn open(backend: &str, pg: &str, dir: Option<PathBuf>, cfg: LedgerConfig) -> Result<Opened> {
    let (store, tmp, schema, signer) = match backend {
        "sqlite" => {
            let (path, tmp) = match dir {
                Some(d) => (d, None),
                None => {
                    let t = tempfile::Builder::new().prefix("cf-bench-").tempdir()?;
                    (t.path().to_path_buf(), Some(t))
                }
            };
            let dd = crate::datadir::DataDir::open(&path)?;
            let store =
                SqlStore::connect(&format!("sqlite://{}", dd.state_db().display()), None).await?;
            (store, tmp, None, dd.ledger_signer(&cfg.origin)?)
        }
        "postgres" => {
            let schema = format!("cf_bench_{}", std::process::id());
            let store = SqlStore::connect(pg, Some(&schema))
                .await
                .with_context(|| format!("PostgreSQL at {}", cf_store::redact_url(pg)))?;
            let signer = cf_ledger::NoteSigner::new(
                &cfg.origin,
                cf_crypto::Ed25519SigningKey::generate(&cf_crypto::OsRng)?,
            )?;
            (store, None, Some(schema), signer)
        }
        other => anyhow::bail!("unknown backend `{other}`: use sqlite or postgres"),
    };
    let store = Arc::new(store);
    let clock: SharedClock = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let alarms = Alarms::new(
        Arc::new(cf_bus::MemoryBus::new()),
        clock.clone(),
        metrics.clone(),
        "bench",
    );
    let ledger = AuditLedger::open(
        store.clone() as Arc<dyn StateStore>,
        signer,
        cfg,
        clock,
        alarms,
        metrics,
    )
    .await?;
    Ok(Opened {
        ledger,
        store,
        _dir: tmp,
        schema,
    })
}

/// `bench devices`.
/// The device key types, dealt round-robin over the simulated fleet.
const ALGS: [cf_crypto::devkey::KeyAlg; 3] = [
    cf_crypto::devkey::KeyAlg::EcdsaP256,
    cf_crypto::devkey::KeyAlg::Ed25519,
    cf_crypto::devkey::KeyAlg::Sm2,
];

async fn devices(n: usize, messages: usize, workers: usize, json: bool) -> Result<()> {
    use cf_crypto::devkey::{DeviceSigner, KeyAlg};
    use cf_device::registry::NewDevice;
    use cf_device::telemetry::{Envelope, Verdict};
    use cf_platform::devices::{DeviceCa, DeviceConfig, DeviceService};
    use cf_platform::tokens::RequestContext;
    use cf_platform::{Action, Principal, Role, authz};

    let o = open("sqlite", "", None, LedgerConfig::default()).await?;
    let now = cf_core::Clock::now(&SystemClock);
    let ca = cf_pki::new_ca("Bench Device CA", now, 1)?;
    let svc = DeviceService::open(
        o.store.clone() as Arc<dyn StateStore>,
        o.ledger.clone(),
        Arc::new(SystemClock),
        Arc::new(cf_crypto::OsRng),
        Arc::new(cf_bus::MemoryBus::new()),
        None,
        DeviceCa {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        },
        DeviceConfig::default(),
    )
    .await?;
    let admin = Principal {
        id: "bench".into(),
        roles: vec![Role::Admin],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let manage = authz::authorize(&admin, Action::ManageDevices)?;
    let ctx = RequestContext::internal();
    let t0 = Instant::now();
    let mut fleet = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{i:05}");
        svc.register(
            &manage,
            &ctx,
            NewDevice {
                id: id.clone(),
                kind: "environment-sensor".into(),
                layer: cf_core::Layer::TerminalPerception,
                district: format!("d{}", i % 6),
                lat: 39.9,
                lon: 116.4,
                owner_org: "bench".into(),
                vendor: "Acme".into(),
                model: "B1".into(),
                firmware: "1".into(),
            },
        )
        .await?;
        let (tok, _, _) = svc.enrollment_token(&manage, &ctx, &id).await?;
        let alg = ALGS[i % ALGS.len()];
        let k = cf_pki::device::device_key(alg, &id)?;
        svc.enroll(&ctx, &tok, &k.csr_der).await?;
        fleet.push((id, alg, DeviceSigner::from_pkcs8(alg, &k.pkcs8)?));
    }
    let enroll_rate = n as f64 / t0.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for alg in ALGS {
        let mine: Vec<&(String, KeyAlg, DeviceSigner)> =
            fleet.iter().filter(|f| f.1 == alg).collect();
        let mut seqs = vec![0u64; mine.len()];
        let ts = cf_core::Clock::now(&SystemClock).unix_millis();
        let mut shards: Vec<Vec<Vec<u8>>> = vec![Vec::new(); workers.max(1)];
        for m in 0..messages {
            let d = m % mine.len();
            seqs[d] += 1;
            let body = format!(
                r#"{{"type":"reading","metrics":{{"temperature_c":{}}}}}"#,
                15 + m % 10
            );
            let msg = Envelope::seal(&mine[d].2, &mine[d].0, 1, seqs[d], ts, body.as_bytes())?;
            shards[d % workers.max(1)].push(msg);
        }
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for shard in shards {
            let svc = svc.clone();
            tasks.spawn(async move {
                let mut ok = 0usize;
                for m in shard {
                    let id = Envelope::decode(&m).map(|e| e.device).unwrap_or_default();
                    if matches!(
                        svc.ingest(&m, "", Some(&id), None).await.verdict,
                        Verdict::Accepted { .. }
                    ) {
                        ok += 1;
                    }
                }
                ok
            });
        }
        let mut accepted = 0;
        while let Some(r) = tasks.join_next().await {
            accepted += r?;
        }
        let secs = t.elapsed().as_secs_f64();
        if accepted != messages {
            anyhow::bail!("{alg}: only {accepted} of {messages} accepted");
        }
        rows.push(serde_json::json!({"alg": alg.as_str(), "messages": messages, "seconds": secs, "per_second": messages as f64 / secs}));
    }
    o.ledger.shutdown().await;
    let out = serde_json::json!({"devices": n, "workers": workers, "enrollments_per_second_in_process": enroll_rate, "verify": rows});
    if json {
        println!("{out}");
    } else {
        println!(
            "{n} devices enrolled in process at {enroll_rate:.0}/s (CSR check, certificate, ledger, store)"
        );
        for r in out["verify"].as_array().into_iter().flatten() {
            println!(
                "{:<11} {:>8} messages  {:>7.0} verified/s on {workers} workers",
                r["alg"].as_str().unwrap_or(""),
                r["messages"],
                r["per_second"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn openssl_sha256_64b() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "2", "-bytes", "64", "sha256"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("sha256"))?;
    let v = line.split_whitespace().last()?;
    let kbytes: f64 = v.trim_end_matches('k').parse().ok()?;
    Some(kbytes * 1000.0 / 64.0)
}

fn own_sha256_64b() -> f64 {
    let data = [7u8; 64];
    let n = 2_000_000u64;
    let t = Instant::now();
    let mut acc = [0u8; 32];
    for i in 0..n {
        let mut d = data;
        d[0] = i as u8;
        d[1] = acc[0];
        acc = cf_crypto::sha256(&d);
    }
    std::hint::black_box(acc);
    n as f64 / t.elapsed().as_secs_f64()
}

/// `openssl speed -evp ALG -bytes N`: bytes per second, or None if openssl is missing or lacks ALG.
fn openssl_speed(alg: &str, bytes: usize, seconds: f64) -> Option<f64> {
    let secs = format!("{}", seconds.ceil().max(1.0) as u64);
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-evp",
            alg,
            "-bytes",
            &bytes.to_string(),
            "-seconds",
            &secs,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.lines().last()?.split_whitespace().last()?;
    Some(v.trim_end_matches('k').parse::<f64>().ok()? * 1000.0)
}

/// Repeat `f` for about `seconds`; returns calls per second (median of three slices).
fn rate(seconds: f64, mut f: impl FnMut()) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed().as_secs_f64() < seconds / 3.0 {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn bench_kms(seconds: f64, field: usize, json: bool) -> Result<bool> {
    use cf_kms::keyring::{KeyRing, KeyType, Policy};
    let now = Timestamp::from_unix_secs(1_790_000_000);
    // The platform's KMS draws nonces from the same buffered OS generator.
    let rng = cf_crypto::BufferedOsRng::default();
    let mut rows = Vec::new();
    for (t, peer) in [
        (KeyType::Aes256Gcm, "aes-256-gcm"),
        (KeyType::Sm4Gcm, "sm4-ctr"),
        (KeyType::ChaCha20Poly1305, "chacha20-poly1305"),
    ] {
        let k = KeyRing::generate("bench", "bench", t, Policy::default(), now, &rng)?;
        let cipher = k.cipher(1, b"")?;
        let pt = vec![0x5Au8; field];
        let fields = rate(seconds, || {
            std::hint::black_box(
                k.encrypt_with(&cipher, &pt, b"", false, &rng)
                    .map(|e| e.encode())
                    .ok(),
            );
        });
        let alg = t.aead().unwrap_or(cf_kms::Algorithm::Aes256Gcm);
        let dk = vec![9u8; 32];
        let mb = 256usize;
        let data = vec![0xA5u8; mb << 20];
        let t0 = Instant::now();
        let mut sink = std::io::sink();
        let mut passes = 0u64;
        while passes == 0 || t0.elapsed().as_secs_f64() < seconds {
            cf_kms::stream::encrypt(
                alg,
                &dk,
                "cfk1:bench",
                cf_kms::stream::DEFAULT_CHUNK_LOG2,
                &mut &data[..],
                &mut sink,
                &rng,
            )?;
            passes += 1;
        }
        let bulk = (passes as f64 * data.len() as f64) / t0.elapsed().as_secs_f64();
        let peer_field = openssl_speed(peer, field, seconds);
        let peer_bulk = openssl_speed(peer, 65536, seconds);
        rows.push(serde_json::json!({
            "algorithm": alg.as_str(),
            "field_bytes": field,
            "field_ops_per_s": fields.round(),
            "bulk_bytes_per_s": bulk.round(),
            "openssl_alg": peer,
            "openssl_field_ops_per_s": peer_field.map(|b| (b / field as f64).round()),
            "openssl_bulk_bytes_per_s": peer_bulk.map(f64::round),
            "bulk_ratio": peer_bulk.map(|p| bulk / p),
            "field_ratio": peer_field.map(|p| fields / (p / field as f64)),
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "kms": rows, "sm4_path": cf_crypto::sm4t::path() })
        );
    } else {
        println!(
            "{:<18} {:>14} {:>14} {:>10} {:>12} {:>12} {:>8}",
            "algorithm", "fields/s", "openssl/s", "ratio", "bulk MB/s", "openssl MB/s", "ratio"
        );
        for r in &rows {
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<18} {:>14.0} {:>14.0} {:>10.2} {:>12.0} {:>12.0} {:>8.2}   (peer: openssl {})",
                r["algorithm"].as_str().unwrap_or(""),
                f("field_ops_per_s"),
                f("openssl_field_ops_per_s"),
                f("field_ratio"),
                f("bulk_bytes_per_s") / 1e6,
                f("openssl_bulk_bytes_per_s") / 1e6,
                f("bulk_ratio"),
                r["openssl_alg"].as_str().unwrap_or("")
            );
        }
        println!(
            "fields: full cfk1 envelopes (random nonce from the OS, header, AEAD), one core; bulk: STREAM file format, 64 KiB chunks, one core"
        );
        println!(
            "SM4 path: {} (constant time either way)",
            cf_crypto::sm4t::path()
        );
    }
    Ok(true)
}

/// Run a benchmark command.
pub async fn run(cmd: BenchCmd) -> Result<bool> {
    match cmd {
        BenchCmd::Kms {
            seconds,
            field_bytes,
            json,
        } => bench_kms(seconds, field_bytes, json),
        BenchCmd::Identity {
            seconds,
            argon2_memory_kib,
            argon2_passes,
            json,
        } => crate::bench_identity::run(
            seconds,
            cf_identity::password::Costs {
                m_kib: argon2_memory_kib,
                t: argon2_passes,
                p: 1,
            },
            json,
        )
        .await
        .map(|()| true),
        BenchCmd::AppendLoop { data_dir, count } => append_loop(data_dir, count).await,
        BenchCmd::Events {
            syslog,
            events,
            overload_seconds,
            bus,
            json,
        } => crate::bench_events::run(syslog, events, overload_seconds, &bus, json)
            .await
            .map(|()| true),
        BenchCmd::Devices {
            devices: n,
            messages,
            workers,
            json,
        } => devices(n, messages, workers, json).await.map(|()| true),
        BenchCmd::Ledger {
            records,
            clients,
            backends,
            postgres_url,
            proof_sizes,
            samples,
            json,
        } => {
            let mut results = serde_json::Map::new();
            let ssl = openssl_sha256_64b();
            let own = own_sha256_64b();
            results.insert("sha256_64B_per_s_openssl".into(), serde_json::json!(ssl));
            results.insert("sha256_64B_per_s_chengfang".into(), serde_json::json!(own));
            if !json {
                println!(
                    "machine: {} cores; SHA-256 of 64-byte inputs: openssl speed {} /s, Chengfang's sha2 {:.0} /s",
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(0),
                    ssl.map_or("n/a".into(), |v| format!("{v:.0}")),
                    own
                );
            }
            for backend in backends.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let r = bench_appends(backend, &postgres_url, records, clients).await?;
                if !json {
                    println!(
                        "{backend:<9} durable appends: {:>9.0} /s ({} records, {} clients, {:.2} s); append -> signed checkpoint: median {:.0} ms, p99 {:.0} ms; limit from SHA-256 (2 hashes/append): {:.0} /s",
                        r["appends_per_s"].as_f64().unwrap_or(0.0),
                        records,
                        clients,
                        r["seconds"].as_f64().unwrap_or(0.0),
                        r["checkpoint_latency_ms_median"].as_f64().unwrap_or(0.0),
                        r["checkpoint_latency_ms_p99"].as_f64().unwrap_or(0.0),
                        ssl.unwrap_or(own) / 2.0
                    );
                }
                results.insert(format!("appends_{backend}"), r);
            }
            for size in proof_sizes
                .split(',')
                .filter_map(|s| s.trim().parse::<u64>().ok())
            {
                let r = bench_proofs(size, samples);
                if !json {
                    println!(
                        "proofs at {size:>9} entries: inclusion p50 {:.1} µs p99 {:.1} µs; consistency p50 {:.1} µs p99 {:.1} µs (tree built in {:.1} s)",
                        r["inclusion_us_p50"].as_f64().unwrap_or(0.0),
                        r["inclusion_us_p99"].as_f64().unwrap_or(0.0),
                        r["consistency_us_p50"].as_f64().unwrap_or(0.0),
                        r["consistency_us_p99"].as_f64().unwrap_or(0.0),
                        r["build_s"].as_f64().unwrap_or(0.0)
                    );
                }
                results.insert(format!("proofs_{size}"), r);
            }
            if json {
                println!("{}", serde_json::Value::Object(results));
            }
            Ok(true)
        }
    }
}

async fn bench_appends(
    backend: &str,
    pg: &str,
    records: u64,
    clients: u64,
) -> Result<serde_json::Value> {
    let cfg = LedgerConfig {
        origin: "bench.chengfang/audit".into(),
        ..LedgerConfig::default()
    };
    let o = open(backend, pg, None, cfg).await?;
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients.max(1) {
        let (l, next) = (o.ledger.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= records {
                    break;
                }
                l.append(record(i)).await?;
            }
            Ok::<(), cf_platform::PlatformError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    o.ledger
        .wait_for_checkpoint(records.saturating_sub(1), Duration::from_secs(30))
        .await
        .context("no checkpoint after the run")?;
    let mut lat = Vec::new();
    for i in 0..60 {
        let t0 = Instant::now();
        let r = o.ledger.append(record(records + i)).await?;
        o.ledger
            .wait_for_checkpoint(r.seq(), Duration::from_secs(30))
            .await
            .context("checkpoint timed out")?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    lat.sort_by(f64::total_cmp);
    o.ledger.shutdown().await;
    if let Some(s) = &o.schema {
        o.store.drop_schema(s).await?;
    }
    o.store.close().await;
    Ok(serde_json::json!({
        "backend": backend, "records": records, "clients": clients, "seconds": secs,
        "appends_per_s": records as f64 / secs,
        "checkpoint_latency_ms_median": pct(&lat, 0.5), "checkpoint_latency_ms_p99": pct(&lat, 0.99),
    }))
}

fn bench_proofs(size: u64, samples: usize) -> serde_json::Value {
    let t = Instant::now();
    let mut tree = cf_ledger::MerkleTree::new();
    for i in 0..size {
        tree.push(cf_ledger::leaf_hash(&i.to_le_bytes()));
    }
    let build = t.elapsed().as_secs_f64();
    let rng = cf_crypto::SeededRng::new(size);
    let rand = || {
        let mut b = [0u8; 8];
        let _ = cf_crypto::Rng::fill(&rng, &mut b);
        u64::from_le_bytes(b)
    };
    let (mut inc, mut con) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let idx = rand() % size;
        let t = Instant::now();
        let p = tree.inclusion_proof(idx, size);
        inc.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p.ok());
        let old = 1 + rand() % size;
        let t = Instant::now();
        let p = tree.consistency_proof(old, size);
        con.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(p.ok());
    }
    inc.sort_by(f64::total_cmp);
    con.sort_by(f64::total_cmp);
    serde_json::json!({
        "size": size, "samples": samples, "build_s": build,
        "inclusion_us_p50": pct(&inc, 0.5), "inclusion_us_p99": pct(&inc, 0.99),
        "consistency_us_p50": pct(&con, 0.5), "consistency_us_p99": pct(&con, 0.99),
    })
}

async fn append_loop(dir: PathBuf, count: Option<u64>) -> Result<bool> {
    let cfg = LedgerConfig {
        origin: "crash.chengfang/audit".into(),
        ..LedgerConfig::default()
    };
    let o = open("sqlite", "", Some(dir), cfg).await?;
    let next = Arc::new(AtomicU64::new(0));
    let limit = count.unwrap_or(u64::MAX);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut handles = Vec::new();
    for _ in 0..64 {
        let (l, next, out) = (o.ledger.clone(), next.clone(), out.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                let r = l.append(record(i)).await?;
                // Printed only after the durable commit: everything printed must survive a kill.
                if let Ok(mut o) = out.lock() {
                    let _ = writeln!(o, "ACK {}", r.seq());
                    let _ = o.flush();
                }
            }
            Ok::<(), cf_platform::PlatformError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    o.ledger.shutdown().await;
    o.store.close().await;
    Ok(true)
}
