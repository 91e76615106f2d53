//! NetFlow/IPFIX over real UDP (SA-1): two exporters replay real exporter packets (akvorado's
//! fixtures) at the collector; flows reach the bus as OCSF Network Activity, each exporter's
//! templates stay its own, and an undecodable datagram is published with its bytes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cf_collect::Counters;
use cf_platform::logs::LogIntake;
use cf_platform::ports::EventBus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_from_two_exporters_reach_the_bus() {
    let Some(data) = cf_testkit::datasets() else {
        return;
    };
    let dir = data.join("soc/netflow/akvorado_decoder_fixtures/netflow");
    let bus: Arc<dyn EventBus> = Arc::new(cf_bus::MemoryBus::new());
    let mut sub = bus.subscribe("log.>", "test").await.unwrap();
    let counters = Arc::new(Counters::default());
    let sink = LogIntake::new(
        bus.clone(),
        Arc::new(cf_core::SystemClock),
        "t",
        counters.clone(),
    );
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = sock.local_addr().unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(cf_collect::netflow_udp(sock, sink, stop));

    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |s: &std::net::UdpSocket, f: &str| {
        for (_, p) in cf_testkit::pcap_udp(&dir.join(f)) {
            s.send_to(&p, to).unwrap();
        }
    };
    // Exporter A: NetFlow v5 and a v9 template before its data.
    send(&a, "nfv5.pcap");
    send(&a, "template.pcap");
    send(&a, "data.pcap");
    // Exporter B: data whose template only A sent, then IPFIX template then data, then junk.
    send(&b, "data.pcap");
    send(&b, "ipfixprobe-templates.pcap");
    send(&b, "ipfixprobe-data.pcap");
    b.send_to(b"\x00\x09not a flow export", to).unwrap();

    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), sub.rx.recv()).await {
            Ok(Some(d)) => {
                events.push(d.event.clone());
                let _ = d.ack().await;
            }
            _ if counters.received.load(Ordering::Relaxed) >= 7 => break,
            _ => {}
        }
    }
    let flows: Vec<&cf_event::Event> = events.iter().filter(|e| e.topic == "log.netflow").collect();
    assert!(
        flows.len() > 29,
        "the v5 capture alone has 29 flows: {}",
        flows.len()
    );
    assert!(flows.iter().all(|e| e.source == "netflow://127.0.0.1"));
    let versions: std::collections::BTreeSet<u64> = flows
        .iter()
        .filter_map(|e| e.payload["flow"]["version"].as_u64())
        .collect();
    assert_eq!(versions, [5, 9, 10].into_iter().collect());
    assert!(flows.iter().all(|e| e.payload["ocsf"]["class_uid"] == 4001));
    // B's copy of data.pcap waits for B's own template: held, not decoded with A's.
    assert_eq!(counters.flows_waiting_template.load(Ordering::Relaxed), 1);
    let junk: Vec<_> = events
        .iter()
        .filter(|e| e.topic == "log.malformed")
        .collect();
    assert_eq!(junk.len(), 1, "{junk:?}");
    assert!(
        junk[0].payload["raw_base64"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(counters.flows.load(Ordering::Relaxed), flows.len() as u64);
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}
