//! The Sigma engine (SA-1, IDS-1): parses SigmaHQ rules, compiles them once into matchers
//! (every value modifier of the specification, keyword lists, `1 of`/`all of` conditions), routes
//! them by log source, and matches JSON events such as `evtx_dump` output; correlation rules
//! (event_count, value_count, temporal, temporal_ordered) run over the detections' hits.
//!
//! Architecture invariant: no I/O and no clock — rules arrive as text, events as JSON values.
//! Anything unsupported is refused per rule with the reason, never silently half-applied.

mod condition;
mod correlation;
mod event;
mod json;
mod literals;
mod logsource;
mod matcher;
mod rule;
mod yaml;

pub use correlation::{
    Captured, CorrelationHit, CorrelationKind, CorrelationRule, Correlator, CountCondition,
    MAX_WINDOW, parse_timespan,
};
pub use event::{EvtxEvent, FieldSource, FlatEvent};
pub use logsource::Route;
pub use rule::{CompiledRule, Level, RuleSet, SigmaDocument, compile_documents, compile_rule};

/// Entry points for fuzz targets and corpus replays.
pub mod fuzzing {
    /// Read an untrusted JSON line as `chengfang hunt` does ([`crate::FlatEvent`], through the
    /// fast reader) and as a `serde_json::Value`: both must accept or refuse it alike (with the
    /// same error), an event the fast reader takes must be the one serde_json reads, and an
    /// accepted event must give the same fields, paths and keyword texts either way. Panics on
    /// any difference (the fuzzer's oracle); never panics otherwise.
    pub fn event_line(data: &[u8]) {
        use crate::FieldSource;
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let v = serde_json::from_str::<serde_json::Value>(text);
        // The fast reader reads what serde_json reads, declining the rest.
        if let Some(fast) = crate::FlatEvent::fast(text) {
            let slow = serde_json::from_str::<crate::FlatEvent>(text).ok();
            assert_eq!(slow, Some(fast), "the fast JSON reader disagrees");
        }
        let f = crate::FlatEvent::from_line(text);
        let (v, f) = match (v, f) {
            (Ok(v), Ok(f)) => (v, f),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "different errors");
                return;
            }
            (v, f) => panic!("one reader refused: {:?} / {:?}", v.err(), f.err()),
        };
        let (a, b) = (crate::EvtxEvent::new(&v), crate::EvtxEvent::flat(&f));
        let mut names: Vec<String> = [
            "EventID",
            "Channel",
            "Computer",
            "Provider_Name",
            "Image",
            "CommandLine",
            "Event.System.EventID",
            "Event.EventData",
        ]
        .map(String::from)
        .to_vec();
        for part in ["System", "EventData", "UserData"] {
            if let Some(serde_json::Value::Object(m)) = v.get("Event").and_then(|e| e.get(part)) {
                names.extend(m.keys().take(16).cloned());
                // `UserData` holds its fields one level deeper.
                for inner in m.values().take(16) {
                    if let serde_json::Value::Object(i) = inner {
                        names.extend(i.keys().take(16).cloned());
                    }
                }
            }
        }
        for n in &names {
            assert_eq!(a.field(n), b.field(n), "field {n}");
        }
        assert_eq!((a.channel(), a.event_id()), (b.channel(), b.event_id()));
        assert_eq!(a.text_leaves(), b.text_leaves(), "keyword texts");
    }

    /// Compile every document of `text`, build a correlator over them and feed it one event
    /// per detection: nothing may panic. A document the fast YAML reader accepts must read as
    /// serde-saphyr reads it (member order included).
    pub fn documents(text: &str) {
        for d in crate::rule::split_documents(text) {
            if let Some(fast) = crate::yaml::parse(d) {
                let slow = serde_saphyr::from_str::<serde_json::Value>(d)
                    .map(|v| v.to_string())
                    .ok();
                assert_eq!(
                    Some(fast.to_string()),
                    slow,
                    "the fast YAML reader disagrees"
                );
            }
        }
        let Ok(docs) = crate::compile_documents(text) else {
            return;
        };
        let mut dets = Vec::new();
        let mut corrs = Vec::new();
        for d in docs {
            match d {
                crate::SigmaDocument::Detection(r) => dets.push(*r),
                crate::SigmaDocument::Correlation(c) => corrs.push(*c),
            }
        }
        let (mut c, _) = crate::Correlator::new(corrs, &dets);
        let ev = serde_json::json!({"TargetUserName": "u", "IpAddress": "10.0.0.1"});
        let mut out = Vec::new();
        for (i, _) in dets.iter().enumerate() {
            if let Some(cap) = c.capture(i, &ev) {
                c.observe(&cap, i as i64, i as u64, &mut out);
            }
        }
        c.flush(&mut out);
    }
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigmaError {
    /// The YAML is not a Sigma rule.
    #[error("not a Sigma rule: {0}")]
    Parse(String),
    /// The rule uses something this engine does not support (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The condition expression is malformed.
    #[error("bad condition: {0}")]
    Condition(String),
    /// A value or modifier is malformed.
    #[error("bad value for {field}: {why}")]
    Value {
        /// The field spec, e.g. `CommandLine|re`.
        field: String,
        /// What is wrong.
        why: String,
    },
}
