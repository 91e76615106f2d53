//! The HSM root against a real PKCS#11 module: SoftHSM2 with a token made for the test.

use cf_hsm::{HsmConfig, HsmError, HsmRoot};
use cf_kms::seal::RootWrap;
use zeroize::Zeroizing;

#[test]
fn root_key_wraps_in_the_token_persists_and_never_leaves_it() {
    let Some(module) = cf_testkit::softhsm_module() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let conf = cf_testkit::softhsm_token(tmp.path(), "chengfang-test", "12345678");
    // SAFETY: this is the only test in this binary, so no other thread reads the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let cfg = |pin: &str| HsmConfig {
        module: module.clone(),
        token: "chengfang-test".into(),
        pin: Zeroizing::new(pin.into()),
        key_label: "chengfang-root".into(),
    };
    let rng = cf_crypto::OsRng;

    let wrapped = {
        let root = HsmRoot::open(&cfg("12345678")).unwrap();
        assert_eq!(root.kind(), "pkcs11");
        assert!(
            !root.key_is_extractable().unwrap(),
            "the root key must not be readable from the token"
        );
        let w = root.wrap(b"org/city-hall", &[7u8; 32], &rng).unwrap();
        assert!(w.starts_with("p11:"));
        assert_eq!(&root.unwrap(b"org/city-hall", &w).unwrap()[..], &[7u8; 32]);
        assert!(
            root.unwrap(b"org/other", &w).is_err(),
            "bound to its place in the hierarchy"
        );
        let mut bad = w.clone();
        bad.pop();
        bad.push(if w.ends_with('A') { 'B' } else { 'A' });
        assert!(root.unwrap(b"org/city-hall", &bad).is_err());
        w
    };
    // A later session finds the same key in the token.
    let root = HsmRoot::open(&cfg("12345678")).unwrap();
    assert_eq!(
        &root.unwrap(b"org/city-hall", &wrapped).unwrap()[..],
        &[7u8; 32]
    );
    drop(root);

    let e = HsmRoot::open(&cfg("00000000")).unwrap_err();
    assert!(
        matches!(e, HsmError::Login(_)) && !e.to_string().contains("00000000"),
        "{e}"
    );
    let mut c = cfg("12345678");
    c.token = "no-such-token".into();
    assert!(matches!(
        HsmRoot::open(&c).unwrap_err(),
        HsmError::NoToken(_)
    ));
}
