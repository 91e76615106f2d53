//! Organisations are isolated from each other (IDM-1): one organisation's administrators, staff
//! and tokens cannot see or change another's data. The test walks every route of the API — read
//! from the router's own source, so a route added later cannot be missed — as organisation
//! `tax`'s administrator, operator and tokens against organisation `water`'s accounts, sessions,
//! devices, keys, tokens, applications and SCIM resources, then checks that nothing of water's
//! changed and that water's people still work. On SQLite and on PostgreSQL.

use std::collections::BTreeSet;
use std::path::PathBuf;

mod common;
use common::*;
use serde_json::{Value, json};

/// Every route of the API as (method, path template), parsed from the router.
fn routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cf-api/src/lib.rs"),
    )
    .unwrap();
    let mut out = Vec::new();
    for part in src.split(".route(").skip(1) {
        let path = part.split('"').nth(1).unwrap().to_string();
        // The route's own method chain ends where the next builder call starts.
        let chain = part
            .split("\n        .")
            .next()
            .unwrap_or(part)
            .split("\n    .")
            .next()
            .unwrap_or(part);
        let mut methods = BTreeSet::new();
        for m in ["get", "post", "put", "delete", "patch"] {
            for (i, _) in chain.match_indices(&format!("{m}(")) {
                let before = chain[..i].chars().last().unwrap_or(' ');
                if !before.is_alphanumeric() && before != '_' {
                    methods.insert(m.to_uppercase());
                }
            }
        }
        assert!(!methods.is_empty(), "no method found for {path}");
        for m in methods {
            out.push((m, path.clone()));
        }
    }
    out
}

/// What an organisation's people may expect of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Unauthenticated or device-authenticated: no organisation's data in any answer.
    Public,
    /// The caller's own account and its own session.
    Own,
    /// Open to an organisation, scoped to it.
    Tenant,
    /// City-wide functions: refused (403) to anyone confined to an organisation.
    City,
}

fn class(path: &str) -> Class {
    use Class::*;
    match path {
        "/healthz"
        | "/readyz"
        | "/.well-known/openid-configuration"
        | "/oidc/jwks"
        | "/api/v1/devices/crl"
        | "/api/v1/devices/telemetry"
        | "/.well-known/est/cacerts"
        | "/.well-known/est/simpleenroll"
        | "/.well-known/est/simplereenroll"
        | "/api/v1/auth/login"
        | "/api/v1/auth/certificate"
        | "/api/v1/auth/reset"
        | "/api/v1/auth/reset/complete"
        | "/api/v1/auth/passkey/begin"
        | "/api/v1/auth/passkey/finish"
        | "/oidc/authorize"
        | "/oidc/login"
        | "/oidc/passkey"
        | "/oidc/passkey/finish"
        | "/account/passkey"
        | "/account/passkey/finish"
        | "/oidc/token"
        | "/oidc/userinfo"
        | "/oidc/introspect"
        | "/oidc/revoke"
        | "/oidc/logout"
        | "/scim/v2/ServiceProviderConfig"
        | "/scim/v2/ResourceTypes"
        | "/scim/v2/ResourceTypes/{name}"
        | "/scim/v2/Schemas"
        | "/scim/v2/Schemas/{id}" => Public,
        "/api/openapi.json"
        | "/api/v1/whoami"
        | "/api/v1/auth/rotate"
        | "/api/v1/account/certificate"
        | "/api/v1/account/certificate/{fingerprint}"
        | "/api/v1/account/password"
        | "/api/v1/account/totp"
        | "/api/v1/account/totp/confirm"
        | "/account"
        | "/account/login"
        | "/account/logout"
        | "/account/password"
        | "/account/mfa"
        | "/account/passkeys"
        | "/account/passkeys/finish"
        | "/account/passkeys/{id}/remove"
        | "/account/sessions/{handle}/end"
        | "/api/v1/kms/hash"
        | "/api/v1/kms/wrapping-key"
        | "/api/v1/account/passkeys"
        | "/api/v1/account/passkeys/begin"
        | "/api/v1/account/passkeys/finish"
        | "/api/v1/account/passkeys/{id}" => Own,
        "/api/v1/tokens"
        | "/api/v1/tokens/{id}"
        | "/api/v1/kms/keys"
        | "/api/v1/kms/keys/{name}"
        | "/api/v1/kms/keys/{name}/rotate"
        | "/api/v1/kms/keys/{name}/config"
        | "/api/v1/kms/keys/{name}/destroy"
        | "/api/v1/kms/keys/{name}/encrypt"
        | "/api/v1/kms/keys/{name}/decrypt"
        | "/api/v1/kms/keys/{name}/rewrap"
        | "/api/v1/kms/keys/{name}/datakey"
        | "/api/v1/kms/keys/{name}/sign"
        | "/api/v1/kms/keys/{name}/verify"
        | "/api/v1/kms/keys/{name}/blind-index"
        | "/api/v1/kms/keys/{name}/encrypt-stream"
        | "/api/v1/kms/keys/{name}/decrypt-stream"
        | "/api/v1/devices"
        | "/api/v1/devices/import"
        | "/api/v1/devices/{id}"
        | "/api/v1/devices/{id}/enrollment-token"
        | "/api/v1/devices/{id}/revoke"
        | "/api/v1/users"
        | "/api/v1/users/{username}/reset"
        | "/api/v1/users/{username}/disable"
        | "/api/v1/users/{username}/enable"
        | "/api/v1/users/{username}/real-name"
        | "/api/v1/users/{username}/roles"
        | "/api/v1/orgs"
        | "/api/v1/orgs/{id}"
        | "/api/v1/orgs/{id}/departments"
        | "/api/v1/sessions"
        | "/api/v1/sessions/{handle}"
        | "/admin"
        | "/admin/users"
        | "/admin/orgs"
        | "/admin/users/{username}/{what}"
        | "/admin/sessions/{handle}/end"
        | "/api/v1/oidc/clients"
        | "/api/v1/oidc/clients/{id}"
        | "/scim/v2/Bulk"
        | "/scim/v2/{res}"
        | "/scim/v2/{res}/.search"
        | "/scim/v2/{res}/{id}" => Tenant,
        "/metrics"
        | "/api/v1/audit/records"
        | "/api/v1/audit/checkpoint"
        | "/api/v1/audit/proof/inclusion"
        | "/api/v1/audit/proof/consistency"
        | "/api/v1/audit/report"
        | "/api/v1/datasets"
        | "/api/v1/datasets/{name}/rows"
        | "/api/v1/exports"
        | "/api/v1/exports/trace"
        | "/api/v1/exports/{id}/decision"
        | "/api/v1/exports/{id}/deliver"
        | "/api/v1/devices/stats"
        | "/api/v1/devices/vendor-keys"
        | "/api/v1/devices/firmware"
        | "/api/v1/devices/{id}/quarantine"
        | "/api/v1/devices/{id}/release"
        | "/api/v1/events"
        | "/api/v1/events/partitions"
        | "/api/v1/alerts"
        | "/api/v1/incidents"
        | "/api/v1/alerts/{id}/assign"
        | "/api/v1/alerts/{id}/comment"
        | "/api/v1/alerts/{id}/close"
        | "/api/v1/rules"
        | "/api/v1/rules/refused"
        | "/api/v1/rules/hunt"
        | "/api/v1/rules/suppressions"
        | "/api/v1/rules/suppressions/{id}/lift"
        | "/api/v1/rules/{id}/enable"
        | "/api/v1/rules/{id}/disable"
        | "/api/v1/rules/{id}/tags"
        | "/api/v1/ingest/limits"
        | "/api/v1/ingest/syslog"
        | "/api/v1/ingest/ndjson"
        | "/api/v1/oidc/keys/rotate"
        | "/api/v1/rights/report" => City,
        other => panic!(
            "route {other} is not classified: add it to the tenancy walk (public, own, tenant or city)"
        ),
    }
}

/// Water's objects, named in requests and looked for in answers.
struct Water {
    clerk_session: String,
    clerk_handle: String,
    token_id: String,
    scim_user: String,
    scim_group: String,
    ciphertext: String,
}

const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn token(c: &reqwest::Client, base: &str, by: &str, name: &str, roles: &[&str]) -> Value {
    let (s, v) = post_json(
        c,
        format!("{base}/api/v1/tokens"),
        by,
        &json!({"name": name, "roles": roles}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn send(
    c: &reqwest::Client,
    method: &str,
    url: String,
    bearer: &str,
    body: Option<(&str, String)>,
) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = c
        .request(m, url)
        .bearer_auth(bearer)
        .header("cookie", format!("cf_sso={bearer}"));
    if let Some((ct, b)) = body {
        r = r.header("content-type", ct).body(b);
    }
    let resp = r.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// Everything of water's as the city and water's own token see it.
async fn water_state(
    c: &reqwest::Client,
    base: &str,
    city: &str,
    water_tok: &str,
    w: &Water,
) -> Value {
    let get = |p: String, t: String| async move {
        let (s, v) = get_json(c, format!("{base}{p}"), &t).await;
        assert_eq!(s, 200, "{p}: {v}");
        v
    };
    let only_water = |v: Value, key: &str| -> Value {
        Value::Array(
            v.as_array()
                .unwrap()
                .iter()
                .filter(|x| x[key] == "water")
                .cloned()
                .collect(),
        )
    };
    let mut sessions = get("/api/v1/sessions".into(), city.into()).await;
    // Last use moves as water's clerk works; the session itself must stay.
    for s in sessions.as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("last_seen");
    }
    json!({
        "users": only_water(get("/api/v1/users".into(), city.into()).await, "org"),
        "org": get("/api/v1/orgs/water".into(), city.into()).await,
        "device": get("/api/v1/devices/water-meter-0001".into(), city.into()).await,
        "key": get("/api/v1/kms/keys/water.water-key".into(), city.into()).await,
        "tokens": only_water(get("/api/v1/tokens".into(), city.into()).await["tokens"].take(), "org"),
        "clients": only_water(get("/api/v1/oidc/clients".into(), city.into()).await, "org"),
        "scim_user": get(format!("/scim/v2/Users/{}", w.scim_user), water_tok.into()).await,
        "scim_group": get(format!("/scim/v2/Groups/{}", w.scim_group), water_tok.into()).await,
        "sessions": sessions.as_array().unwrap().iter().filter(|s| s["account"].as_str().unwrap_or("").starts_with("water.")).cloned().collect::<Vec<_>>(),
    })
}

/// A request body that would do harm if the route forgot the caller's organisation.
fn body_for(method: &str, path: &str, url: &str, w: &Water) -> Option<(&'static str, String)> {
    let j = |v: Value| Some(("application/json", v.to_string()));
    let scim = |v: Value| Some(("application/scim+json", v.to_string()));
    if method == "GET" || method == "DELETE" {
        return None;
    }
    match path {
        "/api/v1/tokens" => j(json!({"name": "probe", "roles": ["operator"], "org": "water"})),
        "/api/v1/kms/keys" => j(json!({"name": "probe-key", "type": "aes256-gcm", "org": "water"})),
        "/api/v1/kms/keys/{name}/config" => j(json!({"deletion_allowed": true, "disable": [1]})),
        "/api/v1/kms/keys/{name}/encrypt" => j(json!({"items": [{"plaintext": "aGk="}]})),
        "/api/v1/kms/keys/{name}/decrypt" | "/api/v1/kms/keys/{name}/rewrap" => {
            j(json!({"items": [{"ciphertext": w.ciphertext}]}))
        }
        "/api/v1/kms/keys/{name}/sign" => j(json!({"message": "aGk="})),
        "/api/v1/kms/keys/{name}/verify" => {
            j(json!({"message": "aGk=", "signature": "AAAA", "version": 1}))
        }
        "/api/v1/kms/keys/{name}/blind-index" => j(json!({"values": ["x"]})),
        "/api/v1/kms/hash" => j(json!({"data": "aGk="})),
        "/api/v1/devices" => j(
            json!({"id": "probe-dev", "kind": "environment-sensor", "layer": "terminal_perception", "district": "xicheng", "lat": 39.9, "lon": 116.3, "owner_org": "water", "vendor": "Acme", "model": "ENV-1", "firmware": "1.0"}),
        ),
        "/api/v1/devices/import" => Some((
            "text/csv",
            "id,kind,layer,district,lat,lon,owner_org,vendor,model,firmware\n\
             probe-dev-2,environment-sensor,terminal,xicheng,39.9,116.3,water,Acme,ENV-1,1.0\n"
                .into(),
        )),
        "/api/v1/devices/{id}/revoke"
        | "/api/v1/devices/{id}/quarantine"
        | "/api/v1/devices/{id}/release" => j(json!({"reason": "probe"})),
        "/api/v1/users" => j(
            json!({"username": "probe.user", "display_name": "P", "domain": "government", "org": "water", "roles": ["admin"]}),
        ),
        "/api/v1/users/{username}/real-name" => j(json!({"level": 3, "method": "counter"})),
        "/api/v1/users/{username}/roles" => j(json!({"roles": ["auditor"], "reason": "probe"})),
        "/api/v1/orgs" => j(json!({"id": "water", "name": "Water", "scope": "city"})),
        "/api/v1/orgs/{id}/departments" => j(json!({"name": "probe"})),
        "/api/v1/devices/vendor-keys" => {
            j(json!({"vendor": "Acme", "alg": "ed25519", "public_key": "11".repeat(32)}))
        }
        "/api/v1/devices/firmware" => j(
            json!({"vendor": "Acme", "model": "ENV-1", "version": "9.9", "sha256": "22".repeat(32), "alg": "ed25519", "signature": "33".repeat(64)}),
        ),
        "/api/v1/oidc/clients" => j(
            json!({"client_id": "probe-rp", "name": "Probe", "redirect_uris": ["https://probe.example/cb"]}),
        ),
        "/scim/v2/{res}" if url.ends_with("/Groups") => {
            scim(json!({"schemas": [SCIM_GROUP], "displayName": "Probe Crew"}))
        }
        "/scim/v2/{res}" => {
            scim(json!({"schemas": [SCIM_USER], "userName": "probe.person@tax.example"}))
        }
        "/scim/v2/{res}/.search" => scim(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName co \"water\" or displayName co \"Water\""}),
        ),
        "/scim/v2/{res}/{id}" if method == "PUT" && url.contains("/Groups/") => {
            scim(json!({"schemas": [SCIM_GROUP], "displayName": "hijack"}))
        }
        "/scim/v2/{res}/{id}" if method == "PUT" => {
            scim(json!({"schemas": [SCIM_USER], "userName": "hijack", "active": false}))
        }
        "/scim/v2/{res}/{id}" => scim(
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "hijack"}]}),
        ),
        "/scim/v2/Bulk" => scim(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "PATCH", "path": format!("/Groups/{}", w.scim_group), "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "hijack"}]}},
                {"method": "DELETE", "path": format!("/Users/{}", w.scim_user)},
            ]
        })),
        _ => j(json!({})),
    }
}

/// The concrete URLs for a route template: water's objects in every parameter.
fn fill(path: &str, w: &Water) -> Vec<String> {
    let mut v = vec![path.to_string()];
    let subst = |v: Vec<String>, k: &str, vals: &[String]| -> Vec<String> {
        v.into_iter()
            .flat_map(|p| {
                if p.contains(k) {
                    vals.iter().map(|x| p.replace(k, x)).collect::<Vec<_>>()
                } else {
                    vec![p]
                }
            })
            .collect()
    };
    if path.starts_with("/scim/v2/{res}/{id}") {
        return vec![
            format!("/scim/v2/Users/{}", w.scim_user),
            format!("/scim/v2/Groups/{}", w.scim_group),
        ];
    }
    // Water's relying party and key by their stored names and by the names water's own people
    // use (scoped under `water.`).
    let ids: Vec<String> = if path.starts_with("/api/v1/oidc/clients") {
        vec!["water.water-portal".into(), "water-portal".into()]
    } else {
        Vec::new()
    };
    let id = if path.starts_with("/api/v1/tokens") {
        w.token_id.clone()
    } else if path.starts_with("/api/v1/devices") {
        "water-meter-0001".into()
    } else if !ids.is_empty() {
        String::new()
    } else if path.starts_with("/api/v1/orgs") {
        "water".into()
    } else if path.starts_with("/scim/v2/Schemas") {
        "urn:ietf:params:scim:schemas:core:2.0:User".into()
    } else {
        "1".into()
    };
    v = subst(v, "{id}", &if ids.is_empty() { vec![id] } else { ids });
    v = subst(v, "{res}", &["Users".into(), "Groups".into()]);
    v = subst(
        v,
        "{username}",
        &["water.clerk".into(), "water.boss".into()],
    );
    v = subst(v, "{what}", &["disable".into(), "reset".into()]);
    v = subst(v, "{handle}", std::slice::from_ref(&w.clerk_handle));
    v = subst(
        v,
        "{name}",
        &if path.starts_with("/scim") {
            vec!["User".to_string()]
        } else {
            vec!["water.water-key".to_string(), "water-key".to_string()]
        },
    );
    v = subst(v, "{fingerprint}", &["00".repeat(32)]);
    // Valid queries, so that what answers is the authorisation, not the parser.
    v.into_iter()
        .map(|p| match p.as_str() {
            "/api/v1/audit/proof/inclusion" => format!("{p}?seq=1&size=2"),
            "/api/v1/audit/proof/consistency" => format!("{p}?old=1&new=2"),
            _ => p,
        })
        .collect()
}

async fn walk(env: &[(&str, String)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, env);
    let c = client_with(&dir, |b| b.redirect(reqwest::redirect::Policy::none()));
    let base = srv.url.clone();
    let u = |p: &str| format!("{base}{p}");
    let city = rotate_bootstrap(&c, &srv).await;

    // The city registers two tenants; each gets an administrator and staff.
    for (id, name) in [("water", "Water Authority"), ("tax", "Tax Bureau")] {
        let (s, v) = post_json(
            &c,
            u("/api/v1/orgs"),
            &city,
            &json!({"id": id, "name": name, "departments": ["pipes", "billing", "audit"]}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (water_boss, _) = person(
        &c,
        &base,
        &city,
        json!({"username": "water.boss", "display_name": "water.boss", "domain": "government", "org": "water", "roles": ["admin"]}),
        &format!("Shui-wu-{}-Ju-77!", "water.boss".len() * 13),
    ).await;
    let (tax_boss, _) = person(
        &c,
        &base,
        &city,
        json!({"username": "tax.boss", "display_name": "tax.boss", "domain": "government", "org": "tax", "roles": ["admin"]}),
        &format!("Shui-wu-{}-Ju-77!", "tax.boss".len() * 13),
    ).await;
    // Water's administrator does water's work.
    let (clerk, clerk_handle) = person(
        &c,
        &base,
        &water_boss,
        json!({"username": "water.clerk", "display_name": "water.clerk", "domain": "government", "org": "water", "roles": ["operator"]}),
        "Shui-wu-143-Ju-77!",
    )
    .await;
    let (tax_ops, _) = person(
        &c,
        &base,
        &tax_boss,
        json!({"username": "tax.ops", "display_name": "tax.ops", "domain": "government", "org": "tax", "roles": ["operator"]}),
        &format!("Shui-wu-{}-Ju-77!", "tax.ops".len() * 13),
    ).await;
    let (s, v) = get_json(&c, u("/api/v1/whoami"), &water_boss).await;
    assert_eq!((s, v["org"].as_str()), (200, Some("water")), "{v}");
    let wt = token(&c, &base, &water_boss, "water HR", &["admin"]).await;
    assert_eq!(
        wt["info"]["org"], "water",
        "a tenant's token is confined to it: {wt}"
    );
    let water_tok = wt["token"].as_str().unwrap().to_string();
    let (s, v) = post_json(
        &c,
        u("/api/v1/devices"),
        &water_boss,
        &json!({"id": "water-meter-0001", "kind": "environment-sensor", "layer": "terminal_perception", "district": "xicheng", "lat": 39.91, "lon": 116.36, "owner_org": "water", "vendor": "Acme", "model": "AquaMeter-7", "firmware": "1.0"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post_json(
        &c,
        u("/api/v1/kms/keys"),
        &water_boss,
        &json!({"name": "water-key", "type": "aes256-gcm", "deletion_allowed": true}),
    )
    .await;
    assert_eq!((s, v["org"].as_str()), (201, Some("water")), "{v}");
    // An organisation's names live under its own prefix.
    assert_eq!(v["name"], "water.water-key", "{v}");
    let (s, v) = post_json(
        &c,
        u("/api/v1/kms/keys/water-key/encrypt"),
        &clerk,
        &json!({"items": [{"plaintext": "cGlwZSBtYXA="}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ciphertext = v["ciphertexts"][0].as_str().unwrap().to_string();
    let (s, v) = post_json(
        &c,
        u("/api/v1/oidc/clients"),
        &water_boss,
        &json!({"client_id": "water-portal", "name": "Water Portal", "redirect_uris": ["https://water.example/cb"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["client"]["client_id"], "water.water-portal", "{v}");
    let scim_post = |path: &'static str, body: Value| {
        let c = c.clone();
        let url = u(path);
        let tok = water_tok.clone();
        async move {
            let r = c
                .post(url)
                .bearer_auth(tok)
                .header("content-type", "application/scim+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            json(r).await
        }
    };
    let (s, v) = scim_post(
        "/scim/v2/Users",
        json!({"schemas": [SCIM_USER], "userName": "li.shui@water.example", "displayName": "Li Shui"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let scim_user = v["id"].as_str().unwrap().to_string();
    let (s, v) = scim_post(
        "/scim/v2/Groups",
        json!({"schemas": [SCIM_GROUP], "displayName": "Water Pipes Crew", "members": [{"value": scim_user}]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let scim_group = v["id"].as_str().unwrap().to_string();
    // A provisioned person lands in the connector's organisation, whatever HR calls it.
    let (_, users) = get_json(&c, u("/api/v1/users"), &water_boss).await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["username"] == "li.shui.water.example" && x["org"] == "water"),
        "{users}"
    );
    let w = Water {
        clerk_session: clerk.clone(),
        clerk_handle,
        token_id: wt["info"]["id"].as_str().unwrap().to_string(),
        scim_user,
        scim_group,
        ciphertext,
    };

    // Tax's people and tokens.
    let tax_admin_tok = token(&c, &base, &tax_boss, "tax admin", &["admin"]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let tax_ops_tok = token(&c, &base, &tax_boss, "tax ops", &["operator"]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let creds = [
        ("tax.boss session", tax_boss.clone()),
        ("tax.ops session", tax_ops.clone()),
        ("tax admin token", tax_admin_tok.clone()),
        ("tax operator token", tax_ops_tok),
    ];
    // Tax's own view works and holds only tax.
    let (s, v) = get_json(&c, u("/api/v1/users"), &tax_boss).await;
    assert_eq!(s, 200);
    let names: BTreeSet<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["username"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["tax.boss", "tax.ops"]));
    let (s, v) = get_json(&c, u("/api/v1/orgs"), &tax_boss).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    // The city sees both.
    let (_, v) = get_json(&c, u("/api/v1/users"), &city).await;
    assert_eq!(v.as_array().unwrap().len(), 5, "{v}");

    let before = water_state(&c, &base, &city, &water_tok, &w).await;
    let markers = [
        "water.clerk",
        "water.boss",
        "water-meter-0001",
        "water-key",
        "water-portal",
        "li.shui",
        "Water Pipes Crew",
        "Water Authority",
        w.token_id.as_str(),
        w.scim_user.as_str(),
        w.scim_group.as_str(),
        w.clerk_handle.as_str(),
        "AquaMeter-7",
        "cGlwZSBtYXA=",
        "\"org\":\"water\"",
        "\"owner_org\":\"water\"",
    ];
    let mut routes = routes();
    assert!(routes.len() > 100, "{} routes", routes.len());
    // Signing out ends the caller's own session: walk those last.
    routes.sort_by_key(|(_, p)| p.ends_with("/logout"));
    let mut walked = 0;
    let mut failures = Vec::new();
    for (method, path) in &routes {
        let class = class(path);
        for url in fill(path, &w) {
            for (who, cred) in &creds {
                let mut body = body_for(method, path, &url, &w);
                if path.starts_with("/admin") || path.starts_with("/account") {
                    // Forms carry the CSRF token of the caller's own session.
                    let (_, html) = send(&c, "GET", u("/account"), cred, None).await;
                    let csrf = html
                        .split("name=\"csrf\" value=\"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .unwrap_or("")
                        .to_string();
                    body = (method == "POST").then(|| {
                        (
                            "application/x-www-form-urlencoded",
                            format!("csrf={csrf}&username=probe.form&display_name=P&domain=government&org=water&roles=admin"),
                        )
                    });
                }
                let sent = format!("{url} {}", body.as_ref().map_or("", |b| b.1.as_str()));
                let (s, text) = send(&c, method, u(&url), cred, body).await;
                walked += 1;
                // Naming one of water's objects gets a refusal, never its data; the pages answer
                // with a page that says so, and the state check below covers them.
                let targets_water = markers.iter().any(|m| url.contains(m));
                if class == Class::Tenant
                    && targets_water
                    && !url.starts_with("/admin")
                    && !(400..500).contains(&s)
                {
                    failures.push(format!(
                        "{who}: {method} {url} names water's object, answered {s}: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
                if class == Class::City && s != 403 {
                    failures.push(format!(
                        "{who}: {method} {url} is city-wide, answered {s}: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
                if (200..400).contains(&s) {
                    for m in markers {
                        if !sent.contains(m) && text.contains(m) {
                            failures.push(format!(
                                "{who}: {method} {url} ({s}) shows water's `{m}`: {}",
                                text.chars().take(600).collect::<String>()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(walked > 400, "{walked} requests");

    // Nothing of water's changed, and water's people still work.
    let after = water_state(&c, &base, &city, &water_tok, &w).await;
    assert_eq!(before, after, "water's data changed during the walk");
    let (s, v) = get_json(&c, u("/api/v1/whoami"), &w.clerk_session).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post_json(
        &c,
        u("/api/v1/kms/keys/water-key/decrypt"),
        &w.clerk_session,
        &json!({"items": [{"ciphertext": w.ciphertext}]}),
    )
    .await;
    assert_eq!(
        (s, v["plaintexts"][0].as_str()),
        (200, Some("cGlwZSBtYXA=")),
        "{v}"
    );
    // Names are unique within an organisation only: tax can use the name water's HR used, and
    // nothing answers that it is taken elsewhere.
    let r = c
        .post(u("/scim/v2/Users"))
        .bearer_auth(&tax_admin_tok)
        .header("content-type", "application/scim+json")
        .body(json!({"schemas": [SCIM_USER], "userName": "li.shui@water.example"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // So are key names and relying-party ids: tax's `water-key` and `water-portal` are its own.
    let (s, v) = post_json(
        &c,
        u("/api/v1/kms/keys"),
        &tax_admin_tok,
        &json!({"name": "water-key", "type": "aes256-gcm"}),
    )
    .await;
    assert_eq!((s, v["name"].as_str()), (201, Some("tax.water-key")), "{v}");
    let (s, v) = post_json(
        &c,
        u("/api/v1/oidc/clients"),
        &tax_admin_tok,
        &json!({"client_id": "water-portal", "name": "Tax Portal", "redirect_uris": ["https://tax.example/cb"]}),
    )
    .await;
    assert_eq!(
        (s, v["client"]["client_id"].as_str()),
        (201, Some("tax.water-portal")),
        "{v}"
    );
    // The same from a terminal: `chengfang org …` with tax's administrator token (the walk
    // signed tax's people out) and as the city.
    let cli = |tok: &str, args: &[&str]| {
        let f = tmp.path().join(format!("tok-{}", tok.len() + args.len()));
        std::fs::write(&f, tok).unwrap();
        let out = std::process::Command::new(bin())
            .args(args)
            .args(["--url", base.as_str(), "--ca"])
            .arg(dir.join("ca/ca.pem"))
            .arg("--token-file")
            .arg(&f)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = cli(&tax_admin_tok, &["org", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let ids: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|o| o["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, ["tax"], "{out}");
    let (code, out) = cli(
        &tax_admin_tok,
        &["org", "add-department", "tax", "stamp duty"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(
        &tax_admin_tok,
        &["org", "create", "tax2", "--name", "Tax II", "--city-wide"],
    );
    assert_ne!(code, 0, "a tenant registered an organisation: {out}");
    assert!(out.contains("city-wide function"), "{out}");
    let (code, out) = cli(&city, &["org", "list"]);
    assert_eq!(code, 0, "{out}");
    for o in ["city", "tax", "water", "stamp duty"] {
        assert!(out.contains(o), "{o} missing from:\n{out}");
    }
    // Tax's probes that are its own business did land in tax, not in water.
    let (_, v) = get_json(&c, u("/api/v1/oidc/clients"), &tax_admin_tok).await;
    assert!(
        v.as_array().unwrap().iter().all(|x| x["org"] == "tax"),
        "{v}"
    );
}

crate::on_both_backends!(
    walk,
    organisations_are_isolated_across_every_route_on_sqlite,
    organisations_are_isolated_across_every_route_on_postgresql,
    "tenancy"
);
