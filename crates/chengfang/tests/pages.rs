//! The people-facing pages (issue 3 #10): `/account` (sign in, change the one-time password,
//! enrol TOTP, sessions) and the `/admin` console (create, disable and reset accounts, every
//! session, the applications), with CSRF tokens on every form.

use std::path::PathBuf;

mod common;
use common::*;

fn browser(dir: &std::path::Path) -> reqwest::Client {
    client_with(dir, |b| {
        b.redirect(reqwest::redirect::Policy::none())
            .user_agent("Firefox/140 (pages test)")
    })
}

fn form(pairs: &[(&str, &str)]) -> String {
    use cf_identity::oidc::pct;
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    let i = s.find(a)? + a.len();
    Some(&s[i..i + s[i..].find(b)?])
}

struct Page {
    b: reqwest::Client,
    url: String,
    cookie: Option<String>,
}

impl Page {
    async fn get(&self, path: &str) -> (u16, String) {
        let mut r = self.b.get(format!("{}{path}", self.url));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("cf_sso={c}"));
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
    async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> (u16, String) {
        let mut r = self
            .b
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("cf_sso={c}"));
        }
        let resp = r.send().await.unwrap();
        if let Some(set) = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| between(v, "cf_sso=", ";"))
        {
            self.cookie = Some(set.to_string()).filter(|s| !s.is_empty());
        }
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
    async fn csrf(&self, path: &str) -> String {
        let (_, html) = self.get(path).await;
        between(&html, "name=\"csrf\" value=\"", "\"")
            .expect("a CSRF token on the page")
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_pages_and_the_admin_console() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    let srv = start_identity_server(&dir, &[]);
    let c = client(&dir);
    let admin_tok = rotate_bootstrap(&c, &srv).await;
    let (s, v) = post_json(
        &c,
        format!("{}/api/v1/users", srv.url),
        &admin_tok,
        &serde_json::json!({"username": "guo.admin", "display_name": "Guo Admin", "domain": "government", "org": "city", "roles": ["admin"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let initial = v["initial_password"].as_str().unwrap().to_string();

    let mut p = Page {
        b: browser(&dir),
        url: srv.url.clone(),
        cookie: None,
    };
    let (s, html) = p.get("/account").await;
    assert!(
        s == 200 && html.contains("action=\"/account/login\""),
        "{html}"
    );
    let (s, html) = p
        .post(
            "/account/login",
            &[
                ("username", "guo.admin"),
                ("password", "wrong"),
                ("back", "/account"),
            ],
        )
        .await;
    assert!(s == 401 && html.contains("wrong"), "{html}");
    let (s, _) = p
        .post(
            "/account/login",
            &[
                ("username", "guo.admin"),
                ("password", &initial),
                ("back", "/account"),
            ],
        )
        .await;
    assert_eq!(s, 303);
    assert!(p.cookie.is_some(), "no session cookie");
    let (_, html) = p.get("/account").await;
    assert!(html.contains("one-time password: change it"), "{html}");

    // A form without this session's token is refused.
    let (s, _) = p
        .post(
            "/account/password",
            &[("old", &initial), ("new", "Gao-shan-liu-shui-5!")],
        )
        .await;
    assert_eq!(s, 403);
    let csrf = p.csrf("/account").await;
    let (_, html) = p
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("old", &initial),
                ("new", "Gao-shan-liu-shui-5!"),
            ],
        )
        .await;
    assert!(html.contains("Password changed."), "{html}");

    // Second factor.
    let (_, html) = p.post("/account/mfa", &[("csrf", &csrf)]).await;
    let uri = between(&html, "<code id=\"otpauth\">", "</code>")
        .expect("otpauth URI")
        .replace("&amp;", "&");
    let totp = cf_identity::otp::Totp::from_uri(&uri).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (_, html) = p
        .post(
            "/account/mfa",
            &[("csrf", &csrf), ("code", &totp.code_at(now))],
        )
        .await;
    assert!(html.contains("Second factor enrolled"), "{html}");
    assert_eq!(html.matches("<li><code>").count(), 10, "{html}");

    // The console: create, disable, reset.
    let (s, html) = p.get("/admin").await;
    assert!(
        s == 200 && html.contains("guo.admin") && html.contains("this browser"),
        "{html}"
    );
    let (_, html) = p
        .post(
            "/admin/users",
            &[
                ("csrf", &csrf),
                ("username", "tian.ye"),
                ("display_name", "Tian Ye"),
                ("domain", "contractor"),
                ("org", "roads"),
                ("roles", "operator"),
            ],
        )
        .await;
    let pw = between(&html, "must be changed at first sign-in): ", "<")
        .expect("one-time password shown")
        .to_string();
    let mut op = Page {
        b: browser(&dir),
        url: srv.url.clone(),
        cookie: None,
    };
    let (s, _) = op
        .post(
            "/account/login",
            &[
                ("username", "tian.ye"),
                ("password", &pw),
                ("back", "/admin"),
            ],
        )
        .await;
    assert_eq!(s, 303);
    let (s, _) = op.get("/admin").await;
    assert_eq!(s, 403, "an operator does not use the console");
    let (_, html) = p
        .post("/admin/users/tian.ye/disable", &[("csrf", &csrf)])
        .await;
    assert!(html.contains("tian.ye disabled"), "{html}");
    let (s, _) = op.get("/account").await;
    assert_eq!(s, 200);
    let (_, html) = op.get("/account").await;
    assert!(
        html.contains("action=\"/account/login\""),
        "a disabled account's browser session must end"
    );
    let (_, html) = p
        .post("/admin/users/tian.ye/reset", &[("csrf", &csrf)])
        .await;
    assert!(html.contains("tian.ye: new one-time password"), "{html}");
    // Roles change from the console (a mover); separation of duties still holds there.
    let (_, html) = p
        .post(
            "/admin/users/tian.ye/roles",
            &[("csrf", &csrf), ("roles", "operator, auditor")],
        )
        .await;
    assert!(html.contains("tian.ye: roles auditor, operator"), "{html}");
    assert!(
        html.contains("action=\"/admin/users/tian.ye/roles\">")
            && html.contains("value=\"auditor,operator\""),
        "{html}"
    );
    let (_, html) = p
        .post(
            "/admin/users/tian.ye/roles",
            &[("csrf", &csrf), ("roles", "admin,auditor")],
        )
        .await;
    assert!(html.contains("separation of duties"), "{html}");
    assert!(
        html.contains("value=\"auditor,operator\""),
        "unchanged: {html}"
    );
    let (_, html) = p
        .post("/admin/users/tian.ye/roles", &[("roles", "admin")])
        .await;
    assert!(
        html.contains("stale"),
        "a form without the CSRF token is refused: {html}"
    );
    // Organisations are registered from the console too (IDM-1).
    let (_, html) = p
        .post(
            "/admin/orgs",
            &[
                ("csrf", &csrf),
                ("id", "roads"),
                ("name", "Roads Bureau"),
                ("departments", "maintenance, signals"),
                ("scope", "tenant"),
            ],
        )
        .await;
    assert!(html.contains("organisation roads registered"), "{html}");
    let orgs = between(&html, "<table id=\"orgs\">", "</table>").unwrap_or_default();
    assert!(
        orgs.contains("Roads Bureau") && orgs.contains("maintenance, signals"),
        "{orgs}"
    );
}
