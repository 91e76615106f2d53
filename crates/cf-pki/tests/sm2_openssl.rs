//! SM2 device certificates (DEV-1) against OpenSSL as an independent oracle: OpenSSL's SM2 CSRs
//! (under both of its signer identifiers) are accepted, ours verify in OpenSSL, and OpenSSL checks
//! the certificates we issue over SM2 keys and reads them as we meant them.

use std::path::Path;
use std::process::Command;

use cf_core::Timestamp;
use cf_crypto::devkey::{DeviceSigner, KeyAlg};
use cf_pki::device::{cert_info, device_key, issue_device_cert, verify_csr, verify_issued_by};

/// Run openssl in `dir`; `None` (skip) only outside CI when openssl is missing.
fn openssl(dir: &Path, args: &[&str]) -> Option<std::process::Output> {
    match Command::new("openssl").current_dir(dir).args(args).output() {
        Ok(o) => Some(o),
        Err(e) => {
            assert!(
                !cf_testkit::in_ci(),
                "openssl is needed as the SM2 oracle in CI: {e}"
            );
            eprintln!("*** SKIPPED: openssl not found ***");
            None
        }
    }
}

fn ok(dir: &Path, args: &[&str]) -> Option<String> {
    let o = openssl(dir, args)?;
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn now() -> Timestamp {
    // Issue at the real time: openssl verify checks validity against its own clock.
    Timestamp::from_unix_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

#[test]
fn openssl_sm2_requests_are_accepted_under_either_identifier_and_forgeries_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(_) = ok(d, &["genpkey", "-algorithm", "SM2", "-out", "key.pem"]) else {
        return;
    };
    // OpenSSL 3.x signs X.509 objects with an empty identifier unless told otherwise; devices
    // built on it send either form.
    for (name, extra) in [
        ("default.csr", vec![]),
        ("standard.csr", vec!["-sigopt", "distid:1234567812345678"]),
    ] {
        let mut args = vec![
            "req",
            "-new",
            "-key",
            "key.pem",
            "-sm3",
            "-subj",
            "/CN=meter-7",
            "-out",
            name,
        ];
        args.extend(extra);
        ok(d, &args).unwrap();
        let pem = std::fs::read_to_string(d.join(name)).unwrap();
        let info = verify_csr(&pem).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.alg, KeyAlg::Sm2);
        assert_eq!(info.requested_cn.as_deref(), Some("meter-7"));
        // The key OpenSSL put in the request is the key of its PKCS#8 file, which we load too.
        let der = |args: &[&str]| openssl(d, args).unwrap().stdout;
        let pkcs8 = der(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER",
        ]);
        let signer = DeviceSigner::from_pkcs8(KeyAlg::Sm2, &cf_core::Secret::new(pkcs8)).unwrap();
        assert_eq!(signer.public().raw(), &info.public_key[..]);
        // One changed bit of the signature and the request no longer proves possession.
        let mut forged = der(&["req", "-in", name, "-outform", "DER"]);
        cf_pki::device::verify_csr_der(&forged).unwrap();
        let n = forged.len();
        forged[n - 3] ^= 0x01;
        assert!(cf_pki::device::verify_csr_der(&forged).is_err(), "{name}");
    }
}

#[test]
fn openssl_verifies_our_sm2_requests_and_the_certificates_we_issue_over_sm2_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if openssl(d, &["version"]).is_none() {
        return;
    }
    let t = now();
    let ca = cf_pki::new_ca("City Device CA", t, 10).unwrap();
    let k = device_key(KeyAlg::Sm2, "whatever-it-asks").unwrap();
    std::fs::write(d.join("dev.csr"), &k.csr_pem).unwrap();
    std::fs::write(d.join("dev.key"), k.key_pem.expose()).unwrap();
    let out = Command::new("openssl")
        .current_dir(d)
        .args([
            "req",
            "-in",
            "dev.csr",
            "-verify",
            "-noout",
            "-vfyopt",
            "distid:1234567812345678",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl refused our SM2 CSR: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Our PKCS#8 key file is one OpenSSL reads as SM2, with the CSR's public key.
    let text = ok(d, &["pkey", "-in", "dev.key", "-noout", "-text"]).unwrap();
    assert!(text.contains("SM2"), "{text}");

    let pem = issue_device_cert(
        &ca.cert_pem,
        &ca.key_pem,
        &k.csr_der,
        "meter-0042",
        &[0x5a; 16],
        t,
        72,
    )
    .unwrap();
    std::fs::write(d.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(d.join("dev.pem"), &pem).unwrap();
    let v = ok(
        d,
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.pem",
            "dev.pem",
        ],
    )
    .unwrap();
    assert!(v.contains("dev.pem: OK"), "{v}");
    let text = ok(d, &["x509", "-in", "dev.pem", "-noout", "-text"]).unwrap();
    for want in [
        "Subject: CN = meter-0042, OU = devices",
        "ASN1 OID: SM2",
        "TLS Web Client Authentication",
        "URI:urn:chengfang:device:meter-0042",
        "Digital Signature",
        "Issuer: CN = City Device CA, O = Chengfang",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    // Our own reading agrees.
    let info = verify_issued_by(&pem, &ca.cert_pem, t).unwrap();
    assert_eq!(info.alg, Some(KeyAlg::Sm2));
    assert_eq!(info.common_name.as_deref(), Some("meter-0042"));
    let c = cert_info(&pem).unwrap();
    assert_eq!(
        c.not_after.unix_millis() - c.not_before.unix_millis(),
        (72 * 3600 + 300) * 1000
    );
}
