//! `chengfang demo`: the platform plus a simulated city with scripted attacks, driven through
//! the real HTTPS API and bus, narrating what happens so a newcomer sees every capability work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use cf_core::Layer;
use cf_platform::Role;
use cf_platform::authz::{self, Action, Principal};
use cf_platform::tokens::RequestContext;

use crate::config::Config;
use crate::platform::{Platform, bind, shutdown_signal};

/// An HTTPS client that trusts the platform CA (and nothing else).
pub fn client(ca_pem: &str) -> Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(Duration::from_secs(20))
        .build()?)
}

pub(crate) async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut req = c.request(method.clone(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        anyhow::bail!("{method} {url}: {status}: {v}");
    }
    Ok(v)
}

/// The open alerts once every kind in `want` is among them, or as they stand after `tries`
/// polls 100 ms apart (the analytics run as the logs stream in).
pub(crate) async fn open_alerts_with(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    want: &[&str],
    tries: usize,
) -> Result<serde_json::Value> {
    let mut book = serde_json::Value::Null;
    for _ in 0..tries {
        book = call(
            http,
            reqwest::Method::GET,
            &format!("{url}/api/v1/alerts?status=open"),
            token,
            None,
        )
        .await?;
        let kinds: Vec<&str> = book
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["kind"].as_str())
            .collect();
        if want.iter().all(|k| kinds.contains(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(book)
}

pub(crate) fn say(tag: &str, msg: impl AsRef<str>) {
    println!("[{tag:^9}] {}", msg.as_ref());
}

/// Run the demo until `duration` passes or Ctrl-C.
pub async fn run(cfg: Config, duration: Option<Duration>) -> Result<()> {
    let p = Platform::open(&cfg).await?;
    p.audit_system(
        "platform.start",
        "start",
        serde_json::json!({ "mode": "demo" }),
    )
    .await?;
    let ep = bind(&cfg, &p).await?;
    let url = ep.url.clone();
    p.oidc.set_issuer(&url);
    p.scim.set_base(&url);
    // The org chart's groups grant roles unless the configuration maps its own.
    if cfg.scim_group_roles.is_empty() {
        let demo: std::collections::BTreeMap<String, Vec<String>> = [
            ("Security Operations", "operator"),
            ("Audit Office", "auditor"),
            ("Platform Admins", "admin"),
        ]
        .into_iter()
        .map(|(g, r)| (g.to_string(), vec![r.to_string()]))
        .collect();
        p.scim.set_group_roles(&demo);
    }
    if let Some(rp) = cf_identity::webauthn::RelyingParty::for_url(&url, "Chengfang demo city") {
        p.identity.set_webauthn(rp);
    }
    // The simulated city's address plan stands in for a geolocation database unless one is set.
    if cfg.geoip_database.is_none() {
        p.identity.set_geo(Arc::new(crate::demo_sso::DemoGeo));
    }
    let mut sim = cf_sim::Simulation::new(2026, 25);
    println!("Chengfang demo — a simulated city under attack, served at {url}");
    println!("  data directory {}", p.dir.root().display());
    for d in &sim.city.districts {
        println!("  district {} {}", d.code, d.name);
    }
    for l in Layer::ALL {
        println!("  layer {:<20} {:>4} assets", l.as_str(), sim.city.count(l));
    }
    println!(
        "  {} users in 7 identity domains, {} applications\n",
        sim.city.users.len(),
        sim.city.apps.len()
    );

    let boot = match p.bootstrap().await? {
        Some(t) => t.token.expose().clone(),
        None => {
            // A reused data directory: mint the demo's administrator directly, audited as the system.
            let auth = authz::authorize(&Principal::system(), Action::ManageTokens)?;
            let (t, _) = p
                .tokens
                .create(
                    &auth,
                    &RequestContext::internal(),
                    "demo administrator",
                    &[Role::Admin],
                    Some(Duration::from_secs(3600)),
                    None,
                )
                .await?;
            t.token.expose().clone()
        }
    };
    let (server, stop_tx) = p.spawn_api(cfg.body_limit_bytes, cfg.request_timeout, ep);
    let http = client(&std::fs::read_to_string(p.dir.ca_cert())?)?;
    let api = |path: &str| format!("{url}{path}");

    // Identity foundation: the bootstrap credential must be exchanged before anything else.
    let denied = http
        .get(api("/api/v1/tokens"))
        .bearer_auth(&boot)
        .send()
        .await?
        .status();
    say(
        "auth",
        format!("bootstrap credential used directly -> {denied} (it must be rotated first)"),
    );
    let rotated = call(
        &http,
        reqwest::Method::POST,
        &api("/api/v1/auth/rotate"),
        &boot,
        None,
    )
    .await?;
    let admin = rotated["token"]
        .as_str()
        .context("rotate returned no token")?
        .to_string();
    say(
        "auth",
        format!(
            "bootstrap rotated; permanent admin token issued (audit record #{})",
            rotated["audit_seq"]
        ),
    );
    let aud = call(
        &http,
        reqwest::Method::POST,
        &api("/api/v1/tokens"),
        &admin,
        Some(serde_json::json!({ "name": "city auditor", "roles": ["auditor"], "ttl": "1d" })),
    )
    .await?;
    let auditor = aud["token"]
        .as_str()
        .context("no auditor token")?
        .to_string();
    say(
        "auth",
        format!(
            "auditor token created (audit record #{}); admins cannot read the ledger, auditors can (AUD-5)",
            aud["audit_seq"]
        ),
    );
    let forbidden = http
        .get(api("/api/v1/audit/records?limit=1"))
        .bearer_auth(&admin)
        .send()
        .await?
        .status();
    say(
        "authz",
        format!("admin reading audit records -> {forbidden}"),
    );

    let mut alarms = p.bus.subscribe("alarm.>", "demo-alarms").await?;
    tokio::spawn(async move {
        while let Some(d) = alarms.rx.recv().await {
            say("ALARM", format!("{} {}", d.event.topic, d.event.payload));
            let _ = d.ack().await;
        }
    });
    let seen = Arc::new(AtomicU64::new(0));
    let mut city = p.bus.subscribe("city.>", "demo-soc").await?;
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Some(d) = city.rx.recv().await {
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = d.ack().await;
        }
    });

    // Data protection (issue 4): discovery, keys, masking per role, watermarked export, tracing,
    // crypto-shredding — all through the running platform.
    let register = sim.city.citizens(200, 2026);
    crate::demo_data::run(
        &crate::demo_data::Ctx {
            http: &http,
            url: &url,
            admin: &admin,
        },
        &register,
    )
    .await?;

    // Device trust (issue 5): enrollment, signed telemetry, terminal-layer attacks, firmware.
    let mut alerts = p.bus.subscribe("alert.>", "demo-alerts").await?;
    tokio::spawn(async move {
        while let Some(d) = alerts.rx.recv().await {
            let p = &d.event.payload;
            let what = p["detail"]
                .as_str()
                .or(p["key"].as_str())
                .or(p["src"].as_str())
                .unwrap_or("");
            say("ALERT", format!("{} {what}", d.event.topic));
            let _ = d.ack().await;
        }
    });
    let districts: Vec<String> = sim
        .city
        .districts
        .iter()
        .map(|d| d.code.to_ascii_lowercase())
        .collect();
    crate::demo_devices::run(
        &crate::demo_data::Ctx {
            http: &http,
            url: &url,
            admin: &admin,
        },
        &std::fs::read_to_string(p.dir.ca_cert())?,
        &districts,
    )
    .await?;

    // Identity and the SOC (issues 3 and 6): the alert book and the event archive run as under
    // `serve`.
    let (book_stop, book_stop_rx) = tokio::sync::watch::channel(false);
    let book = tokio::spawn(p.alerts.clone().run(p.bus.clone(), book_stop_rx.clone()));
    let archive = tokio::spawn(p.events.clone().run(p.bus.clone(), book_stop_rx));
    let ctx = crate::demo_data::Ctx {
        http: &http,
        url: &url,
        admin: &admin,
    };
    crate::demo_soc::run(&ctx).await?;
    crate::demo_sso::run(&ctx, &std::fs::read_to_string(p.dir.ca_cert())?).await?;
    crate::demo_net::run(&ctx).await?;

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_status = Instant::now();
    let (mut published, mut audited) = (0u64, 0u64);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    say(
        "city",
        "simulation running: telemetry, flows, logins, database queries; an attack every 5 s",
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let step = sim.step(p.clock.now(), 40);
        for e in &step.events {
            p.bus.publish(e).await?;
            published += 1;
        }
        // Queued together so the ledger group-commits them.
        let appends = step.audit.into_iter().map(|r| p.ledger.append(r));
        for r in futures::future::join_all(appends).await {
            r?;
            audited += 1;
        }
        for n in step.notes {
            say("attack", n);
        }
        if last_status.elapsed() >= Duration::from_secs(5) {
            last_status = Instant::now();
            let cp = call(
                &http,
                reqwest::Method::GET,
                &api("/api/v1/audit/checkpoint"),
                &auditor,
                None,
            )
            .await?;
            let size = cp["size"].as_u64().unwrap_or(0);
            let seq = size / 2;
            let proof = call(
                &http,
                reqwest::Method::GET,
                &api(&format!(
                    "/api/v1/audit/proof/inclusion?seq={seq}&size={size}"
                )),
                &auditor,
                None,
            )
            .await?;
            let ok = verify_proof_locally(&cp, &proof).unwrap_or(false);
            say(
                "ledger",
                format!(
                    "{published} events published, {} consumed by the SOC group, {audited} city audit records; signed checkpoint covers {size}; inclusion proof of #{seq} {}",
                    seen.load(Ordering::Relaxed),
                    if ok { "verified" } else { "FAILED" }
                ),
            );
        }
    }
    let report = call(
        &http,
        reqwest::Method::GET,
        &api("/api/v1/audit/report?since=1h"),
        &auditor,
        None,
    )
    .await?;
    say(
        "review",
        format!(
            "audit review: {} records, {} failures/denials, {} privileged actions; most failing actor: {}",
            report["total"],
            report["failure_count"],
            report["privileged_count"],
            report["top_failing_actors"][0]
        ),
    );
    let _ = book_stop.send(true);
    let _ = book.await;
    let _ = archive.await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    p.audit_system(
        "platform.stop",
        "stop",
        serde_json::json!({ "mode": "demo" }),
    )
    .await?;
    p.close().await;
    let ok =
        crate::audit_cmd::verify_cmd(p.dir.root(), p.ledger.verifier_keys(), None, false, false)
            .await?;
    println!(
        "\nDemo finished; offline verification {}. Data directory: {}",
        if ok { "passed" } else { "FAILED" },
        p.dir.root().display()
    );
    Ok(())
}

fn verify_proof_locally(cp: &serde_json::Value, proof: &serde_json::Value) -> Option<bool> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let vk = cf_ledger::NoteVerifier::from_vkey(cp["verifier_key"].as_str()?).ok()?;
    let checkpoint =
        cf_ledger::Checkpoint::open(cp["note"].as_str()?, cp["origin"].as_str()?, &[vk]).ok()?;
    let leaf = b64.decode(proof["leaf_hash"].as_str()?).ok()?;
    let path: Vec<Vec<u8>> = proof["proof"]
        .as_array()?
        .iter()
        .filter_map(|h| b64.decode(h.as_str()?).ok())
        .collect();
    Some(
        cf_ledger::verify_inclusion(
            proof["seq"].as_u64()?,
            checkpoint.size,
            &leaf,
            &path,
            &checkpoint.root,
        )
        .is_ok(),
    )
}
