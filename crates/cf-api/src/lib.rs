//! The HTTPS API edge (API-1, API-3, API-5): axum routes over the platform services, TLS by
//! default, bearer-token authentication on every route but health and readiness, typed JSON
//! errors, a generated OpenAPI document and Prometheus metrics.
//!
//! Architecture invariant: the only crate that speaks HTTP. A state-changing handler can only
//! answer success with an [`ack::Ack`], which needs the ledger's `Receipt`.

pub mod ack;
pub mod alerts;
pub mod auth;
pub mod blobs;
mod ceremony;
pub mod data;
pub mod devices;
pub mod error;
pub mod events;
mod handlers;
pub mod identity;
pub mod kms;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod rules;
pub mod scim;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use cf_core::{SharedClock, Timestamp};
use cf_platform::ports::{EventBus, StateStore};
use cf_platform::tokens::Tokens;
use cf_platform::{AuditLedger, Metrics};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

/// Everything the handlers need.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Token service (authentication).
    pub tokens: Tokens,
    /// The audit ledger.
    pub ledger: AuditLedger,
    /// State store (readiness).
    pub store: Arc<dyn StateStore>,
    /// Event bus.
    pub bus: Arc<dyn EventBus>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Clock.
    pub clock: SharedClock,
    /// Start time.
    pub started: Timestamp,
    /// Key management.
    pub kms: cf_platform::kms::Kms,
    /// Datasets, masked reads and exports.
    pub data: cf_platform::dataflow::DataService,
    /// Device registry, enrollment, telemetry.
    pub devices: cf_platform::devices::DeviceService,
    /// User accounts, login, second factor, sessions.
    pub identity: cf_platform::identity::IdentityService,
    /// The OpenID Connect provider (single sign-on for the city's applications).
    pub oidc: cf_platform::oidc::OidcProvider,
    /// SCIM provisioning.
    pub scim: cf_platform::scim::ScimService,
    /// Rights use and the compliance report.
    pub rights: cf_platform::rights::RightsService,
    /// Log intake.
    pub logs: cf_platform::logs::LogIntake,
    /// The alert book.
    pub alerts: cf_platform::alerts::AlertBook,
    /// The event archive (search).
    pub events: cf_platform::archive::EventArchive,
    /// Detection rules: state and suppressions.
    pub rules: cf_platform::rules::RuleBook,
    /// The Sigma rules (for retroactive hunts), when configured.
    pub sigma: Option<cf_platform::sigma::SigmaStream>,
}

/// HTTP limits (API-2, API-3).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body.
    pub body_bytes: usize,
    /// Deadline for one request.
    pub request_timeout: Duration,
}

/// Largest blob streamed through `/api/v1/kms/keys/{name}/{en,de}crypt-stream` (64 GiB).
pub const BLOB_LIMIT_BYTES: usize = 64 << 30;

/// The full router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let x_request_id = axum::http::HeaderName::from_static("x-request-id");
    // Blobs stream through in chunks with memory flat, so they are held neither to the body
    // limit nor to the request deadline of the rest of the API (a large video takes minutes).
    let blob_routes = Router::new()
        .route(
            "/api/v1/kms/keys/{name}/encrypt-stream",
            post(blobs::encrypt_stream),
        )
        .route(
            "/api/v1/kms/keys/{name}/decrypt-stream",
            post(blobs::decrypt_stream),
        )
        .with_state(state.clone())
        .layer(axum::Extension(limits))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(BLOB_LIMIT_BYTES));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/v1/whoami", get(handlers::whoami))
        .route("/api/v1/auth/rotate", post(handlers::rotate))
        .route(
            "/api/v1/tokens",
            get(handlers::list_tokens).post(handlers::create_token),
        )
        .route("/api/v1/tokens/{id}", delete(handlers::revoke_token))
        .route("/api/v1/audit/records", get(handlers::audit_records))
        .route("/api/v1/audit/checkpoint", get(handlers::audit_checkpoint))
        .route(
            "/api/v1/audit/proof/inclusion",
            get(handlers::inclusion_proof),
        )
        .route(
            "/api/v1/audit/proof/consistency",
            get(handlers::consistency_proof),
        )
        .route("/api/v1/audit/report", get(handlers::audit_report))
        .route(
            "/api/v1/kms/keys",
            post(kms::create_key).get(kms::list_keys),
        )
        .route("/api/v1/kms/keys/{name}", get(kms::get_key))
        .route("/api/v1/kms/keys/{name}/rotate", post(kms::rotate))
        .route("/api/v1/kms/keys/{name}/config", post(kms::configure))
        .route("/api/v1/kms/keys/{name}/destroy", post(kms::destroy))
        .route("/api/v1/kms/keys/{name}/encrypt", post(kms::encrypt))
        .route("/api/v1/kms/keys/{name}/decrypt", post(kms::decrypt))
        .route("/api/v1/kms/keys/{name}/rewrap", post(kms::rewrap))
        .route("/api/v1/kms/keys/{name}/datakey", post(kms::data_key))
        .route("/api/v1/kms/keys/{name}/sign", post(kms::sign))
        .route("/api/v1/kms/keys/{name}/verify", post(kms::verify))
        .route(
            "/api/v1/kms/keys/{name}/blind-index",
            post(kms::blind_index),
        )
        .route("/api/v1/kms/wrapping-key", get(kms::wrapping_key))
        .route("/api/v1/kms/hash", post(kms::hash))
        .route("/api/v1/datasets", post(data::register).get(data::list))
        .route("/api/v1/datasets/{name}/rows", get(data::rows))
        .route("/api/v1/exports", post(data::request).get(data::exports))
        .route("/api/v1/exports/trace", post(data::trace))
        .route("/api/v1/exports/{id}/decision", post(data::decide))
        .route("/api/v1/exports/{id}/deliver", post(data::deliver))
        .route(
            "/api/v1/devices",
            post(devices::register).get(devices::list),
        )
        .route("/api/v1/devices/import", post(devices::import))
        .route("/api/v1/devices/stats", get(devices::stats))
        .route("/api/v1/devices/crl", get(devices::crl))
        .route("/api/v1/devices/telemetry", post(devices::telemetry))
        .route("/api/v1/devices/vendor-keys", post(devices::trust_vendor))
        .route("/api/v1/devices/firmware", post(devices::add_firmware))
        .route("/api/v1/devices/{id}", get(devices::get))
        .route(
            "/api/v1/devices/{id}/enrollment-token",
            post(devices::enrollment_token),
        )
        .route("/api/v1/devices/{id}/revoke", post(devices::revoke))
        .route("/api/v1/devices/{id}/quarantine", post(devices::quarantine))
        .route("/api/v1/devices/{id}/release", post(devices::release))
        .route("/api/v1/events", get(events::search))
        .route("/api/v1/events/partitions", get(events::partitions))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/incidents", get(alerts::incidents))
        .route("/api/v1/alerts/{id}/assign", post(alerts::assign))
        .route("/api/v1/alerts/{id}/comment", post(alerts::comment))
        .route("/api/v1/alerts/{id}/close", post(alerts::close))
        .route("/api/v1/rules", get(rules::list))
        .route("/api/v1/rules/refused", get(rules::refused))
        .route("/api/v1/rules/hunt", post(rules::hunt))
        .route(
            "/api/v1/rules/suppressions",
            get(rules::suppressions).post(rules::suppress),
        )
        .route("/api/v1/rules/suppressions/{id}/lift", post(rules::lift))
        .route("/api/v1/rules/{id}/enable", post(rules::enable))
        .route("/api/v1/rules/{id}/disable", post(rules::disable))
        .route("/api/v1/rules/{id}/tags", post(rules::tags))
        .route("/api/v1/ingest/limits", get(handlers::ingest_limits))
        .merge(
            Router::new()
                .route("/api/v1/ingest/syslog", post(handlers::ingest_syslog))
                .route("/api/v1/ingest/ndjson", post(handlers::ingest_ndjson))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    handlers::ingest_gate,
                )),
        )
        .route(
            "/api/v1/users",
            post(identity::create_user).get(identity::users),
        )
        .route(
            "/api/v1/orgs",
            post(identity::create_org).get(identity::orgs),
        )
        .route("/api/v1/orgs/{id}", get(identity::org))
        .route(
            "/api/v1/orgs/{id}/departments",
            post(identity::add_department),
        )
        .route("/api/v1/auth/login", post(identity::login))
        .route(
            "/api/v1/auth/passkey/begin",
            post(identity::passkey_login_begin),
        )
        .route(
            "/api/v1/auth/passkey/finish",
            post(identity::passkey_login_finish),
        )
        .route("/api/v1/account/passkeys", get(identity::passkeys))
        .route(
            "/api/v1/account/passkeys/begin",
            post(identity::passkey_begin),
        )
        .route(
            "/api/v1/account/passkeys/finish",
            post(identity::passkey_finish),
        )
        .route(
            "/api/v1/account/passkeys/{id}",
            delete(identity::remove_passkey),
        )
        .route(
            "/api/v1/auth/certificate",
            post(identity::login_certificate),
        )
        .route(
            "/api/v1/account/certificate",
            post(identity::issue_certificate),
        )
        .route(
            "/api/v1/account/certificate/{fingerprint}",
            delete(identity::remove_certificate),
        )
        .route("/api/v1/auth/reset", post(identity::reset_begin))
        .route(
            "/api/v1/auth/reset/complete",
            post(identity::reset_complete),
        )
        .route(
            "/api/v1/users/{username}/reset",
            post(identity::admin_reset),
        )
        .route("/api/v1/account/password", post(identity::change_password))
        .route("/api/v1/account/totp", post(identity::totp_begin))
        .route("/api/v1/account/totp/confirm", post(identity::totp_confirm))
        .route("/api/v1/sessions", get(identity::sessions))
        .route("/api/v1/sessions/{handle}", delete(identity::end_session))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/oidc/jwks", get(oidc::jwks))
        .route("/account", get(pages::account))
        .route("/account/login", post(pages::login))
        .route("/account/logout", post(pages::logout))
        .route("/account/password", post(pages::password))
        .route("/account/mfa", post(pages::mfa))
        .route("/account/passkey", post(pages::passkey_sign_in))
        .route("/account/passkey/finish", post(pages::passkey_signed_in))
        .route("/account/passkeys", post(pages::passkey_add))
        .route("/account/passkeys/finish", post(pages::passkey_added))
        .route("/account/passkeys/{id}/remove", post(pages::passkey_remove))
        .route(
            "/account/sessions/{handle}/end",
            post(pages::end_own_session),
        )
        .route("/admin", get(pages::admin))
        .route("/admin/users", post(pages::create_user))
        .route("/admin/orgs", post(pages::create_org))
        .route("/admin/users/{username}/{what}", post(pages::user_action))
        .route("/admin/sessions/{handle}/end", post(pages::end_any_session))
        .route(
            "/oidc/authorize",
            get(oidc::authorize_get).post(oidc::authorize_post),
        )
        .route("/oidc/login", post(oidc::login))
        .route("/oidc/passkey", post(oidc::passkey_begin))
        .route("/oidc/passkey/finish", post(oidc::passkey_finish))
        .route("/oidc/token", post(oidc::token))
        .route(
            "/oidc/userinfo",
            get(oidc::userinfo_get).post(oidc::userinfo_post),
        )
        .route("/oidc/introspect", post(oidc::introspect))
        .route("/oidc/revoke", post(oidc::revoke))
        .route(
            "/oidc/logout",
            get(oidc::logout_get).post(oidc::logout_post),
        )
        .route(
            "/api/v1/oidc/clients",
            post(oidc::register_client).get(oidc::clients),
        )
        .route("/api/v1/oidc/clients/{id}", delete(oidc::remove_client))
        .route("/api/v1/oidc/keys/rotate", post(oidc::rotate_keys))
        .route("/api/v1/rights/report", get(identity::rights_report))
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(scim::resource_types))
        .route(
            "/scim/v2/ResourceTypes/{name}",
            get(scim::resource_type_one),
        )
        .route("/scim/v2/Schemas", get(scim::schemas))
        .route("/scim/v2/Schemas/{id}", get(scim::schema_one))
        .route("/scim/v2/Bulk", post(scim::bulk))
        .route("/scim/v2/{res}", get(scim::list).post(scim::create))
        .route("/scim/v2/{res}/.search", post(scim::search))
        .route(
            "/scim/v2/{res}/{id}",
            get(scim::get)
                .put(scim::replace)
                .patch(scim::patch)
                .delete(scim::delete),
        )
        .route(
            "/api/v1/users/{username}/disable",
            post(identity::disable_user),
        )
        .route(
            "/api/v1/users/{username}/enable",
            post(identity::enable_user),
        )
        .route(
            "/api/v1/users/{username}/real-name",
            post(identity::set_real_name),
        )
        .route(
            "/api/v1/users/{username}/roles",
            axum::routing::put(identity::set_roles),
        )
        .route("/.well-known/est/cacerts", get(devices::est_cacerts))
        .route("/.well-known/est/simpleenroll", post(devices::est_enroll))
        .route(
            "/.well-known/est/simplereenroll",
            post(devices::est_reenroll),
        )
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(axum::Extension(limits))
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .merge(blob_routes)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// The client's address, whatever the transport, and the client certificate (DER) it
/// presented in the TLS handshake, if any (already checked against the device CA by rustls).
#[derive(Debug, Clone)]
pub struct PeerAddr(pub SocketAddr, pub Option<Arc<Vec<u8>>>);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for PeerAddr
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        let cert = s
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(c.as_ref().to_vec()));
        PeerAddr(*s.remote_addr(), cert)
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*s.remote_addr(), None)
    }
}

/// Serve `app` on `listener` (TLS when `tls` is given) until `shutdown` resolves; in-flight
/// requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(cfg) => {
            let l = tls::TlsListener::new(listener, cfg)?;
            axum::serve(l, app.into_make_service_with_connect_info::<PeerAddr>())
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<PeerAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
    }
}
