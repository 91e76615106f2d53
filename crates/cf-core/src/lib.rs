//! Shared vocabulary of every Chengfang crate: the closed error-code set, injected time,
//! the city's layers and data grades, and `Secret<T>` which never prints its content.
//!
//! Architecture invariant: this crate knows nothing about storage, networks or any engine.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The closed set of error codes every API error maps to. The HTTP status of each code is
/// defined once, in `cf-api`; CLI exit codes are derived from the same set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was malformed or failed validation.
    InvalidInput,
    /// No or bad credentials.
    Unauthenticated,
    /// Authenticated but not allowed.
    Forbidden,
    /// The object does not exist (or the caller may not know it exists).
    NotFound,
    /// The object exists already or the request conflicts with current state.
    Conflict,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// The caller exceeded a rate limit or quota.
    RateLimited,
    /// The audit ledger could not record the action, so it was refused (fail closed, AUD-3).
    AuditUnavailable,
    /// A backend (database, bus) is unavailable.
    Unavailable,
    /// The request did not complete within its deadline.
    Timeout,
    /// A bug or unexpected state; details are in the server log, never in the response.
    Internal,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidInput,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::AuditUnavailable,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

    /// Stable snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time, UTC, with nanosecond precision; serialised as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] OffsetDateTime);

impl Timestamp {
    /// From nanoseconds since the Unix epoch; out-of-range values clamp to the epoch.
    pub fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }
    /// From whole seconds since the Unix epoch.
    pub fn from_unix_secs(secs: i64) -> Self {
        Self::from_unix_nanos(secs.saturating_mul(1_000_000_000))
    }
    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos()).unwrap_or(i64::MAX)
    }
    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.unix_nanos() / 1_000_000
    }
    /// Parse an RFC 3339 string.
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(|t| Timestamp(t.to_offset(time::UtcOffset::UTC)))
    }
    /// The underlying date-time.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
    /// The UTC calendar day, `YYYY-MM-DD` (the event store's partition name).
    pub fn utc_day(&self) -> String {
        let d = self.0.to_offset(time::UtcOffset::UTC).date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }
    /// This time plus a duration (saturating).
    pub fn plus(&self, d: std::time::Duration) -> Self {
        Self::from_unix_nanos(
            self.unix_nanos()
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }
    /// This time minus a duration (saturating).
    pub fn minus(&self, d: std::time::Duration) -> Self {
        Self::from_unix_nanos(
            self.unix_nanos()
                .saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}ns", self.unix_nanos()),
        }
    }
}

/// The only source of "now". Production wires [`SystemClock`]; tests wire [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock. This is the one place the platform reads it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to; for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            nanos: AtomicI64::new(start.unix_nanos()),
        }
    }
    /// Move the clock forward.
    pub fn advance(&self, d: std::time::Duration) {
        self.nanos.fetch_add(
            i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
    /// Set the clock.
    pub fn set(&self, t: Timestamp) {
        self.nanos.store(t.unix_nanos(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The five layers of a smart city (requirements §1); every asset belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Cameras, sensors, traffic lights, meters (终端感知层).
    TerminalPerception,
    /// Edge gateways and local analytics boxes (边缘计算层).
    EdgeComputing,
    /// Extranet, 5G/Wi-Fi, private radio (网络连接层).
    NetworkConnection,
    /// City data platform, cloud, databases, APIs (数字平台层).
    DigitalPlatform,
    /// E-government and other city applications (应用服务层).
    ApplicationService,
}

impl Layer {
    /// Every layer, bottom to top.
    pub const ALL: [Layer; 5] = [
        Layer::TerminalPerception,
        Layer::EdgeComputing,
        Layer::NetworkConnection,
        Layer::DigitalPlatform,
        Layer::ApplicationService,
    ];
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::TerminalPerception => "terminal_perception",
            Layer::EdgeComputing => "edge_computing",
            Layer::NetworkConnection => "network_connection",
            Layer::DigitalPlatform => "digital_platform",
            Layer::ApplicationService => "application_service",
        }
    }
}

/// Data grades (DAT-1), lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// Public data.
    Public,
    /// Internal data.
    Internal,
    /// Sensitive personal information.
    SensitivePersonal,
    /// Important data (GB/T 43697).
    Important,
}

/// A value that must never appear in logs, errors or API responses: `Debug` and `Display`
/// print `[redacted]`, and it deliberately does not implement `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a secret.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// Read the secret; every call site is a place where key material is handled.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Parse a human duration such as `30s`, `15m`, `12h`, `7d`, `2w` (used by CLI flags and config).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; use one of ms, s, m, h, d, w"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a whole number"))?;
    let secs = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        "w" => n.saturating_mul(7 * 86_400),
        other => {
            return Err(format!(
                "`{s}` has unknown unit `{other}`; use one of ms, s, m, h, d, w"
            ));
        }
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
        assert_eq!(c.now().unix_nanos(), 1_700_000_000_000_000_000);
        c.advance(std::time::Duration::from_secs(5));
        assert_eq!(c.now(), Timestamp::from_unix_secs(1_700_000_005));
    }

    #[test]
    fn timestamp_rfc3339_round_trip() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_123_456_789);
        let s = t.to_string();
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        let j = serde_json::to_string(&t).unwrap_or_default();
        assert!(j.contains("2023-11-14T22:13:20.123456789Z"), "{j}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("7").unwrap_err().contains("no unit"));
        assert!(parse_duration("7y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("x7d").is_err());
    }

    #[test]
    fn error_codes_are_distinct() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
