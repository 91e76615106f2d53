//! Governed data flows (MSK-3, MSK-4, PRV-1): datasets registered by administrators, reads masked
//! by the caller's role, and exports that go request → approval by someone else → delivery,
//! masked for the recipient's role and watermarked for the recipient. Every step is audited with
//! counts, policies and digests, never with the data.

use std::sync::Arc;

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_mask::watermark::Table;
use cf_mask::{Masker, PolicySet};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{DataSource, Document, StateStore};
use crate::tokens::RequestContext;

/// Rows a single read or export may carry.
pub const MAX_ROWS: u32 = 100_000;

/// A registered dataset: a table in one of the city's databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// Name.
    pub name: String,
    /// Database URL (credentials are never shown: see [`Dataset::shown`]).
    pub source: String,
    /// Table (`schema.table` on PostgreSQL).
    pub table: String,
    /// Column that identifies a row (watermarks are keyed on it).
    pub key_column: String,
    /// Registered by.
    pub created_by: String,
    /// When.
    pub created: Timestamp,
}

impl Dataset {
    /// The dataset as shown to callers: the URL without its password.
    pub fn shown(&self) -> Dataset {
        let mut d = self.clone();
        d.source = redact(&d.source);
        d
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:[redacted]{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Where an export request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportState {
    /// Waiting for a decision.
    Requested,
    /// Approved, not yet delivered.
    Approved,
    /// Refused.
    Rejected,
    /// Delivered (once).
    Delivered,
}

/// An export request and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// Id.
    pub id: String,
    /// Dataset.
    pub dataset: String,
    /// Who asked.
    pub requester: String,
    /// Who receives the copy (named in its watermark).
    pub recipient: String,
    /// Role whose masking policy the copy gets.
    pub recipient_role: String,
    /// Why.
    pub purpose: String,
    /// State.
    pub state: ExportState,
    /// Who decided.
    pub approver: Option<String>,
    /// Decision note.
    pub reason: Option<String>,
    /// Requested at.
    pub created: Timestamp,
    /// Decided at.
    pub decided: Option<Timestamp>,
    /// Delivered at.
    pub delivered: Option<Timestamp>,
    /// SHA-256 of the delivered file.
    pub sha256: Option<String>,
    /// Rows delivered.
    pub rows: Option<usize>,
    /// Masking policy applied.
    pub policy: Option<String>,
}

/// A delivered export.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The request, now delivered.
    pub export: Export,
    /// The file (CSV).
    pub csv: String,
}

/// Masked rows for one caller.
#[derive(Debug, Clone, Serialize)]
pub struct MaskedRows {
    /// Policy applied.
    pub policy: String,
    /// Columns.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

/// The service.
#[derive(Clone)]
pub struct DataService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    source: Arc<dyn DataSource>,
    policies: PolicySet,
    masker: Masker,
    marker: Masker,
    rng: Arc<dyn cf_crypto::Rng>,
}

impl std::fmt::Debug for DataService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataService")
    }
}

/// The platform's default policy bindings: services (applications) get analytics masking,
/// everyone else the standard policy, until issue 3's roles refine them.
pub fn default_policies() -> PolicySet {
    let mut p = PolicySet::default();
    p.bindings.push(cf_mask::policy::Binding {
        role: "service".into(),
        policy: "analytics".into(),
    });
    p
}

impl DataService {
    /// The service; `mask_key` and `mark_key` come from the KMS ([`crate::kms::Kms::internal_key`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        source: Arc<dyn DataSource>,
        policies: PolicySet,
        mask_key: [u8; 32],
        mark_key: [u8; 32],
        rng: Arc<dyn cf_crypto::Rng>,
    ) -> Result<Self, PlatformError> {
        policies
            .validate()
            .map_err(|e| PlatformError::InvalidInput(e.to_string()))?;
        Ok(DataService {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                source,
                policies,
                masker: Masker::new(mask_key),
                marker: Masker::new(mark_key),
                rng,
            }),
        })
    }

    fn record(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        event: &str,
        object: String,
        detail: serde_json::Value,
    ) -> AuditRecord {
        let r = AuditRecord::new(
            event,
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-api",
            &auth.principal().id,
            object,
            event.rsplit('.').next().unwrap_or(event),
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(detail);
        if matches!(
            auth.action(),
            Action::ManageDatasets | Action::ApproveExports
        ) {
            r.privileged()
        } else {
            r
        }
    }

    async fn dataset(&self, name: &str) -> Result<Dataset, PlatformError> {
        let d = self
            .inner
            .store
            .doc_get("dataset", name)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no dataset `{name}`")))?;
        parse_doc(&d)
    }

    /// Register a dataset (administrators).
    pub async fn register(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        source: &str,
        table: &str,
        key_column: &str,
    ) -> Result<(Dataset, Receipt), PlatformError> {
        auth.require(Action::ManageDatasets)?;
        cf_kms::keyring::check_name(name)
            .map_err(|e| PlatformError::InvalidInput(format!("name: {e}")))?;
        if !["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
            .iter()
            .any(|p| source.starts_with(p))
        {
            return Err(PlatformError::InvalidInput(
                "source: use a sqlite://, postgres:// or mysql:// URL".into(),
            ));
        }
        if table.is_empty() || key_column.is_empty() {
            return Err(PlatformError::InvalidInput(
                "table and key_column are required".into(),
            ));
        }
        // The table must exist and have the key column, or exports would fail later.
        let probe = self
            .inner
            .source
            .read(source, table, 1)
            .await
            .map_err(|e| PlatformError::InvalidInput(format!("source: {e}")))?;
        if !probe.columns.iter().any(|c| c == key_column) {
            return Err(PlatformError::InvalidInput(format!(
                "key_column: `{table}` has no column `{key_column}`"
            )));
        }
        let d = Dataset {
            name: name.into(),
            source: source.into(),
            table: table.into(),
            key_column: key_column.into(),
            created_by: auth.principal().id.clone(),
            created: self.inner.clock.now(),
        };
        if self.inner.store.doc_get("dataset", name).await?.is_some() {
            return Err(PlatformError::Conflict(format!("dataset `{name}` exists")));
        }
        let r = self.inner.ledger.append(self.record(auth, ctx, "data.dataset.register", format!("dataset:{name}"), serde_json::json!({"source": redact(source), "table": table, "key_column": key_column}))).await?;
        let body = serde_json::to_string(&d).map_err(|e| PlatformError::Internal(e.to_string()))?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "dataset".into(),
                id: name.into(),
                body,
                revision: 1,
                updated: d.created,
            })
            .await?;
        Ok((d.shown(), r))
    }

    /// Every dataset (sources without passwords).
    pub async fn datasets(&self, auth: &Authorized) -> Result<Vec<Dataset>, PlatformError> {
        if !matches!(auth.action(), Action::ManageDatasets | Action::ReadData) {
            return Err(PlatformError::Forbidden(
                "data.manage or data.read is needed".into(),
            ));
        }
        let docs = self.inner.store.doc_list("dataset").await?;
        docs.iter()
            .map(|d| parse_doc::<Dataset>(d).map(|ds| ds.shown()))
            .collect()
    }

    fn roles(auth: &Authorized) -> Vec<&'static str> {
        auth.principal().roles.iter().map(|r| r.as_str()).collect()
    }

    async fn table(&self, d: &Dataset, limit: u32) -> Result<Table, PlatformError> {
        let rows = self
            .inner
            .source
            .read(&d.source, &d.table, limit.clamp(1, MAX_ROWS))
            .await
            .map_err(|e| PlatformError::Unavailable(format!("dataset `{}`: {e}", d.name)))?;
        Ok(Table {
            header: rows.columns,
            rows: rows.rows,
        })
    }

    /// Read rows masked by the caller's role (dynamic masking, MSK-3).
    pub async fn read(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        limit: u32,
    ) -> Result<(MaskedRows, Receipt), PlatformError> {
        auth.require(Action::ReadData)?;
        let d = self.dataset(name).await?;
        let mut t = self.table(&d, limit).await?;
        let policy = self.inner.policies.for_roles(&Self::roles(auth));
        cf_mask::mask_table(&self.inner.masker, policy, &t.header.clone(), &mut t.rows);
        let r = self
            .inner
            .ledger
            .append(self.record(
                auth,
                ctx,
                "data.read",
                format!("dataset:{name}"),
                serde_json::json!({"rows": t.rows.len(), "policy": policy.name}),
            ))
            .await?;
        Ok((
            MaskedRows {
                policy: policy.name.clone(),
                columns: t.header,
                rows: t.rows,
            },
            r,
        ))
    }

    async fn export_doc(&self, id: &str) -> Result<(Export, u64), PlatformError> {
        let d = self
            .inner
            .store
            .doc_get("export", id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no export `{id}`")))?;
        Ok((parse_doc(&d)?, d.revision))
    }

    async fn save(&self, e: &Export, revision: u64) -> Result<(), PlatformError> {
        let body = serde_json::to_string(e).map_err(|x| PlatformError::Internal(x.to_string()))?;
        let doc = Document {
            kind: "export".into(),
            id: e.id.clone(),
            body,
            revision: revision + 1,
            updated: self.inner.clock.now(),
        };
        if revision == 0 {
            self.inner.store.doc_insert(&doc).await?
        } else {
            self.inner.store.doc_update(&doc).await?
        }
        Ok(())
    }

    /// Ask for an export to `recipient`, masked with `recipient_role`'s policy.
    pub async fn request(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        dataset: &str,
        recipient: &str,
        recipient_role: &str,
        purpose: &str,
    ) -> Result<(Export, Receipt), PlatformError> {
        auth.require(Action::ReadData)?;
        self.dataset(dataset).await?;
        if recipient.trim().is_empty() || purpose.trim().is_empty() {
            return Err(PlatformError::InvalidInput(
                "recipient and purpose are required".into(),
            ));
        }
        let id = format!(
            "exp-{}",
            hex::encode(
                cf_crypto::random_bytes(self.inner.rng.as_ref(), 8)
                    .map_err(|e| PlatformError::Internal(e.to_string()))?
            )
        );
        let e = Export {
            id: id.clone(),
            dataset: dataset.into(),
            requester: auth.principal().id.clone(),
            recipient: recipient.into(),
            recipient_role: recipient_role.into(),
            purpose: purpose.into(),
            state: ExportState::Requested,
            approver: None,
            reason: None,
            created: self.inner.clock.now(),
            decided: None,
            delivered: None,
            sha256: None,
            rows: None,
            policy: None,
        };
        let r = self.inner.ledger.append(self.record(auth, ctx, "data.export.request", format!("export:{id}"), serde_json::json!({"dataset": dataset, "recipient": recipient, "recipient_role": recipient_role, "purpose": purpose}))).await?;
        self.save(&e, 0).await?;
        Ok((e, r))
    }

    /// Approve or reject; the requester can never decide their own request (AUZ-4).
    pub async fn decide(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<(Export, Receipt), PlatformError> {
        auth.require(Action::ApproveExports)?;
        let (mut e, rev) = self.export_doc(id).await?;
        if e.requester == auth.principal().id {
            return Err(PlatformError::Forbidden(
                "a request cannot be decided by its requester".into(),
            ));
        }
        if e.state != ExportState::Requested {
            return Err(PlatformError::Conflict(
                format!("export `{id}` is already {:?}", e.state).to_lowercase(),
            ));
        }
        e.state = if approve {
            ExportState::Approved
        } else {
            ExportState::Rejected
        };
        e.approver = Some(auth.principal().id.clone());
        e.reason = Some(reason.into());
        e.decided = Some(self.inner.clock.now());
        let r = self
            .inner
            .ledger
            .append(self.record(
                auth,
                ctx,
                if approve {
                    "data.export.approve"
                } else {
                    "data.export.reject"
                },
                format!("export:{id}"),
                serde_json::json!({"reason": reason, "requester": e.requester}),
            ))
            .await?;
        self.save(&e, rev).await?;
        Ok((e, r))
    }

    /// Export requests: administrators see all, others their own.
    pub async fn exports(&self, auth: &Authorized) -> Result<Vec<Export>, PlatformError> {
        let all = matches!(auth.action(), Action::ApproveExports);
        if !all && auth.action() != Action::ReadData {
            return Err(PlatformError::Forbidden(
                "data.read or exports.approve is needed".into(),
            ));
        }
        let mut out = self.exports_all().await?;
        out.retain(|e| all || e.requester == auth.principal().id);
        Ok(out)
    }

    /// Deliver an approved export once, to its requester: masked for the recipient's role,
    /// watermarked for the recipient, as CSV.
    pub async fn deliver(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(Delivery, Receipt), PlatformError> {
        auth.require(Action::ReadData)?;
        let (mut e, rev) = self.export_doc(id).await?;
        if e.requester != auth.principal().id {
            return Err(PlatformError::Forbidden(
                "only the requester can collect an export".into(),
            ));
        }
        if e.state != ExportState::Approved {
            return Err(PlatformError::Conflict(
                format!("export `{id}` is {:?}, not approved", e.state).to_lowercase(),
            ));
        }
        let d = self.dataset(&e.dataset).await?;
        let mut t = self.table(&d, MAX_ROWS).await?;
        let policy = self.inner.policies.for_roles(&[e.recipient_role.as_str()]);
        cf_mask::mask_table(&self.inner.masker, policy, &t.header.clone(), &mut t.rows);
        cf_mask::watermark::embed(&self.inner.marker, &e.recipient, &d.key_column, &mut t)
            .map_err(|x| PlatformError::InvalidInput(x.to_string()))?;
        let csv = to_csv(&t);
        let sha = hex::encode(cf_crypto::sha256(csv.as_bytes()));
        e.state = ExportState::Delivered;
        e.delivered = Some(self.inner.clock.now());
        e.sha256 = Some(sha.clone());
        e.rows = Some(t.rows.len());
        e.policy = Some(policy.name.clone());
        let r = self.inner.ledger.append(self.record(auth, ctx, "data.export.deliver", format!("export:{id}"), serde_json::json!({"dataset": e.dataset, "recipient": e.recipient, "rows": t.rows.len(), "policy": policy.name, "sha256": sha, "watermark": "per-recipient"}))).await?;
        self.save(&e, rev).await?;
        Ok((Delivery { export: e, csv }, r))
    }

    /// Name the export a leaked copy (CSV text) came from, among the delivered exports of `dataset`.
    pub async fn trace(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        dataset: &str,
        csv: &str,
    ) -> Result<(serde_json::Value, Receipt), PlatformError> {
        auth.require(Action::TraceLeaks)?;
        let d = self.dataset(dataset).await?;
        let t = cf_classify::tabular::parse_csv(csv)
            .map_err(|e| PlatformError::InvalidInput(format!("content: {e}")))?;
        let table = Table {
            header: t.header,
            rows: t.rows,
        };
        let delivered: Vec<Export> = self
            .exports_all()
            .await?
            .into_iter()
            .filter(|e| e.dataset == dataset && e.state == ExportState::Delivered)
            .collect();
        let mut recipients: Vec<String> = delivered.iter().map(|e| e.recipient.clone()).collect();
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(PlatformError::NotFound(format!(
                "no delivered exports of `{dataset}` to trace against"
            )));
        }
        let tr =
            cf_mask::watermark::trace(&self.inner.marker, &recipients, &d.key_column, &table, 1e-6)
                .map_err(|e| PlatformError::InvalidInput(e.to_string()))?;
        let exports: Vec<&str> = tr
            .attributed
            .as_ref()
            .map(|a| {
                delivered
                    .iter()
                    .filter(|e| &e.recipient == a)
                    .map(|e| e.id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let out = serde_json::json!({"attributed": tr.attributed, "exports": exports, "candidates": tr.candidates, "alpha": tr.alpha});
        let r = self.inner.ledger.append(self.record(auth, ctx, "data.export.trace", format!("dataset:{dataset}"), serde_json::json!({"rows": table.rows.len(), "attributed": tr.attributed, "exports": exports}))).await?;
        Ok((out, r))
    }

    async fn exports_all(&self) -> Result<Vec<Export>, PlatformError> {
        let docs = self.inner.store.doc_list("export").await?;
        docs.iter().map(parse_doc).collect()
    }
}

fn parse_doc<T: serde::de::DeserializeOwned>(d: &Document) -> Result<T, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("stored {} `{}`: {e}", d.kind, d.id)))
}

fn to_csv(t: &Table) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for r in std::iter::once(&t.header).chain(t.rows.iter()) {
        out.push_str(&r.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_round_trips_through_the_parser() {
        let t = Table {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["x,y".into(), "say \"hi\"\nthere".into()]],
        };
        let back = cf_classify::tabular::parse_csv(&to_csv(&t)).unwrap();
        assert_eq!((back.header, back.rows), (t.header, t.rows));
        assert_eq!(
            redact("postgres://app:s3cret@db/x"),
            "postgres://app:[redacted]@db/x"
        );
    }
}
