//! Device trust through a real Mosquitto (issue 5, DEV-1, AVL-2, INT-1): the broker this crate
//! configures admits only enrolled devices, revocation reaches it by CRL + reload, devices reach
//! only their own topics, signed telemetry flows to the verifier, quarantine cuts a device off and
//! sends it a command, and a broker restart or a device reboot raises no false alarm.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cf_core::{Clock, SystemClock};
use cf_crypto::devkey::{DeviceSigner, KeyAlg};
use cf_device::registry::NewDevice;
use cf_device::telemetry::Envelope;
use cf_mqtt::broker::{self, BrokerLayout, INGEST_IDENTITY, MosquittoGateway};
use cf_platform::alarm::Alarms;
use cf_platform::devices::{DeviceCa, DeviceConfig, DeviceService};
use cf_platform::ports::{BusError, EventBus, Subscription};
use cf_platform::tokens::RequestContext;
use cf_platform::{AuditLedger, LedgerConfig, Metrics, Principal, authz};
use rumqttc::{AsyncClient, Event, Packet, QoS};

#[derive(Debug, Default)]
struct Bus {
    events: Mutex<Vec<cf_event::Event>>,
}

#[async_trait::async_trait]
impl EventBus for Bus {
    fn backend(&self) -> &'static str {
        "test"
    }
    async fn publish(&self, e: &cf_event::Event) -> Result<(), BusError> {
        self.events.lock().unwrap().push(e.clone());
        Ok(())
    }
    async fn subscribe(&self, _: &str, _: &str) -> Result<Subscription, BusError> {
        Err(BusError::Backend("unused".into()))
    }
}

impl Bus {
    fn alerts(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.topic.starts_with("alert."))
            .map(|e| e.topic.clone())
            .collect()
    }
}

struct Broker {
    child: Child,
    conf: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl Broker {
    fn start(bin: &std::path::Path, conf: &std::path::Path, port: u16) -> Broker {
        let child = Command::new(bin)
            .arg("-c")
            .arg(conf)
            .spawn()
            .expect("start mosquitto");
        let b = Broker {
            child,
            conf: conf.to_path_buf(),
            bin: bin.to_path_buf(),
            port,
        };
        for _ in 0..100 {
            if cf_testkit::tcp_open(&format!("127.0.0.1:{port}")) {
                return b;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mosquitto did not listen on {port}");
    }
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Broker::start(&self.bin.clone(), &self.conf.clone(), self.port);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages a device received: (topic, payload).
type Inbox = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A device's MQTT connection: publishes, and collects what arrives on its control topic.
struct DeviceConn {
    client: AsyncClient,
    inbox: Inbox,
    connected: tokio::sync::watch::Receiver<Option<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DeviceConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn device_conn(id: &str, port: u16, ca: &str, cert: &str, key: &str) -> DeviceConn {
    let tls = cf_mqtt::client_tls(ca, cert, key).unwrap();
    let mut o = cf_mqtt::options(id, "127.0.0.1", port, tls);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut ev) = AsyncClient::new(o, 100);
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let (tx, connected) = tokio::sync::watch::channel(None);
    let ib = inbox.clone();
    let c = client.clone();
    let control = format!("city/haidian/{id}/control");
    let task = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    // Clean sessions forget subscriptions, so a device subscribes on every connect.
                    let _ = c.subscribe(control.clone(), QoS::AtLeastOnce).await;
                    tx.send_replace(Some(true));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    ib.lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => {
                    tx.send_replace(Some(false));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    DeviceConn {
        client,
        inbox,
        connected,
        task,
    }
}

/// Connected within 5 s.
async fn wait_connected(c: &mut DeviceConn) -> bool {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.connected.wait_for(|v| *v == Some(true)),
    )
    .await;
    matches!(r, Ok(Ok(_)))
}

/// The first connection attempt failed (and none succeeded).
async fn refused(c: &mut DeviceConn) -> bool {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.connected.wait_for(|v| v.is_some()),
    )
    .await;
    matches!(r, Ok(Ok(v)) if *v == Some(false))
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_through_a_real_mosquitto() {
    let Some(bin) = cf_testkit::mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now();
    let ca = cf_pki::new_ca("Test City Devices", now, 1).unwrap();
    let server =
        cf_pki::issue_server_cert(&ca.cert_pem, &ca.key_pem, &["127.0.0.1".into()], now, 1)
            .unwrap();
    let port = cf_testkit::free_port();
    let layout = BrokerLayout {
        dir: dir.path().join("broker"),
        bind: "127.0.0.1".into(),
        port,
        user: Some("root".into()),
    };

    // The platform: store, ledger, device service with the Mosquitto gateway.
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = Arc::new(cf_store::SqlStore::connect(&url, None).await.unwrap());
    let bus = Arc::new(Bus::default());
    let clock: cf_core::SharedClock = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::default());
    let alarms = Alarms::new(bus.clone(), clock.clone(), metrics.clone(), "t");
    let signer = cf_ledger::NoteSigner::new(
        "t.city/audit",
        cf_crypto::Ed25519SigningKey::from_seed(&[1; 32]),
    )
    .unwrap();
    let ledger = AuditLedger::open(
        store.clone(),
        signer,
        LedgerConfig {
            origin: "t.city/audit".into(),
            ..LedgerConfig::default()
        },
        clock.clone(),
        alarms,
        metrics,
    )
    .await
    .unwrap();
    let ik = cf_pki::device::device_key(KeyAlg::EcdsaP256, INGEST_IDENTITY).unwrap();
    let icert = cf_pki::device::issue_device_cert(
        &ca.cert_pem,
        &ca.key_pem,
        &ik.csr_der,
        INGEST_IDENTITY,
        &[7; 16],
        now,
        24,
    )
    .unwrap();
    let itls = cf_mqtt::client_tls(&ca.cert_pem, &icert, ik.key_pem.expose()).unwrap();
    let (iclient, ievents) =
        cf_mqtt::ingest::connect(cf_mqtt::options(INGEST_IDENTITY, "127.0.0.1", port, itls));
    let gateway = Arc::new(MosquittoGateway::new(layout.clone(), iclient.clone()));
    let svc = DeviceService::open(
        store.clone(),
        ledger.clone(),
        clock.clone(),
        Arc::new(cf_crypto::OsRng),
        bus.clone(),
        Some(gateway),
        DeviceCa {
            cert_pem: ca.cert_pem.clone(),
            key_pem: ca.key_pem.clone(),
        },
        DeviceConfig::default(),
    )
    .await
    .unwrap();
    broker::write_files(
        &layout,
        &ca.cert_pem,
        &server.cert_pem,
        server.key_pem.expose(),
        &svc.broker_policy().await.unwrap(),
    )
    .unwrap();
    let mut mosq = Broker::start(&bin, &layout.conf(), port);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stats_tx, stats_rx) = tokio::sync::watch::channel(Default::default());
    let logs = cf_platform::logs::LogIntake::new(bus.clone(), clock.clone(), "t", Arc::default());
    let ingest = tokio::spawn(cf_mqtt::ingest::run(
        svc.clone(),
        Some(logs),
        iclient,
        ievents,
        stop_rx,
        stats_tx,
    ));
    eventually("ingest connected", || stats_rx.borrow().connects >= 1).await;

    // Register and enroll two sensors (the CSR never leaves the device's key).
    let admin = Principal {
        id: "tok-admin".into(),
        roles: vec![authz::Role::Admin],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let op = Principal {
        id: "tok-op".into(),
        roles: vec![authz::Role::Operator],
        must_change: false,
        org: None,
        assurance: Default::default(),
    };
    let manage = authz::authorize(&admin, authz::Action::ManageDevices).unwrap();
    let ctx = RequestContext::internal();
    let mut keys = Vec::new();
    for id in ["env-1", "env-2"] {
        svc.register(
            &manage,
            &ctx,
            NewDevice {
                id: id.into(),
                kind: "environment-sensor".into(),
                layer: cf_core::Layer::TerminalPerception,
                district: "haidian".into(),
                lat: 39.96,
                lon: 116.3,
                owner_org: "ecology".into(),
                vendor: "Acme".into(),
                model: "ENV-1".into(),
                firmware: "1.0".into(),
            },
        )
        .await
        .unwrap();
        let (tok, _, _) = svc.enrollment_token(&manage, &ctx, id).await.unwrap();
        let k = cf_pki::device::device_key(KeyAlg::EcdsaP256, id).unwrap();
        let e = svc.enroll(&ctx, &tok, &k.csr_der).await.unwrap();
        keys.push((k, e));
    }
    // Grants reach the broker shortly after enrollment (pushed in the background, coalesced).
    eventually("both devices granted in the ACL", || {
        std::fs::read_to_string(layout.acl()).is_ok_and(|acl| {
            acl.contains("user env-2\ntopic read city/haidian/env-2/control\n")
                && acl.contains("user env-1\n")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // An enrolled device connects and its signed telemetry is verified by the platform.
    let (k1, e1) = &keys[0];
    let signer1 = DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &k1.pkcs8).unwrap();
    let mut d1 = device_conn(
        "env-1",
        port,
        &ca.cert_pem,
        &e1.cert_pem,
        k1.key_pem.expose(),
    );
    assert!(wait_connected(&mut d1).await, "enrolled device refused");
    let ts = || SystemClock.now().unix_millis();
    for seq in 1..=20u64 {
        let m = Envelope::seal(
            &signer1,
            "env-1",
            1,
            seq,
            ts(),
            br#"{"type":"reading","metrics":{"temperature_c":18.5}}"#,
        )
        .unwrap();
        d1.client
            .publish("city/haidian/env-1/telemetry", QoS::AtLeastOnce, false, m)
            .await
            .unwrap();
    }
    eventually("20 readings accepted", || svc.stats().accepted == 20).await;

    // Device logs through the broker reach the log intake under the identity the broker
    // authenticated (SA-1); a device cannot write into another device's log.
    for (topic, line) in [
        (
            "city/haidian/env-1/log",
            &b"<12>Oct 11 22:14:15 env-1 sensord[42]: calibration drift 3.2% on channel 2"[..],
        ),
        (
            "city/haidian/env-1/log",
            &br#"{"event":"cabinet_opened","cabinet":7}"#[..],
        ),
        (
            "city/haidian/env-2/log",
            &b"<12>Oct 11 22:14:16 env-2 sensord[43]: forged"[..],
        ),
    ] {
        d1.client
            .publish(topic, QoS::AtLeastOnce, false, line.to_vec())
            .await
            .unwrap();
    }
    let device_logs = || -> Vec<(String, String)> {
        bus.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.source.starts_with("mqtt://"))
            .map(|e| (e.topic.clone(), e.source.clone()))
            .collect()
    };
    eventually("device logs on the bus", || device_logs().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        device_logs(),
        [
            ("log.syslog".to_string(), "mqtt://env-1".to_string()),
            ("log.json".to_string(), "mqtt://env-1".to_string())
        ],
        "the forged line on env-2's topic never arrives"
    );
    eventually("connection log seen", || {
        stats_rx.borrow().connections_seen >= 1
    })
    .await;

    // A device cannot publish as another: the broker's ACL drops it before the platform sees it,
    // and a forged envelope on its own topic is refused with an alert.
    let fake = Envelope::seal(&signer1, "env-2", 1, 1, ts(), b"{}").unwrap();
    d1.client
        .publish(
            "city/haidian/env-2/telemetry",
            QoS::AtLeastOnce,
            false,
            fake.clone(),
        )
        .await
        .unwrap();
    d1.client
        .publish(
            "city/haidian/env-1/telemetry",
            QoS::AtLeastOnce,
            false,
            fake,
        )
        .await
        .unwrap();
    eventually("spoofed envelope refused", || {
        bus.alerts()
            .iter()
            .any(|a| a == "alert.device.identity_mismatch")
    })
    .await;
    let before = stats_rx.borrow().messages;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stats_rx.borrow().messages,
        before,
        "the foreign-topic publish never reached ingest"
    );
    assert_eq!(svc.stats().accepted, 20);

    // A certificate from another CA is refused at the TLS handshake.
    let rogue_ca = cf_pki::new_ca("Rogue", now, 1).unwrap();
    let rk = cf_pki::device::device_key(KeyAlg::EcdsaP256, "env-1").unwrap();
    let rcert = cf_pki::device::issue_device_cert(
        &rogue_ca.cert_pem,
        &rogue_ca.key_pem,
        &rk.csr_der,
        "env-1",
        &[3; 16],
        now,
        1,
    )
    .unwrap();
    let mut rogue = device_conn("rogue", port, &ca.cert_pem, &rcert, rk.key_pem.expose());
    assert!(
        refused(&mut rogue).await,
        "a foreign certificate must be refused"
    );

    // Broker restart and device reboot: no false alarms, nothing lost.
    let alerts_before = bus.alerts().len();
    mosq.restart();
    let (k2, e2) = &keys[1];
    let signer2 = DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &k2.pkcs8).unwrap();
    let mut d2 = device_conn(
        "env-2",
        port,
        &ca.cert_pem,
        &e2.cert_pem,
        k2.key_pem.expose(),
    );
    assert!(wait_connected(&mut d2).await);
    eventually("ingest reconnected", || stats_rx.borrow().connects >= 2).await;
    for (boot, seq) in [(4u32, 1u64), (4, 2), (4, 3), (5, 1), (5, 2)] {
        let m = Envelope::seal(
            &signer2,
            "env-2",
            boot,
            seq,
            ts(),
            br#"{"type":"reading","metrics":{"humidity_pct":40}}"#,
        )
        .unwrap();
        d2.client
            .publish("city/haidian/env-2/telemetry", QoS::AtLeastOnce, false, m)
            .await
            .unwrap();
    }
    eventually("readings after restart and reboot", || {
        svc.stats().accepted == 25
    })
    .await;
    assert_eq!(
        bus.alerts().len(),
        alerts_before,
        "no false alarm: {:?}",
        bus.alerts()
    );

    // Quarantine: the command reaches the device, its publishes stop counting, and it cannot
    // come back because the broker reloaded the CRL.
    let qa = authz::authorize(&op, authz::Action::QuarantineDevices).unwrap();
    let mut d1 = d1;
    assert!(wait_connected(&mut d1).await);
    let rep = svc
        .quarantine(&qa, &ctx, "env-1", "suspected clone")
        .await
        .unwrap();
    assert!(
        rep.certificate_revoked && rep.crl_pushed && rep.command_sent,
        "{rep:?}"
    );
    eventually("quarantine command delivered", || {
        d1.inbox.lock().unwrap().iter().any(|(t, p)| {
            t == "city/haidian/env-1/control" && String::from_utf8_lossy(p).contains("quarantine")
        })
    })
    .await;
    let m = Envelope::seal(&signer1, "env-1", 1, 99, ts(), b"{}").unwrap();
    d1.client
        .publish("city/haidian/env-1/telemetry", QoS::AtLeastOnce, false, m)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        svc.stats().accepted,
        25,
        "a quarantined device's data is not accepted"
    );
    drop(d1);
    let mut again = device_conn(
        "env-1",
        port,
        &ca.cert_pem,
        &e1.cert_pem,
        k1.key_pem.expose(),
    );
    assert!(
        refused(&mut again).await,
        "revoked certificate must be refused after the CRL reload"
    );

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), ingest).await;
    ledger.shutdown().await;
}
