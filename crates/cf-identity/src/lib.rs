//! Identity engine, first part (PWD-1…PWD-4): Argon2id password hashes in PHC strings with costs
//! from configuration, and password policy per identity domain — length, character classes, a
//! strength estimate with common-password dictionaries (zxcvbn), the user's own attributes,
//! history and expiry. Every violation is reported, not just the first.
//!
//! Architecture invariant: no I/O; randomness is injected; passwords never appear in errors.

pub mod oidc;
pub mod otp;
pub mod password;
pub mod risk;
pub mod scim;
pub mod session;
pub mod throttle;
pub mod webauthn;
