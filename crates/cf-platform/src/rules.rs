//! Detection rule management (SA-2, IDS-1): the loaded Sigma rules with their ATT&CK tags and
//! the rules that were refused (with why), enabled and disabled by operators, and suppressions
//! scoped to a rule and optionally one entity (host or group key) with an expiry. Every change is
//! written to the audit ledger before it is stored and acknowledged; the streaming detector reads
//! the resulting controls on every hit.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

/// A loaded rule, as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMeta {
    /// Sigma `id`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: String,
    /// Tags (`attack.t1059.001`, `attack.execution` …).
    pub tags: Vec<String>,
    /// `detection` or `correlation`.
    pub kind: &'static str,
}

/// A rule with its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    /// The rule.
    #[serde(flatten)]
    pub meta: RuleMeta,
    /// Whether its hits become alerts.
    pub enabled: bool,
    /// Why it was last enabled or disabled.
    pub reason: Option<String>,
    /// Who changed it last.
    pub changed_by: Option<String>,
    /// When.
    pub changed_at: Option<Timestamp>,
    /// Tags the city's analysts added (e.g. their own ATT&CK mapping or a team label); `tags`
    /// already includes them and excludes `tags_removed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags_added: Vec<String>,
    /// Tags of the rule file that the analysts removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags_removed: Vec<String>,
}

/// Analysts' changes to a rule's tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TagEdit {
    add: Vec<String>,
    remove: Vec<String>,
}

const TAGS: &str = "rule_tags";

/// Tags most added to one rule.
pub const MAX_ADDED_TAGS: usize = 32;

fn tag_ok(t: &str) -> Result<(), PlatformError> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PlatformError::InvalidInput(format!(
            "tags: `{t}` is not a tag (1-64 of a-z 0-9 . _ -, like attack.t1059.001)"
        )))
    }
}

impl RuleInfo {
    /// A rule as listed: its state (enabled unless a state says otherwise) and its tag edits.
    fn of(meta: RuleMeta, state: Option<&RuleState>, edit: Option<&TagEdit>) -> Self {
        RuleInfo {
            meta,
            enabled: state.is_none_or(|s| s.enabled),
            reason: state.map(|s| s.reason.clone()),
            changed_by: state.map(|s| s.by.clone()),
            changed_at: state.map(|s| s.at),
            tags_added: Vec::new(),
            tags_removed: Vec::new(),
        }
        .with_tags(edit)
    }

    fn with_tags(mut self, edit: Option<&TagEdit>) -> Self {
        if let Some(e) = edit {
            self.meta.tags.retain(|t| !e.remove.contains(t));
            for t in &e.add {
                if !self.meta.tags.contains(t) {
                    self.meta.tags.push(t.clone());
                }
            }
            self.tags_added = e.add.clone();
            self.tags_removed = e.remove.clone();
        }
        self
    }
}

/// A suppression: hits of `rule_id` (on `entity`, or on every entity) raise no alert until
/// `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Id.
    pub id: String,
    /// Rule.
    pub rule_id: String,
    /// Host or group key the suppression is limited to; `None` for all.
    pub entity: Option<String>,
    /// Why (required: an audit trail without reasons is not one).
    pub reason: String,
    /// Who.
    pub created_by: String,
    /// When.
    pub created: Timestamp,
    /// Until.
    pub expires: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuleState {
    enabled: bool,
    reason: String,
    by: String,
    at: Timestamp,
}

/// What the detector consults on every hit.
#[derive(Debug, Default, Clone)]
pub struct RuleControls {
    disabled: HashSet<String>,
    suppressions: Vec<Suppression>,
    tags: std::collections::HashMap<String, TagEdit>,
}

impl RuleControls {
    /// A rule's tags as the analysts left them: the file's `file_tags` without the removed ones,
    /// plus the added ones (what alerts carry and what places them on the attack chain).
    pub fn tags_of(&self, rule_id: &str, file_tags: &[String]) -> Vec<String> {
        let Some(e) = self.tags.get(rule_id) else {
            return file_tags.to_vec();
        };
        let mut t: Vec<String> = file_tags
            .iter()
            .filter(|x| !e.remove.contains(x))
            .cloned()
            .collect();
        for a in &e.add {
            if !t.contains(a) {
                t.push(a.clone());
            }
        }
        t
    }

    /// Whether a hit of `rule_id` on `entity` at `now` may become an alert.
    pub fn allows(&self, rule_id: &str, entity: &str, now: Timestamp) -> bool {
        !self.disabled.contains(rule_id)
            && !self.suppressions.iter().any(|s| {
                s.rule_id == rule_id
                    && s.expires > now
                    && s.entity.as_deref().is_none_or(|e| e == entity)
            })
    }
}

/// Shared controls (the detector holds a clone of the handle).
pub type SharedControls = Arc<RwLock<RuleControls>>;

/// The rule book.
#[derive(Clone)]
pub struct RuleBook {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn cf_crypto::Rng>,
    catalogue: Arc<BTreeMap<String, RuleMeta>>,
    refused: Arc<Vec<(String, String)>>,
    controls: SharedControls,
}

impl std::fmt::Debug for RuleBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleBook")
            .field("rules", &self.catalogue.len())
            .finish()
    }
}

const STATE: &str = "rule_state";
const SUPP: &str = "rule_suppression";
/// Longest suppression: a year; anything longer should be a disabled rule with a reason.
const MAX_SUPPRESSION_SECS: i64 = 366 * 86_400;

fn reason_ok(r: &str) -> Result<(), PlatformError> {
    if r.trim().is_empty() || r.chars().count() > 500 {
        return Err(PlatformError::InvalidInput(
            "reason: 1-500 characters".into(),
        ));
    }
    Ok(())
}

impl RuleBook {
    /// A book over the loaded rules (`catalogue`) and the refused ones (`(file, reason)`).
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn cf_crypto::Rng>,
        catalogue: Vec<RuleMeta>,
        refused: Vec<(String, String)>,
    ) -> Self {
        RuleBook {
            store,
            ledger,
            clock,
            rng,
            catalogue: Arc::new(catalogue.into_iter().map(|m| (m.id.clone(), m)).collect()),
            refused: Arc::new(refused),
            controls: Arc::default(),
        }
    }

    /// The controls handle for the detector.
    pub fn controls(&self) -> SharedControls {
        self.controls.clone()
    }

    /// Reload the controls from the store (at start, and periodically so that changes made
    /// through another node take effect here).
    pub async fn refresh(&self) -> Result<(), PlatformError> {
        let mut c = RuleControls::default();
        for d in self.store.doc_list(STATE).await? {
            let s: RuleState = serde_json::from_str(&d.body)
                .map_err(|e| PlatformError::Internal(format!("rule state `{}`: {e}", d.id)))?;
            if !s.enabled {
                c.disabled.insert(d.id);
            }
        }
        for d in self.store.doc_list(TAGS).await? {
            if let Ok(e) = serde_json::from_str::<TagEdit>(&d.body) {
                c.tags.insert(d.id, e);
            }
        }
        let now = self.clock.now();
        for d in self.store.doc_list(SUPP).await? {
            let s: Suppression = serde_json::from_str(&d.body)
                .map_err(|e| PlatformError::Internal(format!("suppression `{}`: {e}", d.id)))?;
            if s.expires > now {
                c.suppressions.push(s);
            }
        }
        *self
            .controls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = c;
        Ok(())
    }

    /// Every loaded rule with its state; `tag` filters (e.g. `attack.t1003`, prefix match).
    pub async fn list(
        &self,
        auth: &Authorized,
        tag: Option<&str>,
    ) -> Result<Vec<RuleInfo>, PlatformError> {
        auth.require(Action::ReadRules)?;
        let mut states: BTreeMap<String, RuleState> = BTreeMap::new();
        for d in self.store.doc_list(STATE).await? {
            if let Ok(s) = serde_json::from_str(&d.body) {
                states.insert(d.id, s);
            }
        }
        let mut edits: BTreeMap<String, TagEdit> = BTreeMap::new();
        for d in self.store.doc_list(TAGS).await? {
            if let Ok(e) = serde_json::from_str(&d.body) {
                edits.insert(d.id, e);
            }
        }
        Ok(self
            .catalogue
            .values()
            .map(|m| RuleInfo::of(m.clone(), states.get(&m.id), edits.get(&m.id)))
            .filter(|r| tag.is_none_or(|t| r.meta.tags.iter().any(|x| x.starts_with(t))))
            .collect())
    }

    /// Add and remove tags of a rule (its file is left as it is), with a reason; audited
    /// before it is stored. Removing an added tag takes it back; adding a removed file tag
    /// restores it.
    pub async fn edit_tags(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        add: &[String],
        remove: &[String],
        reason: &str,
    ) -> Result<(RuleInfo, Receipt), PlatformError> {
        auth.require(Action::ManageRules)?;
        reason_ok(reason)?;
        for t in add.iter().chain(remove) {
            tag_ok(t)?;
        }
        let meta = self
            .catalogue
            .get(id)
            .ok_or_else(|| PlatformError::NotFound(format!("no loaded rule `{id}`")))?
            .clone();
        let mut edit: TagEdit = match self.store.doc_get(TAGS, id).await? {
            Some(d) => serde_json::from_str(&d.body).unwrap_or_default(),
            None => TagEdit::default(),
        };
        for t in add {
            edit.remove.retain(|x| x != t);
            if !meta.tags.contains(t) && !edit.add.contains(t) {
                edit.add.push(t.clone());
            }
        }
        for t in remove {
            edit.add.retain(|x| x != t);
            if meta.tags.contains(t) && !edit.remove.contains(t) {
                edit.remove.push(t.clone());
            }
        }
        if edit.add.len() > MAX_ADDED_TAGS {
            return Err(PlatformError::InvalidInput(format!(
                "tags: at most {MAX_ADDED_TAGS} added tags per rule"
            )));
        }
        let now = self.clock.now();
        let rec = AuditRecord::new(
            "rule.tags",
            now,
            &ctx.source_addr,
            "chengfang-rules",
            &auth.principal().id,
            format!("rule:{id}"),
            "tag",
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(
            serde_json::json!({"title": meta.title, "add": add, "remove": remove,
            "reason": reason, "added_now": edit.add, "removed_now": edit.remove}),
        );
        let receipt = self.ledger.append(rec).await?;
        let body =
            serde_json::to_string(&edit).map_err(|e| PlatformError::Internal(e.to_string()))?;
        crate::ports::put_document(self.store.as_ref(), TAGS, id, body, now).await?;
        self.controls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tags
            .insert(id.to_string(), edit.clone());
        let state: Option<RuleState> = self
            .store
            .doc_get(STATE, id)
            .await?
            .and_then(|d| serde_json::from_str(&d.body).ok());
        Ok((RuleInfo::of(meta, state.as_ref(), Some(&edit)), receipt))
    }

    /// Rules that could not be loaded, with the reason (file, reason).
    pub fn refused(&self, auth: &Authorized) -> Result<Vec<(String, String)>, PlatformError> {
        auth.require(Action::ReadRules)?;
        Ok(self.refused.as_ref().clone())
    }

    /// Enable or disable a rule, with a reason.
    pub async fn set_enabled(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        enabled: bool,
        reason: &str,
    ) -> Result<(RuleInfo, Receipt), PlatformError> {
        auth.require(Action::ManageRules)?;
        reason_ok(reason)?;
        let meta = self
            .catalogue
            .get(id)
            .ok_or_else(|| PlatformError::NotFound(format!("no loaded rule `{id}`")))?
            .clone();
        let what = if enabled { "enable" } else { "disable" };
        let now = self.clock.now();
        let rec = AuditRecord::new(
            format!("rule.{what}"),
            now,
            &ctx.source_addr,
            "chengfang-rules",
            &auth.principal().id,
            format!("rule:{id}"),
            what,
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(serde_json::json!({"title": meta.title, "reason": reason}));
        let receipt = self.ledger.append(rec).await?;
        let state = RuleState {
            enabled,
            reason: reason.to_string(),
            by: auth.principal().id.clone(),
            at: now,
        };
        let body =
            serde_json::to_string(&state).map_err(|e| PlatformError::Internal(e.to_string()))?;
        crate::ports::put_document(self.store.as_ref(), STATE, id, body, now).await?;
        {
            let mut c = self
                .controls
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if enabled {
                c.disabled.remove(id);
            } else {
                c.disabled.insert(id.to_string());
            }
        }
        let edit: Option<TagEdit> = self
            .store
            .doc_get(TAGS, id)
            .await?
            .and_then(|d| serde_json::from_str(&d.body).ok());
        Ok((RuleInfo::of(meta, Some(&state), edit.as_ref()), receipt))
    }

    /// Suppress a rule's alerts (on one entity, or all) for `secs` seconds, with a reason.
    pub async fn suppress(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        rule_id: &str,
        entity: Option<&str>,
        reason: &str,
        secs: i64,
    ) -> Result<(Suppression, Receipt), PlatformError> {
        auth.require(Action::ManageRules)?;
        reason_ok(reason)?;
        if !self.catalogue.contains_key(rule_id) {
            return Err(PlatformError::NotFound(format!(
                "no loaded rule `{rule_id}`"
            )));
        }
        if !(60..=MAX_SUPPRESSION_SECS).contains(&secs) {
            return Err(PlatformError::InvalidInput(format!(
                "expires_in_secs: between 60 and {MAX_SUPPRESSION_SECS} (a year); disable the rule for longer"
            )));
        }
        if entity.is_some_and(|e| e.trim().is_empty() || e.len() > 255) {
            return Err(PlatformError::InvalidInput(
                "entity: 1-255 characters".into(),
            ));
        }
        let now = self.clock.now();
        let s = Suppression {
            id: format!(
                "sup-{}",
                hex::encode(
                    cf_crypto::random_bytes(self.rng.as_ref(), 8)
                        .map_err(|e| PlatformError::Internal(e.to_string()))?
                )
            ),
            rule_id: rule_id.to_string(),
            entity: entity.map(str::to_string),
            reason: reason.to_string(),
            created_by: auth.principal().id.clone(),
            created: now,
            expires: Timestamp::from_unix_nanos(
                now.unix_nanos()
                    .saturating_add(secs.saturating_mul(1_000_000_000)),
            ),
        };
        let rec = AuditRecord::new(
            "rule.suppress",
            now,
            &ctx.source_addr,
            "chengfang-rules",
            &auth.principal().id,
            format!("rule:{rule_id}"),
            "suppress",
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(serde_json::json!({"suppression": s.id, "entity": s.entity, "reason": reason, "expires": s.expires}));
        let receipt = self.ledger.append(rec).await?;
        self.store
            .doc_insert(&Document {
                kind: SUPP.into(),
                id: s.id.clone(),
                body: serde_json::to_string(&s)
                    .map_err(|e| PlatformError::Internal(e.to_string()))?,
                revision: 1,
                updated: now,
            })
            .await?;
        self.controls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .suppressions
            .push(s.clone());
        Ok((s, receipt))
    }

    /// Suppressions still in force.
    pub async fn suppressions(&self, auth: &Authorized) -> Result<Vec<Suppression>, PlatformError> {
        auth.require(Action::ReadRules)?;
        let now = self.clock.now();
        let mut out = Vec::new();
        for d in self.store.doc_list(SUPP).await? {
            if let Ok(s) = serde_json::from_str::<Suppression>(&d.body)
                && s.expires > now
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Lift a suppression before it expires (kept in the ledger; removed from the store).
    pub async fn lift(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageRules)?;
        reason_ok(reason)?;
        let d = self
            .store
            .doc_get(SUPP, id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("no suppression `{id}`")))?;
        let s: Suppression =
            serde_json::from_str(&d.body).map_err(|e| PlatformError::Internal(e.to_string()))?;
        let rec = AuditRecord::new(
            "rule.unsuppress",
            self.clock.now(),
            &ctx.source_addr,
            "chengfang-rules",
            &auth.principal().id,
            format!("rule:{}", s.rule_id),
            "unsuppress",
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(serde_json::json!({"suppression": id, "reason": reason}));
        let receipt = self.ledger.append(rec).await?;
        self.store.doc_delete(SUPP, id).await?;
        self.controls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .suppressions
            .retain(|x| x.id != id);
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_honour_scope_and_expiry() {
        let now = Timestamp::from_unix_secs(1_000);
        let sup = |entity: Option<&str>, until: i64| Suppression {
            id: "s".into(),
            rule_id: "r1".into(),
            entity: entity.map(str::to_string),
            reason: "noisy backup job".into(),
            created_by: "op".into(),
            created: now,
            expires: Timestamp::from_unix_secs(until),
        };
        let mut c = RuleControls::default();
        assert!(c.allows("r1", "HOST-A", now));
        c.suppressions.push(sup(Some("HOST-A"), 2_000));
        assert!(!c.allows("r1", "HOST-A", now));
        assert!(c.allows("r1", "HOST-B", now), "scoped to one host");
        assert!(c.allows("r2", "HOST-A", now), "scoped to one rule");
        assert!(
            c.allows("r1", "HOST-A", Timestamp::from_unix_secs(2_000)),
            "expired"
        );
        c.suppressions.push(sup(None, 2_000));
        assert!(!c.allows("r1", "HOST-B", now), "all entities");
        c.disabled.insert("r3".into());
        assert!(!c.allows("r3", "X", now));
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn alerts_carry_the_tags_as_analysts_left_them() {
        let mut c = RuleControls::default();
        let file = vec!["attack.execution".to_string(), "attack.t1059".to_string()];
        assert_eq!(c.tags_of("r1", &file), file, "no edit: the file's tags");
        c.tags.insert(
            "r1".into(),
            TagEdit {
                add: vec!["attack.lateral-movement".into(), "attack.t1059".into()],
                remove: vec!["attack.execution".into()],
            },
        );
        assert_eq!(
            c.tags_of("r1", &file),
            ["attack.t1059", "attack.lateral-movement"],
            "removed ones go, added ones come once"
        );
        assert_eq!(c.tags_of("r2", &file), file);
    }
}
