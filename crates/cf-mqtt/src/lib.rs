//! The MQTT edge (DEV-1, AVL-2): writes a Mosquitto configuration that only admits certificates
//! of the platform CA, pushes CRL and per-device ACLs to the broker and reloads it, publishes
//! device commands, and feeds the device service with every telemetry message the broker carries.
//!
//! Architecture invariant: the only crate that speaks MQTT or knows Mosquitto's file formats.

pub mod broker;
pub mod ingest;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Errors of the MQTT edge (never carry key bytes).
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// Certificates or keys could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Files could not be written.
    #[error("{path}: {err}")]
    Io {
        /// File.
        path: String,
        /// Error.
        err: std::io::Error,
    },
    /// The broker could not be reached or refused.
    #[error("broker: {0}")]
    Broker(String),
}

/// A TLS client configuration that trusts `ca_pem` and authenticates with `cert_pem`/`key_pem`.
/// An SM2 key signs the handshake with RFC 8998's `sm2sig_sm3` over TLS 1.3 (the platform's HTTPS
/// ingest accepts it; Mosquitto on OpenSSL 3.0 refuses SM2 certificates at the handshake).
pub fn client_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, MqttError> {
    let tls = |e: &dyn std::fmt::Display| MqttError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| MqttError::Tls("no usable PRIVATE KEY block".into()))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ));
    if let Ok(sm2) = cf_crypto::Sm2SigningKey::from_pkcs8_der(key.secret_der()) {
        let certified = rustls::sign::CertifiedKey::new(chain, Arc::new(Sm2Key(Arc::new(sm2))));
        let cfg = builder
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls(&e))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(Sm2Resolver(Arc::new(certified))));
        return Ok(Arc::new(cfg));
    }
    let cfg = builder
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(cfg))
}

const SM2SIG_SM3: rustls::SignatureScheme =
    rustls::SignatureScheme::Unknown(cf_pki::sm2cert::TLS13_SM2SIG_SM3);

/// An SM2 device key as a rustls signing key (rustls has no ShangMi scheme of its own).
struct Sm2Key(Arc<cf_crypto::Sm2SigningKey>);

impl std::fmt::Debug for Sm2Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm2Key")
    }
}

impl rustls::sign::SigningKey for Sm2Key {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SM2SIG_SM3)
            .then(|| Box::new(Sm2Key(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::Unknown(0x07)
    }
}

impl rustls::sign::Signer for Sm2Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        cf_pki::sm2cert::sign_tls13(&self.0, message)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }
    fn scheme(&self) -> rustls::SignatureScheme {
        SM2SIG_SM3
    }
}

/// Always the one SM2 certificate; a server that does not offer `sm2sig_sm3` gets none.
#[derive(Debug)]
struct Sm2Resolver(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Sm2Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        sigschemes.contains(&SM2SIG_SM3).then(|| self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// MQTT options for a TLS connection to `host:port` as `client_id`.
pub fn options(
    client_id: &str,
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, host, port);
    o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
        tls,
    )));
    o.set_keep_alive(std::time::Duration::from_secs(30));
    // Telemetry bodies go up to 64 KiB (cf_device::telemetry::MAX_BODY) plus the envelope.
    o.set_max_packet_size(128 * 1024, 128 * 1024);
    o
}
