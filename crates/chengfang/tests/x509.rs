//! Signing in with an X.509 client certificate (IDM-5): a person obtains a certificate from the
//! platform CA over their own key, then signs in over mutual TLS without a password; no
//! certificate, or a disabled account, is refused.

use std::path::PathBuf;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, &[]);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;
    let (s, v) = post_json(
        &c,
        u("/api/v1/users"),
        &admin,
        &serde_json::json!({"username": "yan.bo", "display_name": "Yan Bo", "domain": "government", "org": "police", "roles": ["operator"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let initial = v["initial_password"].as_str().unwrap().to_string();
    let (_, v) = json(
        c.post(u("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "yan.bo", "password": initial}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sess = v["session"].as_str().unwrap().to_string();
    let (s, _) = post_json(
        &c,
        u("/api/v1/account/password"),
        &sess,
        &serde_json::json!({"old": initial, "new": "Jing-wu-ting-7-yan!"}),
    )
    .await;
    assert_eq!(s, 200);

    // The person's own key and CSR; the platform CA signs it.
    let key = cf_pki::device::device_key(cf_crypto::devkey::KeyAlg::EcdsaP256, "yan.bo").unwrap();
    let r = c
        .post(u("/api/v1/account/certificate"))
        .bearer_auth(&sess)
        .body(key.csr_pem.clone())
        .send()
        .await
        .unwrap();
    let (s, v) = json(r).await;
    assert_eq!(s, 200, "{v}");
    let cert = v["certificate"].as_str().unwrap().to_string();
    let info = cf_pki::device::cert_info(&cert).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("yan.bo"));

    let ca = std::fs::read_to_string(dir.join("ca/ca.pem")).unwrap();
    let mtls = |cert: &str, key_pem: &str| {
        let cfg = cf_mqtt::client_tls(&ca, cert, key_pem).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured((*cfg).clone())
            .build()
            .unwrap()
    };
    // Sign in with the client certificate `client` presents: (status, body).
    let sign_in = async |client: &reqwest::Client| {
        json(
            client
                .post(u("/api/v1/auth/certificate"))
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let person = mtls(&cert, key.key_pem.expose());
    let (s, v) = sign_in(&person).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["method"], "x509");
    let x509_session = v["session"].as_str().unwrap().to_string();
    let (s, _) = get_json(&c, u("/api/v1/sessions"), &x509_session).await;
    assert_eq!(s, 200);

    // A withdrawn certificate (a lost laptop) signs no one in; a new one does.
    let fp = info.fingerprint.clone();
    let r = c
        .delete(u(&format!("/api/v1/account/certificate/{fp}")))
        .bearer_auth(&x509_session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = sign_in(&person).await;
    assert_eq!(s, 401, "a withdrawn certificate still signs in");
    // A new certificate signs in again, over an Ed25519 key and over an SM2 key (a GM/T 0015
    // smart card: the handshake is signed with RFC 8998's sm2sig_sm3).
    let mut person = None;
    for alg in [
        cf_crypto::devkey::KeyAlg::Ed25519,
        cf_crypto::devkey::KeyAlg::Sm2,
    ] {
        let key = cf_pki::device::device_key(alg, "yan.bo").unwrap();
        let (s, v) = json(
            c.post(u("/api/v1/account/certificate"))
                .bearer_auth(&x509_session)
                .body(key.csr_pem.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{alg}: {v}");
        let client = mtls(v["certificate"].as_str().unwrap(), key.key_pem.expose());
        let (s, v) = sign_in(&client).await;
        assert_eq!(
            (s, &v["method"]),
            (200, &serde_json::json!("x509")),
            "{alg}: {v}"
        );
        person.get_or_insert(client);
    }
    let person = person.unwrap();

    // Without a client certificate there is nothing to sign in with.
    let (s, _) = sign_in(&c).await;
    assert_eq!(s, 401);

    // A leaver: the certificate stops working with the account.
    let (s, _) = post_json(
        &c,
        u("/api/v1/users/yan.bo/disable"),
        &admin,
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = sign_in(&person).await;
    assert_eq!(s, 401, "a disabled account's certificate still signs in");
    let (s, _) = get_json(&c, u("/api/v1/sessions"), &x509_session).await;
    assert_eq!(s, 401, "the certificate session outlived the account");
}
