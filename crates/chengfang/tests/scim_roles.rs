//! Movers (issue 3 #8, IDM-3, AUZ-1, AUZ-4): an HR system's SCIM groups grant roles through
//! `identity.scim_group_roles`, an administrator sets an account's own roles, and the two are
//! kept apart; a membership change takes effect on the person's next request, and any change
//! that would break separation of duties is refused before anything is stored. SQLite and
//! PostgreSQL.

use std::path::PathBuf;

use reqwest::Method as M;
use serde_json::{Value, json};

mod common;
use common::*;

async fn scim(
    c: &reqwest::Client,
    m: M,
    url: String,
    tok: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c
        .request(m, url)
        .bearer_auth(tok)
        .header("content-type", "application/scim+json");
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// `PUT` an account's own roles: the status and the answer's text.
async fn put_roles(c: &reqwest::Client, url: String, tok: &str, body: Value) -> (u16, String) {
    let r = c
        .put(url)
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn user_body(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"organization": "Public Security"}})
}

fn group_body(name: &str, members: &[&str]) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()})
}

fn patch(op: &str, path: &str, value: Option<Value>) -> Value {
    let mut o = json!({"op": op, "path": path});
    if let Some(v) = value {
        o["value"] = v;
    }
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [o]})
}

async fn roles_of(
    c: &reqwest::Client,
    base: &str,
    admin: &str,
    who: &str,
) -> (Vec<String>, Vec<String>) {
    let (_, users) = get_json(c, format!("{base}/api/v1/users"), admin).await;
    let u = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == who)
        .unwrap_or_else(|| panic!("{who} in {users}"))
        .clone();
    let list = |k: &str| -> Vec<String> {
        let mut v: Vec<String> = u[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (list("roles"), list("group_roles"))
}

async fn walk(env: &[(&str, String)]) {
    let mut env = env.to_vec();
    env.push((
        "CHENGFANG_IDENTITY__SCIM_GROUP_ROLES",
        "Security Operations=operator; Audit Office=auditor; Platform Admins=admin".into(),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, &env);
    let c = client(&dir);
    let base = srv.url.clone();
    let u = |p: &str| format!("{base}{p}");
    let admin = rotate_bootstrap(&c, &srv).await;

    // The public security bureau runs the city's security operations: a city-wide organisation.
    let (s, v) = post_json(
        &c,
        u("/api/v1/orgs"),
        &admin,
        &json!({"id": "public-security", "name": "Public Security", "scope": "city"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // HR provisions two people; neither holds a role yet.
    let mut ids = Vec::new();
    for name in ["hu.jun", "ma.li"] {
        let (s, v) = scim(
            &c,
            M::POST,
            u("/scim/v2/Users"),
            &admin,
            Some(user_body(name)),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (hu, ma) = (ids[0].clone(), ids[1].clone());
    assert_eq!(
        roles_of(&c, &base, &admin, "hu.jun").await,
        (vec![], vec![])
    );
    // hu.jun signs in; without a role the alert queue is closed to him.
    let (_, reset) = post_json(&c, u("/api/v1/users/hu.jun/reset"), &admin, &json!({})).await;
    let one_time = reset["initial_password"].as_str().unwrap().to_string();
    let (_, v) = json(
        c.post(u("/api/v1/auth/login"))
            .json(&json!({"username": "hu.jun", "password": one_time}))
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
        &json!({"old": one_time, "new": "Gong-an-ju-zhi-ban-9!"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let alerts = |tok: String| {
        let c = c.clone();
        let url = u("/api/v1/alerts");
        async move {
            c.get(url)
                .bearer_auth(tok)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(alerts(sess.clone()).await, 403);

    // A joiner of the SOC group holds its role at once, in the session he already has.
    let (s, soc) = scim(
        &c,
        M::POST,
        u("/scim/v2/Groups"),
        &admin,
        Some(group_body("security operations", &[&hu])),
    )
    .await;
    assert_eq!(s, 201, "{soc}");
    let soc_id = soc["id"].as_str().unwrap().to_string();
    assert_eq!(
        roles_of(&c, &base, &admin, "hu.jun").await,
        (vec!["operator".into()], vec!["operator".into()])
    );
    assert_eq!(alerts(sess.clone()).await, 200);

    // An administrator grants hu.jun a role of his own; it is kept apart from the group's.
    let (s, v) = put_roles(
        &c,
        u("/api/v1/users/hu.jun/roles"),
        &admin,
        json!({"roles": ["service"], "reason": "CHG-1024"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        roles_of(&c, &base, &admin, "hu.jun").await,
        (
            vec!["operator".into(), "service".into()],
            vec!["operator".into()]
        )
    );

    // Separation of duties across both sources: ma.li administers through her group, so the
    // Audit Office may not take her, and no administrator may make her an auditor either.
    let (s, v) = scim(
        &c,
        M::POST,
        u("/scim/v2/Groups"),
        &admin,
        Some(group_body("Platform Admins", &[&ma])),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let admins_id = v["id"].as_str().unwrap().to_string();
    let (s, audit) = scim(
        &c,
        M::POST,
        u("/scim/v2/Groups"),
        &admin,
        Some(group_body("Audit Office", &[])),
    )
    .await;
    assert_eq!(s, 201, "{audit}");
    let audit_id = audit["id"].as_str().unwrap().to_string();
    let (s, v) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Groups/{audit_id}")),
        &admin,
        Some(patch("add", "members", Some(json!([{"value": ma}])))),
    )
    .await;
    assert_eq!(
        (s, v["scimType"].as_str()),
        (400, Some("invalidValue")),
        "{v}"
    );
    assert!(v["detail"].as_str().unwrap().contains("ma.li"), "{v}");
    let (_, v) = scim(
        &c,
        M::GET,
        u(&format!("/scim/v2/Groups/{audit_id}")),
        &admin,
        None,
    )
    .await;
    assert!(
        v["members"].as_array().is_none_or(|m| m.is_empty()),
        "the refused change left the group as it was: {v}"
    );
    let (s, v) = put_roles(
        &c,
        u("/api/v1/users/ma.li/roles"),
        &admin,
        json!({"roles": ["auditor"]}),
    )
    .await;
    assert_eq!(s, 409);
    assert!(v.contains("admin"), "{v}");
    assert_eq!(
        roles_of(&c, &base, &admin, "ma.li").await,
        (vec!["admin".into()], vec!["admin".into()])
    );
    // Unknown roles are named.
    let (s, v) = put_roles(
        &c,
        u("/api/v1/users/ma.li/roles"),
        &admin,
        json!({"roles": ["root"]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v.contains("`root` is not a role"), "{v}");

    // A mover leaves the SOC: the group's role goes at once, his own stays.
    let (s, v) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Groups/{soc_id}")),
        &admin,
        Some(patch(
            "remove",
            &format!("members[value eq \"{hu}\"]"),
            None,
        )),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        roles_of(&c, &base, &admin, "hu.jun").await,
        (vec!["service".into()], vec![])
    );
    assert_eq!(alerts(sess.clone()).await, 403);
    // Deleting a group takes its role from its members; deleting a SCIM user takes its groups'.
    let (s, _) = scim(
        &c,
        M::DELETE,
        u(&format!("/scim/v2/Groups/{admins_id}")),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(roles_of(&c, &base, &admin, "ma.li").await, (vec![], vec![]));
    let (s, v) = scim(
        &c,
        M::PATCH,
        u(&format!("/scim/v2/Groups/{audit_id}")),
        &admin,
        Some(patch("add", "members", Some(json!([{"value": ma}])))),
    )
    .await;
    assert_eq!(s, 200, "now allowed: {v}");
    assert_eq!(
        roles_of(&c, &base, &admin, "ma.li").await,
        (vec!["auditor".into()], vec!["auditor".into()])
    );
    let (s, _) = scim(
        &c,
        M::DELETE,
        u(&format!("/scim/v2/Users/{ma}")),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(roles_of(&c, &base, &admin, "ma.li").await, (vec![], vec![]));

    // The CLI sets own roles the same way.
    let tok = tmp.path().join("admin.token");
    std::fs::write(&tok, &admin).unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "user",
            "roles",
            "hu.jun",
            "--set",
            "operator,service",
            "--reason",
            "CHG-2048",
        ])
        .args(["--url", base.as_str(), "--ca"])
        .arg(dir.join("ca/ca.pem"))
        .arg("--token-file")
        .arg(&tok)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hu.jun: roles operator,service"
    );

    // Every grant and refusal is in the ledger with its source and reason.
    let auditor = new_token(&c, &srv, &admin, "aud", &["auditor"]).await;
    let (_, v) = get_json(&c, u("/api/v1/audit/records?limit=1000"), &auditor).await;
    let recs: Vec<&Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["record"])
        .filter(|r| r["event_type"] == "identity.user.roles")
        .collect();
    let has = |f: &dyn Fn(&Value) -> bool| recs.iter().any(|r| f(r));
    assert!(has(&|r| r["object"] == "user:hu.jun"
        && r["detail"]["source"] == "scim-groups"
        && r["detail"]["added"] == json!(["operator"])
        && r["detail"]["why"]["scim_group"] == soc_id.as_str()));
    assert!(has(&|r| r["object"] == "user:hu.jun"
        && r["detail"]["source"] == "own"
        && r["detail"]["why"]["reason"] == "CHG-1024"));
    assert!(has(
        &|r| r["object"] == "user:hu.jun" && r["detail"]["removed"] == json!(["operator"])
    ));
    assert!(has(&|r| r["object"] == "user:ma.li"
        && r["result"] == "denied"
        && r["detail"]["source"] == "own"));
}

crate::on_both_backends!(
    walk,
    scim_groups_grant_roles_on_sqlite,
    scim_groups_grant_roles_on_postgresql,
    "scimroles"
);
