//! Separation of duties and rights compliance (AUZ-4, AUZ-6): role pairs no one may hold together,
//! checked on every grant, and a report of unused rights, toxic combinations and subjects whose
//! rights exceed their peer group's.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Two roles that must never be held by one subject, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SodRule {
    /// One role.
    pub a: String,
    /// The other.
    pub b: String,
    /// The control it protects.
    pub why: String,
}

/// The platform's rules: administrators configure and grant, they neither audit themselves nor
/// use the keys and data they control.
pub fn default_rules() -> Vec<SodRule> {
    let r = |a: &str, b: &str, why: &str| SodRule {
        a: a.into(),
        b: b.into(),
        why: why.into(),
    };
    vec![
        r(
            "admin",
            "auditor",
            "whoever administers must not review their own actions (AUD-5)",
        ),
        r(
            "admin",
            "service",
            "whoever controls keys and datasets must not read the data under them (ENC-1, MSK-3)",
        ),
        r(
            "admin",
            "operator",
            "whoever controls keys and datasets must not read the data under them, nor approve their own exports",
        ),
    ]
}

/// A grant refused by separation of duties.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("separation of duties: `{a}` and `{b}` cannot be held together ({why})")]
pub struct SodViolation {
    /// One role.
    pub a: String,
    /// The other.
    pub b: String,
    /// Why.
    pub why: String,
}

/// Check a complete role set (after a grant) against `rules`.
pub fn check(roles: &[&str], rules: &[SodRule]) -> Result<(), SodViolation> {
    for r in rules {
        if roles.contains(&r.a.as_str()) && roles.contains(&r.b.as_str()) {
            return Err(SodViolation {
                a: r.a.clone(),
                b: r.b.clone(),
                why: r.why.clone(),
            });
        }
    }
    Ok(())
}

/// One subject's rights and use, the input of [`report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRights {
    /// Subject id.
    pub subject: String,
    /// Peer group (department, post …).
    pub group: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Actions used in the review period.
    pub used_actions: Vec<String>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// A role none of whose actions the subject used in the period: revoke it.
    UnusedRole {
        /// Subject.
        subject: String,
        /// Role.
        role: String,
    },
    /// A held combination that separation of duties forbids (granted before the rule, or
    /// outside the platform).
    ToxicCombination {
        /// Subject.
        subject: String,
        /// The rule broken.
        violation: SodViolation,
    },
    /// A role that fewer than half of the subject's peers hold.
    ExceedsPeers {
        /// Subject.
        subject: String,
        /// Peer group.
        group: String,
        /// Role.
        role: String,
        /// Peers (others in the group) holding it.
        peers_with: usize,
        /// Peers in the group.
        peers: usize,
    },
}

/// The rights-compliance report (AUZ-6). `role_actions` maps each role to the actions it allows.
pub fn report(
    subjects: &[SubjectRights],
    role_actions: &BTreeMap<String, BTreeSet<String>>,
    rules: &[SodRule],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut groups: BTreeMap<&str, Vec<&SubjectRights>> = BTreeMap::new();
    for s in subjects {
        groups.entry(s.group.as_str()).or_default().push(s);
    }
    for s in subjects {
        let roles: Vec<&str> = s.roles.iter().map(String::as_str).collect();
        if let Err(v) = check(&roles, rules) {
            out.push(Finding::ToxicCombination {
                subject: s.subject.clone(),
                violation: v,
            });
        }
        for role in &s.roles {
            let allowed = role_actions.get(role);
            let used = s
                .used_actions
                .iter()
                .any(|a| allowed.is_some_and(|x| x.contains(a)));
            if !used {
                out.push(Finding::UnusedRole {
                    subject: s.subject.clone(),
                    role: role.clone(),
                });
            }
        }
        let peers: Vec<&&SubjectRights> = groups
            .get(s.group.as_str())
            .map(|g| g.iter().filter(|p| p.subject != s.subject).collect())
            .unwrap_or_default();
        // Peer comparison needs a group to compare with.
        if peers.len() >= 3 {
            for role in &s.roles {
                let with = peers.iter().filter(|p| p.roles.contains(role)).count();
                if with * 2 < peers.len() {
                    out.push(Finding::ExceedsPeers {
                        subject: s.subject.clone(),
                        group: s.group.clone(),
                        role: role.clone(),
                        peers_with: with,
                        peers: peers.len(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutually_exclusive_roles_are_refused_with_the_reason() {
        let rules = default_rules();
        assert!(check(&["admin"], &rules).is_ok());
        assert!(check(&["operator", "service"], &rules).is_ok());
        let e = check(&["service", "admin"], &rules).unwrap_err();
        assert_eq!((e.a.as_str(), e.b.as_str()), ("admin", "service"));
        assert!(
            e.to_string()
                .starts_with("separation of duties: `admin` and `service`")
        );
        assert!(check(&["auditor", "admin"], &rules).is_err());
    }

    #[test]
    fn the_report_names_unused_toxic_and_excess_rights() {
        let acts = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let role_actions: BTreeMap<String, BTreeSet<String>> = [
            (
                "operator".to_string(),
                acts(&["devices.quarantine", "kms.use"]),
            ),
            ("auditor".to_string(), acts(&["audit.read"])),
            ("admin".to_string(), acts(&["tokens.manage"])),
        ]
        .into();
        let s = |id: &str, roles: &[&str], used: &[&str]| SubjectRights {
            subject: id.into(),
            group: "soc".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            used_actions: used.iter().map(|r| r.to_string()).collect(),
        };
        let subjects = vec![
            s("ann", &["operator"], &["kms.use"]),
            s("bo", &["operator"], &["devices.quarantine"]),
            s("cy", &["operator"], &["kms.use"]),
            s("di", &["operator", "auditor"], &["kms.use"]),
            s(
                "ed",
                &["admin", "auditor"],
                &["tokens.manage", "audit.read"],
            ),
        ];
        let f = report(&subjects, &role_actions, &default_rules());
        assert!(f.contains(&Finding::UnusedRole {
            subject: "di".into(),
            role: "auditor".into()
        }));
        assert!(
            f.iter()
                .any(|x| matches!(x, Finding::ToxicCombination { subject, .. } if subject == "ed"))
        );
        assert!(f.iter().any(|x| matches!(x, Finding::ExceedsPeers { subject, role, .. } if subject == "di" && role == "auditor")));
        assert!(!f.iter().any(|x| matches!(x, Finding::ExceedsPeers { subject, role, .. } if subject == "ann" && role == "operator")));
        assert!(
            !f.iter()
                .any(|x| matches!(x, Finding::UnusedRole { subject, .. } if subject == "ann"))
        );
    }
}
