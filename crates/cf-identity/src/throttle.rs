//! Login throttling and lockout (PWD-3): failures counted per (account, source), per account and
//! per source; on by default. Counting is pessimistic and atomic — an attempt counts as a failure
//! from the moment it starts until it succeeds — so parallel guesses cannot slip past the limit.
//! The real user cannot be locked out for ever: sources that have logged in to an account before
//! are exempt from the account-wide lock and delay (only their own pair counter applies), and
//! every lock expires.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Thresholds (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottlePolicy {
    /// Failures of one account from one source before that pair is locked.
    pub pair_max_failures: u32,
    /// How long a locked pair stays locked.
    pub pair_lock_s: i64,
    /// Account failures (any source) after which attempts must wait a growing delay.
    pub delay_after: u32,
    /// First delay; doubles per further failure.
    pub delay_base_s: i64,
    /// Longest delay.
    pub delay_max_s: i64,
    /// Account failures after which sources never seen succeeding are locked out of it.
    pub account_lock_after: u32,
    /// How long that lock lasts.
    pub account_lock_s: i64,
    /// Failures from one source across accounts (credential stuffing) before it is blocked.
    pub source_max_failures: u32,
    /// How long a blocked source stays blocked.
    pub source_block_s: i64,
    /// Failures older than this are forgotten.
    pub window_s: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            pair_max_failures: 5,
            pair_lock_s: 900,
            delay_after: 3,
            delay_base_s: 1,
            delay_max_s: 60,
            account_lock_after: 20,
            account_lock_s: 900,
            source_max_failures: 30,
            source_block_s: 3600,
            window_s: 3600,
        }
    }
}

/// Why an attempt may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Refusal {
    /// This account from this source.
    Pair {
        /// Unix seconds.
        until: i64,
    },
    /// This account from sources it has never succeeded from.
    Account {
        /// Unix seconds.
        until: i64,
    },
    /// Everything from this source.
    Source {
        /// Unix seconds.
        until: i64,
    },
    /// Too soon after the last failure.
    Wait {
        /// Seconds to wait.
        retry_after: i64,
    },
}

/// A started attempt; report success with [`Throttle::succeeded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    account: String,
    source: String,
}

/// Failures of one pair, account or source; kept in memory here, or in the shared store by the
/// platform so that every node counts the same guesses.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Failures in the window.
    pub failures: u32,
    /// First failure of the window (unix seconds).
    pub first: i64,
    /// Last failure.
    pub last: i64,
    /// Locked until (unix seconds).
    pub locked_until: i64,
}

/// One attempt judged against the three counters it touches: the refusal, or the counters
/// charged pessimistically with a failure (undone by [`succeed`]). `known` says the source has
/// signed in to the account before. The in-memory [`Throttle`] and the platform's store-backed
/// throttle both run exactly this.
pub fn step(
    p: &ThrottlePolicy,
    known: bool,
    pair: &mut Counter,
    acct: &mut Counter,
    src: &mut Counter,
    now: i64,
) -> Result<(), Refusal> {
    src.age_out(now, p.window_s);
    if now < src.locked_until {
        return Err(Refusal::Source {
            until: src.locked_until,
        });
    }
    pair.age_out(now, p.window_s);
    if now < pair.locked_until {
        return Err(Refusal::Pair {
            until: pair.locked_until,
        });
    }
    acct.age_out(now, p.window_s);
    if !known && now < acct.locked_until {
        return Err(Refusal::Account {
            until: acct.locked_until,
        });
    }
    // The progressive delay is account-wide, so sources the account has succeeded from skip
    // it too: otherwise an attacker who keeps the delay at its maximum would hold the real
    // user to one attempt a minute. Their own pair counter still applies.
    if !known && acct.failures >= p.delay_after {
        let exp = (acct.failures - p.delay_after).min(30);
        let gap = (p.delay_base_s << exp).min(p.delay_max_s);
        if now - acct.last < gap {
            return Err(Refusal::Wait {
                retry_after: gap - (now - acct.last),
            });
        }
    }
    pair.fail(now);
    acct.fail(now);
    src.fail(now);
    if pair.failures >= p.pair_max_failures {
        pair.locked_until = now + p.pair_lock_s;
    }
    if acct.failures >= p.account_lock_after {
        acct.locked_until = now + p.account_lock_s;
    }
    if src.failures >= p.source_max_failures {
        src.locked_until = now + p.source_block_s;
    }
    Ok(())
}

impl Counter {
    /// Forget failures older than the window (unless still locked).
    pub fn age_out(&mut self, now: i64, window: i64) {
        if self.failures > 0 && now - self.first > window && now >= self.locked_until {
            *self = Counter::default();
        }
    }
    fn fail(&mut self, now: i64) {
        if self.failures == 0 {
            self.first = now;
        }
        self.failures += 1;
        self.last = now;
    }
}

#[derive(Debug, Default)]
struct State {
    pairs: HashMap<(String, String), Counter>,
    accounts: HashMap<String, Counter>,
    sources: HashMap<String, Counter>,
    known: HashMap<String, HashSet<String>>,
    calls: u64,
}

/// The throttle (one per node; a multi-node deployment keeps these counters in the shared store).
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

impl Throttle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy,
            state: Mutex::default(),
        }
    }

    /// Decide whether `account` may try a credential from `source` at `now` (unix seconds), and
    /// if so count the attempt as a failure until [`Throttle::succeeded`] says otherwise.
    pub fn begin(&self, account: &str, source: &str, now: i64) -> Result<Attempt, Refusal> {
        let p = self.policy;
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.calls += 1;
        if st.calls.is_multiple_of(4096) {
            // Bounded memory: forget idle counters.
            let w = p.window_s;
            st.pairs
                .retain(|_, c| now - c.last <= w || now < c.locked_until);
            st.accounts
                .retain(|_, c| now - c.last <= w || now < c.locked_until);
            st.sources
                .retain(|_, c| now - c.last <= w || now < c.locked_until);
        }
        let key = (account.to_string(), source.to_string());
        let known = st.known.get(account).is_some_and(|k| k.contains(source));
        let mut src = st.sources.get(source).cloned().unwrap_or_default();
        let mut pair = st.pairs.get(&key).cloned().unwrap_or_default();
        let mut acct = st.accounts.get(account).cloned().unwrap_or_default();
        // Counted now (pessimistically), under the same lock as the checks.
        step(&p, known, &mut pair, &mut acct, &mut src, now)?;
        st.pairs.insert(key, pair);
        st.accounts.insert(account.to_string(), acct);
        st.sources.insert(source.to_string(), src);
        Ok(Attempt {
            account: account.to_string(),
            source: source.to_string(),
        })
    }

    /// The attempt succeeded: its counts are undone, the pair and account start afresh, and the
    /// source becomes known for this account (exempt from the account-wide lock).
    pub fn succeeded(&self, a: Attempt) {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.pairs.remove(&(a.account.clone(), a.source.clone()));
        st.accounts.remove(&a.account);
        if let Some(s) = st.sources.get_mut(&a.source) {
            s.failures = s.failures.saturating_sub(1);
        }
        let k = st.known.entry(a.account).or_default();
        if k.len() < 64 {
            k.insert(a.source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_guesses_cannot_exceed_the_limit() {
        let t = std::sync::Arc::new(Throttle::new(ThrottlePolicy {
            delay_after: 1000,
            ..Default::default()
        }));
        let allowed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (t, allowed) = (t.clone(), allowed.clone());
                std::thread::spawn(move || {
                    if t.begin("alice", "203.0.113.9", 1_000).is_ok() {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(allowed.load(std::sync::atomic::Ordering::SeqCst), 5);
        assert!(matches!(
            t.begin("alice", "203.0.113.9", 1_001),
            Err(Refusal::Pair { .. })
        ));
    }

    #[test]
    fn delays_grow_and_locks_expire() {
        let t = Throttle::new(ThrottlePolicy::default());
        let mut now = 10_000;
        for _ in 0..3 {
            t.begin("bob", "198.51.100.7", now).unwrap();
            now += 1;
        }
        // Fourth attempt right away must wait 1 s, then 2 s, then 4 s …
        assert_eq!(
            t.begin("bob", "198.51.100.7", now - 1),
            Err(Refusal::Wait { retry_after: 1 })
        );
        t.begin("bob", "198.51.100.7", now).unwrap();
        assert_eq!(
            t.begin("bob", "198.51.100.7", now + 1),
            Err(Refusal::Wait { retry_after: 1 })
        );
        t.begin("bob", "198.51.100.7", now + 2).unwrap();
        // Five failures: the pair is locked for 15 minutes, then free again.
        assert!(matches!(
            t.begin("bob", "198.51.100.7", now + 100),
            Err(Refusal::Pair { .. })
        ));
        assert!(t.begin("bob", "198.51.100.7", now + 2 + 900 + 3600).is_ok());
    }

    #[test]
    fn an_attacker_cannot_lock_the_real_user_out() {
        let t = Throttle::new(ThrottlePolicy::default());
        // Carol logs in from home once.
        let a = t.begin("carol", "10.0.0.8", 0).unwrap();
        t.succeeded(a);
        // A botnet of many addresses hammers her account until it is locked for strangers.
        let mut now = 100;
        let mut i = 0;
        while !matches!(
            t.begin("carol", &format!("192.0.2.{}", i % 200), now),
            Err(Refusal::Account { .. })
        ) {
            now += 61;
            i += 1;
            assert!(i < 1000, "the account lock never engaged");
        }
        // A new stranger is refused …
        assert!(matches!(
            t.begin("carol", "192.0.2.250", now + 61),
            Err(Refusal::Account { .. })
        ));
        // … but Carol from home gets through (after at most the capped delay).
        let ok = t.begin("carol", "10.0.0.8", now + 61);
        assert!(ok.is_ok(), "{ok:?}");
        t.succeeded(ok.unwrap());
    }

    #[test]
    fn credential_stuffing_blocks_the_source() {
        let t = Throttle::new(ThrottlePolicy::default());
        let mut blocked = None;
        for i in 0..100 {
            if let Err(r) = t.begin(&format!("user{i}"), "203.0.113.50", i) {
                blocked = Some((i, r));
                break;
            }
        }
        let (i, r) = blocked.unwrap();
        assert_eq!(i, 30);
        assert!(matches!(r, Refusal::Source { .. }));
    }
}
