//! Route handlers: thin translations between HTTP and the platform services.

use axum::Json;
use axum::extract::{Path, Query, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_core::ErrorCode;
use cf_event::{AuditRecord, Outcome};
use cf_platform::Role;
use cf_platform::authz::Action;
use cf_platform::report::AuditReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::ack::Ack;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// Health: the process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "system", security(()), responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    s.store
        .ping()
        .await
        .map_err(|e| ApiError::from(cf_platform::PlatformError::from(e)))?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no route for {}", uri.path()))
}

/// The authenticated caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// Subject id.
    pub subject: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether this is a bootstrap credential that must be rotated.
    pub must_change: bool,
    /// The organisation the caller is confined to (absent: city-wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "auth", responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        subject: caller.principal.id.clone(),
        roles: caller
            .principal
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        must_change: caller.principal.must_change,
        org: caller.principal.org.clone(),
    })
}

/// A token as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Created (RFC 3339).
    pub created: String,
    /// Expires (RFC 3339).
    pub expires: Option<String>,
    /// Revoked (RFC 3339).
    pub revoked: Option<String>,
    /// Bootstrap credential awaiting rotation.
    pub must_change: bool,
    /// The organisation the token is confined to (absent: city-wide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

impl From<cf_platform::tokens::TokenInfo> for TokenView {
    fn from(t: cf_platform::tokens::TokenInfo) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            roles: t.roles,
            created: t.created.to_string(),
            expires: t.expires.map(|x| x.to_string()),
            revoked: t.revoked.map(|x| x.to_string()),
            must_change: t.must_change,
            org: t.org,
        }
    }
}

/// A newly issued token; `token` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The bearer token. Store it now: it cannot be retrieved again.
    pub token: String,
    /// Its public description.
    pub info: TokenView,
}

#[utoipa::path(post, path = "/api/v1/auth/rotate", tag = "auth",
    responses((status = 201, body = IssuedToken, description = "The bootstrap credential is revoked and replaced"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn rotate(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Ack<IssuedToken>, ApiError> {
    if !caller.principal.must_change {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "only a bootstrap credential is rotated this way; create tokens with POST /api/v1/tokens",
        ));
    }
    let auth = caller.authorize(&s, Action::RotateBootstrap).await?;
    let (t, receipt) = s.tokens.rotate_bootstrap(&auth, &caller.ctx).await?;
    Ok(Ack::created(
        receipt,
        IssuedToken {
            token: t.token.expose().clone(),
            info: t.info.into(),
        },
    ))
}

/// Request to create a token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Label.
    pub name: String,
    /// Roles: admin, auditor, operator, service.
    pub roles: Vec<String>,
    /// Lifetime such as `90d`; none for no expiry.
    pub ttl: Option<String>,
    /// Confine the token to one organisation (city administrators; a tenant's tokens are always
    /// confined to its own).
    #[serde(default)]
    pub org: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateToken>, axum::extract::rejection::JsonRejection>,
) -> Result<Ack<IssuedToken>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageTokens).await?;
    let Json(req) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let mut roles = Vec::new();
    for (i, r) in req.roles.iter().enumerate() {
        roles.push(Role::parse(r).ok_or_else(|| {
            ApiError::invalid(
                &format!("roles[{i}]"),
                format!("unknown role `{r}`; use admin, auditor, operator or service"),
            )
        })?);
    }
    let ttl = req
        .ttl
        .as_deref()
        .map(cf_core::parse_duration)
        .transpose()
        .map_err(|e| ApiError::invalid("ttl", e))?;
    let (t, receipt) = s
        .tokens
        .create(&auth, &caller.ctx, &req.name, &roles, ttl, req.org)
        .await?;
    Ok(Ack::created(
        receipt,
        IssuedToken {
            token: t.token.expose().clone(),
            info: t.info.into(),
        },
    ))
}

/// Token listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Tokens.
    pub tokens: Vec<TokenView>,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<TokenList>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageTokens).await?;
    Ok(Json(TokenList {
        tokens: s
            .tokens
            .list(&auth)
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect(),
    }))
}

/// Result of a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// The revoked token id.
    pub revoked: String,
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = Revoked), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<Revoked>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageTokens).await?;
    let receipt = s.tokens.revoke(&auth, &caller.ctx, &id).await?;
    Ok(Ack::ok(receipt, Revoked { revoked: id }))
}

/// Authorise an audit read and record it first (AUD-5: access to audit data is itself audited).
async fn audit_read(
    s: &AppState,
    caller: &Caller,
    what: &str,
) -> Result<cf_platform::Authorized, ApiError> {
    let auth = caller.authorize(s, Action::ReadAudit).await?;
    let rec = AuditRecord::new(
        "audit.read",
        s.clock.now(),
        &caller.ctx.source_addr,
        "chengfang-api",
        &caller.principal.id,
        what,
        "read",
        Outcome::Success,
        &caller.ctx.request_id,
    );
    s.ledger.append(rec).await?;
    Ok(auth)
}

/// Paging of ledger records.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RecordsQuery {
    /// First position (default 0).
    pub from: Option<u64>,
    /// Most records (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A page of ledger entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    /// Entries, each `{seq, prev, record}` exactly as hashed into the ledger.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<cf_platform::LedgerEntry>,
    /// Ledger size when read.
    pub size: u64,
}

#[utoipa::path(get, path = "/api/v1/audit/records", tag = "audit", params(RecordsQuery),
    responses((status = 200, body = RecordPage), (status = 403, body = ErrorBody)))]
pub async fn audit_records(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RecordPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let auth = audit_read(&s, &caller, "/api/v1/audit/records").await?;
    let entries = s.ledger.entries(&auth, q.from.unwrap_or(0), limit).await?;
    Ok(Json(RecordPage {
        entries,
        size: s.ledger.size(),
    }))
}

/// The latest signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Tree size.
    pub size: u64,
    /// The C2SP signed note.
    pub note: String,
    /// The ledger's Ed25519 verifier key (C2SP vkey).
    pub verifier_key: String,
    /// Every verifier key, including the SM2 co-signing key (SIG-1).
    pub verifier_keys: Vec<String>,
    /// Origin line.
    pub origin: String,
}

#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)))]
pub async fn audit_checkpoint(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<CheckpointView>, ApiError> {
    let auth = audit_read(&s, &caller, "/api/v1/audit/checkpoint").await?;
    let cp = s
        .ledger
        .latest_checkpoint(&auth)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no checkpoint has been signed yet"))?;
    Ok(Json(CheckpointView {
        size: cp.size,
        note: cp.note,
        verifier_key: s.ledger.verifier_key(),
        verifier_keys: s.ledger.verifier_keys(),
        origin: s.ledger.origin().to_string(),
    }))
}

/// Parameters of an inclusion proof.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// Record position.
    pub seq: u64,
    /// Tree size (default: the latest checkpoint's).
    pub size: Option<u64>,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    /// Record position.
    pub seq: u64,
    /// Tree size.
    pub size: u64,
    /// Leaf hash, base64.
    pub leaf_hash: String,
    /// Audit path, base64 hashes.
    pub proof: Vec<String>,
}

async fn default_size(
    s: &AppState,
    auth: &cf_platform::Authorized,
    size: Option<u64>,
) -> Result<u64, ApiError> {
    match size {
        Some(n) => Ok(n),
        None => Ok(s
            .ledger
            .latest_checkpoint(auth)?
            .map(|c| c.size)
            .ok_or_else(|| {
                ApiError::new(ErrorCode::NotFound, "no checkpoint has been signed yet")
            })?),
    }
}

#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 400, body = ErrorBody)))]
pub async fn inclusion_proof(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let auth = audit_read(&s, &caller, "/api/v1/audit/proof/inclusion").await?;
    let size = default_size(&s, &auth, q.size).await?;
    let (leaf, proof) = s
        .ledger
        .inclusion_proof(&auth, q.seq, size)
        .map_err(|e| ApiError::invalid("seq", e.to_string()))?;
    Ok(Json(InclusionProof {
        seq: q.seq,
        size,
        leaf_hash: B64.encode(leaf),
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
    }))
}

/// Parameters of a consistency proof.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// Older tree size.
    pub old: u64,
    /// Newer tree size (default: the latest checkpoint's).
    pub new: Option<u64>,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// Older size.
    pub old: u64,
    /// Newer size.
    pub new: u64,
    /// Base64 hashes.
    pub proof: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = ErrorBody)))]
pub async fn consistency_proof(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let auth = audit_read(&s, &caller, "/api/v1/audit/proof/consistency").await?;
    let new = default_size(&s, &auth, q.new).await?;
    let proof = s
        .ledger
        .consistency_proof(&auth, q.old, new)
        .map_err(|e| ApiError::invalid("old", e.to_string()))?;
    Ok(Json(ConsistencyProof {
        old: q.old,
        new,
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
    }))
}

/// Parameters of the review.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    /// Period such as `7d` (default `7d`).
    pub since: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit/report", tag = "audit", params(ReportQuery),
    responses((status = 200, body = Object, description = "The AUD-4 review: counts by type, actor and result; failures; privileged actions")))]
pub async fn audit_report(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditReport>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let period = cf_core::parse_duration(q.since.as_deref().unwrap_or("7d"))
        .map_err(|e| ApiError::invalid("since", e))?;
    let auth = audit_read(&s, &caller, "/api/v1/audit/report").await?;
    let now = s.clock.now();
    let since = now.minus(period);
    let mut all = Vec::new();
    let mut from = 0;
    loop {
        let page = s.ledger.entries(&auth, from, 1000).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        all.extend(page.into_iter().filter(|e| e.record.time >= since));
    }
    Ok(Json(AuditReport::build(all, since, now, 50)))
}

/// What a log sender must respect.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestLimits {
    /// Largest accepted batch body, bytes (`server.body_limit_bytes`).
    pub body_limit_bytes: usize,
    /// Batches processed at once (`server.ingest_concurrency`); more wait.
    pub concurrency: usize,
}

#[utoipa::path(get, path = "/api/v1/ingest/limits", tag = "system", responses((status = 200, body = IngestLimits)))]
pub async fn ingest_limits(
    State(s): State<AppState>,
    caller: crate::auth::Caller,
    axum::Extension(limits): axum::Extension<crate::Limits>,
) -> Result<Json<IngestLimits>, ApiError> {
    caller
        .authorize(&s, cf_platform::authz::Action::PublishEvents)
        .await?;
    Ok(Json(IngestLimits {
        body_limit_bytes: limits.body_bytes,
        concurrency: s.logs.concurrency(),
    }))
}

/// Log batches wait here for a slot of the intake before anything reads their body: a sender
/// faster than the pipeline is slowed by TCP flow control, and the memory held by batches stays
/// within `server.ingest_concurrency × server.body_limit_bytes` (SA-1 overload).
pub async fn ingest_gate(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(_slot) = s.logs.admit().await else {
        return ApiError::new(
            cf_core::ErrorCode::Unavailable,
            "the log intake is closing; send the batch again",
        )
        .into_response();
    };
    next.run(req).await
}

async fn ingest(
    s: AppState,
    caller: crate::auth::Caller,
    body: axum::body::Bytes,
    format: cf_platform::logs::LineFormat,
) -> Result<Json<cf_platform::logs::BatchResult>, ApiError> {
    caller
        .authorize(&s, cf_platform::authz::Action::PublishEvents)
        .await?;
    let who = caller.principal.id.clone();
    // Acknowledged only once the bus holds every event durably; otherwise the sender retries.
    let r = s
        .logs
        .batch(&body, format, &who, "https")
        .await
        .map_err(|e| {
            ApiError::new(
                cf_core::ErrorCode::Unavailable,
                format!("the batch was not accepted, send it again: {e}"),
            )
        })?;
    Ok(Json(r))
}

#[utoipa::path(post, path = "/api/v1/ingest/syslog", tag = "system", request_body(content = String, content_type = "text/plain"), responses((status = 200, description = "Lines received, parsed, and kept as malformed")))]
pub async fn ingest_syslog(
    State(s): State<AppState>,
    caller: crate::auth::Caller,
    body: axum::body::Bytes,
) -> Result<Json<cf_platform::logs::BatchResult>, ApiError> {
    ingest(s, caller, body, cf_platform::logs::LineFormat::Syslog).await
}

#[utoipa::path(post, path = "/api/v1/ingest/ndjson", tag = "system", request_body(content = String, content_type = "application/x-ndjson"), responses((status = 200, description = "Lines received, parsed, and kept as malformed")))]
pub async fn ingest_ndjson(
    State(s): State<AppState>,
    caller: crate::auth::Caller,
    body: axum::body::Bytes,
) -> Result<Json<cf_platform::logs::BatchResult>, ApiError> {
    ingest(s, caller, body, cf_platform::logs::LineFormat::Ndjson).await
}
