//! Identity routes (IDM-1, IDM-5, PWD-2, PWD-3, AUZ-3): accounts for administrators, password
//! login with a second factor, self-service password change and TOTP enrolment, sessions.

use axum::Json;
use axum::extract::{Path, State};
use cf_platform::authz::Action;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::ack::Ack;
use crate::auth::{Caller, context};
use crate::error::{ApiError, ErrorBody};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::invalid("body", e.body_text()))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "identity", responses((status = 201, description = "The account and its one-time initial password (must be changed at first login)"), (status = 409, body = ErrorBody)))]
pub async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<cf_platform::identity::NewUser>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let (u, initial, r) = s.identity.create_user(&auth, &caller.ctx, body(b)?).await?;
    Ok(Ack::created(
        r,
        serde_json::json!({"user": u, "initial_password": initial.expose()}),
    ))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "identity", responses((status = 200, description = "Accounts (no secrets)")))]
pub async fn users(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::identity::UserInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    Ok(Json(s.identity.users(&auth).await?))
}

#[utoipa::path(post, path = "/api/v1/orgs", tag = "identity", responses((status = 201, description = "The organisation (city administrators register organisations)"), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_org(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<cf_platform::orgs::NewOrg>,
) -> Result<Ack<cf_platform::orgs::Org>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let (o, r) = s
        .identity
        .orgs()
        .create(&auth, &caller.ctx, body(b)?)
        .await?;
    Ok(Ack::created(r, o))
}

#[utoipa::path(get, path = "/api/v1/orgs", tag = "identity", responses((status = 200, description = "Organisations within the caller's reach: registered, built-in and known from accounts")))]
pub async fn orgs(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::orgs::Org>>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let known = s.identity.known_orgs().await?;
    Ok(Json(s.identity.orgs().list(&auth, &known).await?))
}

#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "identity", responses((status = 200, description = "One organisation"), (status = 404, body = ErrorBody)))]
pub async fn org(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<cf_platform::orgs::Org>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let known = s.identity.known_orgs().await?;
    Ok(Json(s.identity.orgs().show(&auth, &id, &known).await?))
}

/// A department to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepartment {
    /// Its name.
    pub name: String,
}

#[utoipa::path(post, path = "/api/v1/orgs/{id}/departments", tag = "identity", request_body = NewDepartment, responses((status = 200, description = "The organisation with the department added"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_department(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<NewDepartment>,
) -> Result<Ack<cf_platform::orgs::Org>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let d = body(b)?;
    let (o, r) = s
        .identity
        .orgs()
        .add_department(&auth, &caller.ctx, &id, &d.name)
        .await?;
    Ok(Ack::ok(r, o))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// TOTP code or a recovery code, when a second factor is enrolled.
    #[serde(default)]
    pub otp: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "identity", request_body = Login, security(()), responses((status = 200, description = "A session bearer secret (cfs_…)"), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: JsonBody<Login>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = context(&parts);
    let l = body(b)?;
    let device = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let ok = s
        .identity
        .login(&ctx, &l.username, &l.password, l.otp.as_deref(), device)
        .await?;
    Ok(Json(serde_json::json!({
        "session": ok.session,
        "handle": ok.info.handle,
        "must_change": ok.must_change,
        "mfa": ok.info.mfa,
        "ended_sessions": ok.ended,
    })))
}

/// Password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Current password.
    pub old: String,
    /// New password.
    pub new: String,
}

#[utoipa::path(post, path = "/api/v1/account/password", tag = "identity", request_body = PasswordChange, responses((status = 200, description = "Changed"), (status = 400, body = ErrorBody)))]
pub async fn change_password(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<PasswordChange>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let p = body(b)?;
    let r = s
        .identity
        .change_password(&auth, &caller.ctx, &p.old, &p.new)
        .await?;
    Ok(Ack::ok(r, serde_json::json!({"changed": true})))
}

#[utoipa::path(post, path = "/api/v1/account/totp", tag = "identity", responses((status = 200, description = "otpauth:// URI for an authenticator app")))]
pub async fn totp_begin(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let uri = s
        .identity
        .totp_begin(&auth, &caller.ctx, "Chengfang")
        .await?;
    Ok(Json(serde_json::json!({"uri": uri.expose()})))
}

#[utoipa::path(post, path = "/api/v1/account/passkeys/begin", tag = "identity", responses((status = 200, description = "A ceremony id and the options for navigator.credentials.create()"), (status = 503, body = ErrorBody)))]
pub async fn passkey_begin(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let (ceremony, options) = s.identity.passkey_begin(&auth).await?;
    Ok(Json(
        serde_json::json!({"ceremony": ceremony, "publicKey": options}),
    ))
}

/// The authenticator's answer to a registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyFinish {
    /// The ceremony id from `begin`.
    pub ceremony: String,
    /// A label to tell the passkey apart (e.g. `work laptop`).
    pub name: String,
    /// The `PublicKeyCredential` in WebAuthn's JSON form.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

fn credential(v: serde_json::Value) -> Result<cf_platform::identity::WebauthnResponse, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid("credential", e.to_string()))
}

#[utoipa::path(post, path = "/api/v1/account/passkeys/finish", tag = "identity", request_body = PasskeyFinish, responses((status = 201, description = "The passkey, registered"), (status = 400, body = ErrorBody)))]
pub async fn passkey_finish(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<PasskeyFinish>,
) -> Result<Ack<cf_platform::identity::PasskeyInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let f = body(b)?;
    let r = credential(f.credential)?;
    let (info, receipt) = s
        .identity
        .passkey_finish(&auth, &caller.ctx, &f.ceremony, &f.name, &r)
        .await?;
    Ok(Ack::created(receipt, info))
}

#[utoipa::path(get, path = "/api/v1/account/passkeys", tag = "identity", responses((status = 200, description = "The caller's passkeys")))]
pub async fn passkeys(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::identity::PasskeyInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    Ok(Json(s.identity.passkeys(&auth).await?))
}

#[utoipa::path(delete, path = "/api/v1/account/passkeys/{id}", tag = "identity", responses((status = 200, description = "Removed"), (status = 404, body = ErrorBody)))]
pub async fn remove_passkey(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let r = s.identity.remove_passkey(&auth, &caller.ctx, &id).await?;
    Ok(Ack::ok(r, serde_json::json!({"removed": id})))
}

/// Whose passkey sign-in to begin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginBegin {
    /// Login name.
    pub username: String,
}

#[utoipa::path(post, path = "/api/v1/auth/passkey/begin", tag = "identity", request_body = PasskeyLoginBegin, security(()), responses((status = 200, description = "A ceremony id and the options for navigator.credentials.get()")))]
pub async fn passkey_login_begin(
    State(s): State<AppState>,
    b: JsonBody<PasskeyLoginBegin>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let l = body(b)?;
    let (ceremony, options) = s.identity.passkey_login_begin(&l.username).await?;
    Ok(Json(
        serde_json::json!({"ceremony": ceremony, "publicKey": options}),
    ))
}

/// The authenticator's answer to a sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginFinish {
    /// The ceremony id from `begin`.
    pub ceremony: String,
    /// The `PublicKeyCredential` in WebAuthn's JSON form.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

#[utoipa::path(post, path = "/api/v1/auth/passkey/finish", tag = "identity", request_body = PasskeyLoginFinish, security(()), responses((status = 200, description = "A session bearer secret (cfs_…); multi-factor"), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn passkey_login_finish(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: JsonBody<PasskeyLoginFinish>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = context(&parts);
    let f = body(b)?;
    let r = credential(f.credential)?;
    let device = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let ok = s
        .identity
        .passkey_login_finish(&ctx, &f.ceremony, &r, device)
        .await?;
    Ok(Json(serde_json::json!({
        "session": ok.session,
        "handle": ok.info.handle,
        "must_change": ok.must_change,
        "mfa": ok.info.mfa,
        "method": "passkey",
        "ended_sessions": ok.ended,
    })))
}

/// A code from the authenticator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// Six digits.
    pub code: String,
}

#[utoipa::path(post, path = "/api/v1/account/totp/confirm", tag = "identity", request_body = Code, responses((status = 200, description = "Enrolled; ten recovery codes, shown once")))]
pub async fn totp_confirm(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<Code>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let c = body(b)?;
    let (codes, r) = s.identity.totp_confirm(&auth, &caller.ctx, &c.code).await?;
    let shown: Vec<&String> = codes.iter().map(|c| c.expose()).collect();
    Ok(Ack::ok(r, serde_json::json!({"recovery_codes": shown})))
}

fn session_action(caller: &Caller) -> Action {
    if caller.principal.roles.contains(&cf_platform::Role::Admin) {
        Action::ManageUsers
    } else {
        Action::OwnAccount
    }
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "identity", responses((status = 200, description = "Sessions with device and address: everyone's for administrators, one's own otherwise")))]
pub async fn sessions(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_identity::session::SessionInfo>>, ApiError> {
    let auth = caller.authorize(&s, session_action(&caller)).await?;
    Ok(Json(s.identity.sessions(&auth).await?))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{handle}", tag = "identity", params(("handle" = String, Path)), responses((status = 200, description = "Ended"), (status = 404, body = ErrorBody)))]
pub async fn end_session(
    State(s): State<AppState>,
    caller: Caller,
    Path(handle): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, session_action(&caller)).await?;
    let r = s.identity.end_session(&auth, &caller.ctx, &handle).await?;
    Ok(Ack::ok(r, serde_json::json!({"ended": handle})))
}

#[utoipa::path(post, path = "/api/v1/users/{username}/reset", tag = "identity", params(("username" = String, Path)), responses((status = 200, description = "A new one-time password; the account's sessions ended")))]
pub async fn admin_reset(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let (initial, r) = s
        .identity
        .admin_reset(&auth, &caller.ctx, &username)
        .await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"username": username, "initial_password": initial.expose()}),
    ))
}

#[utoipa::path(post, path = "/api/v1/users/{username}/disable", tag = "identity", params(("username" = String, Path)), responses((status = 200, description = "Disabled; sessions ended, single sign-on tokens dead")))]
pub async fn disable_user(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let r = s
        .identity
        .set_disabled(&auth, &caller.ctx, &username, true)
        .await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"username": username, "disabled": true}),
    ))
}

#[utoipa::path(post, path = "/api/v1/users/{username}/enable", tag = "identity", params(("username" = String, Path)), responses((status = 200, description = "Enabled again")))]
pub async fn enable_user(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let r = s
        .identity
        .set_disabled(&auth, &caller.ctx, &username, false)
        .await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"username": username, "disabled": false}),
    ))
}

/// A real-name verification result.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RealNameBody {
    /// 0 (none) to 3 (face or in-person check).
    pub level: u8,
    /// How the person was verified (`ctid`, `bank-card`, `counter` …).
    pub method: String,
}

#[utoipa::path(post, path = "/api/v1/users/{username}/real-name", tag = "identity", params(("username" = String, Path)), request_body = RealNameBody, responses((status = 200, description = "Recorded; applications requiring this level accept the account")))]
pub async fn set_real_name(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    b: JsonBody<RealNameBody>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let r = body(b)?;
    let rc = s
        .identity
        .set_real_name(&auth, &caller.ctx, &username, r.level, &r.method)
        .await?;
    Ok(Ack::ok(
        rc,
        serde_json::json!({"username": username, "real_name_level": r.level}),
    ))
}

/// An account's own roles (those its SCIM groups grant are kept apart).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    /// `admin`, `auditor`, `operator`, `service`; the whole list (an empty list removes all).
    pub roles: Vec<String>,
    /// Why (a ticket or change number), kept in the audit record.
    #[serde(default)]
    pub reason: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/users/{username}/roles", tag = "identity", params(("username" = String, Path)), request_body = RolesBody, responses((status = 200, description = "The account with its roles (own and from groups); audited"), (status = 409, body = ErrorBody, description = "Separation of duties forbids the combination")))]
pub async fn set_roles(
    State(s): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    b: JsonBody<RolesBody>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let r = body(b)?;
    let (info, receipt) = s
        .identity
        .set_roles(
            &auth,
            &caller.ctx,
            &username,
            cf_platform::identity::RoleSource::Own,
            &r.roles,
            serde_json::json!({"reason": r.reason}),
        )
        .await?;
    Ok(match receipt {
        Some(rc) => Ack::ok(rc, info).into_response(),
        // Nothing changed, so nothing was written to the ledger.
        None => Json(info).into_response(),
    })
}

/// Who forgot their password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Login name.
    pub username: String,
}

#[utoipa::path(post, path = "/api/v1/auth/reset", tag = "identity", request_body = ResetRequest, security(()), responses((status = 202, description = "If the account exists, a one-time code was sent"), (status = 429, body = ErrorBody)))]
pub async fn reset_begin(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: JsonBody<ResetRequest>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    let ctx = context(&parts);
    let r = body(b)?;
    s.identity.reset_begin(&ctx, &r.username).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({"sent": "if the account exists, a code is on its way"})),
    ))
}

/// The code and the new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetComplete {
    /// Login name.
    pub username: String,
    /// The one-time code.
    pub code: String,
    /// New password.
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/reset/complete", tag = "identity", request_body = ResetComplete, security(()), responses((status = 200, description = "Password set; every session of the account ended"), (status = 401, body = ErrorBody)))]
pub async fn reset_complete(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: JsonBody<ResetComplete>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let ctx = context(&parts);
    let r = body(b)?;
    let receipt = s
        .identity
        .reset_complete(&ctx, &r.username, &r.code, &r.new_password)
        .await?;
    Ok(Ack::ok(receipt, serde_json::json!({"reset": true})))
}

/// The review period.
#[derive(Debug, Deserialize)]
pub struct Period {
    /// Days back from now (default 90).
    #[serde(default)]
    pub days: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/rights/report", tag = "identity", params(("days" = Option<i64>, Query, description = "review period in days (default 90)")), responses((status = 200, description = "Rights-compliance findings: unused roles, toxic combinations, roles beyond the peer group (AUZ-6)")))]
pub async fn rights_report(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Query(p): axum::extract::Query<Period>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadAudit).await?;
    Ok(Json(
        s.rights
            .report(&auth, &caller.ctx, p.days.unwrap_or(90))
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/account/certificate", tag = "identity", request_body(content = String, description = "A PKCS#10 certificate request (PEM) over the person's own key (ECDSA P-256, Ed25519 or SM2)"), responses((status = 200, description = "A client certificate (PEM) from the platform CA for signing in with X.509")))]
pub async fn issue_certificate(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Ack<serde_json::Value>, ApiError> {
    use base64::Engine;
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let username = caller
        .principal
        .id
        .strip_prefix("user:")
        .ok_or_else(|| {
            ApiError::from(cf_platform::PlatformError::Forbidden(
                "only a signed-in person gets a certificate".into(),
            ))
        })?
        .to_string();
    let pem = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("body", "a PEM certificate request (text)"))?;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::invalid("body", "the certificate request is not PEM"))?;
    let (cert, info) = s.devices.issue_person_cert(&username, &der, 24 * 365)?;
    let r = s
        .identity
        .add_certificate(&auth, &caller.ctx, &info)
        .await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"certificate": cert, "serial": info.serial, "fingerprint": info.fingerprint, "not_after": info.not_after}),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/certificate", tag = "identity", security(()), responses((status = 200, description = "A session for the person whose client certificate the TLS handshake presented"), (status = 401, body = ErrorBody)))]
pub async fn login_certificate(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = context(&parts);
    let der = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::PeerAddr>>()
        .and_then(|c| c.0.1.clone())
        .ok_or_else(|| {
            ApiError::from(cf_platform::PlatformError::Unauthenticated(
                "present a client certificate issued by the platform CA".into(),
            ))
        })?;
    let device = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let fingerprint = hex::encode(cf_crypto::sha256(&der));
    let ok = s
        .identity
        .login_certificate(&ctx, &fingerprint, device)
        .await?;
    Ok(Json(serde_json::json!({
        "session": ok.session, "handle": ok.info.handle, "must_change": ok.must_change,
        "method": "x509", "ended_sessions": ok.ended,
    })))
}

#[utoipa::path(delete, path = "/api/v1/account/certificate/{fingerprint}", tag = "identity", params(("fingerprint" = String, Path)), responses((status = 200, description = "The certificate signs no one in any more")))]
pub async fn remove_certificate(
    State(s): State<AppState>,
    caller: Caller,
    Path(fingerprint): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::OwnAccount).await?;
    let r = s
        .identity
        .remove_certificate(&auth, &caller.ctx, &fingerprint)
        .await?;
    Ok(Ack::ok(r, serde_json::json!({"removed": fingerprint})))
}
