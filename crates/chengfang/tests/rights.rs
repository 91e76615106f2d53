//! The rights-compliance report (AUZ-6) on a live server: a person who uses their role, others
//! who never do, and one holding a role none of their three peers holds.

use std::path::PathBuf;

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_names_unused_roles_and_roles_beyond_the_peer_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, &[]);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;
    let mut sessions = Vec::new();
    for (name, roles) in [
        ("wu.lei", vec!["operator"]),
        ("qin.mo", vec!["operator"]),
        ("tang.yu", vec!["operator"]),
        ("fan.yi", vec!["operator", "auditor"]),
    ] {
        let (s, v) = post_json(
            &c,
            u("/api/v1/users"),
            &admin,
            &serde_json::json!({"username": name, "display_name": name, "domain": "government", "org": "city", "roles": roles}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let initial = v["initial_password"].as_str().unwrap().to_string();
        let (_, v) = json(
            c.post(u("/api/v1/auth/login"))
                .json(&serde_json::json!({"username": name, "password": initial}))
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
            &serde_json::json!({"old": initial, "new": format!("Lu-zheng-ju-{}-9!", name.len() * 37)}),
        )
        .await;
        assert_eq!(s, 200);
        sessions.push(sess);
    }
    // Only wu.lei works as an operator.
    let (s, _) = get_json(&c, u("/api/v1/alerts"), &sessions[0]).await;
    assert_eq!(s, 200);

    let auditor = new_token(&c, &srv, &admin, "aud", &["auditor"]).await;
    let (s, r) = get_json(&c, u("/api/v1/rights/report?days=30"), &auditor).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["subjects"], 4);
    let findings = r["findings"].as_array().unwrap();
    let has = |kind: &str, subject: &str, role: &str| {
        findings
            .iter()
            .any(|f| f["finding"] == kind && f["subject"] == subject && f["role"] == role)
    };
    assert!(has("unused_role", "user:qin.mo", "operator"), "{r}");
    assert!(!has("unused_role", "user:wu.lei", "operator"), "{r}");
    assert!(has("exceeds_peers", "user:fan.yi", "auditor"), "{r}");
    assert!(has("unused_role", "user:fan.yi", "auditor"), "{r}");
    // Administrators do not read it; reading it is audited.
    let (s, _) = get_json(&c, u("/api/v1/rights/report"), &admin).await;
    assert_eq!(s, 403);
    let (_, v) = get_json(&c, u("/api/v1/audit/records?limit=1000"), &auditor).await;
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["record"]["event_type"] == "rights.report"),
        "the report is not audited"
    );
}
