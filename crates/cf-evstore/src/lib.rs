//! The event store edge (SA-1): the platform's `EventStore` port on tantivy, one index per UTC
//! day under `DIR/YYYY-MM-DD/`, documents LZ4-compressed, searchable by time range, fields and
//! free text; a day is the unit of retention (dropping it deletes its directory).
//!
//! Architecture invariant: the only crate that knows tantivy. Searches may run in another
//! process (the CLI) while the server writes: they see what was committed.

mod tokenizer;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use cf_core::Timestamp;
use cf_platform::ports::{
    ArchivedEvent, EventPage, EventQuery, EventStore, PartitionInfo, StoreError,
};
use serde_json::Value;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::store::Compressor;
use tantivy::tokenizer::{LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer};
use tantivy::{
    Index, IndexReader, IndexSettings, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

pub use tokenizer::LogTokenizer;

/// Memory for one partition's writer (tantivy's floor is 15 MB per indexing thread).
const WRITER_HEAP: usize = 32_000_000;
/// Writers kept open, not one per day ever written: today's and the few days late events and
/// replayed logs still reach (an interleaved four-day replay ran half as fast with two, each
/// batch closing and reopening writers). Each holds at most [`WRITER_HEAP`] of indexing memory.
const OPEN_WRITERS: usize = 4;
/// Searches return at most this many events.
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    time: Field,
    topic: Field,
    source: Field,
    severity: Field,
    class_uid: Field,
    host: Field,
    user: Field,
    src_ip: Field,
    dst_ip: Field,
    text: Field,
    body: Field,
    raw: Field,
}

/// The schema this version writes. `time` is a fast field only: range queries and ordering read
/// the column, and an inverted-index term per distinct nanosecond only cost the term dictionary
/// (one unique term per event). Partitions written before (`time_terms`) are still read and
/// written with the schema they have; the field ids are the same.
fn schema() -> (Schema, Fields) {
    schema_with(false)
}

fn schema_with(time_terms: bool) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let keyword = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("cf_keyword")
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_stored();
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        time: if time_terms {
            b.add_i64_field("time", INDEXED | FAST | STORED)
        } else {
            b.add_i64_field("time", FAST | STORED)
        },
        topic: b.add_text_field("topic", keyword.clone()),
        source: b.add_text_field("source", keyword.clone()),
        severity: b.add_text_field("severity", keyword.clone()),
        class_uid: b.add_u64_field("class_uid", INDEXED | STORED),
        host: b.add_text_field("host", keyword.clone()),
        user: b.add_text_field("user", keyword.clone()),
        src_ip: b.add_text_field("src_ip", keyword.clone()),
        dst_ip: b.add_text_field("dst_ip", keyword),
        text: b.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("cf_text")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        ),
        // Every payload path is searchable as `body.a.b:value` (whole values, any case).
        body: b.add_json_field(
            "body",
            JsonObjectOptions::default()
                .set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer("cf_keyword")
                        .set_index_option(IndexRecordOption::Basic),
                )
                .set_expand_dots_enabled(),
        ),
        raw: b.add_text_field("raw", STORED),
    };
    (b.build(), f)
}

fn register_tokenizers(index: &Index) {
    index.tokenizers().register(
        "cf_keyword",
        TextAnalyzer::builder(RawTokenizer::default())
            .filter(LowerCaser)
            .build(),
    );
    index.tokenizers().register(
        "cf_text",
        TextAnalyzer::builder(LogTokenizer::default())
            .filter(RemoveLongFilter::limit(100))
            .filter(LowerCaser)
            .build(),
    );
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("event store: {e}"))
}

/// The UTC day of `t`, `YYYY-MM-DD`.
pub fn day_of(t: Timestamp) -> String {
    t.utc_day()
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

struct Partition {
    index: Index,
    reader: IndexReader,
    writer: Option<IndexWriter>,
    last_write: u64,
    /// Documents added since the last commit (staged, not yet durable).
    staged: usize,
}

/// Documents by UTC day, each with its event id.
type DocsByDay = BTreeMap<String, Vec<(String, TantivyDocument)>>;

struct State {
    parts: BTreeMap<String, Partition>,
    tick: u64,
    /// Staged documents were thrown away without their stager being told (another caller's
    /// failed append, a dropped partition): the next commit fails so they are handed back.
    discarded: bool,
    /// Testing: commits with staged documents that fail as a full disk would.
    fail_commits: u32,
}

/// The store.
#[derive(Clone)]
pub struct TantivyEventStore {
    dir: PathBuf,
    fields: Fields,
    schema: Schema,
    /// The schema of partitions written before `time` became a fast field only.
    time_terms_schema: Schema,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for TantivyEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyEventStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Strings remembered per payload for de-duplication: enough for the repeats of a normalised log
/// event, and a bound on the work a payload of thousands of distinct strings can cause.
const DEDUP_WINDOW: usize = 64;

/// The free text of a payload: its strings and numbers, one per line. A string that occurs again
/// (the syslog message is also the OCSF `raw_data`, the host and program appear in both) is
/// written once, among the first [`DEDUP_WINDOW`] distinct strings: a second copy finds nothing
/// more and costs its tokens' positions again.
fn text_of<'a>(v: &'a Value, seen: &mut Vec<&'a str>, out: &mut String) {
    match v {
        Value::String(s) => {
            if seen.len() >= DEDUP_WINDOW || !seen.contains(&s.as_str()) {
                if seen.len() < DEDUP_WINDOW {
                    seen.push(s);
                }
                out.push_str(s);
                out.push('\n');
            }
        }
        Value::Number(n) => {
            use std::fmt::Write as _;
            let _ = writeln!(out, "{n}");
        }
        Value::Array(a) => a.iter().for_each(|x| text_of(x, seen, out)),
        Value::Object(o) => o.values().for_each(|x| text_of(x, seen, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

impl TantivyEventStore {
    /// Open (creating if needed) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        Ok(TantivyEventStore {
            dir: dir.to_path_buf(),
            fields,
            schema,
            time_terms_schema: schema_with(true).0,
            state: Arc::new(Mutex::new(State {
                parts: BTreeMap::new(),
                tick: 0,
                discarded: false,
                fail_commits: 0,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Days present on disk, oldest first.
    fn days_on_disk(&self) -> Result<Vec<String>, StoreError> {
        let mut days: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(backend)?
            .filter_map(Result::ok)
            .filter(|e| e.path().join("meta.json").exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|d| is_day(d))
            .collect();
        days.sort();
        Ok(days)
    }

    fn partition<'s>(
        &self,
        st: &'s mut State,
        day: &str,
        create: bool,
    ) -> Result<Option<&'s mut Partition>, StoreError> {
        if !st.parts.contains_key(day) {
            let path = self.dir.join(day);
            let exists = path.join("meta.json").exists();
            if !exists && !create {
                return Ok(None);
            }
            let index = if exists {
                Index::open_in_dir(&path).map_err(backend)?
            } else {
                std::fs::create_dir_all(&path).map_err(backend)?;
                Index::builder()
                    .schema(self.schema.clone())
                    .settings(IndexSettings {
                        docstore_compression: Compressor::Lz4,
                        docstore_blocksize: 64 * 1024,
                        ..IndexSettings::default()
                    })
                    .create_in_dir(&path)
                    .map_err(backend)?
            };
            let theirs = index.schema();
            if theirs != self.schema && theirs != self.time_terms_schema {
                return Err(StoreError::Corrupt(format!(
                    "event partition {day} has another schema than this version writes"
                )));
            }
            register_tokenizers(&index);
            let reader = index
                .reader_builder()
                .reload_policy(ReloadPolicy::Manual)
                .try_into()
                .map_err(backend)?;
            st.parts.insert(
                day.to_string(),
                Partition {
                    index,
                    reader,
                    writer: None,
                    last_write: 0,
                    staged: 0,
                },
            );
        }
        Ok(st.parts.get_mut(day))
    }

    /// The event's document; its body is moved, not cloned, into the indexed JSON field (tantivy
    /// still converts it into its own document form).
    fn document(&self, e: ArchivedEvent) -> TantivyDocument {
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.id, &e.id);
        d.add_i64(f.time, e.time.unix_nanos());
        d.add_text(f.topic, &e.topic);
        d.add_text(f.source, &e.source);
        d.add_text(f.severity, &e.severity);
        if let Some(c) = e.class_uid {
            d.add_u64(f.class_uid, u64::from(c));
        }
        for (field, v) in [
            (f.host, &e.host),
            (f.user, &e.user),
            (f.src_ip, &e.src_ip),
            (f.dst_ip, &e.dst_ip),
        ] {
            if let Some(v) = v {
                d.add_text(field, v);
            }
        }
        let mut text = format!("{}\n{}\n", e.topic, e.source);
        text_of(
            &e.body,
            &mut vec![e.topic.as_str(), e.source.as_str()],
            &mut text,
        );
        d.add_text(f.text, &text);
        d.add_text(f.raw, e.body.to_string());
        let object = match e.body {
            Value::Object(m) => m,
            other => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        d.add_field_value(f.body, &OwnedValue::from(object));
        d
    }

    fn event_of(&self, d: &TantivyDocument) -> Result<ArchivedEvent, StoreError> {
        let f = &self.fields;
        let s = |field: Field| {
            d.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let raw = s(f.raw).ok_or_else(|| StoreError::Corrupt("event without body".into()))?;
        Ok(ArchivedEvent {
            id: s(f.id).unwrap_or_default(),
            time: Timestamp::from_unix_nanos(
                d.get_first(f.time).and_then(|v| v.as_i64()).unwrap_or(0),
            ),
            topic: s(f.topic).unwrap_or_default(),
            source: s(f.source).unwrap_or_default(),
            severity: s(f.severity).unwrap_or_default(),
            class_uid: d
                .get_first(f.class_uid)
                .and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok()),
            host: s(f.host),
            user: s(f.user),
            src_ip: s(f.src_ip),
            dst_ip: s(f.dst_ip),
            body: serde_json::from_str(&raw)
                .map_err(|e| StoreError::Corrupt(format!("stored event body: {e}")))?,
        })
    }

    fn append_blocking(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError> {
        let docs = self.documents(events);
        let mut st = self.lock();
        // A failure here discards what others staged too: their next commit is told.
        let others = st.parts.values().any(|p| p.staged > 0);
        let r = self
            .stage_locked(&mut st, docs)
            .and_then(|()| Self::commit_locked(&mut st));
        if r.is_err() && others {
            st.discarded = true;
        }
        r
    }

    /// Testing: the next `n` commits that have staged documents fail as a full disk would, and
    /// roll back what was staged.
    #[doc(hidden)]
    pub fn fail_next_commits(&self, n: u32) {
        self.lock().fail_commits = n;
    }

    fn stage_blocking(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError> {
        let docs = self.documents(events);
        let mut st = self.lock();
        self.stage_locked(&mut st, docs)
    }

    fn commit_blocking(&self) -> Result<(), StoreError> {
        Self::commit_locked(&mut self.lock())
    }

    /// The documents of `events` by day. They are built before the lock is taken, so searches
    /// wait only for indexing and commits, not for this.
    fn documents(&self, events: Vec<ArchivedEvent>) -> DocsByDay {
        let mut by_day = DocsByDay::new();
        for e in events {
            let day = day_of(e.time);
            let id = e.id.clone();
            by_day.entry(day).or_default().push((id, self.document(e)));
        }
        by_day
    }

    /// Index `by_day` without committing. On error everything staged since the last commit is
    /// discarded, as the port promises.
    fn stage_locked(&self, st: &mut State, by_day: DocsByDay) -> Result<(), StoreError> {
        let r = self.stage_inner(st, by_day);
        if r.is_err() {
            Self::rollback_locked(st);
        }
        r
    }

    fn stage_inner(&self, st: &mut State, by_day: DocsByDay) -> Result<(), StoreError> {
        for (day, docs) in by_day {
            st.tick += 1;
            let tick = st.tick;
            // Bound the open writers (each holds its indexing heap); what a closing writer has
            // staged is committed first, not dropped.
            let open: Vec<(u64, String)> = st
                .parts
                .iter()
                .filter(|(d, p)| p.writer.is_some() && **d != day)
                .map(|(d, p)| (p.last_write, d.clone()))
                .collect();
            if open.len() >= OPEN_WRITERS {
                let mut open = open;
                open.sort();
                for (_, d) in open.iter().take(open.len() + 1 - OPEN_WRITERS) {
                    if let Some(p) = st.parts.get_mut(d) {
                        Self::commit_partition(p)?;
                        if let Some(w) = p.writer.take() {
                            w.wait_merging_threads().map_err(backend)?;
                        }
                    }
                }
            }
            let id_field = self.fields.id;
            let Some(p) = self.partition(st, &day, true)? else {
                continue;
            };
            p.last_write = tick;
            if p.writer.is_none() {
                p.writer = Some(
                    p.index
                        .writer_with_num_threads(1, WRITER_HEAP)
                        .map_err(backend)?,
                );
            }
            let Some(w) = p.writer.as_mut() else { continue };
            for (id, doc) in docs {
                // At-least-once delivery: a redelivered event replaces its earlier copy.
                w.delete_term(Term::from_field_text(id_field, &id));
                w.add_document(doc).map_err(backend)?;
                p.staged += 1;
            }
        }
        Ok(())
    }

    /// Commit every partition with staged documents. On error what was not committed is
    /// discarded (the caller hands the events back for redelivery; ids make that idempotent).
    fn commit_locked(st: &mut State) -> Result<(), StoreError> {
        let r = if std::mem::take(&mut st.discarded) {
            Err(backend(
                "staged events were discarded since the last commit (a failed write or a \
                 dropped partition); they must be handed back",
            ))
        } else if st.fail_commits > 0 && st.parts.values().any(|p| p.staged > 0) {
            st.fail_commits -= 1;
            Err(backend("commit failed (injected)"))
        } else {
            st.parts.values_mut().try_for_each(Self::commit_partition)
        };
        if r.is_err() {
            Self::rollback_locked(st);
        }
        r
    }

    fn commit_partition(p: &mut Partition) -> Result<(), StoreError> {
        if p.staged == 0 {
            return Ok(());
        }
        let Some(w) = p.writer.as_mut() else {
            p.staged = 0;
            return Err(backend("a partition lost its writer with staged events"));
        };
        w.commit().map_err(backend)?;
        p.staged = 0;
        p.reader.reload().map_err(backend)
    }

    fn rollback_locked(st: &mut State) {
        for p in st.parts.values_mut() {
            if p.staged > 0 {
                if let Some(w) = p.writer.as_mut() {
                    // A writer that cannot roll back is dropped; the next stage opens a new one.
                    if w.rollback().is_err() {
                        p.writer = None;
                    }
                }
                p.staged = 0;
            }
        }
    }

    fn search_blocking(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        if q.to.unix_nanos() <= q.from.unix_nanos() {
            return Err(StoreError::Invalid(
                "the search range is empty: `from` must be before `to`".into(),
            ));
        }
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let first = day_of(q.from);
        let last = day_of(Timestamp::from_unix_nanos(q.to.unix_nanos() - 1));
        let days: Vec<String> = self
            .days_on_disk()?
            .into_iter()
            .filter(|d| *d >= first && *d <= last)
            .rev()
            .collect();
        let mut page = EventPage {
            events: Vec::new(),
            matched: 0,
            partitions: days.len(),
        };
        let mut st = self.lock();
        for day in days {
            let Some(p) = self.partition(&mut st, &day, false)? else {
                continue;
            };
            // Another process may have committed since this reader was opened.
            p.reader.reload().map_err(backend)?;
            let parser = {
                let mut qp = QueryParser::for_index(&p.index, vec![self.fields.text]);
                qp.set_conjunction_by_default();
                qp
            };
            let text = q.text.trim();
            let user: Box<dyn Query> = if text.is_empty() {
                Box::new(AllQuery)
            } else {
                match parser.parse_query(text) {
                    Ok(q) => q,
                    // `NOT x` alone means "everything but x" to an analyst.
                    Err(QueryParserError::AllButQueryForbidden) => parser
                        .parse_query(&format!("* {text}"))
                        .map_err(|e| StoreError::Invalid(format!("query `{text}`: {e}")))?,
                    Err(e) => return Err(StoreError::Invalid(format!("query `{text}`: {e}"))),
                }
            };
            let range = RangeQuery::new(
                Bound::Included(Term::from_field_i64(self.fields.time, q.from.unix_nanos())),
                Bound::Excluded(Term::from_field_i64(self.fields.time, q.to.unix_nanos())),
            );
            let query = BooleanQuery::new(vec![
                (Occur::Must, user),
                (Occur::Must, Box::new(range) as Box<dyn Query>),
            ]);
            let searcher = p.reader.searcher();
            let want = limit.saturating_sub(page.events.len()).max(1);
            let (count, top) = searcher
                .search(
                    &query,
                    &(
                        Count,
                        TopDocs::with_limit(want).order_by_fast_field::<i64>("time", Order::Desc),
                    ),
                )
                .map_err(backend)?;
            page.matched += count as u64;
            if page.events.len() < limit {
                for (_, addr) in top {
                    let d: TantivyDocument = searcher.doc(addr).map_err(backend)?;
                    page.events.push(self.event_of(&d)?);
                }
            }
        }
        Ok(page)
    }

    fn partitions_blocking(&self) -> Result<Vec<PartitionInfo>, StoreError> {
        let days = self.days_on_disk()?;
        let mut out = Vec::with_capacity(days.len());
        let mut st = self.lock();
        for day in days {
            let Some(p) = self.partition(&mut st, &day, false)? else {
                continue;
            };
            p.reader.reload().map_err(backend)?;
            let events = p.reader.searcher().num_docs();
            let bytes = std::fs::read_dir(self.dir.join(&day))
                .map_err(backend)?
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum();
            out.push(PartitionInfo { day, events, bytes });
        }
        Ok(out)
    }

    fn drop_blocking(&self, day: &str) -> Result<(), StoreError> {
        if !is_day(day) {
            return Err(StoreError::Invalid(format!(
                "`{day}` is not a partition name (YYYY-MM-DD)"
            )));
        }
        let path = self.dir.join(day);
        if !path.exists() {
            return Err(StoreError::NotFound(format!("event partition {day}")));
        }
        let mut st = self.lock();
        if let Some(p) = st.parts.remove(day) {
            // What is staged for a day being deleted goes with it; its stager's next commit
            // fails so that the events are handed back rather than acknowledged.
            if p.staged > 0 {
                st.discarded = true;
            }
            if let Some(w) = p.writer {
                w.wait_merging_threads().map_err(backend)?;
            }
        }
        std::fs::remove_dir_all(&path)
            .map_err(|e| backend(format!("cannot delete {}: {e}", path.display())))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(TantivyEventStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| backend(format!("event store task failed: {e}")))?
    }
}

#[async_trait]
impl EventStore for TantivyEventStore {
    async fn append(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| s.append_blocking(events)).await
    }

    async fn stage(&self, events: Vec<ArchivedEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.blocking(move |s| s.stage_blocking(events)).await
    }

    async fn commit(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.commit_blocking()).await
    }

    async fn search(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let q = query.clone();
        self.blocking(move |s| s.search_blocking(&q)).await
    }

    async fn partitions(&self) -> Result<Vec<PartitionInfo>, StoreError> {
        self.blocking(|s| s.partitions_blocking()).await
    }

    async fn drop_partition(&self, day: &str) -> Result<(), StoreError> {
        let day = day.to_string();
        self.blocking(move |s| s.drop_blocking(&day)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day_of(Timestamp::from_unix_secs(0)), "1970-01-01");
        assert_eq!(
            day_of(Timestamp::parse_rfc3339("2026-11-25T23:59:59.999Z").unwrap()),
            "2026-11-25"
        );
        assert!(is_day("2026-11-25"));
        for bad in ["2026-11-2", "../etc/xx", "2026_11_25", "2026-11-25/.."] {
            assert!(!is_day(bad), "{bad}");
        }
    }

    #[test]
    fn free_text_holds_each_string_once_and_every_number() {
        let body = serde_json::json!({
            "syslog": {"hostname": "gw1", "app": "sshd", "message": "Failed password for root", "port": 22},
            "ocsf": {"raw_data": "Failed password for root", "service": {"name": "sshd"},
                     "dst_endpoint": {"hostname": "gw1"}, "src_endpoint": {"port": 22}},
        });
        let mut text = String::new();
        text_of(&body, &mut vec!["logs.syslog"], &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["gw1", "sshd", "Failed password for root", "22", "22"]
        );

        // Thousands of distinct strings cost a bounded amount each, and all are kept.
        let many: Vec<String> = (0..200_000).map(|i| format!("s{i}")).collect();
        let t = std::time::Instant::now();
        let mut text = String::new();
        text_of(
            &serde_json::json!({ "a": many }),
            &mut Vec::new(),
            &mut text,
        );
        assert_eq!(text.lines().count(), 200_000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    /// Partitions written while `time` was also an indexed field are read and extended as they
    /// are, not refused as another schema.
    #[tokio::test]
    async fn a_partition_with_time_terms_is_still_read_and_written() {
        let tmp = tempfile::tempdir().unwrap();
        let day = tmp.path().join("2026-11-25");
        std::fs::create_dir_all(&day).unwrap();
        let (old, f) = schema_with(true);
        let index = Index::create_in_dir(&day, old.clone()).unwrap();
        register_tokenizers(&index);
        let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let t = Timestamp::parse_rfc3339("2026-11-25T10:00:00Z").unwrap();
        let mut d = TantivyDocument::default();
        d.add_text(f.id, "old-1");
        d.add_i64(f.time, t.unix_nanos());
        d.add_text(f.text, "written by the previous version");
        d.add_text(f.raw, r#"{"m": "written by the previous version"}"#);
        w.add_document(d).unwrap();
        w.commit().unwrap();
        drop(w);

        let store = TantivyEventStore::open(tmp.path()).unwrap();
        let event = |id: &str, secs: i64| ArchivedEvent {
            id: id.into(),
            time: Timestamp::from_unix_nanos(t.unix_nanos() + secs * 1_000_000_000),
            topic: "logs.syslog".into(),
            source: "test".into(),
            severity: "info".into(),
            class_uid: None,
            host: None,
            user: None,
            src_ip: None,
            dst_ip: None,
            body: serde_json::json!({"m": "written by this version"}),
        };
        store.append(vec![event("new-1", 60)]).await.unwrap();
        let q = |text: &str, from: i64, to: i64| EventQuery {
            from: Timestamp::from_unix_nanos(t.unix_nanos() + from * 1_000_000_000),
            to: Timestamp::from_unix_nanos(t.unix_nanos() + to * 1_000_000_000),
            text: text.into(),
            limit: 10,
        };
        let all = store.search(&q("written", -10, 120)).await.unwrap();
        let ids: Vec<&str> = all.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["new-1", "old-1"], "newest first, both schemas");
        let only_old = store.search(&q("written", -10, 30)).await.unwrap();
        assert_eq!(only_old.events.len(), 1);
        assert_eq!(only_old.events[0].id, "old-1");
        // An exact instant finds its event in either schema.
        for (secs, id) in [(0, "old-1"), (60, "new-1")] {
            let at = t.unix_nanos() + secs * 1_000_000_000;
            let hit = store
                .search(&q(&format!("time:{at}"), -10, 120))
                .await
                .unwrap();
            let ids: Vec<&str> = hit.events.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(ids, [id], "time:{at}");
            let none = store
                .search(&q(&format!("time:{}", at + 1), -10, 120))
                .await
                .unwrap();
            assert!(none.events.is_empty(), "time:{}", at + 1);
        }
        assert_eq!(Index::open_in_dir(&day).unwrap().schema(), old);
    }
}
