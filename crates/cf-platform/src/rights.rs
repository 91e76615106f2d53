//! Rights compliance (AUZ-6): which rights each person actually uses, and the report auditors
//! read — roles unused in the review period, toxic combinations, roles beyond the peer group.
//!
//! Use is noted in memory on every authorised request (cheap) and merged into the store once a
//! minute and before each report, so every node contributes and a restart loses at most a minute.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use cf_core::SharedClock;
use cf_event::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::AuditLedger;
use crate::authz::{self, Action, Authorized, Principal, Role};
use crate::identity::IdentityService;
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UsageDoc {
    /// Action name → last use, unix seconds.
    actions: BTreeMap<String, i64>,
}

/// The service.
#[derive(Clone)]
pub struct RightsService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RightsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RightsService")
    }
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    identity: IdentityService,
    pending: Mutex<HashMap<String, HashMap<&'static str, i64>>>,
}

fn secs(clock: &SharedClock) -> i64 {
    clock.now().unix_nanos() / 1_000_000_000
}

impl RightsService {
    /// The service.
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        identity: IdentityService,
    ) -> Self {
        RightsService {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                identity,
                pending: Mutex::default(),
            }),
        }
    }

    /// `principal` was allowed `action` just now.
    pub fn note(&self, principal: &str, action: Action) {
        let now = secs(&self.inner.clock);
        if let Ok(mut m) = self.inner.pending.lock() {
            // Bounded: a flood of distinct principals is flushed rather than kept.
            if m.len() < 100_000 {
                m.entry(principal.to_string())
                    .or_default()
                    .insert(action.as_str(), now);
            }
        }
    }

    /// Merge the noted use into the store.
    pub async fn flush(&self) -> Result<(), PlatformError> {
        let batch = match self.inner.pending.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return Ok(()),
        };
        for (principal, used) in batch {
            for _ in 0..3 {
                let cur = self.inner.store.doc_get("rights-usage", &principal).await?;
                let mut doc: UsageDoc = cur
                    .as_ref()
                    .and_then(|d| serde_json::from_str(&d.body).ok())
                    .unwrap_or_default();
                for (a, t) in &used {
                    let e = doc.actions.entry((*a).to_string()).or_insert(0);
                    *e = (*e).max(*t);
                }
                let body = serde_json::to_string(&doc)
                    .map_err(|e| PlatformError::Internal(e.to_string()))?;
                let r = match cur {
                    Some(d) => {
                        self.inner
                            .store
                            .doc_update(&Document {
                                body,
                                revision: d.revision + 1,
                                updated: self.inner.clock.now(),
                                ..d
                            })
                            .await
                    }
                    None => {
                        self.inner
                            .store
                            .doc_insert(&Document {
                                kind: "rights-usage".into(),
                                id: principal.clone(),
                                body,
                                revision: 1,
                                updated: self.inner.clock.now(),
                            })
                            .await
                    }
                };
                match r {
                    Ok(()) => break,
                    // Another node merged meanwhile: read again and merge on top.
                    Err(crate::ports::StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// The actions each role allows, from the platform's own policies.
    pub fn role_actions() -> BTreeMap<String, BTreeSet<String>> {
        Role::ALL
            .iter()
            .map(|r| {
                let p = Principal {
                    id: "rights-report".into(),
                    roles: vec![*r],
                    must_change: false,
                    org: None,
                    assurance: Default::default(),
                };
                let allowed = Action::ALL
                    .iter()
                    .filter(|a| **a != Action::OwnAccount && authz::authorize(&p, **a).is_ok())
                    .map(|a| a.as_str().to_string())
                    .collect();
                (r.as_str().to_string(), allowed)
            })
            .collect()
    }

    /// The rights-compliance report over the last `days` days (auditors); audited.
    pub async fn report(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        days: i64,
    ) -> Result<serde_json::Value, PlatformError> {
        auth.require(Action::ReadAudit)?;
        self.flush().await?;
        let since = secs(&self.inner.clock) - days.clamp(1, 3650) * 86_400;
        let mut subjects = Vec::new();
        for (username, org, roles, disabled) in self.inner.identity.accounts().await? {
            if disabled {
                continue;
            }
            let id = format!("user:{username}");
            let used: Vec<String> = match self.inner.store.doc_get("rights-usage", &id).await? {
                Some(d) => serde_json::from_str::<UsageDoc>(&d.body)
                    .unwrap_or_default()
                    .actions
                    .into_iter()
                    .filter(|(_, t)| *t >= since)
                    .map(|(a, _)| a)
                    .collect(),
                None => Vec::new(),
            };
            subjects.push(cf_authz::rights::SubjectRights {
                subject: id,
                group: org,
                roles,
                used_actions: used,
            });
        }
        let findings = cf_authz::rights::report(
            &subjects,
            &Self::role_actions(),
            &cf_authz::rights::default_rules(),
        );
        let rec = AuditRecord::new(
            "rights.report",
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-rights",
            &auth.principal().id,
            "rights".to_string(),
            "report",
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(serde_json::json!({"days": days, "subjects": subjects.len(), "findings": findings.len()}));
        self.inner.ledger.append(rec).await?;
        Ok(serde_json::json!({
            "period_days": days, "subjects": subjects.len(), "findings": findings,
        }))
    }
}
