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
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| tls(&e))?;
    Ok(Arc::new(cfg))
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
