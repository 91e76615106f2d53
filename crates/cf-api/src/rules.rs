//! Rule routes (SA-2, IDS-1): the loaded detection rules with their state and tags, the rules
//! refused at load with why, enable and disable with a reason, and suppressions with a scope and
//! an expiry — every change audited before it is acknowledged.

use axum::Json;
use axum::extract::{Path, Query, State};
use cf_platform::authz::Action;
use cf_platform::rules::{RuleInfo, Suppression};
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
pub struct RuleQuery {
    /// Tag prefix, e.g. `attack.t1003` or `attack.credential_access`.
    pub tag: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", params(RuleQuery), responses((status = 200, description = "Loaded rules with id, title, level, tags, kind and whether they are enabled (with who changed it, when and why)")))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<RuleQuery>,
) -> Result<Json<Vec<RuleInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadRules).await?;
    Ok(Json(s.rules.list(&auth, q.tag.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/rules/refused", tag = "rules", responses((status = 200, description = "Rule files that were not loaded, each with the reason")))]
pub async fn refused(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadRules).await?;
    Ok(Json(
        s.rules
            .refused(&auth)?
            .into_iter()
            .map(|(file, reason)| serde_json::json!({"file": file, "reason": reason}))
            .collect(),
    ))
}

/// Why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why the rule is enabled or disabled (kept in the audit ledger).
    pub reason: String,
}

async fn set(
    s: AppState,
    caller: Caller,
    id: String,
    b: JsonBody<Reason>,
    enabled: bool,
) -> Result<Ack<RuleInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageRules).await?;
    let r = body(b)?.reason;
    let (info, receipt) = s
        .rules
        .set_enabled(&auth, &caller.ctx, &id, enabled, &r)
        .await?;
    Ok(Ack::ok(receipt, info))
}

#[utoipa::path(post, path = "/api/v1/rules/{id}/enable", tag = "rules", params(("id" = String, Path)), request_body = Reason, responses((status = 200, description = "Enabled"), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Reason>,
) -> Result<Ack<RuleInfo>, ApiError> {
    set(s, caller, id, b, true).await
}

#[utoipa::path(post, path = "/api/v1/rules/{id}/disable", tag = "rules", params(("id" = String, Path)), request_body = Reason, responses((status = 200, description = "Disabled: its hits raise no alert"), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Reason>,
) -> Result<Ack<RuleInfo>, ApiError> {
    set(s, caller, id, b, false).await
}

/// Tag changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagChange {
    /// Tags to add (a-z 0-9 . _ -, up to 64 characters each).
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove (the rule file's own, or ones added before).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Why (kept in the audit ledger).
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/rules/{id}/tags", tag = "rules", params(("id" = String, Path)), request_body = TagChange, responses((status = 200, description = "The rule with its tags"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tags(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<TagChange>,
) -> Result<Ack<RuleInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageRules).await?;
    let c = body(b)?;
    let (info, receipt) = s
        .rules
        .edit_tags(&auth, &caller.ctx, &id, &c.add, &c.remove, &c.reason)
        .await?;
    Ok(Ack::ok(receipt, info))
}

/// A new suppression.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    /// The rule.
    pub rule_id: String,
    /// Only this host or group key (omit for every entity).
    pub entity: Option<String>,
    /// Why.
    pub reason: String,
    /// How long, seconds (60 … one year).
    pub expires_in_secs: i64,
}

#[utoipa::path(get, path = "/api/v1/rules/suppressions", tag = "rules", responses((status = 200, description = "Suppressions in force")))]
pub async fn suppressions(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Suppression>>, ApiError> {
    let auth = caller.authorize(&s, Action::ReadRules).await?;
    Ok(Json(s.rules.suppressions(&auth).await?))
}

#[utoipa::path(post, path = "/api/v1/rules/suppressions", tag = "rules", request_body = NewSuppression, responses((status = 200, description = "Suppressed until it expires"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn suppress(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<NewSuppression>,
) -> Result<Ack<Suppression>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageRules).await?;
    let n = body(b)?;
    let (sup, receipt) = s
        .rules
        .suppress(
            &auth,
            &caller.ctx,
            &n.rule_id,
            n.entity.as_deref(),
            &n.reason,
            n.expires_in_secs,
        )
        .await?;
    Ok(Ack::ok(receipt, sup))
}

#[utoipa::path(post, path = "/api/v1/rules/suppressions/{id}/lift", tag = "rules", params(("id" = String, Path)), request_body = Reason, responses((status = 200, description = "Lifted"), (status = 404, body = ErrorBody)))]
pub async fn lift(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: JsonBody<Reason>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageRules).await?;
    let r = body(b)?.reason;
    let receipt = s.rules.lift(&auth, &caller.ctx, &id, &r).await?;
    Ok(Ack::ok(receipt, serde_json::json!({"lifted": id})))
}

/// A retroactive hunt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hunt {
    /// Start: RFC 3339 or a duration back from now (`24h`, `30d`).
    pub from: String,
    /// End (exclusive): RFC 3339 or a duration back from now; default now.
    pub to: Option<String>,
    /// Only these rule ids (default: every loaded detection rule).
    pub rules: Option<Vec<String>>,
    /// Also raise alerts for the hits (rules enabled and not suppressed only).
    #[serde(default)]
    pub raise_alerts: bool,
    /// Most hits reported (default 10,000, at most 100,000).
    pub max_hits: Option<usize>,
}

#[utoipa::path(post, path = "/api/v1/rules/hunt", tag = "rules", request_body = Hunt, responses((status = 200, description = "Events read, Windows events judged, hits (rule, event, time, host), whether the limit stopped it, alerts raised"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn hunt(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<Hunt>,
) -> Result<Json<cf_platform::sigma::RetroReport>, ApiError> {
    let auth = caller.authorize(&s, Action::SearchEvents).await?;
    let h = body(b)?;
    let Some(sigma) = &s.sigma else {
        return Err(ApiError::invalid(
            "rules",
            "no Sigma rules are loaded (detect.sigma_rules)",
        ));
    };
    let now = s.clock.now();
    let from = crate::events::parse_bound("from", &h.from, now)?;
    let to = match &h.to {
        Some(t) => crate::events::parse_bound("to", t, now)?,
        None => now.plus(std::time::Duration::from_secs(300)),
    };
    let max = h.max_hits.unwrap_or(10_000);
    if max == 0 || max > 100_000 {
        return Err(ApiError::invalid("max_hits", "between 1 and 100000"));
    }
    let report = sigma
        .hunt_archive(
            &s.events,
            &s.ledger,
            &auth,
            &caller.ctx,
            (from, to),
            h.rules.as_deref(),
            h.raise_alerts.then_some(&s.bus),
            max,
        )
        .await?;
    Ok(Json(report))
}
