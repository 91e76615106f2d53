//! On a real internet-facing host's auth.log (../shared/datasets/soc): the line-by-line pipeline
//! syslog → OCSF 3002 → detector finds the brute-force source, and nothing else at this threshold.

use cf_detect::{Attempt, AuthDetector, AuthRules};

#[test]
fn the_brute_force_in_a_real_auth_log_is_found() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = std::fs::read_to_string(root.join("soc/logs/auth_linux_sshd/auth.log")).unwrap();
    let recv = cf_core::Timestamp::parse_rfc3339("2026-12-31T00:00:00Z").unwrap();
    let mut d = AuthDetector::new(AuthRules::default());
    let (mut auth_events, mut alerts) = (0, Vec::new());
    for line in text.lines() {
        let m = cf_ingest::syslog::parse(line.as_bytes(), recv).unwrap();
        let Some(e) = cf_ingest::ocsf::from_syslog(&m) else {
            continue;
        };
        if e["class_uid"] != 3002 {
            continue;
        }
        auth_events += 1;
        let a = Attempt {
            time_ms: e["time"].as_i64().unwrap(),
            user: e["user"]["name"].as_str().unwrap_or("").to_string(),
            src: e["src_endpoint"]["ip"].as_str().unwrap_or("").to_string(),
            success: e["status_id"] == 1,
        };
        alerts.extend(d.observe(&a));
    }
    // 190 failed passwords, 139 + 21 accepted logins, 89 invalid users, 4 failed public keys.
    assert_eq!(
        auth_events,
        190 + 139 + 21 + 89 + 4,
        "every sshd authentication line is normalised"
    );
    let brute: Vec<&str> = alerts
        .iter()
        .filter(|a| a.kind == "auth.brute_force")
        .map(|a| a.key.as_str())
        .collect();
    assert!(brute.contains(&"24.151.103.17"), "{alerts:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a.key != "85.245.107.41" || a.kind != "auth.brute_force"),
        "the admin's own address is not a brute force: {alerts:?}"
    );
}
