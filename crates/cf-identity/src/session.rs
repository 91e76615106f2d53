//! Sessions (AUZ-3, IDM-6): idle and absolute timeouts, a per-account concurrency cap, a deadline
//! for half-finished logins (password given, second factor pending), listing with device and
//! address, and revocation of one or all. Ids are random; only their SHA-256 is kept.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Whether `s` is still valid at `now` under `p` (for callers that keep sessions elsewhere,
/// e.g. in a shared store).
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

#[derive(Debug, Default)]
struct State {
    // hash(secret) hex -> session
    live: HashMap<String, SessionInfo>,
    // hash(ticket) hex -> (account, started)
    pending: HashMap<String, (String, i64)>,
}

/// The session table of one node.
#[derive(Debug, Default)]
pub struct Sessions {
    policy: SessionPolicy,
    state: Mutex<State>,
}

fn key(secret: &str) -> String {
    hex::encode(cf_crypto::sha256(secret.as_bytes()))
}

impl Sessions {
    /// A table with `policy`.
    pub fn new(policy: SessionPolicy) -> Self {
        Sessions {
            policy,
            state: Mutex::default(),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// First factor done, second pending: a ticket that must be completed within the login
    /// timeout.
    pub fn begin_login(
        &self,
        account: &str,
        now: i64,
        rng: &dyn cf_crypto::Rng,
    ) -> Result<String, SessionEnd> {
        let t = format!(
            "cft_{}",
            cf_crypto::random_token(rng, 24).map_err(|_| SessionEnd::Unknown)?
        );
        self.st()
            .pending
            .insert(key(&t), (account.to_string(), now));
        Ok(t)
    }

    /// The account a pending ticket belongs to, consuming the ticket.
    pub fn complete_login(&self, ticket: &str, now: i64) -> Result<String, SessionEnd> {
        let (account, started) = self
            .st()
            .pending
            .remove(&key(ticket))
            .ok_or(SessionEnd::Unknown)?;
        if now - started > self.policy.login_timeout_s {
            return Err(SessionEnd::LoginTimeout);
        }
        Ok(account)
    }

    /// Start a session; returns its bearer secret (shown once) and the handles of sessions the
    /// cap ended.
    pub fn start(
        &self,
        account: &str,
        device: &str,
        address: &str,
        mfa: bool,
        now: i64,
        rng: &dyn cf_crypto::Rng,
    ) -> Result<(String, SessionInfo, Vec<String>), SessionEnd> {
        let secret = format!(
            "cfs_{}",
            cf_crypto::random_token(rng, 32).map_err(|_| SessionEnd::Unknown)?
        );
        let k = key(&secret);
        let mut st = self.st();
        self.expire(&mut st, now);
        let mut mine: Vec<(String, i64)> = st
            .live
            .iter()
            .filter(|(_, s)| s.account == account)
            .map(|(k, s)| (k.clone(), s.last_seen))
            .collect();
        let mut ended = Vec::new();
        if mine.len() >= self.policy.max_per_account {
            if self.policy.on_cap == OnCap::Refuse {
                return Err(SessionEnd::Cap);
            }
            mine.sort_by_key(|(_, t)| *t);
            let excess = mine.len() + 1 - self.policy.max_per_account;
            for (k, _) in mine.into_iter().take(excess) {
                if let Some(s) = st.live.remove(&k) {
                    ended.push(s.handle);
                }
            }
        }
        let info = SessionInfo {
            handle: k[..16].to_string(),
            account: account.to_string(),
            device: device.chars().take(200).collect(),
            address: address.to_string(),
            created: now,
            last_seen: now,
            mfa,
            amr: Vec::new(),
        };
        st.live.insert(k, info.clone());
        Ok((secret, info, ended))
    }

    fn expire(&self, st: &mut State, now: i64) {
        let p = self.policy;
        st.live
            .retain(|_, s| now - s.last_seen <= p.idle_s && now - s.created <= p.absolute_s);
        st.pending.retain(|_, (_, t)| now - *t <= p.login_timeout_s);
    }

    /// Validate a bearer secret and mark the session used.
    pub fn touch(&self, secret: &str, now: i64) -> Result<SessionInfo, SessionEnd> {
        let k = key(secret);
        let mut st = self.st();
        let s = st.live.get_mut(&k).ok_or(SessionEnd::Unknown)?;
        let end = if now - s.created > self.policy.absolute_s {
            Some(SessionEnd::Absolute)
        } else if now - s.last_seen > self.policy.idle_s {
            Some(SessionEnd::Idle)
        } else {
            None
        };
        if let Some(e) = end {
            st.live.remove(&k);
            return Err(e);
        }
        s.last_seen = now;
        Ok(s.clone())
    }

    /// Sessions of `account` (or of everyone), oldest first.
    pub fn list(&self, account: Option<&str>, now: i64) -> Vec<SessionInfo> {
        let mut st = self.st();
        self.expire(&mut st, now);
        let mut v: Vec<SessionInfo> = st
            .live
            .values()
            .filter(|s| account.is_none_or(|a| s.account == a))
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created, &a.handle).cmp(&(b.created, &b.handle)));
        v
    }

    /// End one session by its handle; returns whether it existed.
    pub fn revoke(&self, handle: &str) -> bool {
        let mut st = self.st();
        let before = st.live.len();
        st.live.retain(|_, s| s.handle != handle);
        st.live.len() < before
    }

    /// End every session of `account`; returns how many.
    pub fn revoke_all(&self, account: &str) -> usize {
        let mut st = self.st();
        let before = st.live.len();
        st.live.retain(|_, s| s.account != account);
        before - st.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> cf_crypto::SeededRng {
        cf_crypto::SeededRng::new(9)
    }

    #[test]
    fn idle_and_absolute_timeouts_end_sessions() {
        let s = Sessions::new(SessionPolicy::default());
        let r = rng();
        let (secret, info, _) = s
            .start("li.lei", "Firefox on Windows", "10.2.0.4", true, 0, &r)
            .unwrap();
        assert!(secret.starts_with("cfs_") && info.mfa);
        // Used every 20 minutes: stays alive until the 12-hour absolute limit.
        let mut t = 0;
        while t + 1200 <= 12 * 3600 {
            t += 1200;
            s.touch(&secret, t).unwrap();
        }
        assert_eq!(s.touch(&secret, 12 * 3600 + 1), Err(SessionEnd::Absolute));
        let (idle, _, _) = s
            .start("li.lei", "phone", "10.2.0.5", false, 0, &r)
            .unwrap();
        assert_eq!(s.touch(&idle, 31 * 60), Err(SessionEnd::Idle));
        assert_eq!(
            s.touch(&idle, 31 * 60),
            Err(SessionEnd::Unknown),
            "gone for good"
        );
    }

    #[test]
    fn the_cap_ends_the_oldest_or_refuses() {
        let r = rng();
        let s = Sessions::new(SessionPolicy {
            max_per_account: 2,
            ..Default::default()
        });
        let (a, ia, _) = s.start("han.mei", "a", "1.1.1.1", false, 0, &r).unwrap();
        let (_b, _, _) = s.start("han.mei", "b", "1.1.1.2", false, 10, &r).unwrap();
        s.touch(&a, 20).unwrap();
        let (_c, _, ended) = s.start("han.mei", "c", "1.1.1.3", false, 30, &r).unwrap();
        assert_eq!(ended.len(), 1);
        assert_ne!(
            ended[0], ia.handle,
            "the least recently used one ends, not the oldest login"
        );
        assert_eq!(s.list(Some("han.mei"), 30).len(), 2);
        let strict = Sessions::new(SessionPolicy {
            max_per_account: 1,
            on_cap: OnCap::Refuse,
            ..Default::default()
        });
        strict.start("x", "a", "1", false, 0, &r).unwrap();
        assert_eq!(
            strict.start("x", "b", "2", false, 1, &r).unwrap_err(),
            SessionEnd::Cap
        );
    }

    #[test]
    fn administrators_list_and_end_sessions_and_logins_time_out() {
        let r = rng();
        let s = Sessions::new(SessionPolicy::default());
        let (a, ia, _) = s.start("u1", "laptop", "10.0.0.1", true, 0, &r).unwrap();
        s.start("u1", "phone", "10.0.0.2", true, 1, &r).unwrap();
        s.start("u2", "kiosk", "10.0.0.3", false, 2, &r).unwrap();
        let all = s.list(None, 3);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].device, "laptop");
        assert!(
            !serde_json::to_string(&all).unwrap().contains(&a),
            "secrets are never listed"
        );
        assert!(s.revoke(&ia.handle));
        assert_eq!(s.touch(&a, 4), Err(SessionEnd::Unknown));
        assert_eq!(s.revoke_all("u1"), 1);
        assert_eq!(s.list(None, 5).len(), 1);
        let t = s.begin_login("u3", 100, &r).unwrap();
        assert_eq!(
            s.complete_login(&t, 100 + 301),
            Err(SessionEnd::LoginTimeout)
        );
        let t = s.begin_login("u3", 100, &r).unwrap();
        assert_eq!(s.complete_login(&t, 160).unwrap(), "u3");
        assert_eq!(
            s.complete_login(&t, 161),
            Err(SessionEnd::Unknown),
            "a ticket works once"
        );
    }
}
