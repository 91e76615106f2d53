//! The ports: what the platform needs from storage and messaging, stated as traits so that the
//! embedded (SQLite, in-process) and scale-out (PostgreSQL, NATS) edges are interchangeable.

use async_trait::async_trait;
use cf_core::Timestamp;
use cf_event::Event;
use cf_ledger::Hash;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// Stored data is not what this version expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A uniqueness or sequence constraint was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// No such object.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request itself is malformed (e.g. a search query that does not parse).
    #[error("{0}")]
    Invalid(String),
}

/// One persisted ledger entry: its position, canonical bytes and leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// 0-based position in the log.
    pub seq: u64,
    /// Canonical JSON of the [`crate::LedgerEntry`]; the Merkle leaf is exactly these bytes.
    pub body: String,
    /// `leaf_hash(body)`, stored so a restart rebuilds the tree without re-reading bodies;
    /// `chengfang audit verify` never trusts it and recomputes from `body`.
    pub leaf_hash: Hash,
}

/// One persisted signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// The signed note.
    pub note: String,
    /// When it was signed.
    pub time: Timestamp,
}

/// An API token's stored form; the secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public token id (first part of the token string).
    pub id: String,
    /// Human label.
    pub name: String,
    /// Comma-separated role names.
    pub roles: String,
    /// SHA-256 of the secret part.
    pub secret_hash: Hash,
    /// Creation time.
    pub created: Timestamp,
    /// Expiry, if any.
    pub expires: Option<Timestamp>,
    /// Revocation time, if revoked.
    pub revoked: Option<Timestamp>,
    /// A bootstrap credential that may only be exchanged for a new one.
    pub must_change: bool,
    /// The organisation the token is confined to; `None` for a city-wide token (IDM-1).
    pub org: Option<String>,
}

/// One stored key of the KMS: metadata and versions with their material wrapped under the
/// organisation's KEK (never plaintext key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsRecord {
    /// Key name (unique); organisation KEKs are stored as `_org.<org>`.
    pub name: String,
    /// Owning organisation.
    pub org: String,
    /// The wrapped key ring (cf-kms stored form).
    pub body: String,
    /// Optimistic-concurrency revision, 1 on insert, +1 per update.
    pub revision: u64,
    /// Last change.
    pub updated: Timestamp,
}

/// A small platform object kept as JSON (datasets, export requests …), with an optimistic
/// revision so concurrent updates from several nodes cannot silently overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Kind, e.g. `dataset`.
    pub kind: String,
    /// Id, unique within the kind.
    pub id: String,
    /// JSON body.
    pub body: String,
    /// 1 on insert, +1 per update.
    pub revision: u64,
    /// Last change.
    pub updated: Timestamp,
}

/// Platform state. Every method is atomic; `append_ledger` is durable when it returns.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Append entries whose seqs continue the log exactly; all or nothing, durable on return.
    async fn append_ledger(&self, entries: &[StoredEntry]) -> Result<(), StoreError>;
    /// Entries with `seq >= from`, ascending, at most `limit`.
    async fn ledger_entries(&self, from: u64, limit: u32) -> Result<Vec<StoredEntry>, StoreError>;
    /// Leaf hashes with `seq >= from`, ascending, at most `limit`.
    async fn ledger_leaf_hashes(&self, from: u64, limit: u32) -> Result<Vec<Hash>, StoreError>;
    /// Number of entries.
    async fn ledger_len(&self) -> Result<u64, StoreError>;
    /// Bytes the ledger occupies on its storage (for the AUD-2 fill alarm).
    async fn ledger_bytes(&self) -> Result<u64, StoreError>;
    /// Store a signed checkpoint.
    async fn put_checkpoint(&self, cp: &StoredCheckpoint) -> Result<(), StoreError>;
    /// The checkpoint with the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
    /// All checkpoints, ascending by size.
    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    /// Insert a token; conflict if the id exists.
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError>;
    /// A token by id.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// All tokens.
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Mark revoked; not-found if absent, conflict if already revoked.
    async fn revoke_token(&self, id: &str, at: Timestamp) -> Result<(), StoreError>;
    /// Insert a KMS key (revision 1); conflict if the name exists.
    async fn kms_insert(&self, rec: &KmsRecord) -> Result<(), StoreError>;
    /// Replace a KMS key if its stored revision is `rec.revision - 1`; conflict otherwise. After
    /// an update that erased material the backend scrubs what it can of the old bytes.
    async fn kms_update(&self, rec: &KmsRecord) -> Result<(), StoreError>;
    /// A KMS key by name.
    async fn kms_get(&self, name: &str) -> Result<Option<KmsRecord>, StoreError>;
    /// All KMS keys, by name.
    async fn kms_list(&self) -> Result<Vec<KmsRecord>, StoreError>;
    /// Insert a document (revision 1); conflict if (kind, id) exists.
    async fn doc_insert(&self, doc: &Document) -> Result<(), StoreError>;
    /// Replace a document if its stored revision is `doc.revision - 1`; conflict otherwise.
    async fn doc_update(&self, doc: &Document) -> Result<(), StoreError>;
    /// A document.
    async fn doc_get(&self, kind: &str, id: &str) -> Result<Option<Document>, StoreError>;
    /// Every document of a kind, by id.
    async fn doc_list(&self, kind: &str) -> Result<Vec<Document>, StoreError>;
    /// Remove a document (for short-lived state such as sessions); `false` if it was not there.
    async fn doc_delete(&self, kind: &str, id: &str) -> Result<bool, StoreError>;
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Store `body` as the document `kind`/`id`: inserted at revision 1, or replacing the current
/// revision (a concurrent writer makes it a conflict, as `doc_update` does).
pub async fn put_document(
    store: &dyn StateStore,
    kind: &str,
    id: &str,
    body: String,
    now: Timestamp,
) -> Result<(), StoreError> {
    match store.doc_get(kind, id).await? {
        Some(prev) => {
            store
                .doc_update(&Document {
                    body,
                    revision: prev.revision + 1,
                    updated: now,
                    ..prev
                })
                .await
        }
        None => {
            store
                .doc_insert(&Document {
                    kind: kind.to_string(),
                    id: id.to_string(),
                    body,
                    revision: 1,
                    updated: now,
                })
                .await
        }
    }
}

/// Bus failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus could not be reached or refused.
    #[error("event bus: {0}")]
    Backend(String),
    /// A topic or filter is invalid.
    #[error("invalid topic `{0}`: {1}")]
    InvalidTopic(String, &'static str),
}

/// Deliveries a consumer group may hold unacknowledged before its bus stops feeding it. Above
/// what the event archive holds between commits (its channel, its batch and 50,000 staged).
pub const MAX_UNACKED: usize = 100_000;

/// Acknowledges or returns one delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Processing finished; never deliver again.
    async fn ack(&self) -> Result<(), BusError>;
    /// Processing failed; deliver again (to any member of the group).
    async fn nack(&self) -> Result<(), BusError>;
}

/// One event delivered to a consumer group member.
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// How many times it has been delivered (1 the first time).
    pub attempt: u64,
    /// Its acknowledgement handle.
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    /// Acknowledge.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
    /// Ask for redelivery.
    pub async fn nack(self) -> Result<(), BusError> {
        self.acker.nack().await
    }
}

/// A consumer group membership: deliveries arrive on `rx`.
#[derive(Debug)]
pub struct Subscription {
    /// Deliveries for this member.
    pub rx: tokio::sync::mpsc::Receiver<Delivery>,
}

/// The event bus: durable publish, consumer groups, at-least-once delivery.
/// Topics are dot-separated tokens; filters may use `*` (one token) and `>` (the rest).
#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// `memory` or `nats`.
    fn backend(&self) -> &'static str;
    /// Publish; returns once the bus has accepted the event durably (for NATS, the stream ack).
    async fn publish(&self, event: &Event) -> Result<(), BusError>;
    /// Publish several events; returns once all are durably accepted (an error may leave some
    /// of them published). Backends override it to accept a batch in one round trip.
    async fn publish_batch(&self, events: &[Event]) -> Result<(), BusError> {
        for e in events {
            self.publish(e).await?;
        }
        Ok(())
    }
    /// [`EventBus::publish_batch`] for events the caller no longer needs: a backend that keeps
    /// them in memory takes them instead of copying them.
    async fn publish_owned(&self, events: Vec<Event>) -> Result<(), BusError> {
        self.publish_batch(&events).await
    }
    /// Join consumer group `group` for events matching `filter`; each event is delivered to one
    /// member of each group, starting with events published after the group was first created.
    /// A group may hold up to [`MAX_UNACKED`] deliveries unacknowledged and still be fed (the
    /// archive acknowledges whole commits at once).
    async fn subscribe(&self, filter: &str, group: &str) -> Result<Subscription, BusError>;
}

/// What the broker must enforce: revoked certificates and which identity may use which topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerPolicy {
    /// CRL, PEM.
    pub crl_pem: String,
    /// Per-identity topic grants (MQTT filters), sorted by username.
    pub grants: Vec<TopicGrant>,
}

/// Topics one identity may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGrant {
    /// Certificate CN, used by the broker as the username.
    pub username: String,
    /// Filters it may subscribe to.
    pub read: Vec<String>,
    /// Filters it may publish to.
    pub write: Vec<String>,
}

/// The device network's broker, as the platform drives it (AVL-2): where revocations go and how
/// commands reach a device. Implemented over Mosquitto by the MQTT edge.
#[async_trait]
pub trait DeviceGateway: Send + Sync + std::fmt::Debug {
    /// Install the CRL and the per-device topic grants where the broker reads them, and make the
    /// broker use them now (new connections see the CRL; existing ones lose revoked grants).
    async fn apply(&self, policy: &BrokerPolicy) -> Result<(), BusError>;
    /// Publish `payload` on the MQTT topic `topic` (QoS 1, retained so a reconnecting device sees it).
    async fn command(&self, topic: &str, payload: &[u8]) -> Result<(), BusError>;
}

/// Validate a topic (no wildcards) or a filter (wildcards allowed).
pub fn check_topic(topic: &str, filter: bool) -> Result<(), BusError> {
    if topic.is_empty() || topic.len() > 200 {
        return Err(BusError::InvalidTopic(
            topic.into(),
            "must be 1 to 200 characters",
        ));
    }
    let tokens: Vec<&str> = topic.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(BusError::InvalidTopic(topic.into(), "has an empty token"));
        }
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*' || c == '>')
        {
            return Err(BusError::InvalidTopic(
                topic.into(),
                "tokens may hold only A-Z a-z 0-9 _ -",
            ));
        }
        let wild = *t == "*" || *t == ">";
        if (t.contains('*') || t.contains('>')) && !wild {
            return Err(BusError::InvalidTopic(
                topic.into(),
                "a wildcard must be a whole token",
            ));
        }
        if wild && !filter {
            return Err(BusError::InvalidTopic(
                topic.into(),
                "a published topic may not contain wildcards",
            ));
        }
        if *t == ">" && i != tokens.len() - 1 {
            return Err(BusError::InvalidTopic(
                topic.into(),
                "'>' must be the last token",
            ));
        }
    }
    Ok(())
}

/// Validate a consumer-group name (it becomes a durable consumer name on NATS).
pub fn check_group(group: &str) -> Result<(), BusError> {
    if group.is_empty()
        || group.len() > 100
        || !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(BusError::InvalidTopic(
            group.into(),
            "group names hold only A-Z a-z 0-9 _ - (1 to 100)",
        ));
    }
    Ok(())
}

/// Whether `topic` matches `filter` (NATS subject semantics).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('.');
    let mut t = topic.split('.');
    loop {
        match (f.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_matching() {
        assert!(topic_matches("alarm.>", "alarm.audit.write"));
        assert!(!topic_matches("alarm.>", "alarm"));
        assert!(topic_matches("city.*.telemetry", "city.d1.telemetry"));
        assert!(!topic_matches("city.*.telemetry", "city.d1.x.telemetry"));
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.b.c"));
    }

    #[test]
    fn topic_validation() {
        assert!(check_topic("alarm.audit", false).is_ok());
        assert!(check_topic("alarm.>", true).is_ok());
        assert!(check_topic("alarm.>", false).is_err());
        assert!(check_topic("a..b", false).is_err());
        assert!(check_topic("a.>.b", true).is_err());
        assert!(check_topic("a.b*", true).is_err());
        assert!(check_topic("a b", false).is_err());
    }
}

/// Remembers recently seen event ids so an at-least-once consumer processes each event once.
#[derive(Debug)]
pub struct SeenIds {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
    capacity: usize,
}

impl SeenIds {
    /// Remember up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        SeenIds {
            set: Default::default(),
            order: Default::default(),
            capacity: capacity.max(1),
        }
    }
    /// True the first time `id` is seen (within the window).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// Rows of a table in a database outside the platform (read only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows as text.
    pub rows: Vec<Vec<String>>,
}

/// Read access to the city's own databases, for dynamic masking and exports (MSK-3, MSK-4).
#[async_trait]
pub trait DataSource: Send + Sync + std::fmt::Debug {
    /// Up to `limit` rows of `table` in the database at `url`.
    async fn read(&self, url: &str, table: &str, limit: u32) -> Result<SourceRows, StoreError>;
}

/// Delivers one-time codes to people (password reset, PWD-2): SMS, e-mail or a government
/// messaging gateway in production; a file outbox in development and tests.
#[async_trait]
pub trait CodeSender: Send + Sync + std::fmt::Debug {
    /// Send `code` to the account `username` (the sender knows the contact address).
    async fn send(&self, username: &str, purpose: &str, code: &str) -> Result<(), BusError>;
}

/// Where an address is (AUZ-5): an IP-geolocation database in production (CC0 country data or
/// CC-BY city data read by the binary), a table in tests.
pub trait GeoLookup: Send + Sync + std::fmt::Debug {
    /// Country and, when the database has them, coordinates; `None` for private or unknown
    /// addresses.
    fn locate(&self, ip: &str) -> Option<GeoPoint>;
}

/// A located address.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeoPoint {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// Latitude, longitude.
    pub coords: Option<(f64, f64)>,
}

/// One event as kept for search (SA-1, AUD-1): the bus event, plus the fields analysts filter on
/// most, lifted out of its payload so the store can index them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedEvent {
    /// The bus event id (the store keeps one copy per id: redeliveries are not duplicated).
    pub id: String,
    /// When it happened (the event's own time).
    pub time: Timestamp,
    /// Bus topic (`log.syslog`, `alert.auth.brute_force` …).
    pub topic: String,
    /// Producer (`udp://10.0.0.5`, `chengfang/detect` …).
    pub source: String,
    /// Severity name.
    pub severity: String,
    /// OCSF class, when the event was normalised.
    pub class_uid: Option<u32>,
    /// Host the event is about.
    pub host: Option<String>,
    /// User the event is about.
    pub user: Option<String>,
    /// Source address.
    pub src_ip: Option<String>,
    /// Destination address.
    pub dst_ip: Option<String>,
    /// The whole payload.
    pub body: serde_json::Value,
}

/// A search over archived events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Query text: free words and phrases, `field:value`, `body.path:value`, AND/OR/NOT,
    /// parentheses; empty means every event in the time range.
    pub text: String,
    /// Inclusive start.
    pub from: Timestamp,
    /// Exclusive end.
    pub to: Timestamp,
    /// At most this many events, newest first.
    pub limit: usize,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventPage {
    /// Matching events, newest first.
    pub events: Vec<ArchivedEvent>,
    /// How many events matched in all searched partitions (may exceed `events.len()`).
    pub matched: u64,
    /// How many time partitions were searched.
    pub partitions: usize,
}

/// One time partition of the event store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// The UTC day it holds, `YYYY-MM-DD`.
    pub day: String,
    /// Events in it.
    pub events: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// The event store (SA-1): time-partitioned, compressed, searchable; partitions are the unit of
/// retention.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Store a batch; returns once it is durable and searchable.
    async fn append(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError>;
    /// Index a batch without making it durable: it becomes durable and searchable at the next
    /// [`EventStore::commit`], so a consumer can group several batches into one commit (a commit
    /// is the store's fixed cost). On error, everything staged since the last commit is
    /// discarded. The default stores at once.
    async fn stage(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError> {
        self.append(events).await
    }
    /// Make every staged batch durable and searchable. On error, whatever was not committed is
    /// discarded and the caller must hand those events back.
    async fn commit(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Search, newest first.
    async fn search(&self, query: &EventQuery) -> Result<EventPage, StoreError>;
    /// The partitions, oldest first.
    async fn partitions(&self) -> Result<Vec<PartitionInfo>, StoreError>;
    /// Delete one day's partition (retention).
    async fn drop_partition(&self, day: &str) -> Result<(), StoreError>;
}
