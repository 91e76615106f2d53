//! Normalisation into OCSF 1.3 (SA-1): authentication lines of sshd and PAM become
//! Authentication (class 3002) events with user, source endpoint, protocol and outcome; account
//! creation and password changes become Account Change (3001). Mapping table: docs/ocsf-mapping.md.

use serde_json::{Value, json};

use crate::syslog::Syslog;

/// OCSF schema version emitted.
pub const OCSF_VERSION: &str = "1.3.0";

fn after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    s.find(key).map(|i| &s[i + key.len()..])
}

fn word(s: &str) -> &str {
    s.split([' ', ',', ';']).next().unwrap_or("")
}

fn base(m: &Syslog, class_uid: u32, activity_id: u32) -> Value {
    json!({
        "class_uid": class_uid,
        "category_uid": class_uid / 1000,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "time": m.time.map(|t| t.unix_millis()),
        "severity_id": 1,
        "dst_endpoint": {"hostname": m.hostname},
        "metadata": {"version": OCSF_VERSION, "product": {"name": m.app}, "log_name": "syslog"},
        "raw_data": m.message,
    })
}

fn auth(
    m: &Syslog,
    ok: bool,
    user: &str,
    ip: Option<&str>,
    port: Option<&str>,
    proto: Option<&str>,
    detail: &str,
) -> Value {
    let mut v = base(m, 3002, 1);
    v["status_id"] = json!(if ok { 1 } else { 2 });
    v["status"] = json!(if ok { "Success" } else { "Failure" });
    v["status_detail"] = json!(detail);
    v["user"] = json!({"name": user});
    v["src_endpoint"] = json!({"ip": ip, "port": port.and_then(|p| p.parse::<u16>().ok())});
    v["auth_protocol"] = json!(proto);
    v["service"] = json!({"name": m.app});
    v
}

/// The OCSF event for a syslog message, when one of the known shapes matches.
pub fn from_syslog(m: &Syslog) -> Option<Value> {
    let app = m.app.as_deref()?;
    let msg = m.message.as_str();
    if app == "sshd" {
        // "Failed password for [invalid user ]USER from IP port N ssh2"
        for (prefix, ok, proto) in [
            ("Failed password for ", false, "password"),
            ("Accepted password for ", true, "password"),
            ("Accepted publickey for ", true, "publickey"),
            ("Failed publickey for ", false, "publickey"),
        ] {
            if let Some(rest) = msg.strip_prefix(prefix) {
                let (rest, detail) = match rest.strip_prefix("invalid user ") {
                    Some(r) => (r, "unknown user"),
                    None => (rest, if ok { "" } else { "wrong credentials" }),
                };
                let user = rest.split(" from ").next().unwrap_or("");
                let ip = after(rest, " from ").map(word);
                let port = after(rest, " port ").map(word);
                return Some(auth(m, ok, user, ip, port, Some(proto), detail));
            }
        }
        // "Invalid user USER from IP[ port N]"
        if let Some(rest) = msg.strip_prefix("Invalid user ") {
            let user = rest.split(" from ").next().unwrap_or("");
            let ip = after(rest, " from ").map(word);
            let port = after(rest, " port ").map(word);
            return Some(auth(m, false, user, ip, port, None, "unknown user"));
        }
    }
    // PAM: "pam_unix(sshd:auth): authentication failure; … rhost=IP  user=USER". Modern sshd logs
    // its own "Failed password" line for the same attempt, so PAM's copy counts only from other
    // programs (older systems log as `sshd(pam_unix)`, as in loghub's Linux sample).
    if let Some(rest) = after(msg, "pam_unix(")
        && rest.contains(":auth): authentication failure")
        && app != "sshd"
    {
        let ip = after(msg, "rhost=").map(word).filter(|s| !s.is_empty());
        let user = after(msg, " user=").map(word).unwrap_or("");
        return Some(auth(
            m,
            false,
            user,
            ip,
            None,
            Some("password"),
            "pam authentication failure",
        ));
    }
    // useradd: "new user: name=USER, UID=…"; chpasswd: "password changed for USER".
    if app == "useradd"
        && let Some(rest) = after(msg, "new user: name=")
    {
        let mut v = base(m, 3001, 1);
        v["user"] = json!({"name": word(rest)});
        v["status_id"] = json!(1);
        return Some(v);
    }
    if let Some(rest) = after(msg, "password changed for ") {
        let mut v = base(m, 3001, 3);
        v["user"] = json!({"name": word(rest)});
        v["status_id"] = json!(1);
        return Some(v);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_core::Timestamp;

    fn ev(line: &str) -> Option<Value> {
        let m = crate::syslog::parse(
            line.as_bytes(),
            Timestamp::parse_rfc3339("2026-12-31T00:00:00Z").unwrap(),
        )
        .unwrap();
        from_syslog(&m)
    }

    #[test]
    fn sshd_outcomes_users_and_sources() {
        let f = ev("Mar 29 13:07:15 ip-10-77-20-248 sshd[2257]: Failed password for invalid user admin from 24.151.103.17 port 51401 ssh2").unwrap();
        assert_eq!(
            (
                f["class_uid"].as_u64(),
                f["type_uid"].as_u64(),
                f["status_id"].as_u64()
            ),
            (Some(3002), Some(300201), Some(2))
        );
        assert_eq!(f["user"]["name"], "admin");
        assert_eq!(f["status_detail"], "unknown user");
        assert_eq!(f["src_endpoint"]["ip"], "24.151.103.17");
        assert_eq!(f["src_endpoint"]["port"], 51401);
        assert_eq!(f["dst_endpoint"]["hostname"], "ip-10-77-20-248");
        let a = ev("Mar 27 13:08:09 h sshd[1361]: Accepted publickey for ubuntu from 85.245.107.41 port 54259 ssh2: RSA SHA256:x").unwrap();
        assert_eq!(
            (a["status_id"].as_u64(), a["auth_protocol"].as_str()),
            (Some(1), Some("publickey"))
        );
        let i = ev("Mar 27 14:54:57 h sshd[2967]: Invalid user support from 95.152.57.58").unwrap();
        assert_eq!(
            (
                i["user"]["name"].as_str(),
                i["src_endpoint"]["port"].is_null()
            ),
            (Some("support"), true)
        );
        let p = ev("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4  user=root").unwrap();
        assert_eq!(
            (p["src_endpoint"]["ip"].as_str(), p["user"]["name"].as_str()),
            (Some("218.188.2.4"), Some("root"))
        );
        assert!(ev("Mar 27 13:06:56 h sshd[1291]: Server listening on 0.0.0.0 port 22.").is_none());
    }
}
