//! The platform's own certificate authority: a CA made at first start, server certificates for
//! the API issued by it, all as PEM text. Device certificates (issue 5) build on the same CA.
//!
//! Architecture invariant: no I/O and no clock — callers pass `now` and persist the PEM.

use cf_core::{Secret, Timestamp};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PKI failures; never carry key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or input.
    #[error("certificate error: {0}")]
    Cert(String),
    /// A PEM input could not be parsed.
    #[error("invalid PEM for {0}")]
    Pem(&'static str),
    /// A CSR, certificate or CRL was malformed or did not verify.
    #[error("{0}")]
    Invalid(String),
    /// A well-formed input that this CA does not issue for.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub mod device;
pub mod sm2cert;

pub(crate) fn ce(e: rcgen::Error) -> PkiError {
    PkiError::Cert(e.to_string())
}

/// A certificate and its private key, both PEM.
#[derive(Debug)]
pub struct IssuedCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM.
    pub key_pem: Secret<String>,
}

/// Make a new self-signed CA (ECDSA P-256) valid for `years` from `now`.
pub fn new_ca(common_name: &str, now: Timestamp, years: u32) -> Result<IssuedCert, PkiError> {
    let key = KeyPair::generate().map_err(ce)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(ce)?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.distinguished_name
        .push(DnType::OrganizationName, "Chengfang");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = now.as_offset_date_time() - time::Duration::hours(1);
    p.not_after = now.as_offset_date_time() + time::Duration::days(365 * i64::from(years));
    let cert = p.self_signed(&key).map_err(ce)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// Issue a TLS server certificate for `names` (DNS names or IP addresses) signed by the CA.
pub fn issue_server_cert(
    ca_cert_pem: &str,
    ca_key_pem: &Secret<String>,
    names: &[String],
    now: Timestamp,
    days: u32,
) -> Result<IssuedCert, PkiError> {
    let ca_key = KeyPair::from_pem(ca_key_pem.expose()).map_err(|_| PkiError::Pem("CA key"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)
        .map_err(|_| PkiError::Pem("CA certificate"))?;
    let key = KeyPair::generate().map_err(ce)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(ce)?;
    for n in names {
        p.subject_alt_names
            .push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(ce)?),
            });
    }
    p.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("chengfang", String::as_str),
    );
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = now.as_offset_date_time() - time::Duration::hours(1);
    p.not_after = now.as_offset_date_time() + time::Duration::days(i64::from(days));
    let cert = p.signed_by(&key, &issuer).map_err(ce)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_chain() {
        let now = Timestamp::from_unix_secs(1_790_000_000);
        let ca = new_ca("Test City CA", now, 10).unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(format!("{:?}", ca.key_pem), "[redacted]");
        let srv = issue_server_cert(
            &ca.cert_pem,
            &ca.key_pem,
            &["localhost".into(), "127.0.0.1".into()],
            now,
            90,
        )
        .unwrap();
        assert!(srv.cert_pem.contains("BEGIN CERTIFICATE"));
        assert!(issue_server_cert("junk", &ca.key_pem, &["x".into()], now, 1).is_err());
    }
}

/// Entry point shared by the cargo-fuzz target `csr` and the stable corpus replay test.
pub mod fuzzing {
    /// Untrusted CSRs and certificates (DER or PEM text) must never panic.
    pub fn csr(data: &[u8]) {
        let _ = crate::device::verify_csr_der(data);
        let _ = crate::device::cert_info_der(data);
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = crate::device::verify_csr(s);
            let _ = crate::device::cert_info(s);
        }
    }
}
