//! The city's OpenID Connect provider (IDM-2 single sign-on, IDM-5/IDM-6 authentication chains
//! per application risk grade): relying parties, authorization codes with mandatory PKCE, ID
//! tokens, opaque access tokens, rotating refresh tokens with reuse detection, client
//! credentials, introspection, revocation and RP-initiated logout; signing keys rotate.
//!
//! Codes and tokens are stored only as SHA-256 keys; every grant is audited before it is
//! returned; every use checks the account again, so disabling a leaver ends their tokens at once.

use std::sync::{Arc, Mutex, RwLock};

use cf_core::{SharedClock, Timestamp};
use cf_event::{AuditRecord, Outcome};
use cf_identity::oidc::{self as engine, Alg, SigningKey};
use cf_identity::session::SessionInfo;
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::identity::{IdentityService, Subject};
use crate::ports::{Document, StateStore};
use crate::tokens::RequestContext;

/// Lifetime of an authorization code (RFC 6749 §4.1.2 recommends at most ten minutes).
pub const CODE_TTL_S: i64 = 60;
/// Lifetime of an access token.
pub const ACCESS_TTL_S: i64 = 600;
/// Lifetime of an ID token.
pub const ID_TTL_S: i64 = 3600;
/// Lifetime of a refresh token (each use rotates it).
pub const REFRESH_TTL_S: i64 = 8 * 3600;
/// How long a retired signing key stays in the JWKS (longer than any ID token lives).
pub const RETIRED_KEY_TTL_S: i64 = 24 * 3600;
/// Authentication context classes: password only, and password plus a second factor.
pub const ACR_PASSWORD: &str = "urn:chengfang:loa:1";
/// See [`ACR_PASSWORD`].
pub const ACR_MFA: &str = "urn:chengfang:loa:2";
/// Scopes a relying party may ask for.
pub const SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "offline_access",
];

/// An OAuth 2.0 error as RFC 6749 §5.2 names it.
#[derive(Debug, Clone)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant` …
    pub error: &'static str,
    /// Human-readable detail (never a secret).
    pub description: String,
    /// HTTP status.
    pub status: u16,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = match error {
            "invalid_client" => 401,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        };
        OAuthError {
            error,
            description: description.into(),
            status,
        }
    }
}

impl From<PlatformError> for OAuthError {
    fn from(e: PlatformError) -> Self {
        match e {
            PlatformError::InvalidInput(m) => OAuthError::new("invalid_request", m),
            PlatformError::RateLimited(m) => OAuthError::new("temporarily_unavailable", m),
            PlatformError::Unavailable(m) | PlatformError::AuditUnavailable(m) => {
                OAuthError::new("temporarily_unavailable", m)
            }
            other => OAuthError::new("server_error", other.to_string()),
        }
    }
}

impl From<crate::ports::StoreError> for OAuthError {
    fn from(e: crate::ports::StoreError) -> Self {
        PlatformError::from(e).into()
    }
}

/// Application risk grades and the authentication chain each requires (IDM-5, IDM-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RiskGrade {
    /// Public information services: a password session of any age.
    Low,
    /// Ordinary city applications: a password session no older than 12 hours.
    #[default]
    Medium,
    /// Sensitive systems (health, police, utilities control): a second factor, and a login in
    /// the last 15 minutes.
    High,
}

impl RiskGrade {
    /// The oldest authentication this grade accepts, in seconds.
    pub fn max_auth_age_s(self) -> Option<i64> {
        match self {
            RiskGrade::Low => None,
            RiskGrade::Medium => Some(12 * 3600),
            RiskGrade::High => Some(15 * 60),
        }
    }
    /// Whether a second factor is required.
    pub fn needs_mfa(self) -> bool {
        self == RiskGrade::High
    }
}

/// What an administrator supplies to register a relying party.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Client id, `[A-Za-z0-9._-]{3,64}`; generated when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Display name shown on the login page.
    pub name: String,
    /// Exact redirect URIs (https, or http on loopback).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser afterwards.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Confidential clients get a secret; public clients (apps) rely on PKCE alone.
    #[serde(default = "yes")]
    pub confidential: bool,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
    /// Scopes a client-credentials token may carry (service-to-service).
    #[serde(default)]
    pub service_scopes: Vec<String>,
    /// `RS256` (default) or `ES256`.
    #[serde(default)]
    pub id_token_alg: Option<String>,
    /// The application's risk grade, which sets its authentication chain.
    #[serde(default)]
    pub risk_grade: RiskGrade,
    /// The real-name verification level its users must have (IDM-4; 0: none).
    #[serde(default)]
    pub min_real_name_level: u8,
}

fn yes() -> bool {
    true
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

/// A registered relying party (no secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Has a secret.
    pub confidential: bool,
    /// Allowed grants.
    pub grant_types: Vec<String>,
    /// Client-credentials scopes.
    pub service_scopes: Vec<String>,
    /// ID token algorithm.
    pub id_token_alg: Alg,
    /// Risk grade.
    pub risk_grade: RiskGrade,
    /// Required real-name verification level.
    #[serde(default)]
    pub min_real_name_level: u8,
    /// Registered at.
    pub created: Timestamp,
    /// The organisation that registered it (absent: the city); only it and the city manage it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

impl ClientInfo {
    fn allows(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClientDoc {
    info: ClientInfo,
    secret_sha256: Option<String>,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The client.
    pub client: ClientInfo,
    /// Where to send the browser.
    pub redirect_uri: String,
    /// Requested scopes (space-separated, `openid` among them).
    pub scope: String,
    /// Opaque client state.
    pub state: Option<String>,
    /// Replay protection for the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// `prompt` values.
    pub prompt: Vec<String>,
    /// `max_age` in seconds.
    pub max_age: Option<i64>,
    /// Suggested login name.
    pub login_hint: Option<String>,
    /// Requested `acr_values`.
    pub acr_values: Vec<String>,
}

/// Why an authorization request fails: before the client and redirect URI are known good the
/// browser must not be redirected (RFC 6749 §4.1.2.1); afterwards the error goes to the client.
#[derive(Debug, Clone)]
pub enum AuthFailure {
    /// Show this to the user.
    Page(String),
    /// Redirect to the client with an error.
    Redirect {
        /// The target.
        redirect_uri: String,
        /// OAuth error code.
        error: &'static str,
        /// Detail.
        description: String,
        /// The client's state, echoed.
        state: Option<String>,
    },
}

impl AuthFailure {
    /// The redirect URL for a [`AuthFailure::Redirect`].
    pub fn location(&self, issuer: &str) -> Option<String> {
        match self {
            AuthFailure::Page(_) => None,
            AuthFailure::Redirect {
                redirect_uri,
                error,
                description,
                state,
            } => {
                let mut p = vec![
                    ("error", *error),
                    ("error_description", description.as_str()),
                ];
                if let Some(s) = state {
                    p.push(("state", s));
                }
                p.push(("iss", issuer));
                Some(engine::with_query(redirect_uri, &p))
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeDoc {
    client_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    challenge: String,
    username: String,
    session: String,
    auth_time: i64,
    mfa: bool,
    /// The session's authentication methods (RFC 8176), for the ID token's `amr`.
    #[serde(default)]
    amr: Vec<String>,
    expires: i64,
    /// The grant the code was exchanged for; set on first use, so a replay can revoke it.
    #[serde(default)]
    redeemed: Option<String>,
}

/// One authorization (a "token family"): every access and refresh token descends from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GrantDoc {
    client_id: String,
    username: Option<String>,
    scope: String,
    session: Option<String>,
    auth_time: i64,
    mfa: bool,
    #[serde(default)]
    amr: Vec<String>,
    revoked: bool,
    created: i64,
    expires: i64,
}

impl GrantDoc {
    /// The `amr` claim; grants made before methods were recorded derive it from `mfa`.
    fn methods(&self) -> Vec<String> {
        cf_identity::session::methods(&self.amr, self.mfa)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccessDoc {
    grant: String,
    client_id: String,
    sub: String,
    username: Option<String>,
    scope: String,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshDoc {
    grant: String,
    client_id: String,
    exp: i64,
    used: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyDoc {
    kid: String,
    alg: Alg,
    /// The PKCS#8 DER wrapped by the KMS-derived OIDC key (`Kek::wrap`, bound to the kid).
    sealed: String,
    created: i64,
    retired: Option<i64>,
}

/// A token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// Opaque bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Rotating refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Signed ID token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

/// How a client authenticated at the token, introspection or revocation endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientAuth {
    /// Client id (from HTTP Basic or the form).
    pub client_id: Option<String>,
    /// Secret, when given.
    pub client_secret: Option<String>,
}

struct KeySet {
    loaded: i64,
    keys: Vec<(KeyDoc, SigningKey)>,
}

/// The provider.
#[derive(Clone)]
pub struct OidcProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OidcProvider")
    }
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn cf_crypto::Rng>,
    identity: IdentityService,
    seal_key: cf_kms::seal::Kek,
    issuer: RwLock<String>,
    keys: Mutex<Option<Arc<KeySet>>>,
    // Serialises key generation so two first requests do not both create keys.
    keygen: tokio::sync::Mutex<()>,
    // Token verdicts and clients recently read, so introspection and userinfo do not read the
    // store on every call. A verdict is trusted for VERDICT_TTL and only while no revocation on
    // this node and no account change (the identity service's generation) happened since.
    verdicts: Mutex<std::collections::HashMap<String, Verdict>>,
    clients: Mutex<std::collections::HashMap<String, (std::time::Instant, Option<ClientDoc>)>>,
    revocations: std::sync::atomic::AtomicU64,
    // Since when (unix seconds) grants are indexed by session; older sessions are looked up the
    // slow way at logout.
    indexed_since: std::sync::OnceLock<i64>,
}

/// The grants made under one browser session, so that logging out revokes them without
/// reading every grant: (grant id, expiry) pairs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionGrants {
    grants: Vec<(String, i64)>,
}

const SESSION_GRANTS: &str = "oidc-session-grants";

type Live = Option<Arc<(AccessDoc, Option<Subject>)>>;

struct Verdict {
    at: std::time::Instant,
    identity_gen: u64,
    revocations: u64,
    live: Live,
}

/// How long a token verdict is reused: revocations and account changes made on other nodes take
/// effect within this bound (IDM-3 asks for one second); on this node they take effect at once.
pub const VERDICT_TTL: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a client registration is reused before it is read again.
pub const CLIENT_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries a cache holds before it is cleared (bounded memory under a flood of random tokens).
const CACHE_CAP: usize = 200_000;

fn secs(t: Timestamp) -> i64 {
    t.unix_nanos() / 1_000_000_000
}

fn json<T: Serialize>(v: &T) -> Result<String, PlatformError> {
    serde_json::to_string(v).map_err(|e| PlatformError::Internal(e.to_string()))
}

fn parse<T: for<'a> Deserialize<'a>>(d: &Document) -> Result<T, PlatformError> {
    serde_json::from_str(&d.body)
        .map_err(|e| PlatformError::Internal(format!("{} `{}`: {e}", d.kind, d.id)))
}

fn has_scope(scope: &str, s: &str) -> bool {
    scope.split(' ').any(|x| x == s)
}

impl OidcProvider {
    /// The provider; `seal_key` seals signing keys at rest (from the KMS), `issuer` is the
    /// server's public URL (settable once the listener is bound).
    pub fn new(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn cf_crypto::Rng>,
        identity: IdentityService,
        seal_key: [u8; 32],
        issuer: &str,
    ) -> Self {
        OidcProvider {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                rng,
                identity,
                seal_key: cf_kms::seal::Kek::from_array(seal_key),
                issuer: RwLock::new(issuer.trim_end_matches('/').to_string()),
                keys: Mutex::new(None),
                keygen: tokio::sync::Mutex::new(()),
                verdicts: Mutex::default(),
                clients: Mutex::default(),
                revocations: std::sync::atomic::AtomicU64::new(0),
                indexed_since: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Set the issuer (the URL relying parties reach the server at).
    pub fn set_issuer(&self, issuer: &str) {
        if let Ok(mut g) = self.inner.issuer.write() {
            *g = issuer.trim_end_matches('/').to_string();
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> String {
        self.inner
            .issuer
            .read()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// The identity service behind the login page.
    pub fn identity(&self) -> &IdentityService {
        &self.inner.identity
    }

    fn now(&self) -> i64 {
        secs(self.inner.clock.now())
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
        let rec = AuditRecord::new(
            event,
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-oidc",
            subject,
            object.to_string(),
            event.rsplit('.').next().unwrap_or(event),
            outcome,
            &ctx.request_id,
        )
        .with_detail(detail);
        self.inner.ledger.append(rec).await
    }

    fn random(&self, prefix: &str) -> Result<String, PlatformError> {
        let t = cf_crypto::random_token(self.inner.rng.as_ref(), 32)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        Ok(format!("{prefix}{t}"))
    }

    // ---- relying parties -------------------------------------------------------------------

    /// Register a relying party; returns it and, for a confidential client, its secret (shown
    /// once).
    pub async fn register_client(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        c: NewClient,
    ) -> Result<(ClientInfo, Option<String>, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        let mut problems = Vec::new();
        // An organisation's relying parties live under `<org>.`, so its ids never collide with
        // another organisation's (a "client exists" answer would reveal them).
        let client_id = match (c.client_id, auth.org()) {
            (Some(id), Some(o)) if !id.starts_with(&format!("{o}.")) => Some(format!("{o}.{id}")),
            (id, _) => id,
        };
        let client_id = match client_id {
            Some(id) => {
                if !(3..=64).contains(&id.len())
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    problems.push("client_id: 3-64 characters A-Z, a-z, 0-9, '.', '_', '-'".into());
                }
                id
            }
            None => self.random("rp-")?.chars().take(27).collect(),
        };
        if c.name.trim().is_empty() || c.name.len() > 200 {
            problems.push("name: 1-200 characters".to_string());
        }
        for (field, uris) in [
            ("redirect_uris", &c.redirect_uris),
            ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
        ] {
            for u in uris {
                if let Err(why) = engine::check_redirect_uri(u) {
                    problems.push(format!("{field}: {why}"));
                }
            }
        }
        for g in &c.grant_types {
            if !["authorization_code", "refresh_token", "client_credentials"].contains(&g.as_str())
            {
                problems.push(format!("grant_types: `{g}` is not supported"));
            }
        }
        let has = |g: &str| c.grant_types.iter().any(|x| x == g);
        if has("authorization_code") && c.redirect_uris.is_empty() {
            problems.push("redirect_uris: the authorization_code grant needs at least one".into());
        }
        if has("client_credentials") && !c.confidential {
            problems.push("grant_types: client_credentials needs a confidential client".into());
        }
        let alg = match c.id_token_alg.as_deref() {
            None => Alg::RS256,
            Some(a) => Alg::parse(a).unwrap_or_else(|e| {
                problems.push(format!("id_token_alg: {e}"));
                Alg::RS256
            }),
        };
        if !problems.is_empty() {
            return Err(PlatformError::InvalidInput(problems.join("; ")));
        }
        let secret = if c.confidential {
            Some(self.random("cfc_")?)
        } else {
            None
        };
        let info = ClientInfo {
            client_id: client_id.clone(),
            name: c.name,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            confidential: c.confidential,
            grant_types: c.grant_types,
            service_scopes: c.service_scopes,
            id_token_alg: alg,
            risk_grade: c.risk_grade,
            min_real_name_level: c.min_real_name_level.min(3),
            created: self.inner.clock.now(),
            org: auth.org().map(str::to_string),
        };
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "oidc.client.register",
                &format!("oidc-client:{client_id}"),
                Outcome::Success,
                serde_json::json!({"confidential": info.confidential, "grants": info.grant_types, "risk_grade": info.risk_grade, "redirect_uris": info.redirect_uris, "org": info.org}),
            )
            .await?;
        let doc = ClientDoc {
            info: info.clone(),
            secret_sha256: secret.as_deref().map(engine::token_key),
        };
        self.inner
            .store
            .doc_insert(&Document {
                kind: "oidc-client".into(),
                id: client_id.clone(),
                body: json(&doc)?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::Conflict(_) => {
                    PlatformError::Conflict(format!("client `{client_id}` already exists"))
                }
                other => other.into(),
            })?;
        Ok((info, secret, r))
    }

    /// Registered relying parties.
    pub async fn clients(&self, auth: &Authorized) -> Result<Vec<ClientInfo>, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let mut v = Vec::new();
        for d in self.inner.store.doc_list("oidc-client").await? {
            let c = parse::<ClientDoc>(&d)?.info;
            if auth.reaches_owner(c.org.as_deref()) {
                v.push(c);
            }
        }
        Ok(v)
    }

    /// Remove a relying party; its grants are revoked.
    pub async fn remove_client(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        client_id: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::ManageUsers)?;
        let mut found = None;
        if let Some(o) = auth.org()
            && !client_id.starts_with(&format!("{o}."))
        {
            found = self.client(&format!("{o}.{client_id}")).await?;
        }
        if found.is_none() {
            found = self.client(client_id).await?;
        }
        let Some(c) = found.filter(|c| auth.reaches_owner(c.info.org.as_deref())) else {
            return Err(PlatformError::NotFound(format!("no client `{client_id}`")));
        };
        let client_id = c.info.client_id.as_str();
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "oidc.client.remove",
                &format!("oidc-client:{client_id}"),
                Outcome::Success,
                serde_json::json!({}),
            )
            .await?;
        self.inner
            .store
            .doc_delete("oidc-client", client_id)
            .await?;
        self.revoked();
        self.revoke_grants(|g| g.client_id == client_id).await?;
        Ok(r)
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientDoc>, PlatformError> {
        if let Ok(m) = self.inner.clients.lock()
            && let Some((at, c)) = m.get(client_id)
            && at.elapsed() < CLIENT_TTL
        {
            return Ok(c.clone());
        }
        let c = match self.inner.store.doc_get("oidc-client", client_id).await? {
            Some(d) => Some(parse::<ClientDoc>(&d)?),
            None => None,
        };
        if let Ok(mut m) = self.inner.clients.lock() {
            if m.len() >= CACHE_CAP {
                m.clear();
            }
            m.insert(
                client_id.to_string(),
                (std::time::Instant::now(), c.clone()),
            );
        }
        Ok(c)
    }

    /// Something was revoked on this node: every cached verdict and client is re-read.
    fn revoked(&self) {
        self.inner
            .revocations
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut m) = self.inner.clients.lock() {
            m.clear();
        }
    }

    /// Authenticate a client (RFC 6749 §2.3): confidential clients by secret, public ones by id
    /// alone (their codes are bound to PKCE).
    pub async fn authenticate_client(&self, a: &ClientAuth) -> Result<ClientInfo, OAuthError> {
        let bad = || OAuthError::new("invalid_client", "client authentication failed");
        let id = a.client_id.as_deref().ok_or_else(bad)?;
        let c = self.client(id).await?.ok_or_else(bad)?;
        match (&c.secret_sha256, &a.client_secret) {
            (Some(h), Some(s))
                if cf_crypto::ct_eq(h.as_bytes(), engine::token_key(s).as_bytes()) =>
            {
                Ok(c.info)
            }
            (None, None) => Ok(c.info),
            _ => Err(bad()),
        }
    }

    // ---- signing keys ----------------------------------------------------------------------

    async fn keyset(&self) -> Result<Arc<KeySet>, PlatformError> {
        let now = self.now();
        if let Some(k) = self.inner.keys.lock().ok().and_then(|g| g.clone())
            && now - k.loaded < 30
        {
            return Ok(k);
        }
        let _g = self.inner.keygen.lock().await;
        let mut keys = self.load_keys().await?;
        for alg in Alg::ALL {
            if !keys
                .iter()
                .any(|(d, _)| d.alg == alg && d.retired.is_none())
            {
                keys.push(self.new_key(alg).await?);
            }
        }
        let set = Arc::new(KeySet { loaded: now, keys });
        if let Ok(mut g) = self.inner.keys.lock() {
            *g = Some(set.clone());
        }
        Ok(set)
    }

    async fn load_keys(&self) -> Result<Vec<(KeyDoc, SigningKey)>, PlatformError> {
        let now = self.now();
        let mut out = Vec::new();
        for d in self.inner.store.doc_list("oidc-key").await? {
            let k: KeyDoc = parse(&d)?;
            if k.retired.is_some_and(|r| now - r > RETIRED_KEY_TTL_S) {
                self.inner.store.doc_delete("oidc-key", &d.id).await?;
                continue;
            }
            let der = self.inner.seal_key.unwrap(k.kid.as_bytes(), &k.sealed)?;
            let sk = SigningKey::from_pkcs8(&k.kid, k.alg, der.to_vec())
                .map_err(|e| PlatformError::Internal(e.to_string()))?;
            out.push((k, sk));
        }
        out.sort_by_key(|(k, _)| k.created);
        Ok(out)
    }

    async fn new_key(&self, alg: Alg) -> Result<(KeyDoc, SigningKey), PlatformError> {
        let rng = self.inner.rng.clone();
        let sk = tokio::task::spawn_blocking(move || SigningKey::generate(alg, rng.as_ref()))
            .await
            .map_err(|e| PlatformError::Internal(e.to_string()))?
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let sealed = self.inner.seal_key.wrap(
            sk.kid().as_bytes(),
            sk.pkcs8().expose(),
            self.inner.rng.as_ref(),
        )?;
        let k = KeyDoc {
            kid: sk.kid().to_string(),
            alg,
            sealed,
            created: self.now(),
            retired: None,
        };
        self.audit(
            &RequestContext::internal(),
            "system",
            "oidc.key.create",
            &format!("oidc-key:{}", k.kid),
            Outcome::Success,
            serde_json::json!({"alg": alg.as_str()}),
        )
        .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "oidc-key".into(),
                id: k.kid.clone(),
                body: json(&k)?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await?;
        Ok((k, sk))
    }

    /// Rotate the signing keys: new keys sign from now on; the old ones stay in the JWKS for
    /// [`RETIRED_KEY_TTL_S`] so tokens already issued still verify.
    pub async fn rotate_keys(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
    ) -> Result<(Vec<String>, Receipt), PlatformError> {
        auth.require(Action::ManageUsers)?;
        auth.city_only("rotating the single sign-on signing keys")?;
        let _g = self.inner.keygen.lock().await;
        let now = self.now();
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "oidc.key.rotate",
                "oidc-keys",
                Outcome::Success,
                serde_json::json!({}),
            )
            .await?;
        for d in self.inner.store.doc_list("oidc-key").await? {
            let mut k: KeyDoc = parse(&d)?;
            if k.retired.is_none() {
                k.retired = Some(now);
                self.inner
                    .store
                    .doc_update(&Document {
                        body: json(&k)?,
                        revision: d.revision + 1,
                        updated: self.inner.clock.now(),
                        ..d
                    })
                    .await?;
            }
        }
        let mut kids = Vec::new();
        for alg in Alg::ALL {
            kids.push(self.new_key(alg).await?.0.kid);
        }
        if let Ok(mut g) = self.inner.keys.lock() {
            *g = None;
        }
        Ok((kids, r))
    }

    /// The public JWK set (RFC 7517): current and recently retired keys.
    pub async fn jwks(&self) -> Result<serde_json::Value, PlatformError> {
        let set = self.keyset().await?;
        let keys: Vec<_> = set.keys.iter().map(|(_, k)| k.jwk()).collect();
        Ok(serde_json::json!({ "keys": keys }))
    }

    async fn sign(&self, alg: Alg, claims: &serde_json::Value) -> Result<String, PlatformError> {
        let set = self.keyset().await?;
        let (_, k) = set
            .keys
            .iter()
            .rev()
            .find(|(d, _)| d.alg == alg && d.retired.is_none())
            .ok_or_else(|| PlatformError::Internal(format!("no {} key", alg.as_str())))?;
        k.sign("JWT", claims)
            .map_err(|e| PlatformError::Internal(e.to_string()))
    }

    /// The claims of an ID token we issued (signature only; for logout hints).
    pub async fn verify_id_token(&self, token: &str) -> Result<serde_json::Value, PlatformError> {
        let set = self.keyset().await?;
        let keys: Vec<&SigningKey> = set.keys.iter().map(|(_, k)| k).collect();
        let c = engine::verify(token, &keys)
            .map_err(|e| PlatformError::InvalidInput(format!("id_token_hint: {e}")))?;
        if c["iss"].as_str() != Some(self.issuer().as_str()) {
            return Err(PlatformError::InvalidInput(
                "id_token_hint: issued by someone else".into(),
            ));
        }
        Ok(c)
    }

    // ---- discovery -------------------------------------------------------------------------

    /// The discovery document (OpenID Connect Discovery 1.0 §3).
    pub fn discovery(&self) -> serde_json::Value {
        let iss = self.issuer();
        let algs: Vec<&str> = Alg::ALL.iter().map(|a| a.as_str()).collect();
        serde_json::json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oidc/authorize"),
            "token_endpoint": format!("{iss}/oidc/token"),
            "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
            "jwks_uri": format!("{iss}/oidc/jwks"),
            "end_session_endpoint": format!("{iss}/oidc/logout"),
            "introspection_endpoint": format!("{iss}/oidc/introspect"),
            "revocation_endpoint": format!("{iss}/oidc/revoke"),
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "userinfo_signing_alg_values_supported": ["none"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [ACR_PASSWORD, ACR_MFA],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "at_hash", "name", "preferred_username", "org", "identity_domain", "roles", "real_name_level"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "require_request_uri_registration": false,
            "authorization_response_iss_parameter_supported": true,
            "frontchannel_logout_supported": false,
            "backchannel_logout_supported": false,
        })
    }

    // ---- authorization endpoint ------------------------------------------------------------

    /// Validate an authorization request's parameters (OIDC Core §3.1.2.1 with PKCE required).
    pub async fn check_request(
        &self,
        p: &std::collections::BTreeMap<String, String>,
    ) -> Result<AuthRequest, AuthFailure> {
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let Some(client_id) = get("client_id") else {
            return Err(AuthFailure::Page("the request names no client_id".into()));
        };
        let client = match self.client(client_id).await {
            Ok(Some(c)) => c.info,
            Ok(None) => {
                return Err(AuthFailure::Page(format!(
                    "`{client_id}` is not a registered application"
                )));
            }
            Err(e) => return Err(AuthFailure::Page(e.to_string())),
        };
        let redirect_uri = match get("redirect_uri") {
            Some(r) if client.redirect_uris.iter().any(|x| x == r) => r.to_string(),
            Some(r) => {
                return Err(AuthFailure::Page(format!(
                    "`{r}` is not a redirect URI registered for {}",
                    client.name
                )));
            }
            None => {
                return Err(AuthFailure::Page(
                    "the request names no redirect_uri".into(),
                ));
            }
        };
        let state = get("state").map(str::to_string);
        let fail = |error: &'static str, d: &str| AuthFailure::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: d.to_string(),
            state: state.clone(),
        };
        if get("request").is_some() {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        if get("request_uri").is_some() {
            return Err(fail(
                "request_uri_not_supported",
                "request_uri is not supported",
            ));
        }
        match get("response_type") {
            None => return Err(fail("invalid_request", "response_type is missing")),
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only the code flow is offered",
                ));
            }
        }
        if !client.allows("authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "this client may not use the code flow",
            ));
        }
        let scope = get("scope").unwrap_or_default();
        if !has_scope(scope, "openid") {
            return Err(fail("invalid_scope", "scope must include openid"));
        }
        // Unknown scopes are ignored, as OAuth allows; the granted set is returned with tokens.
        let scope = scope
            .split(' ')
            .filter(|s| SCOPES.contains(s))
            .collect::<Vec<_>>()
            .join(" ");
        let Some(code_challenge) = get("code_challenge") else {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge is missing",
            ));
        };
        if get("code_challenge_method") != Some("S256")
            || !engine::pkce_challenge_ok(code_challenge)
        {
            return Err(fail(
                "invalid_request",
                "PKCE: code_challenge_method must be S256 with a 43-character challenge",
            ));
        }
        let prompt: Vec<String> = get("prompt")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if prompt.iter().any(|x| x == "none") && prompt.len() > 1 {
            return Err(fail(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            ));
        }
        let max_age = match get("max_age") {
            None => None,
            Some(m) => match m.parse::<i64>() {
                Ok(v) if v >= 0 => Some(v),
                _ => return Err(fail("invalid_request", "max_age must be a whole number")),
            },
        };
        Ok(AuthRequest {
            client,
            redirect_uri: redirect_uri.clone(),
            scope,
            state: state.clone(),
            nonce: get("nonce").map(str::to_string),
            code_challenge: code_challenge.to_string(),
            prompt,
            max_age,
            login_hint: get("login_hint").map(str::to_string),
            acr_values: get("acr_values")
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Whether an existing session satisfies the request without a new login: not forced by
    /// `prompt=login`, recent enough for `max_age` and the client's risk grade, and with the
    /// second factor the grade (or a requested `acr_values` of loa:2) demands.
    pub fn session_satisfies(&self, r: &AuthRequest, s: &SessionInfo) -> bool {
        let age = self.now() - s.created;
        let grade = r.client.risk_grade;
        !r.prompt.iter().any(|p| p == "login")
            && r.max_age.is_none_or(|m| age <= m)
            && grade.max_auth_age_s().is_none_or(|m| age <= m)
            && (s.mfa || !(grade.needs_mfa() || r.acr_values.iter().any(|a| a == ACR_MFA)))
    }

    /// Whether `subject` can meet the client's authentication chain at all.
    pub fn chain_possible(&self, r: &AuthRequest, u: &Subject) -> Result<(), String> {
        if u.real_name_level < r.client.min_real_name_level {
            return Err(format!(
                "{} requires real-name verification level {} (this account has {})",
                r.client.name, r.client.min_real_name_level, u.real_name_level
            ));
        }
        if r.client.risk_grade.needs_mfa() && !u.mfa_enrolled {
            return Err(format!(
                "{} is a high-risk application and requires a second factor; enrol one first",
                r.client.name
            ));
        }
        Ok(())
    }

    /// Issue an authorization code for a logged-in session; returns the redirect URL.
    pub async fn issue_code(
        &self,
        ctx: &RequestContext,
        r: &AuthRequest,
        s: &SessionInfo,
    ) -> Result<String, PlatformError> {
        let code = self.random("")?;
        let doc = CodeDoc {
            client_id: r.client.client_id.clone(),
            redirect_uri: r.redirect_uri.clone(),
            scope: r.scope.clone(),
            nonce: r.nonce.clone(),
            challenge: r.code_challenge.clone(),
            username: s.account.clone(),
            session: s.handle.clone(),
            auth_time: s.created,
            mfa: s.mfa,
            amr: s.methods(),
            expires: self.now() + CODE_TTL_S,
            redeemed: None,
        };
        self.audit(
            ctx,
            &format!("user:{}", s.account),
            "oidc.authorize",
            &format!("oidc-client:{}", r.client.client_id),
            Outcome::Success,
            serde_json::json!({"scope": r.scope, "session": s.handle, "mfa": s.mfa, "amr": s.methods()}),
        )
        .await?;
        self.inner
            .store
            .doc_insert(&Document {
                kind: "oidc-code".into(),
                id: engine::token_key(&code),
                body: json(&doc)?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await?;
        let mut p = vec![("code", code.as_str())];
        if let Some(st) = &r.state {
            p.push(("state", st));
        }
        let iss = self.issuer();
        p.push(("iss", &iss));
        Ok(engine::with_query(&r.redirect_uri, &p))
    }

    // ---- token endpoint --------------------------------------------------------------------

    /// The token endpoint (RFC 6749 §3.2): `authorization_code` (PKCE checked),
    /// `refresh_token` (rotated; a reused one revokes its whole family) and
    /// `client_credentials`.
    pub async fn token(
        &self,
        ctx: &RequestContext,
        a: &ClientAuth,
        p: &std::collections::BTreeMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let client = match self.authenticate_client(a).await {
            Ok(c) => c,
            Err(e) => {
                self.audit(
                    ctx,
                    &format!(
                        "oidc-client:{}",
                        a.client_id.as_deref().unwrap_or("unknown")
                    ),
                    "oidc.token",
                    "token",
                    Outcome::Denied,
                    serde_json::json!({"reason": "client authentication failed"}),
                )
                .await?;
                return Err(e);
            }
        };
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let grant = get("grant_type")
            .ok_or_else(|| OAuthError::new("invalid_request", "grant_type is missing"))?;
        if !client.allows(grant) {
            return Err(OAuthError::new(
                if ["authorization_code", "refresh_token", "client_credentials"].contains(&grant) {
                    "unauthorized_client"
                } else {
                    "unsupported_grant_type"
                },
                format!("grant `{grant}` is not allowed for this client"),
            ));
        }
        match grant {
            "authorization_code" => self.redeem_code(ctx, &client, p).await,
            "refresh_token" => self.refresh(ctx, &client, p).await,
            "client_credentials" => self.client_credentials(ctx, &client, p).await,
            _ => Err(OAuthError::new("unsupported_grant_type", "unknown grant")),
        }
    }

    async fn deny(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        reason: &str,
    ) -> Result<OAuthError, OAuthError> {
        self.audit(
            ctx,
            &format!("oidc-client:{}", client.client_id),
            "oidc.token",
            "token",
            Outcome::Denied,
            serde_json::json!({ "reason": reason }),
        )
        .await?;
        Ok(OAuthError::new("invalid_grant", reason.to_string()))
    }

    async fn redeem_code(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        p: &std::collections::BTreeMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let code =
            get("code").ok_or_else(|| OAuthError::new("invalid_request", "code is missing"))?;
        let key = engine::token_key(code);
        let Some(d) = self.inner.store.doc_get("oidc-code", &key).await? else {
            return Err(self.deny(ctx, client, "unknown or expired code").await?);
        };
        let mut c: CodeDoc = parse(&d)?;
        if let Some(grant) = &c.redeemed {
            // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
            self.revoke_grant(grant).await?;
            return Err(self
                .deny(ctx, client, "code already used; its tokens are revoked")
                .await?);
        }
        if c.client_id != client.client_id {
            return Err(self
                .deny(ctx, client, "code was issued to another client")
                .await?);
        }
        if c.expires < self.now() {
            return Err(self.deny(ctx, client, "code expired").await?);
        }
        if get("redirect_uri") != Some(c.redirect_uri.as_str()) {
            return Err(self
                .deny(
                    ctx,
                    client,
                    "redirect_uri differs from the authorization request",
                )
                .await?);
        }
        let verifier = get("code_verifier").unwrap_or_default();
        if !engine::pkce_s256_matches(verifier, &c.challenge) {
            return Err(self
                .deny(ctx, client, "PKCE code_verifier does not match")
                .await?);
        }
        let Some(subject) = self.inner.identity.subject(&c.username).await? else {
            return Err(self.deny(ctx, client, "account disabled").await?);
        };
        let grant = self.random("g")?;
        c.redeemed = Some(grant.clone());
        // The revision check makes redemption single-use even across nodes.
        if self
            .inner
            .store
            .doc_update(&Document {
                body: json(&c)?,
                revision: d.revision + 1,
                updated: self.inner.clock.now(),
                ..d
            })
            .await
            .is_err()
        {
            return Err(self.deny(ctx, client, "code already used").await?);
        }
        let g = GrantDoc {
            client_id: client.client_id.clone(),
            username: Some(c.username.clone()),
            scope: c.scope.clone(),
            session: Some(c.session.clone()),
            auth_time: c.auth_time,
            mfa: c.mfa,
            amr: c.amr.clone(),
            revoked: false,
            created: self.now(),
            expires: self.now() + REFRESH_TTL_S,
        };
        self.issue(
            ctx,
            client,
            &grant,
            g,
            Some(&subject),
            c.nonce.as_deref(),
            "authorization_code",
        )
        .await
    }

    async fn refresh(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        p: &std::collections::BTreeMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let rt = p
            .get("refresh_token")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is missing"))?;
        let Some(d) = self
            .inner
            .store
            .doc_get("oidc-refresh", &engine::token_key(rt))
            .await?
        else {
            return Err(self.deny(ctx, client, "unknown refresh token").await?);
        };
        let mut r: RefreshDoc = parse(&d)?;
        if r.client_id != client.client_id {
            return Err(self
                .deny(ctx, client, "refresh token of another client")
                .await?);
        }
        if r.used {
            // A rotated token presented again: whoever holds the family may be a thief.
            self.revoke_grant(&r.grant).await?;
            self.audit(
                ctx,
                &format!("oidc-client:{}", client.client_id),
                "oidc.refresh.reuse",
                &format!("oidc-grant:{}", r.grant),
                Outcome::Denied,
                serde_json::json!({"action": "token family revoked"}),
            )
            .await?;
            return Err(OAuthError::new(
                "invalid_grant",
                "refresh token reused; every token of this grant is revoked",
            ));
        }
        if r.exp < self.now() {
            return Err(self.deny(ctx, client, "refresh token expired").await?);
        }
        let Some((g, _)) = self.grant(&r.grant).await? else {
            return Err(self.deny(ctx, client, "grant revoked").await?);
        };
        if g.revoked {
            return Err(self.deny(ctx, client, "grant revoked").await?);
        }
        let subject = match &g.username {
            Some(u) => match self.inner.identity.subject(u).await? {
                Some(s) => Some(s),
                None => return Err(self.deny(ctx, client, "account disabled").await?),
            },
            None => None,
        };
        let mut g = g;
        if let Some(req) = p.get("scope").filter(|v| !v.is_empty()) {
            if !req.split(' ').all(|s| has_scope(&g.scope, s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    "a refresh cannot widen the granted scope",
                ));
            }
            g.scope = req.clone();
        }
        r.used = true;
        if self
            .inner
            .store
            .doc_update(&Document {
                body: json(&r)?,
                revision: d.revision + 1,
                updated: self.inner.clock.now(),
                ..d
            })
            .await
            .is_err()
        {
            return Err(self.deny(ctx, client, "refresh token already used").await?);
        }
        let grant = r.grant.clone();
        self.issue_tokens(
            ctx,
            client,
            &grant,
            &g,
            subject.as_ref(),
            None,
            "refresh_token",
        )
        .await
    }

    async fn client_credentials(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        p: &std::collections::BTreeMap<String, String>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = match p.get("scope").filter(|v| !v.is_empty()) {
            None => client.service_scopes.join(" "),
            Some(req) => {
                if let Some(bad) = req
                    .split(' ')
                    .find(|s| !client.service_scopes.iter().any(|x| x == s))
                {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        format!("scope `{bad}` is not granted to this client"),
                    ));
                }
                req.clone()
            }
        };
        let g = GrantDoc {
            client_id: client.client_id.clone(),
            username: None,
            scope,
            session: None,
            auth_time: self.now(),
            mfa: false,
            amr: Vec::new(),
            revoked: false,
            created: self.now(),
            expires: self.now() + ACCESS_TTL_S,
        };
        // A service token has no family to revoke together and no session: no grant is stored,
        // which also saves a write per grant.
        self.issue_tokens(ctx, client, "", &g, None, None, "client_credentials")
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        grant: &str,
        g: GrantDoc,
        subject: Option<&Subject>,
        nonce: Option<&str>,
        how: &str,
    ) -> Result<TokenResponse, OAuthError> {
        // Indexed first: a grant the index does not know could outlive its session's logout.
        if let Some(session) = &g.session {
            self.note_session_grant(session, grant, g.expires).await?;
        }
        self.inner
            .store
            .doc_insert(&Document {
                kind: "oidc-grant".into(),
                id: grant.to_string(),
                body: json(&g)?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await
            .map_err(PlatformError::from)?;
        self.issue_tokens(ctx, client, grant, &g, subject, nonce, how)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue_tokens(
        &self,
        ctx: &RequestContext,
        client: &ClientInfo,
        grant: &str,
        g: &GrantDoc,
        subject: Option<&Subject>,
        nonce: Option<&str>,
        how: &str,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let at = self.random("cfa_")?;
        let rt = if subject.is_some() && client.allows("refresh_token") {
            Some(self.random("cfr_")?)
        } else {
            None
        };
        let sub = subject.map_or(client.client_id.clone(), |s| s.username.clone());
        let id_token = match subject {
            Some(s) if has_scope(&g.scope, "openid") => {
                let mut claims = serde_json::json!({
                    "iss": self.issuer(), "sub": s.username, "aud": client.client_id,
                    "azp": client.client_id, "iat": now, "exp": now + ID_TTL_S,
                    "auth_time": g.auth_time,
                    "acr": if g.mfa { ACR_MFA } else { ACR_PASSWORD },
                    "amr": g.methods(),
                    "at_hash": engine::half_hash(&at),
                });
                if let Some(sid) = &g.session {
                    claims["sid"] = sid.as_str().into();
                }
                if let Some(n) = nonce {
                    claims["nonce"] = n.into();
                }
                if has_scope(&g.scope, "profile") {
                    self.profile_claims(s, &mut claims);
                }
                Some(self.sign(client.id_token_alg, &claims).await?)
            }
            _ => None,
        };
        self.audit(
            ctx,
            &format!("oidc-client:{}", client.client_id),
            "oidc.token",
            &if grant.is_empty() {
                format!("oidc-client:{}", client.client_id)
            } else {
                format!("oidc-grant:{grant}")
            },
            Outcome::Success,
            serde_json::json!({"grant_type": how, "sub": sub, "scope": g.scope, "refresh": rt.is_some(), "id_token": id_token.is_some()}),
        )
        .await?;
        let put = |kind: &str, key: String, body: String| Document {
            kind: kind.into(),
            id: key,
            body,
            revision: 1,
            updated: self.inner.clock.now(),
        };
        let a = AccessDoc {
            grant: grant.to_string(),
            client_id: client.client_id.clone(),
            sub: sub.clone(),
            username: subject.map(|s| s.username.clone()),
            scope: g.scope.clone(),
            iat: now,
            exp: now + ACCESS_TTL_S,
        };
        self.inner
            .store
            .doc_insert(&put("oidc-access", engine::token_key(&at), json(&a)?))
            .await
            .map_err(PlatformError::from)?;
        if let Some(rt) = &rt {
            // Rotation never outlives the grant: a family has an absolute lifetime.
            let r = RefreshDoc {
                grant: grant.to_string(),
                client_id: client.client_id.clone(),
                exp: g.expires.min(now + REFRESH_TTL_S),
                used: false,
            };
            self.inner
                .store
                .doc_insert(&put("oidc-refresh", engine::token_key(rt), json(&r)?))
                .await
                .map_err(PlatformError::from)?;
        }
        Ok(TokenResponse {
            access_token: at,
            token_type: "Bearer",
            expires_in: ACCESS_TTL_S,
            refresh_token: rt,
            id_token,
            scope: g.scope.clone(),
        })
    }

    fn profile_claims(&self, s: &Subject, claims: &mut serde_json::Value) {
        claims["name"] = s.display_name.as_str().into();
        claims["preferred_username"] = s.username.as_str().into();
        claims["org"] = s.org.as_str().into();
        claims["identity_domain"] = s.domain.as_str().into();
        claims["roles"] = s.roles.clone().into();
        claims["real_name_level"] = s.real_name_level.into();
    }

    /// Record, at start, since when grants are indexed by session: sessions from then on are
    /// logged out through the index, older ones by reading every grant.
    pub async fn prepare(&self) -> Result<(), PlatformError> {
        self.indexed_since().await.map(|_| ())
    }

    /// Since when grants are indexed by session (set at start, or by the first grant or logout
    /// that needs it).
    async fn indexed_since(&self) -> Result<i64, PlatformError> {
        if let Some(t) = self.inner.indexed_since.get() {
            return Ok(*t);
        }
        let read = |d: &Document| serde_json::from_str::<i64>(&d.body).ok();
        let t = match self
            .inner
            .store
            .doc_get("oidc-meta", "session-grants-since")
            .await?
        {
            Some(d) => read(&d).unwrap_or(0),
            None => {
                let now = self.now();
                let made = self
                    .inner
                    .store
                    .doc_insert(&Document {
                        kind: "oidc-meta".into(),
                        id: "session-grants-since".into(),
                        body: now.to_string(),
                        revision: 1,
                        updated: self.inner.clock.now(),
                    })
                    .await;
                match made {
                    Ok(()) => now,
                    // Another node set it first: theirs holds.
                    Err(crate::ports::StoreError::Conflict(_)) => self
                        .inner
                        .store
                        .doc_get("oidc-meta", "session-grants-since")
                        .await?
                        .and_then(|d| read(&d))
                        .unwrap_or(0),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(*self.inner.indexed_since.get_or_init(|| t))
    }

    /// Add a grant to its session's index (expired entries are dropped on the way).
    async fn note_session_grant(
        &self,
        session: &str,
        grant: &str,
        expires: i64,
    ) -> Result<(), PlatformError> {
        self.indexed_since().await?;
        let now = self.now();
        for _ in 0..8 {
            let current = self.inner.store.doc_get(SESSION_GRANTS, session).await?;
            let mut sg: SessionGrants = match &current {
                Some(d) => parse(d)?,
                None => SessionGrants::default(),
            };
            sg.grants.retain(|(_, exp)| *exp >= now);
            sg.grants.push((grant.to_string(), expires));
            let doc = Document {
                kind: SESSION_GRANTS.into(),
                id: session.to_string(),
                body: json(&sg)?,
                revision: current.as_ref().map_or(1, |d| d.revision + 1),
                updated: self.inner.clock.now(),
            };
            let done = match current {
                Some(_) => self.inner.store.doc_update(&doc).await,
                None => self.inner.store.doc_insert(&doc).await,
            };
            match done {
                Ok(()) => return Ok(()),
                Err(crate::ports::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PlatformError::Unavailable(
            "the session's grants kept changing; try again".into(),
        ))
    }

    async fn grant(&self, id: &str) -> Result<Option<(GrantDoc, Document)>, PlatformError> {
        match self.inner.store.doc_get("oidc-grant", id).await? {
            Some(d) => Ok(Some((parse(&d)?, d))),
            None => Ok(None),
        }
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), PlatformError> {
        // Revocation must win against a concurrent refresh, so retry on a revision conflict.
        for _ in 0..5 {
            let Some((mut g, d)) = self.grant(id).await? else {
                return Ok(());
            };
            if g.revoked {
                return Ok(());
            }
            g.revoked = true;
            self.revoked();
            if self
                .inner
                .store
                .doc_update(&Document {
                    body: json(&g)?,
                    revision: d.revision + 1,
                    updated: self.inner.clock.now(),
                    ..d
                })
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(PlatformError::Unavailable(format!(
            "grant {id} could not be revoked"
        )))
    }

    async fn revoke_grants(
        &self,
        pick: impl Fn(&GrantDoc) -> bool,
    ) -> Result<usize, PlatformError> {
        let mut n = 0;
        for d in self.inner.store.doc_list("oidc-grant").await? {
            let g: GrantDoc = parse(&d)?;
            if !g.revoked && pick(&g) {
                self.revoke_grant(&d.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    // ---- token use -------------------------------------------------------------------------

    /// An access token that is live: known, unexpired, its grant not revoked and its account
    /// still allowed to sign in.
    async fn live_access(&self, token: &str) -> Result<Live, PlatformError> {
        use std::sync::atomic::Ordering;
        let key = engine::token_key(token);
        let now = self.now();
        let (identity_gen, revocations) = (
            self.inner.identity.generation(),
            self.inner.revocations.load(Ordering::SeqCst),
        );
        if let Ok(m) = self.inner.verdicts.lock()
            && let Some(v) = m.get(&key)
            && v.at.elapsed() < VERDICT_TTL
            && v.identity_gen == identity_gen
            && v.revocations == revocations
        {
            return Ok(v.live.clone().filter(|l| l.0.exp >= now));
        }
        let live = self.read_access(&key, now).await?.map(Arc::new);
        if let Ok(mut m) = self.inner.verdicts.lock() {
            if m.len() >= CACHE_CAP {
                m.clear();
            }
            m.insert(
                key,
                Verdict {
                    at: std::time::Instant::now(),
                    identity_gen,
                    revocations,
                    live: live.clone(),
                },
            );
        }
        Ok(live)
    }

    async fn read_access(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(AccessDoc, Option<Subject>)>, PlatformError> {
        let Some(d) = self.inner.store.doc_get("oidc-access", key).await? else {
            return Ok(None);
        };
        let a: AccessDoc = parse(&d)?;
        if a.exp < now {
            return Ok(None);
        }
        // Service tokens (client credentials) belong to no grant.
        if !a.grant.is_empty() {
            match self.grant(&a.grant).await? {
                Some((g, _)) if !g.revoked => {}
                _ => return Ok(None),
            }
        }
        let subject = match &a.username {
            Some(u) => match self.inner.identity.subject(u).await? {
                Some(s) => Some(s),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some((a, subject)))
    }

    /// The userinfo response for a bearer access token (OIDC Core §5.3), or `None` when the
    /// token is not live or carries no user with `openid`.
    pub async fn userinfo(&self, token: &str) -> Result<Option<serde_json::Value>, PlatformError> {
        let Some(live) = self.live_access(token).await? else {
            return Ok(None);
        };
        let (a, Some(s)) = &*live else {
            return Ok(None);
        };
        if !has_scope(&a.scope, "openid") {
            return Ok(None);
        }
        let mut v = serde_json::json!({ "sub": s.username });
        if has_scope(&a.scope, "profile") {
            self.profile_claims(s, &mut v);
        }
        Ok(Some(v))
    }

    /// Token introspection (RFC 7662) for an authenticated confidential client.
    pub async fn introspect(
        &self,
        a: &ClientAuth,
        token: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let c = self.authenticate_client(a).await?;
        if !c.confidential {
            return Err(OAuthError::new(
                "invalid_client",
                "introspection needs a confidential client",
            ));
        }
        let inactive = serde_json::json!({ "active": false });
        if let Some(live) = self.live_access(token).await? {
            let at = &live.0;
            return Ok(serde_json::json!({
                "active": true, "token_type": "Bearer", "scope": at.scope,
                "client_id": at.client_id, "sub": at.sub, "username": at.username,
                "iat": at.iat, "exp": at.exp, "iss": self.issuer(), "aud": at.client_id,
            }));
        }
        if let Some(d) = self
            .inner
            .store
            .doc_get("oidc-refresh", &engine::token_key(token))
            .await?
        {
            let r: RefreshDoc = parse(&d)?;
            let Some((g, _)) = self.grant(&r.grant).await? else {
                return Ok(inactive);
            };
            let user_ok = match &g.username {
                Some(u) => self.inner.identity.subject(u).await?.is_some(),
                None => true,
            };
            if !r.used && !g.revoked && r.exp >= self.now() && user_ok {
                return Ok(serde_json::json!({
                    "active": true, "token_type": "refresh_token", "scope": g.scope,
                    "client_id": r.client_id, "sub": g.username, "username": g.username,
                    "exp": r.exp, "iss": self.issuer(),
                }));
            }
        }
        Ok(inactive)
    }

    /// Token revocation (RFC 7009): a refresh token revokes its whole grant, an access token
    /// itself. Unknown tokens are not an error.
    pub async fn revoke(
        &self,
        ctx: &RequestContext,
        a: &ClientAuth,
        token: &str,
    ) -> Result<(), OAuthError> {
        let c = self.authenticate_client(a).await?;
        let key = engine::token_key(token);
        if let Some(d) = self.inner.store.doc_get("oidc-refresh", &key).await? {
            let r: RefreshDoc = parse(&d)?;
            if r.client_id == c.client_id {
                self.audit(
                    ctx,
                    &format!("oidc-client:{}", c.client_id),
                    "oidc.revoke",
                    &format!("oidc-grant:{}", r.grant),
                    Outcome::Success,
                    serde_json::json!({"token_type": "refresh_token"}),
                )
                .await?;
                self.revoke_grant(&r.grant).await?;
            }
        } else if let Some(d) = self.inner.store.doc_get("oidc-access", &key).await? {
            let at: AccessDoc = parse(&d)?;
            if at.client_id == c.client_id {
                self.audit(
                    ctx,
                    &format!("oidc-client:{}", c.client_id),
                    "oidc.revoke",
                    &format!("oidc-grant:{}", at.grant),
                    Outcome::Success,
                    serde_json::json!({"token_type": "access_token"}),
                )
                .await?;
                self.inner.store.doc_delete("oidc-access", &key).await?;
                self.revoked();
            }
        }
        Ok(())
    }

    // ---- logout ----------------------------------------------------------------------------

    /// Where RP-initiated logout may send the browser: `post_logout_redirect_uri` must be
    /// registered for the client the ID token hint (or `client_id`) names.
    pub async fn logout_target(
        &self,
        id_token_hint: Option<&str>,
        client_id: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Result<Option<String>, PlatformError> {
        let hinted = match id_token_hint {
            Some(t) => {
                let c = self.verify_id_token(t).await?;
                c["aud"].as_str().map(str::to_string)
            }
            None => None,
        };
        if let (Some(h), Some(c)) = (&hinted, client_id)
            && h != c
        {
            return Err(PlatformError::InvalidInput(
                "client_id differs from the id_token_hint's audience".into(),
            ));
        }
        let Some(uri) = post_logout_redirect_uri else {
            return Ok(None);
        };
        let Some(cid) = hinted.as_deref().or(client_id) else {
            return Err(PlatformError::InvalidInput(
                "post_logout_redirect_uri needs an id_token_hint or client_id".into(),
            ));
        };
        let c = self
            .client(cid)
            .await?
            .ok_or_else(|| PlatformError::InvalidInput(format!("unknown client `{cid}`")))?;
        if !c.info.post_logout_redirect_uris.iter().any(|x| x == uri) {
            return Err(PlatformError::InvalidInput(format!(
                "`{uri}` is not a post-logout redirect URI registered for {}",
                c.info.name
            )));
        }
        Ok(Some(match state {
            Some(s) => engine::with_query(uri, &[("state", s)]),
            None => uri.to_string(),
        }))
    }

    /// End a browser's single sign-on session and revoke every grant made through it.
    pub async fn logout(
        &self,
        ctx: &RequestContext,
        sso_secret: &str,
    ) -> Result<usize, PlatformError> {
        let Some(s) = self.inner.identity.logout(ctx, sso_secret).await? else {
            return Ok(0);
        };
        // A session older than the index may hold grants it does not list.
        if s.created < self.indexed_since().await? {
            return self
                .revoke_grants(|g| g.session.as_deref() == Some(s.handle.as_str()))
                .await;
        }
        let mut n = 0;
        if let Some(d) = self.inner.store.doc_get(SESSION_GRANTS, &s.handle).await? {
            let sg: SessionGrants = parse(&d)?;
            for (id, _) in &sg.grants {
                if self.grant(id).await?.is_some_and(|(g, _)| !g.revoked) {
                    self.revoke_grant(id).await?;
                    n += 1;
                }
            }
            self.inner
                .store
                .doc_delete(SESSION_GRANTS, &s.handle)
                .await?;
        }
        Ok(n)
    }

    /// Delete expired codes, tokens and grants (run periodically).
    pub async fn prune(&self) -> Result<usize, PlatformError> {
        let now = self.now();
        let mut n = 0;
        for d in self.inner.store.doc_list("oidc-code").await? {
            if parse::<CodeDoc>(&d)?.expires < now - 600 {
                n += usize::from(self.inner.store.doc_delete("oidc-code", &d.id).await?);
            }
        }
        for d in self.inner.store.doc_list("oidc-access").await? {
            if parse::<AccessDoc>(&d)?.exp < now {
                n += usize::from(self.inner.store.doc_delete("oidc-access", &d.id).await?);
            }
        }
        for d in self.inner.store.doc_list("oidc-refresh").await? {
            if parse::<RefreshDoc>(&d)?.exp < now {
                n += usize::from(self.inner.store.doc_delete("oidc-refresh", &d.id).await?);
            }
        }
        for d in self.inner.store.doc_list("oidc-grant").await? {
            if parse::<GrantDoc>(&d)?.expires < now {
                n += usize::from(self.inner.store.doc_delete("oidc-grant", &d.id).await?);
            }
        }
        // Session indexes whose grants have all expired (sessions that were never logged out).
        for d in self.inner.store.doc_list(SESSION_GRANTS).await? {
            let sg: SessionGrants = parse(&d)?;
            if sg.grants.iter().all(|(_, exp)| *exp < now) {
                n += usize::from(self.inner.store.doc_delete(SESSION_GRANTS, &d.id).await?);
            }
        }
        Ok(n)
    }
}
