//! Incidents (SA-3): alerts about the same entity (an address, a device, an account) grouped into
//! one incident, each alert placed on the whitepaper's attack-chain stages — external
//! penetration, command and control, internal spread, data theft — so a chain that moves through
//! several stages is escalated.

use std::collections::BTreeMap;

use serde::Serialize;

/// The attack-chain stages, in order.
pub const STAGES: [&str; 4] = [
    "external_penetration",
    "command_and_control",
    "internal_spread",
    "data_theft",
];

/// The stage an alert kind belongs to (`other` for availability and quality signals).
pub fn stage_of(kind: &str) -> &'static str {
    let k = kind;
    // Sigma alerts carry the rule's ATT&CK tactic: `sigma.<tactic>.<rule id>`.
    if let Some(rest) = k.strip_prefix("sigma.") {
        let tactic = rest.split('.').next().unwrap_or("");
        return match tactic {
            "reconnaissance"
            | "resource_development"
            | "initial_access"
            | "execution"
            | "persistence"
            | "privilege_escalation"
            | "defense_evasion"
            | "credential_access" => "external_penetration",
            "command_and_control" => "command_and_control",
            "discovery" | "lateral_movement" => "internal_spread",
            "collection" | "exfiltration" => "data_theft",
            _ => "other",
        };
    }
    if k.starts_with("auth.")
        || k.starts_with("telemetry.")
        || matches!(
            k,
            "device.identity_mismatch"
                | "device.two_places"
                | "device.firmware_mismatch"
                | "device.unexpected_topic"
        )
    {
        "external_penetration"
    } else if k.starts_with("dns.") || k.contains("beacon") || k.contains("c2") {
        "command_and_control"
    } else if k.contains("lateral") || k.contains("scan") || k.contains("new_port") {
        "internal_spread"
    } else if k.contains("exfil") || k.starts_with("data.") {
        "data_theft"
    } else {
        "other"
    }
}

/// What grouping needs of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef {
    /// Alert id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Entity as `field:value`.
    pub entity: String,
    /// Severity rank (0 info … 4 critical).
    pub severity: u8,
    /// First sighting, ms.
    pub first_ms: i64,
    /// Last sighting, ms.
    pub last_ms: i64,
    /// Closed.
    pub closed: bool,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// Stable id (the entity).
    pub id: String,
    /// The entity's value (address, device id, account).
    pub entity: String,
    /// Alert ids.
    pub alerts: Vec<String>,
    /// Kinds seen.
    pub kinds: Vec<String>,
    /// Attack-chain stages reached, in chain order.
    pub stages: Vec<&'static str>,
    /// Highest alert severity, raised one step (to at most 4) when two or more stages are reached.
    pub severity: u8,
    /// First sighting, ms.
    pub first_ms: i64,
    /// Last sighting, ms.
    pub last_ms: i64,
    /// Open while any of its alerts is.
    pub open: bool,
}

/// Group alerts by entity value (the field name is dropped, so `key:1.2.3.4` and `src:1.2.3.4`
/// meet). Alerts about nothing in particular (`-`) stay out.
pub fn group(alerts: &[AlertRef]) -> Vec<Incident> {
    let mut by: BTreeMap<String, Vec<&AlertRef>> = BTreeMap::new();
    for a in alerts {
        let v = a
            .entity
            .split_once(':')
            .map_or(a.entity.as_str(), |(_, v)| v);
        if v.is_empty() || v == "-" {
            continue;
        }
        by.entry(v.to_string()).or_default().push(a);
    }
    let mut out: Vec<Incident> = by
        .into_iter()
        .map(|(entity, xs)| {
            let mut stages: Vec<&'static str> = STAGES
                .into_iter()
                .filter(|s| xs.iter().any(|a| stage_of(&a.kind) == *s))
                .collect();
            if stages.is_empty() {
                stages.push("other");
            }
            let mut kinds: Vec<String> = xs.iter().map(|a| a.kind.clone()).collect();
            kinds.sort();
            kinds.dedup();
            let top = xs.iter().map(|a| a.severity).max().unwrap_or(0);
            let chain = stages.iter().filter(|s| **s != "other").count();
            Incident {
                id: format!("inc:{entity}"),
                entity,
                alerts: xs.iter().map(|a| a.id.clone()).collect(),
                kinds,
                severity: if chain >= 2 { (top + 1).min(4) } else { top },
                stages,
                first_ms: xs.iter().map(|a| a.first_ms).min().unwrap_or(0),
                last_ms: xs.iter().map(|a| a.last_ms).max().unwrap_or(0),
                open: xs.iter().any(|a| !a.closed),
            }
        })
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse((i.open, i.severity, i.last_ms)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str, kind: &str, entity: &str, sev: u8, t: i64) -> AlertRef {
        AlertRef {
            id: id.into(),
            kind: kind.into(),
            entity: entity.into(),
            severity: sev,
            first_ms: t,
            last_ms: t,
            closed: false,
        }
    }

    #[test]
    fn alerts_about_one_address_form_one_escalated_chain() {
        let inc = group(&[
            a("1", "auth.brute_force", "key:45.134.26.9", 2, 10),
            a("2", "auth.success_after_guessing", "key:45.134.26.9", 3, 20),
            a("3", "dns.tunnel", "src:45.134.26.9", 3, 30),
            a("4", "device.rate", "device:cam-1", 2, 5),
            a("5", "district.silent", "-", 3, 5),
        ]);
        assert_eq!(inc.len(), 2);
        let chain = &inc[0];
        assert_eq!(chain.entity, "45.134.26.9");
        assert_eq!(
            chain.stages,
            ["external_penetration", "command_and_control"]
        );
        assert_eq!(chain.severity, 4, "two stages escalate");
        assert_eq!(
            (chain.first_ms, chain.last_ms, chain.alerts.len()),
            (10, 30, 3)
        );
        assert_eq!(inc[1].stages, ["other"]);
    }

    #[test]
    fn sigma_alerts_are_staged_by_their_tactic() {
        for (kind, stage) in [
            ("sigma.execution.x", "external_penetration"),
            ("sigma.credential_access.x", "external_penetration"),
            ("sigma.command_and_control.x", "command_and_control"),
            ("sigma.lateral_movement.x", "internal_spread"),
            ("sigma.discovery.x", "internal_spread"),
            ("sigma.exfiltration.x", "data_theft"),
            ("sigma.impact.x", "other"),
            ("sigma.untagged.x", "other"),
        ] {
            assert_eq!(stage_of(kind), stage, "{kind}");
        }
    }
}
