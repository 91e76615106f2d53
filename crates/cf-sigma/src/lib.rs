//! The Sigma engine (SA-1, IDS-1): parses SigmaHQ rules, compiles them once into matchers
//! (every value modifier of the specification, keyword lists, `1 of`/`all of` conditions), routes
//! them by log source, and matches JSON events such as `evtx_dump` output.
//!
//! Architecture invariant: no I/O and no clock — rules arrive as text, events as JSON values.
//! Anything unsupported is refused per rule with the reason, never silently half-applied.

mod condition;
mod event;
mod logsource;
mod matcher;
mod rule;

pub use event::{EvtxEvent, FieldSource};
pub use logsource::Route;
pub use rule::{CompiledRule, Level, RuleSet, compile_rule};

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
