//! Event search routes (SA-1): the archived logs and alerts by time range, fields and free text.

use axum::Json;
use axum::extract::{Query, State};
use cf_core::Timestamp;
use cf_platform::authz::Action;
use cf_platform::ports::{EventPage, EventQuery, PartitionInfo};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Search parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Query: words, "phrases", `field:value` (topic, source, severity, host, user, src_ip,
    /// dst_ip, class_uid, body.path), AND / OR / NOT, parentheses. Empty: everything.
    pub q: Option<String>,
    /// Start: RFC 3339, or a duration back from now such as `24h` (default `24h`).
    pub from: Option<String>,
    /// End (exclusive): RFC 3339, or a duration back from now (default: now).
    pub to: Option<String>,
    /// Most events returned, newest first (default 100, at most 10,000).
    pub limit: Option<usize>,
}

/// A time bound: RFC 3339, or a duration before `now`.
pub fn parse_bound(what: &str, s: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    cf_core::parse_duration(s)
        .map(|d| now.minus(d))
        .map_err(|e| ApiError::invalid(what, format!("not RFC 3339 and not a duration: {e}")))
}

#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(SearchParams), responses((status = 200, description = "Matching events, newest first, with the total matched"), (status = 400, description = "The query or a time bound does not parse")))]
pub async fn search(
    State(s): State<AppState>,
    caller: Caller,
    Query(p): Query<SearchParams>,
) -> Result<Json<EventPage>, ApiError> {
    let auth = caller.authorize(&s, Action::SearchEvents).await?;
    let now = s.clock.now();
    let from = parse_bound("from", p.from.as_deref().unwrap_or("24h"), now)?;
    // Senders' clocks run a little ahead; "now" includes them.
    let to = match p.to.as_deref() {
        Some(t) => parse_bound("to", t, now)?,
        None => now.plus(std::time::Duration::from_secs(300)),
    };
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::invalid("limit", "must be 1 to 10000"));
    }
    let q = EventQuery {
        text: p.q.unwrap_or_default(),
        from,
        to,
        limit,
    };
    Ok(Json(s.events.search(&auth, &caller.ctx, &q).await?))
}

#[utoipa::path(get, path = "/api/v1/events/partitions", tag = "events", responses((status = 200, description = "The event store's day partitions, oldest first")))]
pub async fn partitions(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PartitionInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::SearchEvents).await?;
    Ok(Json(s.events.partitions(&auth).await?))
}
