//! The audit ledger service (AUD-2, AUD-3, AUD-5): group-committed durable appends that yield
//! `Receipt`s, signed checkpoints within a bounded delay, proofs, and alarms when writes fail
//! or storage fills up.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cf_core::SharedClock;
use cf_event::{AuditRecord, Severity};
use cf_ledger::{Checkpoint, Hash, MerkleTree, NoteSigner, leaf_hash};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::PlatformError;
use crate::alarm::Alarms;
use crate::authz::{Action, Authorized};
use crate::metrics::Metrics;
use crate::ports::{StateStore, StoredCheckpoint, StoredEntry};

/// The leaf format: position, hash chain link and the record. Field order is the canonical
/// encoding; the Merkle leaf is exactly `serde_json::to_string(&entry)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// 0-based position.
    pub seq: u64,
    /// Hex leaf hash of the previous entry (64 zeros for the first): lets a verifier name the
    /// exact record that was altered, not just the checkpoint range.
    pub prev: String,
    /// The audited action.
    pub record: AuditRecord,
}

impl LedgerEntry {
    /// Canonical bytes.
    pub fn encode(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The hex `prev` of entry 0.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Proof that a record is durably in the ledger. Only [`AuditLedger::append`] creates one, so a
/// success response that requires a `Receipt` cannot be built before the audit write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    leaf_hash: Hash,
}

impl Receipt {
    /// Position of the record.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Its leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        self.leaf_hash
    }
}

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Checkpoint origin line, unique per deployment.
    pub origin: String,
    /// Longest wait between an append and a signed checkpoint covering it.
    pub checkpoint_interval: Duration,
    /// Most records per group commit.
    pub max_batch: usize,
    /// Storage set aside for the ledger, bytes.
    pub capacity_bytes: u64,
    /// Alarm when the ledger fills this percentage of `capacity_bytes` (AUD-2).
    pub fill_alarm_percent: u8,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            origin: "chengfang.local/audit".into(),
            checkpoint_interval: Duration::from_millis(250),
            max_batch: 8192,
            capacity_bytes: 10 << 30,
            fill_alarm_percent: 80,
        }
    }
}

struct Pending {
    record: AuditRecord,
    reply: oneshot::Sender<Result<Receipt, PlatformError>>,
}

struct Inner {
    store: Arc<dyn StateStore>,
    tree: RwLock<MerkleTree>,
    signer: NoteSigner,
    cfg: LedgerConfig,
    clock: SharedClock,
    alarms: Alarms,
    metrics: Arc<Metrics>,
    appended: Notify,
    checkpoint_tx: watch::Sender<Option<StoredCheckpoint>>,
    first_unsigned_nanos: AtomicI64,
    fill_alarmed: AtomicBool,
    batches: AtomicU64,
}

/// The writer and checkpointer tasks.
type Tasks = (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>);

/// The running ledger. Cheap to clone.
#[derive(Clone)]
pub struct AuditLedger {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Pending>,
    stop_writer: watch::Sender<bool>,
    stop_checkpointer: watch::Sender<bool>,
    tasks: Arc<tokio::sync::Mutex<Option<Tasks>>>,
}

/// How long one group commit may take before it is treated as failed.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

fn read_tree(inner: &Inner) -> std::sync::RwLockReadGuard<'_, MerkleTree> {
    inner.tree.read().unwrap_or_else(|e| e.into_inner())
}

fn write_tree(inner: &Inner) -> std::sync::RwLockWriteGuard<'_, MerkleTree> {
    inner.tree.write().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for AuditLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLedger")
            .field("origin", &self.inner.cfg.origin)
            .finish()
    }
}

impl AuditLedger {
    /// Open the ledger in `store`: rebuild the tree from stored leaf hashes, check it against
    /// the latest signed checkpoint, and start the writer and checkpointer tasks.
    pub async fn open(
        store: Arc<dyn StateStore>,
        signer: NoteSigner,
        cfg: LedgerConfig,
        clock: SharedClock,
        alarms: Alarms,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PlatformError> {
        let mut tree = MerkleTree::new();
        loop {
            let hashes = store.ledger_leaf_hashes(tree.size(), 100_000).await?;
            if hashes.is_empty() {
                break;
            }
            for h in hashes {
                tree.push(h);
            }
        }
        let latest = store.latest_checkpoint().await?;
        let mut signed = 0u64;
        if let Some(cp) = &latest {
            let parsed =
                Checkpoint::open(&cp.note, &cfg.origin, &[signer.verifier()]).map_err(|e| {
                    PlatformError::Internal(format!(
                        "latest checkpoint does not verify with this ledger's key: {e}"
                    ))
                })?;
            let root = tree.root_at(parsed.size).map_err(|_| {
                PlatformError::Internal(format!(
                    "ledger holds {} records but its latest checkpoint covers {}: records were removed; run `chengfang audit verify`",
                    tree.size(),
                    parsed.size
                ))
            })?;
            if root != parsed.root {
                return Err(PlatformError::Internal(
                    "ledger does not match its latest signed checkpoint: records were altered; run `chengfang audit verify`".into(),
                ));
            }
            signed = parsed.size;
        }
        // Records after the latest checkpoint are not yet signed: check them from their bodies
        // (not the stored hash column) before this node signs them.
        let mut unsigned = 0u64;
        let mut from = signed;
        while from < tree.size() {
            let page = store.ledger_entries(from, 10_000).await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in &page {
                let entry: LedgerEntry = serde_json::from_str(&e.body).map_err(|err| {
                    PlatformError::Internal(format!("unsigned ledger record {} is unreadable ({err}); run `chengfang audit verify`", e.seq))
                })?;
                let h = leaf_hash(e.body.as_bytes());
                let prev = if e.seq == 0 {
                    GENESIS_PREV.to_string()
                } else {
                    tree.leaf(e.seq - 1).map_or_else(String::new, hex_encode)
                };
                if entry.seq != e.seq || tree.leaf(e.seq) != Some(h) || entry.prev != prev {
                    return Err(PlatformError::Internal(format!(
                        "unsigned ledger record {} was altered or inserted; run `chengfang audit verify`",
                        e.seq
                    )));
                }
                unsigned += 1;
            }
            from = last + 1;
        }
        Metrics::set(&metrics.ledger_size, tree.size());
        let (checkpoint_tx, _) = watch::channel(latest);
        let inner = Arc::new(Inner {
            store,
            tree: RwLock::new(tree),
            signer,
            cfg,
            clock,
            alarms,
            metrics,
            appended: Notify::new(),
            checkpoint_tx,
            first_unsigned_nanos: AtomicI64::new(0),
            fill_alarmed: AtomicBool::new(false),
            batches: AtomicU64::new(0),
        });
        if unsigned > 0 {
            tracing::warn!(
                records = unsigned,
                "signing records left unsigned by an earlier stop"
            );
        }
        let (tx, rx) = mpsc::channel(inner.cfg.max_batch.max(1) * 4);
        let (stop_writer, writer_rx) = watch::channel(false);
        let (stop_checkpointer, cp_rx) = watch::channel(false);
        let writer = tokio::spawn(writer(inner.clone(), rx, writer_rx));
        let cp = tokio::spawn(checkpointer(inner.clone(), cp_rx));
        // Unsigned records left by a crash get their checkpoint right away.
        inner.appended.notify_one();
        Ok(AuditLedger {
            inner,
            tx,
            stop_writer,
            stop_checkpointer,
            tasks: Arc::new(tokio::sync::Mutex::new(Some((writer, cp)))),
        })
    }

    /// Durably append `record`. Returns only after the record is committed to storage; on failure
    /// the caller must refuse the action it was recording (fail closed, AUD-3).
    pub async fn append(&self, record: AuditRecord) -> Result<Receipt, PlatformError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { record, reply })
            .await
            .map_err(|_| PlatformError::AuditUnavailable("the ledger is shut down".into()))?;
        rx.await
            .map_err(|_| PlatformError::AuditUnavailable("the ledger writer stopped".into()))?
    }

    /// Current number of records.
    pub fn size(&self) -> u64 {
        read_tree(&self.inner).size()
    }

    /// Every verifier key of the ledger (Ed25519, then the SM2 co-signing key if any).
    pub fn verifier_keys(&self) -> Vec<String> {
        self.inner.signer.verifier_keys()
    }

    /// The ledger's public verifier key (C2SP vkey string).
    pub fn verifier_key(&self) -> String {
        self.inner.signer.verifier_key()
    }

    /// The checkpoint origin.
    pub fn origin(&self) -> &str {
        &self.inner.cfg.origin
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(
        &self,
        auth: &Authorized,
    ) -> Result<Option<StoredCheckpoint>, PlatformError> {
        require(auth, Action::ReadAudit)?;
        Ok(self.inner.checkpoint_tx.borrow().clone())
    }

    /// Wait until a signed checkpoint covers `seq`, or `timeout` passes.
    pub async fn wait_for_checkpoint(
        &self,
        seq: u64,
        timeout: Duration,
    ) -> Option<StoredCheckpoint> {
        let mut rx = self.inner.checkpoint_tx.subscribe();
        let fut = async {
            loop {
                if let Some(cp) = rx.borrow_and_update().clone()
                    && cp.size > seq
                {
                    return Some(cp);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.ok().flatten()
    }

    /// Inclusion proof of `seq` in the tree of `size` records (default: latest checkpoint).
    pub fn inclusion_proof(
        &self,
        auth: &Authorized,
        seq: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), PlatformError> {
        require(auth, Action::ReadAudit)?;
        let t = read_tree(&self.inner);
        let proof = t
            .inclusion_proof(seq, size)
            .map_err(|e| PlatformError::InvalidInput(e.to_string()))?;
        let leaf = t
            .leaf(seq)
            .ok_or_else(|| PlatformError::NotFound(format!("record {seq}")))?;
        Ok((leaf, proof))
    }

    /// Consistency proof between two sizes.
    pub fn consistency_proof(
        &self,
        auth: &Authorized,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, PlatformError> {
        require(auth, Action::ReadAudit)?;
        let t = read_tree(&self.inner);
        t.consistency_proof(old, new)
            .map_err(|e| PlatformError::InvalidInput(e.to_string()))
    }

    /// Records from `from`, at most `limit` (AUD-5: auditor only).
    pub async fn entries(
        &self,
        auth: &Authorized,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, PlatformError> {
        require(auth, Action::ReadAudit)?;
        let stored = self.inner.store.ledger_entries(from, limit).await?;
        let t = read_tree(&self.inner);
        stored
            .into_iter()
            // Records appended after this read of the tree are returned on the next page.
            .take_while(|s| s.seq < t.size())
            .map(|s| {
                if t.leaf(s.seq) != Some(leaf_hash(s.body.as_bytes())) {
                    return Err(PlatformError::Internal(format!(
                        "ledger record {} in storage does not match the ledger (altered); run `chengfang audit verify`",
                        s.seq
                    )));
                }
                serde_json::from_str(&s.body)
                    .map_err(|e| PlatformError::Internal(format!("ledger record {} is unreadable: {e}", s.seq)))
            })
            .collect()
    }

    /// Stop accepting appends, commit what is queued, sign a final checkpoint and stop the tasks.
    pub async fn shutdown(&self) {
        let Some((writer, checkpointer)) = self.tasks.lock().await.take() else {
            return;
        };
        // The writer drains first, so the final checkpoint covers every committed record.
        let _ = self.stop_writer.send(true);
        let _ = writer.await;
        let _ = self.stop_checkpointer.send(true);
        let _ = checkpointer.await;
    }
}

fn require(auth: &Authorized, action: Action) -> Result<(), PlatformError> {
    if auth.action() != action {
        return Err(PlatformError::Forbidden(format!(
            "authorised for {}, not {}",
            auth.action().as_str(),
            action.as_str()
        )));
    }
    Ok(())
}

async fn writer(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Pending>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => {
                rx.close();
                // Commit whatever was accepted before the close.
                let mut rest = Vec::new();
                while let Ok(p) = rx.try_recv() {
                    rest.push(p);
                }
                while !rest.is_empty() {
                    let n = rest.len().min(inner.cfg.max_batch.max(1));
                    commit(&inner, rest.drain(..n).collect()).await;
                }
                break;
            }
            p = rx.recv() => match p { Some(p) => p, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < inner.cfg.max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        commit(&inner, batch).await;
    }
}

async fn commit(inner: &Arc<Inner>, batch: Vec<Pending>) {
    let (start, mut prev) = {
        let t = read_tree(inner);
        let size = t.size();
        (size, if size == 0 { None } else { t.leaf(size - 1) })
    };
    let mut stored = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for (i, p) in batch.into_iter().enumerate() {
        replies.push(p.reply);
        let entry = LedgerEntry {
            seq: start + i as u64,
            prev: prev.map_or_else(|| GENESIS_PREV.to_string(), hex_encode),
            record: p.record,
        };
        let body = entry.encode();
        let h = leaf_hash(body.as_bytes());
        prev = Some(h);
        stored.push(StoredEntry {
            seq: entry.seq,
            body,
            leaf_hash: h,
        });
    }
    let result = match tokio::time::timeout(STORE_TIMEOUT, inner.store.append_ledger(&stored)).await
    {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the store did not answer within {STORE_TIMEOUT:?}")),
    };
    let result = match result {
        Ok(()) => Ok(()),
        // An error may hide a commit that did reach storage (a lost reply): look before refusing.
        Err(e) => match reconcile(inner, start, &stored).await {
            Reconciled::Committed => Ok(()),
            Reconciled::NotCommitted => Err(e),
        },
    };
    match result {
        Ok(()) => {
            let size = {
                let mut t = write_tree(inner);
                for s in &stored {
                    t.push(s.leaf_hash);
                }
                t.size()
            };
            let now = inner.clock.now().unix_nanos();
            let _ = inner.first_unsigned_nanos.compare_exchange(
                0,
                now,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            inner
                .metrics
                .audit_appends
                .fetch_add(stored.len() as u64, Ordering::Relaxed);
            Metrics::set(&inner.metrics.ledger_size, size);
            for (reply, s) in replies.into_iter().zip(&stored) {
                let _ = reply.send(Ok(Receipt {
                    seq: s.seq,
                    leaf_hash: s.leaf_hash,
                }));
            }
            inner.appended.notify_one();
            if inner
                .batches
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(64)
            {
                check_fill(inner).await;
            }
        }
        Err(e) => {
            let n = replies.len();
            inner
                .metrics
                .audit_failures
                .fetch_add(n as u64, Ordering::Relaxed);
            // The alarm goes out before any caller hears of the failure (AUD-3).
            inner
                .alarms
                .raise(
                    "audit.write_failed",
                    Severity::Critical,
                    serde_json::json!({ "records_refused": n, "error": e, "requirement": "AUD-3" }),
                )
                .await;
            for reply in replies {
                let _ = reply.send(Err(PlatformError::AuditUnavailable(e.clone())));
            }
        }
    }
}

enum Reconciled {
    Committed,
    NotCommitted,
}

/// After a failed commit, compare what storage holds from `start` with the batch. Rows that
/// are there but not ours (an earlier commit whose reply was lost) are adopted into the tree so
/// that the log can continue; they were never acknowledged, and an alarm says so.
async fn reconcile(inner: &Arc<Inner>, start: u64, batch: &[StoredEntry]) -> Reconciled {
    let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    let Ok(Ok(found)) =
        tokio::time::timeout(STORE_TIMEOUT, inner.store.ledger_leaf_hashes(start, n)).await
    else {
        return Reconciled::NotCommitted;
    };
    if !found.is_empty()
        && found.len() == batch.len()
        && found.iter().zip(batch).all(|(h, s)| *h == s.leaf_hash)
    {
        return Reconciled::Committed;
    }
    if found.is_empty() {
        return Reconciled::NotCommitted;
    }
    let mut adopted = 0u64;
    let mut from = start;
    loop {
        let Ok(Ok(hashes)) =
            tokio::time::timeout(STORE_TIMEOUT, inner.store.ledger_leaf_hashes(from, 10_000)).await
        else {
            break;
        };
        if hashes.is_empty() {
            break;
        }
        let mut t = write_tree(inner);
        if t.size() != from {
            break;
        }
        for h in hashes {
            t.push(h);
            adopted += 1;
        }
        from = t.size();
    }
    inner
        .alarms
        .raise(
            "audit.unacknowledged_records",
            Severity::High,
            serde_json::json!({ "from": start, "records": adopted, "note": "storage held records whose commit was not acknowledged; they are kept and will be signed" }),
        )
        .await;
    inner.appended.notify_one();
    Reconciled::NotCommitted
}

async fn check_fill(inner: &Arc<Inner>) {
    let Ok(bytes) = inner.store.ledger_bytes().await else {
        return;
    };
    Metrics::set(&inner.metrics.ledger_bytes, bytes);
    let cap = inner.cfg.capacity_bytes.max(1);
    let percent = bytes.saturating_mul(100) / cap;
    let over = percent >= u64::from(inner.cfg.fill_alarm_percent);
    if over && !inner.fill_alarmed.swap(true, Ordering::SeqCst) {
        inner
            .alarms
            .raise(
                "audit.storage_filling",
                Severity::High,
                serde_json::json!({ "bytes": bytes, "capacity_bytes": cap, "percent": percent, "threshold_percent": inner.cfg.fill_alarm_percent, "requirement": "AUD-2" }),
            )
            .await;
    } else if !over {
        inner.fill_alarmed.store(false, Ordering::SeqCst);
    }
}

async fn checkpointer(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = inner.appended.notified() => false,
            _ = shutdown.changed() => true,
        };
        if !stop {
            // Let a burst of appends collect into one checkpoint, bounded by the interval.
            tokio::time::sleep(inner.cfg.checkpoint_interval.min(Duration::from_millis(50))).await;
        }
        if let Err(e) = sign_checkpoint(&inner).await {
            tracing::error!(error = %e, "could not write a signed checkpoint");
            inner
                .alarms
                .raise(
                    "audit.checkpoint_failed",
                    Severity::High,
                    serde_json::json!({ "error": e.to_string() }),
                )
                .await;
            tokio::time::sleep(inner.cfg.checkpoint_interval).await;
            inner.appended.notify_one();
        }
        if stop {
            break;
        }
    }
}

async fn sign_checkpoint(inner: &Arc<Inner>) -> Result<(), PlatformError> {
    let (size, root) = {
        let t = read_tree(inner);
        (t.size(), t.root())
    };
    let last = inner.checkpoint_tx.borrow().as_ref().map_or(0, |c| c.size);
    if size == 0 || size <= last {
        return Ok(());
    }
    let now = inner.clock.now();
    let cp = Checkpoint {
        origin: inner.cfg.origin.clone(),
        size,
        root,
        extensions: vec![format!("time {}", now.unix_millis())],
    };
    let note = cp
        .sign(&[&inner.signer])
        .map_err(|e| PlatformError::Internal(e.to_string()))?;
    let stored = StoredCheckpoint {
        size,
        note,
        time: now,
    };
    inner.store.put_checkpoint(&stored).await?;
    let first = inner.first_unsigned_nanos.swap(0, Ordering::SeqCst);
    if first > 0 {
        let lag = now.unix_nanos().saturating_sub(first) / 1000;
        Metrics::set(
            &inner.metrics.checkpoint_lag_us,
            u64::try_from(lag).unwrap_or(0),
        );
    }
    Metrics::inc(&inner.metrics.checkpoints);
    inner.checkpoint_tx.send_replace(Some(stored));
    Ok(())
}

/// Lower-case hex of a hash.
pub fn hex_encode(h: Hash) -> String {
    hex::encode(h)
}

/// Build the system's own audit record (internal actions such as start-up).
pub fn system_record(
    clock: &SharedClock,
    event_type: &str,
    object: &str,
    action: &str,
) -> AuditRecord {
    AuditRecord::new(
        event_type,
        clock.now(),
        "local",
        "chengfang",
        "system",
        object,
        action,
        cf_event::Outcome::Success,
        "-",
    )
}
