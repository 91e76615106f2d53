//! Wiring: open the configured store and bus, the ledger and the services, and serve the API.
//! This is the only place the wall clock and the OS random source are chosen.

use std::sync::Arc;

use anyhow::{Context, Result};
use cf_core::{SharedClock, SystemClock};
use cf_platform::alarm::Alarms;
use cf_platform::ports::{EventBus, StateStore};
use cf_platform::tokens::{NewToken, Tokens};
use cf_platform::{AuditLedger, Metrics};
use cf_store::SqlStore;

use crate::config::Config;
use crate::datadir::DataDir;

/// A running platform (without its HTTP listener).
pub struct Platform {
    /// Data directory.
    pub dir: DataDir,
    /// Store.
    pub store: Arc<SqlStore>,
    /// Bus.
    pub bus: Arc<dyn EventBus>,
    /// Ledger.
    pub ledger: AuditLedger,
    /// Tokens.
    pub tokens: Tokens,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Clock.
    pub clock: SharedClock,
    /// Key management.
    pub kms: cf_platform::kms::Kms,
    /// Datasets, masked reads, exports.
    pub data: cf_platform::dataflow::DataService,
    /// Device registry, enrollment, telemetry.
    pub devices: cf_platform::devices::DeviceService,
    /// Accounts, login, sessions.
    pub identity: cf_platform::identity::IdentityService,
    /// The OpenID Connect provider.
    pub oidc: cf_platform::oidc::OidcProvider,
    /// SCIM provisioning.
    pub scim: cf_platform::scim::ScimService,
    /// Rights use and compliance.
    pub rights: cf_platform::rights::RightsService,
    /// Log intake shared by syslog sockets and HTTPS batches.
    pub logs: cf_platform::logs::LogIntake,
    /// The alert book.
    pub alerts: cf_platform::alerts::AlertBook,
    /// The event archive.
    pub events: cf_platform::archive::EventArchive,
    /// Sigma rules on the bus, when configured.
    pub sigma: Option<cf_platform::sigma::SigmaStream>,
    /// Detection rules' state and suppressions (empty when no rules are configured).
    pub rules: cf_platform::rules::RuleBook,
    /// The MQTT ingest session, when a broker is configured (taken by [`Platform::spawn_devices`]).
    mqtt: std::sync::Mutex<Option<(rumqttc::AsyncClient, rumqttc::EventLoop)>>,
}

impl Platform {
    /// Open everything the configuration names.
    pub async fn open(cfg: &Config) -> Result<Platform> {
        let clock: SharedClock = Arc::new(SystemClock);
        let dir = DataDir::open(&cfg.data_dir)?;
        let store = Arc::new(
            SqlStore::connect(&cfg.storage_url, cfg.storage_schema.as_deref())
                .await
                .with_context(|| {
                    format!(
                        "cannot open the state store {}",
                        cf_store::redact_url(&cfg.storage_url)
                    )
                })?,
        );
        let bus = cf_bus::connect(&cfg.bus(), Some(&cfg.bus_stream))
            .await
            .with_context(|| {
                format!(
                    "cannot open the event bus {}",
                    cf_store::redact_url(&cfg.bus())
                )
            })?;
        let metrics = Arc::new(Metrics::default());
        let alarms = Alarms::new(bus.clone(), clock.clone(), metrics.clone(), &cfg.node_name);
        let signer = dir.ledger_signer(&cfg.ledger.origin)?;
        let ledger = AuditLedger::open(
            store.clone() as Arc<dyn StateStore>,
            signer,
            cfg.ledger.clone(),
            clock.clone(),
            alarms,
            metrics.clone(),
        )
        .await
        .context("cannot open the audit ledger")?;
        let tokens = Tokens::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::OsRng),
        );
        let root = dir
            .kms_root(&cfg.kms)
            .context("cannot unseal the KMS root key")?;
        let kms = cf_platform::kms::Kms::open(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::BufferedOsRng::default()),
            root,
        )
        .await?;
        let data = cf_platform::dataflow::DataService::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_store::sample::SqlDataSource),
            cf_platform::dataflow::default_policies(),
            kms.internal_key("masking"),
            kms.internal_key("watermark"),
            Arc::new(cf_crypto::OsRng),
        )?;
        let (devices, mqtt) = open_devices(cfg, &dir, &store, &ledger, &clock, &bus).await?;
        let identity = cf_platform::identity::IdentityService::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::OsRng),
            cfg.argon2,
            kms.internal_key("totp"),
            Some(Arc::new(Outbox {
                dir: dir.root().join("outbox"),
            })),
        )?;
        let oidc = cf_platform::oidc::OidcProvider::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::OsRng),
            identity.clone(),
            kms.internal_key("oidc-signing-keys"),
            cfg.public_url
                .as_deref()
                .unwrap_or(&format!("https://{}", cfg.listen)),
        );
        let scim = cf_platform::scim::ScimService::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::OsRng),
            identity.clone(),
        );
        scim.set_group_roles(&cfg.scim_group_roles);
        let rights = cf_platform::rights::RightsService::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            identity.clone(),
        );
        let logs = cf_platform::logs::LogIntake::new(
            bus.clone(),
            clock.clone(),
            &cfg.node_name,
            Arc::default(),
        )
        .with_concurrency(cfg.ingest_concurrency)
        .with_internal_networks(cfg.internal_networks.clone());
        identity.set_events(logs.clone());
        identity.set_risk_policy(cfg.risk);
        if let Some(path) = &cfg.geoip_database {
            identity.set_geo(Arc::new(crate::geoip::MmdbGeo::open(path)?));
        }
        let alerts =
            cf_platform::alerts::AlertBook::new(store.clone(), ledger.clone(), clock.clone());
        let events_dir = cfg.events_dir();
        let event_store = cf_evstore::TantivyEventStore::open(&events_dir)
            .with_context(|| format!("cannot open the event store {}", events_dir.display()))?;
        let events = cf_platform::archive::EventArchive::new(
            Arc::new(event_store),
            ledger.clone(),
            clock.clone(),
            cfg.events.1,
        );
        let mut catalogue = Vec::new();
        let mut refused = Vec::new();
        let sigma = match &cfg.sigma_rules {
            None => None,
            Some(path) => {
                let loaded = crate::hunt::load_rules(path)
                    .with_context(|| format!("detect.sigma_rules: {}", path.display()))?;
                println!(
                    "  sigma           {} rules, {} correlations from {} ({} refused)",
                    loaded.set.rules().len(),
                    loaded.correlator.rules().count(),
                    path.display(),
                    loaded.refused.len()
                );
                for (p, why) in loaded.refused.iter().take(5) {
                    tracing::info!(rule = %p.display(), reason = %why, "sigma rule refused");
                }
                for r in loaded.set.rules() {
                    catalogue.push(cf_platform::rules::RuleMeta {
                        id: r.id.clone(),
                        title: r.title.clone(),
                        level: r.level.as_str().to_string(),
                        tags: r.tags.clone(),
                        kind: "detection",
                    });
                }
                for r in loaded.correlator.rules() {
                    catalogue.push(cf_platform::rules::RuleMeta {
                        id: r.id.clone(),
                        title: r.title.clone(),
                        level: r.level.map_or("medium", |l| l.as_str()).to_string(),
                        tags: r.tags.clone(),
                        kind: "correlation",
                    });
                }
                refused = loaded
                    .refused
                    .iter()
                    .map(|(p, why)| (p.display().to_string(), why.to_string()))
                    .collect();
                Some(cf_platform::sigma::SigmaStream::new(
                    loaded.set,
                    loaded.correlator,
                    clock.clone(),
                    &cfg.node_name,
                ))
            }
        };
        let rules = cf_platform::rules::RuleBook::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(cf_crypto::OsRng),
            catalogue,
            refused,
        );
        rules
            .refresh()
            .await
            .context("cannot read the rules' state")?;
        let sigma = sigma.map(|s| s.with_controls(rules.controls()));
        Ok(Platform {
            alerts,
            events,
            sigma,
            rules,
            logs,
            identity,
            oidc,
            scim,
            rights,
            devices,
            mqtt: std::sync::Mutex::new(mqtt),
            data,
            kms,
            dir,
            store,
            bus,
            ledger,
            tokens,
            metrics,
            clock,
        })
    }

    /// Create the bootstrap credential if there is no token yet.
    pub async fn bootstrap(&self) -> Result<Option<NewToken>> {
        Ok(self.tokens.bootstrap_if_empty().await?)
    }

    /// The API state.
    pub fn app_state(&self) -> cf_api::AppState {
        cf_api::AppState {
            tokens: self.tokens.clone(),
            ledger: self.ledger.clone(),
            store: self.store.clone(),
            bus: self.bus.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
            started: self.clock.now(),
            kms: self.kms.clone(),
            data: self.data.clone(),
            devices: self.devices.clone(),
            identity: self.identity.clone(),
            oidc: self.oidc.clone(),
            scim: self.scim.clone(),
            rights: self.rights.clone(),
            logs: self.logs.clone(),
            alerts: self.alerts.clone(),
            rules: self.rules.clone(),
            sigma: self.sigma.clone(),
            events: self.events.clone(),
        }
    }

    /// Start the device background work: the MQTT ingest session (if a broker is configured) and
    /// the periodic tick (district silence, replay-state saves). Stops when `stop` turns true.
    pub fn spawn_devices(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let taken = self.mqtt.lock().ok().and_then(|mut m| m.take());
        if let Some((client, events)) = taken {
            let (stats, _) = tokio::sync::watch::channel(Default::default());
            tasks.push(tokio::spawn(cf_mqtt::ingest::run(
                self.devices.clone(),
                Some(self.logs.clone()),
                client,
                events,
                stop.clone(),
                stats,
            )));
        }
        // Once a minute: expired authorization codes, tokens and grants are deleted, and the
        // rights use noted on this node is saved.
        let oidc = self.oidc.clone();
        let rights = self.rights.clone();
        let mut st = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                    _ = st.changed() => return,
                }
                if let Err(e) = oidc.prune().await {
                    tracing::warn!(error = %e, "pruning expired OIDC tokens failed");
                }
                if let Err(e) = rights.flush().await {
                    tracing::warn!(error = %e, "saving rights use failed");
                }
            }
        }));
        // Every alert on the bus lands in the alert book.
        tasks.push(tokio::spawn(
            self.alerts.clone().run(self.bus.clone(), stop.clone()),
        ));
        if let Some(s) = &self.sigma {
            tasks.push(tokio::spawn(s.clone().run(self.bus.clone(), stop.clone())));
        }
        // Rule changes made through another node reach this one's detector within seconds.
        {
            let rules = self.rules.clone();
            let mut stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = every.tick() => {
                            if let Err(e) = rules.refresh().await {
                                tracing::warn!(error = %e, "rule state not refreshed");
                            }
                        }
                        _ = stop.changed() => break,
                    }
                }
            }));
        }
        // Every log and alert lands in the event store; retention runs hourly.
        tasks.push(tokio::spawn(
            self.events.clone().run(self.bus.clone(), stop.clone()),
        ));
        tasks.push(tokio::spawn(
            self.events
                .clone()
                .run_retention(std::time::Duration::from_secs(3600), stop.clone()),
        ));
        let svc = self.devices.clone();
        let mut stop = stop;
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        if let Err(e) = svc.tick().await {
                            tracing::error!(error = %e, "device tick failed");
                        }
                    }
                    _ = stop.changed() => if *stop.borrow() {
                        // Save replay state one last time so a restart cannot reopen windows.
                        let _ = svc.tick().await;
                        return;
                    },
                }
            }
        }));
        tasks
    }

    /// Audit a platform life-cycle event.
    pub async fn audit_system(
        &self,
        event_type: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let rec = cf_platform::audit::system_record(&self.clock, event_type, "platform", action)
            .privileged()
            .with_detail(detail);
        self.ledger.append(rec).await?;
        Ok(())
    }

    /// Serve the API on `ep` in a task; sending on the returned channel starts a graceful stop.
    pub fn spawn_api(
        &self,
        body_bytes: usize,
        request_timeout: std::time::Duration,
        ep: Endpoint,
    ) -> (
        tokio::task::JoinHandle<std::io::Result<()>>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let router = cf_api::router(
            self.app_state(),
            cf_api::Limits {
                body_bytes,
                request_timeout,
            },
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(cf_api::serve(ep.listener, router, ep.tls, async move {
            let _ = stop_rx.await;
        }));
        (server, stop_tx)
    }

    /// Commit what is queued, sign a final checkpoint, close storage.
    pub async fn close(&self) {
        self.ledger.shutdown().await;
        self.store.close().await;
    }
}

/// A bound HTTPS (or HTTP) endpoint ready to serve.
pub struct Endpoint {
    /// Listener.
    pub listener: tokio::net::TcpListener,
    /// TLS configuration, if on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The URL it serves.
    pub url: String,
}

/// Bind the configured address and prepare TLS.
pub async fn bind(cfg: &Config, p: &Platform) -> Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let local = listener.local_addr()?;
    let tls = if cfg.tls {
        let (chain, key) = match &cfg.cert_files {
            Some((c, k)) => (
                std::fs::read_to_string(c)
                    .with_context(|| format!("server.cert_file {}", c.display()))?,
                cf_core::Secret::new(
                    std::fs::read_to_string(k)
                        .with_context(|| format!("server.key_file {}", k.display()))?,
                ),
            ),
            None => p.dir.tls_material(&cfg.hostnames, p.clock.now())?,
        };
        // Devices may present their certificate (EST re-enrollment, HTTPS telemetry).
        let (ca_pem, _) = p.dir.ca(p.clock.now())?;
        Some(cf_api::tls::server_config_with_clients(
            &chain,
            key.expose(),
            Some(&ca_pem),
        )?)
    } else {
        None
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Endpoint {
        listener,
        tls,
        url: format!("{scheme}://{local}"),
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // Without a signal handler (some sandboxes), wait for the other signal or the deadline
        // instead of stopping at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `chengfang serve`.
pub async fn serve(cfg: Config) -> Result<()> {
    let p = Platform::open(&cfg).await?;
    p.audit_system("platform.start", "start", serde_json::json!({ "node": cfg.node_name, "storage": p.store.backend(), "bus": p.bus.backend() })).await?;
    let ep = bind(&cfg, &p).await?;
    p.oidc
        .set_issuer(cfg.public_url.as_deref().unwrap_or(&ep.url));
    p.oidc.prepare().await?;
    p.scim
        .set_base(cfg.public_url.as_deref().unwrap_or(&ep.url));
    match cf_identity::webauthn::RelyingParty::for_url(
        cfg.public_url.as_deref().unwrap_or(&ep.url),
        "Chengfang",
    ) {
        Some(rp) => p.identity.set_webauthn(rp),
        None => tracing::warn!(
            "passkeys are unavailable: set server.public_url to an https URL with a domain name"
        ),
    }
    println!("Chengfang serving on {}", ep.url);
    println!("  data directory  {}", p.dir.root().display());
    println!(
        "  state store     {} ({})",
        cf_store::redact_url(&cfg.storage_url),
        p.store.backend()
    );
    println!(
        "  event bus       {} ({})",
        cf_store::redact_url(&cfg.bus()),
        p.bus.backend()
    );
    println!(
        "  ledger origin   {}   verifier key {}",
        cfg.ledger.origin,
        p.ledger.verifier_key()
    );
    if ep.tls.is_some() && cfg.cert_files.is_none() {
        println!(
            "  platform CA     {} (trust it in clients: curl --cacert ...)",
            p.dir.ca_cert().display()
        );
    }
    if let Some(t) = p.bootstrap().await? {
        println!();
        println!(
            "  One-time bootstrap administrator credential (shown once; valid 7 days; it must be exchanged at first use):"
        );
        println!("    {}", t.token.expose());
        // For automation: also hand it over through an owner-only file that must not exist yet.
        if let Ok(f) = std::env::var("CHENGFANG_BOOTSTRAP_TOKEN_FILE") {
            let path = std::path::PathBuf::from(&f);
            if path.exists() {
                anyhow::bail!(
                    "CHENGFANG_BOOTSTRAP_TOKEN_FILE {f} exists already; refusing to overwrite it"
                );
            }
            crate::datadir::write_private(&path, t.token.expose())?;
            println!("  (also written to {f}, readable by this user only)");
        }
        println!(
            "  Exchange it:  curl --cacert {} -X POST -H 'Authorization: Bearer <token>' {}/api/v1/auth/rotate",
            p.dir.ca_cert().display(),
            ep.url
        );
        println!();
    }
    let (server, stop_tx) = p.spawn_api(cfg.body_limit_bytes, cfg.request_timeout, ep);
    let (dev_stop, dev_stop_rx) = tokio::sync::watch::channel(false);
    let mut dev_tasks = p.spawn_devices(dev_stop_rx.clone());
    let sink = p.logs.clone();
    if let Some(a) = cfg.netflow {
        let sock = tokio::net::UdpSocket::bind(a)
            .await
            .with_context(|| format!("collect.netflow_udp: cannot bind {a}"))?;
        println!("  netflow/ipfix   udp://{}", sock.local_addr()?);
        dev_tasks.push(tokio::spawn(cf_collect::netflow_udp(
            sock,
            sink.clone(),
            dev_stop_rx.clone(),
        )));
    }
    if let Some(a) = cfg.syslog.0 {
        let sock = tokio::net::UdpSocket::bind(a)
            .await
            .with_context(|| format!("collect.syslog_udp: cannot bind {a}"))?;
        println!("  syslog          udp://{}", sock.local_addr()?);
        dev_tasks.push(tokio::spawn(cf_collect::udp(
            sock,
            sink.clone(),
            dev_stop_rx.clone(),
        )));
    }
    if let Some(a) = cfg.syslog.1 {
        let l = tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("collect.syslog_tcp: cannot bind {a}"))?;
        println!("  syslog          tcp://{}", l.local_addr()?);
        dev_tasks.push(tokio::spawn(cf_collect::tcp(
            l,
            sink.clone(),
            dev_stop_rx.clone(),
        )));
    }
    if let Some(a) = cfg.syslog_tls {
        let (chain, key) = match &cfg.cert_files {
            Some((c, k)) => (
                std::fs::read_to_string(c)?,
                cf_core::Secret::new(std::fs::read_to_string(k)?),
            ),
            None => p.dir.tls_material(&cfg.hostnames, p.clock.now())?,
        };
        let tls = cf_api::tls::server_config(&chain, key.expose())?;
        let l = tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("collect.syslog_tls: cannot bind {a}"))?;
        println!("  syslog          tls://{}", l.local_addr()?);
        dev_tasks.push(tokio::spawn(cf_collect::tls(l, tls, sink, dev_stop_rx)));
    }
    if let Some((h, port)) = &cfg.devices.broker {
        println!(
            "  device broker   mqtts://{h}:{port} (files in {})",
            cfg.devices.broker_dir.display()
        );
    }
    shutdown_signal().await;
    let _ = dev_stop.send(true);
    for t in dev_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(());
    // Whatever happened to the listener, the ledger is still closed cleanly below.
    match tokio::time::timeout(cfg.shutdown_grace, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "the HTTP server failed"),
        Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server task failed"),
        Err(_) => tracing::warn!(
            "in-flight requests did not finish within {:?}",
            cfg.shutdown_grace
        ),
    }
    if let Err(e) = p
        .audit_system(
            "platform.stop",
            "stop",
            serde_json::json!({ "node": cfg.node_name }),
        )
        .await
    {
        tracing::error!(error = %e, "could not audit the shutdown");
    }
    p.close().await;
    println!("Chengfang stopped; every acknowledged record is committed.");
    Ok(())
}

type MqttSession = (rumqttc::AsyncClient, rumqttc::EventLoop);

/// The device service, with the Mosquitto gateway and an ingest session when `broker.url` is set.
async fn open_devices(
    cfg: &Config,
    dir: &DataDir,
    store: &Arc<SqlStore>,
    ledger: &AuditLedger,
    clock: &SharedClock,
    bus: &Arc<dyn EventBus>,
) -> Result<(cf_platform::devices::DeviceService, Option<MqttSession>)> {
    let now = clock.now();
    let (ca_pem, ca_key) = dir.ca(now)?;
    let d = &cfg.devices;
    let dcfg = cf_platform::devices::DeviceConfig {
        cert_hours: u32::try_from(d.cert_lifetime.as_secs() / 3600)
            .unwrap_or(72)
            .max(1),
        token_ttl_s: d.token_ttl.as_secs(),
        quarantine_on_firmware_mismatch: d.quarantine_on_firmware_mismatch,
        freshness: cf_device::telemetry::Freshness {
            horizon_ms: i64::try_from(d.freshness_horizon.as_millis()).unwrap_or(300_000),
            max_ahead_ms: i64::try_from(d.max_clock_ahead.as_millis()).unwrap_or(60_000),
        },
        ..Default::default()
    };
    let mut session = None;
    let mut gateway: Option<Arc<dyn cf_platform::ports::DeviceGateway>> = None;
    if let Some((host, port)) = &d.broker {
        // The platform's own MQTT identity: a fresh short-lived certificate at every start.
        let k = cf_pki::device::device_key(
            cf_crypto::devkey::KeyAlg::EcdsaP256,
            cf_mqtt::broker::INGEST_IDENTITY,
        )?;
        let mut serial = [0u8; 16];
        cf_crypto::Rng::fill(&cf_crypto::OsRng, &mut serial)?;
        let cert = cf_pki::device::issue_device_cert(
            &ca_pem,
            &ca_key,
            &k.csr_der,
            cf_mqtt::broker::INGEST_IDENTITY,
            &serial,
            now,
            24 * 30,
        )?;
        let tls = cf_mqtt::client_tls(&ca_pem, &cert, k.key_pem.expose())?;
        let (client, events) = cf_mqtt::ingest::connect(cf_mqtt::options(
            &format!("{}-{}", cf_mqtt::broker::INGEST_IDENTITY, cfg.node_name),
            host,
            *port,
            tls,
        ));
        gateway = Some(Arc::new(cf_mqtt::broker::MosquittoGateway::new(
            broker_layout(cfg, *port),
            client.clone(),
        )));
        session = Some((client, events));
    }
    let svc = cf_platform::devices::DeviceService::open(
        store.clone(),
        ledger.clone(),
        clock.clone(),
        Arc::new(cf_crypto::OsRng),
        bus.clone(),
        gateway,
        cf_platform::devices::DeviceCa {
            cert_pem: ca_pem,
            key_pem: ca_key,
        },
        dcfg,
    )
    .await?;
    Ok((svc, session))
}

/// Where the broker's files are, as `chengfang broker config` writes them.
pub fn broker_layout(cfg: &Config, port: u16) -> cf_mqtt::broker::BrokerLayout {
    cf_mqtt::broker::BrokerLayout {
        dir: cfg.devices.broker_dir.clone(),
        bind: "127.0.0.1".into(),
        port,
        user: None,
    }
}

/// The development one-time-code channel: codes are appended to `<data_dir>/outbox/<user>`
/// (owner-only). Production plugs an SMS or messaging gateway into the same port.
#[derive(Debug)]
struct Outbox {
    dir: std::path::PathBuf,
}

#[async_trait::async_trait]
impl cf_platform::ports::CodeSender for Outbox {
    async fn send(
        &self,
        username: &str,
        purpose: &str,
        code: &str,
    ) -> Result<(), cf_platform::ports::BusError> {
        use std::io::Write;
        let fail =
            |e: std::io::Error| cf_platform::ports::BusError::Backend(format!("outbox: {e}"));
        std::fs::create_dir_all(&self.dir).map_err(fail)?;
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(self.dir.join(username)).map_err(fail)?;
        writeln!(f, "{purpose} {code}").map_err(fail)
    }
}
