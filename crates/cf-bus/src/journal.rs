//! Journal bus, the embedded default: every event is committed to a SQLite journal before
//! `publish` returns and each consumer group keeps an acknowledgement watermark there, so a
//! process killed with `kill -9` redelivers on restart whatever it had not finished (AUD-1, SA-1).
//!
//! Live events reach a group through a bounded in-memory queue; a group that falls behind is fed
//! from the journal instead, so publishing never waits for a slow consumer and memory stays
//! bounded. One writer task owns the journal: it commits publishes in groups (one transaction
//! for all that arrived together), decides per group whether each event goes to the queue or is
//! left for the catch-up reader, and saves watermarks. Delivery is at least once: events acked in
//! the last quarter second before a crash come again, and consumers are idempotent by event id.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cf_event::Event;
use cf_platform::ports::{
    Acker, BusError, Delivery, EventBus, Subscription, check_group, check_topic, topic_matches,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{mpsc, oneshot};

/// Events a group holds in memory before it is fed from the journal instead.
const GROUP_QUEUE: usize = 8_192;
/// Events the catch-up reader fetches per query.
const PAGE: i64 = 512;
/// Most events committed in one transaction.
const MAX_BATCH: usize = 4_096;
/// How often watermarks are saved (the redelivery window after a crash).
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often acknowledged events are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// A group found in the journal that no consumer joins within this time after start is
/// dropped, so that a retired consumer does not hold the journal for ever.
const UNCLAIMED_GRACE: Duration = Duration::from_secs(600);
/// Events older than this are deleted even if a group never acknowledged them (as the
/// JetStream stream's `max_age`).
const MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

fn be(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Backend(format!("journal: {what}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// (event, journal sequence, attempt, the event as journaled). The event is shared between the
/// groups it matches and handed out without a copy when only one holds it; the journaled bytes
/// are what a nack re-reads, so an outstanding delivery holds its compact encoding instead of a
/// second copy of the event.
type Item = (Arc<Event>, u64, u64, Arc<[u8]>);
/// An event to publish and its journal encoding.
type Publication = (Event, Arc<[u8]>);

/// Where a group stands; guarded by the group's lock.
#[derive(Debug, Default)]
struct Book {
    /// Queued or delivered, not yet acknowledged.
    outstanding: BTreeSet<u64>,
    /// Matching events from this sequence on are not queued: the catch-up reader fetches them.
    lag_from: Option<u64>,
    /// The writer has decided every event up to here.
    seen: u64,
    /// The bus was closed: the catch-up reader ends.
    closed: bool,
}

impl Book {
    /// Everything below is acknowledged.
    fn watermark(&self) -> u64 {
        let mut w = self.seen + 1;
        if let Some(&o) = self.outstanding.first() {
            w = w.min(o);
        }
        if let Some(l) = self.lag_from {
            w = w.min(l);
        }
        w
    }
}

struct Group {
    name: String,
    filter: String,
    tx: mpsc::Sender<Item>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>,
    book: Mutex<Book>,
    /// Wakes the catch-up reader.
    lagging: tokio::sync::Notify,
}

enum Cmd {
    Publish(Vec<Publication>, oneshot::Sender<Result<(), BusError>>),
    Attach(
        String,
        String,
        oneshot::Sender<Result<(Arc<Group>, bool), BusError>>,
    ),
}

/// The journal bus. Cloning shares it.
#[derive(Clone)]
pub struct JournalBus {
    writer: mpsc::Sender<Cmd>,
    readers: SqlitePool,
    /// Sequences below this were written by an earlier process (redeliveries after a restart).
    first_seq: u64,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for JournalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalBus")
            .field("path", &self.path)
            .finish()
    }
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL with NORMAL survives a killed process (the commit is in the OS before it returns);
        // only a power cut can lose the last commits, as with JetStream's default file storage.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
}

impl JournalBus {
    /// Open (or create) the journal at `path` and start its writer.
    pub async fn open(path: &Path) -> Result<Self, BusError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| be(&format!("cannot create {}", dir.display()), e))?;
        }
        let mut conn = options(path)
            .connect()
            .await
            .map_err(|e| be(&format!("cannot open {}", path.display()), e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bus_events (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, \
             published_ms INTEGER NOT NULL, body BLOB NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .map_err(|e| be("cannot create its tables", e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bus_groups (name TEXT PRIMARY KEY, filter TEXT NOT NULL, \
             watermark INTEGER NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .map_err(|e| be("cannot create its tables", e))?;
        let max_seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM bus_events")
            .fetch_one(&mut conn)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| be("cannot read", e))?;
        let mut stored = HashMap::new();
        for r in sqlx::query("SELECT name, filter, watermark FROM bus_groups")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| be("cannot read its groups", e))?
        {
            let name: String = r.try_get(0).map_err(|e| be("bad group row", e))?;
            let filter: String = r.try_get(1).map_err(|e| be("bad group row", e))?;
            let wm: i64 = r.try_get(2).map_err(|e| be("bad group row", e))?;
            stored.insert(name, (filter, wm.max(1) as u64));
        }
        // Every event is deleted once acknowledged, so the counter also comes from watermarks.
        let next = stored
            .values()
            .map(|(_, w)| *w)
            .fold(max_seq.max(0) as u64 + 1, u64::max);
        let readers = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options(path).read_only(true))
            .await
            .map_err(|e| be(&format!("cannot open {}", path.display()), e))?;
        let (tx, rx) = mpsc::channel(1_024);
        let writer = Writer {
            conn,
            next,
            groups: HashMap::new(),
            stored,
            saved: HashMap::new(),
            started: Instant::now(),
            // The first save after start also prunes what an earlier process left acknowledged.
            last_prune: Instant::now()
                .checked_sub(PRUNE_EVERY)
                .unwrap_or_else(Instant::now),
        };
        tokio::spawn(writer.run(rx));
        Ok(JournalBus {
            writer: tx,
            readers,
            first_seq: next,
            path: Arc::new(path.to_path_buf()),
        })
    }

    async fn send(&self, cmd: Cmd) -> Result<(), BusError> {
        self.writer
            .send(cmd)
            .await
            .map_err(|_| BusError::Backend("journal: the writer has stopped".into()))
    }

    /// Feed `g` from the journal while it lags behind. Holds no handle on the writer, so the
    /// writer stops (saving watermarks) when the last `JournalBus` is dropped.
    async fn catch_up(readers: SqlitePool, first_seq: u64, g: Arc<Group>) {
        loop {
            let (from, upto, closed) = {
                let mut b = lock(&g.book);
                match b.lag_from {
                    // Caught up: the writer queues live events again from here.
                    Some(f) if f > b.seen => {
                        b.lag_from = None;
                        (None, 0, b.closed)
                    }
                    Some(f) => (Some(f), b.seen, b.closed),
                    None => (None, 0, b.closed),
                }
            };
            if closed {
                return;
            }
            let Some(from) = from else {
                g.lagging.notified().await;
                continue;
            };
            let rows = match sqlx::query(
                "SELECT seq, topic, body FROM bus_events WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
            )
            .bind(from as i64)
            .bind(upto as i64)
            .bind(PAGE)
            .fetch_all(&readers)
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(group = %g.name, error = %e, "journal bus: cannot read the journal; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // Rows may have been pruned past `from` (older than the journal's maximum age).
            let mut next = if rows.is_empty() { upto + 1 } else { from };
            for r in rows {
                let seq = r.try_get::<i64, _>(0).unwrap_or(0) as u64;
                next = seq + 1;
                let topic: String = r.try_get(1).unwrap_or_default();
                if !topic_matches(&g.filter, &topic) {
                    continue;
                }
                let body: Vec<u8> = r.try_get(2).unwrap_or_default();
                let event = match serde_json::from_slice::<Event>(&body) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(group = %g.name, seq, error = %e, "journal bus: skipping an unreadable journal entry");
                        continue;
                    }
                };
                lock(&g.book).outstanding.insert(seq);
                let attempt = if seq < first_seq { 2 } else { 1 };
                if g.tx
                    .send((Arc::new(event), seq, attempt, body.into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let mut b = lock(&g.book);
            if b.lag_from.is_some_and(|f| f < next) {
                b.lag_from = Some(next);
            }
        }
    }
}

struct Writer {
    conn: SqliteConnection,
    next: u64,
    /// Groups joined in this process.
    groups: HashMap<String, Arc<Group>>,
    /// Groups in the journal: filter and saved watermark.
    stored: HashMap<String, (String, u64)>,
    /// Watermarks last saved, per joined group.
    saved: HashMap<String, u64>,
    started: Instant,
    last_prune: Instant,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut last_save = Instant::now();
        loop {
            let cmd = match tokio::time::timeout(SAVE_EVERY, rx.recv()).await {
                Ok(Some(c)) => Some(c),
                Ok(None) => {
                    self.save().await;
                    for g in self.groups.values() {
                        lock(&g.book).closed = true;
                        g.lagging.notify_one();
                    }
                    return;
                }
                Err(_) => None,
            };
            match cmd {
                Some(Cmd::Publish(events, reply)) => {
                    let mut batch = vec![(events, reply)];
                    let mut n = batch[0].0.len();
                    while n < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Cmd::Publish(e, r)) => {
                                n += e.len();
                                batch.push((e, r));
                            }
                            Ok(Cmd::Attach(g, f, r)) => {
                                self.publish(std::mem::take(&mut batch)).await;
                                let _ = r.send(self.attach(g, f).await);
                            }
                            Err(_) => break,
                        }
                    }
                    self.publish(batch).await;
                }
                Some(Cmd::Attach(g, f, r)) => {
                    let _ = r.send(self.attach(g, f).await);
                }
                None => {}
            }
            if last_save.elapsed() >= SAVE_EVERY {
                self.save().await;
                last_save = Instant::now();
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn publish(
        &mut self,
        batch: Vec<(Vec<Publication>, oneshot::Sender<Result<(), BusError>>)>,
    ) {
        if batch.is_empty() {
            return;
        }
        let first = self.next;
        match self.commit(&batch).await {
            Ok(last) => {
                self.next = last + 1;
                let mut seq = first;
                let mut items: Vec<(Arc<Event>, u64, Arc<[u8]>)> = Vec::new();
                let mut replies = Vec::with_capacity(batch.len());
                for (events, reply) in batch {
                    for (e, body) in events {
                        items.push((Arc::new(e), seq, body));
                        seq += 1;
                    }
                    replies.push(reply);
                }
                self.fan_out(items, last);
                for r in replies {
                    let _ = r.send(Ok(()));
                }
            }
            Err(e) => {
                for (_, r) in batch {
                    let _ = r.send(Err(be("the events were not committed", &e)));
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn commit(
        &mut self,
        batch: &[(Vec<Publication>, oneshot::Sender<Result<(), BusError>>)],
    ) -> Result<u64, String> {
        let now = unix_ms();
        let mut tx = self.conn.begin().await.map_err(|e| e.to_string())?;
        let mut seq = self.next;
        let rows: Vec<&Publication> = batch.iter().flat_map(|(e, _)| e.iter()).collect();
        // 4 bound values per row, under SQLite's limit of 32,766 per statement.
        for chunk in rows.chunks(1_000) {
            let sql = format!(
                "INSERT INTO bus_events (seq, topic, published_ms, body) VALUES {}",
                vec!["(?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (e, body) in chunk {
                q = q
                    .bind(seq as i64)
                    .bind(e.topic.as_str())
                    .bind(now)
                    .bind(&body[..]);
                seq += 1;
            }
            q.execute(&mut *tx).await.map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(seq - 1)
    }

    /// Queue each committed event for every group it matches, or leave it for the group's
    /// catch-up reader when the group's queue is full.
    fn fan_out(&mut self, items: Vec<(Arc<Event>, u64, Arc<[u8]>)>, last: u64) {
        for g in self.groups.values() {
            let mut b = lock(&g.book);
            let mut woke = false;
            for (e, seq, body) in &items {
                if b.lag_from.is_some() || !topic_matches(&g.filter, &e.topic) {
                    continue;
                }
                b.outstanding.insert(*seq);
                if g.tx.try_send((e.clone(), *seq, 1, body.clone())).is_err() {
                    b.outstanding.remove(seq);
                    b.lag_from = Some(*seq);
                    woke = true;
                }
            }
            b.seen = last;
            drop(b);
            if woke {
                g.lagging.notify_one();
            }
        }
    }

    async fn attach(
        &mut self,
        name: String,
        filter: String,
    ) -> Result<(Arc<Group>, bool), BusError> {
        if let Some(g) = self.groups.get(&name) {
            if g.filter != filter {
                return Err(BusError::InvalidTopic(
                    filter,
                    "the group already exists with another filter",
                ));
            }
            return Ok((g.clone(), false));
        }
        let last = self.next - 1;
        let from = match self.stored.get(&name) {
            Some((old, wm)) => {
                if *old != filter {
                    tracing::warn!(group = %name, old = %old, new = %filter, "journal bus: the group's filter changed; pending events are judged by the new one");
                }
                *wm
            }
            None => self.next,
        };
        sqlx::query(
            "INSERT INTO bus_groups (name, filter, watermark) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET filter = excluded.filter",
        )
        .bind(&name)
        .bind(&filter)
        .bind(from as i64)
        .execute(&mut self.conn)
        .await
        .map_err(|e| be("cannot record the group", e))?;
        self.stored.insert(name.clone(), (filter.clone(), from));
        self.saved.insert(name.clone(), from);
        let (tx, rx) = mpsc::channel(GROUP_QUEUE);
        let g = Arc::new(Group {
            name: name.clone(),
            filter,
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            book: Mutex::new(Book {
                outstanding: BTreeSet::new(),
                lag_from: (from <= last).then_some(from),
                seen: last,
                closed: false,
            }),
            lagging: tokio::sync::Notify::new(),
        });
        self.groups.insert(name, g.clone());
        Ok((g, true))
    }

    /// Save moved watermarks; now and then delete what every group has acknowledged.
    async fn save(&mut self) {
        for g in self.groups.values() {
            let wm = lock(&g.book).watermark();
            if self.saved.get(&g.name) == Some(&wm) {
                continue;
            }
            match sqlx::query("UPDATE bus_groups SET watermark = ? WHERE name = ?")
                .bind(wm as i64)
                .bind(&g.name)
                .execute(&mut self.conn)
                .await
            {
                Ok(_) => {
                    self.saved.insert(g.name.clone(), wm);
                    if let Some(s) = self.stored.get_mut(&g.name) {
                        s.1 = wm;
                    }
                }
                Err(e) => {
                    tracing::error!(group = %g.name, error = %e, "journal bus: cannot save a watermark")
                }
            }
        }
        if self.last_prune.elapsed() < PRUNE_EVERY {
            return;
        }
        self.last_prune = Instant::now();
        if self.started.elapsed() >= UNCLAIMED_GRACE {
            let unclaimed: Vec<String> = self
                .stored
                .keys()
                .filter(|n| !self.groups.contains_key(*n))
                .cloned()
                .collect();
            for n in unclaimed {
                tracing::warn!(group = %n, "journal bus: dropping a consumer group no consumer joined since start");
                if sqlx::query("DELETE FROM bus_groups WHERE name = ?")
                    .bind(&n)
                    .execute(&mut self.conn)
                    .await
                    .is_ok()
                {
                    self.stored.remove(&n);
                }
            }
        }
        let below = self
            .stored
            .values()
            .map(|(_, w)| *w)
            .fold(self.next, u64::min);
        let oldest = unix_ms() - MAX_AGE.as_millis() as i64;
        if let Err(e) = sqlx::query("DELETE FROM bus_events WHERE seq < ? OR published_ms < ?")
            .bind(below as i64)
            .bind(oldest)
            .execute(&mut self.conn)
            .await
        {
            tracing::error!(error = %e, "journal bus: cannot delete acknowledged events");
        }
    }
}

/// A delivered event's (sequence, attempt, the event as journaled).
type Outstanding = (u64, u64, Arc<[u8]>);

struct JournalAcker {
    group: Arc<Group>,
    item: Mutex<Option<Outstanding>>,
}

#[async_trait]
impl Acker for JournalAcker {
    async fn ack(&self) -> Result<(), BusError> {
        if let Some((seq, _, _)) = lock(&self.item).take() {
            lock(&self.group.book).outstanding.remove(&seq);
        }
        Ok(())
    }
    async fn nack(&self) -> Result<(), BusError> {
        if let Some((seq, n, body)) = lock(&self.item).take() {
            let e = match serde_json::from_slice::<Event>(&body) {
                Ok(e) => e,
                Err(e) => {
                    // Encoding has no depth limit and decoding has: a payload nested past it
                    // cannot come back. It is skipped as the catch-up reader skips an unreadable
                    // entry, so that it does not hold the group's watermark for ever.
                    lock(&self.group.book).outstanding.remove(&seq);
                    tracing::error!(group = %self.group.name, seq, error = %e, "journal bus: skipping a nacked event that cannot be read back");
                    return Ok(());
                }
            };
            let tx = self.group.tx.clone();
            // Not awaited here: the member that nacks may be the one that must drain the queue.
            tokio::spawn(async move {
                let _ = tx.send((Arc::new(e), seq, n + 1, body)).await;
            });
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for JournalBus {
    fn backend(&self) -> &'static str {
        "journal"
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.publish_batch(std::slice::from_ref(event)).await
    }

    async fn publish_batch(&self, events: &[Event]) -> Result<(), BusError> {
        self.publish_owned(events.to_vec()).await
    }

    async fn publish_owned(&self, events: Vec<Event>) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            check_topic(&e.topic, false)?;
            let body = serde_json::to_vec(&e).map_err(|e| be("cannot encode an event", e))?;
            rows.push((e, Arc::from(body)));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Publish(rows, tx)).await?;
        rx.await
            .map_err(|_| BusError::Backend("journal: the writer has stopped".into()))?
    }

    async fn subscribe(&self, filter: &str, group: &str) -> Result<Subscription, BusError> {
        check_topic(filter, true)?;
        check_group(group)?;
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Attach(group.to_string(), filter.to_string(), tx))
            .await?;
        let (g, new) = rx
            .await
            .map_err(|_| BusError::Backend("journal: the writer has stopped".into()))??;
        if new {
            tokio::spawn(Self::catch_up(
                self.readers.clone(),
                self.first_seq,
                g.clone(),
            ));
            g.lagging.notify_one();
        }
        let (mtx, mrx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let item = { g.rx.lock().await.recv().await };
                let Some(item) = item else { break };
                let (event, seq, attempt, body) = item;
                let d = Delivery {
                    // Another group may still hold it: then it is copied.
                    event: Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone()),
                    attempt,
                    acker: Box::new(JournalAcker {
                        group: g.clone(),
                        item: Mutex::new(Some((seq, attempt, body))),
                    }),
                };
                if let Err(mpsc::error::SendError(d)) = mtx.send(d).await {
                    // The member left: hand the event to another member.
                    let _ = d.nack().await;
                    break;
                }
            }
        });
        Ok(Subscription { rx: mrx })
    }
}

/// The file a `journal://PATH` URL names.
pub fn journal_path(url: &str) -> Result<PathBuf, BusError> {
    match url.strip_prefix("journal://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(BusError::Backend(format!(
            "`{url}` is not a journal URL with a file path (journal:///path/to/bus.db)"
        ))),
    }
}
