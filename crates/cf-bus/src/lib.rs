//! The event-bus edge: the platform's `EventBus` port as a SQLite journal in the data directory
//! (embedded default, survives kill -9), in memory (tests), and on NATS JetStream (scale-out:
//! durable stream, durable pull consumers as consumer groups, explicit acks).
//!
//! Architecture invariant: the only crate that speaks NATS. Uses streams and consumers only —
//! the Debian nats-server 2.9 has no working KV — so no KV or object store.

mod journal;
mod memory;
mod nats;

pub use journal::{JournalBus, journal_path};
pub use memory::MemoryBus;
pub use nats::NatsBus;

use std::sync::Arc;

use cf_platform::ports::{BusError, EventBus};

/// Open a bus by URL: `journal:///path/bus.db`, `memory://` or `nats://host:port` (stream name
/// `CHENGFANG` unless given).
pub async fn connect(url: &str, stream: Option<&str>) -> Result<Arc<dyn EventBus>, BusError> {
    if url == "memory://" || url.is_empty() {
        return Ok(Arc::new(MemoryBus::new()));
    }
    if url.starts_with("journal://") {
        return Ok(Arc::new(JournalBus::open(&journal_path(url)?).await?));
    }
    if url.starts_with("nats://") || url.starts_with("tls://") {
        return Ok(Arc::new(
            NatsBus::connect(url, stream.unwrap_or("CHENGFANG")).await?,
        ));
    }
    Err(BusError::Backend(format!(
        "unsupported bus URL `{url}`: use journal://PATH, memory:// or nats://host:port"
    )))
}
