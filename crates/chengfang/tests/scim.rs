//! SCIM 2.0 provisioning end to end (IDM-3): the independent testers from PyPI (`scim2-tester`,
//! `scim-sanity`) against a live server on both storage backends, then an HR system's joiner,
//! mover and leaver — the leaver's session stops working within one second.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

fn testers_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import scim2_tester, scim_sanity, httpx2"])
        .status()
        .is_ok_and(|s| s.success())
}

async fn scim(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    tok: &str,
    body: Option<serde_json::Value>,
    if_match: Option<&str>,
) -> (u16, serde_json::Value, Option<String>) {
    let mut r = c
        .request(method, url)
        .bearer_auth(tok)
        .header("content-type", "application/scim+json");
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        etag,
    )
}

crate::on_both_backends!(
    walk,
    scim_testers_and_a_leaver_on_sqlite,
    scim_testers_and_a_leaver_on_postgresql,
    "scim"
);

async fn walk(env: &[(&str, String)]) {
    use reqwest::Method as M;
    if !testers_installed() {
        assert!(
            !cf_testkit::in_ci(),
            "python3 with scim2-tester, scim-sanity and httpx2 is required in CI (.ci/run installs them)"
        );
        eprintln!(
            "\n*** SKIPPED: the SCIM testers are not installed; the SCIM test did not run ***\n"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_server_with(&dir, env, true);
    let c = client(&dir);
    let u = |p: &str| format!("{}{p}", srv.url);
    let admin = rotate_bootstrap(&c, &srv).await;

    // The independent testers.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scim_testers.py");
    let (base, tok, ca) = (u("/scim/v2"), admin.clone(), dir.join("ca/ca.pem"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-W")
            .arg("ignore")
            .arg(script)
            .arg(base)
            .arg(tok)
            .arg(ca)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SCIM testers failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("scim2-tester: "))
        .expect("scim2-tester summary");
    assert!(summary.ends_with(", 0 failed"), "{summary}");
    let checks: usize = summary
        .trim_start_matches("scim2-tester: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(checks >= 80, "scim2-tester ran only {checks} checks");
    assert!(stdout.contains("scim-sanity exit 0"), "{stdout}");

    // A joiner from HR, with the enterprise extension.
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let (s, joiner, etag) = scim(
        &c,
        M::POST,
        u("/scim/v2/Users"),
        &admin,
        Some(serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ent],
            "userName": "Li.Ming@city.gov.cn", "displayName": "Li Ming", "active": true,
            "emails": [{"value": "li.ming@city.gov.cn", "type": "work", "primary": true}],
            ent: {"organization": "water-authority", "department": "metering"},
        })),
        None,
    )
    .await;
    assert_eq!(s, 201, "{joiner}");
    let id = joiner["id"].as_str().unwrap().to_string();
    let etag = etag.expect("ETag on create");
    let (s, dup, _) = scim(
        &c,
        M::POST,
        u("/scim/v2/Users"),
        &admin,
        Some(serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "li.ming@CITY.gov.cn"})),
        None,
    )
    .await;
    assert_eq!((s, dup["scimType"].as_str()), (409, Some("uniqueness")));
    let (_, users) = get_json(&c, u("/api/v1/users"), &admin).await;
    let acct = users
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["username"] == "li.ming.city.gov.cn")
        .expect("the SCIM user has a platform account")
        .clone();
    assert_eq!(acct["org"], "water-authority");
    let (s, found, _) = scim(
        &c,
        M::GET,
        u("/scim/v2/Users?filter=userName%20eq%20%22LI.MING%40city.gov.cn%22%20and%20emails%5Btype%20eq%20%22work%22%5D"),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, found["totalResults"].as_u64()),
        (200, Some(1)),
        "{found}"
    );

    // The person signs in (after an administrator's reset) and works.
    let (_, reset) = post_json(
        &c,
        u("/api/v1/users/li.ming.city.gov.cn/reset"),
        &admin,
        &serde_json::json!({}),
    )
    .await;
    let one_time = reset["initial_password"].as_str().unwrap().to_string();
    let (_, v) = json(
        c.post(u("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "li.ming.city.gov.cn", "password": one_time}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sess = v["session"].as_str().unwrap().to_string();
    let (s, v) = post_json(
        &c,
        u("/api/v1/account/password"),
        &sess,
        &serde_json::json!({"old": one_time, "new": "Shui-wu-ju-chao-biao-8!"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = get_json(&c, u("/api/v1/sessions"), &sess).await;
    assert_eq!(s, 200);

    // A mover: a stale ETag is refused, the current one accepted.
    let (s, _, _) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Users/{id}")),
        &admin,
        Some(serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": format!("{ent}:department"), "value": "billing"}]})),
        Some("W/\"99\""),
    )
    .await;
    assert_eq!(s, 412);
    let (s, moved, etag2) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Users/{id}")),
        &admin,
        Some(serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": format!("{ent}:department"), "value": "billing"}]})),
        Some(&etag),
    )
    .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(moved[ent]["department"], "billing");
    let etag2 = etag2.unwrap();
    assert_ne!(etag, etag2);

    // Bulk: a group with the person and a newcomer referenced by bulkId.
    let (s, bulk, _) = scim(
        &c,
        M::POST,
        u("/scim/v2/Bulk"),
        &admin,
        Some(serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "bulkId": "new1", "path": "/Users", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "zhou.xin"}},
                {"method": "POST", "bulkId": "grp", "path": "/Groups", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Metering", "members": [{"value": id}, {"value": "bulkId:new1"}]}},
            ],
        })),
        None,
    )
    .await;
    assert_eq!(s, 200, "{bulk}");
    let ops = bulk["Operations"].as_array().unwrap();
    assert!(ops.iter().all(|o| o["status"] == "201"), "{bulk}");
    let group_loc = ops[1]["location"].as_str().unwrap().to_string();
    let (_, group, _) = scim(&c, M::GET, group_loc.clone(), &admin, None, None).await;
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&id.as_str()) && !members.iter().any(|m| m.starts_with("bulkId:")));

    // The leaver: active=false ends the session at once.
    let t0 = Instant::now();
    let (s, _, _) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Users/{id}")),
        &admin,
        Some(serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]})),
        Some(&etag2),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = get_json(&c, u("/api/v1/sessions"), &sess).await;
    let dead_after = t0.elapsed();
    assert_eq!(s, 401, "the leaver's session still works");
    assert!(dead_after < Duration::from_secs(1), "{dead_after:?}");
    let (s, _) = json(
        c.post(u("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "li.ming.city.gov.cn", "password": "Shui-wu-ju-chao-biao-8!"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "a disabled account cannot sign in");
    // Deleting the user takes them out of the group.
    let (s, _, _) = scim(
        &c,
        M::DELETE,
        u(&format!("/scim/v2/Users/{id}")),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (_, group, _) = scim(&c, M::GET, group_loc, &admin, None, None).await;
    assert_eq!(group["members"].as_array().unwrap().len(), 1, "{group}");
    let (s, gone, _) = scim(
        &c,
        M::GET,
        u(&format!("/scim/v2/Users/{id}")),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!((s, gone["status"].as_str()), (404, Some("404")));

    // Only identity administrators provision.
    let op = new_token(&c, &srv, &admin, "ops", &["operator"]).await;
    let (s, _, _) = scim(&c, M::GET, u("/scim/v2/Users"), &op, None, None).await;
    assert_eq!(s, 403);
    // Every change is audited.
    let auditor = new_token(&c, &srv, &admin, "aud", &["auditor"]).await;
    let mut types = Vec::new();
    let mut from = 0;
    loop {
        let (_, v) = get_json(
            &c,
            u(&format!("/api/v1/audit/records?from={from}&limit=1000")),
            &auditor,
        )
        .await;
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        types.extend(
            entries
                .iter()
                .filter_map(|e| e["record"]["event_type"].as_str().map(str::to_string)),
        );
        if entries.len() < 1000 {
            break;
        }
        from += 1000;
    }
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    for t in [
        "scim.user.create",
        "scim.user.patch",
        "scim.user.replace",
        "scim.user.delete",
        "scim.group.create",
        "identity.user.disable",
    ] {
        assert!(types.contains(&t), "{t} not audited");
    }
}
