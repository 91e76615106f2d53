//! The alert book (SA-3, first part): every `alert.*` event on the bus is kept, de-duplicated by
//! kind and entity (device, source address, account, district) into one record with its count and
//! first/last sighting; operators list, assign, comment on and close them, each step audited.

use std::sync::Arc;

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Event, Outcome, Severity};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{Document, EventBus, StateStore};
use crate::tokens::RequestContext;

/// A de-duplicated alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertRecord {
    /// Stable id (kind and entity).
    pub id: String,
    /// Kind, e.g. `auth.brute_force`.
    pub kind: String,
    /// The entity it is about.
    pub entity: String,
    /// Highest severity seen.
    pub severity: Severity,
    /// Sightings.
    pub count: u64,
    /// First sighting.
    pub first: Timestamp,
    /// Last sighting.
    pub last: Timestamp,
    /// The latest event's payload.
    pub latest: serde_json::Value,
    /// `open`, `assigned` or `closed`.
    pub status: String,
    /// Who handles it.
    pub assignee: Option<String>,
    /// Notes: (who, when, text).
    pub comments: Vec<(String, Timestamp, String)>,
}

/// The entity an alert payload is about.
pub fn entity_of(payload: &serde_json::Value) -> String {
    for k in ["device", "key", "src", "user", "district"] {
        if let Some(v) = payload[k].as_str()
            && !v.is_empty()
        {
            return format!("{k}:{v}");
        }
    }
    "-".into()
}

/// Event ids remembered per alert to recognise a redelivered event.
pub const SEEN_IDS: usize = 256;

/// The book.
#[derive(Clone)]
pub struct AlertBook {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
}

impl std::fmt::Debug for AlertBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertBook")
    }
}

fn parse(d: &Document) -> Result<AlertRecord, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("alert `{}`: {e}", d.id)))
}

fn body(r: &AlertRecord) -> Result<String, PlatformError> {
    serde_json::to_string(r).map_err(|e| PlatformError::Internal(e.to_string()))
}

impl AlertBook {
    /// A book over `store`.
    pub fn new(store: Arc<dyn StateStore>, ledger: AuditLedger, clock: SharedClock) -> Self {
        AlertBook {
            store,
            ledger,
            clock,
        }
    }

    /// Keep one `alert.*` event (a repeat of an open alert raises its count; a repeat of a
    /// closed one reopens it). The same event delivered again — a bus redelivery after a crash,
    /// a retroactive hunt run twice — is recognised by its id among the alert's last
    /// [`SEEN_IDS`] events and not counted again.
    pub async fn record(&self, ev: &Event) -> Result<(), PlatformError> {
        let kind = ev
            .topic
            .strip_prefix("alert.")
            .unwrap_or(&ev.topic)
            .to_string();
        let entity = entity_of(&ev.payload);
        let id = hex::encode(&cf_crypto::sha256(format!("{kind}\n{entity}").as_bytes())[..12]);
        let mut seen: std::collections::VecDeque<String> =
            match self.store.doc_get("alert-seen", &id).await? {
                Some(d) => serde_json::from_str(&d.body).unwrap_or_default(),
                None => Default::default(),
            };
        if seen.contains(&ev.id) {
            return Ok(());
        }
        self.count(ev, &kind, &entity, &id).await?;
        seen.push_back(ev.id.clone());
        while seen.len() > SEEN_IDS {
            seen.pop_front();
        }
        let body = serde_json::to_string(&seen)
            .map_err(|e| PlatformError::Internal(format!("alert ids: {e}")))?;
        crate::ports::put_document(&*self.store, "alert-seen", &id, body, self.clock.now()).await?;
        Ok(())
    }

    async fn count(
        &self,
        ev: &Event,
        kind: &str,
        entity: &str,
        id: &str,
    ) -> Result<(), PlatformError> {
        let (kind, entity, id) = (kind.to_string(), entity.to_string(), id.to_string());
        for _ in 0..3 {
            match self.store.doc_get("alert", &id).await? {
                Some(d) => {
                    let mut r = parse(&d)?;
                    r.count += 1;
                    r.last = ev.time.max(r.last);
                    r.severity = r.severity.max(ev.severity);
                    r.latest = ev.payload.clone();
                    if r.status == "closed" {
                        r.status = "open".into();
                    }
                    let upd = Document {
                        body: body(&r)?,
                        revision: d.revision + 1,
                        updated: self.clock.now(),
                        ..d
                    };
                    if self.store.doc_update(&upd).await.is_ok() {
                        return Ok(());
                    }
                }
                None => {
                    let r = AlertRecord {
                        id: id.clone(),
                        kind: kind.clone(),
                        entity: entity.clone(),
                        severity: ev.severity,
                        count: 1,
                        first: ev.time,
                        last: ev.time,
                        latest: ev.payload.clone(),
                        status: "open".into(),
                        assignee: None,
                        comments: Vec::new(),
                    };
                    let d = Document {
                        kind: "alert".into(),
                        id: id.clone(),
                        body: body(&r)?,
                        revision: 1,
                        updated: self.clock.now(),
                    };
                    if self.store.doc_insert(&d).await.is_ok() {
                        return Ok(());
                    }
                }
            }
        }
        Err(PlatformError::Conflict(format!(
            "alert `{id}` kept changing; not recorded"
        )))
    }

    /// Consume `alert.>` from the bus until `stop` turns true (run as a task).
    pub async fn run(self, bus: Arc<dyn EventBus>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut sub = match bus.subscribe("alert.>", "alert-book").await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "alert book cannot subscribe");
                return;
            }
        };
        loop {
            let d = tokio::select! {
                d = sub.rx.recv() => match d { Some(d) => d, None => return },
                _ = stop.changed() => if *stop.borrow() { return } else { continue },
            };
            match self.record(&d.event).await {
                Ok(()) => {
                    let _ = d.ack().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "alert not recorded; will be redelivered");
                    let _ = d.nack().await;
                }
            }
        }
    }

    /// Alerts, newest first, optionally of one status.
    pub async fn list(
        &self,
        auth: &Authorized,
        status: Option<&str>,
    ) -> Result<Vec<AlertRecord>, PlatformError> {
        if !matches!(auth.action(), Action::ReadAlerts | Action::HandleAlerts) {
            return Err(PlatformError::Forbidden("alerts.read is needed".into()));
        }
        let mut v = Vec::new();
        for d in self.store.doc_list("alert").await? {
            let r = parse(&d)?;
            if status.is_none_or(|s| r.status == s) {
                v.push(r);
            }
        }
        v.sort_by_key(|r| std::cmp::Reverse(r.last));
        Ok(v)
    }

    /// Incidents: the alerts grouped by entity and placed on the attack chain (SA-3).
    pub async fn incidents(
        &self,
        auth: &Authorized,
    ) -> Result<Vec<cf_detect::incidents::Incident>, PlatformError> {
        let all = self.list(auth, None).await?;
        let refs: Vec<cf_detect::incidents::AlertRef> = all
            .iter()
            .map(|r| cf_detect::incidents::AlertRef {
                id: r.id.clone(),
                kind: r.kind.clone(),
                entity: r.entity.clone(),
                severity: match r.severity {
                    Severity::Info => 0,
                    Severity::Low => 1,
                    Severity::Medium => 2,
                    Severity::High => 3,
                    Severity::Critical => 4,
                },
                first_ms: r.first.unix_millis(),
                last_ms: r.last.unix_millis(),
                closed: r.status == "closed",
            })
            .collect();
        Ok(cf_detect::incidents::group(&refs))
    }

    async fn change(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        what: &str,
        f: impl Fn(&mut AlertRecord),
    ) -> Result<(AlertRecord, Receipt), PlatformError> {
        auth.require(Action::HandleAlerts)?;
        let d = self
            .store
            .doc_get("alert", id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no alert `{id}`")))?;
        let mut r = parse(&d)?;
        f(&mut r);
        let rec = AuditRecord::new(
            format!("alert.{what}"),
            self.clock.now(),
            &ctx.source_addr,
            "chengfang-alerts",
            &auth.principal().id,
            format!("alert:{id}"),
            what,
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(serde_json::json!({"kind": r.kind, "entity": r.entity, "status": r.status, "assignee": r.assignee}));
        let receipt = self.ledger.append(rec).await?;
        self.store
            .doc_update(&Document {
                body: body(&r)?,
                revision: d.revision + 1,
                updated: self.clock.now(),
                ..d
            })
            .await?;
        Ok((r, receipt))
    }

    /// Assign to someone.
    pub async fn assign(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        to: &str,
    ) -> Result<(AlertRecord, Receipt), PlatformError> {
        if to.trim().is_empty() || to.len() > 100 {
            return Err(PlatformError::InvalidInput("to: 1-100 characters".into()));
        }
        self.change(auth, ctx, id, "assign", |r| {
            r.assignee = Some(to.to_string());
            if r.status != "closed" {
                r.status = "assigned".into();
            }
        })
        .await
    }

    /// Add a note.
    pub async fn comment(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        text: &str,
    ) -> Result<(AlertRecord, Receipt), PlatformError> {
        if text.trim().is_empty() || text.chars().count() > 2000 {
            return Err(PlatformError::InvalidInput(
                "text: 1-2000 characters".into(),
            ));
        }
        let (who, now) = (auth.principal().id.clone(), self.clock.now());
        self.change(auth, ctx, id, "comment", |r| {
            r.comments.push((who.clone(), now, text.to_string()))
        })
        .await
    }

    /// Close with a reason (kept as a note).
    pub async fn close(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<(AlertRecord, Receipt), PlatformError> {
        if reason.trim().is_empty() {
            return Err(PlatformError::InvalidInput("reason: required".into()));
        }
        let (who, now) = (auth.principal().id.clone(), self.clock.now());
        self.change(auth, ctx, id, "close", |r| {
            r.status = "closed".into();
            r.comments
                .push((who.clone(), now, format!("closed: {reason}")));
        })
        .await
    }
}
