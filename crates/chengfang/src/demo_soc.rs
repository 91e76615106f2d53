//! The demo's identity and SOC act: a city employee's account with a one-time password and a
//! second factor, then an SSH password-guessing run against a city server, sent as syslog, that
//! ends in the alert book where an operator takes it.

use anyhow::{Context, Result};

use crate::demo::{call, say};
use crate::demo_data::Ctx;

/// Run the act against the served platform.
pub async fn run(c: &Ctx<'_>) -> Result<()> {
    let url = c.url;
    let api = |p: &str| format!("{url}{p}");
    // Identity: a one-time password that must be changed, then TOTP.
    let u = call(c.http, reqwest::Method::POST, &api("/api/v1/users"), c.admin, Some(serde_json::json!({"username": "chen.jing", "display_name": "Chen Jing", "domain": "government", "org": "city", "department": "security operations centre", "roles": ["operator"]}))).await?;
    let initial = u["initial_password"]
        .as_str()
        .context("no initial password")?
        .to_string();
    let login = |pass: &str, otp: Option<String>| {
        let mut b = serde_json::json!({"username": "chen.jing", "password": pass});
        if let Some(o) = otp {
            b["otp"] = o.into();
        }
        c.http
            .post(api("/api/v1/auth/login"))
            .header("user-agent", "demo")
            .json(&b)
            .send()
    };
    let v: serde_json::Value = login(&initial, None).await?.json().await?;
    let session = v["session"].as_str().context("no session")?.to_string();
    say(
        "identity",
        format!(
            "chen.jing logs in with the one-time password: must_change = {}",
            v["must_change"]
        ),
    );
    let weak = c
        .http
        .post(api("/api/v1/account/password"))
        .bearer_auth(&session)
        .json(&serde_json::json!({"old": initial, "new": "chenjing1990"}))
        .send()
        .await?
        .status();
    say(
        "identity",
        format!("new password `chenjing1990` -> {weak} (her own name and a year)"),
    );
    let strong = "Liu-he-ta-9-jiang!";
    call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/account/password"),
        &session,
        Some(serde_json::json!({"old": initial, "new": strong})),
    )
    .await?;
    let t = call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/account/totp"),
        &session,
        None,
    )
    .await?;
    let totp = cf_identity::otp::Totp::from_uri(t["uri"].as_str().unwrap_or_default())?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    call(
        c.http,
        reqwest::Method::POST,
        &api("/api/v1/account/totp/confirm"),
        &session,
        Some(serde_json::json!({"code": totp.code_at(now())})),
    )
    .await?;
    let no_otp = login(strong, None).await?.status();
    let with_otp: serde_json::Value = login(strong, Some(totp.code_at(now() + 30)))
        .await?
        .json()
        .await?;
    let op = with_otp["session"]
        .as_str()
        .context("no session")?
        .to_string();
    say(
        "identity",
        format!(
            "TOTP enrolled; password alone -> {no_otp}; with the code -> session (mfa = {})",
            with_otp["mfa"]
        ),
    );

    // SOC: a guessing run against a city server, as its syslog would report it.
    let mut lines = String::new();
    for i in 0..30 {
        lines.push_str(&format!("<38>Nov 25 03:{:02}:{:02} gov-portal-1 sshd[{}]: Failed password for invalid user {} from 45.134.26.9 port {} ssh2\n", i / 60, i % 60, 7000 + i, ["admin", "oracle", "test", "postgres", "ubuntu"][i % 5], 40000 + i));
    }
    lines.push_str("<38>Nov 25 03:00:45 gov-portal-1 sshd[7100]: Accepted password for ubuntu from 45.134.26.9 port 41000 ssh2\n");
    let r = c
        .http
        .post(api("/api/v1/ingest/syslog"))
        .bearer_auth(c.admin)
        .header("content-type", "text/plain")
        .body(lines)
        .send()
        .await?;
    let counts: serde_json::Value = r.json().await?;
    say(
        "soc",
        format!(
            "{} syslog lines from gov-portal-1 ingested, {} parsed and normalised to OCSF Authentication",
            counts["received"], counts["parsed"]
        ),
    );
    let book =
        crate::demo::open_alerts_with(c.http, c.url, &op, &["auth.success_after_guessing"], 30)
            .await?;
    for a in book
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"].as_str().is_some_and(|k| k.starts_with("auth.")))
    {
        say(
            "alert",
            format!(
                "{} {} ({} sighting(s), {})",
                a["kind"].as_str().unwrap_or(""),
                a["entity"].as_str().unwrap_or(""),
                a["count"],
                a["severity"]
            ),
        );
    }
    if let Some(a) = book
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["kind"] == "auth.success_after_guessing")
    {
        let id = a["id"].as_str().unwrap_or_default();
        call(
            c.http,
            reqwest::Method::POST,
            &api(&format!("/api/v1/alerts/{id}/assign")),
            &op,
            Some(serde_json::json!({"text": "chen.jing"})),
        )
        .await?;
        say(
            "soc",
            "chen.jing takes the compromised-login alert (assignment audited)",
        );
    }
    // Hunting in the event store: the one successful login among the guesses.
    let mut found = serde_json::Value::Null;
    for _ in 0..30 {
        found = call(
            c.http,
            reqwest::Method::GET,
            &api("/api/v1/events?q=host%3Agov-portal-1%20AND%20accepted&from=400d&limit=5"),
            &op,
            None,
        )
        .await?;
        if found["matched"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    say(
        "soc",
        format!(
            "search `host:gov-portal-1 AND accepted` in the event store: {} match(es): {} (the search itself is audited)",
            found["matched"],
            found["events"][0]["body"]["syslog"]["message"]
                .as_str()
                .unwrap_or("-")
        ),
    );
    Ok(())
}
