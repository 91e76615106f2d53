//! SCIM 2.0 provisioning (IDM-3; RFC 7643/7644): HR and directory systems create, change and
//! remove the city's people and groups; each SCIM user is bound to a platform account, so a
//! leaver (`active: false` or DELETE) is disabled at once — sessions ended, single sign-on
//! tokens dead. Resources keep what the client sent (within the published schemas), with
//! versions for ETags; every change is audited before it is acknowledged.

use std::sync::{Arc, RwLock};

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_identity::scim::{self as engine, ScimError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::identity::{IdentityService, NewUser};
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

/// Core schema URNs.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// See [`USER_SCHEMA`].
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise extension (department, organization).
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// List responses.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Largest page.
pub const MAX_RESULTS: usize = 1000;

/// A SCIM failure: HTTP status, `scimType` and detail (RFC 7644 §3.12).
#[derive(Debug, Clone)]
pub struct ScimFailure {
    /// HTTP status.
    pub status: u16,
    /// `scimType`, where one applies.
    pub scim_type: Option<&'static str>,
    /// What was wrong.
    pub detail: String,
}

impl ScimFailure {
    fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimFailure {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        ScimFailure::bad(e.scim_type, e.detail)
    }
}

impl From<PlatformError> for ScimFailure {
    fn from(e: PlatformError) -> Self {
        let status = match &e {
            PlatformError::InvalidInput(_) => 400,
            PlatformError::NotFound(_) => 404,
            PlatformError::Forbidden(_) => 403,
            PlatformError::Unauthenticated(_) => 401,
            PlatformError::Conflict(_) => 409,
            PlatformError::RateLimited(_) => 429,
            PlatformError::AuditUnavailable(_) | PlatformError::Unavailable(_) => 503,
            PlatformError::Internal(_) => 500,
        };
        let detail = if status >= 500 {
            "the platform could not complete the request".to_string()
        } else {
            e.to_string()
        };
        ScimFailure::new(status, None, detail)
    }
}

impl From<crate::ports::StoreError> for ScimFailure {
    fn from(e: crate::ports::StoreError) -> Self {
        PlatformError::from(e).into()
    }
}

/// The two resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/Users`
    User,
    /// `/Groups`
    Group,
}

impl Kind {
    fn doc_kind(self) -> &'static str {
        match self {
            Kind::User => "scim-user",
            Kind::Group => "scim-group",
        }
    }
    /// `User` or `Group`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    /// `Users` or `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
    fn required(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    resource: Value,
    version: u64,
    /// The platform account a user is bound to.
    account: Option<String>,
    /// The organisation whose token created it (`None`: the city's); tenants see only theirs.
    #[serde(default)]
    org: Option<String>,
}

/// List parameters (RFC 7644 §3.4.2).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `filter`
    pub filter: Option<String>,
    /// `sortBy`
    pub sort_by: Option<String>,
    /// `sortOrder` is `descending`.
    pub descending: bool,
    /// 1-based `startIndex`.
    pub start_index: Option<usize>,
    /// `count`
    pub count: Option<usize>,
    /// `attributes`
    pub attributes: Vec<String>,
    /// `excludedAttributes`
    pub excluded: Vec<String>,
}

/// The service.
#[derive(Clone)]
pub struct ScimService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScimService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScimService")
    }
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn cf_crypto::Rng>,
    identity: IdentityService,
    base: RwLock<String>,
    /// Group `displayName` (lower case) → the roles its members hold.
    group_roles: RwLock<std::collections::BTreeMap<String, Vec<String>>>,
}

fn parse(d: &Document) -> Result<Stored, ScimFailure> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("scim `{}`: {e}", d.id)).into())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, ScimFailure> {
    serde_json::to_string(v).map_err(|e| PlatformError::Internal(e.to_string()).into())
}

/// `name` in lower case with every character outside `[a-z0-9._-]` replaced by `other`.
fn id_chars(name: &str, other: char) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
                c
            } else {
                other
            }
        })
        .collect()
}

/// The organisation id for an HR system's organisation name: lower case, characters outside
/// `[a-z0-9._-]` as `-`, at most 64 (`provisioned` when nothing is left).
fn org_id(name: &str) -> String {
    let mut s = id_chars(name, '-')
        .trim_matches(['.', '_', '-'])
        .to_string();
    s.truncate(64);
    if s.is_empty() {
        s = "provisioned".into();
    }
    s
}

/// The account name for a SCIM `userName`: lower case, characters outside `[a-z0-9._-]` as `.`.
fn account_name(user_name: &str) -> String {
    let mut s = id_chars(user_name, '.')
        .trim_start_matches(['.', '_', '-'])
        .to_string();
    s.truncate(56);
    if s.len() < 2 {
        s = format!("u.{s}x");
    }
    s
}

impl ScimService {
    /// The service; `base` is the public URL of `/scim/v2` (for `meta.location`).
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn cf_crypto::Rng>,
        identity: IdentityService,
    ) -> Self {
        ScimService {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                rng,
                identity,
                base: RwLock::new(String::new()),
                group_roles: RwLock::new(Default::default()),
            }),
        }
    }

    /// Map groups to roles (IDM-3 movers, AUZ-1): members of a group named (case-insensitively)
    /// like a key hold its roles, and lose them when they leave it. Set once at start.
    pub fn set_group_roles(&self, map: &std::collections::BTreeMap<String, Vec<String>>) {
        if let Ok(mut m) = self.inner.group_roles.write() {
            *m = map
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect();
        }
    }

    fn roles_of_group(&self, group: &Value) -> Vec<String> {
        let name = Self::required_of(Kind::Group, group).to_lowercase();
        self.inner
            .group_roles
            .read()
            .ok()
            .and_then(|m| m.get(&name).cloned())
            .unwrap_or_default()
    }

    fn maps_groups(&self) -> bool {
        self.inner.group_roles.read().is_ok_and(|m| !m.is_empty())
    }

    /// The accounts whose group roles a change of group `id` (to `after`, `None` when deleted)
    /// touches, each with the roles its groups would then grant.
    async fn group_role_changes(
        &self,
        auth: &Authorized,
        id: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) -> Result<Vec<(String, Vec<String>)>, ScimFailure> {
        if !self.maps_groups() {
            return Ok(Vec::new());
        }
        let members = |g: Option<&Value>| -> Vec<String> {
            g.and_then(|g| engine::get_ci(g, "members"))
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(|x| x["value"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut touched = members(before);
        for m in members(after) {
            if !touched.contains(&m) {
                touched.push(m);
            }
        }
        // Only membership of a mapped group, before or after, changes anyone's roles.
        let mapped = |g: Option<&Value>| g.is_some_and(|g| !self.roles_of_group(g).is_empty());
        if touched.is_empty() || !(mapped(before) || mapped(after)) {
            return Ok(Vec::new());
        }
        let mut groups: Vec<Value> = self
            .visible(auth, Kind::Group)
            .await?
            .into_iter()
            .filter(|(_, d)| d.id != id)
            .map(|(g, _)| g.resource)
            .collect();
        if let Some(a) = after {
            groups.push(a.clone());
        }
        let users = self.visible(auth, Kind::User).await?;
        let mut out = Vec::new();
        for member in touched {
            let Some(account) = users
                .iter()
                .find(|(_, d)| d.id == member)
                .and_then(|(u, _)| u.account.clone())
            else {
                continue;
            };
            let mut roles: Vec<String> = Vec::new();
            for g in groups.iter().filter(|g| members(Some(g)).contains(&member)) {
                for r in self.roles_of_group(g) {
                    if !roles.contains(&r) {
                        roles.push(r);
                    }
                }
            }
            out.push((account, roles));
        }
        Ok(out)
    }

    /// Refuse a group change that would give someone roles separation of duties forbids,
    /// before anything is stored.
    async fn vet_group_roles(
        &self,
        auth: &Authorized,
        changes: &[(String, Vec<String>)],
    ) -> Result<(), ScimFailure> {
        for (account, roles) in changes {
            self.inner
                .identity
                .check_group_roles(auth, account, roles)
                .await
                .map_err(|e| ScimFailure::bad("invalidValue", format!("members: {e}")))?;
        }
        Ok(())
    }

    async fn apply_group_roles(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        group: &str,
        changes: Vec<(String, Vec<String>)>,
    ) -> Result<(), ScimFailure> {
        for (account, roles) in changes {
            self.inner
                .identity
                .set_roles(
                    auth,
                    ctx,
                    &account,
                    crate::identity::RoleSource::Groups,
                    &roles,
                    json!({"scim_group": group}),
                )
                .await?;
        }
        Ok(())
    }

    /// Set the public base URL (the server's URL; `/scim/v2` is appended).
    pub fn set_base(&self, server_url: &str) {
        if let Ok(mut b) = self.inner.base.write() {
            *b = format!("{}/scim/v2", server_url.trim_end_matches('/'));
        }
    }

    fn base(&self) -> String {
        self.inner
            .base
            .read()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    async fn audit(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        event: &str,
        object: String,
        detail: Value,
    ) -> Result<Receipt, ScimFailure> {
        let rec = AuditRecord::new(
            event,
            self.now(),
            &ctx.source_addr,
            "chengfang-scim",
            &auth.principal().id,
            object,
            event.rsplit('.').next().unwrap_or(event),
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(detail);
        Ok(self.inner.ledger.append(rec).await?)
    }

    /// One resource within the caller's reach (another organisation's is "not found").
    async fn load(
        &self,
        auth: &Authorized,
        kind: Kind,
        id: &str,
    ) -> Result<(Stored, Document), ScimFailure> {
        let missing = || ScimFailure::not_found(format!("{} {id} not found", kind.name()));
        let d = self
            .inner
            .store
            .doc_get(kind.doc_kind(), id)
            .await?
            .ok_or_else(missing)?;
        let s = parse(&d)?;
        if !Self::reaches(auth, &s) {
            return Err(missing());
        }
        Ok((s, d))
    }

    fn reaches(auth: &Authorized, s: &Stored) -> bool {
        auth.reaches_owner(s.org.as_deref())
    }

    /// Every resource of a kind within the caller's reach.
    async fn visible(
        &self,
        auth: &Authorized,
        kind: Kind,
    ) -> Result<Vec<(Stored, Document)>, ScimFailure> {
        let mut v = self.all(kind).await?;
        v.retain(|(s, _)| Self::reaches(auth, s));
        Ok(v)
    }

    async fn all(&self, kind: Kind) -> Result<Vec<(Stored, Document)>, ScimFailure> {
        let mut v = Vec::new();
        for d in self.inner.store.doc_list(kind.doc_kind()).await? {
            v.push((parse(&d)?, d));
        }
        Ok(v)
    }

    fn etag(version: u64) -> String {
        format!("W/\"{version}\"")
    }

    /// Validate a client's representation and normalise it: core schema listed, required
    /// attribute present, read-only attributes dropped.
    fn vet(&self, kind: Kind, body: &Value) -> Result<Value, ScimFailure> {
        let Some(o) = body.as_object() else {
            return Err(ScimFailure::bad(
                "invalidSyntax",
                "the body must be a JSON object",
            ));
        };
        let mut o = o.clone();
        for k in ["id", "meta"] {
            if let Some(key) = o.keys().find(|x| x.eq_ignore_ascii_case(k)).cloned() {
                o.remove(&key);
            }
        }
        let schemas: Vec<String> = o
            .get("schemas")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !schemas.iter().any(|s| s == kind.schema()) {
            return Err(ScimFailure::bad(
                "invalidValue",
                format!("schemas must include {}", kind.schema()),
            ));
        }
        // `schemas` lists the extension exactly when its attributes are there.
        let has_ext = o.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA));
        let mut schemas: Vec<Value> = schemas
            .into_iter()
            .filter(|s| s != ENTERPRISE_SCHEMA)
            .map(Value::String)
            .collect();
        if has_ext && kind == Kind::User {
            schemas.push(ENTERPRISE_SCHEMA.into());
        }
        o.insert("schemas".into(), Value::Array(schemas));
        let req = kind.required();
        match engine::get_ci(&Value::Object(o.clone()), req) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(ScimFailure::bad(
                    "invalidValue",
                    format!("{req} is required and must be a non-empty string"),
                ));
            }
        }
        if kind == Kind::User
            && let Some(a) = engine::get_ci(&Value::Object(o.clone()), "active")
            && !a.is_boolean()
        {
            return Err(ScimFailure::bad(
                "invalidValue",
                "active must be true or false",
            ));
        }
        Ok(Value::Object(o))
    }

    fn required_of(kind: Kind, r: &Value) -> String {
        engine::get_ci(r, kind.required())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    async fn unique(
        &self,
        auth: &Authorized,
        kind: Kind,
        value: &str,
        except: Option<&str>,
    ) -> Result<(), ScimFailure> {
        // userName is unique (case-insensitively) within an organisation; group names too, so
        // HR systems cannot create a second "Finance" by mistake. Other organisations' names
        // are not consulted: a conflict would reveal them.
        for (s, d) in self.visible(auth, kind).await? {
            if Some(d.id.as_str()) != except
                && Self::required_of(kind, &s.resource).eq_ignore_ascii_case(value)
            {
                return Err(ScimFailure::new(
                    409,
                    Some("uniqueness"),
                    format!("{} `{value}` exists already", kind.required()),
                ));
            }
        }
        Ok(())
    }

    fn finish(&self, kind: Kind, id: &str, mut r: Value, created: Value, version: u64) -> Value {
        let now = self.now().to_string();
        if let Some(o) = r.as_object_mut() {
            o.insert("id".into(), id.into());
            o.insert(
                "meta".into(),
                json!({
                    "resourceType": kind.name(), "created": created, "lastModified": now,
                    "location": format!("{}/{}/{id}", self.base(), kind.endpoint()),
                    "version": Self::etag(version),
                }),
            );
        }
        r
    }

    /// Bind a new SCIM user to a platform account (no roles; the initial password is never
    /// shown: the person sets one through the self-service reset).
    async fn provision(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        r: &Value,
    ) -> Result<String, ScimFailure> {
        let user_name = Self::required_of(Kind::User, r);
        let base = account_name(&user_name);
        let display = engine::get_ci(r, "displayName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                engine::values_at(r, "name.formatted")
                    .first()
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| user_name.clone());
        let org = engine::values_at(r, &format!("{ENTERPRISE_SCHEMA}:organization"))
            .first()
            .and_then(|v| v.as_str())
            .or_else(|| {
                engine::get_ci(r, ENTERPRISE_SCHEMA)
                    .and_then(|e| engine::get_ci(e, "organization"))
                    .and_then(Value::as_str)
            })
            .unwrap_or("provisioned")
            .to_string();
        // A tenant's HR connector provisions into its own organisation; the city's names the
        // organisation in the enterprise extension.
        let org = match auth.org() {
            Some(o) => o.to_string(),
            None => org_id(&org),
        };
        for n in 0..20 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let made = self
                .inner
                .identity
                .create_user(
                    auth,
                    ctx,
                    NewUser {
                        username: name.clone(),
                        display_name: display.chars().take(200).collect(),
                        domain: "government".into(),
                        org: org.clone(),
                        roles: Vec::new(),
                        valid_until: None,
                        department: None,
                        post: None,
                    },
                )
                .await;
            match made {
                Ok(_) => return Ok(name),
                Err(PlatformError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ScimFailure::new(
            409,
            Some("uniqueness"),
            format!("no free account name for `{user_name}`"),
        ))
    }

    async fn sync_active(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        account: Option<&str>,
        before: Option<bool>,
        after: Option<bool>,
    ) -> Result<(), ScimFailure> {
        let (Some(acct), Some(now)) = (account, after.or(before)) else {
            return Ok(());
        };
        if before.unwrap_or(true) != now {
            self.inner
                .identity
                .set_disabled(auth, ctx, acct, !now)
                .await?;
        }
        Ok(())
    }

    /// Create (POST).
    pub async fn create(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        kind: Kind,
        body: &Value,
    ) -> Result<(Value, Receipt), ScimFailure> {
        auth.require(Action::ManageUsers)?;
        let r = self.vet(kind, body)?;
        let key = Self::required_of(kind, &r);
        self.unique(auth, kind, &key, None).await?;
        let id = uuid_like(self.inner.rng.as_ref())?;
        let account = if kind == Kind::User {
            Some(self.provision(auth, ctx, &r).await?)
        } else {
            None
        };
        let active = engine::get_ci(&r, "active").and_then(Value::as_bool);
        if active == Some(false) {
            self.sync_active(auth, ctx, account.as_deref(), Some(true), Some(false))
                .await?;
        }
        let now = self.now().to_string();
        let resource = self.finish(kind, &id, r, now.into(), 1);
        let roles = match kind {
            Kind::Group => {
                self.group_role_changes(auth, &id, None, Some(&resource))
                    .await?
            }
            Kind::User => Vec::new(),
        };
        self.vet_group_roles(auth, &roles).await?;
        let rcpt = self
            .audit(
                auth,
                ctx,
                &format!("scim.{}.create", kind.name().to_lowercase()),
                format!("scim:{}/{id}", kind.endpoint()),
                json!({kind.required(): key, "account": account}),
            )
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: kind.doc_kind().into(),
                id: id.clone(),
                body: to_json(&Stored {
                    resource: resource.clone(),
                    version: 1,
                    account,
                    org: auth.org().map(str::to_string),
                })?,
                revision: 1,
                updated: self.now(),
            })
            .await?;
        self.apply_group_roles(auth, ctx, &id, roles).await?;
        Ok((resource, rcpt))
    }

    /// Read one.
    pub async fn get(&self, auth: &Authorized, kind: Kind, id: &str) -> Result<Value, ScimFailure> {
        auth.require(Action::ManageUsers)?;
        Ok(self.load(auth, kind, id).await?.0.resource)
    }

    /// List with filter, sorting and pagination (a ListResponse); `None` searches every
    /// resource type (`POST /.search` at the root).
    pub async fn list(
        &self,
        auth: &Authorized,
        kind: Option<Kind>,
        q: &Query,
    ) -> Result<Value, ScimFailure> {
        auth.require(Action::ManageUsers)?;
        let filter = q.filter.as_deref().map(engine::parse_filter).transpose()?;
        let kinds = match kind {
            Some(k) => vec![k],
            None => vec![Kind::User, Kind::Group],
        };
        let mut hits: Vec<Value> = Vec::new();
        for k in kinds {
            hits.extend(
                self.visible(auth, k)
                    .await?
                    .into_iter()
                    .map(|(s, _)| s.resource)
                    .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r))),
            );
        }
        match &q.sort_by {
            Some(by) => engine::sort(&mut hits, by, q.descending),
            None => engine::sort(&mut hits, "meta.created", false),
        }
        let total = hits.len();
        let start = q.start_index.unwrap_or(1).max(1);
        let count = q.count.unwrap_or(100).min(MAX_RESULTS);
        let page: Vec<Value> = hits
            .into_iter()
            .skip(start - 1)
            .take(count)
            .map(|r| engine::project(&r, &q.attributes, &q.excluded))
            .collect();
        Ok(json!({
            "schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
            "itemsPerPage": page.len(), "Resources": page,
        }))
    }

    fn check_etag(if_match: Option<&str>, version: u64) -> Result<(), ScimFailure> {
        match if_match.map(str::trim) {
            None | Some("*") => Ok(()),
            Some(tag) if tag == Self::etag(version) || tag == format!("\"{version}\"") => Ok(()),
            Some(tag) => Err(ScimFailure::new(
                412,
                None,
                format!(
                    "If-Match {tag} does not match the current version {}",
                    Self::etag(version)
                ),
            )),
        }
    }

    async fn save(&self, kind: Kind, d: Document, s: &Stored) -> Result<(), ScimFailure> {
        self.inner
            .store
            .doc_update(&Document {
                body: to_json(s)?,
                revision: d.revision + 1,
                updated: self.now(),
                ..d
            })
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::Conflict(_) => ScimFailure::new(
                    412,
                    None,
                    format!("the {} changed meanwhile; read it again", kind.name()),
                ),
                other => other.into(),
            })
    }

    /// Replace (PUT).
    pub async fn replace(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, Receipt), ScimFailure> {
        auth.require(Action::ManageUsers)?;
        let (old, d) = self.load(auth, kind, id).await?;
        Self::check_etag(if_match, old.version)?;
        let r = self.vet(kind, body)?;
        let key = Self::required_of(kind, &r);
        self.unique(auth, kind, &key, Some(id)).await?;
        self.commit(auth, ctx, kind, id, old, d, r, "replace").await
    }

    /// Modify (PATCH, RFC 7644 §3.5.2).
    pub async fn patch(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(Value, Receipt), ScimFailure> {
        auth.require(Action::ManageUsers)?;
        let (old, d) = self.load(auth, kind, id).await?;
        Self::check_etag(if_match, old.version)?;
        let schemas_ok = body["schemas"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s == "urn:ietf:params:scim:api:messages:2.0:PatchOp")
        });
        let ops = engine::get_ci(body, "Operations")
            .and_then(Value::as_array)
            .filter(|o| !o.is_empty());
        let (true, Some(ops)) = (schemas_ok, ops) else {
            return Err(ScimFailure::bad(
                "invalidSyntax",
                "a PatchOp message with a non-empty Operations list is required",
            ));
        };
        let mut r = old.resource.clone();
        for (i, op) in ops.iter().enumerate() {
            let name = engine::get_ci(op, "op")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ScimFailure::bad("invalidSyntax", format!("Operations[{i}] has no op"))
                })?;
            let path = engine::get_ci(op, "path").and_then(Value::as_str);
            let value = engine::get_ci(op, "value");
            engine::apply_patch(&mut r, name, path, value).map_err(|e| {
                ScimFailure::bad(e.scim_type, format!("Operations[{i}]: {}", e.detail))
            })?;
        }
        let mut body = r.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
            o.remove("meta");
        }
        let r = self.vet(kind, &body)?;
        let key = Self::required_of(kind, &r);
        self.unique(auth, kind, &key, Some(id)).await?;
        self.commit(auth, ctx, kind, id, old, d, r, "patch").await
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
        old: Stored,
        d: Document,
        r: Value,
        how: &str,
    ) -> Result<(Value, Receipt), ScimFailure> {
        let before = engine::get_ci(&old.resource, "active").and_then(Value::as_bool);
        let after = engine::get_ci(&r, "active").and_then(Value::as_bool);
        let created = old.resource["meta"]["created"].clone();
        let version = old.version + 1;
        let resource = self.finish(kind, id, r, created, version);
        let roles = match kind {
            Kind::Group => {
                self.group_role_changes(auth, id, Some(&old.resource), Some(&resource))
                    .await?
            }
            Kind::User => Vec::new(),
        };
        self.vet_group_roles(auth, &roles).await?;
        let rcpt = self
            .audit(
                auth,
                ctx,
                &format!("scim.{}.{how}", kind.name().to_lowercase()),
                format!("scim:{}/{id}", kind.endpoint()),
                json!({kind.required(): Self::required_of(kind, &resource), "active": after, "account": old.account}),
            )
            .await?;
        self.sync_active(auth, ctx, old.account.as_deref(), before, after)
            .await?;
        self.save(
            kind,
            d,
            &Stored {
                resource: resource.clone(),
                version,
                account: old.account,
                org: old.org,
            },
        )
        .await?;
        self.apply_group_roles(auth, ctx, id, roles).await?;
        Ok((resource, rcpt))
    }

    /// Delete: a user's account is disabled (a leaver) and the user leaves every group.
    pub async fn delete(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        kind: Kind,
        id: &str,
    ) -> Result<Receipt, ScimFailure> {
        auth.require(Action::ManageUsers)?;
        let (old, _) = self.load(auth, kind, id).await?;
        // A deleted group's members lose its roles; a deleted user's account loses every
        // group role with its memberships.
        let roles = match (kind, &old.account) {
            (Kind::Group, _) => {
                self.group_role_changes(auth, id, Some(&old.resource), None)
                    .await?
            }
            (Kind::User, Some(acct)) if self.maps_groups() => vec![(acct.clone(), Vec::new())],
            (Kind::User, _) => Vec::new(),
        };
        let rcpt = self
            .audit(
                auth,
                ctx,
                &format!("scim.{}.delete", kind.name().to_lowercase()),
                format!("scim:{}/{id}", kind.endpoint()),
                json!({kind.required(): Self::required_of(kind, &old.resource), "account": old.account}),
            )
            .await?;
        if let Some(acct) = &old.account {
            self.inner
                .identity
                .set_disabled(auth, ctx, acct, true)
                .await?;
        }
        self.inner.store.doc_delete(kind.doc_kind(), id).await?;
        if kind == Kind::User {
            for (mut g, gd) in self.all(Kind::Group).await? {
                let before = g.resource["members"].as_array().map_or(0, Vec::len);
                if let Some(m) = g.resource["members"].as_array_mut() {
                    m.retain(|x| x["value"] != id);
                }
                if g.resource["members"].as_array().map_or(0, Vec::len) != before {
                    g.version += 1;
                    g.resource["meta"]["version"] = Self::etag(g.version).into();
                    self.save(Kind::Group, gd, &g).await?;
                }
            }
        }
        self.apply_group_roles(auth, ctx, id, roles).await?;
        Ok(rcpt)
    }
}

fn uuid_like(rng: &dyn cf_crypto::Rng) -> Result<String, ScimFailure> {
    let mut b = [0u8; 16];
    rng.fill(&mut b)
        .map_err(|e| PlatformError::Internal(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_from_user_names() {
        assert_eq!(
            account_name("Barbara.Jensen@city.gov.cn"),
            "barbara.jensen.city.gov.cn"
        );
        assert_eq!(account_name("王芳"), "u.x");
        assert_eq!(account_name("_x"), "u.xx");
    }

    #[test]
    fn organisation_ids_from_hr_names() {
        assert_eq!(org_id("Water Authority"), "water-authority");
        assert_eq!(org_id("市水务局"), "provisioned");
        assert_eq!(org_id("-Tax.Bureau-"), "tax.bureau");
        assert!(crate::orgs::check_org_id(&org_id(&"x".repeat(300))).is_ok());
    }
}
