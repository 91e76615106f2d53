//! Authorisation decisions (AUZ-1) with Cedar: roles are parent entities of the principal
//! (RBAC), request context carries attributes for conditions (ABAC), and every decision names the
//! policies that decided it. The platform's `Authorized` proof is minted only from an Allow here.
//!
//! Architecture invariant: no I/O; policies arrive as text (the built-in default is
//! `policies/default.cedar`), principals and context as plain values.

pub mod rights;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression,
};

/// The built-in policies.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");

/// Policy errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// The policy text does not parse.
    #[error("policies do not parse: {0}")]
    Parse(String),
    /// A name is not a valid entity id.
    #[error("invalid {what} `{value}`")]
    Name {
        /// What it was.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    /// Principal id (e.g. `token:3f2a…`).
    pub id: &'a str,
    /// Role names.
    pub roles: &'a [&'a str],
    /// A bootstrap credential that must be exchanged first.
    pub must_change: bool,
    /// Confined to one organisation (a tenant's administrators, staff and tokens), rather than
    /// acting for the whole city (IDM-1).
    pub tenant: bool,
    /// What the risk engine makes of this request (AUZ-2, AUZ-5): `normal`, `step_up` (a second
    /// factor is wanted and the session has none) or `denied`.
    pub assurance: &'a str,
}

/// Attributes of the request, for conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessContext {
    /// Administration only from `from_admin_network` (deployment setting).
    pub admin_networks_only: bool,
    /// Whether the request came from an administration network.
    pub from_admin_network: bool,
}

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed.
    pub allowed: bool,
    /// Ids of the policies that determined the decision (forbids on a refusal, permits on an allow).
    pub reasons: Vec<String>,
}

/// A compiled policy set.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
}

fn uid(ty: &str, id: &str, what: &'static str) -> Result<EntityUid, AuthzError> {
    let t = EntityTypeName::from_str(ty).map_err(|_| AuthzError::Name {
        what,
        value: ty.into(),
    })?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

impl Policies {
    /// Parse Cedar policy text.
    pub fn parse(text: &str) -> Result<Self, AuthzError> {
        Ok(Policies {
            set: PolicySet::from_str(text).map_err(|e| AuthzError::Parse(e.to_string()))?,
        })
    }

    /// The built-in policies.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_POLICIES).unwrap_or_else(|e| panic!("built-in policies: {e}"))
    }

    /// Decide whether `who` may perform `action` (e.g. `kms.use`) on `resource`.
    pub fn decide(
        &self,
        who: &Subject<'_>,
        action: &str,
        resource: &str,
        ctx: &AccessContext,
    ) -> Result<Verdict, AuthzError> {
        let principal = uid("Chengfang::Principal", who.id, "principal")?;
        let roles: HashSet<EntityUid> = who
            .roles
            .iter()
            .map(|r| uid("Chengfang::Role", r, "role"))
            .collect::<Result<_, _>>()?;
        let mut attrs = HashMap::new();
        attrs.insert(
            "must_change".to_string(),
            RestrictedExpression::new_bool(who.must_change),
        );
        attrs.insert(
            "tenant".to_string(),
            RestrictedExpression::new_bool(who.tenant),
        );
        attrs.insert(
            "assurance".to_string(),
            RestrictedExpression::new_string(who.assurance.to_string()),
        );
        let mut entities = vec![
            Entity::new(principal.clone(), attrs, roles.clone())
                .map_err(|e| AuthzError::Parse(e.to_string()))?,
        ];
        entities.extend(
            roles
                .into_iter()
                .map(|r| Entity::new_no_attrs(r, HashSet::new())),
        );
        let entities = Entities::from_entities(entities, None)
            .map_err(|e| AuthzError::Parse(e.to_string()))?;
        let context = Context::from_pairs([
            (
                "admin_networks_only".to_string(),
                RestrictedExpression::new_bool(ctx.admin_networks_only),
            ),
            (
                "from_admin_network".to_string(),
                RestrictedExpression::new_bool(ctx.from_admin_network),
            ),
        ])
        .map_err(|e| AuthzError::Parse(e.to_string()))?;
        let request = Request::new(
            principal,
            uid("Chengfang::Action", action, "action")?,
            uid("Chengfang::Resource", resource, "resource")?,
            context,
            None,
        )
        .map_err(|e| AuthzError::Parse(e.to_string()))?;
        let r = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let reasons = r
            .diagnostics()
            .reason()
            .map(|p| {
                self.set
                    .policy(p)
                    .and_then(|x| x.annotation("id").map(str::to_string))
                    .unwrap_or_else(|| p.to_string())
            })
            .collect();
        Ok(Verdict {
            allowed: r.decision() == Decision::Allow,
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [&str; 21] = [
        "rules.read",
        "rules.manage",
        "events.search",
        "alerts.read",
        "alerts.handle",
        "users.manage",
        "account.self",
        "devices.manage",
        "devices.read",
        "devices.quarantine",
        "audit.read",
        "tokens.manage",
        "tokens.rotate_bootstrap",
        "events.publish",
        "metrics.read",
        "kms.manage",
        "kms.use",
        "data.manage",
        "data.read",
        "exports.approve",
        "exports.trace",
    ];

    /// The foundation's role table, kept as the specification the default policies must meet.
    fn expected(role: &str, action: &str) -> bool {
        match action {
            "audit.read" | "exports.trace" => role == "auditor",
            "tokens.manage"
            | "tokens.rotate_bootstrap"
            | "kms.manage"
            | "data.manage"
            | "exports.approve"
            | "devices.manage"
            | "users.manage" => role == "admin",
            "account.self" => true,
            "alerts.handle" => role == "operator",
            "alerts.read" => matches!(role, "operator" | "auditor" | "admin"),
            "events.search" => matches!(role, "operator" | "auditor"),
            "rules.manage" => role == "operator",
            "rules.read" => matches!(role, "operator" | "auditor" | "admin"),
            "devices.read" => matches!(role, "admin" | "operator" | "auditor"),
            "devices.quarantine" => matches!(role, "admin" | "operator"),
            "events.publish" => matches!(role, "service" | "operator" | "admin"),
            "metrics.read" => matches!(role, "admin" | "operator" | "auditor"),
            "kms.use" | "data.read" => matches!(role, "service" | "operator"),
            _ => false,
        }
    }

    #[test]
    fn default_policies_match_the_role_table_for_every_role_and_action() {
        let p = Policies::builtin();
        for role in ["admin", "auditor", "operator", "service"] {
            for action in ACTIONS {
                let v = p
                    .decide(
                        &Subject {
                            id: "t1",
                            roles: &[role],
                            must_change: false,
                            tenant: false,
                            assurance: "normal",
                        },
                        action,
                        "platform",
                        &AccessContext::default(),
                    )
                    .unwrap();
                assert_eq!(
                    v.allowed,
                    expected(role, action),
                    "{role} {action}: {:?}",
                    v.reasons
                );
                if v.allowed {
                    assert!(!v.reasons.is_empty(), "an allow names its policy");
                }
            }
        }
        let none = p
            .decide(
                &Subject {
                    id: "t2",
                    roles: &[],
                    must_change: false,
                    tenant: false,
                    assurance: "normal",
                },
                "kms.use",
                "platform",
                &AccessContext::default(),
            )
            .unwrap();
        assert!(!none.allowed);
    }

    #[test]
    fn bootstrap_credentials_can_only_rotate_and_admin_networks_apply() {
        let p = Policies::builtin();
        let boot = Subject {
            id: "boot",
            roles: &["admin"],
            must_change: true,
            tenant: false,
            assurance: "normal",
        };
        let v = p
            .decide(
                &boot,
                "tokens.manage",
                "platform",
                &AccessContext::default(),
            )
            .unwrap();
        assert_eq!(
            (v.allowed, v.reasons.as_slice()),
            (false, &["bootstrap-must-rotate-first".to_string()][..])
        );
        assert!(
            p.decide(
                &boot,
                "tokens.rotate_bootstrap",
                "platform",
                &AccessContext::default()
            )
            .unwrap()
            .allowed
        );
        let admin = Subject {
            id: "a",
            roles: &["admin"],
            must_change: false,
            tenant: false,
            assurance: "normal",
        };
        let outside = AccessContext {
            admin_networks_only: true,
            from_admin_network: false,
        };
        let v = p
            .decide(&admin, "kms.manage", "platform", &outside)
            .unwrap();
        assert_eq!(v.reasons, ["administration-from-admin-networks"]);
        assert!(
            p.decide(
                &admin,
                "kms.manage",
                "platform",
                &AccessContext {
                    admin_networks_only: true,
                    from_admin_network: true
                }
            )
            .unwrap()
            .allowed
        );
    }

    /// What an organisation's own people and tokens may do: their organisation's accounts,
    /// devices, keys and tokens, and their own account; the city-wide functions are not theirs.
    fn tenant_may(action: &str) -> bool {
        matches!(
            action,
            "users.manage"
                | "account.self"
                | "devices.manage"
                | "devices.read"
                | "kms.manage"
                | "kms.use"
                | "tokens.manage"
        )
    }

    #[test]
    fn tenants_keep_to_their_organisations_functions() {
        let p = Policies::builtin();
        for role in ["admin", "auditor", "operator", "service"] {
            for action in ACTIONS {
                let v = p
                    .decide(
                        &Subject {
                            id: "t1",
                            roles: &[role],
                            must_change: false,
                            tenant: true,
                            assurance: "normal",
                        },
                        action,
                        "platform",
                        &AccessContext::default(),
                    )
                    .unwrap();
                assert_eq!(
                    v.allowed,
                    expected(role, action) && tenant_may(action),
                    "tenant {role} {action}: {:?}",
                    v.reasons
                );
                if expected(role, action) && !tenant_may(action) {
                    assert_eq!(v.reasons, ["tenants-keep-to-their-organisation"]);
                }
            }
        }
    }

    #[test]
    fn risky_requests_lose_the_sensitive_actions() {
        let p = Policies::builtin();
        let decide = |assurance: &str, action: &str| {
            p.decide(
                &Subject {
                    id: "u",
                    roles: &["admin", "operator"],
                    must_change: false,
                    tenant: false,
                    assurance,
                },
                action,
                "platform",
                &AccessContext::default(),
            )
            .unwrap()
        };
        assert!(decide("normal", "users.manage").allowed);
        let v = decide("step_up", "users.manage");
        assert_eq!(v.reasons, ["sensitive-actions-need-assurance"]);
        assert!(decide("step_up", "alerts.read").allowed);
        assert!(decide("step_up", "account.self").allowed);
        let v = decide("denied", "alerts.read");
        assert_eq!(v.reasons, ["denied-by-risk"]);
        assert!(decide("denied", "account.self").allowed);
    }

    #[test]
    fn policy_errors_are_reported() {
        assert!(
            Policies::parse("permit (principal, action, resource")
                .unwrap_err()
                .to_string()
                .starts_with("policies do not parse")
        );
    }
}
