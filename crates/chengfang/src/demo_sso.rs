//! The demo's identity act (issue 3): HR moving a person between groups whose roles follow, a
//! bureau registered as a tenant whose own administrator sees only it, a passkey sign-in and a cloned authenticator refused, the city portal registered
//! as an OpenID Connect relying party, an employee signing in through the code flow with PKCE,
//! an impossible-travel sign-in and credential stuffing refused by the risk engine, and password
//! spraying against the sign-in page that the detectors turn into alerts. Attackers and offices
//! get their own 127.0.x.y source addresses; the demo's geolocation table places 127.0.3.0/24 in
//! Beijing, 127.0.4.0/24 in New York and 127.0.5.0/24 in São Paulo.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine;
use cf_identity::oidc::{pct, pkce_s256_challenge};
use cf_platform::ports::{GeoLookup, GeoPoint};

use crate::demo::{call, say};
use crate::demo_data::Ctx;

/// The demo city's simulated address plan.
#[derive(Debug)]
pub struct DemoGeo;

impl GeoLookup for DemoGeo {
    fn locate(&self, ip: &str) -> Option<GeoPoint> {
        let (country, coords) = if ip.starts_with("127.0.3.") {
            ("CN", (39.90, 116.40))
        } else if ip.starts_with("127.0.4.") {
            ("US", (40.71, -74.01))
        } else if ip.starts_with("127.0.5.") {
            ("BR", (-23.55, -46.63))
        } else {
            return None;
        };
        Some(GeoPoint {
            country: Some(country.into()),
            coords: Some(coords),
        })
    }
}

/// A browser-like client from `addr` that does not follow redirects (the demo reads them).
fn client_from(ca_pem: &str, addr: Option<IpAddr>, agent: &str) -> Result<reqwest::Client> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(agent)
        .local_address(addr)
        .timeout(std::time::Duration::from_secs(20))
        .build()?)
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name="…" value="…"` pairs of the hidden inputs of a page (the login form carries the
/// authorization request through them).
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" name=\"").skip(1) {
        let Some((name, rest)) = part.split_once("\" value=\"") else {
            continue;
        };
        let Some((value, _)) = rest.split_once('"') else {
            continue;
        };
        let value = value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        out.push((name.to_string(), value));
    }
    out
}

fn query_param(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            // Values we read back (codes, errors) are unreserved characters or %20 at most.
            v.replace("%20", " ").replace('+', " ")
        })
    })
}

/// One sign-in through the code flow; the ID token's claims, or the login page's refusal.
async fn sign_in(
    b: &reqwest::Client,
    url: &str,
    client: (&str, &str),
    user: (&str, &str),
) -> Result<std::result::Result<serde_json::Value, String>> {
    let redirect = "https://portal.city.example/cb";
    let verifier = cf_crypto::random_token(&cf_crypto::OsRng, 32)?;
    let challenge = pkce_s256_challenge(&verifier);
    let auth = format!(
        "{url}/oidc/authorize?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", client.0),
            ("redirect_uri", redirect),
            ("scope", "openid profile"),
            ("state", "demo-state"),
            ("nonce", "demo-nonce"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let page = b.get(&auth).send().await?.text().await?;
    let mut fields = hidden_fields(&page);
    fields.push(("username".into(), user.0.into()));
    fields.push(("password".into(), user.1.into()));
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = b
        .post(format!("{url}/oidc/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .await?;
    let Some(loc) = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        let html = r.text().await?;
        let msg = html
            .split("<p class=\"err\">")
            .nth(1)
            .and_then(|s| s.split("</p>").next())
            .unwrap_or("refused")
            .to_string();
        return Ok(Err(msg));
    };
    let code = query_param(&loc, "code").context("the redirect carries no code")?;
    let tok: serde_json::Value = b
        .post(format!("{url}/oidc/token"))
        .basic_auth(client.0, Some(client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ]))
        .send()
        .await?
        .json()
        .await?;
    let id_token = tok["id_token"].as_str().context("no ID token")?;
    let claims = id_token.split('.').nth(1).context("malformed ID token")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims)?)?;
    Ok(Ok(claims))
}

/// Run the act.
/// A passkey (IDM-5): registered from the person's session, then a password-free multi-factor
/// sign-in; a copy of the authenticator's key, used later, is refused as a clone.
async fn passkey(c: &Ctx<'_>, name: &str, session: &str) -> Result<()> {
    use cf_sim::authenticator::Authenticator;
    let api = |p: &str| format!("{}{p}", c.url);
    let Some(rp) = cf_identity::webauthn::RelyingParty::for_url(c.url, "-") else {
        say(
            "passkey",
            "skipped: the demo is not on a loopback or named host",
        );
        return Ok(());
    };
    let rng = ring::rand::SystemRandom::new();
    let b = call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/account/passkeys/begin"),
        session,
        None,
    )
    .await?;
    let (mut key, cred) = Authenticator::create(&b["publicKey"], &rp.origin, &rng)?;
    call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/account/passkeys/finish"),
        session,
        Some(serde_json::json!({"ceremony": b["ceremony"], "name": "office laptop", "credential": cred})),
    )
    .await?;
    let stolen = key.clone_key();
    let sign_in = |answer: serde_json::Value, ceremony: serde_json::Value| async move {
        c.http
            .post(api("/api/v1/auth/passkey/finish"))
            .json(&serde_json::json!({"ceremony": ceremony, "credential": answer}))
            .send()
            .await
    };
    let begin = || async {
        c.http
            .post(api("/api/v1/auth/passkey/begin"))
            .json(&serde_json::json!({"username": name}))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await
    };
    let b = begin().await?;
    let r = sign_in(
        key.get(&b["publicKey"], &rp.origin, &rng)?,
        b["ceremony"].clone(),
    )
    .await?;
    let ok: serde_json::Value = r.json().await?;
    say(
        "passkey",
        format!(
            "{name} registers a passkey and signs in with it, no password: session mfa = {}",
            ok["mfa"]
        ),
    );
    let b = begin().await?;
    let mut stolen = stolen;
    let r = sign_in(
        stolen.get(&b["publicKey"], &rp.origin, &rng)?,
        b["ceremony"].clone(),
    )
    .await?;
    say(
        "passkey",
        format!(
            "a copy of the key taken before that sign-in -> {} (its signature counter is behind: a cloned authenticator, refused and audited)",
            r.status()
        ),
    );
    Ok(())
}

/// Credential stuffing: pairs leaked from another site, tried once each from a botnet. One of them
/// is real — he.ping reused his password — and the risk engine still refuses it: a new device,
/// network and country minutes after he signed in at the office.
async fn credential_stuffing(c: &Ctx<'_>, ca_pem: &str, staff: &[(&str, String)]) -> Result<()> {
    let api = |p: &str| format!("{}{p}", c.url);
    let mut pairs: Vec<(String, String)> = staff
        .iter()
        .enumerate()
        .map(|(i, (n, pw))| {
            let pw = if i == 0 {
                pw.clone()
            } else {
                format!("Summer{}!", 2019 + i)
            };
            (n.to_string(), pw)
        })
        .collect();
    for (i, n) in [
        "zhao.lei",
        "qian.hong",
        "sun.bo",
        "zhou.xin",
        "wu.fang",
        "zheng.li",
    ]
    .iter()
    .enumerate()
    {
        pairs.push((n.to_string(), format!("Qwer{}@asdf", 1000 + i * 37)));
    }
    let (mut refused_by_risk, mut wrong, mut throttled, mut succeeded) = (0, 0, 0, 0);
    for (i, (name, pw)) in pairs.iter().enumerate() {
        let bot = client_from(
            ca_pem,
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 5, 10 + (i % 6) as u8))),
            "python-requests/2.31",
        )?;
        let r = bot
            .post(api("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": name, "password": pw}))
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        match status {
            200 => succeeded += 1,
            429 => throttled += 1,
            _ if text.contains("does not match how this account usually signs in") => {
                refused_by_risk += 1
            }
            _ => wrong += 1,
        }
    }
    say(
        "risk",
        format!(
            "credential stuffing: {} leaked pairs from 6 addresses: {wrong} wrong, {throttled} throttled, {succeeded} succeeded; the one real password (he.ping reused his elsewhere) refused by the risk engine: {}",
            pairs.len(),
            if refused_by_risk > 0 { "yes" } else { "NO" }
        ),
    );
    Ok(())
}

/// The bureau's own administrator works inside the bureau (IDM-1): its accounts only, and none
/// of the city's security operations.
async fn tenant_admin(c: &Ctx<'_>, session: &str) -> Result<()> {
    let api = |p: &str| format!("{}{p}", c.url);
    let users = call(
        c.http,
        reqwest::Method::GET,
        &api("/api/v1/users"),
        session,
        None,
    )
    .await?;
    let all = call(
        c.http,
        reqwest::Method::GET,
        &api("/api/v1/users"),
        c.admin,
        None,
    )
    .await?;
    let alerts = c
        .http
        .get(api("/api/v1/alerts"))
        .bearer_auth(session)
        .send()
        .await?
        .status();
    say(
        "tenancy",
        format!(
            "bai.lu, Civil Affairs' own administrator, lists {} accounts — her bureau's; the city has {} — and is refused the city's alerts ({alerts})",
            users.as_array().map_or(0, Vec::len),
            all.as_array().map_or(0, Vec::len),
        ),
    );
    Ok(())
}

/// The HR system moves a person through the org chart over SCIM; the groups' roles follow
/// (`identity.scim_group_roles`), and a move that would break separation of duties is refused.
async fn mover(c: &Ctx<'_>) -> Result<()> {
    let api = |p: &str| format!("{}{p}", c.url);
    let scim = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        c.http
            .request(method, api(path))
            .bearer_auth(c.admin)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
    };
    let roles_of = |name: &'static str| async move {
        let users = call(
            c.http,
            reqwest::Method::GET,
            &api("/api/v1/users"),
            c.admin,
            None,
        )
        .await?;
        Ok::<String, anyhow::Error>(
            users
                .as_array()
                .and_then(|a| a.iter().find(|u| u["username"] == name))
                .and_then(|u| u["roles"].as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        )
    };
    let user = |name: &str| {
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"organization": "city"}})
    };
    let group = |name: &str, members: &[&str]| {
        serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
            "members": members.iter().map(|m| serde_json::json!({"value": m})).collect::<Vec<_>>()})
    };
    let id_of = |v: serde_json::Value| v["id"].as_str().unwrap_or_default().to_string();
    let hu = id_of(
        scim(reqwest::Method::POST, "/scim/v2/Users", user("hu.jun"))
            .await?
            .json()
            .await?,
    );
    let qi = id_of(
        scim(reqwest::Method::POST, "/scim/v2/Users", user("qi.ming"))
            .await?
            .json()
            .await?,
    );
    let soc = id_of(
        scim(
            reqwest::Method::POST,
            "/scim/v2/Groups",
            group("Security Operations", &[&hu]),
        )
        .await?
        .json()
        .await?,
    );
    id_of(
        scim(
            reqwest::Method::POST,
            "/scim/v2/Groups",
            group("Platform Admins", &[&qi]),
        )
        .await?
        .json()
        .await?,
    );
    let audit = id_of(
        scim(
            reqwest::Method::POST,
            "/scim/v2/Groups",
            group("Audit Office", &[]),
        )
        .await?
        .json()
        .await?,
    );
    say(
        "mover",
        format!(
            "HR provisions hu.jun into Security Operations over SCIM: his roles are now {}",
            roles_of("hu.jun").await?
        ),
    );
    let patch = |op: &str, path: &str, value: Option<serde_json::Value>| {
        let mut o = serde_json::json!({"op": op, "path": path});
        if let Some(v) = value {
            o["value"] = v;
        }
        serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [o]})
    };
    scim(
        reqwest::Method::PATCH,
        &format!("/scim/v2/Groups/{soc}"),
        patch("remove", &format!("members[value eq \"{hu}\"]"), None),
    )
    .await?;
    scim(
        reqwest::Method::PATCH,
        &format!("/scim/v2/Groups/{audit}"),
        patch("add", "members", Some(serde_json::json!([{"value": hu}]))),
    )
    .await?;
    say(
        "mover",
        format!(
            "he moves to the Audit Office: operator is gone at once, his roles are now {}",
            roles_of("hu.jun").await?
        ),
    );
    let refused = scim(
        reqwest::Method::PATCH,
        &format!("/scim/v2/Groups/{audit}"),
        patch("add", "members", Some(serde_json::json!([{"value": qi}]))),
    )
    .await?;
    let status = refused.status();
    let why: serde_json::Value = refused.json().await?;
    say(
        "mover",
        format!(
            "adding qi.ming (a platform administrator) to the Audit Office is refused ({status}): {}",
            why["detail"].as_str().unwrap_or_default()
        ),
    );
    if status.is_success() {
        bail!("separation of duties did not hold for qi.ming");
    }
    Ok(())
}

pub async fn run(c: &Ctx<'_>, ca_pem: &str) -> Result<()> {
    let api = |p: &str| format!("{}{p}", c.url);
    let rp = call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/oidc/clients"),
        c.admin,
        Some(serde_json::json!({"client_id": "city-portal", "name": "City services portal", "redirect_uris": ["https://portal.city.example/cb"]})),
    )
    .await?;
    let secret = rp["client_secret"]
        .as_str()
        .context("no client secret")?
        .to_string();
    say(
        "sso",
        "the city services portal is registered as an OpenID Connect relying party",
    );
    mover(c).await?;
    call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/orgs"),
        c.admin,
        Some(serde_json::json!({"id": "civil-affairs", "name": "民政局 Civil Affairs Bureau", "departments": ["marriage registry", "social assistance"]})),
    )
    .await?;
    let mut staff = Vec::new();
    for (name, role) in [
        ("he.ping", "operator"),
        ("lin.yu", "operator"),
        ("ma.jun", "operator"),
        ("gao.min", "operator"),
        ("xu.tao", "operator"),
        ("song.jia", "operator"),
        ("bai.lu", "admin"),
    ] {
        let u = call(
            c.http,
            reqwest::Method::POST,
            &api("/api/v1/users"),
            c.admin,
            Some(serde_json::json!({"username": name, "display_name": name, "domain": "government", "org": "civil-affairs", "department": "social assistance", "roles": [role]})),
        )
        .await?;
        let initial = u["initial_password"].as_str().context("no password")?;
        let v: serde_json::Value = c
            .http
            .post(api("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": name, "password": initial}))
            .send()
            .await?
            .json()
            .await?;
        let pw = format!("Xi-hu-long-jing-{}!", name.len() * 131);
        call(
            c.http,
            reqwest::Method::POST,
            &api("/api/v1/account/password"),
            v["session"].as_str().unwrap_or_default(),
            Some(serde_json::json!({"old": initial, "new": pw})),
        )
        .await?;
        if role == "admin" {
            tenant_admin(c, v["session"].as_str().unwrap_or_default()).await?;
        } else if name == "lin.yu" {
            passkey(c, name, v["session"].as_str().unwrap_or_default()).await?;
            staff.push((name, pw));
        } else {
            staff.push((name, pw));
        }
    }
    let (user, pw) = (&staff[0].0, staff[0].1.as_str());
    let office_addr = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 10));
    let office = client_from(ca_pem, Some(office_addr), "Firefox/140 (office)")?;
    if office.get(api("/healthz")).send().await.is_err() {
        say(
            "sso",
            "skipped: this system cannot send from 127.0.x.y addresses (the act needs Linux)",
        );
        return Ok(());
    }
    let mut last = serde_json::Value::Null;
    for _ in 0..3 {
        match sign_in(&office, c.url, ("city-portal", &secret), (user, pw)).await? {
            Ok(claims) => last = claims,
            Err(why) => bail!("the office sign-in was refused: {why}"),
        }
    }
    say(
        "sso",
        format!(
            "{user} signs in to the portal from the Beijing office (code flow + PKCE): ID token for {} (acr {}, amr {})",
            last["sub"], last["acr"], last["amr"]
        ),
    );
    let abroad = client_from(
        ca_pem,
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 4, 20))),
        "python-requests/2.32",
    )?;
    match sign_in(&abroad, c.url, ("city-portal", &secret), (user, pw)).await? {
        Ok(_) => say("sso", "UNEXPECTED: the New York sign-in was allowed"),
        Err(why) => say(
            "risk",
            format!(
                "minutes later, {user}'s password from New York with a script: refused — {why}"
            ),
        ),
    }
    credential_stuffing(c, ca_pem, &staff).await?;
    // Password spraying: twenty addresses, one common password, every account.
    let (mut refused, mut tried, mut succeeded) = (0, 0, 0);
    for a in 0..20u8 {
        let b = client_from(
            ca_pem,
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 10 + a))),
            "spray/1.0",
        )?;
        // Sprayers guess user names too: the staff's and common ones that do not exist.
        let names = staff.iter().map(|(n, _)| *n).chain([
            "admin",
            "test",
            "wang.wei",
            "li.na",
            "zhang.min",
            "liu.yang",
        ]);
        for name in names {
            let r = b
                .post(api("/api/v1/auth/login"))
                .json(&serde_json::json!({"username": name, "password": "Welcome@2026"}))
                .send()
                .await?;
            tried += 1;
            match r.status().as_u16() {
                429 => refused += 1,
                200 => succeeded += 1,
                _ => {}
            }
        }
    }
    say(
        "sso",
        format!(
            "password spraying: {tried} attempts of `Welcome@2026` from 20 addresses on 12 user names: {refused} refused by the throttle before any check, {succeeded} succeeded"
        ),
    );
    let book = crate::demo::open_alerts_with(
        c.http,
        c.url,
        c.admin,
        &["auth.password_spraying", "auth.distributed_brute_force"],
        30,
    )
    .await?;
    let mut sprays = 0;
    let mut distributed = Vec::new();
    for a in book.as_array().into_iter().flatten() {
        match a["kind"].as_str() {
            Some("auth.password_spraying") => sprays += 1,
            Some("auth.distributed_brute_force") => {
                distributed.push(a["entity"].as_str().unwrap_or("").to_string());
            }
            _ => {}
        }
    }
    say(
        "alert",
        format!(
            "from the identity provider's own sign-in events: {sprays} password-spraying source(s); distributed guessing on {}",
            if distributed.is_empty() {
                "no account".to_string()
            } else {
                distributed.join(", ")
            }
        ),
    );
    Ok(())
}
