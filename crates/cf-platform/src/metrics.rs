//! Counters the platform keeps about itself; the API edge exports them in Prometheus format.

use std::sync::atomic::{AtomicU64, Ordering};

/// Platform counters and gauges (all monotonic unless named as a gauge).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Ledger records durably appended.
    pub audit_appends: AtomicU64,
    /// Ledger write failures (each refused the action it was recording: AUD-3).
    pub audit_failures: AtomicU64,
    /// Signed checkpoints written.
    pub checkpoints: AtomicU64,
    /// Alarms raised, all kinds.
    pub alarms: AtomicU64,
    /// Alarms that could not be published to the bus (they are still logged).
    pub alarm_publish_failures: AtomicU64,
    /// Gauge: ledger size in records.
    pub ledger_size: AtomicU64,
    /// Gauge: bytes the ledger occupies.
    pub ledger_bytes: AtomicU64,
    /// Gauge: last measured append → signed-checkpoint latency, microseconds.
    pub checkpoint_lag_us: AtomicU64,
    /// Events published to the bus by the platform.
    pub events_published: AtomicU64,
}

impl Metrics {
    /// Add one.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    /// Read.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    /// Set a gauge.
    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }
}
