//! Governed data routes (MSK-3, MSK-4, PRV-1): datasets, reads masked by the caller's role, and
//! the export workflow request → approval → delivery, plus tracing a leaked copy.

use axum::Json;
use axum::extract::{Path, Query, State};
use cf_platform::authz::Action;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::ack::Ack;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::invalid("body", e.body_text()))
}

/// A dataset to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDataset {
    /// Name.
    pub name: String,
    /// Database URL (sqlite://, postgres://, mysql://).
    pub source: String,
    /// Table (`schema.table` on PostgreSQL).
    pub table: String,
    /// Column that identifies a row.
    pub key_column: String,
}

#[utoipa::path(post, path = "/api/v1/datasets", tag = "data", request_body = NewDataset, responses((status = 201, description = "The dataset (source without password)"), (status = 400, body = ErrorBody)))]
pub async fn register(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<NewDataset>,
) -> Result<Ack<cf_platform::dataflow::Dataset>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageDatasets).await?;
    let d = body(b)?;
    let (ds, r) = s
        .data
        .register(
            &auth,
            &caller.ctx,
            &d.name,
            &d.source,
            &d.table,
            &d.key_column,
        )
        .await?;
    Ok(Ack::created(r, ds))
}

#[utoipa::path(get, path = "/api/v1/datasets", tag = "data", responses((status = 200, description = "Datasets")))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::dataflow::Dataset>>, ApiError> {
    let action = if caller.principal.roles.contains(&cf_platform::Role::Admin) {
        Action::ManageDatasets
    } else {
        Action::ReadData
    };
    let auth = caller.authorize(&s, action).await?;
    Ok(Json(s.data.datasets(&auth).await?))
}

/// Paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Limit {
    /// Rows (default 100, at most 100,000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/datasets/{name}/rows", tag = "data", params(("name" = String, Path), Limit), responses((status = 200, description = "Rows masked by the caller's role; `policy` names the policy")))]
pub async fn rows(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Ack<cf_platform::dataflow::MaskedRows>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadData).await?;
    let (rows, r) = s
        .data
        .read(&auth, &caller.ctx, &name, q.limit.unwrap_or(100))
        .await?;
    Ok(Ack::ok(r, rows))
}

/// An export request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExport {
    /// Dataset.
    pub dataset: String,
    /// Who receives the copy.
    pub recipient: String,
    /// Role whose masking the copy gets (e.g. `analyst`).
    pub recipient_role: String,
    /// Why.
    pub purpose: String,
}

#[utoipa::path(post, path = "/api/v1/exports", tag = "data", request_body = NewExport, responses((status = 201, description = "The request")))]
pub async fn request(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<NewExport>,
) -> Result<Ack<cf_platform::dataflow::Export>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadData).await?;
    let e = body(b)?;
    let (x, r) = s
        .data
        .request(
            &auth,
            &caller.ctx,
            &e.dataset,
            &e.recipient,
            &e.recipient_role,
            &e.purpose,
        )
        .await?;
    Ok(Ack::created(r, x))
}

#[utoipa::path(get, path = "/api/v1/exports", tag = "data", responses((status = 200, description = "Requests (all for approvers, own for others)")))]
pub async fn exports(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::dataflow::Export>>, ApiError> {
    let action = if caller.principal.roles.contains(&cf_platform::Role::Admin) {
        Action::ApproveExports
    } else {
        Action::ReadData
    };
    let auth = caller.authorize(&s, action).await?;
    Ok(Json(s.data.exports(&auth).await?))
}

/// A decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Note kept in the ledger.
    #[serde(default)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/exports/{id}/decision", tag = "data", params(("id" = String, Path)), request_body = Decision, responses((status = 200, description = "The request after the decision"), (status = 403, body = ErrorBody)))]
pub async fn decide(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Decision>,
) -> Result<Ack<cf_platform::dataflow::Export>, ApiError> {
    let auth = caller.authorize(&s, Action::ApproveExports).await?;
    let d = body(b)?;
    let (x, r) = s
        .data
        .decide(&auth, &caller.ctx, &id, d.approve, &d.reason)
        .await?;
    Ok(Ack::ok(r, x))
}

#[utoipa::path(post, path = "/api/v1/exports/{id}/deliver", tag = "data", params(("id" = String, Path)), responses((status = 200, description = "The masked, watermarked CSV and its digest; once only"), (status = 409, body = ErrorBody)))]
pub async fn deliver(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<cf_platform::dataflow::Delivery>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadData).await?;
    let (d, r) = s.data.deliver(&auth, &caller.ctx, &id).await?;
    Ok(Ack::ok(r, d))
}

/// A leaked copy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TraceReq {
    /// Dataset it was exported from.
    pub dataset: String,
    /// The copy as CSV text.
    pub csv: String,
}

#[utoipa::path(post, path = "/api/v1/exports/trace", tag = "data", request_body = TraceReq, responses((status = 200, description = "The recipient and exports named, with every candidate's evidence")))]
pub async fn trace(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<TraceReq>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::TraceLeaks).await?;
    let t = body(b)?;
    let (v, r) = s.data.trace(&auth, &caller.ctx, &t.dataset, &t.csv).await?;
    Ok(Ack::ok(r, v))
}
