//! The W3C WebAuthn Level 3 test vectors (`shared/datasets/vectors/webauthn/`) through the
//! relying-party checks: every registration and assertion gets the answer the specification
//! implies for a passkey relying party — accepted when the user was verified, refused with the
//! reason otherwise (cross-origin ceremonies, attestation formats and key types not offered).

use cf_identity::webauthn::{self, RelyingParty, WebauthnError};

fn hex(v: &serde_json::Value, k: &str) -> Vec<u8> {
    ::hex::decode(v[k].as_str().unwrap_or_else(|| panic!("{k} missing"))).unwrap()
}

#[test]
fn w3c_level3_vectors_for_passkeys() {
    vectors(true);
}

/// Without the user-verification requirement, every offered vector's signature is checked.
#[test]
fn w3c_level3_vectors_signatures() {
    vectors(false);
}

fn vectors(require_uv: bool) {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = std::fs::read_to_string(root.join("vectors/webauthn/webauthn-l3-test-vectors.json"))
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rp = RelyingParty {
        id: "example.org".into(),
        origin: "https://example.org".into(),
        name: "Example".into(),
        require_uv,
    };
    let blocks = d["blocks"].as_array().unwrap();
    let (mut registered, mut asserted, mut refused) = (0, 0, 0);
    let mut cred = None;
    for b in blocks {
        let section = b["section_id"].as_str().unwrap();
        let v = &b["values"];
        if v.get("attestationObject").is_some() {
            let cd = hex(v, "clientDataJSON");
            let r = webauthn::verify_registration(
                &rp,
                &hex(v, "challenge"),
                &cd,
                &hex(v, "attestationObject"),
            );
            let cross = String::from_utf8_lossy(&cd).contains("\"crossOrigin\":true");
            let ad_flags = {
                // authData sits in the attestation object after its CBOR map key; the flags
                // byte is the 33rd of authData, whose first 32 bytes are SHA-256("example.org").
                let att = hex(v, "attestationObject");
                let h = ring_sha256(b"example.org");
                let at = att.windows(32).position(|w| w == h).unwrap();
                att[at + 32]
            };
            let uv = ad_flags & 0x04 != 0 || !require_uv;
            let offered = matches!(
                section,
                "sctn-test-vectors-none-es256"
                    | "sctn-test-vectors-packed-self-es256"
                    | "sctn-test-vectors-none-es256-long-credential-id"
            );
            match (&r, offered, cross, uv) {
                (Ok(c), true, false, true) => {
                    assert_eq!(c.id, b64(&hex(v, "credential_id")), "{section}");
                    assert_eq!(c.aaguid, v["aaguid"].as_str().unwrap(), "{section}");
                    registered += 1;
                    cred = Some(c.clone());
                }
                (Err(WebauthnError::ClientData(m)), _, true, _) => {
                    assert!(m.contains("cross-origin"), "{section}: {m}");
                    refused += 1;
                    cred = None;
                }
                (Err(WebauthnError::AuthData(m)), _, false, false) => {
                    assert!(m.contains("not verified"), "{section}: {m}");
                    refused += 1;
                    cred = None;
                }
                (Err(WebauthnError::Unsupported(_)), false, false, _) => {
                    refused += 1;
                    cred = None;
                }
                other => panic!("{section}: unexpected {other:?}"),
            }
        } else if let Some(c) = cred.take() {
            let cd = hex(v, "clientDataJSON");
            let ad = hex(v, "authenticatorData");
            let r = webauthn::verify_assertion(
                &rp,
                &hex(v, "challenge"),
                &c,
                b"",
                &cd,
                &ad,
                &hex(v, "signature"),
                None,
            );
            if ad[32] & 0x04 != 0 || !require_uv {
                r.unwrap_or_else(|e| panic!("{section} assertion: {e}"));
                asserted += 1;
                // The same signature over altered client data does not verify.
                let mut cd2 = cd.clone();
                let n = cd2.len() - 2;
                cd2[n] ^= 0x01;
                assert!(
                    webauthn::verify_assertion(
                        &rp,
                        &hex(v, "challenge"),
                        &c,
                        b"",
                        &cd2,
                        &ad,
                        &hex(v, "signature"),
                        None
                    )
                    .is_err(),
                    "{section}"
                );
            } else {
                assert!(
                    matches!(r, Err(WebauthnError::AuthData(ref m)) if m.contains("not verified")),
                    "{section}: {r:?}"
                );
                refused += 1;
            }
        }
    }
    eprintln!(
        "webauthn vectors: {registered} registered, {asserted} assertions verified, {refused} refused with reasons"
    );
    if require_uv {
        assert!(registered >= 1 && refused >= 10, "{registered} {refused}");
    } else {
        // none, packed self-attestation and the long credential id (ES256).
        assert_eq!((registered, asserted), (3, 3));
    }
}

fn ring_sha256(b: &[u8]) -> Vec<u8> {
    cf_crypto::sha256(b).to_vec()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
