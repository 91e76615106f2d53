//! Sensitive-data discovery (DAT-2): recognisers for the personal and important data a city
//! holds — identifiers with their check digits (GB 11643, GB 32100, Luhn), phones, plates, network
//! identifiers, dates of birth, postcodes, names and addresses — in Chinese, English and mixed text.
//!
//! Architecture invariant: pure functions over text; a column name or JSON key may be passed as a
//! hint, but every identifier with a checksum is recognised by content alone.

pub mod checks;
pub mod columns;
mod recognise;
mod sites;
pub mod tabular;

pub use recognise::{EntityType, Span, code_point_spans, hint_from_key, scan, scan_reference};
