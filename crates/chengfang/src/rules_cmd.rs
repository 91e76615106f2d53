//! `chengfang rules …`: the detection rules of a running platform — list them with their state
//! and ATT&CK tags, see what was refused at load, enable and disable them, suppress a rule (for
//! one host or group key, or all) for a while, and hunt with them retroactively over the event
//! store. Every change needs a reason and is audited; so is every hunt.

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::crypt::Remote;

/// Rule commands.
#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// Loaded rules with their state (a table, or `--json`: one object per rule).
    List {
        #[command(flatten)]
        remote: Remote,
        /// Only rules with a tag starting with this (`attack.t1003`, `attack.credential_access`).
        #[arg(long)]
        tag: Option<String>,
        /// Only disabled rules.
        #[arg(long)]
        disabled: bool,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Rule files that were not loaded, with why.
    Refused {
        #[command(flatten)]
        remote: Remote,
    },
    /// Let a rule's hits raise alerts again.
    Enable {
        #[command(flatten)]
        remote: Remote,
        /// Rule id.
        id: String,
        /// Why (kept in the audit ledger).
        #[arg(long)]
        reason: String,
    },
    /// Add or remove a rule's tags (e.g. the city's own ATT&CK mapping); the rule file is left
    /// as it is, the change is audited.
    Tag {
        #[command(flatten)]
        remote: Remote,
        /// Rule id.
        id: String,
        /// Tag to add (repeatable).
        #[arg(long)]
        add: Vec<String>,
        /// Tag to remove (repeatable).
        #[arg(long)]
        remove: Vec<String>,
        /// Why (kept in the audit ledger).
        #[arg(long)]
        reason: String,
    },
    /// Stop a rule's hits from raising alerts.
    Disable {
        #[command(flatten)]
        remote: Remote,
        /// Rule id.
        id: String,
        /// Why (kept in the audit ledger).
        #[arg(long)]
        reason: String,
    },
    /// Suppress a rule's alerts for a while, on one entity or all.
    Suppress {
        #[command(flatten)]
        remote: Remote,
        /// Rule id.
        id: String,
        /// Only this host or group key.
        #[arg(long)]
        entity: Option<String>,
        /// For how long: `90m`, `12h`, `7d` (at most a year).
        #[arg(long = "for")]
        duration: String,
        /// Why (kept in the audit ledger).
        #[arg(long)]
        reason: String,
    },
    /// Run the rules retroactively over archived Windows events (audited); hits as a table or
    /// JSON lines; exit 1 when nothing matched.
    Hunt {
        #[command(flatten)]
        remote: Remote,
        /// Start: RFC 3339 or a duration back from now (`24h`, `30d`).
        #[arg(long, default_value = "24h")]
        from: String,
        /// End (exclusive); default now.
        #[arg(long)]
        to: Option<String>,
        /// Only this rule (repeatable).
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// Also raise alerts for the hits of enabled, unsuppressed rules.
        #[arg(long)]
        raise_alerts: bool,
        /// JSON lines: one per hit, then a summary.
        #[arg(long)]
        json: bool,
    },
    /// Suppressions in force.
    Suppressions {
        #[command(flatten)]
        remote: Remote,
    },
    /// End a suppression before it expires.
    Lift {
        #[command(flatten)]
        remote: Remote,
        /// Suppression id.
        id: String,
        /// Why (kept in the audit ledger).
        #[arg(long)]
        reason: String,
    },
}

/// `90s`, `15m`, `12h`, `7d` as seconds.
fn seconds(s: &str) -> Result<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("--for `{s}`: expected a number and a unit, e.g. 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--for `{s}`: the unit must be s, m, h or d"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("--for `{s}` is too long"))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn set(remote: &Remote, id: &str, reason: &str, enabled: bool) -> Result<bool> {
    let what = if enabled { "enable" } else { "disable" };
    let v = remote
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/rules/{}/{what}", enc(id)),
            Some(serde_json::json!({"reason": reason})),
        )
        .await?;
    println!("{id} ({}) {}d", v["title"].as_str().unwrap_or("-"), what);
    Ok(true)
}

/// Run.
pub async fn run(cmd: RulesCmd) -> Result<bool> {
    match cmd {
        RulesCmd::List {
            remote,
            tag,
            disabled,
            json,
        } => {
            let path = match &tag {
                Some(t) => format!("/api/v1/rules?tag={}", enc(t)),
                None => "/api/v1/rules".into(),
            };
            let v = remote.call(reqwest::Method::GET, &path, None).await?;
            let rules: Vec<&serde_json::Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| !disabled || r["enabled"] == false)
                .collect();
            if json {
                for r in &rules {
                    println!("{r}");
                }
            } else {
                println!(
                    "{:<38} {:<8} {:<11} {:<9} title",
                    "id", "state", "kind", "level"
                );
                for r in &rules {
                    let f = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                    println!(
                        "{:<38} {:<8} {:<11} {:<9} {}",
                        f("id"),
                        if r["enabled"] == false {
                            "disabled"
                        } else {
                            "enabled"
                        },
                        f("kind"),
                        f("level"),
                        f("title")
                    );
                }
                println!("{} rule(s)", rules.len());
            }
            Ok(true)
        }
        RulesCmd::Refused { remote } => {
            let v = remote
                .call(reqwest::Method::GET, "/api/v1/rules/refused", None)
                .await?;
            for r in v.as_array().into_iter().flatten() {
                println!(
                    "{}: {}",
                    r["file"].as_str().unwrap_or("-"),
                    r["reason"].as_str().unwrap_or("-")
                );
            }
            Ok(true)
        }
        RulesCmd::Enable { remote, id, reason } => set(&remote, &id, &reason, true).await,
        RulesCmd::Tag {
            remote,
            id,
            add,
            remove,
            reason,
        } => {
            if add.is_empty() && remove.is_empty() {
                anyhow::bail!("say which tags: --add TAG and/or --remove TAG");
            }
            let v = remote
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/rules/{}/tags", enc(&id)),
                    Some(serde_json::json!({"add": add, "remove": remove, "reason": reason})),
                )
                .await?;
            let tags: Vec<&str> = v["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            println!(
                "{id} ({}) tags: {}",
                v["title"].as_str().unwrap_or("-"),
                tags.join(", ")
            );
            Ok(true)
        }
        RulesCmd::Disable { remote, id, reason } => set(&remote, &id, &reason, false).await,
        RulesCmd::Suppress {
            remote,
            id,
            entity,
            duration,
            reason,
        } => {
            let secs = seconds(&duration)?;
            let v = remote.call(reqwest::Method::POST,
                "/api/v1/rules/suppressions",
                Some(serde_json::json!({"rule_id": id, "entity": entity, "reason": reason, "expires_in_secs": secs})),
            )
            .await?;
            println!(
                "suppression {} on {} ({}) until {}",
                v["id"].as_str().unwrap_or("-"),
                id,
                v["entity"].as_str().unwrap_or("every entity"),
                v["expires"].as_str().unwrap_or("-")
            );
            Ok(true)
        }
        RulesCmd::Hunt {
            remote,
            from,
            to,
            rules,
            raise_alerts,
            json,
        } => {
            let mut body = serde_json::json!({"from": from, "raise_alerts": raise_alerts});
            if let Some(t) = to {
                body["to"] = t.into();
            }
            if !rules.is_empty() {
                body["rules"] = rules.into();
            }
            let v = remote
                .call(reqwest::Method::POST, "/api/v1/rules/hunt", Some(body))
                .await?;
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            if json {
                for h in &hits {
                    println!("{h}");
                }
                println!(
                    "{}",
                    serde_json::json!({"events_scanned": v["events_scanned"], "windows_events": v["windows_events"],
                        "hits": hits.len(), "truncated": v["truncated"], "alerts_raised": v["alerts_raised"],
                        "correlations_incomplete": v["correlations_incomplete"] == true})
                );
            } else {
                println!("{:<24} {:<18} {:<38} title", "time", "host", "rule");
                for h in &hits {
                    let f = |k: &str| h[k].as_str().unwrap_or("-").to_string();
                    let time: String = f("time").chars().take(23).collect();
                    println!(
                        "{:<24} {:<18} {:<38} {}",
                        time,
                        f("host"),
                        f("rule_id"),
                        f("title")
                    );
                }
                println!(
                    "{} hit(s) in {} Windows events of {} archived{}{}",
                    hits.len(),
                    v["windows_events"],
                    v["events_scanned"],
                    if v["truncated"] == true {
                        " (stopped at the hit limit)"
                    } else if v["correlations_incomplete"] == true {
                        " (too many correlation inputs: correlations judged on part of the range; narrow it)"
                    } else {
                        ""
                    },
                    if raise_alerts {
                        format!("; {} alert(s) raised", v["alerts_raised"])
                    } else {
                        String::new()
                    }
                );
            }
            Ok(!hits.is_empty())
        }
        RulesCmd::Suppressions { remote } => {
            let v = remote
                .call(reqwest::Method::GET, "/api/v1/rules/suppressions", None)
                .await?;
            for s in v.as_array().into_iter().flatten() {
                println!("{s}");
            }
            Ok(true)
        }
        RulesCmd::Lift { remote, id, reason } => {
            remote
                .call(
                    reqwest::Method::POST,
                    &format!("/api/v1/rules/suppressions/{}/lift", enc(&id)),
                    Some(serde_json::json!({"reason": reason})),
                )
                .await?;
            println!("suppression {id} lifted");
            Ok(true)
        }
    }
}
