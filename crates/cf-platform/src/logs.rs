//! Log intake (SA-1, AUD-1, SA-2): what a received log line becomes on the bus, shared by every
//! transport (syslog sockets, HTTPS batches, file import). Parsed syslog goes out as `log.syslog`,
//! JSON objects as `log.json`; anything unparseable goes out as `log.malformed` with its raw text
//! and the reason, so nothing vanishes silently. The streaming analytics (authentication, DNS,
//! flows) watch it here and their alerts go out as `alert.*`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cf_core::SharedClock;
use cf_event::{Event, Severity};
use serde::Serialize;

use crate::ports::{BusError, EventBus};

/// Counters of one intake.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages received.
    pub received: AtomicU64,
    /// Of which malformed.
    pub malformed: AtomicU64,
    /// Events the bus refused.
    pub publish_failed: AtomicU64,
    /// TCP connections (socket transports).
    pub connections: AtomicU64,
    /// Flows decoded from NetFlow/IPFIX datagrams.
    pub flows: AtomicU64,
    /// Flow data sets held until their exporter sends the template.
    pub flows_waiting_template: AtomicU64,
    /// Datagrams the kernel dropped on the UDP listeners (receive buffer full).
    pub udp_dropped: AtomicU64,
    /// Batches being processed now (HTTPS ingest).
    pub batches_in_flight: AtomicU64,
    /// The most batches ever processed at once (never above the configured concurrency).
    pub batches_in_flight_max: AtomicU64,
    /// Batches waiting for a slot now; their senders are held (their bodies stay unread).
    pub batches_waiting: AtomicU64,
    /// Batches that had to wait for a slot, in all.
    pub batches_waited: AtomicU64,
}

/// A slot to process one batch, from [`LogIntake::admit`]; the slot is free again when dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: tokio::sync::OwnedSemaphorePermit,
    counters: Arc<Counters>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.counters
            .batches_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a batch as waiting for as long as it waits (also when its request is abandoned).
struct Waiting<'a>(&'a Counters);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.batches_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Batches processed at once unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl Counters {
    /// `(received, malformed, publish_failed, connections)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.received.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
            self.publish_failed.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// The outcome of a batch.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct BatchResult {
    /// Lines read.
    pub received: u64,
    /// Published as parsed events.
    pub parsed: u64,
    /// Published as `log.malformed`.
    pub malformed: u64,
}

/// Line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// Syslog (RFC 5424, RFC 3164 and variants).
    Syslog,
    /// One JSON object per line.
    Ndjson,
}

/// Turns received lines into bus events.
#[derive(Clone)]
pub struct LogIntake {
    bus: Arc<dyn EventBus>,
    clock: SharedClock,
    node: String,
    counters: Arc<Counters>,
    ids: Arc<AtomicU64>,
    auth: Arc<std::sync::Mutex<cf_detect::AuthDetector>>,
    flows: Arc<std::sync::Mutex<cf_ingest::netflow::FlowDecoder>>,
    /// DNS tunnelling and DGA over DNS events; `None` if the built-in models failed to load.
    dns: Arc<std::sync::Mutex<Option<cf_detect::dnswatch::DnsWatch>>>,
    /// Scans, sweeps, ICMP exfiltration and beaconing over flows.
    net: Arc<std::sync::Mutex<cf_detect::netwatch::NetWatch>>,
    /// Slots for batches processed at once: what bounds the memory held by senders' batches.
    slots: Arc<tokio::sync::Semaphore>,
    concurrency: usize,
}

impl std::fmt::Debug for LogIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogIntake")
    }
}

fn dns_watch() -> Option<cf_detect::dnswatch::DnsWatch> {
    match (
        cf_detect::dnstunnel::TunnelModel::builtin(),
        cf_detect::dga::DgaModel::builtin(),
    ) {
        (Ok(t), Ok(d)) => Some(cf_detect::dnswatch::DnsWatch::new(
            cf_detect::dnswatch::DnsRules::default(),
            t,
            d,
        )),
        (t, d) => {
            tracing::error!(tunnel = ?t.err(), dga = ?d.err(), "DNS analytics disabled: built-in models did not load");
            None
        }
    }
}

impl LogIntake {
    /// An intake publishing on `bus`.
    pub fn new(
        bus: Arc<dyn EventBus>,
        clock: SharedClock,
        node: &str,
        counters: Arc<Counters>,
    ) -> Self {
        LogIntake {
            bus,
            clock,
            node: node.to_string(),
            counters,
            ids: Arc::default(),
            auth: Arc::new(std::sync::Mutex::new(cf_detect::AuthDetector::new(
                cf_detect::AuthRules::default(),
            ))),
            flows: Arc::default(),
            dns: Arc::new(std::sync::Mutex::new(dns_watch())),
            net: Arc::new(std::sync::Mutex::new(cf_detect::netwatch::NetWatch::new(
                cf_detect::netwatch::NetRules::default(),
            ))),
            slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENCY)),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Judge flows with the city's own address space `nets` (per-host baselines: exfiltration,
    /// lateral movement); the default is private and link-local space.
    pub fn with_internal_networks(self, nets: Vec<cf_detect::netbase::IpNet>) -> Self {
        let base = cf_detect::netbase::BaseRules {
            internal: nets,
            ..Default::default()
        };
        *self
            .net
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            cf_detect::netwatch::NetWatch::new(cf_detect::netwatch::NetRules::default())
                .with_baselines(base);
        self
    }

    /// Process at most `n` (at least 1) batches at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.slots = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self.concurrency = n.max(1);
        self
    }

    /// Batches processed at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Wait for a slot to process one batch. Transports call this before they read a batch,
    /// so a sender faster than the pipeline is held back (its bytes stay in its socket) instead
    /// of growing the platform's memory. `None` only if the intake is closing.
    pub async fn admit(&self) -> Option<Admission> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.counters.batches_waited.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .batches_waiting
                    .fetch_add(1, Ordering::Relaxed);
                let _w = Waiting(&self.counters);
                self.slots.clone().acquire_owned().await.ok()?
            }
        };
        let now = self
            .counters
            .batches_in_flight
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        self.counters
            .batches_in_flight_max
            .fetch_max(now, Ordering::Relaxed);
        Some(Admission {
            _permit: permit,
            counters: self.counters.clone(),
        })
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn id(&self) -> String {
        format!(
            "log-{}-{}-{}",
            self.node,
            self.clock.now().unix_nanos(),
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Publish what the intake made of some input, in one batch: the bus has it durably when
    /// this returns `Ok` (only then may a sender be told it was accepted).
    pub async fn flush(&self, out: &[Event]) -> Result<(), BusError> {
        if out.is_empty() {
            return Ok(());
        }
        let r = self.bus.publish_batch(out).await;
        self.published(out.len(), r)
    }

    /// [`Self::flush`] for events the caller no longer needs (the bus takes them without a copy).
    pub async fn flush_owned(&self, out: Vec<Event>) -> Result<(), BusError> {
        let n = out.len();
        if n == 0 {
            return Ok(());
        }
        let r = self.bus.publish_owned(out).await;
        self.published(n, r)
    }

    /// Count and log a publish of `n` events that failed.
    fn published(&self, n: usize, r: Result<(), BusError>) -> Result<(), BusError> {
        r.inspect_err(|e| {
            self.counters
                .publish_failed
                .fetch_add(n as u64, Ordering::Relaxed);
            tracing::error!(error = %e, events = n, "log events could not be published");
        })
    }

    /// Publish a line that could not be framed or parsed, with why.
    pub async fn malformed(&self, raw: &[u8], source: &str, transport: &str, reason: &str) {
        let mut out = Vec::with_capacity(1);
        self.malformed_into(raw, source, transport, reason, &mut out);
        let _ = self.flush(&out).await;
    }

    /// [`Self::malformed`], adding the event to `out` for a later [`Self::flush`].
    pub fn malformed_into(
        &self,
        raw: &[u8],
        source: &str,
        transport: &str,
        reason: &str,
        out: &mut Vec<Event>,
    ) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        let ev = Event {
            id: self.id(),
            topic: "log.malformed".into(),
            time: self.clock.now(),
            source: format!("{transport}://{source}"),
            severity: Severity::Low,
            payload: serde_json::json!({"peer": source, "transport": transport, "reason": reason, "raw": String::from_utf8_lossy(raw)}),
        };
        out.push(ev);
    }

    /// One of the platform's own security events (its logins, account changes), already in OCSF:
    /// published on `log.json` like any source and through the same detectors, so an attack on
    /// the city's identity provider reaches the SOC like one on any other system.
    pub async fn platform_event(&self, ocsf: serde_json::Value) -> Result<(), BusError> {
        let now = self.clock.now();
        let alerts: Vec<(&'static str, serde_json::Value)> = self
            .auth_alerts(&ocsf, "chengfang")
            .into_iter()
            .map(|a| (a.kind, serde_json::to_value(&a).unwrap_or_default()))
            .collect();
        let mut out = vec![Event {
            id: self.id(),
            topic: "log.json".into(),
            time: now,
            source: "chengfang://identity".into(),
            severity: Severity::Info,
            payload: serde_json::json!({"received": now, "peer": "chengfang", "transport": "internal", "record": ocsf.clone(), "ocsf": ocsf}),
        }];
        self.alerts_into(alerts, &mut out);
        self.flush(&out).await
    }

    /// One syslog message; returns whether it parsed.
    pub async fn syslog(&self, raw: &[u8], source: &str, transport: &str) -> bool {
        let mut out = Vec::with_capacity(1);
        let ok = self.syslog_into(raw, source, transport, &mut out);
        let _ = self.flush_owned(out).await;
        ok
    }

    /// [`Self::syslog`], adding the events to `out` for a later [`Self::flush`].
    pub fn syslog_into(
        &self,
        raw: &[u8],
        source: &str,
        transport: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let now = self.clock.now();
        match cf_ingest::syslog::parse(raw, now) {
            Ok(m) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let severity = match m.severity {
                    Some(0..=2) => Severity::High,
                    Some(3) => Severity::Medium,
                    Some(4) => Severity::Low,
                    _ => Severity::Info,
                };
                // Normalised to OCSF where the shape is known; authentication events feed the
                // brute-force / spraying detector, whose alerts go out on `alert.auth.*`.
                let ocsf = cf_ingest::ocsf::from_syslog(&m);
                let alerts = ocsf
                    .as_ref()
                    .map(|e| self.auth_alerts(e, source))
                    .unwrap_or_default();
                let ev = Event {
                    id: self.id(),
                    topic: "log.syslog".into(),
                    time: m.time.unwrap_or(now),
                    source: format!("{transport}://{source}"),
                    severity,
                    payload: serde_json::json!({"received": now, "peer": source, "transport": transport, "syslog": m, "ocsf": ocsf}),
                };
                out.push(ev);
                for a in alerts {
                    let ev = Event {
                        id: self.id(),
                        topic: format!("alert.{}", a.kind),
                        time: now,
                        source: "chengfang/detect".into(),
                        severity: if a.severity == "high" {
                            Severity::High
                        } else {
                            Severity::Medium
                        },
                        payload: serde_json::to_value(&a).unwrap_or_default(),
                    };
                    out.push(ev);
                }
                true
            }
            Err(e) => {
                self.malformed_into(raw, source, transport, &e.to_string(), out);
                false
            }
        }
    }

    /// One NetFlow v5/v9 or IPFIX datagram from `exporter`: each flow goes out as `log.netflow`
    /// (OCSF Network Activity); an undecodable datagram as `log.malformed` with its bytes in
    /// base64. Returns the number of flows.
    pub async fn netflow(&self, raw: &[u8], exporter: std::net::SocketAddr) -> usize {
        let mut out = Vec::new();
        let n = self.netflow_into(raw, exporter, &mut out);
        let _ = self.flush_owned(out).await;
        n
    }

    fn netflow_into(
        &self,
        raw: &[u8],
        exporter: std::net::SocketAddr,
        out: &mut Vec<Event>,
    ) -> usize {
        let now = self.clock.now();
        let decoded = self
            .flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .decode(exporter, raw);
        let peer = exporter.ip().to_string();
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.counters
            .flows
            .fetch_add(decoded.flows.len() as u64, Ordering::Relaxed);
        self.counters
            .flows_waiting_template
            .fetch_add(decoded.waiting as u64, Ordering::Relaxed);
        if let Some(reason) = &decoded.error {
            use base64::Engine;
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            let ev = Event {
                id: self.id(),
                topic: "log.malformed".into(),
                time: now,
                source: format!("netflow://{peer}"),
                severity: Severity::Low,
                payload: serde_json::json!({"peer": peer, "transport": "netflow", "reason": reason,
                    "flows_decoded": decoded.flows.len(),
                    "raw_base64": base64::engine::general_purpose::STANDARD.encode(raw)}),
            };
            out.push(ev);
        }
        let n = decoded.flows.len();
        for f in decoded.flows {
            let ocsf = cf_ingest::netflow::to_ocsf(&f, &peer, now);
            let alerts = self.flow_alerts(&ocsf);
            let ev = Event {
                id: self.id(),
                topic: "log.netflow".into(),
                time: now,
                source: format!("netflow://{peer}"),
                severity: Severity::Info,
                payload: serde_json::json!({"received": now, "peer": peer, "transport": "netflow", "flow": f, "ocsf": ocsf}),
            };
            out.push(ev);
            self.alerts_into(alerts, out);
        }
        n
    }

    /// The kernel dropped `dropped` datagrams on the UDP listener of `transport` at `port`
    /// (senders outran the intake): counted, and raised as an `alarm.ingest.udp_loss` event.
    pub async fn udp_loss(&self, transport: &str, port: u16, dropped: u64) {
        let total = self
            .counters
            .udp_dropped
            .fetch_add(dropped, Ordering::Relaxed)
            + dropped;
        tracing::warn!(
            transport,
            port,
            dropped,
            total,
            "UDP datagrams lost before the intake read them"
        );
        let ev = Event {
            id: self.id(),
            topic: "alarm.ingest.udp_loss".into(),
            time: self.clock.now(),
            source: format!("{transport}://0.0.0.0:{port}"),
            severity: Severity::High,
            payload: serde_json::json!({"transport": transport, "port": port, "dropped": dropped, "dropped_total": total}),
        };
        let _ = self.flush(&[ev]).await;
    }

    /// Brute force and spraying over one Authentication event (OCSF 3002) whose outcome is
    /// known — sshd and PAM lines, Windows logons alike; the source falls back to the sender.
    fn auth_alerts(&self, e: &serde_json::Value, sender: &str) -> Vec<cf_detect::AuthAlert> {
        if e["class_uid"] != 3002
            || e["activity_id"] != 1
            || !matches!(e["status_id"].as_u64(), Some(1 | 2))
        {
            return Vec::new();
        }
        let a = cf_detect::Attempt {
            time_ms: e["time"]
                .as_i64()
                .unwrap_or_else(|| self.clock.now().unix_millis()),
            user: e["user"]["name"].as_str().unwrap_or("").to_string(),
            src: e["src_endpoint"]["ip"]
                .as_str()
                .unwrap_or(sender)
                .to_string(),
            success: e["status_id"] == 1,
        };
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&a)
    }

    /// Flow analytics over one Network Activity event (OCSF 4001); the alerts it raises, as
    /// (kind, payload).
    fn flow_alerts(&self, ocsf: &serde_json::Value) -> Vec<(&'static str, serde_json::Value)> {
        let Some(f) = cf_detect::netwatch::FlowObs::from_ocsf(ocsf) else {
            return Vec::new();
        };
        self.net
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&f)
            .into_iter()
            .map(|a| (a.kind, serde_json::to_value(&a).unwrap_or_default()))
            .collect()
    }

    fn alerts_into(&self, alerts: Vec<(&'static str, serde_json::Value)>, out: &mut Vec<Event>) {
        let now = self.clock.now();
        for (kind, payload) in alerts {
            let severity = if payload["severity"] == "high" {
                Severity::High
            } else {
                Severity::Medium
            };
            let ev = Event {
                id: self.id(),
                topic: format!("alert.{kind}"),
                time: now,
                source: "chengfang/detect".into(),
                severity,
                payload,
            };
            out.push(ev);
        }
    }

    /// DNS analytics over one DNS event (OCSF 4003); the alerts it raises.
    fn dns_alerts(&self, ocsf: &serde_json::Value) -> Vec<cf_detect::dnswatch::DnsAlert> {
        let Some((client, qname, _)) = cf_ingest::dns::query_of(ocsf) else {
            return Vec::new();
        };
        let t = ocsf["time"]
            .as_i64()
            .unwrap_or_else(|| self.clock.now().unix_millis());
        match self
            .dns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            Some(w) => w.observe(t, &client, qname),
            None => Vec::new(),
        }
    }

    /// One NDJSON line; returns whether it was a JSON object. Zeek `dns.log` and `conn.log`
    /// records are normalised to OCSF (kept under `ocsf`); DNS Activity goes through the DNS
    /// analytics and Network Activity through the flow analytics.
    pub async fn json_line(&self, raw: &[u8], source: &str, transport: &str) -> bool {
        let mut out = Vec::with_capacity(1);
        let ok = self.json_into(raw, source, transport, &mut out);
        let _ = self.flush_owned(out).await;
        ok
    }

    fn json_into(&self, raw: &[u8], source: &str, transport: &str, out: &mut Vec<Event>) -> bool {
        match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(v) if cf_event::nested_deeper_than(&v, cf_event::MAX_PAYLOAD_DEPTH) => {
                let why = format!(
                    "nested more than {} levels deep (arrays and objects)",
                    cf_event::MAX_PAYLOAD_DEPTH
                );
                self.malformed_into(raw, source, transport, &why, out);
                false
            }
            Ok(v @ serde_json::Value::Object(_)) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                let now = self.clock.now();
                let ocsf = if v.get("class_uid").is_some() {
                    None
                } else if v.get("query").is_some() && v.get("qtype_name").is_some() {
                    cf_ingest::dns::from_zeek(&v).map(|d| cf_ingest::dns::to_ocsf(&d, "zeek"))
                } else if cf_ingest::zeek::is_conn(&v) {
                    cf_ingest::zeek::conn_to_ocsf(&v)
                } else if cf_ingest::winevent::is_windows(&v) {
                    cf_ingest::winevent::to_ocsf(&v)
                } else {
                    None
                };
                let normal = ocsf.as_ref().unwrap_or(&v);
                let mut alerts: Vec<(&'static str, serde_json::Value)> = self
                    .dns_alerts(normal)
                    .into_iter()
                    .map(|a| (a.kind, serde_json::to_value(&a).unwrap_or_default()))
                    .collect();
                alerts.extend(self.flow_alerts(normal));
                alerts.extend(
                    self.auth_alerts(normal, source)
                        .into_iter()
                        .map(|a| (a.kind, serde_json::to_value(&a).unwrap_or_default())),
                );
                let mut payload = serde_json::json!({"received": now, "peer": source, "transport": transport, "record": v});
                if let Some(o) = ocsf {
                    payload["ocsf"] = o;
                }
                let ev = Event {
                    id: self.id(),
                    topic: "log.json".into(),
                    time: now,
                    source: format!("{transport}://{source}"),
                    severity: Severity::Info,
                    payload,
                };
                out.push(ev);
                self.alerts_into(alerts, out);
                true
            }
            Ok(_) => {
                self.malformed_into(raw, source, transport, "not a JSON object", out);
                false
            }
            Err(e) => {
                self.malformed_into(raw, source, transport, &format!("invalid JSON: {e}"), out);
                false
            }
        }
    }

    /// A batch of newline-separated lines (blank lines skipped), published as one batch: `Ok`
    /// only once the bus holds every event the lines became (the sender may then forget them);
    /// on `Err` the sender should send the batch again (consumers are idempotent by event id,
    /// but a resent batch gets new ids, so a partial publish can duplicate some events).
    pub async fn batch(
        &self,
        body: &[u8],
        format: LineFormat,
        source: &str,
        transport: &str,
    ) -> Result<BatchResult, BusError> {
        let mut r = BatchResult::default();
        let mut out = Vec::new();
        for line in body.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            r.received += 1;
            let ok = match format {
                LineFormat::Syslog => self.syslog_into(line, source, transport, &mut out),
                LineFormat::Ndjson => self.json_into(line, source, transport, &mut out),
            };
            if ok {
                r.parsed += 1;
            } else {
                r.malformed += 1;
            }
        }
        self.flush_owned(out).await?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Subscription;

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<Event>>);

    #[async_trait::async_trait]
    impl EventBus for Recorder {
        fn backend(&self) -> &'static str {
            "recorder"
        }
        async fn publish(&self, e: &Event) -> Result<(), BusError> {
            self.0.lock().unwrap().push(e.clone());
            Ok(())
        }
        async fn subscribe(&self, _: &str, _: &str) -> Result<Subscription, BusError> {
            Err(BusError::Backend("unused".into()))
        }
    }

    /// An intake publishing to a recorder, its clock at 2026-03-29T14:00:00Z.
    fn recording_intake() -> (Arc<Recorder>, LogIntake) {
        let bus = Arc::new(Recorder::default());
        let clock: SharedClock = Arc::new(cf_core::ManualClock::new(
            cf_core::Timestamp::parse_rfc3339("2026-03-29T14:00:00Z").unwrap(),
        ));
        let intake = LogIntake::new(bus.clone(), clock, "t", Arc::default());
        (bus, intake)
    }

    /// A record nested near serde_json's decoding limit would parse here and then fail to decode
    /// inside its envelope on the bus or in the store, after being acknowledged: it is refused
    /// up front, kept raw with the reason.
    #[tokio::test]
    async fn over_deep_json_is_malformed_not_acknowledged_and_lost() {
        let (bus, intake) = recording_intake();
        let nest = |n: usize| format!("{}1{}", "{\"a\":[".repeat(n / 2), "]}".repeat(n / 2));
        let body = format!("{}\n{}\n", nest(64), nest(126));
        let r = intake
            .batch(body.as_bytes(), LineFormat::Ndjson, "sensor", "https")
            .await
            .unwrap();
        assert_eq!((r.received, r.parsed, r.malformed), (2, 1, 1));
        let events = bus.0.lock().unwrap().clone();
        let bad = events.iter().find(|e| e.topic == "log.malformed").unwrap();
        assert_eq!(
            bad.payload["reason"],
            "nested more than 64 levels deep (arrays and objects)"
        );
        assert_eq!(bad.payload["raw"], nest(126));
        // Both events decode from their wire form, as the journal and the store will need.
        for e in &events {
            let bytes = serde_json::to_vec(e).unwrap();
            assert_eq!(&serde_json::from_slice::<Event>(&bytes).unwrap(), e);
        }
    }

    #[tokio::test]
    async fn zeek_logs_are_normalised_and_watched() {
        let (bus, intake) = recording_intake();
        let mut body = String::new();
        // A ping sweep as a Zeek sensor logs it, then DNS lookups of DGA-like names.
        for h in 1..=40 {
            body.push_str(&format!("{{\"ts\":1774792800.{h:02},\"uid\":\"C{h}\",\"id.orig_h\":\"10.0.0.66\",\"id.orig_p\":8,\"id.resp_h\":\"10.0.1.{h}\",\"id.resp_p\":0,\"proto\":\"icmp\",\"conn_state\":\"OTH\",\"orig_pkts\":1,\"orig_ip_bytes\":84}}\n"));
        }
        for d in ["xjwqpzkvrtb.com", "qmzkxvbwplr.net", "zzkqxvjwmpt.org"] {
            body.push_str(&format!("{{\"ts\":1774792900.5,\"uid\":\"D\",\"id.orig_h\":\"10.0.0.77\",\"id.orig_p\":5353,\"id.resp_h\":\"10.0.0.53\",\"id.resp_p\":53,\"proto\":\"udp\",\"query\":\"{d}\",\"qtype\":1,\"qtype_name\":\"A\",\"rcode\":3,\"rcode_name\":\"NXDOMAIN\"}}\n"));
        }
        let r = intake
            .batch(body.as_bytes(), LineFormat::Ndjson, "sensor", "https")
            .await
            .unwrap();
        assert_eq!((r.received, r.parsed, r.malformed), (43, 43, 0));
        let events = bus.0.lock().unwrap().clone();
        let logs: Vec<&Event> = events.iter().filter(|e| e.topic == "log.json").collect();
        assert_eq!(logs[0].payload["ocsf"]["class_uid"], 4001);
        assert_eq!(logs[40].payload["ocsf"]["class_uid"], 4003);
        let alerts: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e.topic.starts_with("alert."))
            .map(|e| (e.topic.as_str(), e.payload["src"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            alerts,
            [
                ("alert.net.sweep_scan", "10.0.0.66"),
                ("alert.dns.dga", "10.0.0.77")
            ]
        );
    }

    #[tokio::test]
    async fn guessing_in_syslog_becomes_ocsf_events_and_a_brute_force_alert() {
        let (bus, intake) = recording_intake();
        let mut body = String::new();
        for i in 0..25 {
            body.push_str(&format!(
                "Mar 29 13:{:02}:{:02} web-1 sshd[{}]: Failed password for invalid user u{i} from 203.0.113.77 port {} ssh2\n",
                10 + i / 60,
                i % 60,
                4000 + i,
                50000 + i
            ));
        }
        body.push_str("garbage line without a timestamp\n");
        let r = intake
            .batch(body.as_bytes(), LineFormat::Syslog, "10.0.0.2", "https")
            .await
            .unwrap();
        assert_eq!((r.received, r.parsed, r.malformed), (26, 25, 1));
        let evs = bus.0.lock().unwrap().clone();
        let logs: Vec<&Event> = evs.iter().filter(|e| e.topic == "log.syslog").collect();
        assert_eq!(logs.len(), 25);
        assert_eq!(logs[0].payload["ocsf"]["class_uid"], 3002);
        assert_eq!(
            logs[0].payload["ocsf"]["src_endpoint"]["ip"],
            "203.0.113.77"
        );
        let kinds: Vec<&str> = evs
            .iter()
            .filter(|e| e.topic.starts_with("alert."))
            .map(|e| e.topic.as_str())
            .collect();
        // 10 distinct accounts come before 20 failures.
        assert_eq!(
            kinds,
            ["alert.auth.password_spraying", "alert.auth.brute_force"]
        );
        assert_eq!(evs.iter().filter(|e| e.topic == "log.malformed").count(), 1);
    }

    #[tokio::test]
    async fn windows_logon_failures_are_normalised_and_watched_like_sshd() {
        let (bus, intake) = recording_intake();
        // Password spraying against a domain controller, as the Security log records it.
        let body: String = (0..12)
            .map(|i| {
                serde_json::json!({"Event": {"System": {"EventID": 4625, "Channel": "Security",
                    "Computer": "DC01", "TimeCreated_attributes": {"SystemTime": format!("2026-03-29T13:59:{i:02}Z")}},
                    "EventData": {"TargetUserName": format!("user{i}"), "SubStatus": "0xc000006a",
                    "LogonType": 3, "IpAddress": "192.168.198.149", "IpPort": "50249"}}})
                .to_string()
                    + "\n"
            })
            .collect();
        let r = intake
            .batch(body.as_bytes(), LineFormat::Ndjson, "winlogbeat", "https")
            .await
            .unwrap();
        assert_eq!(r.parsed, 12);
        let evs = bus.0.lock().unwrap().clone();
        let first = evs.iter().find(|e| e.topic == "log.json").unwrap();
        assert_eq!(first.payload["ocsf"]["class_uid"], 3002);
        assert_eq!(first.payload["ocsf"]["status_detail"], "wrong password");
        let alerts: Vec<(&str, &str)> = evs
            .iter()
            .filter(|e| e.topic.starts_with("alert."))
            .map(|e| (e.topic.as_str(), e.payload["key"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            alerts,
            [("alert.auth.password_spraying", "192.168.198.149")]
        );
    }
}
