//! SM2 device keys in X.509 (DEV-1, GB/T 32918): SM2 CSRs are verified and SM2 keys certified here,
//! because rcgen can neither encode an SM2 public key nor check an SM2-with-SM3 signature.
//!
//! The certificate is written field by field (RFC 5280 §4.1) with the same subject, SAN, key usage
//! and extended key usage as the rcgen-issued P-256 and Ed25519 device certificates, and is signed
//! by the same device CA, so one CA, one CRL and one chain check serve every key type.

use cf_core::Timestamp;
use cf_crypto::{SM2_DEFAULT_DISTID, Sm2PublicKey, Sm2SigningKey};
use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::{ObjectIdentifier, UTCTime};
use yasna::{DERWriter, Tag};

use crate::PkiError;

/// `SM2-with-SM3` (GM/T 0006).
const SM2_WITH_SM3: &[u64] = &[1, 2, 156, 10197, 1, 501];
/// `ecdsa-with-SHA256` (RFC 5758).
const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
/// `id-Ed25519` (RFC 8410).
const ED25519: &[u64] = &[1, 3, 101, 112];
const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const SM2_CURVE: &[u64] = &[1, 2, 156, 10197, 1, 301];
const CN: &[u64] = &[2, 5, 4, 3];
const OU: &[u64] = &[2, 5, 4, 11];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const SAN: &[u64] = &[2, 5, 29, 17];
const EKU: &[u64] = &[2, 5, 29, 37];
const AKI: &[u64] = &[2, 5, 29, 35];
const CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

fn oid(w: DERWriter<'_>, arcs: &[u64]) {
    w.write_oid(&ObjectIdentifier::from_slice(arcs));
}

/// `r‖s` (64 bytes) from a DER `SEQUENCE { INTEGER r, INTEGER s }`, each at most 32 bytes.
fn rs_from_der(der: &[u8]) -> Option<[u8; 64]> {
    let (r, s) = yasna::parse_der(der, |rd| {
        rd.read_sequence(|rd| {
            let r = rd.next().read_bigint_bytes()?;
            let s = rd.next().read_bigint_bytes()?;
            Ok((r, s))
        })
    })
    .ok()?;
    let mut out = [0u8; 64];
    for (i, (bytes, positive)) in [r, s].into_iter().enumerate() {
        let trimmed: &[u8] = {
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
            &bytes[start..]
        };
        if !positive || trimmed.is_empty() || trimmed.len() > 32 {
            return None;
        }
        out[i * 32 + 32 - trimmed.len()..(i + 1) * 32].copy_from_slice(trimmed);
    }
    Some(out)
}

/// The DER `SEQUENCE { INTEGER r, INTEGER s }` of an `r‖s` signature.
fn rs_to_der(sig: &[u8; 64]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_bigint_bytes(&sig[..32], true);
            w.next().write_bigint_bytes(&sig[32..], true);
        })
    })
}

/// RFC 8998's TLS 1.3 signature scheme `sm2sig_sm3` (code point 0x0708), which TLS stacks
/// without ShangMi support carry as an unknown scheme.
pub const TLS13_SM2SIG_SM3: u16 = 0x0708;

/// Verify a TLS 1.3 `CertificateVerify` signature (DER) over `message` by the SM2 key of the
/// certificate `cert_der`, under RFC 8998's identifier.
pub fn verify_tls13(cert_der: &[u8], message: &[u8], sig_der: &[u8]) -> Result<(), PkiError> {
    let info = crate::device::cert_info_der(cert_der)?;
    if info.alg != Some(cf_crypto::devkey::KeyAlg::Sm2) {
        return Err(PkiError::Invalid(
            "sm2sig_sm3 signature from a certificate without an SM2 key".into(),
        ));
    }
    let pk = Sm2PublicKey::from_slice(&info.public_key)
        .map_err(|_| PkiError::Invalid("certificate: not an SM2 public key".into()))?;
    let sig = rs_from_der(sig_der)
        .ok_or_else(|| PkiError::Invalid("sm2sig_sm3: malformed signature".into()))?;
    pk.verify_with_id(cf_crypto::SM2_TLS13_DISTID, message, &sig)
        .map_err(|_| PkiError::Invalid("sm2sig_sm3: signature does not verify".into()))
}

/// Sign a TLS 1.3 `CertificateVerify` `message` with an SM2 key (DER, RFC 8998 identifier).
pub fn sign_tls13(key: &Sm2SigningKey, message: &[u8]) -> Result<Vec<u8>, PkiError> {
    let sig = key
        .sign_with_id(cf_crypto::SM2_TLS13_DISTID, message)
        .map_err(|e| PkiError::Invalid(e.to_string()))?;
    Ok(rs_to_der(&sig))
}

/// Check an SM2 CSR's self-signature over its `CertificationRequestInfo`. The standard
/// identifier (GM/T 0009, OpenSSL 4) is tried first, then the empty one that OpenSSL 1.1 and 3.x
/// use by default for X.509 objects: either proves possession of the key.
pub(crate) fn verify_csr_signature(
    info_der: &[u8],
    sig_alg: &str,
    sig_der: &[u8],
    public_key: &[u8],
) -> Result<(), PkiError> {
    let bad =
        || PkiError::Invalid("CSR: signature does not verify (proof of possession failed)".into());
    if sig_alg != "1.2.156.10197.1.501" {
        return Err(PkiError::Invalid(format!(
            "CSR: an SM2 key must sign its request with SM2-with-SM3 (1.2.156.10197.1.501), not {sig_alg}"
        )));
    }
    let pk = Sm2PublicKey::from_slice(public_key)
        .map_err(|_| PkiError::Invalid("CSR: not an SM2 public key".into()))?;
    let sig = rs_from_der(sig_der).ok_or_else(bad)?;
    pk.verify_with_id(SM2_DEFAULT_DISTID, info_der, &sig)
        .or_else(|_| pk.verify_with_id("", info_der, &sig))
        .map_err(|_| bad())
}

/// A distinguished name of one attribute per RDN, in order.
fn name(w: DERWriter<'_>, rdns: &[(&[u64], &str)]) {
    w.write_sequence(|w| {
        for &(arcs, value) in rdns {
            w.next().write_set(|w| {
                w.next().write_sequence(|w| {
                    oid(w.next(), arcs);
                    w.next().write_utf8_string(value);
                })
            });
        }
    });
}

/// A PKCS#10 request for `key` asking for `CN=cn`, signed SM2-with-SM3 under the standard
/// identifier (what a device makes; the simulator and tests use it).
pub fn sm2_csr(key: &Sm2SigningKey, cn: &str) -> Vec<u8> {
    let spki = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                oid(w.next(), EC_PUBLIC_KEY);
                oid(w.next(), SM2_CURVE);
            });
            let pk = key.public().0;
            w.next().write_bitvec_bytes(&pk, pk.len() * 8);
        })
    });
    let info = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(0);
            name(w.next(), &[(CN, cn)]);
            w.next().write_der(&spki);
            w.next()
                .write_tagged_implicit(Tag::context(0), |w| w.write_set(|_| ()));
        })
    });
    signed(&info, SM2_WITH_SM3, &rs_to_der(&key.sign(&info)))
}

/// `SEQUENCE { body, AlgorithmIdentifier { alg }, BIT STRING sig }`: the shape of both a signed
/// request (RFC 2986) and a certificate (RFC 5280), with the algorithm's parameters absent.
fn signed(body: &[u8], alg: &[u64], sig: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(body);
            w.next().write_sequence(|w| oid(w.next(), alg));
            w.next().write_bitvec_bytes(sig, sig.len() * 8);
        })
    })
}

/// What the issuing CA contributes to a certificate.
pub(crate) struct CaParts {
    subject_der: Vec<u8>,
    key_id: Option<Vec<u8>>,
}

pub(crate) fn ca_parts(ca_der: &[u8]) -> Result<CaParts, PkiError> {
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|_| PkiError::Invalid("CA: not an X.509 certificate".into()))?;
    let key_id = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    Ok(CaParts {
        subject_der: ca.tbs_certificate.subject.as_raw().to_vec(),
        key_id,
    })
}

/// Fields of an SM2-key client certificate.
pub(crate) struct Sm2CertFields<'a> {
    pub spki_der: &'a [u8],
    pub cn: &'a str,
    pub ou: &'a str,
    pub san_uri: &'a str,
    pub serial: &'a [u8; 16],
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// UTCTime to the second (it has no fraction; yasna panics on one, so it is cut here).
fn utc(t: Timestamp) -> Result<UTCTime, PkiError> {
    t.as_offset_date_time()
        .replace_nanosecond(0)
        .ok()
        .and_then(UTCTime::from_datetime_opt)
        .ok_or_else(|| {
            PkiError::Invalid("certificate validity outside the UTCTime years 1950-2049".into())
        })
}

fn extension(w: DERWriter<'_>, arcs: &[u64], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        oid(w.next(), arcs);
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    });
}

/// Issue the certificate, signed by the CA key (`ca_key`, P-256 or Ed25519, as rcgen holds it).
pub(crate) fn issue(
    ca: &CaParts,
    ca_key: &rcgen::KeyPair,
    f: &Sm2CertFields<'_>,
) -> Result<Vec<u8>, PkiError> {
    use rcgen::SigningKey;
    let sig_alg: &[u64] = if ca_key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        ECDSA_SHA256
    } else if ca_key.algorithm() == &rcgen::PKCS_ED25519 {
        ED25519
    } else {
        return Err(PkiError::Unsupported(
            "a device CA key other than ECDSA P-256 or Ed25519".into(),
        ));
    };
    let (not_before, not_after) = (utc(f.not_before)?, utc(f.not_after)?);
    // The SAN is an IA5String and the names are written as given: refuse what they cannot hold.
    if !f.san_uri.is_ascii() || !f.cn.is_ascii() {
        return Err(PkiError::Invalid(format!(
            "certificate name `{}`: only ASCII is accepted",
            f.cn.escape_default()
        )));
    }
    let key_usage = yasna::construct_der(|w| w.write_bitvec_bytes(&[0x80], 1));
    let san = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_tagged_implicit(Tag::context(6), |w| w.write_ia5_string(f.san_uri))
        })
    });
    let eku = yasna::construct_der(|w| w.write_sequence(|w| oid(w.next(), CLIENT_AUTH)));
    let aki = ca.key_id.as_ref().map(|id| {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged_implicit(Tag::context(0), |w| w.write_bytes(id))
            })
        })
    });
    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            w.next().write_bigint_bytes(f.serial, true);
            w.next().write_sequence(|w| oid(w.next(), sig_alg));
            w.next().write_der(&ca.subject_der);
            w.next().write_sequence(|w| {
                w.next().write_utctime(&not_before);
                w.next().write_utctime(&not_after);
            });
            name(w.next(), &[(CN, f.cn), (OU, f.ou)]);
            w.next().write_der(f.spki_der);
            w.next().write_tagged(Tag::context(3), |w| {
                w.write_sequence(|w| {
                    extension(w.next(), SAN, false, &san);
                    extension(w.next(), KEY_USAGE, true, &key_usage);
                    extension(w.next(), EKU, false, &eku);
                    if let Some(aki) = &aki {
                        extension(w.next(), AKI, false, aki);
                    }
                })
            });
        })
    });
    Ok(signed(
        &tbs,
        sig_alg,
        &ca_key.sign(&tbs).map_err(crate::ce)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_times_drop_their_fraction_and_stay_in_utctime_years() {
        let t = Timestamp::from_unix_nanos(1_790_000_000_123_456_789);
        assert_eq!(utc(t).unwrap().datetime().unix_timestamp(), 1_790_000_000);
        assert!(utc(Timestamp::from_unix_secs(2_600_000_000)).is_err()); // 2052
    }

    #[test]
    fn tls13_signatures_bind_the_certificate_key_the_identifier_and_the_transcript() {
        let now = Timestamp::from_unix_secs(1_790_000_000);
        let ca = crate::new_ca("City Device CA", now, 1).unwrap();
        // A device key of `alg` and its certificate (DER) from the CA.
        let issue = |alg, id: &str, serial: u8| {
            let k = crate::device::device_key(alg, id).unwrap();
            let pem = crate::device::issue_device_cert(
                &ca.cert_pem,
                &ca.key_pem,
                &k.csr_der,
                id,
                &[serial; 16],
                now,
                1,
            )
            .unwrap();
            (k, crate::device::pem_to_der(&pem).unwrap())
        };
        let (k, der) = issue(cf_crypto::devkey::KeyAlg::Sm2, "m", 3);
        let key = Sm2SigningKey::from_pkcs8_der(k.pkcs8.expose()).unwrap();
        let sig = sign_tls13(&key, b"transcript").unwrap();
        verify_tls13(&der, b"transcript", &sig).unwrap();
        assert!(verify_tls13(&der, b"transcripT", &sig).is_err());
        // Another key's signature, or this key under the default identifier, is refused.
        let other = Sm2SigningKey::from_seed(&[9; 32]).unwrap();
        assert!(
            verify_tls13(
                &der,
                b"transcript",
                &sign_tls13(&other, b"transcript").unwrap()
            )
            .is_err()
        );
        let plain = rs_to_der(&key.sign(b"transcript"));
        assert!(verify_tls13(&der, b"transcript", &plain).is_err());
        // A certificate without an SM2 key cannot claim sm2sig_sm3.
        let (_, pder) = issue(cf_crypto::devkey::KeyAlg::EcdsaP256, "p", 4);
        assert!(verify_tls13(&pder, b"transcript", &sig).is_err());
        // A name the certificate cannot hold is an error, not a panic.
        assert!(
            crate::device::issue_device_cert(
                &ca.cert_pem,
                &ca.key_pem,
                &k.csr_der,
                "仪表-1",
                &[5; 16],
                now,
                1
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        /// Any bytes given as a signature are refused or read, never a panic; any `r‖s` with
        /// both halves non-zero survives DER and back.
        #[test]
        fn signature_der_never_panics_and_round_trips(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            r in proptest::array::uniform32(proptest::prelude::any::<u8>()),
            s in proptest::array::uniform32(proptest::prelude::any::<u8>()),
        ) {
            let _ = rs_from_der(&junk);
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice(&s);
            sig[31] |= 1;
            sig[63] |= 1;
            proptest::prop_assert_eq!(rs_from_der(&rs_to_der(&sig)), Some(sig));
        }
    }

    #[test]
    fn signature_der_round_trips_and_refuses_oversized_or_negative_integers() {
        let mut sig = [0u8; 64];
        sig[5] = 0x80; // r with leading zero bytes
        sig[32] = 0xff; // s with its top bit set (needs a 0x00 pad in DER)
        sig[63] = 1;
        assert_eq!(rs_from_der(&rs_to_der(&sig)), Some(sig));
        let too_long = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_bigint_bytes(&[1; 33], true);
                w.next().write_u8(1);
            })
        });
        assert_eq!(rs_from_der(&too_long), None);
        let negative = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_i64(-5);
                w.next().write_u8(1);
            })
        });
        assert_eq!(rs_from_der(&negative), None);
        assert_eq!(rs_from_der(b"\x30\x00"), None);
    }
}
