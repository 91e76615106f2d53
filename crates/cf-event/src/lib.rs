//! The records every part of the platform exchanges: `AuditRecord` (the AUD-2 fields of one
//! audited action) and `Event` (an envelope on the bus), both versioned for long-term storage.
//!
//! Architecture invariant: pure data and its canonical encoding; no storage, no transport.

use cf_core::Timestamp;
use serde::{Deserialize, Serialize};

/// Version of the audit record encoding; records of every past version must stay readable.
pub const AUDIT_RECORD_VERSION: u32 = 1;

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action took effect.
    Success,
    /// The action was attempted and failed.
    Failure,
    /// The action was refused by authentication or authorisation.
    Denied,
}

impl Outcome {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audited action with the fields AUD-1/AUD-2 demand: event type, time, place (source
/// address), source system, subject identity, object, action, result and request id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Encoding version, [`AUDIT_RECORD_VERSION`] when written.
    pub v: u32,
    /// Dotted event type, e.g. `auth.login`, `ledger.checkpoint`, `config.reload`.
    pub event_type: String,
    /// When the action happened.
    pub time: Timestamp,
    /// Where it came from: the client address, or the host for internal actions.
    pub source_addr: String,
    /// Which system recorded it, e.g. `chengfang-api`.
    pub source_system: String,
    /// Who acted: a user id, token id, device id or `system`.
    pub subject: String,
    /// What was acted on, e.g. `token:3f2a…`, `/api/v1/audit/records`.
    pub object: String,
    /// The verb: `create`, `read`, `update`, `delete`, `login`, `revoke` …
    pub action: String,
    /// Outcome.
    pub result: Outcome,
    /// Correlates the record with the request and the server log.
    pub request_id: String,
    /// True for privileged functions (administration, key and policy changes) — AUD-4 reviews these.
    #[serde(default)]
    pub privileged: bool,
    /// Further non-secret detail.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl AuditRecord {
    /// A record with the required fields; `detail` empty, not privileged.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        event_type: impl Into<String>,
        time: Timestamp,
        source_addr: impl Into<String>,
        source_system: impl Into<String>,
        subject: impl Into<String>,
        object: impl Into<String>,
        action: impl Into<String>,
        result: Outcome,
        request_id: impl Into<String>,
    ) -> Self {
        AuditRecord {
            v: AUDIT_RECORD_VERSION,
            event_type: event_type.into(),
            time,
            source_addr: source_addr.into(),
            source_system: source_system.into(),
            subject: subject.into(),
            object: object.into(),
            action: action.into(),
            result,
            request_id: request_id.into(),
            privileged: false,
            detail: serde_json::Value::Null,
        }
    }

    /// Mark as a privileged action.
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    /// Attach detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Severity of events and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical: wake someone up.
    Critical,
}

/// An envelope on the event bus. `topic` routes it (`alarm.audit`, `city.device.telemetry` …);
/// `id` makes delivery idempotent for at-least-once consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; consumers de-duplicate on it.
    pub id: String,
    /// Routing topic, dot-separated.
    pub topic: String,
    /// When it was produced.
    pub time: Timestamp,
    /// Who produced it.
    pub source: String,
    /// Severity.
    pub severity: Severity,
    /// Body.
    pub payload: serde_json::Value,
}

/// Payloads a sender nests deeper than this are refused at intake (as malformed, kept raw). The
/// bus, the journal and the event store decode events with serde_json's recursion limit (128
/// levels), and the envelope and the intake's wrapping add levels around what was sent: a record
/// that parsed at intake could otherwise be acknowledged and then fail to decode downstream.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// Whether `v` nests more than `limit` arrays and objects deep (a scalar is depth 0, `[]` and
/// `{}` are 1). Walks with its own stack, so a value of any depth is safe to check.
pub fn nested_deeper_than(v: &serde_json::Value, limit: usize) -> bool {
    use serde_json::Value;
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(_) | Value::Object(_) if depth + 1 > limit => return true,
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nest(levels: usize) -> serde_json::Value {
        let text = format!(
            "{}1{}",
            "{\"a\":[".repeat(levels / 2),
            "]}".repeat(levels / 2)
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn nesting_depth_counts_arrays_and_objects() {
        assert!(!nested_deeper_than(&serde_json::json!(1), 0));
        assert!(nested_deeper_than(&serde_json::json!([]), 0));
        assert!(!nested_deeper_than(
            &serde_json::json!({"a": [1, {}], "b": 2}),
            3
        ));
        assert!(nested_deeper_than(
            &serde_json::json!({"a": [1, {"c": []}]}),
            3
        ));
        assert!(!nested_deeper_than(&nest(64), MAX_PAYLOAD_DEPTH));
        assert!(nested_deeper_than(&nest(66), MAX_PAYLOAD_DEPTH));
        // A payload that parsed at the limit no longer decodes inside its envelope: why the
        // intake refuses anything near it.
        let deep = nest(126);
        let e = Event {
            id: "e".into(),
            topic: "log.json".into(),
            time: Timestamp::from_unix_secs(0),
            source: "t".into(),
            severity: Severity::Info,
            payload: serde_json::json!({"record": deep}),
        };
        let bytes = serde_json::to_vec(&e).unwrap();
        assert!(serde_json::from_slice::<Event>(&bytes).is_err());
    }

    #[test]
    fn audit_record_golden_encoding() {
        // Golden: later versions must keep reading this exact v1 encoding.
        let golden = r#"{"v":1,"event_type":"auth.login","time":"2026-11-25T08:00:00Z","source_addr":"10.1.2.3","source_system":"chengfang-api","subject":"user:alice","object":"session","action":"login","result":"denied","request_id":"r1","privileged":false}"#;
        let r: AuditRecord = serde_json::from_str(golden).unwrap();
        assert_eq!(r.result, Outcome::Denied);
        assert_eq!(serde_json::to_string(&r).unwrap(), golden);
    }
}
