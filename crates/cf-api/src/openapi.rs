//! The OpenAPI 3 document, generated from the handlers' annotations and served at
//! `/api/openapi.json` (to authenticated callers, like every other route).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::auth::Caller;
use crate::handlers;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Chengfang API", description = "Smart-city security platform: audit ledger, tokens, and (as issues land) identity, data protection, devices and security operations."),
    paths(
        handlers::healthz, handlers::readyz, handlers::whoami, handlers::rotate,
        handlers::create_token, handlers::list_tokens, handlers::revoke_token,
        handlers::audit_records, handlers::audit_checkpoint, handlers::inclusion_proof,
        handlers::consistency_proof, handlers::audit_report, openapi_json, crate::metrics::metrics,
        crate::kms::create_key, crate::kms::list_keys, crate::kms::get_key, crate::kms::wrapping_key,
        crate::kms::rotate, crate::kms::configure, crate::kms::destroy, crate::kms::encrypt,
        crate::kms::decrypt, crate::kms::rewrap, crate::kms::data_key, crate::kms::sign,
        crate::kms::verify, crate::kms::blind_index, crate::kms::hash,
        crate::data::register, crate::data::list, crate::data::rows, crate::data::request,
        crate::data::exports, crate::data::decide, crate::data::deliver, crate::data::trace,
        crate::devices::register, crate::devices::list, crate::devices::get,
        crate::devices::import, crate::devices::enrollment_token, crate::devices::revoke,
        crate::devices::quarantine, crate::devices::release, crate::devices::stats,
        crate::devices::crl, crate::devices::trust_vendor, crate::devices::add_firmware,
        crate::devices::telemetry, crate::devices::est_cacerts, crate::devices::est_enroll,
        crate::devices::est_reenroll,
        crate::identity::create_user, crate::identity::users,
        crate::identity::create_org, crate::identity::orgs, crate::identity::org, crate::identity::add_department,
        crate::identity::passkey_begin, crate::identity::passkey_finish, crate::identity::passkeys, crate::identity::remove_passkey, crate::identity::passkey_login_begin, crate::identity::passkey_login_finish, crate::identity::login,
        crate::identity::change_password, crate::identity::totp_begin, crate::identity::totp_confirm,
        crate::identity::sessions, crate::identity::end_session, crate::identity::admin_reset,
        crate::identity::reset_begin, crate::identity::reset_complete,
        crate::oidc::register_client, crate::oidc::clients, crate::oidc::remove_client,
        crate::oidc::rotate_keys, crate::identity::disable_user, crate::identity::enable_user, crate::identity::rights_report, crate::identity::set_real_name, crate::identity::set_roles, crate::blobs::encrypt_stream, crate::blobs::decrypt_stream, crate::identity::issue_certificate, crate::identity::login_certificate, crate::identity::remove_certificate,
        handlers::ingest_syslog, handlers::ingest_ndjson, handlers::ingest_limits,
        crate::events::search, crate::events::partitions, crate::alerts::list, crate::alerts::assign, crate::alerts::comment, crate::alerts::close, crate::alerts::incidents,
        crate::rules::list, crate::rules::refused, crate::rules::enable, crate::rules::disable, crate::rules::tags,
        crate::rules::suppressions, crate::rules::suppress, crate::rules::lift, crate::rules::hunt
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "system"), (name = "auth"), (name = "audit"), (name = "kms"), (name = "data"), (name = "devices"), (name = "identity"), (name = "alerts"), (name = "rules"))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/openapi.json", tag = "system", responses((status = 200, description = "This document")))]
pub async fn openapi_json(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
