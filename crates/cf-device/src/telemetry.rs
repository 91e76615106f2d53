//! Signed telemetry (INT-1, §3.2.1 tampered data): a compact binary envelope that a device signs
//! with its enrolled key, and the platform's verifier with freshness checks and a replay window.
//!
//! Wire format (big-endian), signature over every byte before it:
//! `"CFT1" | alg u8 | boot u32 | seq u64 | ts_ms i64 | id_len u8 | id | body_len u32 | body | sig[64]`.
//! `boot` is a reboot counter the device keeps in flash and `seq` restarts at each boot, so a
//! reboot opens a new window instead of looking like a replay.

use std::collections::HashMap;

use cf_core::Timestamp;
use cf_crypto::devkey::{DevicePublicKey, DeviceSigner, KeyAlg};
use serde::{Deserialize, Serialize};

use crate::DeviceError;

/// Magic prefix and version.
pub const MAGIC: &[u8; 4] = b"CFT1";
/// Largest body accepted.
pub const MAX_BODY: usize = 64 * 1024;
const SIG_LEN: usize = 64;
/// Width of the out-of-order window, in messages.
pub const WINDOW: u64 = 64;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Signature algorithm.
    pub alg: KeyAlg,
    /// Device reboot counter.
    pub boot: u32,
    /// Message counter within this boot.
    pub seq: u64,
    /// Device clock, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Device id.
    pub device: String,
    /// Payload (JSON by convention, see [`Body`]).
    pub body: Vec<u8>,
    signed_len: usize,
    sig: Vec<u8>,
    raw: Vec<u8>,
}

impl Envelope {
    /// Decode without verifying. Every length is checked against the input, so truncated or
    /// oversized input is an error, never a panic.
    pub fn decode(b: &[u8]) -> Result<Envelope, DeviceError> {
        let bad = |what: &str| DeviceError::Invalid(format!("telemetry envelope: {what}"));
        let mut r = Reader { b, at: 0 };
        if r.take(4).map_err(|_| bad("shorter than its header"))? != MAGIC {
            return Err(bad("bad magic (expected CFT1)"));
        }
        let alg_code = r.u8().map_err(|_| bad("truncated header"))?;
        let alg = KeyAlg::from_code(alg_code)
            .ok_or_else(|| bad(&format!("unknown algorithm code {alg_code}")))?;
        let boot = u32::from_be_bytes(r.arr().map_err(|_| bad("truncated header"))?);
        let seq = u64::from_be_bytes(r.arr().map_err(|_| bad("truncated header"))?);
        let ts_ms = i64::from_be_bytes(r.arr().map_err(|_| bad("truncated header"))?);
        let id_len = usize::from(r.u8().map_err(|_| bad("truncated header"))?);
        let id = r.take(id_len).map_err(|_| bad("truncated device id"))?;
        let device = std::str::from_utf8(id)
            .map_err(|_| bad("device id is not UTF-8"))?
            .to_string();
        crate::registry::check_id(&device).map_err(|e| bad(&e.to_string()))?;
        let body_len =
            u32::from_be_bytes(r.arr().map_err(|_| bad("truncated body length"))?) as usize;
        if body_len > MAX_BODY {
            return Err(bad(&format!("body of {body_len} bytes exceeds {MAX_BODY}")));
        }
        let body = r
            .take(body_len)
            .map_err(|_| bad("truncated body"))?
            .to_vec();
        let signed_len = r.at;
        let sig = r
            .take(SIG_LEN)
            .map_err(|_| bad("truncated signature"))?
            .to_vec();
        if r.at != b.len() {
            return Err(bad(&format!("{} trailing bytes", b.len() - r.at)));
        }
        Ok(Envelope {
            alg,
            boot,
            seq,
            ts_ms,
            device,
            body,
            signed_len,
            sig,
            raw: b.to_vec(),
        })
    }

    /// Encode and sign (devices and the simulator).
    pub fn seal(
        signer: &DeviceSigner,
        device: &str,
        boot: u32,
        seq: u64,
        ts_ms: i64,
        body: &[u8],
    ) -> Result<Vec<u8>, DeviceError> {
        crate::registry::check_id(device)?;
        if body.len() > MAX_BODY {
            return Err(DeviceError::Invalid(format!(
                "body exceeds {MAX_BODY} bytes"
            )));
        }
        let mut out = Vec::with_capacity(32 + device.len() + body.len() + SIG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(signer.public().alg().code());
        out.extend_from_slice(&boot.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&ts_ms.to_be_bytes());
        out.push(device.len() as u8);
        out.extend_from_slice(device.as_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        let sig = signer
            .sign(&out)
            .map_err(|e| DeviceError::Crypto(e.to_string()))?;
        out.extend_from_slice(&sig);
        Ok(out)
    }

    /// The device clock as a timestamp.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.ts_ms.saturating_mul(1_000_000))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        let end = self.at.checked_add(n).ok_or(())?;
        let s = self.b.get(self.at..end).ok_or(())?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ()> {
        Ok(self.take(1)?[0])
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        self.take(N)?.try_into().map_err(|_| ())
    }
}

/// Conventional JSON bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Sent first after each connect: what the device runs (INT-1, MGT-5).
    Hello {
        /// SHA-256 of the running firmware image, hex.
        firmware_sha256: String,
        /// Firmware version string.
        #[serde(default)]
        firmware_version: String,
    },
    /// Measurements by metric name.
    Reading {
        /// e.g. `{"temperature_c": 21.5, "pm25": 35}`.
        metrics: HashMap<String, f64>,
    },
}

/// Replay state of one device; persisted by the platform so a restart does not reopen windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayState {
    /// Current boot epoch.
    pub boot: u32,
    /// Highest sequence accepted in this boot.
    pub top: u64,
    /// Bit i set: `top - i` was accepted.
    pub window: u64,
    /// Whether anything was accepted yet.
    pub started: bool,
}

/// Why a message was refused. Every variant is an integrity alert except where noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reject {
    /// Not a well-formed envelope.
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// No enrolled key for the id in the envelope (unregistered, never enrolled or quarantined).
    UnknownDevice,
    /// The envelope names another device than the authenticated connection (spoofing).
    IdentityMismatch {
        /// Id in the envelope.
        claimed: String,
        /// Id the connection authenticated as.
        connected: String,
    },
    /// The algorithm differs from the enrolled key's.
    WrongAlgorithm,
    /// Signature invalid: forged or tampered.
    BadSignature,
    /// An already-used counter arriving after the freshness horizon: a captured message replayed.
    Replay {
        /// Boot epoch.
        boot: u32,
        /// Counter.
        seq: u64,
    },
    /// Device clock ahead of the platform's by more than the allowed skew.
    FromFuture {
        /// How far ahead, ms.
        ahead_ms: i64,
    },
}

impl Reject {
    /// Alert kind for the bus.
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::Malformed { .. } => "telemetry.malformed",
            Reject::UnknownDevice => "telemetry.unknown_device",
            Reject::IdentityMismatch { .. } => "device.identity_mismatch",
            Reject::WrongAlgorithm | Reject::BadSignature => "telemetry.forged",
            Reject::Replay { .. } => "telemetry.replay",
            Reject::FromFuture { .. } => "telemetry.clock",
        }
    }
}

/// Outcome of verifying one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic and new. `late` when the device clock says it was sent before the freshness
    /// horizon (queued by the broker while the platform was away) — data, not an attack.
    Accepted {
        /// Sent long ago.
        late: bool,
    },
    /// A copy of a message already accepted, within the horizon: a broker redelivery (QoS 1 after a
    /// restart) or an immediate replay, harmless either way because it is dropped. Not an alert.
    Duplicate,
    /// Refused.
    Rejected(Reject),
}

/// Verifier parameters.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Copies of used counters older than this are replays (alerts); younger ones are duplicates.
    pub horizon_ms: i64,
    /// Allowed device clock lead.
    pub max_ahead_ms: i64,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            horizon_ms: 300_000,
            max_ahead_ms: 60_000,
        }
    }
}

/// Verifies envelopes for many devices. Keys come from the registry; state is per device.
#[derive(Debug, Default)]
pub struct Verifier {
    keys: HashMap<String, DevicePublicKey>,
    state: HashMap<String, ReplayState>,
    fresh: Freshness,
}

impl Verifier {
    /// An empty verifier.
    pub fn new(fresh: Freshness) -> Self {
        Verifier {
            fresh,
            ..Default::default()
        }
    }
    /// Trust `key` for `device` (enrollment or renewal). A new key keeps the replay state.
    pub fn set_key(&mut self, device: &str, key: DevicePublicKey) {
        self.keys.insert(device.to_string(), key);
    }
    /// Stop trusting a device (revoked, quarantined, retired).
    pub fn remove_key(&mut self, device: &str) {
        self.keys.remove(device);
    }
    /// Whether a key is held for `device`.
    pub fn knows(&self, device: &str) -> bool {
        self.keys.contains_key(device)
    }
    /// Restore persisted replay state.
    pub fn restore(&mut self, device: &str, st: ReplayState) {
        self.state.insert(device.to_string(), st);
    }
    /// Current replay state of `device`.
    pub fn state(&self, device: &str) -> Option<ReplayState> {
        self.state.get(device).copied()
    }
    /// Number of devices with keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Whether no keys are held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verify `msg`. `connected_as` is the identity the transport authenticated (MQTT username
    /// from the client certificate, HTTPS client certificate CN), when known.
    pub fn check(
        &mut self,
        msg: &[u8],
        connected_as: Option<&str>,
        now: Timestamp,
    ) -> (Option<Envelope>, Verdict) {
        let env = match Envelope::decode(msg) {
            Ok(e) => e,
            Err(e) => {
                return (
                    None,
                    Verdict::Rejected(Reject::Malformed {
                        detail: e.to_string(),
                    }),
                );
            }
        };
        let v = self.judge(&env, connected_as, now);
        (Some(env), v)
    }

    fn judge(&mut self, env: &Envelope, connected_as: Option<&str>, now: Timestamp) -> Verdict {
        let key = match self.key_for(env, connected_as) {
            Ok(k) => k,
            Err(r) => return Verdict::Rejected(r),
        };
        if let Err(r) = env.verify_with(&key) {
            return Verdict::Rejected(r);
        }
        self.admit(env, now)
    }

    /// First half of [`Verifier::check`]: the key that must have signed `env`, after the identity
    /// and algorithm checks. Callers that verify many messages in parallel take the key under
    /// their lock, verify outside it with [`Envelope::verify_with`], then call [`Verifier::admit`].
    pub fn key_for(
        &self,
        env: &Envelope,
        connected_as: Option<&str>,
    ) -> Result<DevicePublicKey, Reject> {
        if let Some(c) = connected_as
            && c != env.device
        {
            return Err(Reject::IdentityMismatch {
                claimed: env.device.clone(),
                connected: c.to_string(),
            });
        }
        let key = self.keys.get(&env.device).ok_or(Reject::UnknownDevice)?;
        if key.alg() != env.alg {
            return Err(Reject::WrongAlgorithm);
        }
        Ok(key.clone())
    }

    /// Second half: freshness and the replay window, for an envelope whose signature verified.
    /// Never call it for an unverified envelope: forged messages must not move the window.
    pub fn admit(&mut self, env: &Envelope, now: Timestamp) -> Verdict {
        let now_ms = now.unix_millis();
        let ahead = env.ts_ms.saturating_sub(now_ms);
        if ahead > self.fresh.max_ahead_ms {
            return Verdict::Rejected(Reject::FromFuture { ahead_ms: ahead });
        }
        let age = now_ms.saturating_sub(env.ts_ms);
        let within = age <= self.fresh.horizon_ms;
        let st = self.state.entry(env.device.clone()).or_default();
        let seen = |st: &ReplayState| -> bool {
            if !st.started || env.boot > st.boot {
                return false;
            }
            if env.boot < st.boot || env.seq > st.top {
                return env.boot < st.boot;
            }
            let d = st.top - env.seq;
            d >= WINDOW || st.window & (1u64 << d) != 0
        };
        if seen(st) {
            return if within {
                Verdict::Duplicate
            } else {
                Verdict::Rejected(Reject::Replay {
                    boot: env.boot,
                    seq: env.seq,
                })
            };
        }
        if !st.started || env.boot > st.boot {
            *st = ReplayState {
                boot: env.boot,
                top: env.seq,
                window: 1,
                started: true,
            };
        } else if env.seq > st.top {
            let shift = env.seq - st.top;
            st.window = if shift >= WINDOW {
                0
            } else {
                st.window << shift
            } | 1;
            st.top = env.seq;
        } else {
            st.window |= 1u64 << (st.top - env.seq);
        }
        Verdict::Accepted { late: !within }
    }
}

impl Envelope {
    /// Check the signature with `key` (the enrolled key of [`Envelope::device`]).
    pub fn verify_with(&self, key: &DevicePublicKey) -> Result<(), Reject> {
        if key.alg() != self.alg {
            return Err(Reject::WrongAlgorithm);
        }
        key.verify(&self.raw[..self.signed_len], &self.sig)
            .map_err(|_| Reject::BadSignature)
    }
}

#[cfg(test)]
fn encode_prefix(env: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(env.signed_len);
    out.extend_from_slice(MAGIC);
    out.push(env.alg.code());
    out.extend_from_slice(&env.boot.to_be_bytes());
    out.extend_from_slice(&env.seq.to_be_bytes());
    out.extend_from_slice(&env.ts_ms.to_be_bytes());
    out.push(env.device.len() as u8);
    out.extend_from_slice(env.device.as_bytes());
    out.extend_from_slice(&(env.body.len() as u32).to_be_bytes());
    out.extend_from_slice(&env.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_crypto::Sm2SigningKey;

    const T0: i64 = 1_790_000_000_000;

    fn signer(seed: u8) -> DeviceSigner {
        DeviceSigner::sm2(Sm2SigningKey::from_seed(&[seed; 32]).unwrap()).unwrap()
    }
    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_nanos(ms * 1_000_000)
    }
    fn setup() -> (Verifier, DeviceSigner) {
        let s = signer(5);
        let mut v = Verifier::new(Freshness::default());
        v.set_key("cam-1", s.public().clone());
        (v, s)
    }
    fn msg(s: &DeviceSigner, boot: u32, seq: u64, ts: i64) -> Vec<u8> {
        Envelope::seal(
            s,
            "cam-1",
            boot,
            seq,
            ts,
            br#"{"type":"reading","metrics":{"t":21.5}}"#,
        )
        .unwrap()
    }

    #[test]
    fn authentic_messages_pass_and_round_trip() {
        let (mut v, s) = setup();
        let m = msg(&s, 1, 1, T0);
        let (e, verdict) = v.check(&m, Some("cam-1"), at(T0 + 20));
        assert_eq!(verdict, Verdict::Accepted { late: false });
        let e = e.unwrap();
        assert_eq!(
            (e.boot, e.seq, e.ts_ms, e.device.as_str()),
            (1, 1, T0, "cam-1")
        );
        let b: Body = serde_json::from_slice(&e.body).unwrap();
        assert!(matches!(b, Body::Reading { .. }));
    }

    #[test]
    fn tampering_forgery_and_spoofing_are_refused_with_their_reason() {
        let (mut v, s) = setup();
        let mut m = msg(&s, 1, 1, T0);
        let i = m.len() - 70; // inside the body
        m[i] ^= 1;
        assert_eq!(
            v.check(&m, None, at(T0)).1,
            Verdict::Rejected(Reject::BadSignature)
        );
        // Signed by another key.
        let forged = msg(&signer(6), 1, 2, T0);
        assert_eq!(
            v.check(&forged, None, at(T0)).1,
            Verdict::Rejected(Reject::BadSignature)
        );
        // A genuine message sent over another device's connection.
        let good = msg(&s, 1, 3, T0);
        assert!(matches!(
            v.check(&good, Some("cam-2"), at(T0)).1,
            Verdict::Rejected(Reject::IdentityMismatch { .. })
        ));
        // Unknown device.
        let other = Envelope::seal(&s, "cam-9", 1, 1, T0, b"{}").unwrap();
        assert_eq!(
            v.check(&other, None, at(T0)).1,
            Verdict::Rejected(Reject::UnknownDevice)
        );
        // Forged messages never advance the window: the genuine seq 1 and 2 still pass.
        assert_eq!(
            v.check(&msg(&s, 1, 2, T0), None, at(T0)).1,
            Verdict::Accepted { late: false }
        );
        assert_eq!(
            v.check(&msg(&s, 1, 1, T0), None, at(T0)).1,
            Verdict::Accepted { late: false }
        );
        assert!(matches!(
            v.check(b"CFT1junk", None, at(T0)).1,
            Verdict::Rejected(Reject::Malformed { .. })
        ));
        assert!(matches!(
            v.check(&msg(&s, 1, 4, T0 + 3_600_000), None, at(T0)).1,
            Verdict::Rejected(Reject::FromFuture { .. })
        ));
    }

    #[test]
    fn redeliveries_are_dropped_quietly_and_old_replays_raise_alerts() {
        let (mut v, s) = setup();
        let m5 = msg(&s, 1, 5, T0);
        assert_eq!(
            v.check(&m5, None, at(T0)).1,
            Verdict::Accepted { late: false }
        );
        // Broker redelivery a few seconds later: a duplicate, no alert.
        assert_eq!(v.check(&m5, None, at(T0 + 5_000)).1, Verdict::Duplicate);
        // Out of order within the window is fine, once.
        let m3 = msg(&s, 1, 3, T0);
        assert_eq!(
            v.check(&m3, None, at(T0 + 1)).1,
            Verdict::Accepted { late: false }
        );
        assert_eq!(v.check(&m3, None, at(T0 + 2)).1, Verdict::Duplicate);
        // The same capture replayed an hour later is an attack.
        assert_eq!(
            v.check(&m5, None, at(T0 + 3_600_000)).1,
            Verdict::Rejected(Reject::Replay { boot: 1, seq: 5 })
        );
        // Far below the window: treated as seen.
        for seq in 6..200 {
            assert_eq!(
                v.check(&msg(&s, 1, seq, T0), None, at(T0)).1,
                Verdict::Accepted { late: false }
            );
        }
        assert_eq!(
            v.check(&msg(&s, 1, 4, T0), None, at(T0 + 3_600_000)).1,
            Verdict::Rejected(Reject::Replay { boot: 1, seq: 4 })
        );
    }

    #[test]
    fn a_reboot_opens_a_new_window_and_the_old_boot_cannot_be_replayed() {
        let (mut v, s) = setup();
        for seq in 1..=10 {
            assert!(matches!(
                v.check(&msg(&s, 7, seq, T0), None, at(T0)).1,
                Verdict::Accepted { .. }
            ));
        }
        // Reboot: seq restarts at 1 under boot 8 — no false alarm.
        assert_eq!(
            v.check(&msg(&s, 8, 1, T0 + 1000), None, at(T0 + 1000)).1,
            Verdict::Accepted { late: false }
        );
        // An old-boot message replayed later is refused.
        assert_eq!(
            v.check(&msg(&s, 7, 11, T0), None, at(T0 + 3_600_000)).1,
            Verdict::Rejected(Reject::Replay { boot: 7, seq: 11 })
        );
        // State survives a platform restart through ReplayState.
        let st = v.state("cam-1").unwrap();
        let mut v2 = Verifier::new(Freshness::default());
        v2.set_key("cam-1", s.public().clone());
        v2.restore("cam-1", st);
        assert_eq!(
            v2.check(&msg(&s, 8, 1, T0), None, at(T0 + 3_600_000)).1,
            Verdict::Rejected(Reject::Replay { boot: 8, seq: 1 })
        );
        // Messages queued by the broker while the platform was down arrive late but new.
        assert_eq!(
            v2.check(&msg(&s, 8, 2, T0 + 1000), None, at(T0 + 3_600_000))
                .1,
            Verdict::Accepted { late: true }
        );
    }

    #[test]
    fn the_signed_prefix_is_the_canonical_encoding() {
        let (_, s) = setup();
        let m = msg(&s, 2, 9, T0);
        let e = Envelope::decode(&m).unwrap();
        assert_eq!(encode_prefix(&e), m[..e.signed_len].to_vec());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Envelope::decode(&b);
            let mut x = MAGIC.to_vec();
            x.extend_from_slice(&b);
            let _ = Envelope::decode(&x);
        }

        #[test]
        fn any_single_bit_flip_is_detected(pos in 0usize..120, bit in 0u8..8) {
            let (mut v, s) = setup();
            let mut m = msg(&s, 1, 1, T0);
            let p = pos % m.len();
            m[p] ^= 1 << bit;
            let verdict = v.check(&m, None, at(T0)).1;
            proptest::prop_assert!(matches!(verdict, Verdict::Rejected(_)), "{verdict:?}");
        }
    }
}
