//! Device routes (DEV-1, AVL-2, INT-1): the registry for administrators and operators, an
//! RFC 7030 subset for enrollment (`/.well-known/est/…`), and HTTPS telemetry authenticated by the
//! device's client certificate.
//!
//! EST subset: `cacerts` and the enrollment answers are PEM (`application/pem-certificate-chain`)
//! rather than PKCS#7 certs-only; requests accept a base64 DER PKCS#10 body (RFC 7030 §4.2) or PEM.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cf_core::ErrorCode;
use cf_device::registry::{Device, DeviceStatus, NewDevice};
use cf_device::telemetry::Verdict;
use cf_platform::authz::Action;
use cf_platform::devices::Enrolled;
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

#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", responses((status = 201, description = "The registered device"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<NewDevice>,
) -> Result<Ack<Device>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    let (d, r) = s.devices.register(&auth, &caller.ctx, body(b)?).await?;
    Ok(Ack::created(r, d))
}

/// Filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this district.
    pub district: Option<String>,
    /// Only this status: registered, active, quarantined, retired.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", params(ListQuery), responses((status = 200, description = "Devices")))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadDevices).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some(x) => Some(
            [
                DeviceStatus::Registered,
                DeviceStatus::Active,
                DeviceStatus::Quarantined,
                DeviceStatus::Retired,
            ]
            .into_iter()
            .find(|s| s.as_str() == x)
            .ok_or_else(|| {
                ApiError::invalid("status", "use registered, active, quarantined or retired")
            })?,
        ),
    };
    Ok(Json(
        s.devices.list(&auth, q.district.as_deref(), status).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = String, Path)), responses((status = 200, description = "The device"), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadDevices).await?;
    Ok(Json(s.devices.get(&auth, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/devices/import", tag = "devices", request_body(content = String, content_type = "text/csv"), responses((status = 200, description = "Registered ids and refused rows with their line")))]
pub async fn import(
    State(s): State<AppState>,
    caller: Caller,
    csv: Bytes,
) -> Result<Json<cf_platform::devices::ImportReport>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    Ok(Json(s.devices.import_csv(&auth, &caller.ctx, &csv).await?))
}

/// A fresh enrollment token.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct TokenOut {
    /// Device.
    pub device: String,
    /// The one-time token (shown once).
    pub token: String,
    /// Expiry.
    pub expires: String,
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/enrollment-token", tag = "devices", params(("id" = String, Path)), responses((status = 201, body = TokenOut)))]
pub async fn enrollment_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<TokenOut>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    let (token, expires, r) = s.devices.enrollment_token(&auth, &caller.ctx, &id).await?;
    Ok(Ack::created(
        r,
        TokenOut {
            device: id,
            token,
            expires: expires.to_string(),
        },
    ))
}

/// Why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Reason, recorded in the ledger.
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", params(("id" = String, Path)), request_body = Reason, responses((status = 200, description = "Revoked; the CRL was pushed")))]
pub async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Reason>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    let r = s
        .devices
        .revoke(&auth, &caller.ctx, &id, &body(b)?.reason)
        .await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"device": id, "revoked": true}),
    ))
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", tag = "devices", params(("id" = String, Path)), request_body = Reason, responses((status = 200, description = "What the quarantine did")))]
pub async fn quarantine(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Reason>,
) -> Result<Ack<cf_platform::devices::QuarantineReport>, ApiError> {
    let auth = caller.authorize(&s, Action::QuarantineDevices).await?;
    let rep = s
        .devices
        .quarantine(&auth, &caller.ctx, &id, &body(b)?.reason)
        .await?;
    Ok(Ack::ok(rep.receipt.clone(), rep))
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/release", tag = "devices", params(("id" = String, Path)), responses((status = 200, description = "Released; the device must enroll again")))]
pub async fn release(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::QuarantineDevices).await?;
    let r = s.devices.release(&auth, &caller.ctx, &id).await?;
    Ok(Ack::ok(
        r,
        serde_json::json!({"device": id, "status": "registered"}),
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/stats", tag = "devices", responses((status = 200, description = "Ingest counters")))]
pub async fn stats(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<cf_platform::devices::IngestStats>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadDevices).await?;
    // City-wide ingest counters: not an organisation's to read.
    auth.city_only("the city's device ingest statistics")?;
    Ok(Json(s.devices.stats()))
}

#[utoipa::path(get, path = "/api/v1/devices/crl", tag = "devices", responses((status = 200, description = "The current CRL (PEM); public, like any CRL distribution point")))]
pub async fn crl(State(s): State<AppState>) -> Result<Response, ApiError> {
    let pem = s.devices.crl().await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], pem).into_response())
}

/// A vendor's firmware signing key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VendorKey {
    /// Vendor as in the registry.
    pub vendor: String,
    /// `ecdsa-p256`, `ed25519` or `sm2`.
    pub alg: String,
    /// Raw public key, hex (SEC1 uncompressed for P-256 and SM2).
    pub public_key: String,
}

#[utoipa::path(post, path = "/api/v1/devices/vendor-keys", tag = "devices", request_body = VendorKey, responses((status = 200, description = "Trusted")))]
pub async fn trust_vendor(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<VendorKey>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    let v = body(b)?;
    let alg = cf_crypto::devkey::KeyAlg::parse(&v.alg)
        .ok_or_else(|| ApiError::invalid("alg", "use ecdsa-p256, ed25519 or sm2"))?;
    let r = s
        .devices
        .trust_vendor(&auth, &caller.ctx, &v.vendor, alg, &v.public_key)
        .await?;
    Ok(Ack::ok(r, serde_json::json!({"vendor": v.vendor})))
}

#[utoipa::path(post, path = "/api/v1/devices/firmware", tag = "devices", responses((status = 200, description = "Manifest accepted (vendor signature verified)"), (status = 400, body = ErrorBody)))]
pub async fn add_firmware(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<cf_device::firmware::SignedManifest>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDevices).await?;
    let m = body(b)?;
    let out = serde_json::json!({"vendor": m.manifest.vendor, "model": m.manifest.model, "version": m.manifest.version});
    let r = s.devices.add_firmware(&auth, &caller.ctx, m).await?;
    Ok(Ack::ok(r, out))
}

/// The transport peer, when the server recorded it (absent in in-process router tests).
pub struct Peer(Option<crate::PeerAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<crate::PeerAddr>>()
                .map(|c| c.0.clone()),
        ))
    }
}

fn peer(_: &HeaderMap, ci: &Peer) -> Option<Vec<u8>> {
    ci.0.as_ref().and_then(|c| c.1.as_ref().map(|d| d.to_vec()))
}

#[utoipa::path(post, path = "/api/v1/devices/telemetry", tag = "devices", request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 202, description = "Accepted (or a duplicate, dropped)"), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn telemetry(
    State(s): State<AppState>,
    headers: HeaderMap,
    ci: Peer,
    msg: Bytes,
) -> Result<Response, ApiError> {
    let Some(der) = peer(&headers, &ci) else {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "device telemetry needs the device's client certificate",
        ));
    };
    let id = s.devices.authenticate_cert(&der).await?;
    let addr = ci.0.as_ref().map(|c| c.0.ip().to_string());
    let out = s.devices.ingest(&msg, "", Some(&id), addr.as_deref()).await;
    match out.verdict {
        Verdict::Accepted { late } => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"result": "accepted", "late": late})),
        )
            .into_response()),
        Verdict::Duplicate => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"result": "duplicate"})),
        )
            .into_response()),
        Verdict::Rejected(r) => Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("telemetry refused: {}", r.kind()),
        )),
    }
}

fn csr_from(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let text = std::str::from_utf8(body).ok();
    if let Some(t) = text
        && t.contains("-----BEGIN")
    {
        let b64: String = t
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ApiError::invalid("body", "PEM CSR is not valid base64"));
    }
    match text {
        Some(t) => {
            let compact: String = t.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| {
                    ApiError::invalid(
                        "body",
                        "expected a base64 DER PKCS#10 request (RFC 7030 §4.2) or PEM",
                    )
                })
        }
        None => Err(ApiError::invalid(
            "body",
            "expected a base64 DER PKCS#10 request (RFC 7030 §4.2) or PEM",
        )),
    }
}

fn chain(e: Enrolled) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        format!("{}{}", e.cert_pem, e.ca_pem),
    )
        .into_response()
}

#[utoipa::path(get, path = "/.well-known/est/cacerts", tag = "devices", responses((status = 200, description = "The device CA certificate, PEM")))]
pub async fn est_cacerts(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        s.devices.ca_pem().to_string(),
    )
        .into_response()
}

#[utoipa::path(post, path = "/.well-known/est/simpleenroll", tag = "devices", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "Certificate chain, PEM"), (status = 401, body = ErrorBody)))]
pub async fn est_enroll(
    State(s): State<AppState>,
    headers: HeaderMap,
    ci: Peer,
    csr: Bytes,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "an enrollment token is required (Authorization: Bearer cfe_…)",
            )
        })?;
    let der = csr_from(&csr)?;
    let ctx = ctx_of(&headers, &ci);
    match s.devices.enroll(&ctx, token.trim(), &der).await {
        Ok(e) => Ok(chain(e)),
        Err(e) => {
            if matches!(e, cf_platform::PlatformError::Unauthenticated(_)) {
                // Summarised per source and minute: made-up tokens cannot flood the ledger.
                s.tokens
                    .audit_denied(
                        &ctx,
                        "anonymous",
                        "/.well-known/est/simpleenroll",
                        "device.enroll",
                    )
                    .await;
            }
            Err(e.into())
        }
    }
}

#[utoipa::path(post, path = "/.well-known/est/simplereenroll", tag = "devices", request_body(content = String, content_type = "application/pkcs10"), responses((status = 200, description = "Renewed certificate chain, PEM"), (status = 401, body = ErrorBody)))]
pub async fn est_reenroll(
    State(s): State<AppState>,
    headers: HeaderMap,
    ci: Peer,
    csr: Bytes,
) -> Result<Response, ApiError> {
    let Some(cert) = peer(&headers, &ci) else {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "re-enrollment needs the device's current client certificate",
        ));
    };
    let der = csr_from(&csr)?;
    let ctx = ctx_of(&headers, &ci);
    Ok(chain(s.devices.renew_der(&ctx, &cert, &der).await?))
}

fn ctx_of(headers: &HeaderMap, ci: &Peer) -> cf_platform::tokens::RequestContext {
    let mut req = axum::http::Request::new(());
    *req.headers_mut() = headers.clone();
    if let Some(c) = &ci.0 {
        req.extensions_mut().insert(ConnectInfo(c.clone()));
    }
    let (parts, _) = req.into_parts();
    context(&parts)
}
