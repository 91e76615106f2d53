//! The pages in a real browser (issue 3 #3 and #10, IDM-5): headless Chromium with its virtual
//! authenticator enrols a passkey on `/account`, signs in with it there and on the OIDC login page
//! (`tests/browser_passkeys.js`, driven by Playwright); the code it brings back is redeemed here
//! and the ID token must name the passkey in `amr`. `.ci/run` installs Chromium and Playwright.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

mod common;
use common::*;

/// Chromium and Playwright's client library, as `.ci/run` installs them.
fn browser() -> Option<(String, String)> {
    let chromium =
        std::env::var("CHENGFANG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = std::env::var("CHENGFANG_PLAYWRIGHT")
        .unwrap_or_else(|_| "/var/tmp/chengfang-browser/node_modules/playwright-core".into());
    (std::path::Path::new(&chromium).exists()
        && std::path::Path::new(&playwright)
            .join("package.json")
            .exists())
    .then_some((chromium, playwright))
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of the server's certificate, for Chromium's
/// `--ignore-certificate-errors-spki-list`.
fn spki_hash(cert: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn walk(env: &[(&str, String)]) {
    let Some((chromium, playwright)) = browser() else {
        assert!(
            !cf_testkit::in_ci(),
            "Chromium and playwright-core are required in CI (.ci/run installs them)"
        );
        eprintln!(
            "\n*** SKIPPED: Chromium or playwright-core missing; the browser test did not run ***\n"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, env);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;
    let password = "Xi-zhi-men-wai-88-hao!";
    for (name, display) in [("mei.lan", "Mei Lan"), ("du.fang", "Du Fang")] {
        person(
            &c,
            &srv.url,
            &admin,
            serde_json::json!({"username": name, "display_name": display, "domain": "government", "org": "water", "roles": ["operator"]}),
            password,
        )
        .await;
    }
    // A high-risk application: only a multi-factor sign-in may enter.
    let (s, client_reg) = post_json(
        &c,
        u("/api/v1/oidc/clients"),
        &admin,
        &serde_json::json!({"client_id": "health-records", "name": "Health records", "risk_grade": "high",
            "redirect_uris": ["https://health.city.test/cb"]}),
    )
    .await;
    assert_eq!(s, 201, "{client_reg}");
    let secret = client_reg["client_secret"].as_str().unwrap().to_string();
    let verifier = "browser-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let challenge = B64.encode(cf_crypto::sha256(verifier.as_bytes()));
    // The browser reaches the server on the loopback address by name, as passkeys require.
    let port = srv.url.rsplit(':').next().unwrap().to_string();
    let base = format!("https://localhost:{port}");
    let authorize = format!(
        "{base}/oidc/authorize?response_type=code&client_id=health-records&redirect_uri=https%3A%2F%2Fhealth.city.test%2Fcb&scope=openid%20profile&state=st-42&nonce=n-42&code_challenge={challenge}&code_challenge_method=S256"
    );
    let cfg = serde_json::json!({
        "base": base, "spki": spki_hash(&dir.join("tls/server.pem")),
        "chromium": chromium, "playwright": playwright,
        "username": "mei.lan", "other_username": "du.fang", "password": password,
        "authorize_url": authorize, "redirect_origin": "https://health.city.test", "state": "st-42",
    });
    let cfg_path = tmp.path().join("browser.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser_passkeys.js");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(cfg_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for check in [
        "password_sign_in",
        "ceremony_page_has_one_nonced_script",
        "passkey_enrolled_from_the_page",
        "passkey_listed",
        "authenticator_holds_one_credential",
        "the_passkey_is_discoverable",
        "usernameless_passkey_sign_in",
        "signed_out",
        "passkey_sign_in_on_account",
        "passkey_for_another_account_not_offered",
        "login_page_offers_passkeys",
        "sso_redirects_with_a_code",
        "no_csp_violations",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {check}")),
            "check {check} did not pass:\n{stdout}\n{stderr}"
        );
    }
    let code = stdout
        .lines()
        .find_map(|l| l.strip_prefix("code "))
        .expect("the browser brought back a code");

    // The application redeems the code: the ID token says a passkey with user verification.
    let r = c
        .post(u("/oidc/token"))
        .basic_auth("health-records", Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fhealth.city.test%2Fcb&code_verifier={verifier}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: serde_json::Value = r.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(id_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["sub"], "mei.lan", "{claims}");
    assert_eq!(claims["nonce"], "n-42", "{claims}");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        amr.contains(&"user") && amr.contains(&"mfa") && !amr.contains(&"pwd"),
        "{claims}"
    );
    assert!(
        amr.contains(&"hwk") || amr.contains(&"swk"),
        "a key-based method: {claims}"
    );
    assert_eq!(claims["acr"], cf_platform::oidc::ACR_MFA, "{claims}");

    // The ledger holds the enrolment and the passkey sign-ins with their methods; the refused
    // attempt for the other account never reached a session.
    let auditor = new_token(&c, &srv, &admin, "aud", &["auditor"]).await;
    let (_, v) = get_json(&c, u("/api/v1/audit/records?limit=1000"), &auditor).await;
    let recs: Vec<&serde_json::Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["record"])
        .collect();
    assert!(
        recs.iter()
            .any(|r| r["event_type"] == "identity.passkey.add" && r["object"] == "user:mei.lan"),
        "{v}"
    );
    let passkey_logins = recs
        .iter()
        .filter(|r| {
            r["event_type"] == "auth.login"
                && r["detail"]["method"] == "passkey"
                && r["detail"]["amr"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|m| m == "user"))
        })
        .count();
    assert_eq!(passkey_logins, 3, "{v}");
    assert!(
        recs.iter().any(|r| r["event_type"] == "oidc.authorize"
            && r["detail"]["amr"]
                .as_array()
                .is_some_and(|a| a.iter().any(|m| m == "user"))),
        "{v}"
    );
}

crate::on_both_backends!(
    walk,
    passkeys_in_chromium_on_the_account_and_login_pages,
    passkeys_in_chromium_on_postgresql_too,
    "browser"
);
