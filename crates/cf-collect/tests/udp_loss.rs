//! UDP loss is never silent (issue 6, overload): when senders outrun the intake, the datagrams the
//! kernel drops are counted and raised as an `alarm.ingest.udp_loss` event.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cf_collect::Counters;
use cf_platform::logs::LogIntake;
use cf_platform::ports::EventBus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_drops_are_counted_and_alarmed() {
    if cf_collect::udp_drops(1).is_none() {
        assert!(!cf_testkit::in_ci(), "/proc/net/udp is missing in CI");
        eprintln!("\n*** SKIPPED: no /proc/net/udp ***\n");
        return;
    }
    // A listener with a tiny receive buffer that nobody reads yet.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.set_nonblocking(true).unwrap();
    let std_sock: std::net::UdpSocket = s.into();
    let port = std_sock.local_addr().unwrap().port();
    let sock = tokio::net::UdpSocket::from_std(std_sock).unwrap();

    let bus: Arc<dyn EventBus> = Arc::new(cf_bus::MemoryBus::new());
    let mut alarms = bus.subscribe("alarm.>", "test").await.unwrap();
    let counters = Arc::new(Counters::default());
    let intake = LogIntake::new(
        bus.clone(),
        Arc::new(cf_core::SystemClock),
        "t",
        counters.clone(),
    );
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    // The listener starts (and takes its baseline) before the flood.
    let task = tokio::spawn(cf_collect::udp_checked(
        sock,
        intake,
        stop,
        Duration::from_millis(100),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let line = format!("<13>Nov 25 10:00:00 host app: {}", "x".repeat(900));
    let mut sent = 0u64;
    for _ in 0..20_000 {
        if sender.send_to(line.as_bytes(), ("127.0.0.1", port)).is_ok() {
            sent += 1;
        }
    }
    let mut alarm = None;
    for _ in 0..100 {
        if let Ok(Some(d)) =
            tokio::time::timeout(Duration::from_millis(100), alarms.rx.recv()).await
        {
            alarm = Some(d.event.clone());
            let _ = d.ack().await;
            break;
        }
    }
    let alarm = alarm.expect("an alarm for the lost datagrams");
    assert_eq!(alarm.topic, "alarm.ingest.udp_loss");
    assert_eq!(alarm.payload["port"], port);
    let dropped = counters.udp_dropped.load(Ordering::Relaxed);
    assert!(dropped > 0 && alarm.payload["dropped"].as_u64().unwrap() > 0);
    // Everything sent is accounted for: read by the intake or counted as dropped (or still
    // queued in the small buffer).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = counters.received.load(Ordering::Relaxed);
    let dropped = counters.udp_dropped.load(Ordering::Relaxed);
    // (A handful may still sit in the receive buffer.)
    assert!(
        received + dropped <= sent && received + dropped + 16 >= sent,
        "{received} read + {dropped} dropped of {sent} sent"
    );
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}
