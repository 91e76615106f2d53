//! `chengfang user …`, `chengfang org …` and `chengfang sso …`: accounts, organisations and
//! single sign-on of a running platform from a terminal — create, list, disable (a leaver),
//! enable and reset accounts; register organisations and their departments; register the
//! city's applications as OpenID Connect relying parties, list and remove them, rotate the
//! signing keys. Everything goes through the API, so it is authorised and audited there.

use anyhow::Result;
use clap::Subcommand;

use crate::crypt::Remote;

/// Account commands.
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create an account; prints its one-time initial password (it must be changed at first login).
    Create {
        #[command(flatten)]
        remote: Remote,
        /// Login name (`[a-z0-9._-]`, immutable).
        username: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Identity domain: government, enterprise, partner, supplier, contractor, public,
        /// legal_person.
        #[arg(long, default_value = "government")]
        domain: String,
        /// Organisation.
        #[arg(long)]
        org: String,
        /// Role (repeatable): admin, auditor, operator, service.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Account valid until (RFC 3339), for contractors and partners.
        #[arg(long)]
        valid_until: Option<String>,
        /// Department within the organisation.
        #[arg(long)]
        department: Option<String>,
        /// Post (job position).
        #[arg(long)]
        post: Option<String>,
    },
    /// Accounts (a table, or `--json`).
    List {
        #[command(flatten)]
        remote: Remote,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account (a leaver): its sessions end and its single sign-on tokens stop working.
    Disable {
        #[command(flatten)]
        remote: Remote,
        /// Login name.
        username: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[command(flatten)]
        remote: Remote,
        /// Login name.
        username: String,
    },
    /// Set an account's own roles (a mover); roles its SCIM groups grant stay. Combinations
    /// separation of duties forbids are refused.
    Roles {
        #[command(flatten)]
        remote: Remote,
        /// Login name.
        username: String,
        /// The whole list, comma-separated (`operator,auditor`); empty removes every own role.
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        set: Vec<String>,
        /// Why (a ticket or change number), kept in the audit record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Record a real-name verification result (0 none, 1 registry, 2 plus mobile, 3 plus face
    /// or in person); applications can require a level.
    RealName {
        #[command(flatten)]
        remote: Remote,
        /// Login name.
        username: String,
        /// Level 0-3.
        #[arg(long)]
        level: u8,
        /// How the person was verified (`ctid`, `bank-card`, `counter` …).
        #[arg(long)]
        method: String,
    },
    /// Reset a password: prints a new one-time password; the account's sessions end.
    Reset {
        #[command(flatten)]
        remote: Remote,
        /// Login name.
        username: String,
    },
}

/// Organisation commands.
#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Register an organisation (city administrators). A tenant's people, tokens, devices and
    /// keys stay inside it; `--city-wide` makes its people act for the whole city.
    Create {
        #[command(flatten)]
        remote: Remote,
        /// Id (`[a-z0-9._-]`, immutable; what accounts' `org` names).
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Department (repeatable).
        #[arg(long = "department")]
        departments: Vec<String>,
        /// A city-wide organisation (security operations, audit) rather than a tenant.
        #[arg(long)]
        city_wide: bool,
    },
    /// Organisations within reach (a table, or `--json`).
    List {
        #[command(flatten)]
        remote: Remote,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Add a department to a registered organisation.
    AddDepartment {
        #[command(flatten)]
        remote: Remote,
        /// Organisation id.
        id: String,
        /// Department name.
        department: String,
    },
}

/// `chengfang org …`.
pub async fn org(cmd: OrgCmd) -> Result<bool> {
    use reqwest::Method as M;
    match cmd {
        OrgCmd::Create {
            remote,
            id,
            name,
            departments,
            city_wide,
        } => {
            let scope = if city_wide { "city" } else { "tenant" };
            remote
                .call(
                    M::POST,
                    "/api/v1/orgs",
                    Some(serde_json::json!({"id": id, "name": name, "scope": scope, "departments": departments})),
                )
                .await?;
            println!("organisation {id} registered ({scope})");
        }
        OrgCmd::List { remote, json } => {
            let v = remote.call(M::GET, "/api/v1/orgs", None).await?;
            if json {
                for o in list(&v) {
                    println!("{o}");
                }
            } else {
                println!(
                    "{:<20} {:<28} {:<8} {:<10} DEPARTMENTS",
                    "ID", "NAME", "SCOPE", "REGISTERED"
                );
                for o in list(&v) {
                    let deps: Vec<&str> = o["departments"]
                        .as_array()
                        .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<28} {:<8} {:<10} {}",
                        o["id"].as_str().unwrap_or("-"),
                        o["name"].as_str().unwrap_or("-"),
                        o["scope"].as_str().unwrap_or("-"),
                        if o["registered"] == true { "yes" } else { "no" },
                        deps.join(", ")
                    );
                }
            }
        }
        OrgCmd::AddDepartment {
            remote,
            id,
            department,
        } => {
            remote
                .call(
                    M::POST,
                    &format!("/api/v1/orgs/{id}/departments"),
                    Some(serde_json::json!({"name": department})),
                )
                .await?;
            println!("{id}: department {department} added");
        }
    }
    Ok(true)
}

/// Single sign-on commands.
#[derive(Subcommand, Debug)]
pub enum SsoCmd {
    /// Register an application as an OpenID Connect relying party; prints its client secret
    /// once (confidential clients).
    Register {
        #[command(flatten)]
        remote: Remote,
        /// Display name on the login page.
        #[arg(long)]
        name: String,
        /// Client id (generated when absent).
        #[arg(long)]
        client_id: Option<String>,
        /// Redirect URI (repeatable; exact match, https or loopback http).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Where logout may return to (repeatable).
        #[arg(long = "post-logout-uri")]
        post_logout_uris: Vec<String>,
        /// A public client (a mobile or browser app without a secret; PKCE only).
        #[arg(long)]
        public: bool,
        /// Grant (repeatable): authorization_code, refresh_token, client_credentials.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Scope a client-credentials token may carry (repeatable).
        #[arg(long = "service-scope")]
        service_scopes: Vec<String>,
        /// ID token algorithm: RS256 (default) or ES256.
        #[arg(long)]
        alg: Option<String>,
        /// Risk grade: low, medium (default) or high (second factor, recent login).
        #[arg(long, default_value = "medium")]
        risk_grade: String,
        /// Real-name verification level its users must have (0-3).
        #[arg(long, default_value_t = 0)]
        min_real_name_level: u8,
        /// The answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Registered relying parties.
    Clients {
        #[command(flatten)]
        remote: Remote,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Remove a relying party; every grant made to it is revoked.
    Remove {
        #[command(flatten)]
        remote: Remote,
        /// Client id.
        client_id: String,
    },
    /// Rotate the ID-token signing keys (the old ones stay published for a day).
    RotateKeys {
        #[command(flatten)]
        remote: Remote,
    },
}

fn list(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// `chengfang user …`.
pub async fn user(cmd: UserCmd) -> Result<bool> {
    use reqwest::Method as M;
    match cmd {
        UserCmd::Create {
            remote,
            username,
            name,
            domain,
            org,
            roles,
            valid_until,
            department,
            post,
        } => {
            let mut b = serde_json::json!({"username": username, "display_name": name, "domain": domain, "org": org, "roles": roles});
            for (k, v) in [
                ("valid_until", valid_until),
                ("department", department),
                ("post", post),
            ] {
                if let Some(v) = v {
                    b[k] = v.into();
                }
            }
            let v = remote.call(M::POST, "/api/v1/users", Some(b)).await?;
            println!(
                "{username} created; one-time password (must be changed at first login): {}",
                v["initial_password"].as_str().unwrap_or("-")
            );
        }
        UserCmd::List { remote, json } => {
            let v = remote.call(M::GET, "/api/v1/users", None).await?;
            if json {
                for u in list(&v) {
                    println!("{u}");
                }
            } else {
                println!(
                    "{:<20} {:<24} {:<12} {:<16} {:<20} {:<4} STATE",
                    "USERNAME", "NAME", "DOMAIN", "ORG", "ROLES", "MFA"
                );
                for u in list(&v) {
                    let roles: Vec<&str> = u["roles"]
                        .as_array()
                        .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<20} {:<24} {:<12} {:<16} {:<20} {:<4} {}",
                        u["username"].as_str().unwrap_or("-"),
                        u["display_name"].as_str().unwrap_or("-"),
                        u["domain"].as_str().unwrap_or("-"),
                        u["org"].as_str().unwrap_or("-"),
                        roles.join(","),
                        if u["mfa"] == true { "yes" } else { "no" },
                        if u["disabled"] == true {
                            "disabled"
                        } else if u["must_change"] == true {
                            "must change password"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        UserCmd::Disable { remote, username } => {
            remote
                .call(M::POST, &format!("/api/v1/users/{username}/disable"), None)
                .await?;
            println!("{username} disabled; sessions ended, single sign-on tokens revoked");
        }
        UserCmd::Enable { remote, username } => {
            remote
                .call(M::POST, &format!("/api/v1/users/{username}/enable"), None)
                .await?;
            println!("{username} enabled");
        }
        UserCmd::Roles {
            remote,
            username,
            set,
            reason,
        } => {
            let roles: Vec<String> = set.into_iter().filter(|r| !r.is_empty()).collect();
            let v = remote
                .call(
                    M::PUT,
                    &format!("/api/v1/users/{username}/roles"),
                    Some(serde_json::json!({"roles": roles, "reason": reason})),
                )
                .await?;
            let now: Vec<&str> = v["roles"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            println!("{username}: roles {}", now.join(","));
        }
        UserCmd::RealName {
            remote,
            username,
            level,
            method,
        } => {
            remote
                .call(
                    M::POST,
                    &format!("/api/v1/users/{username}/real-name"),
                    Some(serde_json::json!({"level": level, "method": method})),
                )
                .await?;
            println!("{username}: real-name level {level} ({method})");
        }
        UserCmd::Reset { remote, username } => {
            let v = remote
                .call(M::POST, &format!("/api/v1/users/{username}/reset"), None)
                .await?;
            println!(
                "{username}: new one-time password {}",
                v["initial_password"].as_str().unwrap_or("-")
            );
        }
    }
    Ok(true)
}

/// `chengfang sso …`.
pub async fn sso(cmd: SsoCmd) -> Result<bool> {
    use reqwest::Method as M;
    match cmd {
        SsoCmd::Register {
            remote,
            name,
            client_id,
            redirect_uris,
            post_logout_uris,
            public,
            grants,
            service_scopes,
            alg,
            risk_grade,
            min_real_name_level,
            json,
        } => {
            let mut b = serde_json::json!({
                "name": name, "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": post_logout_uris, "confidential": !public,
                "service_scopes": service_scopes, "risk_grade": risk_grade,
                "min_real_name_level": min_real_name_level,
            });
            if let Some(id) = client_id {
                b["client_id"] = id.into();
            }
            if !grants.is_empty() {
                b["grant_types"] = grants.into();
            }
            if let Some(a) = alg {
                b["id_token_alg"] = a.into();
            }
            let v = remote
                .call(M::POST, "/api/v1/oidc/clients", Some(b))
                .await?;
            if json {
                println!("{v}");
            } else {
                println!(
                    "registered {} ({})",
                    v["client"]["client_id"].as_str().unwrap_or("-"),
                    v["client"]["name"].as_str().unwrap_or("-")
                );
                if let Some(s) = v["client_secret"].as_str() {
                    println!("client secret (shown once): {s}");
                }
                println!(
                    "discovery: {}/.well-known/openid-configuration",
                    remote.url.trim_end_matches('/')
                );
            }
        }
        SsoCmd::Clients { remote, json } => {
            let v = remote.call(M::GET, "/api/v1/oidc/clients", None).await?;
            if json {
                for c in list(&v) {
                    println!("{c}");
                }
            } else {
                println!(
                    "{:<24} {:<28} {:<12} {:<7} {:<6} GRANTS",
                    "CLIENT", "NAME", "TYPE", "GRADE", "ALG"
                );
                for c in list(&v) {
                    let grants: Vec<&str> = c["grant_types"]
                        .as_array()
                        .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<28} {:<12} {:<7} {:<6} {}",
                        c["client_id"].as_str().unwrap_or("-"),
                        c["name"].as_str().unwrap_or("-"),
                        if c["confidential"] == true {
                            "confidential"
                        } else {
                            "public"
                        },
                        c["risk_grade"].as_str().unwrap_or("-"),
                        c["id_token_alg"].as_str().unwrap_or("-"),
                        grants.join(",")
                    );
                }
            }
        }
        SsoCmd::Remove { remote, client_id } => {
            remote
                .call(
                    M::DELETE,
                    &format!("/api/v1/oidc/clients/{client_id}"),
                    None,
                )
                .await?;
            println!("{client_id} removed; its grants are revoked");
        }
        SsoCmd::RotateKeys { remote } => {
            let v = remote
                .call(M::POST, "/api/v1/oidc/keys/rotate", None)
                .await?;
            println!("new signing keys: {}", v["new_kids"]);
        }
    }
    Ok(true)
}
