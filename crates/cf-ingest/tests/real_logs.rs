//! Syslog parsing on real logs from `../shared/datasets/soc/logs`: loghub's Linux and OpenSSH
//! samples field by field against their structured ground truth, and 3,506 lines of a real
//! internet-facing host's auth.log.

use cf_core::Timestamp;
use cf_ingest::syslog::{Format, parse};

fn recv() -> Timestamp {
    // Both samples are year-less; any receive time in the same year works.
    Timestamp::parse_rfc3339("2026-12-31T00:00:00Z").unwrap()
}

fn loghub(name: &str, host_col: &str, app_col: Option<&str>, pid_col: &str) {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let dir = root.join("soc/logs/loghub").join(name);
    let raw = std::fs::read_to_string(dir.join(format!("{name}_part.log"))).unwrap();
    let mut rd =
        csv::Reader::from_path(dir.join(format!("{name}_part.log_structured.csv"))).unwrap();
    let header = rd.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let (h, p, content) = (col(host_col), col(pid_col), col("Content"));
    let a = app_col.map(col);
    let mut n = 0;
    for (line, rec) in raw.lines().zip(rd.records()) {
        let rec = rec.unwrap();
        let m = parse(line.as_bytes(), recv()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(m.format, Format::Rfc3164);
        assert!(m.time.is_some(), "{line}");
        assert_eq!(m.hostname.as_deref(), Some(&rec[h]), "host: {line}");
        if let Some(a) = a {
            assert_eq!(m.app.as_deref(), Some(&rec[a]), "app: {line}");
        }
        if !rec[p].is_empty() {
            assert_eq!(m.procid.as_deref(), Some(&rec[p]), "pid: {line}");
        }
        assert_eq!(m.message.trim(), rec[content].trim(), "message: {line}");
        n += 1;
    }
    assert_eq!(n, 1000, "{name}");
}

#[test]
fn loghub_linux_fields_match_the_ground_truth() {
    // loghub names the host column `Level` and the tag `Component` in this sample.
    loghub("Linux", "Level", Some("Component"), "PID");
}

#[test]
fn loghub_openssh_fields_match_the_ground_truth() {
    // Here loghub calls the host `Component`; the tag is always sshd.
    loghub("OpenSSH", "Component", None, "Pid");
}

#[test]
fn a_real_auth_log_parses_line_by_line() {
    let Some(root) = cf_testkit::datasets() else {
        return;
    };
    let text = std::fs::read_to_string(root.join("soc/logs/auth_linux_sshd/auth.log")).unwrap();
    let mut apps = std::collections::BTreeMap::new();
    let mut n = 0;
    for line in text.lines() {
        let m = parse(line.as_bytes(), recv()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(m.hostname.as_deref(), Some("ip-10-77-20-248"), "{line}");
        *apps.entry(m.app.unwrap_or_default()).or_insert(0) += 1;
        n += 1;
    }
    assert_eq!(n, 3506);
    assert_eq!(apps.get("sshd"), Some(&1993));
    assert_eq!(apps.get("sudo"), Some(&327));
    assert_eq!(apps.get("CRON"), Some(&180));
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let n = cf_testkit::replay_corpus("syslog", cf_ingest::fuzzing::syslog);
    assert!(n >= 4);
}
