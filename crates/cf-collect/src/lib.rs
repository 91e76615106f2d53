//! The collection edge (SA-1, AUD-1): syslog over UDP and TCP (octet counting or newlines,
//! RFC 6587) parsed by `cf-ingest` and published on the bus as `log.syslog` events; input that
//! does not parse is published as `log.malformed` with its raw text and the reason, counted,
//! and never stops the listener.
//!
//! Architecture invariant: the only crate that owns collection sockets; it knows no storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cf_core::SharedClock;
use cf_event::{Event, Severity};
use cf_ingest::framing::{Frame, Framer};
use cf_platform::ports::EventBus;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// Largest syslog message accepted (RFC 5425 asks receivers to take at least 2 KiB; we take 64).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Per-listener counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received.
    pub received: AtomicU64,
    /// Of which malformed (published as `log.malformed`).
    pub malformed: AtomicU64,
    /// Events the bus refused (logged; the sender is not told over UDP).
    pub publish_failed: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
}

impl Counters {
    /// A snapshot `(received, malformed, publish_failed, connections)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
            self.publish_failed.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// Where parsed messages go.
#[derive(Clone)]
pub struct Sink {
    bus: Arc<dyn EventBus>,
    clock: SharedClock,
    node: String,
    counters: Arc<Counters>,
    ids: Arc<AtomicU64>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl Sink {
    /// A sink publishing on `bus`.
    pub fn new(
        bus: Arc<dyn EventBus>,
        clock: SharedClock,
        node: &str,
        counters: Arc<Counters>,
    ) -> Self {
        Sink {
            bus,
            clock,
            node: node.to_string(),
            counters,
            ids: Arc::default(),
        }
    }

    async fn handle(&self, raw: &[u8], peer: SocketAddr, transport: &str) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let id = format!("syslog-{}-{}-{n}", self.node, now.unix_nanos());
        let ev = match cf_ingest::syslog::parse(raw, now) {
            Ok(m) => {
                let sev = match m.severity {
                    Some(0..=2) => Severity::High,
                    Some(3) => Severity::Medium,
                    Some(4) => Severity::Low,
                    _ => Severity::Info,
                };
                Event {
                    id,
                    topic: "log.syslog".into(),
                    time: m.time.unwrap_or(now),
                    source: format!("{transport}://{peer}"),
                    severity: sev,
                    payload: serde_json::json!({
                        "received": now,
                        "peer": peer.ip().to_string(),
                        "transport": transport,
                        "syslog": m,
                    }),
                }
            }
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                Event {
                    id,
                    topic: "log.malformed".into(),
                    time: now,
                    source: format!("{transport}://{peer}"),
                    severity: Severity::Low,
                    payload: serde_json::json!({
                        "peer": peer.ip().to_string(),
                        "transport": transport,
                        "reason": e.to_string(),
                        "raw": String::from_utf8_lossy(raw),
                    }),
                }
            }
        };
        if let Err(e) = self.bus.publish(&ev).await {
            self.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "syslog event could not be published");
        }
    }
}

/// Receive syslog datagrams until `stop` turns true.
pub async fn udp(socket: tokio::net::UdpSocket, sink: Sink, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => sink.handle(&buf[..n], peer, "udp").await,
                Err(e) => tracing::warn!(error = %e, "syslog UDP receive failed"),
            },
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}

/// Accept syslog TCP connections until `stop` turns true; each connection is framed by RFC 6587
/// (octet counting or newlines) and read with backpressure (the next read waits for the bus).
pub async fn tcp(listener: tokio::net::TcpListener, sink: Sink, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((mut stream, peer)) => {
                    sink.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (sink, mut stop) = (sink.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut framer = Framer::new(MAX_MESSAGE);
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = tokio::select! {
                                r = stream.read(&mut buf) => r.unwrap_or(0),
                                _ = stop.changed() => if *stop.borrow() { 0 } else { continue },
                            };
                            let frames = if n == 0 { framer.finish().into_iter().collect() } else { framer.push(&buf[..n]) };
                            for f in frames {
                                match f {
                                    Frame::Message(m) => sink.handle(&m, peer, "tcp").await,
                                    Frame::Malformed { reason, raw } => {
                                        sink.counters.received.fetch_add(1, Ordering::Relaxed);
                                        sink.counters.malformed.fetch_add(1, Ordering::Relaxed);
                                        tracing::debug!(%peer, %reason, bytes = raw.len(), "unframeable syslog input");
                                        // Published raw so nothing vanishes silently.
                                        let _ = sink.bus.publish(&Event {
                                            id: format!("syslog-{}-frame-{}", sink.node, sink.ids.fetch_add(1, Ordering::Relaxed)),
                                            topic: "log.malformed".into(),
                                            time: sink.clock.now(),
                                            source: format!("tcp://{peer}"),
                                            severity: Severity::Low,
                                            payload: serde_json::json!({"peer": peer.ip().to_string(), "transport": "tcp", "reason": reason, "raw": String::from_utf8_lossy(&raw)}),
                                        }).await;
                                    }
                                }
                            }
                            if n == 0 {
                                return;
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "syslog TCP accept failed"),
            },
            _ = stop.changed() => if *stop.borrow() { return; },
        }
    }
}
