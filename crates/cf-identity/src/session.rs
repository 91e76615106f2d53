//! Session rules (AUZ-3, IDM-6): idle and absolute timeouts, a per-account concurrency cap, a
//! deadline for half-finished logins, the record a session keeps (device, address, methods) and
//! how its bearer secret is stored (only the SHA-256). The durable table that applies them lives in
//! the platform's identity service, so every node sees the same sessions.

use serde::{Deserialize, Serialize};

/// Limits (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPolicy {
    /// Ends after this long without use.
    pub idle_s: i64,
    /// Ends this long after login whatever happens.
    pub absolute_s: i64,
    /// Sessions one account may hold at once.
    pub max_per_account: usize,
    /// What a login beyond the cap does.
    pub on_cap: OnCap,
    /// A login waiting for its second factor is abandoned after this long.
    pub login_timeout_s: i64,
}

/// Behaviour at the concurrency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCap {
    /// End the least recently used session.
    EndOldest,
    /// Refuse the new login.
    Refuse,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_s: 30 * 60,
            absolute_s: 12 * 3600,
            max_per_account: 5,
            on_cap: OnCap::EndOldest,
            login_timeout_s: 5 * 60,
        }
    }
}

/// A session as administrators see it (never its bearer secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Public handle (first 16 hex digits of the secret's hash).
    pub handle: String,
    /// Account.
    pub account: String,
    /// Device / user agent.
    pub device: String,
    /// Client address.
    pub address: String,
    /// Login time (unix seconds).
    pub created: i64,
    /// Last use.
    pub last_seen: i64,
    /// Whether a second factor was given.
    pub mfa: bool,
    /// How the person proved who they are, as RFC 8176 method names (`pwd`, `otp`, `hwk`,
    /// `swk`, `user`, `mfa`); single sign-on passes them on as the ID token's `amr`.
    #[serde(default)]
    pub amr: Vec<String>,
}

impl SessionInfo {
    /// The session's authentication methods; sessions saved before methods were recorded
    /// derive them from the second-factor flag.
    pub fn methods(&self) -> Vec<String> {
        methods(&self.amr, self.mfa)
    }
}

/// Recorded authentication methods, or for records older than them, the methods a password
/// sign-in with or without a one-time code used.
pub fn methods(amr: &[String], mfa: bool) -> Vec<String> {
    if !amr.is_empty() {
        return amr.to_vec();
    }
    let m: &[&str] = if mfa {
        &["pwd", "otp", "mfa"]
    } else {
        &["pwd"]
    };
    m.iter().map(|x| x.to_string()).collect()
}

/// Why a session is not (or no longer) valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// Unknown or revoked.
    #[error("no such session")]
    Unknown,
    /// Idle too long.
    #[error("session ended after inactivity")]
    Idle,
    /// Past its absolute lifetime.
    #[error("session reached its maximum lifetime")]
    Absolute,
    /// The account is at its cap and the policy refuses more.
    #[error("too many sessions for this account")]
    Cap,
    /// A pending login took too long.
    #[error("login not completed in time")]
    LoginTimeout,
}

/// Whether `s` is still valid at `now` under `p`. The session table itself is durable and lives in
/// the platform's identity service (SQLite or PostgreSQL), so that every node sees one table.
pub fn check(s: &SessionInfo, p: &SessionPolicy, now: i64) -> Result<(), SessionEnd> {
    if now - s.created > p.absolute_s {
        Err(SessionEnd::Absolute)
    } else if now - s.last_seen > p.idle_s {
        Err(SessionEnd::Idle)
    } else {
        Ok(())
    }
}

/// The handle and storage key of a bearer secret: `(handle, sha256 hex)`.
pub fn key_of(secret: &str) -> (String, String) {
    let key = |secret: &str| hex::encode(cf_crypto::sha256(secret.as_bytes()));
    let k = key(secret);
    (k[..16].to_string(), k)
}

/// A fresh bearer secret.
pub fn new_secret(rng: &dyn cf_crypto::Rng) -> Result<String, SessionEnd> {
    Ok(format!(
        "cfs_{}",
        cf_crypto::random_token(rng, 32).map_err(|_| SessionEnd::Unknown)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created: i64, last_seen: i64) -> SessionInfo {
        SessionInfo {
            handle: "h".into(),
            account: "li.lei".into(),
            device: "Firefox".into(),
            address: "10.2.0.4".into(),
            created,
            last_seen,
            mfa: true,
            amr: Vec::new(),
        }
    }

    #[test]
    fn idle_and_absolute_limits() {
        let p = SessionPolicy::default();
        assert_eq!(check(&session(0, 0), &p, p.idle_s), Ok(()));
        assert_eq!(
            check(&session(0, 0), &p, p.idle_s + 1),
            Err(SessionEnd::Idle)
        );
        // Used just now, but past the absolute lifetime.
        let now = p.absolute_s + 1;
        assert_eq!(check(&session(0, now), &p, now), Err(SessionEnd::Absolute));
    }

    #[test]
    fn secrets_handles_and_methods() {
        let s = new_secret(&cf_crypto::SeededRng::new(9)).unwrap();
        assert!(s.starts_with("cfs_"));
        let (handle, key) = key_of(&s);
        assert_eq!(key.len(), 64);
        assert!(key.starts_with(&handle) && handle.len() == 16);
        assert_ne!(key_of("cfs_other").1, key);
        assert_eq!(methods(&[], true), ["pwd", "otp", "mfa"]);
        assert_eq!(methods(&[], false), ["pwd"]);
        assert_eq!(methods(&["hwk".into()], false), ["hwk"]);
    }
}
