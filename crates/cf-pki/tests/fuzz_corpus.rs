//! Replays the committed cargo-fuzz corpus `fuzz/corpus/csr` on stable Rust.

#[test]
fn csr_corpus_replays_without_panics() {
    let n = cf_testkit::replay_corpus("csr", cf_pki::fuzzing::csr);
    assert!(n >= 5, "csr corpus has the PEM and DER seeds");
}

#[test]
fn csrs_made_by_openssl_verify_and_an_sm2_key_signing_ecdsa_is_refused_with_a_reason() {
    use cf_crypto::devkey::KeyAlg;
    let dir = cf_testkit::fuzz_corpus("csr");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let p = cf_pki::device::verify_csr(&read("p256.pem")).unwrap();
    assert_eq!(
        (p.alg, p.requested_cn.as_deref()),
        (KeyAlg::EcdsaP256, Some("cam-1"))
    );
    let der = std::fs::read(dir.join("p256.der")).unwrap();
    assert_eq!(cf_pki::device::verify_csr_der(&der).unwrap(), p);
    let e = cf_pki::device::verify_csr(&read("ed25519.pem")).unwrap();
    assert_eq!(e.alg, KeyAlg::Ed25519);
    // `sm2.pem` is an SM2-curve key signed ECDSA-with-SHA256 (OpenSSL's `req` without `-sm3`):
    // SM2 keys must sign SM2-with-SM3, and the refusal says so (proper SM2 requests are accepted,
    // tests/sm2_openssl.rs).
    let err = cf_pki::device::verify_csr(&read("sm2.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SM2-with-SM3"), "{err}");
    let s = cf_pki::device::verify_csr(&read("sm2_sm3.pem")).unwrap();
    assert_eq!(
        (s.alg, s.requested_cn.as_deref()),
        (KeyAlg::Sm2, Some("cam-4"))
    );
}
