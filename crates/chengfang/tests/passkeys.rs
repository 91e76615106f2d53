//! Passkeys end to end (issue 3 #3, IDM-5): a live `chengfang serve` and an independent software
//! authenticator (Python soft-webauthn, in the virtual environment `.ci/run` prepares) register a
//! passkey and sign in with it; user verification, origin, single-use ceremonies, tampered
//! signatures and cloned authenticators are checked, and every step is in the ledger. On SQLite
//! and on PostgreSQL.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::*;

/// The Python that has soft-webauthn (`.ci/run` makes it).
fn python() -> Option<String> {
    let py = std::env::var("CHENGFANG_WEBAUTHN_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/chengfang-webauthn-venv/bin/python".into());
    Command::new(&py)
        .args(["-c", "import soft_webauthn, requests"])
        .status()
        .is_ok_and(|s| s.success())
        .then_some(py)
}

const CHECKS: [&str; 24] = [
    "registration_without_user_verification_refused",
    "options_ask_for_user_verification",
    "options_name_the_relying_party",
    "registration_accepted",
    "registration_ceremony_single_use",
    "registration_from_another_origin_refused",
    "one_passkey_listed",
    "login_allows_the_registered_credential",
    "login_gives_a_multi_factor_session",
    "the_session_works",
    "login_ceremony_single_use",
    "login_from_another_origin_refused",
    "tampered_signature_refused",
    "the_real_authenticator_still_works",
    "cloned_authenticator_refused",
    "unknown_account_gets_a_ceremony_too",
    "unknown_account_looks_like_one_with_a_passkey",
    "passkey_for_another_account_refused",
    "usernameless_options_list_no_credentials",
    "usernameless_sign_in_finds_the_account",
    "usernameless_with_an_unknown_handle_refused",
    "passkey_removed",
    "removed_passkey_refused",
    "account_without_passkeys_looks_the_same",
];

async fn walk(env: &[(&str, String)]) {
    let Some(py) = python() else {
        assert!(
            !cf_testkit::in_ci(),
            "soft-webauthn is required in CI (.ci/run installs it in /var/tmp/chengfang-webauthn-venv)"
        );
        eprintln!("\n*** SKIPPED: soft-webauthn not installed; the passkey test did not run ***\n");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, env);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;
    let (sess, _) = person(
        &c,
        &srv.url,
        &admin,
        serde_json::json!({"username": "yan.qing", "display_name": "Yan Qing", "domain": "government", "org": "water", "roles": ["operator"]}),
        "Bei-hai-gong-77-tiao!",
    )
    .await;
    // The server is reached on a loopback address; a browser there would be at localhost.
    let port = srv.url.rsplit(':').next().unwrap().to_string();
    let cfg = serde_json::json!({
        "base": srv.url, "ca": dir.join("ca/ca.pem"), "session": sess, "username": "yan.qing",
        "origin": format!("https://localhost:{port}"), "rp_id": "localhost",
    });
    let cfg_path = tmp.path().join("passkeys.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/passkeys.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg("-W")
            .arg("ignore")
            .arg(script)
            .arg(cfg_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    for c in CHECKS {
        assert!(
            stdout.lines().any(|l| l == format!("ok {c}")),
            "check {c} did not run:\n{stdout}"
        );
    }
    // The ledger holds the registration, the passkey sign-ins and the refusals with reasons.
    let auditor = new_token(&c, &srv, &admin, "aud", &["auditor"]).await;
    let (_, v) = get_json(&c, u("/api/v1/audit/records?limit=1000"), &auditor).await;
    let recs = v["entries"].as_array().unwrap();
    let has = |event: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        recs.iter()
            .map(|e| &e["record"])
            .any(|r| r["event_type"] == event && f(&r["detail"]))
    };
    assert!(has("identity.passkey.add", &|d| d["alg"] == -7), "{v}");
    assert!(has("identity.passkey.remove", &|_| true), "{v}");
    assert!(
        has("auth.login", &|d| d["method"] == "passkey"
            && d["mfa"] == true),
        "{v}"
    );
    assert!(
        has("auth.login", &|d| d["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cloned"))),
        "{v}"
    );
}

crate::on_both_backends!(
    walk,
    passkeys_with_a_software_authenticator,
    passkeys_on_postgresql_too,
    "passkeys"
);
