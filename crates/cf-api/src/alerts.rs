//! Alert routes (SA-3): the de-duplicated alert book, and the operator's assign, comment, close.

use axum::Json;
use axum::extract::{Path, Query, State};
use cf_platform::alerts::AlertRecord;
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

/// Filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AlertQuery {
    /// `open`, `assigned` or `closed`.
    pub status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery), responses((status = 200, description = "Alerts, newest first, one per kind and entity with its count")))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Vec<AlertRecord>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadAlerts).await?;
    Ok(Json(s.alerts.list(&auth, q.status.as_deref()).await?))
}

/// What to do.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Assignee (assign), note (comment) or reason (close).
    pub text: String,
}

async fn step(
    s: AppState,
    caller: Caller,
    id: String,
    b: JsonBody<Step>,
    what: &str,
) -> Result<Ack<AlertRecord>, ApiError> {
    let auth = caller.authorize(&s, Action::HandleAlerts).await?;
    let t = body(b)?.text;
    let (r, receipt) = match what {
        "assign" => s.alerts.assign(&auth, &caller.ctx, &id, &t).await?,
        "comment" => s.alerts.comment(&auth, &caller.ctx, &id, &t).await?,
        _ => s.alerts.close(&auth, &caller.ctx, &id, &t).await?,
    };
    Ok(Ack::ok(receipt, r))
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/assign", tag = "alerts", params(("id" = String, Path)), request_body = Step, responses((status = 200, description = "Assigned"), (status = 404, body = ErrorBody)))]
pub async fn assign(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Step>,
) -> Result<Ack<AlertRecord>, ApiError> {
    step(s, caller, id, b, "assign").await
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/comment", tag = "alerts", params(("id" = String, Path)), request_body = Step, responses((status = 200, description = "Noted")))]
pub async fn comment(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Step>,
) -> Result<Ack<AlertRecord>, ApiError> {
    step(s, caller, id, b, "comment").await
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/close", tag = "alerts", params(("id" = String, Path)), request_body = Step, responses((status = 200, description = "Closed")))]
pub async fn close(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Step>,
) -> Result<Ack<AlertRecord>, ApiError> {
    step(s, caller, id, b, "close").await
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "alerts", responses((status = 200, description = "Alerts grouped by entity, with the attack-chain stages they reach")))]
pub async fn incidents(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_detect::incidents::Incident>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadAlerts).await?;
    Ok(Json(s.alerts.incidents(&auth).await?))
}
