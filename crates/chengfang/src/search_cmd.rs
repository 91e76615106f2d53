//! `chengfang search QUERY…`: search a running platform's event store (archived logs and alerts)
//! by time range, fields and free text, as a table or JSON lines. Each search is audited.

use anyhow::{Context, Result};
use clap::Args;

use crate::crypt::Remote;

/// Arguments.
#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    remote: Remote,
    /// Start: RFC 3339 or a duration back from now (`15m`, `24h`, `7d`).
    #[arg(long, default_value = "24h")]
    from: String,
    /// End (exclusive): RFC 3339 or a duration back from now; default now.
    #[arg(long)]
    to: Option<String>,
    /// Most events shown, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per event, then a summary object.
    #[arg(long)]
    json: bool,
    /// Query: words, "phrases", field:value (topic, source, severity, host, user, src_ip, dst_ip,
    /// class_uid, body.path), AND / OR / NOT, parentheses; nothing means every event.
    query: Vec<String>,
}

/// The line an analyst reads first: the message of whatever shape the event has.
fn summary(body: &serde_json::Value) -> String {
    let s = |p: &[&str]| {
        p.iter()
            .try_fold(body, |v, k| v.get(*k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let text = s(&["syslog", "message"])
        .or_else(|| s(&["ocsf", "message"]))
        .or_else(|| s(&["reason"]).map(|r| format!("malformed: {r}")))
        .or_else(|| s(&["key"]).map(|k| format!("alert on {k}")))
        .unwrap_or_else(|| body.to_string());
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Run; `Ok(false)` when nothing matched.
pub async fn run(a: SearchArgs) -> Result<bool> {
    let crate::crypt::Session { http, token, url } = a.remote.session()?;
    let url = format!("{url}/api/v1/events");
    let mut params: Vec<(&str, String)> = vec![
        ("q", a.query.join(" ")),
        ("from", a.from.clone()),
        ("limit", a.limit.to_string()),
    ];
    if let Some(t) = &a.to {
        params.push(("to", t.clone()));
    }
    let target = reqwest::Url::parse_with_params(&url, &params)
        .with_context(|| format!("`{url}` is not a URL"))?;
    let resp = http
        .get(target)
        .bearer_auth(&token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let page = crate::crypt::answer(resp, "search").await?;
    let events = page["events"].as_array().cloned().unwrap_or_default();
    if a.json {
        for e in &events {
            println!("{e}");
        }
        println!(
            "{}",
            serde_json::json!({"matched": page["matched"], "shown": events.len(), "partitions": page["partitions"]})
        );
    } else {
        println!(
            "{:<24} {:<22} {:<16} {:<12} {:<15} message",
            "time", "topic", "host", "user", "src_ip"
        );
        for e in &events {
            let f = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            let time: String = f("time").chars().take(23).collect();
            println!(
                "{:<24} {:<22} {:<16} {:<12} {:<15} {}",
                time,
                f("topic"),
                f("host"),
                f("user"),
                f("src_ip"),
                summary(&e["body"])
            );
        }
        println!(
            "{} matched in {} day partition(s); {} shown",
            page["matched"],
            page["partitions"],
            events.len()
        );
    }
    Ok(page["matched"].as_u64().unwrap_or(0) > 0)
}
