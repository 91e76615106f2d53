//! User accounts and login (IDM-1, IDM-5, PWD-1…PWD-4, AUZ-3): accounts in identity domains and
//! organisations with roles checked for separation of duties, one-time initial passwords that must
//! be changed, Argon2id verification behind the lockout throttle, TOTP second factor with recovery
//! codes, and sessions with idle/absolute timeouts that people and administrators can end.
//! Every change and every login outcome is audited; passwords, codes and secrets never are.

use std::sync::Arc;

use cf_core::{Secret, SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_identity::otp::{RecoveryCodes, Totp};
use cf_identity::password::{self, Costs, Policy};
use cf_identity::session::{self, SessionInfo, SessionPolicy};
use cf_identity::throttle::{Refusal, ThrottlePolicy};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized, Principal, Role};
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

mod passkeys;
mod roles;
pub use passkeys::{PasskeyInfo, WebauthnResponse};
pub use roles::RoleSource;

/// The identity domains of the whitepaper (IDM-1).
pub const DOMAINS: [&str; 7] = [
    "government",
    "enterprise",
    "partner",
    "supplier",
    "contractor",
    "public",
    "legal_person",
];

/// What an administrator supplies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name, `[a-z0-9._-]{2,64}`, unique and immutable.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// One of [`DOMAINS`].
    pub domain: String,
    /// Organisation.
    pub org: String,
    /// Roles (separation of duties applies).
    pub roles: Vec<String>,
    /// Account valid until (RFC 3339), for contractors and partners.
    #[serde(default)]
    pub valid_until: Option<Timestamp>,
    /// Department within the organisation (one of its registered departments, when it has any).
    #[serde(default)]
    pub department: Option<String>,
    /// Post (job position), e.g. `duty officer`.
    #[serde(default)]
    pub post: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TotpState {
    /// AES-256-GCM nonce ‖ ciphertext of the secret, hex, under the platform's internal TOTP key.
    sealed: String,
    confirmed: bool,
    last_step: Option<u64>,
}

/// A stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserDoc {
    username: String,
    display_name: String,
    domain: String,
    org: String,
    roles: Vec<String>,
    valid_until: Option<Timestamp>,
    password: String,
    history: Vec<String>,
    password_set: Timestamp,
    must_change: bool,
    disabled: bool,
    totp: Option<TotpState>,
    recovery: Option<RecoveryCodes>,
    created: Timestamp,
    #[serde(default)]
    reset: Option<ResetState>,
    /// What the risk engine remembers of the account's sign-ins.
    #[serde(default)]
    risk: cf_identity::risk::Profile,
    /// Real-name verification (IDM-4).
    #[serde(default)]
    real_name: Option<RealName>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    post: Option<String>,
    /// WebAuthn credentials (passkeys).
    #[serde(default)]
    passkeys: Vec<passkeys::StoredPasskey>,
    /// Roles granted through SCIM groups (kept apart from `roles`, which administrators set).
    #[serde(default)]
    group_roles: Vec<String>,
}

/// How far the person behind an account has been identified (IDM-4): 1 — name and resident ID
/// number checked against the population registry; 2 — plus a mobile number registered to the
/// same person; 3 — plus face comparison or an in-person check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RealName {
    /// 0–3.
    pub level: u8,
    /// How it was verified (e.g. `ctid`, `bank-card`, `counter`).
    pub method: String,
    /// When.
    pub verified: Timestamp,
}

/// A pending self-service reset: the code's hash, its expiry and the attempts left.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResetState {
    code_sha256: String,
    expires: Timestamp,
    attempts_left: u8,
}

/// An account as shown to administrators (no secrets).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Identity domain.
    pub domain: String,
    /// Organisation.
    pub org: String,
    /// Roles held: the account's own and those its SCIM groups grant.
    pub roles: Vec<String>,
    /// Of `roles`, those granted through SCIM groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_roles: Vec<String>,
    /// Of `roles`, those granted to the account itself (what the console edits).
    #[serde(skip)]
    pub own_roles: Vec<String>,
    /// Validity end.
    pub valid_until: Option<Timestamp>,
    /// Must change the password at next login.
    pub must_change: bool,
    /// Second factor enrolled.
    pub mfa: bool,
    /// Disabled.
    pub disabled: bool,
    /// Real-name verification level (0: none).
    pub real_name_level: u8,
    /// Department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Post.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
}

impl UserDoc {
    /// A confirmed authenticator app or a passkey: what high-risk applications require.
    fn has_second_factor(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed) || !self.passkeys.is_empty()
    }

    fn info(&self) -> UserInfo {
        UserInfo {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            domain: self.domain.clone(),
            org: self.org.clone(),
            roles: self.effective_roles(),
            group_roles: self.group_roles.clone(),
            own_roles: self.roles.clone(),
            valid_until: self.valid_until,
            must_change: self.must_change,
            mfa: self.has_second_factor(),
            disabled: self.disabled,
            real_name_level: self.real_name.as_ref().map_or(0, |r| r.level),
            department: self.department.clone(),
            post: self.post.clone(),
        }
    }
}

/// Install a new password hash: history kept to the domain policy's depth, must-change cleared.
fn set_password(u: &mut UserDoc, phc: String, now: Timestamp) {
    let depth = Policy::for_domain(&u.domain).history.max(1);
    u.history.insert(0, phc.clone());
    u.history.truncate(depth);
    u.password = phc;
    u.password_set = now;
    u.must_change = false;
}

/// A session as stored: shared by every node and kept across restarts; ending one deletes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    info: SessionInfo,
}

/// An account as single sign-on sees it: what goes into ID tokens and userinfo.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// Login name (the immutable `sub`).
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Identity domain.
    pub domain: String,
    /// Organisation.
    pub org: String,
    /// Roles.
    pub roles: Vec<String>,
    /// A second factor is enrolled.
    pub mfa_enrolled: bool,
    /// The initial or reset password has not been changed yet.
    pub must_change: bool,
    /// Real-name verification level (0: none).
    pub real_name_level: u8,
}

/// The result of a successful login.
#[derive(Debug, Clone, Serialize)]
pub struct LoginOk {
    /// Bearer secret of the session (shown once).
    pub session: String,
    /// The session.
    pub info: SessionInfo,
    /// The password must be changed before anything else.
    pub must_change: bool,
    /// Sessions the concurrency cap ended.
    pub ended: Vec<String>,
}

/// The service.
#[derive(Clone)]
pub struct IdentityService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityService")
    }
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn cf_crypto::Rng>,
    costs: Costs,
    throttle: crate::throttle::StoreThrottle,
    session_policy: SessionPolicy,
    totp_key: Secret<[u8; 32]>,
    // A hash verified for unknown usernames, so timing does not reveal which accounts exist.
    decoy: String,
    sender: Option<Arc<dyn crate::ports::CodeSender>>,
    // Where logins and account changes go as OCSF events for the detectors (bullet 9).
    events: std::sync::OnceLock<crate::logs::LogIntake>,
    // Recently checked accounts: single sign-on checks the account on every token use, and a
    // leaver must be locked out within a second, so entries live SUBJECT_TTL; changes made on
    // this node drop them at once.
    subjects:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<Subject>)>>,
    generation: std::sync::atomic::AtomicU64,
    geo: std::sync::OnceLock<Arc<dyn crate::ports::GeoLookup>>,
    risk_policy: std::sync::OnceLock<cf_identity::risk::RiskPolicy>,
    orgs: crate::orgs::OrgDirectory,
    webauthn: std::sync::OnceLock<cf_identity::webauthn::RelyingParty>,
}

/// How long a checked account is trusted without reading it again.
const SUBJECT_TTL: std::time::Duration = std::time::Duration::from_millis(500);

fn parse_user(d: &Document) -> Result<UserDoc, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("user `{}`: {e}", d.id)))
}

fn json<T: Serialize>(v: &T) -> Result<String, PlatformError> {
    serde_json::to_string(v).map_err(|e| PlatformError::Internal(e.to_string()))
}

fn secs(t: Timestamp) -> i64 {
    t.unix_nanos() / 1_000_000_000
}

fn check_username(u: &str) -> Result<(), PlatformError> {
    if (2..=64).contains(&u.len())
        && u.as_bytes()[0].is_ascii_alphanumeric()
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(PlatformError::InvalidInput(
            "username: 2-64 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"
                .into(),
        ))
    }
}

impl IdentityService {
    /// The service. `totp_key` seals second-factor secrets at rest (from the KMS).
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn cf_crypto::Rng>,
        costs: Costs,
        totp_key: [u8; 32],
        sender: Option<Arc<dyn crate::ports::CodeSender>>,
    ) -> Result<Self, PlatformError> {
        let decoy = password::hash("decoy password", costs, rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let throttle =
            crate::throttle::StoreThrottle::new(store.clone(), ThrottlePolicy::default());
        let orgs = crate::orgs::OrgDirectory::new(store.clone(), ledger.clone(), clock.clone());
        Ok(IdentityService {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                rng,
                costs,
                throttle,
                session_policy: SessionPolicy::default(),
                totp_key: Secret::new(totp_key),
                decoy,
                sender,
                events: std::sync::OnceLock::new(),
                subjects: std::sync::Mutex::default(),
                generation: std::sync::atomic::AtomicU64::new(0),
                geo: std::sync::OnceLock::new(),
                risk_policy: std::sync::OnceLock::new(),
                orgs,
                webauthn: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The relying party passkeys are registered to (set once at start from the server's URL;
    /// without one, passkeys are unavailable).
    pub fn set_webauthn(&self, rp: cf_identity::webauthn::RelyingParty) {
        let _ = self.inner.webauthn.set(rp);
    }

    /// The organisation directory (IDM-1).
    pub fn orgs(&self) -> &crate::orgs::OrgDirectory {
        &self.inner.orgs
    }

    /// Organisations known from accounts (registered or not), for the directory's listings.
    pub async fn known_orgs(&self) -> Result<Vec<String>, PlatformError> {
        let mut v: Vec<String> = self
            .accounts()
            .await?
            .into_iter()
            .map(|(_, org, _, _)| org)
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// The account `username` if the caller may administer it: an organisation's
    /// administrators see only their own organisation's accounts, and others' are "not found"
    /// so that their existence does not leak.
    async fn administered(
        &self,
        auth: &Authorized,
        username: &str,
    ) -> Result<(UserDoc, Document), PlatformError> {
        match self.user(username).await? {
            Some((u, d)) if auth.reaches(&u.org) => Ok((u, d)),
            _ => Err(PlatformError::NotFound(format!("no user `{username}`"))),
        }
    }

    /// Locate sign-in addresses with `geo` for the risk engine (set once at start).
    pub fn set_geo(&self, geo: Arc<dyn crate::ports::GeoLookup>) {
        let _ = self.inner.geo.set(geo);
    }

    /// The risk policy (set once at start; the default otherwise).
    pub fn set_risk_policy(&self, p: cf_identity::risk::RiskPolicy) {
        let _ = self.inner.risk_policy.set(p);
    }

    fn risk_policy(&self) -> cf_identity::risk::RiskPolicy {
        self.inner.risk_policy.get().copied().unwrap_or_default()
    }

    /// Send logins and account changes to the detectors through `logs` (set once at start).
    pub fn set_events(&self, logs: crate::logs::LogIntake) {
        let _ = self.inner.events.set(logs);
    }

    /// Publish an OCSF event for the detectors; the audit record is the event of record, so a bus
    /// failure is logged, not returned.
    async fn emit(&self, ocsf: serde_json::Value) {
        if let Some(l) = self.inner.events.get()
            && let Err(e) = l.platform_event(ocsf).await
        {
            tracing::warn!(error = %e, "identity event not published to the bus");
        }
    }

    /// OCSF Authentication (3002): logon (1) or logoff (2).
    async fn emit_auth(
        &self,
        ctx: &RequestContext,
        username: &str,
        activity: u8,
        ok: bool,
        detail: &str,
        mfa: bool,
    ) {
        let now = self.inner.clock.now();
        self.emit(serde_json::json!({
            "class_uid": 3002, "class_name": "Authentication", "category_uid": 3,
            "activity_id": activity, "activity_name": if activity == 1 { "Logon" } else { "Logoff" },
            "type_uid": 300200 + u32::from(activity), "time": now.unix_millis(),
            "status_id": if ok { 1 } else { 2 }, "status": if ok { "Success" } else { "Failure" },
            "status_detail": detail, "severity_id": 1, "is_mfa": mfa,
            "user": {"name": username}, "src_endpoint": {"ip": ctx.source_addr},
            "auth_protocol": "Password", "service": {"name": "chengfang-identity"},
            "metadata": {"version": "1.1.0", "product": {"name": "Chengfang", "vendor_name": "Chengfang"}, "uid": ctx.request_id},
        }))
        .await;
    }

    /// OCSF Account Change (3001): create 1, enable 2, password change 3, password reset 4,
    /// disable 5, MFA enable 10.
    async fn emit_account(&self, ctx: &RequestContext, actor: &str, username: &str, activity: u8) {
        let name = match activity {
            1 => "Create",
            2 => "Enable",
            3 => "Password Change",
            4 => "Password Reset",
            5 => "Disable",
            10 => "MFA Factor Enable",
            11 => "MFA Factor Disable",
            _ => "Other",
        };
        let now = self.inner.clock.now();
        self.emit(serde_json::json!({
            "class_uid": 3001, "class_name": "Account Change", "category_uid": 3,
            "activity_id": activity, "activity_name": name, "type_uid": 300100 + u32::from(activity),
            "time": now.unix_millis(), "status_id": 1, "severity_id": 1,
            "user": {"name": username}, "actor": {"user": {"name": actor}},
            "src_endpoint": {"ip": ctx.source_addr},
            "metadata": {"version": "1.1.0", "product": {"name": "Chengfang", "vendor_name": "Chengfang"}, "uid": ctx.request_id},
        }))
        .await;
        self.forget(username);
    }

    fn forget(&self, username: &str) {
        if let Ok(mut m) = self.inner.subjects.lock() {
            m.remove(username);
        }
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bumped by every account change on this node, so caches built on [`Self::subject`] can
    /// tell that what they hold may be stale.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn record(
        &self,
        ctx: &RequestContext,
        subject: &str,
        event: &str,
        object: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> AuditRecord {
        AuditRecord::new(
            event,
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-identity",
            subject,
            object.to_string(),
            event.rsplit('.').next().unwrap_or(event),
            outcome,
            &ctx.request_id,
        )
        .with_detail(detail)
    }

    /// [`Self::audit`] for administrators' changes to someone else's account (AUD-5: kept apart).
    async fn audit_privileged(
        &self,
        ctx: &RequestContext,
        subject: &str,
        event: &str,
        object: &str,
        detail: serde_json::Value,
    ) -> Result<Receipt, PlatformError> {
        self.inner
            .ledger
            .append(
                self.record(ctx, subject, event, object, Outcome::Success, detail)
                    .privileged(),
            )
            .await
    }

    async fn audit(
        &self,
        ctx: &RequestContext,
        subject: &str,
        event: &str,
        object: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<Receipt, PlatformError> {
        self.inner
            .ledger
            .append(self.record(ctx, subject, event, object, outcome, detail))
            .await
    }

    async fn user(&self, username: &str) -> Result<Option<(UserDoc, Document)>, PlatformError> {
        match self.inner.store.doc_get("user", username).await? {
            Some(d) => Ok(Some((parse_user(&d)?, d))),
            None => Ok(None),
        }
    }

    async fn save(&self, u: &UserDoc, prev: &Document) -> Result<(), PlatformError> {
        self.inner
            .store
            .doc_update(&Document {
                body: json(u)?,
                revision: prev.revision + 1,
                updated: self.inner.clock.now(),
                ..prev.clone()
            })
            .await?;
        Ok(())
    }

    fn initial_password(&self) -> Result<Secret<String>, PlatformError> {
        // 18 random characters from four classes: passes every domain's policy.
        let t = cf_crypto::random_token(self.inner.rng.as_ref(), 15)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        Ok(Secret::new(format!("{t}#7a")))
    }

    /// Create an account; returns its one-time initial password (shown once, must be changed).
    pub async fn create_user(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        n: NewUser,
    ) -> Result<(UserInfo, Secret<String>, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        check_username(&n.username)?;
        if !DOMAINS.contains(&n.domain.as_str()) {
            return Err(PlatformError::InvalidInput(format!(
                "domain `{}`: use one of {}",
                n.domain,
                DOMAINS.join(", ")
            )));
        }
        roles::check_duties(&roles::vet_roles(&n.roles, "roles")?, &[])?;
        crate::orgs::check_org_id(&n.org)?;
        if !auth.reaches(&n.org) {
            return Err(PlatformError::Forbidden(format!(
                "org: accounts are created in the caller's own organisation `{}`",
                auth.org().unwrap_or_default()
            )));
        }
        if auth.org().is_some()
            && self.inner.orgs.scope(&n.org).await? != crate::orgs::OrgScope::Tenant
        {
            return Err(PlatformError::Forbidden(
                "org: a city-wide organisation's accounts are created by the city".into(),
            ));
        }
        self.check_placement(&n.org, n.department.as_deref(), n.post.as_deref())
            .await?;
        if self.user(&n.username).await?.is_some() {
            return Err(PlatformError::Conflict(format!(
                "user `{}` exists",
                n.username
            )));
        }
        let initial = self.initial_password()?;
        let now = self.inner.clock.now();
        let phc = password::hash(initial.expose(), self.inner.costs, self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let u = UserDoc {
            username: n.username.clone(),
            display_name: n.display_name,
            domain: n.domain,
            org: n.org,
            roles: n.roles,
            valid_until: n.valid_until,
            password: phc.clone(),
            history: vec![phc],
            password_set: now,
            must_change: true,
            disabled: false,
            totp: None,
            recovery: None,
            created: now,
            reset: None,
            risk: cf_identity::risk::Profile::default(),
            real_name: None,
            department: n.department,
            post: n.post,
            passkeys: Vec::new(),
            group_roles: Vec::new(),
        };
        let r = self
            .audit_privileged(
                ctx,
                &auth.principal().id,
                "identity.user.create",
                &format!("user:{}", u.username),
                serde_json::json!({"domain": u.domain, "org": u.org, "department": u.department, "post": u.post, "roles": u.roles, "valid_until": u.valid_until}),
            )
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "user".into(),
                id: u.username.clone(),
                body: json(&u)?,
                revision: 1,
                updated: now,
            })
            .await?;
        self.emit_account(ctx, &auth.principal().id, &u.username, 1)
            .await;
        Ok((u.info(), initial, r))
    }

    /// Every account as (username, organisation, roles, disabled), for reports inside the
    /// platform (the caller checks its own right).
    pub async fn accounts(
        &self,
    ) -> Result<Vec<(String, String, Vec<String>, bool)>, PlatformError> {
        let mut v = Vec::new();
        for d in self.inner.store.doc_list("user").await? {
            let u = parse_user(&d)?;
            v.push((
                u.username.clone(),
                u.org.clone(),
                u.effective_roles(),
                u.disabled,
            ));
        }
        Ok(v)
    }

    /// Every account within the caller's reach (administrators; an organisation's own see
    /// only theirs).
    pub async fn users(&self, auth: &Authorized) -> Result<Vec<UserInfo>, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let mut v = Vec::new();
        for d in self.inner.store.doc_list("user").await? {
            let u = parse_user(&d)?;
            if auth.reaches(&u.org) {
                v.push(u.info());
            }
        }
        Ok(v)
    }

    /// A department must be one of a registered organisation's departments when it lists any;
    /// posts are free text.
    async fn check_placement(
        &self,
        org: &str,
        department: Option<&str>,
        post: Option<&str>,
    ) -> Result<(), PlatformError> {
        for (what, v) in [("department", department), ("post", post)] {
            if let Some(v) = v
                && (v.trim().is_empty()
                    || v.chars().count() > 100
                    || v.chars().any(char::is_control))
            {
                return Err(PlatformError::InvalidInput(format!(
                    "{what}: 1-100 characters, no control characters"
                )));
            }
        }
        if let Some(d) = department
            && let Some((o, _)) = self.inner.orgs.get_registered(org).await?
            && !o.departments.is_empty()
            && !o.departments.iter().any(|x| x == d)
        {
            return Err(PlatformError::InvalidInput(format!(
                "department `{d}`: not a department of `{org}` (it has {})",
                o.departments.join(", ")
            )));
        }
        Ok(())
    }

    /// Charge a sign-in attempt to the throttle (PWD-3), or refuse it with the reason audited.
    async fn charge(
        &self,
        ctx: &RequestContext,
        username: &str,
        now: Timestamp,
    ) -> Result<crate::throttle::StoreAttempt, PlatformError> {
        match self
            .inner
            .throttle
            .begin(username, &ctx.source_addr, secs(now), now)
            .await?
        {
            Ok(a) => Ok(a),
            Err(r) => {
                let msg = match r {
                    Refusal::Wait { retry_after } => {
                        format!("too many failed logins; retry in {retry_after} s")
                    }
                    Refusal::Pair { until }
                    | Refusal::Account { until }
                    | Refusal::Source { until } => {
                        format!(
                            "too many failed logins; locked for {} s",
                            (until - secs(now)).max(1)
                        )
                    }
                };
                self.audit_login(
                    ctx,
                    username,
                    Outcome::Denied,
                    serde_json::json!({"reason": "throttled", "refusal": r}),
                )
                .await?;
                Err(PlatformError::RateLimited(msg))
            }
        }
    }

    /// Score a sign-in against the account's own history (AUZ-2, AUZ-5).
    async fn assess(
        &self,
        ctx: &RequestContext,
        u: &UserDoc,
        device: &str,
        now: Timestamp,
    ) -> Result<
        (
            cf_identity::risk::Observation,
            cf_identity::risk::Assessment,
            cf_identity::risk::RiskPolicy,
        ),
        PlatformError,
    > {
        let policy = self.risk_policy();
        let located = self
            .inner
            .geo
            .get()
            .and_then(|g| g.locate(&ctx.source_addr));
        let obs = cf_identity::risk::Observation {
            time_s: secs(now),
            network: cf_identity::risk::network_of(&ctx.source_addr),
            device: cf_identity::risk::device_of(device),
            country: located.as_ref().and_then(|g| g.country.clone()),
            coords: located.as_ref().and_then(|g| g.coords),
        };
        // The throttle already counts this attempt as a failure until it succeeds.
        let failures = self
            .inner
            .throttle
            .account_failures(&u.username, secs(now))
            .await?
            .saturating_sub(1);
        let risk = cf_identity::risk::assess(&u.risk, &obs, failures, &policy);
        Ok((obs, risk, policy))
    }

    /// Log in with a password and, when enrolled, a TOTP code or a recovery code.
    pub async fn login(
        &self,
        ctx: &RequestContext,
        username: &str,
        pass: &str,
        otp: Option<&str>,
        device: &str,
    ) -> Result<LoginOk, PlatformError> {
        let now = self.inner.clock.now();
        let fail = || {
            PlatformError::Unauthenticated("username, password or second factor is wrong".into())
        };
        let attempt = self.charge(ctx, username, now).await?;
        let found = self.user(username).await?;
        let phc = found
            .as_ref()
            .map_or(self.inner.decoy.as_str(), |(u, _)| u.password.as_str());
        let ok = password::verify(pass, phc).unwrap_or(false) && found.is_some();
        let Some((mut u, doc)) = found.filter(|_| ok) else {
            self.audit_login(
                ctx,
                username,
                Outcome::Denied,
                serde_json::json!({"reason": "bad credentials"}),
            )
            .await?;
            return Err(fail());
        };
        if u.disabled || u.valid_until.is_some_and(|v| v <= now) {
            self.audit_login(
                ctx,
                username,
                Outcome::Denied,
                serde_json::json!({"reason": "account disabled or expired"}),
            )
            .await?;
            return Err(fail());
        }
        // Risk (AUZ-2, AUZ-5): the sign-in against the account's own history.
        let (obs, risk, policy) = self.assess(ctx, &u, device, now).await?;
        let enrolled = u.totp.as_ref().is_some_and(|t| t.confirmed);
        let refuse = match risk.decision {
            cf_identity::risk::Decision::Deny => Some("risk: denied"),
            cf_identity::risk::Decision::StepUp if !enrolled => {
                Some("risk: a second factor is needed and none is enrolled")
            }
            _ => None,
        };
        if let Some(why) = refuse {
            self.audit_login(
                ctx,
                username,
                Outcome::Denied,
                serde_json::json!({"reason": why, "risk": risk}),
            )
            .await?;
            return Err(PlatformError::Unauthenticated(
                "sign-in refused: it does not match how this account usually signs in (device, place or time); use a second factor or contact the service desk".into(),
            ));
        }
        let mut mfa = false;
        if let Some(t) = u.totp.clone().filter(|t| t.confirmed) {
            let Some(code) = otp else {
                self.audit_login(
                    ctx,
                    username,
                    Outcome::Denied,
                    serde_json::json!({"reason": "second factor missing"}),
                )
                .await?;
                return Err(PlatformError::Unauthenticated(
                    "a second factor (otp) is required".into(),
                ));
            };
            let totp = self.open_totp(&t.sealed, &u.username)?;
            match totp.verify(code, secs(now), t.last_step) {
                Ok(step) => {
                    u.totp = Some(TotpState {
                        last_step: Some(step),
                        ..t
                    });
                }
                Err(_) => {
                    // A recovery code works once in place of the TOTP code.
                    let used = u.recovery.as_mut().is_some_and(|r| r.redeem(code).is_ok());
                    if !used {
                        self.audit_login(
                            ctx,
                            username,
                            Outcome::Denied,
                            serde_json::json!({"reason": "second factor wrong or replayed"}),
                        )
                        .await?;
                        return Err(fail());
                    }
                }
            }
            mfa = true;
        }
        u.risk.record(obs.clone(), &policy);
        let mut saved = self.save(&u, &doc).await;
        // A concurrent sign-in of the same account changed the record: the risk profile is merged
        // into the fresh one. With a second factor used, the conflict is returned instead, as the
        // other sign-in may have used the same code.
        let mut tries = 0;
        while matches!(saved, Err(PlatformError::Conflict(_))) && !mfa && tries < 3 {
            tries += 1;
            let Some((mut fresh, fdoc)) = self.user(username).await? else {
                return Err(fail());
            };
            fresh.risk.record(obs.clone(), &policy);
            saved = self.save(&fresh, &fdoc).await;
        }
        saved?;
        self.inner.throttle.succeeded(attempt, now).await?;
        let (session, info, ended) = self
            .start_session(
                &u.username,
                device,
                &ctx.source_addr,
                if mfa {
                    &["pwd", "otp", "mfa"]
                } else {
                    &["pwd"]
                },
            )
            .await?;
        self.audit_login(
            ctx,
            username,
            Outcome::Success,
            serde_json::json!({"session": info.handle, "mfa": mfa, "ended": ended, "risk": risk}),
        )
        .await?;
        Ok(LoginOk {
            session,
            info,
            must_change: u.must_change,
            ended,
        })
    }

    async fn audit_login(
        &self,
        ctx: &RequestContext,
        username: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<(), PlatformError> {
        let reason = detail["reason"].as_str().unwrap_or("").to_string();
        let mfa = detail["mfa"].as_bool().unwrap_or(false);
        // Throttled attempts go to the detectors as failures too: refused before the password was
        // checked, they are still somebody guessing.
        self.emit_auth(ctx, username, 1, outcome == Outcome::Success, &reason, mfa)
            .await;
        self.audit(
            ctx,
            &format!("user:{username}"),
            "auth.login",
            "session",
            outcome,
            detail,
        )
        .await?;
        Ok(())
    }

    /// The principal behind a session secret (`cfs_…`), marking the session used. With the
    /// request's source address, the request is scored against the account's profile (AUZ-2,
    /// AUZ-5): a session used from somewhere its account does not sign in from loses the
    /// sensitive actions unless it was opened with a second factor, and impossible travel loses
    /// everything but the person's own account.
    pub async fn authenticate(
        &self,
        secret: &str,
        source: Option<&str>,
    ) -> Result<Principal, PlatformError> {
        let s = self.touch_session(secret).await?;
        let (u, _) = self
            .user(&s.account)
            .await?
            .ok_or_else(|| PlatformError::Unauthenticated("account no longer exists".into()))?;
        if u.disabled {
            return Err(PlatformError::Unauthenticated("account disabled".into()));
        }
        let assurance = match source {
            Some(addr) if addr != s.address => self.request_assurance(&u, &s, addr),
            _ => crate::authz::Assurance::Normal,
        };
        Ok(Principal {
            id: format!("user:{}", u.username),
            roles: u
                .effective_roles()
                .iter()
                .filter_map(|r| Role::parse(r))
                .collect(),
            must_change: u.must_change,
            org: self.inner.orgs.confine(&u.org).await?,
            assurance,
        })
    }

    /// The risk engine on one request of a session that moved away from the address it was
    /// opened from (the profile is not updated: only sign-ins teach it).
    fn request_assurance(
        &self,
        u: &UserDoc,
        s: &SessionInfo,
        addr: &str,
    ) -> crate::authz::Assurance {
        use crate::authz::Assurance;
        let located = self.inner.geo.get().and_then(|g| g.locate(addr));
        let obs = cf_identity::risk::Observation {
            time_s: secs(self.inner.clock.now()),
            network: cf_identity::risk::network_of(addr),
            device: cf_identity::risk::device_of(&s.device),
            country: located.as_ref().and_then(|g| g.country.clone()),
            coords: located.as_ref().and_then(|g| g.coords),
        };
        match cf_identity::risk::assess(&u.risk, &obs, 0, &self.risk_policy()).decision {
            cf_identity::risk::Decision::Deny => Assurance::Denied,
            cf_identity::risk::Decision::StepUp if !s.mfa => Assurance::StepUp,
            _ => Assurance::Normal,
        }
    }

    fn username_of(auth: &Authorized) -> Result<String, PlatformError> {
        auth.principal()
            .id
            .strip_prefix("user:")
            .map(str::to_string)
            .ok_or_else(|| PlatformError::Forbidden("only a logged-in user has an account".into()))
    }

    /// The new password checked against the account's domain policy (history and the user's own
    /// attributes included), then hashed; every violation is reported.
    fn vetted_hash(&self, u: &UserDoc, new: &str) -> Result<String, PlatformError> {
        let policy = Policy::for_domain(&u.domain);
        let attrs = [u.username.as_str(), u.display_name.as_str(), u.org.as_str()];
        let v = password::check(&policy, new, &attrs, &u.history);
        if !v.is_empty() {
            return Err(PlatformError::InvalidInput(format!(
                "new password refused: {}",
                serde_json::to_string(&v).unwrap_or_default()
            )));
        }
        password::hash(new, self.inner.costs, self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))
    }

    /// Change one's own password (the policy of the account's domain, history included).
    pub async fn change_password(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        old: &str,
        new: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let (mut u, doc) = self
            .user(&name)
            .await?
            .ok_or_else(|| PlatformError::NotFound("no such account".into()))?;
        if !password::verify(old, &u.password).unwrap_or(false) {
            return Err(PlatformError::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        let phc = self.vetted_hash(&u, new)?;
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.password.change",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({}),
            )
            .await?;
        set_password(&mut u, phc, self.inner.clock.now());
        self.save(&u, &doc).await?;
        self.emit_account(ctx, &auth.principal().id, &name, 3).await;
        Ok(r)
    }

    fn seal_totp(&self, secret: &[u8], username: &str) -> Result<String, PlatformError> {
        let mut nonce = [0u8; 12];
        self.inner
            .rng
            .fill(&mut nonce)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let ct = cf_kms::aead::seal(
            cf_kms::aead::Algorithm::Aes256Gcm,
            self.inner.totp_key.expose(),
            &nonce,
            username.as_bytes(),
            secret,
        )?;
        Ok(format!("{}{}", hex::encode(nonce), hex::encode(ct)))
    }

    fn open_totp(&self, sealed: &str, username: &str) -> Result<Totp, PlatformError> {
        let raw = hex::decode(sealed)
            .map_err(|_| PlatformError::Internal("sealed TOTP secret is not hex".into()))?;
        if raw.len() < 12 {
            return Err(PlatformError::Internal(
                "sealed TOTP secret too short".into(),
            ));
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&raw[..12]);
        let pt = cf_kms::aead::open(
            cf_kms::aead::Algorithm::Aes256Gcm,
            self.inner.totp_key.expose(),
            &nonce,
            username.as_bytes(),
            &raw[12..],
        )?;
        Totp::new(pt.to_vec(), 6, 30, cf_identity::otp::Algorithm::Sha1)
            .map_err(|e| PlatformError::Internal(e.to_string()))
    }

    /// Start TOTP enrolment: returns the `otpauth://` URI for an authenticator app. It takes
    /// effect when confirmed with a code from the app.
    pub async fn totp_begin(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        issuer: &str,
    ) -> Result<Secret<String>, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let (mut u, doc) = self
            .user(&name)
            .await?
            .ok_or_else(|| PlatformError::NotFound("no such account".into()))?;
        if u.totp.as_ref().is_some_and(|t| t.confirmed) {
            return Err(PlatformError::Conflict(
                "a second factor is already enrolled".into(),
            ));
        }
        let t = Totp::generate(self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        u.totp = Some(TotpState {
            sealed: self.seal_totp(t.secret().expose(), &name)?,
            confirmed: false,
            last_step: None,
        });
        self.audit(
            ctx,
            &auth.principal().id,
            "identity.mfa.begin",
            &format!("user:{name}"),
            Outcome::Success,
            serde_json::json!({"method": "totp"}),
        )
        .await?;
        self.save(&u, &doc).await?;
        Ok(t.uri(issuer, &name))
    }

    /// Confirm TOTP enrolment with a current code; returns ten recovery codes (shown once).
    pub async fn totp_confirm(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        code: &str,
    ) -> Result<(Vec<Secret<String>>, Receipt), PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let (mut u, doc) = self
            .user(&name)
            .await?
            .ok_or_else(|| PlatformError::NotFound("no such account".into()))?;
        let Some(t) = u.totp.clone().filter(|t| !t.confirmed) else {
            return Err(PlatformError::Conflict("no enrolment to confirm".into()));
        };
        let totp = self.open_totp(&t.sealed, &name)?;
        let step = totp
            .verify(code, secs(self.inner.clock.now()), None)
            .map_err(|_| {
                PlatformError::InvalidInput("code: does not match the authenticator".into())
            })?;
        let (codes, store) = RecoveryCodes::generate(10, self.inner.costs, self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.mfa.enrol",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({"method": "totp", "recovery_codes": 10}),
            )
            .await?;
        u.totp = Some(TotpState {
            confirmed: true,
            last_step: Some(step),
            ..t
        });
        u.recovery = Some(store);
        self.save(&u, &doc).await?;
        Ok((codes, r))
    }

    /// An administrator resets an account: a new one-time password that must be changed at first
    /// login, and every session of the account ends.
    pub async fn admin_reset(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        username: &str,
    ) -> Result<(Secret<String>, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        let (mut u, doc) = self.administered(auth, username).await?;
        let initial = self.initial_password()?;
        let phc = password::hash(initial.expose(), self.inner.costs, self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let r = self
            .audit_privileged(
                ctx,
                &auth.principal().id,
                "identity.password.reset",
                &format!("user:{username}"),
                serde_json::json!({"by": "administrator"}),
            )
            .await?;
        u.password = phc;
        u.password_set = self.inner.clock.now();
        u.must_change = true;
        u.reset = None;
        self.save(&u, &doc).await?;
        self.end_sessions_of(username).await?;
        self.emit_account(ctx, &auth.principal().id, username, 4)
            .await;
        Ok((initial, r))
    }

    /// Register a client certificate the platform CA issued to the signed-in person (X.509
    /// sign-in); audited before it is stored. The certificate is known by its SHA-256.
    pub async fn add_certificate(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        info: &cf_pki::device::CertInfo,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.certificate.add",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({"serial": info.serial, "fingerprint": info.fingerprint, "not_after": info.not_after}),
            )
            .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "user-cert".into(),
                id: info.fingerprint.clone(),
                body: json(&serde_json::json!({"username": name, "serial": info.serial, "not_after": info.not_after}))?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await?;
        Ok(r)
    }

    /// Withdraw one of the signed-in person's certificates (lost laptop, smart card): it signs no
    /// one in from then on; audited.
    pub async fn remove_certificate(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        fingerprint: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let mine = match self.inner.store.doc_get("user-cert", fingerprint).await? {
            Some(d) => serde_json::from_str::<serde_json::Value>(&d.body)
                .map(|v| v["username"] == name.as_str())
                .unwrap_or(false),
            None => false,
        };
        if !mine {
            return Err(PlatformError::NotFound(format!(
                "no certificate {fingerprint} on this account"
            )));
        }
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.certificate.remove",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({"fingerprint": fingerprint}),
            )
            .await?;
        self.inner
            .store
            .doc_delete("user-cert", fingerprint)
            .await?;
        Ok(r)
    }

    /// Sign in with a client certificate already verified against the platform CA by the TLS
    /// handshake: `fingerprint` (SHA-256 of its DER) must be registered to an enabled account and
    /// unexpired. Audited like a password login (method `x509`).
    pub async fn login_certificate(
        &self,
        ctx: &RequestContext,
        fingerprint: &str,
        device: &str,
    ) -> Result<LoginOk, PlatformError> {
        let now = self.inner.clock.now();
        let refuse = || PlatformError::Unauthenticated("this certificate signs no one in".into());
        let Some(d) = self.inner.store.doc_get("user-cert", fingerprint).await? else {
            self.audit(
                ctx,
                "anonymous",
                "auth.login",
                "session",
                Outcome::Denied,
                serde_json::json!({"method": "x509", "reason": "certificate not registered", "fingerprint": fingerprint}),
            )
            .await?;
            return Err(refuse());
        };
        let v: serde_json::Value =
            serde_json::from_str(&d.body).map_err(|e| PlatformError::Internal(e.to_string()))?;
        let username = v["username"].as_str().unwrap_or_default().to_string();
        let expired =
            serde_json::from_value::<Timestamp>(v["not_after"].clone()).map_or(true, |t| t <= now);
        let active = self.read_subject(&username).await?;
        if expired || active.is_none() {
            self.audit_login(
                ctx,
                &username,
                Outcome::Denied,
                serde_json::json!({"method": "x509", "reason": if expired { "certificate expired" } else { "account disabled or expired" }}),
            )
            .await?;
            return Err(refuse());
        }
        let (session, info, ended) = self
            .start_session(&username, device, &ctx.source_addr, &["swk"])
            .await?;
        self.audit_login(
            ctx,
            &username,
            Outcome::Success,
            serde_json::json!({"method": "x509", "session": info.handle, "ended": ended, "fingerprint": fingerprint}),
        )
        .await?;
        Ok(LoginOk {
            session,
            info,
            must_change: active.is_some_and(|s| s.must_change),
            ended,
        })
    }

    /// Record a real-name verification result for an account (IDM-4); audited as privileged.
    pub async fn set_real_name(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        username: &str,
        level: u8,
        method: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageUsers)?;
        if level > 3 {
            return Err(PlatformError::InvalidInput(
                "level: 0 (none) to 3 (face or in-person check)".into(),
            ));
        }
        if method.trim().is_empty() || method.len() > 64 {
            return Err(PlatformError::InvalidInput(
                "method: 1-64 characters naming how the person was verified".into(),
            ));
        }
        let (mut u, doc) = self.administered(auth, username).await?;
        let r = self
            .audit_privileged(
                ctx,
                &auth.principal().id,
                "identity.real_name",
                &format!("user:{username}"),
                serde_json::json!({"level": level, "method": method}),
            )
            .await?;
        u.real_name = (level > 0).then(|| RealName {
            level,
            method: method.to_string(),
            verified: self.inner.clock.now(),
        });
        self.save(&u, &doc).await?;
        self.forget(username);
        Ok(r)
    }

    /// Disable an account (a leaver) or enable it again. Disabling ends every session at once;
    /// single sign-on tokens check the account on each use, so they stop working too (IDM-3).
    pub async fn set_disabled(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        username: &str,
        disabled: bool,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let (mut u, doc) = self.administered(auth, username).await?;
        let event = if disabled {
            "identity.user.disable"
        } else {
            "identity.user.enable"
        };
        let r = self
            .audit_privileged(
                ctx,
                &auth.principal().id,
                event,
                &format!("user:{username}"),
                serde_json::json!({}),
            )
            .await?;
        u.disabled = disabled;
        self.save(&u, &doc).await?;
        if disabled {
            self.end_sessions_of(username).await?;
        }
        self.emit_account(
            ctx,
            &auth.principal().id,
            username,
            if disabled { 5 } else { 2 },
        )
        .await;
        Ok(r)
    }

    /// Self-service reset, step 1: send a one-time code through the configured channel. The
    /// answer is the same whether or not the account exists (no enumeration); requests are
    /// throttled like logins.
    pub async fn reset_begin(
        &self,
        ctx: &RequestContext,
        username: &str,
    ) -> Result<(), PlatformError> {
        let now = self.inner.clock.now();
        let attempt = self
            .inner
            .throttle
            .begin(
                &format!("reset:{username}"),
                &ctx.source_addr,
                secs(now),
                now,
            )
            .await?
            .map_err(|_| PlatformError::RateLimited("too many reset requests; try later".into()))?;
        let _ = attempt; // Every request counts: the counter is what limits code floods.
        let Some(sender) = &self.inner.sender else {
            return Err(PlatformError::Unavailable(
                "no one-time-code channel is configured".into(),
            ));
        };
        let Some((mut u, doc)) = self.user(username).await? else {
            self.audit(
                ctx,
                "anonymous",
                "identity.password.reset_request",
                &format!("user:{username}"),
                Outcome::Denied,
                serde_json::json!({"reason": "unknown account"}),
            )
            .await?;
            return Ok(());
        };
        let mut b = [0u8; 4];
        self.inner
            .rng
            .fill(&mut b)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let code = format!("{:06}", u32::from_be_bytes(b) % 1_000_000);
        u.reset = Some(ResetState {
            code_sha256: hex::encode(cf_crypto::sha256(format!("{username}:{code}").as_bytes())),
            expires: now.plus(std::time::Duration::from_secs(600)),
            attempts_left: 5,
        });
        self.audit(
            ctx,
            "anonymous",
            "identity.password.reset_request",
            &format!("user:{username}"),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        self.save(&u, &doc).await?;
        sender
            .send(username, "password-reset", &code)
            .await
            .map_err(|e| PlatformError::Unavailable(e.to_string()))
    }

    /// Self-service reset, step 2: the code (10 minutes, 5 attempts) and a new password that meets
    /// the domain's policy; every session of the account ends.
    pub async fn reset_complete(
        &self,
        ctx: &RequestContext,
        username: &str,
        code: &str,
        new: &str,
    ) -> Result<Receipt, PlatformError> {
        let now = self.inner.clock.now();
        let refuse = || PlatformError::Unauthenticated("the reset code is wrong or expired".into());
        let (mut u, doc) = self.user(username).await?.ok_or_else(refuse)?;
        let Some(mut st) = u.reset.clone() else {
            return Err(refuse());
        };
        let want = hex::encode(cf_crypto::sha256(
            format!("{username}:{}", code.trim()).as_bytes(),
        ));
        if now > st.expires || st.attempts_left == 0 {
            u.reset = None;
            self.save(&u, &doc).await?;
            return Err(refuse());
        }
        if !cf_crypto::ct_eq(want.as_bytes(), st.code_sha256.as_bytes()) {
            st.attempts_left -= 1;
            u.reset = (st.attempts_left > 0).then_some(st);
            self.save(&u, &doc).await?;
            self.audit(
                ctx,
                &format!("user:{username}"),
                "identity.password.reset",
                &format!("user:{username}"),
                Outcome::Denied,
                serde_json::json!({"reason": "wrong code"}),
            )
            .await?;
            return Err(refuse());
        }
        let phc = self.vetted_hash(&u, new)?;
        let r = self
            .audit(
                ctx,
                &format!("user:{username}"),
                "identity.password.reset",
                &format!("user:{username}"),
                Outcome::Success,
                serde_json::json!({"by": "one-time code"}),
            )
            .await?;
        set_password(&mut u, phc, now);
        u.reset = None;
        self.save(&u, &doc).await?;
        self.end_sessions_of(username).await?;
        Ok(r)
    }

    /// Sessions: all of them for administrators, one's own otherwise.
    pub async fn sessions(&self, auth: &Authorized) -> Result<Vec<SessionInfo>, PlatformError> {
        let account = match auth.action() {
            Action::ManageUsers => None,
            Action::OwnAccount => Some(Self::username_of(auth)?),
            _ => {
                return Err(PlatformError::Forbidden(
                    "users.manage or account.self is needed".into(),
                ));
            }
        };
        // An organisation's administrators see the sessions of their organisation's accounts.
        let members: Option<std::collections::HashSet<String>> =
            match (account.is_none(), auth.org()) {
                (true, Some(_)) => Some(
                    self.accounts()
                        .await?
                        .into_iter()
                        .filter(|(_, org, _, _)| auth.reaches(org))
                        .map(|(u, ..)| u)
                        .collect(),
                ),
                _ => None,
            };
        let mut v: Vec<SessionInfo> = self
            .live_sessions()
            .await?
            .into_iter()
            .map(|(s, _)| s.info)
            .filter(|s| account.as_deref().is_none_or(|a| s.account == a))
            .filter(|s| members.as_ref().is_none_or(|m| m.contains(&s.account)))
            .collect();
        v.sort_by(|a, b| (a.created, &a.handle).cmp(&(b.created, &b.handle)));
        Ok(v)
    }

    /// End a session by handle (administrators: any; users: their own).
    pub async fn end_session(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        handle: &str,
    ) -> Result<Receipt, PlatformError> {
        let own = self.sessions(auth).await?;
        if !own.iter().any(|s| s.handle == handle) {
            return Err(PlatformError::NotFound(format!("no session `{handle}`")));
        }
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.session.end",
                &format!("session:{handle}"),
                Outcome::Success,
                serde_json::json!({}),
            )
            .await?;
        for (s, d) in self.live_sessions().await? {
            if s.info.handle == handle {
                self.end_doc(d).await?;
            }
        }
        Ok(r)
    }

    /// Sessions within their timeouts, with their documents; expired ones found on the way are
    /// deleted, so the table holds only live sessions.
    async fn live_sessions(&self) -> Result<Vec<(StoredSession, Document)>, PlatformError> {
        let now = secs(self.inner.clock.now());
        let mut out = Vec::new();
        for d in self.inner.store.doc_list("session").await? {
            let s: StoredSession = serde_json::from_str(&d.body)
                .map_err(|e| PlatformError::Internal(e.to_string()))?;
            if session::check(&s.info, &self.inner.session_policy, now).is_ok() {
                out.push((s, d));
            } else {
                self.inner.store.doc_delete("session", &d.id).await?;
            }
        }
        Ok(out)
    }

    async fn end_doc(&self, d: Document) -> Result<(), PlatformError> {
        self.inner.store.doc_delete("session", &d.id).await?;
        Ok(())
    }

    async fn end_sessions_of(&self, account: &str) -> Result<(), PlatformError> {
        for (s, d) in self.live_sessions().await? {
            if s.info.account == account {
                self.end_doc(d).await?;
            }
        }
        Ok(())
    }

    /// Start a session in the store (shared by every node, kept across restarts); the
    /// per-account cap ends the least recently used sessions.
    async fn start_session(
        &self,
        account: &str,
        device: &str,
        address: &str,
        amr: &[&str],
    ) -> Result<(String, SessionInfo, Vec<String>), PlatformError> {
        let now = self.inner.clock.now();
        let mfa = amr.contains(&"mfa");
        let p = self.inner.session_policy;
        let mut mine: Vec<(StoredSession, Document)> = self
            .live_sessions()
            .await?
            .into_iter()
            .filter(|(s, _)| s.info.account == account)
            .collect();
        let mut ended = Vec::new();
        if mine.len() >= p.max_per_account {
            if p.on_cap == session::OnCap::Refuse {
                return Err(PlatformError::Conflict(
                    "too many sessions for this account".into(),
                ));
            }
            mine.sort_by_key(|(s, _)| s.info.last_seen);
            let excess = mine.len() + 1 - p.max_per_account;
            for (s, d) in mine.into_iter().take(excess) {
                ended.push(s.info.handle.clone());
                self.end_doc(d).await?;
            }
        }
        let secret = session::new_secret(self.inner.rng.as_ref())
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let (handle, key) = session::key_of(&secret);
        let info = SessionInfo {
            handle,
            account: account.to_string(),
            device: device.chars().take(200).collect(),
            address: address.to_string(),
            created: secs(now),
            last_seen: secs(now),
            mfa,
            amr: amr.iter().map(|m| m.to_string()).collect(),
        };
        self.inner
            .store
            .doc_insert(&Document {
                kind: "session".into(),
                id: key,
                body: json(&StoredSession { info: info.clone() })?,
                revision: 1,
                updated: now,
            })
            .await?;
        Ok((secret, info, ended))
    }

    /// The account behind `username` as single sign-on shows it, if it may still sign in
    /// (exists, not disabled, within its validity period). Checked on every token use, so a
    /// leaver's tokens stop working as soon as the account is disabled (IDM-3).
    pub async fn subject(&self, username: &str) -> Result<Option<Subject>, PlatformError> {
        if let Ok(m) = self.inner.subjects.lock()
            && let Some((at, s)) = m.get(username)
            && at.elapsed() < SUBJECT_TTL
        {
            return Ok(s.clone());
        }
        let s = self.read_subject(username).await?;
        if let Ok(mut m) = self.inner.subjects.lock() {
            // Bounded: a burst of distinct accounts clears the table rather than growing it.
            if m.len() >= 100_000 {
                m.clear();
            }
            m.insert(username.to_string(), (std::time::Instant::now(), s.clone()));
        }
        Ok(s)
    }

    async fn read_subject(&self, username: &str) -> Result<Option<Subject>, PlatformError> {
        let now = self.inner.clock.now();
        Ok(self.user(username).await?.and_then(|(u, _)| {
            (!u.disabled && u.valid_until.is_none_or(|v| v > now)).then(|| Subject {
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                domain: u.domain.clone(),
                org: u.org.clone(),
                roles: u.effective_roles(),
                mfa_enrolled: u.has_second_factor(),
                must_change: u.must_change,
                real_name_level: u.real_name.as_ref().map_or(0, |r| r.level),
            })
        }))
    }

    /// The live session behind a browser's single sign-on secret and its account, or `None`
    /// when either has ended.
    pub async fn sso_session(
        &self,
        secret: &str,
    ) -> Result<Option<(SessionInfo, Subject)>, PlatformError> {
        let s = match self.touch_session(secret).await {
            Ok(s) => s,
            Err(PlatformError::Unauthenticated(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.subject(&s.account).await?.map(|u| (s, u)))
    }

    /// End the session behind `secret` (single sign-on logout), audited; its info if it was live.
    pub async fn logout(
        &self,
        ctx: &RequestContext,
        secret: &str,
    ) -> Result<Option<SessionInfo>, PlatformError> {
        let (_, key) = session::key_of(secret);
        let Some(d) = self.inner.store.doc_get("session", &key).await? else {
            return Ok(None);
        };
        let s: StoredSession =
            serde_json::from_str(&d.body).map_err(|e| PlatformError::Internal(e.to_string()))?;
        self.audit(
            ctx,
            &format!("user:{}", s.info.account),
            "auth.logout",
            &format!("session:{}", s.info.handle),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        self.end_doc(d).await?;
        self.emit_auth(ctx, &s.info.account, 2, true, "", s.info.mfa)
            .await;
        Ok(Some(s.info))
    }

    /// Validate a bearer secret; `last_seen` is written at most once a minute.
    async fn touch_session(&self, secret: &str) -> Result<SessionInfo, PlatformError> {
        let now = secs(self.inner.clock.now());
        let unauth = |m: String| PlatformError::Unauthenticated(m);
        let (_, key) = session::key_of(secret);
        let d = self
            .inner
            .store
            .doc_get("session", &key)
            .await?
            .ok_or_else(|| unauth("no such session".into()))?;
        let mut s: StoredSession =
            serde_json::from_str(&d.body).map_err(|e| PlatformError::Internal(e.to_string()))?;
        session::check(&s.info, &self.inner.session_policy, now)
            .map_err(|e| unauth(e.to_string()))?;
        if now - s.info.last_seen >= 60 {
            s.info.last_seen = now;
            // Losing this race to another request only delays `last_seen`; it is not an error.
            let _ = self
                .inner
                .store
                .doc_update(&Document {
                    body: json(&s)?,
                    revision: d.revision + 1,
                    updated: self.inner.clock.now(),
                    ..d
                })
                .await;
        }
        Ok(s.info)
    }
}
