//! The application layer: the ports every edge implements (state store, event bus) and the
//! services that own the platform's invariants — authorise before acting, audit before acknowledging.
//!
//! Architecture invariant: knows no SQL, no NATS, no HTTP; edges plug in through `ports`.

pub mod alarm;
pub mod alerts;
pub mod archive;
pub mod audit;
pub mod authz;
pub mod dataflow;
pub mod devices;
pub mod identity;
pub mod kms;
pub mod logs;
pub mod metrics;
pub mod oidc;
pub mod orgs;
pub mod ports;
pub mod report;
pub mod rights;
pub mod rules;
pub mod scim;
pub mod sigma;
pub mod throttle;
pub mod tokens;
pub mod verify;

pub use audit::{AuditLedger, LedgerConfig, LedgerEntry, Receipt};
pub use authz::{Action, Authorized, Principal, Role};
pub use metrics::Metrics;

/// Errors of platform services, each mapped to one [`cf_core::ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Input failed validation.
    #[error("{0}")]
    InvalidInput(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// The caller lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// Authentication failed.
    #[error("{0}")]
    Unauthenticated(String),
    /// State conflict.
    #[error("{0}")]
    Conflict(String),
    /// The audit ledger could not record the action, so it did not happen (AUD-3).
    #[error("audit ledger unavailable: {0}")]
    AuditUnavailable(String),
    /// A backend failed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    RateLimited(String),
}

impl PlatformError {
    /// The error code this maps to.
    pub fn code(&self) -> cf_core::ErrorCode {
        use cf_core::ErrorCode as C;
        match self {
            PlatformError::InvalidInput(_) => C::InvalidInput,
            PlatformError::NotFound(_) => C::NotFound,
            PlatformError::Forbidden(_) => C::Forbidden,
            PlatformError::Unauthenticated(_) => C::Unauthenticated,
            PlatformError::Conflict(_) => C::Conflict,
            PlatformError::AuditUnavailable(_) => C::AuditUnavailable,
            PlatformError::Unavailable(_) => C::Unavailable,
            PlatformError::Internal(_) => C::Internal,
            PlatformError::RateLimited(_) => C::RateLimited,
        }
    }
}

impl From<cf_kms::KmsError> for PlatformError {
    fn from(e: cf_kms::KmsError) -> Self {
        use cf_kms::KmsError as K;
        match e {
            K::Rng | K::Io(_) => PlatformError::Internal(e.to_string()),
            K::Unseal(_) => PlatformError::Unavailable(e.to_string()),
            K::Version { .. } | K::Unsupported { .. } => PlatformError::Conflict(e.to_string()),
            _ => PlatformError::InvalidInput(e.to_string()),
        }
    }
}

impl From<ports::StoreError> for PlatformError {
    fn from(e: ports::StoreError) -> Self {
        match e {
            ports::StoreError::Conflict(m) => PlatformError::Conflict(m),
            ports::StoreError::NotFound(m) => PlatformError::NotFound(m),
            ports::StoreError::Invalid(m) => PlatformError::InvalidInput(m),
            other => PlatformError::Unavailable(other.to_string()),
        }
    }
}
