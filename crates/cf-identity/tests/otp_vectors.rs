//! HOTP (RFC 4226 Appendix D) and TOTP (RFC 6238 Appendix B, SHA-1/256/512 with the errata-2866
//! seeds) from `../shared/datasets/vectors/otp-rfc4226-rfc6238.json`.

use cf_identity::otp::{Algorithm, Totp, hotp};

#[test]
fn rfc_4226_and_6238_vectors() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = std::fs::read_to_string(root.join("vectors/otp-rfc4226-rfc6238.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let h = &v["rfc4226_hotp"];
    let secret = h["secret_ascii"].as_str().unwrap().as_bytes();
    let mut n = 0;
    for x in h["vectors"].as_array().unwrap() {
        let c = x["counter"].as_u64().unwrap();
        assert_eq!(
            hotp(secret, c, 6, Algorithm::Sha1),
            x["hotp"].as_str().unwrap(),
            "HOTP counter {c}"
        );
        n += 1;
    }
    assert_eq!(n, 10);
    let t = &v["rfc6238_totp"];
    let mut m = 0;
    for x in t["vectors"].as_array().unwrap() {
        let alg = match x["algorithm"].as_str().unwrap() {
            "SHA1" => Algorithm::Sha1,
            "SHA256" => Algorithm::Sha256,
            _ => Algorithm::Sha512,
        };
        let name = x["algorithm"].as_str().unwrap();
        let seed = t["seeds_ascii"][name].as_str().unwrap().as_bytes().to_vec();
        let totp = Totp::new(seed, 8, 30, alg).unwrap();
        let when = x["unix_time"].as_i64().unwrap();
        let want = x["totp_8_digits"].as_str().unwrap();
        assert_eq!(totp.code_at(when), want, "TOTP {name} at {when}");
        totp.verify(want, when, None).unwrap();
        m += 1;
    }
    assert_eq!(m, 18, "6 times × 3 algorithms");
}
