//! Alarms: operator-facing events (audit failure, ledger storage filling up …) published on the
//! bus under `alarm.*`, counted, and logged even when the bus itself is down.

use std::sync::Arc;

use cf_core::SharedClock;
use cf_event::{Event, Severity};

use crate::metrics::Metrics;
use crate::ports::EventBus;

/// Raises alarms.
#[derive(Debug, Clone)]
pub struct Alarms {
    bus: Arc<dyn EventBus>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    ids: Arc<std::sync::atomic::AtomicU64>,
    node: String,
}

impl Alarms {
    /// Alarms published on `bus`.
    pub fn new(
        bus: Arc<dyn EventBus>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        node: &str,
    ) -> Self {
        Alarms {
            bus,
            clock,
            metrics,
            ids: Arc::default(),
            node: node.to_string(),
        }
    }

    /// Raise an alarm on topic `alarm.<kind>`; never fails (a failure to publish is logged and counted).
    pub async fn raise(&self, kind: &str, severity: Severity, payload: serde_json::Value) {
        Metrics::inc(&self.metrics.alarms);
        let now = self.clock.now();
        let n = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let event = Event {
            id: format!("alarm-{}-{}-{n}", self.node, now.unix_nanos()),
            topic: format!("alarm.{kind}"),
            time: now,
            source: format!("chengfang/{}", self.node),
            severity,
            payload,
        };
        tracing::error!(alarm = kind, ?severity, payload = %event.payload, "ALARM");
        // Bounded: a slow or unreachable bus must not stall the caller (the ledger writer).
        let published =
            tokio::time::timeout(std::time::Duration::from_secs(2), self.bus.publish(&event))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::ports::BusError::Backend("publish timed out".into()))
                });
        if let Err(e) = published {
            Metrics::inc(&self.metrics.alarm_publish_failures);
            tracing::error!(alarm = kind, error = %e, "alarm could not be published to the bus");
        }
    }
}
