//! Typed JSON errors: one `ErrorCode → status` mapping for the whole API, and bodies that say
//! what was wrong and where, never internals or key material.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cf_core::ErrorCode;
use cf_platform::PlatformError;
use serde::Serialize;

/// The one mapping from error code to HTTP status.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An API error body: `{"error": {"code": "...", "message": "...", "field": "..."}}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Details of an error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    #[schema(value_type = String, example = "invalid_input")]
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// Where: the request field or parameter at fault, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    /// Code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }
    /// Invalid input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::InvalidInput,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        let code = e.code();
        let message = match code {
            // Internals go to the log, not to the client.
            ErrorCode::Internal | ErrorCode::Unavailable => {
                tracing::error!(error = %e, "request failed");
                match code {
                    ErrorCode::Internal => "internal error; see the server log".to_string(),
                    _ => "a backend is unavailable; see the server log".to_string(),
                }
            }
            ErrorCode::AuditUnavailable => {
                tracing::error!(error = %e, "request refused: audit ledger unavailable");
                "the action was refused because the audit ledger could not record it".to_string()
            }
            _ => e.to_string(),
        };
        ApiError::new(code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (status_of(self.code), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_an_error_status() {
        for c in ErrorCode::ALL {
            let s = status_of(c);
            assert!(s.is_client_error() || s.is_server_error(), "{c} -> {s}");
        }
    }
}
