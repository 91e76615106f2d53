//! Authentication of every request: the bearer token becomes a `Principal`; failures are
//! audited as `access.denied` (AUD-1) and answered 401 without saying which part was wrong.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use cf_core::ErrorCode;
use cf_platform::authz::{self, Action, Authorized, Principal};
use cf_platform::tokens::RequestContext;

use crate::AppState;
use crate::error::ApiError;

/// An authenticated caller with its request context.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// From where, which request.
    pub ctx: RequestContext,
    object: String,
}

/// The request context of a request: client address and request id.
pub fn context(parts: &Parts) -> RequestContext {
    let source_addr = parts
        .extensions
        .get::<ConnectInfo<crate::PeerAddr>>()
        .map(|c| c.0.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .chars()
        .take(64)
        .collect();
    RequestContext {
        source_addr,
        request_id,
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ctx = context(parts);
        let object = parts.uri.path().to_string();
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(bearer) = bearer else {
            state
                .tokens
                .audit_denied(&ctx, "anonymous", &object, "authenticate")
                .await;
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "missing `Authorization: Bearer <token>` header",
            ));
        };
        let bearer = bearer.trim();
        let who = if bearer.starts_with("cfs_") {
            state
                .identity
                .authenticate(bearer, Some(&ctx.source_addr))
                .await
        } else {
            state.tokens.authenticate(bearer).await
        };
        match who {
            Ok(principal) => Ok(Caller {
                principal,
                ctx,
                object,
            }),
            Err(e) => {
                state
                    .tokens
                    .audit_denied(&ctx, "anonymous", &object, "authenticate")
                    .await;
                Err(e.into())
            }
        }
    }
}

impl Caller {
    /// Authorise `action`; a refusal is audited.
    pub async fn authorize(
        &self,
        state: &AppState,
        action: Action,
    ) -> Result<Authorized, ApiError> {
        match authz::authorize(&self.principal, action) {
            Ok(a) => {
                state.rights.note(&self.principal.id, action);
                Ok(a)
            }
            Err(e) => {
                state
                    .tokens
                    .audit_denied(&self.ctx, &self.principal.id, &self.object, action.as_str())
                    .await;
                Err(e.into())
            }
        }
    }
}
