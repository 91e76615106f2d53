//! `/metrics` in Prometheus text format, read from the platform's counters at scrape time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use cf_platform::Metrics;
use cf_platform::authz::Action;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Counters (and `…_max` / `…_now` gauges) read from services at scrape time: `(name, help, value)`.
pub type Extra = Vec<(&'static str, &'static str, u64)>;

#[derive(Debug)]
struct PlatformCollector(Arc<Metrics>, Extra);

impl Collector for PlatformCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let counters = [
            (
                "chengfang_audit_appends",
                "Ledger records durably appended",
                &m.audit_appends,
            ),
            (
                "chengfang_audit_failures",
                "Ledger writes that failed (each refused its action, AUD-3)",
                &m.audit_failures,
            ),
            (
                "chengfang_audit_checkpoints",
                "Signed checkpoints written",
                &m.checkpoints,
            ),
            ("chengfang_alarms", "Alarms raised", &m.alarms),
            (
                "chengfang_alarm_publish_failures",
                "Alarms that could not be published to the bus",
                &m.alarm_publish_failures,
            ),
            (
                "chengfang_events_published",
                "Events published by the platform",
                &m.events_published,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(Metrics::get(v));
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, v) in &self.1 {
            // Levels (`…_max`, `…_now`) are gauges; everything else counts up.
            if name.ends_with("_max") || name.ends_with("_now") {
                let g = ConstGauge::new(i64::try_from(*v).unwrap_or(i64::MAX));
                g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
            } else {
                let c = ConstCounter::new(*v);
                c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
            }
        }
        let gauges = [
            (
                "chengfang_ledger_size",
                "Records in the audit ledger",
                &m.ledger_size,
            ),
            (
                "chengfang_ledger_bytes",
                "Bytes the ledger occupies",
                &m.ledger_bytes,
            ),
            (
                "chengfang_checkpoint_lag_microseconds",
                "Last append-to-signed-checkpoint delay",
                &m.checkpoint_lag_us,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(Metrics::get(v)).unwrap_or(i64::MAX));
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Render the metrics text.
pub fn render(metrics: Arc<Metrics>, extra: Extra) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(PlatformCollector(metrics, extra)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.authorize(&s, Action::ReadMetrics).await?;
    let (received, malformed, failed, connections) = s.logs.counters().snapshot();
    let d = s.devices.stats();
    let extra: Extra = vec![
        (
            "chengfang_logs_received",
            "Log messages received (syslog, HTTPS batches, NetFlow/IPFIX datagrams)",
            received,
        ),
        (
            "chengfang_logs_malformed",
            "Log messages kept as log.malformed",
            malformed,
        ),
        (
            "chengfang_logs_publish_failures",
            "Log events the bus refused",
            failed,
        ),
        (
            "chengfang_syslog_tcp_connections",
            "Syslog TCP connections accepted",
            connections,
        ),
        (
            "chengfang_udp_dropped",
            "Datagrams the kernel dropped on the UDP listeners (also raised as alarm.ingest.udp_loss)",
            s.logs
                .counters()
                .udp_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_ingest_batches_waited",
            "HTTPS log batches that waited for an intake slot (senders held back)",
            s.logs
                .counters()
                .batches_waited
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_ingest_batches_in_flight_max",
            "The most HTTPS log batches processed at once (bounded by server.ingest_concurrency)",
            s.logs
                .counters()
                .batches_in_flight_max
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_ingest_batches_waiting_now",
            "HTTPS log batches waiting for an intake slot at this moment",
            s.logs
                .counters()
                .batches_waiting
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_netflow_flows",
            "Flows decoded from NetFlow/IPFIX datagrams",
            s.logs
                .counters()
                .flows
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_netflow_waiting_template",
            "Flow data sets held until their exporter's template arrives",
            s.logs
                .counters()
                .flows_waiting_template
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_events_archived",
            "Logs and alerts stored in the event store",
            s.events
                .counters()
                .stored
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_events_archive_failures",
            "Event batches the event store refused (handed back to the bus)",
            s.events
                .counters()
                .failed_batches
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "chengfang_device_messages_accepted",
            "Device telemetry verified and accepted",
            d.accepted + d.late,
        ),
        (
            "chengfang_device_messages_duplicates",
            "Device telemetry copies dropped",
            d.duplicates,
        ),
        (
            "chengfang_device_messages_rejected",
            "Device telemetry refused (forged, replayed, spoofed …)",
            d.rejected.values().sum(),
        ),
    ];
    let body = render(s.metrics.clone(), extra)
        .map_err(|_| ApiError::new(cf_core::ErrorCode::Internal, "could not render metrics"))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}
