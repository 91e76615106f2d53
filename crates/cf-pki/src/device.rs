//! Device certificates (DEV-1): verify a device's own CSR, issue a short-lived client certificate
//! that names the device (never the CSR's claimed subject), revoke through a signed CRL.
//!
//! Device keys may be ECDSA P-256, Ed25519 (certificates by rcgen) or SM2 (certificates written by
//! [`crate::sm2cert`]); the CA and its CRL are the same for all three.

use cf_core::{Secret, Timestamp};
use cf_crypto::devkey::KeyAlg;
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// OIDs of the subject public key algorithms we accept.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_SM2_CURVE: &str = "1.2.156.10197.1.301";
const OID_ED25519: &str = "1.3.101.112";

/// Largest CSR or certificate PEM accepted (a device CSR is well under 2 KiB).
pub const MAX_PEM: usize = 16 * 1024;

/// What a verified CSR proves: the requester holds the private key of `public_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    /// Key algorithm.
    pub alg: KeyAlg,
    /// Raw public key (SEC1 point or 32 Ed25519 bytes).
    pub public_key: Vec<u8>,
    /// Common name the device asked for (informational; the certificate names the device id).
    pub requested_cn: Option<String>,
}

/// Facts read off a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial, lowercase hex without leading zero bytes.
    pub serial: String,
    /// Subject common name.
    pub common_name: Option<String>,
    /// Issuer common name.
    pub issuer_cn: Option<String>,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// Key algorithm.
    pub alg: Option<KeyAlg>,
    /// Raw public key.
    pub public_key: Vec<u8>,
    /// SHA-256 of the DER certificate, hex.
    pub fingerprint: String,
}

fn spki_alg(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyAlg, PkiError> {
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid == OID_ED25519 {
        return Ok(KeyAlg::Ed25519);
    }
    if oid == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        return match curve.as_deref() {
            Some(OID_P256) => Ok(KeyAlg::EcdsaP256),
            Some(OID_SM2_CURVE) => Ok(KeyAlg::Sm2),
            other => Err(PkiError::Unsupported(format!(
                "elliptic curve {}",
                other.unwrap_or("(none)")
            ))),
        };
    }
    Err(PkiError::Unsupported(format!("key algorithm {oid}")))
}

fn pem_block(pem: &str, what: &'static str) -> Result<Vec<u8>, PkiError> {
    if pem.len() > MAX_PEM {
        return Err(PkiError::Invalid(format!(
            "{what} larger than {MAX_PEM} bytes"
        )));
    }
    let (label, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| (p.label, p.contents))
        .map_err(|_| PkiError::Pem(what))?;
    let expected = match what {
        "CSR" => ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"].as_slice(),
        _ => ["CERTIFICATE"].as_slice(),
    };
    if !expected.contains(&label.as_str()) {
        return Err(PkiError::Invalid(format!(
            "{what}: PEM block is `{label}`, expected `{}`",
            expected[0]
        )));
    }
    Ok(der)
}

/// The DER inside a certificate PEM.
pub fn pem_to_der(cert_pem: &str) -> Result<Vec<u8>, PkiError> {
    pem_block(cert_pem, "certificate")
}

/// Parse a CSR and verify its self-signature (proof of possession).
pub fn verify_csr(csr_pem: &str) -> Result<CsrInfo, PkiError> {
    let der = pem_block(csr_pem, "CSR")?;
    verify_csr_der(&der)
}

/// As [`verify_csr`], from DER (the RFC 7030 wire form, once base64-decoded).
pub fn verify_csr_der(der: &[u8]) -> Result<CsrInfo, PkiError> {
    verify_csr_spki(der).map(|(info, _)| info)
}

/// As [`verify_csr_der`], also returning the request's DER `SubjectPublicKeyInfo`.
fn verify_csr_spki(der: &[u8]) -> Result<(CsrInfo, &[u8]), PkiError> {
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|_| PkiError::Invalid("CSR: not a PKCS#10 request".into()))?;
    let info = &csr.certification_request_info;
    let alg = spki_alg(&info.subject_pki)?;
    if alg == KeyAlg::Sm2 {
        crate::sm2cert::verify_csr_signature(
            info.raw,
            &csr.signature_algorithm.algorithm.to_id_string(),
            &csr.signature_value.data,
            &info.subject_pki.subject_public_key.data,
        )?;
    } else {
        csr.verify_signature().map_err(|_| {
            PkiError::Invalid("CSR: signature does not verify (proof of possession failed)".into())
        })?;
    }
    let requested_cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_string);
    Ok((
        CsrInfo {
            alg,
            public_key: info.subject_pki.subject_public_key.data.to_vec(),
            requested_cn,
        },
        info.subject_pki.raw,
    ))
}

/// Issue a client certificate for `device_id` over the key of `csr_der`, valid `hours` from `now`.
/// The subject is the device id alone (brokers use it as the MQTT username), whatever the CSR
/// asked for; the serial is the caller's (random, from an injected source).
pub fn issue_device_cert(
    ca_cert_pem: &str,
    ca_key_pem: &Secret<String>,
    csr_der: &[u8],
    device_id: &str,
    serial: &[u8; 16],
    now: Timestamp,
    hours: u32,
) -> Result<String, PkiError> {
    issue_client_cert(
        ca_cert_pem,
        ca_key_pem,
        csr_der,
        ("devices", "device", device_id),
        serial,
        now,
        hours,
    )
}

/// Issue a client certificate for a person (`username`): subject `CN=username, OU=people`, SAN
/// `urn:chengfang:user:<username>`, so no device certificate can pass for a person's.
pub fn issue_person_cert(
    ca_cert_pem: &str,
    ca_key_pem: &Secret<String>,
    csr_der: &[u8],
    username: &str,
    serial: &[u8; 16],
    now: Timestamp,
    hours: u32,
) -> Result<String, PkiError> {
    issue_client_cert(
        ca_cert_pem,
        ca_key_pem,
        csr_der,
        ("people", "user", username),
        serial,
        now,
        hours,
    )
}

/// `who` is (organisational unit, URN kind, id).
fn issue_client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &Secret<String>,
    csr_der: &[u8],
    who: (&str, &str, &str),
    serial: &[u8; 16],
    now: Timestamp,
    hours: u32,
) -> Result<String, PkiError> {
    let (ou, kind, id) = who;
    let (csr_info, spki_der) = verify_csr_spki(csr_der)?;
    let ca_key = KeyPair::from_pem(ca_key_pem.expose()).map_err(|_| PkiError::Pem("CA key"))?;
    let serial = positive_serial(serial);
    let (not_before, not_after) = validity(now, hours);
    let san_uri = format!("urn:chengfang:{kind}:{id}");
    if csr_info.alg == KeyAlg::Sm2 {
        // rcgen cannot encode an SM2 key: the certificate is written by `sm2cert`, with the
        // same fields, signed by the same CA.
        let ca = crate::sm2cert::ca_parts(&pem_block(ca_cert_pem, "CA certificate")?)?;
        let der = crate::sm2cert::issue(
            &ca,
            &ca_key,
            &crate::sm2cert::Sm2CertFields {
                spki_der,
                cn: id,
                ou,
                san_uri: &san_uri,
                serial: &serial,
                not_before,
                not_after,
            },
        )?;
        return Ok(pem_encode("CERTIFICATE", &der));
    }
    let mut csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
        .map_err(|e| PkiError::Invalid(format!("CSR: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|_| PkiError::Pem("CA certificate"))?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, id);
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    p.subject_alt_names =
        vec![SanType::URI(san_uri.try_into().map_err(
            |e: rcgen::Error| PkiError::Invalid(format!("{kind} id: {e}")),
        )?)];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.not_before = not_before.as_offset_date_time();
    p.not_after = not_after.as_offset_date_time();
    p.use_authority_key_identifier_extension = true;
    csr.params = p;
    let cert = csr.signed_by(&issuer).map_err(crate::ce)?;
    Ok(cert.pem())
}

/// Serial must be positive and keep 16 bytes: clear the top bit, set one below it.
fn positive_serial(serial: &[u8; 16]) -> [u8; 16] {
    let mut s = *serial;
    s[0] &= 0x7f;
    s[0] |= 0x01;
    s
}

/// From five minutes before `now` (clock skew) to `hours` after it.
fn validity(now: Timestamp, hours: u32) -> (Timestamp, Timestamp) {
    let h = u64::from(hours.max(1));
    (
        now.minus(std::time::Duration::from_secs(300)),
        now.plus(std::time::Duration::from_secs(h * 3600)),
    )
}

/// PEM armour (RFC 7468) with LF line ends, as rcgen writes its certificates.
fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Read a certificate's facts.
pub fn cert_info(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let der = pem_block(cert_pem, "certificate")?;
    cert_info_der(&der)
}

/// As [`cert_info`], from DER.
pub fn cert_info_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    let (_, c) = X509Certificate::from_der(der)
        .map_err(|_| PkiError::Invalid("not an X.509 certificate".into()))?;
    let ts = |t: x509_parser::time::ASN1Time| Timestamp::from_unix_secs(t.timestamp());
    Ok(CertInfo {
        serial: hex::encode(c.raw_serial())
            .trim_start_matches("00")
            .to_string(),
        common_name: c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|x| x.as_str().ok())
            .map(str::to_string),
        issuer_cn: c
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|x| x.as_str().ok())
            .map(str::to_string),
        not_before: ts(c.validity().not_before),
        not_after: ts(c.validity().not_after),
        alg: spki_alg(c.public_key()).ok(),
        public_key: c.public_key().subject_public_key.data.to_vec(),
        fingerprint: hex::encode(cf_crypto::sha256(der)),
    })
}

/// Verify that `cert_pem` was issued by `ca_cert_pem` and is valid at `now`.
pub fn verify_issued_by(
    cert_pem: &str,
    ca_cert_pem: &str,
    now: Timestamp,
) -> Result<CertInfo, PkiError> {
    let der = pem_block(cert_pem, "certificate")?;
    verify_issued_by_der(&der, ca_cert_pem, now)
}

/// As [`verify_issued_by`], from DER (a certificate from a TLS handshake).
pub fn verify_issued_by_der(
    der: &[u8],
    ca_cert_pem: &str,
    now: Timestamp,
) -> Result<CertInfo, PkiError> {
    let ca_der = pem_block(ca_cert_pem, "CA certificate")?;
    let (_, c) = X509Certificate::from_der(der)
        .map_err(|_| PkiError::Invalid("not an X.509 certificate".into()))?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|_| PkiError::Invalid("CA: not an X.509 certificate".into()))?;
    c.verify_signature(Some(ca.public_key()))
        .map_err(|_| PkiError::Invalid("certificate not issued by this CA".into()))?;
    let info = cert_info_der(der)?;
    if now < info.not_before || now > info.not_after {
        return Err(PkiError::Invalid(
            "certificate outside its validity period".into(),
        ));
    }
    Ok(info)
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial, hex as in [`CertInfo::serial`].
    pub serial: String,
    /// When.
    pub at: Timestamp,
    /// Revoked because the device was quarantined or compromised (else superseded/cessation).
    pub compromised: bool,
}

/// A CRL signed by the CA, PEM, valid from `now` for `hours` (brokers reload it on every push).
pub fn crl(
    ca_cert_pem: &str,
    ca_key_pem: &Secret<String>,
    revoked: &[Revoked],
    number: u64,
    now: Timestamp,
    hours: u32,
) -> Result<String, PkiError> {
    let ca_key = KeyPair::from_pem(ca_key_pem.expose()).map_err(|_| PkiError::Pem("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|_| PkiError::Pem("CA certificate"))?;
    let mut certs = Vec::with_capacity(revoked.len());
    for r in revoked {
        let bytes = hex::decode(&r.serial)
            .map_err(|_| PkiError::Invalid(format!("serial `{}` is not hex", r.serial)))?;
        certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: r.at.as_offset_date_time(),
            reason_code: Some(if r.compromised {
                RevocationReason::KeyCompromise
            } else {
                RevocationReason::CessationOfOperation
            }),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now.as_offset_date_time() - time::Duration::minutes(1),
        next_update: now.as_offset_date_time() + time::Duration::hours(i64::from(hours.max(1))),
        crl_number: SerialNumber::from(number.max(1)),
        issuing_distribution_point: None,
        revoked_certs: certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer).map_err(crate::ce)?;
    crl.pem().map_err(crate::ce)
}

/// Serials listed in a CRL, after checking the CA's signature over it.
pub fn crl_serials(crl_pem: &str, ca_cert_pem: &str) -> Result<Vec<String>, PkiError> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).map_err(|_| PkiError::Pem("CRL"))?;
    let ca_der = pem_block(ca_cert_pem, "CA certificate")?;
    let (_, ca) = X509Certificate::from_der(&ca_der)
        .map_err(|_| PkiError::Invalid("CA: not an X.509 certificate".into()))?;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&p.contents)
        .map_err(|_| PkiError::Invalid("not a CRL".into()))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| PkiError::Invalid("CRL not signed by this CA".into()))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| {
            hex::encode(r.raw_serial())
                .trim_start_matches("00")
                .to_string()
        })
        .collect())
}

/// A key pair and CSR as a device makes them (the simulator and tests; real devices use their own).
#[derive(Debug)]
pub struct DeviceKey {
    /// Algorithm.
    pub alg: KeyAlg,
    /// PKCS#8 DER private key.
    pub pkcs8: Secret<Vec<u8>>,
    /// PKCS#8 PEM private key (for TLS clients).
    pub key_pem: Secret<String>,
    /// CSR, PEM.
    pub csr_pem: String,
    /// CSR, DER.
    pub csr_der: Vec<u8>,
}

/// Generate a device key pair and a CSR asking for `cn`.
pub fn device_key(alg: KeyAlg, cn: &str) -> Result<DeviceKey, PkiError> {
    let sig = match alg {
        KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        KeyAlg::Sm2 => {
            let key = cf_crypto::Sm2SigningKey::generate(&cf_crypto::OsRng)
                .map_err(|e| PkiError::Invalid(e.to_string()))?;
            let (pkcs8, key_pem) = key
                .to_pkcs8()
                .map_err(|e| PkiError::Invalid(e.to_string()))?;
            let csr_der = crate::sm2cert::sm2_csr(&key, cn);
            return Ok(DeviceKey {
                alg,
                pkcs8,
                key_pem,
                csr_pem: pem_encode("CERTIFICATE REQUEST", &csr_der),
                csr_der,
            });
        }
    };
    let key = KeyPair::generate_for(sig).map_err(crate::ce)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    let csr = p.serialize_request(&key).map_err(crate::ce)?;
    Ok(DeviceKey {
        alg,
        pkcs8: Secret::new(key.serialize_der()),
        key_pem: Secret::new(key.serialize_pem()),
        csr_pem: csr.pem().map_err(crate::ce)?,
        csr_der: csr.der().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_ca;

    fn now() -> Timestamp {
        Timestamp::from_unix_secs(1_790_000_000)
    }

    #[test]
    fn a_device_csr_becomes_a_certificate_that_names_the_device() {
        let ca = new_ca("City Device CA", now(), 10).unwrap();
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519, KeyAlg::Sm2] {
            let k = device_key(alg, "admin").unwrap();
            let info = verify_csr(&k.csr_pem).unwrap();
            assert_eq!(info.alg, alg);
            assert_eq!(info.requested_cn.as_deref(), Some("admin"));
            let pem = issue_device_cert(
                &ca.cert_pem,
                &ca.key_pem,
                &k.csr_der,
                "cam-0001",
                &[0xAB; 16],
                now(),
                24,
            )
            .unwrap();
            let c = verify_issued_by(&pem, &ca.cert_pem, now()).unwrap();
            // The CSR asked for "admin"; the certificate names the device.
            assert_eq!(c.common_name.as_deref(), Some("cam-0001"));
            assert_eq!(c.alg, Some(alg));
            assert_eq!(c.public_key, info.public_key);
            assert_eq!(c.serial, format!("2b{}", "ab".repeat(15)));
            assert!(
                verify_issued_by(
                    &pem,
                    &ca.cert_pem,
                    Timestamp::from_unix_secs(1_790_000_000 + 25 * 3600)
                )
                .is_err()
            );
            // The signer in cf-crypto signs with the same key the certificate carries.
            let s = cf_crypto::devkey::DeviceSigner::from_pkcs8(alg, &k.pkcs8).unwrap();
            assert_eq!(s.public().raw(), &c.public_key[..]);
        }
    }

    #[test]
    fn forged_csrs_and_foreign_certificates_are_refused() {
        let ca = new_ca("City Device CA", now(), 10).unwrap();
        let other = new_ca("Other CA", now(), 10).unwrap();
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519, KeyAlg::Sm2] {
            let k = device_key(alg, "x").unwrap();
            let mut der = k.csr_der.clone();
            let n = der.len();
            der[n - 5] ^= 0x40; // inside the signature
            assert!(verify_csr_der(&der).is_err(), "{alg}");
            assert!(
                issue_device_cert(&ca.cert_pem, &ca.key_pem, &der, "d1", &[1; 16], now(), 1)
                    .is_err()
            );
            // The request's subject is signed too: a changed name breaks the signature.
            let mut der = k.csr_der.clone();
            // The common name's value follows its OID 2.5.4.3 (55 04 03), a tag and a length.
            let at = der.windows(3).position(|w| w == [0x55, 4, 3]).unwrap() + 5;
            assert_eq!(der[at], b'x');
            der[at] = b'y';
            assert!(verify_csr_der(&der).is_err(), "{alg}");
        }
        let k = device_key(KeyAlg::EcdsaP256, "x").unwrap();
        assert!(
            verify_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            )
            .is_err()
        );
        assert!(
            verify_csr(&ca.cert_pem).is_err(),
            "a certificate is not a CSR"
        );
        let pem = issue_device_cert(
            &ca.cert_pem,
            &ca.key_pem,
            &k.csr_der,
            "d1",
            &[1; 16],
            now(),
            1,
        )
        .unwrap();
        assert!(verify_issued_by(&pem, &other.cert_pem, now()).is_err());
        let sm2 = device_key(KeyAlg::Sm2, "x").unwrap();
        let pem = issue_device_cert(
            &ca.cert_pem,
            &ca.key_pem,
            &sm2.csr_der,
            "d2",
            &[2; 16],
            now(),
            1,
        )
        .unwrap();
        assert!(verify_issued_by(&pem, &other.cert_pem, now()).is_err());
        // A certificate is bound by the CA's signature: one changed byte of it is refused.
        let mut der = pem_to_der(&pem).unwrap();
        let at = der.windows(2).position(|w| w == b"d2").unwrap();
        der[at + 1] = b'3';
        assert!(verify_issued_by_der(&der, &ca.cert_pem, now()).is_err());
    }

    #[test]
    fn crls_list_revoked_serials_and_are_signed() {
        let ca = new_ca("City Device CA", now(), 10).unwrap();
        let other = new_ca("Other CA", now(), 10).unwrap();
        let k = device_key(KeyAlg::Ed25519, "x").unwrap();
        let pem = issue_device_cert(
            &ca.cert_pem,
            &ca.key_pem,
            &k.csr_der,
            "d1",
            &[9; 16],
            now(),
            1,
        )
        .unwrap();
        let serial = cert_info(&pem).unwrap().serial;
        let list = crl(
            &ca.cert_pem,
            &ca.key_pem,
            &[Revoked {
                serial: serial.clone(),
                at: now(),
                compromised: true,
            }],
            3,
            now(),
            24,
        )
        .unwrap();
        assert!(list.starts_with("-----BEGIN X509 CRL-----"));
        assert_eq!(crl_serials(&list, &ca.cert_pem).unwrap(), vec![serial]);
        assert!(crl_serials(&list, &other.cert_pem).is_err());
        let empty = crl(&ca.cert_pem, &ca.key_pem, &[], 4, now(), 24).unwrap();
        assert!(crl_serials(&empty, &ca.cert_pem).unwrap().is_empty());
    }
}
