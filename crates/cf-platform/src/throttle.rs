//! Login throttling kept in the shared store (PWD-3): every node counts the same failures and a
//! restart forgets none. The decision is `cf_identity::throttle::step`, run over counters read
//! from the store and written back with the store's revision check, so parallel guesses on any
//! number of nodes cannot slip past the limits.
//!
//! One document per account (its counter, its per-source pair counters, the sources it signed in
//! from) makes the account-side decision and its charge one atomic write; the per-source
//! counter is a second document, charged after.

use std::collections::BTreeMap;
use std::sync::Arc;

use cf_identity::throttle::{self, Counter, Refusal, ThrottlePolicy};
use serde::{Deserialize, Serialize};

use crate::PlatformError;
use crate::ports::{Document, StateStore, StoreError};

/// Pair counters kept per account (the most recently active win).
const MAX_PAIRS: usize = 512;
/// Known sources kept per account.
const MAX_KNOWN: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AccountDoc {
    account: Counter,
    pairs: BTreeMap<String, Counter>,
    known: Vec<String>,
}

/// A charged attempt; report success with [`StoreThrottle::succeeded`].
#[derive(Debug, Clone)]
pub struct StoreAttempt {
    account: String,
    source: String,
}

/// The store-backed throttle.
#[derive(Clone)]
pub struct StoreThrottle {
    store: Arc<dyn StateStore>,
    policy: ThrottlePolicy,
}

impl std::fmt::Debug for StoreThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreThrottle")
    }
}

fn parse<T: for<'a> Deserialize<'a> + Default>(d: &Option<Document>) -> T {
    d.as_ref()
        .and_then(|d| serde_json::from_str(&d.body).ok())
        .unwrap_or_default()
}

impl StoreThrottle {
    /// A throttle over `store`.
    pub fn new(store: Arc<dyn StateStore>, policy: ThrottlePolicy) -> Self {
        StoreThrottle { store, policy }
    }

    /// Write `body` as `kind`/`id` over `prev` (insert when there was none); `false` when another
    /// writer got there first.
    async fn put(
        &self,
        id: &str,
        prev: &Option<Document>,
        body: String,
        now: cf_core::Timestamp,
    ) -> Result<bool, PlatformError> {
        let r = match prev {
            Some(d) => {
                self.store
                    .doc_update(&Document {
                        body,
                        revision: d.revision + 1,
                        updated: now,
                        ..d.clone()
                    })
                    .await
            }
            None => {
                self.store
                    .doc_insert(&Document {
                        kind: "throttle".into(),
                        id: id.to_string(),
                        body,
                        revision: 1,
                        updated: now,
                    })
                    .await
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Decide whether `account` may try a credential from `source` at `now` (unix seconds); if
    /// so the attempt is charged as a failure until [`Self::succeeded`].
    pub async fn begin(
        &self,
        account: &str,
        source: &str,
        now: i64,
        stamp: cf_core::Timestamp,
    ) -> Result<Result<StoreAttempt, Refusal>, PlatformError> {
        let (aid, sid) = (format!("a:{account}"), format!("s:{source}"));
        // The account side: decided and charged in one revision-checked write.
        let mut charged = false;
        for _ in 0..16 {
            let ad = self.store.doc_get("throttle", &aid).await?;
            let sd = self.store.doc_get("throttle", &sid).await?;
            let mut acct: AccountDoc = parse(&ad);
            let mut src: Counter = parse(&sd);
            let known = acct.known.iter().any(|k| k == source);
            let mut pair = acct.pairs.get(source).cloned().unwrap_or_default();
            if let Err(r) = throttle::step(
                &self.policy,
                known,
                &mut pair,
                &mut acct.account,
                &mut src,
                now,
            ) {
                return Ok(Err(r));
            }
            acct.pairs.insert(source.to_string(), pair);
            if acct.pairs.len() > MAX_PAIRS {
                let oldest = acct
                    .pairs
                    .iter()
                    .min_by_key(|(_, c)| c.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    acct.pairs.remove(&k);
                }
            }
            let body =
                serde_json::to_string(&acct).map_err(|e| PlatformError::Internal(e.to_string()))?;
            if self.put(&aid, &ad, body, stamp).await? {
                charged = true;
                break;
            }
        }
        if !charged {
            return Err(PlatformError::Unavailable(
                "the login throttle is contended; try again".into(),
            ));
        }
        // The source side: charged after; a source blocked meanwhile still refuses.
        for _ in 0..16 {
            let sd = self.store.doc_get("throttle", &sid).await?;
            let mut src: Counter = parse(&sd);
            src.age_out(now, self.policy.window_s);
            if now < src.locked_until {
                return Ok(Err(Refusal::Source {
                    until: src.locked_until,
                }));
            }
            if src.failures == 0 {
                src.first = now;
            }
            src.failures += 1;
            src.last = now;
            if src.failures >= self.policy.source_max_failures {
                src.locked_until = now + self.policy.source_block_s;
            }
            let body =
                serde_json::to_string(&src).map_err(|e| PlatformError::Internal(e.to_string()))?;
            if self.put(&sid, &sd, body, stamp).await? {
                return Ok(Ok(StoreAttempt {
                    account: account.to_string(),
                    source: source.to_string(),
                }));
            }
        }
        Err(PlatformError::Unavailable(
            "the login throttle is contended; try again".into(),
        ))
    }

    /// The attempt succeeded: its charge is undone and the source becomes known to the account.
    pub async fn succeeded(
        &self,
        a: StoreAttempt,
        stamp: cf_core::Timestamp,
    ) -> Result<(), PlatformError> {
        let (aid, sid) = (format!("a:{}", a.account), format!("s:{}", a.source));
        for _ in 0..16 {
            let ad = self.store.doc_get("throttle", &aid).await?;
            let mut acct: AccountDoc = parse(&ad);
            acct.account = Counter::default();
            acct.pairs.remove(&a.source);
            if !acct.known.contains(&a.source) {
                acct.known.push(a.source.clone());
                if acct.known.len() > MAX_KNOWN {
                    acct.known.remove(0);
                }
            }
            let body =
                serde_json::to_string(&acct).map_err(|e| PlatformError::Internal(e.to_string()))?;
            if self.put(&aid, &ad, body, stamp).await? {
                break;
            }
        }
        for _ in 0..16 {
            let sd = self.store.doc_get("throttle", &sid).await?;
            let mut src: Counter = parse(&sd);
            src.failures = src.failures.saturating_sub(1);
            let body =
                serde_json::to_string(&src).map_err(|e| PlatformError::Internal(e.to_string()))?;
            if self.put(&sid, &sd, body, stamp).await? {
                break;
            }
        }
        Ok(())
    }

    /// Failed attempts on `account` within the window.
    pub async fn account_failures(&self, account: &str, now: i64) -> Result<u32, PlatformError> {
        let ad = self
            .store
            .doc_get("throttle", &format!("a:{account}"))
            .await?;
        let mut acct: AccountDoc = parse(&ad);
        acct.account.age_out(now, self.policy.window_s);
        Ok(acct.account.failures)
    }
}
