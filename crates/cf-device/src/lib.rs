//! Device trust engine (DEV-1, INT-1, MGT-5, AVL-2): the registry's model and CSV import, the
//! signed telemetry envelope with its replay window, misuse detectors and firmware manifests.
//!
//! Architecture invariant: no I/O and no clock — callers pass `now`; the platform persists state.

pub mod firmware;
pub mod monitor;
pub mod registry;
pub mod telemetry;

pub use registry::{Device, DeviceStatus, NewDevice};
pub use telemetry::{Envelope, Verdict, Verifier};

/// Errors of the device engine; none carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// Input failed validation; the message says what and where.
    #[error("{0}")]
    Invalid(String),
    /// A signature or key was malformed or did not verify.
    #[error("{0}")]
    Crypto(String),
}

/// Entry points shared by the cargo-fuzz targets (`fuzz/`) and the stable corpus replay test.
pub mod fuzzing {
    use cf_core::Timestamp;
    use cf_crypto::Sm2SigningKey;
    use cf_crypto::devkey::DeviceSigner;

    use crate::telemetry::{Envelope, Freshness, Verifier};

    fn signer() -> DeviceSigner {
        // A fixed key, so seeds are reproducible and their signatures valid.
        #[allow(clippy::unwrap_used)]
        DeviceSigner::sm2(Sm2SigningKey::from_seed(&[0x42; 32]).unwrap()).unwrap()
    }

    /// Untrusted telemetry: decoding and verification must never panic.
    pub fn telemetry(data: &[u8]) {
        let mut v = Verifier::new(Freshness::default());
        v.set_key("fuzz-dev", signer().public().clone());
        let now = Timestamp::from_unix_secs(1_790_000_000);
        let _ = v.check(data, Some("fuzz-dev"), now);
        let _ = v.check(data, None, now);
        if let Ok(e) = Envelope::decode(data) {
            let _ = serde_json::from_slice::<crate::telemetry::Body>(&e.body);
        }
    }

    /// Untrusted registry CSV.
    pub fn registry_csv(data: &[u8]) {
        let _ = crate::registry::import_csv(data);
    }

    /// Seed inputs `(file name, bytes)`.
    #[allow(clippy::unwrap_used)]
    pub fn seeds() -> Vec<(String, Vec<u8>)> {
        let s = signer();
        let reading = Envelope::seal(
            &s,
            "fuzz-dev",
            3,
            17,
            1_790_000_000_000,
            br#"{"type":"reading","metrics":{"temperature_c":21.5}}"#,
        )
        .unwrap();
        let hello = Envelope::seal(
            &s,
            "fuzz-dev",
            3,
            1,
            1_790_000_000_000,
            br#"{"type":"hello","firmware_sha256":"00","firmware_version":"1.0"}"#,
        )
        .unwrap();
        vec![
            ("telemetry-reading".into(), reading),
            ("telemetry-hello".into(), hello),
            (
                "registry-csv".into(),
                b"id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\ncam-1,camera,terminal,haidian,39.9,116.3,traffic,Acme,IPC,1.0\nbad,,x,,,,,,,\n".to_vec(),
            ),
        ]
    }
}
