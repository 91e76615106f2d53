//! API tokens: the one-time bootstrap administrator credential, token creation, lookup and
//! revocation. Secrets are shown once and stored only as SHA-256 digests.

use std::sync::Arc;
use std::time::Duration;

use cf_core::{Secret, SharedClock, Timestamp};
use cf_crypto::Rng;
use cf_event::{AuditRecord, Outcome};
use serde::Serialize;

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized, Principal, Role};
use crate::ports::{StateStore, TokenRecord};

/// Prefix that makes tokens recognisable to secret scanners.
pub const TOKEN_PREFIX: &str = "cfk_";

/// Where a request came from, for the audit record.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Client address.
    pub source_addr: String,
    /// Request id.
    pub request_id: String,
}

impl RequestContext {
    /// Context for internal actions.
    pub fn internal() -> Self {
        RequestContext {
            source_addr: "local".into(),
            request_id: "-".into(),
        }
    }
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Created.
    pub created: Timestamp,
    /// Expires.
    pub expires: Option<Timestamp>,
    /// Revoked.
    pub revoked: Option<Timestamp>,
    /// Bootstrap credential awaiting rotation.
    pub must_change: bool,
    /// The organisation the token is confined to (absent: city-wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        TokenInfo {
            id: t.id,
            name: t.name,
            roles: t
                .roles
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
            must_change: t.must_change,
            org: t.org,
        }
    }
}

/// A freshly created token: the secret string is available exactly once.
#[derive(Debug)]
pub struct NewToken {
    /// Public part.
    pub info: TokenInfo,
    /// The full bearer token.
    pub token: Secret<String>,
}

/// Token service.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn Rng>,
    denied: Arc<std::sync::Mutex<DeniedWindow>>,
}

/// Denied requests per source address in the current minute, so that a flood of anonymous
/// requests cannot fill the ledger: past [`DENIED_PER_MINUTE`] per address the rest are counted
/// and written as one `access.denied.summary` record when the minute ends.
#[derive(Debug, Default)]
struct DeniedWindow {
    minute: i64,
    per_source: std::collections::HashMap<String, u64>,
}

/// Individually audited denials per source address and minute.
pub const DENIED_PER_MINUTE: u64 = 30;

impl Tokens {
    /// The service.
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn Rng>,
    ) -> Self {
        Tokens {
            store,
            ledger,
            clock,
            rng,
            denied: Arc::default(),
        }
    }

    fn record(
        &self,
        ctx: &RequestContext,
        subject: &str,
        object: &str,
        action: &str,
        result: Outcome,
    ) -> AuditRecord {
        AuditRecord::new(
            "token.".to_string() + action,
            self.clock.now(),
            &ctx.source_addr,
            "chengfang-api",
            subject,
            object,
            action,
            result,
            &ctx.request_id,
        )
        .privileged()
    }

    async fn mint(
        &self,
        name: &str,
        roles: &[Role],
        ttl: Option<Duration>,
        must_change: bool,
        org: Option<String>,
    ) -> Result<NewToken, PlatformError> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(PlatformError::InvalidInput(
                "name: must be 1 to 100 characters".into(),
            ));
        }
        if roles.is_empty() {
            return Err(PlatformError::InvalidInput(
                "roles: at least one role is required".into(),
            ));
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        cf_authz::rights::check(&names, &cf_authz::rights::default_rules())
            .map_err(|v| PlatformError::Conflict(v.to_string()))?;
        let bad = |_| PlatformError::Unavailable("random source unavailable".into());
        let id = hex::encode(cf_crypto::random_bytes(self.rng.as_ref(), 8).map_err(bad)?);
        let secret = cf_crypto::random_token(self.rng.as_ref(), 32).map_err(bad)?;
        let now = self.clock.now();
        let mut names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let rec = TokenRecord {
            id: id.clone(),
            name: name.to_string(),
            roles: names.join(","),
            secret_hash: cf_crypto::sha256(secret.as_bytes()),
            created: now,
            expires: ttl.map(|d| now.plus(d)),
            revoked: None,
            must_change,
            org,
        };
        self.store.insert_token(&rec).await?;
        Ok(NewToken {
            info: rec.into(),
            token: Secret::new(format!("{TOKEN_PREFIX}{id}_{secret}")),
        })
    }

    /// When no usable administrator token exists (first start, or every admin token revoked or
    /// expired), create the one-time bootstrap administrator credential.
    pub async fn bootstrap_if_empty(&self) -> Result<Option<NewToken>, PlatformError> {
        let now = self.clock.now();
        let active_admin = self.store.tokens().await?.into_iter().any(|t| {
            t.revoked.is_none()
                && t.expires.is_none_or(|e| e > now)
                && t.roles.split(',').any(|r| r == Role::Admin.as_str())
        });
        if active_admin {
            return Ok(None);
        }
        let t = self
            .mint(
                "bootstrap administrator",
                &[Role::Admin],
                Some(Duration::from_secs(7 * 86_400)),
                true,
                None,
            )
            .await?;
        let ctx = RequestContext::internal();
        if let Err(e) = self
            .ledger
            .append(self.record(
                &ctx,
                "system",
                &format!("token:{}", t.info.id),
                "bootstrap",
                Outcome::Success,
            ))
            .await
        {
            let _ = self.store.revoke_token(&t.info.id, self.clock.now()).await;
            return Err(e);
        }
        Ok(Some(t))
    }

    /// Resolve a bearer token to its principal.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, PlatformError> {
        let fail = || PlatformError::Unauthenticated("the bearer token is not valid".into());
        let rest = bearer.strip_prefix(TOKEN_PREFIX).ok_or_else(fail)?;
        let (id, secret) = rest.split_once('_').ok_or_else(fail)?;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail());
        }
        let rec = self.store.token(id).await?.ok_or_else(fail)?;
        if !cf_crypto::ct_eq(&rec.secret_hash, &cf_crypto::sha256(secret.as_bytes())) {
            return Err(fail());
        }
        let now = self.clock.now();
        if rec.revoked.is_some() || rec.expires.is_some_and(|e| e <= now) {
            return Err(PlatformError::Unauthenticated(
                "the bearer token is revoked or expired".into(),
            ));
        }
        Ok(Principal {
            id: format!("token:{}", rec.id),
            roles: rec.roles.split(',').filter_map(Role::parse).collect(),
            must_change: rec.must_change,
            org: rec.org,
            // Machine credentials: not scored per request.
            assurance: Default::default(),
        })
    }

    /// Exchange the bootstrap credential for a permanent administrator token; the old one is revoked.
    pub async fn rotate_bootstrap(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
    ) -> Result<(NewToken, Receipt), PlatformError> {
        if auth.action() != Action::RotateBootstrap {
            return Err(PlatformError::Forbidden("not authorised to rotate".into()));
        }
        let p = auth.principal();
        let old = p.id.strip_prefix("token:").unwrap_or(&p.id).to_string();
        // Administrators are not auditors (AUD-5): they create auditor tokens for the people who are.
        let t = self
            .mint("administrator", &[Role::Admin], None, false, None)
            .await?;
        let receipt = match self
            .ledger
            .append(
                self.record(
                    ctx,
                    &p.id,
                    &format!("token:{}", t.info.id),
                    "rotate",
                    Outcome::Success,
                )
                .with_detail(serde_json::json!({ "replaces": old })),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = self.store.revoke_token(&t.info.id, self.clock.now()).await;
                return Err(e);
            }
        };
        self.store.revoke_token(&old, self.clock.now()).await?;
        Ok((t, receipt))
    }

    /// Create a token (administrators only).
    pub async fn create(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        roles: &[Role],
        ttl: Option<Duration>,
        org: Option<String>,
    ) -> Result<(NewToken, Receipt), PlatformError> {
        if auth.action() != Action::ManageTokens {
            return Err(PlatformError::Forbidden(
                "not authorised to manage tokens".into(),
            ));
        }
        // A tenant's tokens stay in its organisation; the city may mint a tenant's first one.
        let org = match (auth.org(), org) {
            (Some(mine), Some(o)) if o != mine => {
                return Err(PlatformError::Forbidden(format!(
                    "org: tokens are created in the caller's own organisation `{mine}`"
                )));
            }
            (Some(mine), _) => Some(mine.to_string()),
            (None, o) => o,
        };
        if let Some(o) = &org {
            crate::orgs::check_org_id(o)?;
        }
        let t = self.mint(name, roles, ttl, false, org).await?;
        let rec = self
            .record(
                ctx,
                &auth.principal().id,
                &format!("token:{}", t.info.id),
                "create",
                Outcome::Success,
            )
            .with_detail(serde_json::json!({ "name": t.info.name, "roles": t.info.roles, "org": t.info.org }));
        match self.ledger.append(rec).await {
            Ok(r) => Ok((t, r)),
            Err(e) => {
                // Fail closed: a token whose creation is not audited must not work.
                let _ = self.store.revoke_token(&t.info.id, self.clock.now()).await;
                Err(e)
            }
        }
    }

    /// List tokens (administrators only).
    pub async fn list(&self, auth: &Authorized) -> Result<Vec<TokenInfo>, PlatformError> {
        if auth.action() != Action::ManageTokens {
            return Err(PlatformError::Forbidden(
                "not authorised to manage tokens".into(),
            ));
        }
        Ok(self
            .store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| auth.reaches_owner(t.org.as_deref()))
            .map(TokenInfo::from)
            .collect())
    }

    /// Revoke a token (administrators only). Revocation takes effect even if the audit write
    /// then fails (the safe direction); the request still fails so the operator sees it.
    pub async fn revoke(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<Receipt, PlatformError> {
        if auth.action() != Action::ManageTokens {
            return Err(PlatformError::Forbidden(
                "not authorised to manage tokens".into(),
            ));
        }
        // A tenant's caller reaches its own tokens only (the city's need no extra read).
        if auth.org().is_some()
            && !self
                .store
                .token(id)
                .await?
                .is_some_and(|t| auth.reaches_owner(t.org.as_deref()))
        {
            return Err(PlatformError::NotFound(format!("no token `{id}`")));
        }
        self.store.revoke_token(id, self.clock.now()).await?;
        self.ledger
            .append(self.record(
                ctx,
                &auth.principal().id,
                &format!("token:{id}"),
                "revoke",
                Outcome::Success,
            ))
            .await
    }

    /// Record a failed authentication or authorisation (AUD-1); errors are logged, not returned.
    pub async fn audit_denied(
        &self,
        ctx: &RequestContext,
        subject: &str,
        object: &str,
        action: &str,
    ) {
        // The object is the caller's path: bound what an anonymous caller can write into the ledger.
        let object: String = object.chars().take(200).collect();
        let now = self.clock.now();
        let minute = now.unix_millis() / 60_000;
        let (record_this, summaries) = {
            let mut w = self.denied.lock().unwrap_or_else(|e| e.into_inner());
            let mut summaries = Vec::new();
            if w.minute != minute {
                for (src, n) in w.per_source.drain() {
                    if n > DENIED_PER_MINUTE {
                        summaries.push((src, n - DENIED_PER_MINUTE));
                    }
                }
                w.minute = minute;
            }
            let n = w.per_source.entry(ctx.source_addr.clone()).or_default();
            *n += 1;
            (*n <= DENIED_PER_MINUTE, summaries)
        };
        for (src, suppressed) in summaries {
            let rec = AuditRecord::new("access.denied.summary", now, &src, "chengfang-api", "anonymous", "api", "authenticate", Outcome::Denied, "-")
                .with_detail(serde_json::json!({ "suppressed_records": suppressed, "limit_per_minute": DENIED_PER_MINUTE }));
            if let Err(e) = self.ledger.append(rec).await {
                tracing::error!(error = %e, "could not audit a denial summary");
            }
        }
        if !record_this {
            return;
        }
        let rec = AuditRecord::new(
            "access.denied",
            self.clock.now(),
            &ctx.source_addr,
            "chengfang-api",
            subject,
            object,
            action,
            Outcome::Denied,
            &ctx.request_id,
        );
        if let Err(e) = self.ledger.append(rec).await {
            tracing::error!(error = %e, "could not audit a denied request");
        }
    }
}
