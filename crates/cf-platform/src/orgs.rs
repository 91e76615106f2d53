//! Organisations (IDM-1): the city's bureaus, companies and partners as tenants whose people,
//! tokens, devices and keys stay inside them, with their departments; plus city-wide ones.
//!
//! A user's `org` names the tenant the user belongs to. An organisation need not be registered
//! to exist — HR systems provision people into the organisations they know — and an
//! unregistered one is a tenant. Registering it adds its name and departments; only registering
//! it with scope `city` (city administrators only, audited) lets its people act for the whole
//! city. The built-in organisation [`CITY_ORG`] is always city-wide.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

/// The platform operator's own organisation: always city-wide.
pub const CITY_ORG: &str = "city";

/// How long a scope lookup is trusted; registrations on this node are seen at once.
const SCOPE_TTL: Duration = Duration::from_secs(5);

/// Whether an organisation's people act inside it or for the whole city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrgScope {
    /// Confined to the organisation (the default).
    #[default]
    Tenant,
    /// The city's operators: security operations, audit, platform administration.
    City,
}

/// A registered organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// Immutable id, `[a-z0-9._-]{1,64}` (what users' `org` names).
    pub id: String,
    /// Display name, e.g. `市水务局 Water Authority`.
    pub name: String,
    /// Tenant or city-wide.
    pub scope: OrgScope,
    /// Departments people may be placed in.
    pub departments: Vec<String>,
    /// When registered (absent for the built-in and unregistered organisations).
    pub created: Option<Timestamp>,
    /// Registered, rather than known only from its members.
    pub registered: bool,
}

/// What an administrator supplies to register an organisation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Scope (default tenant).
    #[serde(default)]
    pub scope: OrgScope,
    /// Departments.
    #[serde(default)]
    pub departments: Vec<String>,
}

/// Check an organisation id: `[a-z0-9._-]{1,64}`, starting with a letter or digit.
pub fn check_org_id(o: &str) -> Result<(), PlatformError> {
    if (1..=64).contains(&o.len())
        && o.as_bytes()[0].is_ascii_alphanumeric()
        && o.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(PlatformError::InvalidInput(format!(
            "org `{}`: 1-64 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            o.chars().take(80).collect::<String>()
        )))
    }
}

fn check_label(what: &str, v: &str) -> Result<(), PlatformError> {
    if v.trim().is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control) {
        return Err(PlatformError::InvalidInput(format!(
            "{what}: 1-100 characters, no control characters"
        )));
    }
    Ok(())
}

/// The organisation directory.
#[derive(Clone)]
pub struct OrgDirectory {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    scopes: Arc<Mutex<HashMap<String, (Instant, OrgScope)>>>,
}

impl std::fmt::Debug for OrgDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrgDirectory")
    }
}

fn parse(d: &Document) -> Result<Org, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("organisation `{}`: {e}", d.id)))
}

impl OrgDirectory {
    /// The directory over `store`.
    pub fn new(store: Arc<dyn StateStore>, ledger: AuditLedger, clock: SharedClock) -> Self {
        OrgDirectory {
            store,
            ledger,
            clock,
            scopes: Arc::default(),
        }
    }

    fn builtin() -> Org {
        Org {
            id: CITY_ORG.into(),
            name: "City operations".into(),
            scope: OrgScope::City,
            departments: Vec::new(),
            created: None,
            registered: false,
        }
    }

    async fn get(&self, id: &str) -> Result<Option<(Org, Document)>, PlatformError> {
        match self.store.doc_get("org", id).await? {
            Some(d) => Ok(Some((parse(&d)?, d))),
            None => Ok(None),
        }
    }

    /// A registered organisation and its stored document.
    pub async fn get_registered(&self, id: &str) -> Result<Option<(Org, Document)>, PlatformError> {
        self.get(id).await
    }

    /// The organisation a principal of `org` is confined to: `None` for city-wide ones.
    pub async fn confine(&self, org: &str) -> Result<Option<String>, PlatformError> {
        Ok(match self.scope(org).await? {
            OrgScope::City => None,
            OrgScope::Tenant => Some(org.to_string()),
        })
    }

    /// The scope of `org` (unregistered organisations are tenants).
    pub async fn scope(&self, org: &str) -> Result<OrgScope, PlatformError> {
        if org == CITY_ORG {
            return Ok(OrgScope::City);
        }
        if let Ok(m) = self.scopes.lock()
            && let Some((at, s)) = m.get(org)
            && at.elapsed() < SCOPE_TTL
        {
            return Ok(*s);
        }
        let s = self
            .get(org)
            .await?
            .map(|(o, _)| o.scope)
            .unwrap_or_default();
        if let Ok(mut m) = self.scopes.lock() {
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(org.to_string(), (Instant::now(), s));
        }
        Ok(s)
    }

    /// Register an organisation (city administrators only); audited before it is stored.
    pub async fn create(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        n: NewOrg,
    ) -> Result<(Org, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        auth.city_only("registering an organisation")?;
        check_org_id(&n.id)?;
        check_label("name", &n.name)?;
        for (i, d) in n.departments.iter().enumerate() {
            check_label(&format!("departments[{i}]"), d)?;
        }
        if n.id == CITY_ORG || self.get(&n.id).await?.is_some() {
            return Err(PlatformError::Conflict(format!(
                "organisation `{}` exists",
                n.id
            )));
        }
        let mut departments = n.departments;
        departments.sort();
        departments.dedup();
        let org = Org {
            id: n.id,
            name: n.name,
            scope: n.scope,
            departments,
            created: Some(self.clock.now()),
            registered: true,
        };
        let r = self
            .audit(
                ctx,
                auth,
                "identity.org.create",
                &org.id,
                serde_json::json!({"name": org.name, "scope": org.scope, "departments": org.departments}),
            )
            .await?;
        self.store
            .doc_insert(&Document {
                kind: "org".into(),
                id: org.id.clone(),
                body: serde_json::to_string(&org)
                    .map_err(|e| PlatformError::Internal(e.to_string()))?,
                revision: 1,
                updated: self.clock.now(),
            })
            .await?;
        if let Ok(mut m) = self.scopes.lock() {
            m.remove(&org.id);
        }
        Ok((org, r))
    }

    /// Add a department (an organisation's own administrators may, for their organisation).
    pub async fn add_department(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
        department: &str,
    ) -> Result<(Org, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        check_label("department", department)?;
        let not_found = || PlatformError::NotFound(format!("no registered organisation `{id}`"));
        if !auth.reaches(id) {
            return Err(not_found());
        }
        for _ in 0..8 {
            let (mut org, doc) = self.get(id).await?.ok_or_else(not_found)?;
            if org.departments.iter().any(|d| d == department) {
                return Err(PlatformError::Conflict(format!(
                    "department `{department}` exists in `{id}`"
                )));
            }
            org.departments.push(department.to_string());
            org.departments.sort();
            let body =
                serde_json::to_string(&org).map_err(|e| PlatformError::Internal(e.to_string()))?;
            let r = self
                .audit(
                    ctx,
                    auth,
                    "identity.org.department",
                    id,
                    serde_json::json!({"department": department}),
                )
                .await?;
            match self
                .store
                .doc_update(&Document {
                    body,
                    revision: doc.revision + 1,
                    updated: self.clock.now(),
                    ..doc
                })
                .await
            {
                Ok(()) => return Ok((org, r)),
                Err(crate::ports::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PlatformError::Unavailable(
            "the organisation is being changed by others; try again".into(),
        ))
    }

    /// One organisation within the caller's reach; `known` lists organisations seen on
    /// accounts, so unregistered ones can be shown too.
    pub async fn show(
        &self,
        auth: &Authorized,
        id: &str,
        known: &[String],
    ) -> Result<Org, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let not_found = || PlatformError::NotFound(format!("no organisation `{id}`"));
        if !auth.reaches(id) {
            return Err(not_found());
        }
        if id == CITY_ORG {
            return Ok(Self::builtin());
        }
        match self.get(id).await? {
            Some((o, _)) => Ok(o),
            None if known.iter().any(|k| k == id) => Ok(Org {
                id: id.to_string(),
                name: id.to_string(),
                scope: OrgScope::Tenant,
                departments: Vec::new(),
                created: None,
                registered: false,
            }),
            None => Err(not_found()),
        }
    }

    /// Every organisation within the caller's reach: registered ones, the built-in city one
    /// and those known only from their members (`known`), by id.
    pub async fn list(
        &self,
        auth: &Authorized,
        known: &[String],
    ) -> Result<Vec<Org>, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let mut out: std::collections::BTreeMap<String, Org> = Default::default();
        out.insert(CITY_ORG.into(), Self::builtin());
        for k in known {
            out.entry(k.clone()).or_insert_with(|| Org {
                id: k.clone(),
                name: k.clone(),
                scope: OrgScope::Tenant,
                departments: Vec::new(),
                created: None,
                registered: false,
            });
        }
        for d in self.store.doc_list("org").await? {
            let o = parse(&d)?;
            out.insert(o.id.clone(), o);
        }
        Ok(out
            .into_values()
            .filter(|o| auth.org().is_none_or(|mine| mine == o.id))
            .collect())
    }

    async fn audit(
        &self,
        ctx: &RequestContext,
        auth: &Authorized,
        event: &str,
        id: &str,
        detail: serde_json::Value,
    ) -> Result<Receipt, PlatformError> {
        self.ledger
            .append(
                AuditRecord::new(
                    event,
                    self.clock.now(),
                    &ctx.source_addr,
                    "chengfang-identity",
                    &auth.principal().id,
                    format!("org:{id}"),
                    event.rsplit('.').next().unwrap_or(event),
                    Outcome::Success,
                    &ctx.request_id,
                )
                .with_detail(detail)
                .privileged(),
            )
            .await
    }
}
