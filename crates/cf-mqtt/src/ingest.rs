//! Telemetry and log ingest over MQTT: one persistent session (QoS 1, clean_session false)
//! subscribed to every device's telemetry, every device's log topic and the broker's connection
//! log; messages are handled on sharded workers that keep each device's order, with backpressure
//! to the broker when they fall behind. Device logs (syslog lines or JSON objects, one or more per
//! message) go to the platform's log intake like any other log source (SA-1), named by the
//! identity the broker authenticated.

use std::time::Duration;

use cf_platform::devices::DeviceService;
use cf_platform::logs::{LineFormat, LogIntake};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::watch;

/// Topics the ingest session subscribes to.
pub const TELEMETRY_FILTER: &str = "city/+/+/telemetry";
/// Device logs.
pub const DEVICE_LOG_FILTER: &str = "city/+/+/log";
/// Mosquitto's notice-level log, where connection messages appear (`log_dest topic`).
pub const LOG_FILTER: &str = "$SYS/broker/log/N";

/// Connect as the platform's ingest identity. `clean_session = false` keeps the subscription and
/// the queued messages at the broker while the platform is away.
pub fn connect(opts: rumqttc::MqttOptions) -> (AsyncClient, EventLoop) {
    let mut o = opts;
    o.set_clean_session(false);
    // Acknowledged by rumqttc in bulk as packets are read: rumqttc 0.25 sends manual acks one
    // per event-loop turn, which throttles ingest to a few thousand messages/s and, with bounded
    // queues, can stall it. The price: a crash loses what sits in the workers' queues (at most
    // WORKERS × 256 messages), which shows as a counter gap; no message is ever accepted twice.
    o.set_manual_acks(false);
    let (client, mut events) = AsyncClient::new(o, 4096);
    // PUBACKs are tiny: without TCP_NODELAY, Nagle and delayed ACKs hold each one back for tens
    // of milliseconds, and the broker's in-flight window (max_inflight_messages) stalls.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    (client, events)
}

/// Counters of the loop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoopStats {
    /// Sessions established.
    pub connects: u64,
    /// Telemetry messages handed to the service.
    pub messages: u64,
    /// Connection log lines parsed.
    pub connections_seen: u64,
    /// Device log messages handed to the log intake.
    pub logs: u64,
}

/// `(username, ip)` from a Mosquitto connection log line, e.g.
/// `1700000000: New client connected from 10.0.0.7:51234 as cam-1 (p2, c1, k30, u'cam-1').`
pub fn parse_connect_line(line: &str) -> Option<(String, String)> {
    let rest = line.split("New client connected from ").nth(1)?;
    let (addr, rest) = rest.split_once(" as ")?;
    // IPv6 addresses are printed without brackets, so the port is after the last colon.
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    let user = rest.split("u'").nth(1)?.split('\'').next()?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), ip.to_string()))
}

/// Parallel verifiers. Verification (a signature per message) is the costly step.
pub const WORKERS: usize = 4;

/// Feed one device log message to the intake; while the bus refuses, retry (holding this worker,
/// and through it the broker) rather than drop it.
async fn device_log(
    logs: &LogIntake,
    identity: &str,
    payload: &[u8],
    stop: &watch::Receiver<bool>,
) {
    let json = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let format = if json {
        LineFormat::Ndjson
    } else {
        LineFormat::Syslog
    };
    let mut wait = Duration::from_millis(100);
    while logs.batch(payload, format, identity, "mqtt").await.is_err() && !*stop.borrow() {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn handle(
    svc: &DeviceService,
    logs: Option<&LogIntake>,
    stats: &watch::Sender<LoopStats>,
    stop: &watch::Receiver<bool>,
    p: rumqttc::Publish,
) {
    if p.topic.starts_with("$SYS/") {
        if let Some((user, ip)) = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(parse_connect_line)
        {
            svc.seen_from(&user, &ip).await;
            stats.send_modify(|s| s.connections_seen += 1);
        }
    } else if p.topic.ends_with("/log") {
        // The broker's ACL lets only device <id> publish on city/<district>/<id>/…, so the topic
        // names the authenticated identity.
        if let (Some(logs), Some(identity)) = (logs, p.topic.split('/').nth(2)) {
            device_log(logs, identity, &p.payload, stop).await;
            stats.send_modify(|s| s.logs += 1);
        }
    } else {
        // As above, the topic names the authenticated identity.
        let identity = p.topic.split('/').nth(2).map(str::to_string);
        svc.ingest(&p.payload, &p.topic, identity.as_deref(), None)
            .await;
        stats.send_modify(|s| s.messages += 1);
    }
}

/// Run until `stop` turns true. Broker outages are waited out with backoff; the session resumes
/// where it left off. Device logs go to `logs` (not subscribed without it).
pub async fn run(
    svc: DeviceService,
    logs: Option<LogIntake>,
    client: AsyncClient,
    mut events: EventLoop,
    mut stop: watch::Receiver<bool>,
    stats: tokio::sync::watch::Sender<LoopStats>,
) {
    let stats = std::sync::Arc::new(stats);
    let mut shards = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        // Bounded: when workers fall behind, the event loop stops reading from the broker and
        // TCP backpressure reaches it, instead of memory growing here.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<rumqttc::Publish>(256);
        shards.push(tx);
        let (svc, stats, logs, stop) = (svc.clone(), stats.clone(), logs.clone(), stop.clone());
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                handle(&svc, logs.as_ref(), &stats, &stop, p).await;
            }
        });
    }
    let mut st = LoopStats::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let ev = tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() { let _ = client.disconnect().await; return; }
                continue;
            }
            ev = events.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                st.connects += 1;
                // Idempotent: a resumed session already has them.
                let filters: &[&str] = if logs.is_some() {
                    &[TELEMETRY_FILTER, DEVICE_LOG_FILTER, LOG_FILTER]
                } else {
                    &[TELEMETRY_FILTER, LOG_FILTER]
                };
                for f in filters {
                    if let Err(e) = client.subscribe(*f, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, filter = *f, "MQTT subscribe failed");
                    }
                }
                stats.send_modify(|s| s.connects = st.connects);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // One device's messages always go to the same worker, so they are verified in
                // the order the broker delivered them (a reboot's new window must not overtake
                // the old boot's last messages); different devices are verified in parallel.
                let shard = p.topic.split('/').nth(2).map_or(0, |id| {
                    id.bytes().fold(0usize, |h, b| {
                        h.wrapping_mul(31).wrapping_add(usize::from(b))
                    })
                }) % shards.len();
                if shards[shard].send(p).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => if *stop.borrow() { return; },
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_lines_yield_user_and_address() {
        assert_eq!(
            parse_connect_line(
                "1764100000: New client connected from 10.0.0.7:51234 as cam-1 (p2, c1, k30, u'cam-1')."
            ),
            Some(("cam-1".into(), "10.0.0.7".into()))
        );
        assert_eq!(
            parse_connect_line("New client connected from ::1:40000 as x (p2, c0, k60, u'env-2')."),
            Some(("env-2".into(), "::1".into()))
        );
        assert_eq!(
            parse_connect_line("New client connected from 1.2.3.4:5 as x (p2, c1, k60)."),
            None
        );
        assert_eq!(parse_connect_line("Client cam-1 disconnected."), None);
    }
}
