//! Authorisation: the platform's actions decided by Cedar policies (`cf-authz`, RBAC through role
//! entities, ABAC over context), yielding the `Authorized` proof that every service demands
//! (AUZ-1, AUD-5). Only an Allow from the policies mints one.

use std::fmt;

/// Built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Platform administration: tokens, configuration.
    Admin,
    /// Reads the audit ledger (AUD-5); deliberately not implied by `Admin` (separation of duties).
    Auditor,
    /// Security operations: events, alerts.
    Operator,
    /// Machine clients that publish events.
    Service,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Auditor, Role::Operator, Role::Service];
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Service => "service",
        }
    }
    /// Parse a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the risk engine makes of a request (AUZ-2, AUZ-5): people's sessions are scored on
/// every request; API tokens (machines) are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Assurance {
    /// Nothing unusual, or the session's second factor meets a step-up.
    #[default]
    Normal,
    /// A second factor is wanted and the session has none: sensitive actions are refused.
    StepUp,
    /// The risk engine denies: only the person's own account remains.
    Denied,
}

impl Assurance {
    /// The name the policies see.
    pub fn as_str(self) -> &'static str {
        match self {
            Assurance::Normal => "normal",
            Assurance::StepUp => "step_up",
            Assurance::Denied => "denied",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable subject id, e.g. `token:ab12cd34`.
    pub id: String,
    /// Granted roles.
    pub roles: Vec<Role>,
    /// A bootstrap credential: may do nothing but replace itself.
    pub must_change: bool,
    /// The organisation this principal is confined to (a tenant's people and tokens); `None`
    /// for the city's own operators and the platform itself (IDM-1).
    pub org: Option<String>,
    /// The risk engine's view of this request.
    pub assurance: Assurance,
}

impl Principal {
    /// The platform itself, for internal actions.
    pub fn system() -> Self {
        Principal {
            id: "system".into(),
            roles: vec![Role::Admin, Role::Auditor, Role::Operator],
            must_change: false,
            org: None,
            assurance: Assurance::Normal,
        }
    }
}

/// The actions the foundation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read ledger records, checkpoints, proofs and reports.
    ReadAudit,
    /// Create, list or revoke API tokens.
    ManageTokens,
    /// Exchange a bootstrap credential for a permanent one.
    RotateBootstrap,
    /// Publish events to the bus.
    PublishEvents,
    /// Read platform metrics.
    ReadMetrics,
    /// Create, rotate, configure, import and destroy keys (ENC-1, DES-1).
    ManageKeys,
    /// Encrypt, decrypt, sign and derive with keys; administrators manage keys but do not
    /// use them, so no single role both controls a key and reads the data under it.
    UseKeys,
    /// Register datasets (the city's databases that exports and masked reads draw on).
    ManageDatasets,
    /// Read datasets masked by the caller's role, and request exports (MSK-3, MSK-4).
    ReadData,
    /// Approve or reject export requests (never one's own).
    ApproveExports,
    /// Trace a leaked copy to the export it came from (PRV-1).
    TraceLeaks,
    /// Register, import, retire devices; issue enrollment tokens; revoke certificates; trust
    /// vendors' firmware keys and manifests (DEV-1, INT-1).
    ManageDevices,
    /// Read the device registry and its state.
    ReadDevices,
    /// Isolate a device and release it (AVL-2) — security operations' response.
    QuarantineDevices,
    /// Create and manage user accounts (IDM-1).
    ManageUsers,
    /// Act on one's own account: password, second factor, own sessions.
    OwnAccount,
    /// Read the alert book (SA-3).
    ReadAlerts,
    /// Assign, comment on and close alerts.
    HandleAlerts,
    /// Search the event store and list its partitions (SA-1).
    SearchEvents,
    /// Read the detection rules, their state and suppressions.
    ReadRules,
    /// Enable, disable and suppress detection rules (detection engineering).
    ManageRules,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 21] = [
        Action::ReadAudit,
        Action::ManageTokens,
        Action::RotateBootstrap,
        Action::PublishEvents,
        Action::ReadMetrics,
        Action::ManageKeys,
        Action::UseKeys,
        Action::ManageDatasets,
        Action::ReadData,
        Action::ApproveExports,
        Action::TraceLeaks,
        Action::ManageDevices,
        Action::ReadDevices,
        Action::QuarantineDevices,
        Action::ManageUsers,
        Action::OwnAccount,
        Action::ReadAlerts,
        Action::HandleAlerts,
        Action::SearchEvents,
        Action::ReadRules,
        Action::ManageRules,
    ];

    /// Stable name, used in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadAudit => "audit.read",
            Action::ManageTokens => "tokens.manage",
            Action::RotateBootstrap => "tokens.rotate_bootstrap",
            Action::PublishEvents => "events.publish",
            Action::ReadMetrics => "metrics.read",
            Action::ManageKeys => "kms.manage",
            Action::UseKeys => "kms.use",
            Action::ManageDatasets => "data.manage",
            Action::ReadData => "data.read",
            Action::ApproveExports => "exports.approve",
            Action::TraceLeaks => "exports.trace",
            Action::ManageDevices => "devices.manage",
            Action::ReadDevices => "devices.read",
            Action::QuarantineDevices => "devices.quarantine",
            Action::ManageUsers => "users.manage",
            Action::OwnAccount => "account.self",
            Action::ReadAlerts => "alerts.read",
            Action::HandleAlerts => "alerts.handle",
            Action::SearchEvents => "events.search",
            Action::ReadRules => "rules.read",
            Action::ManageRules => "rules.manage",
        }
    }
}

/// Proof that `principal` may perform `action`; only [`authorize`] makes one.
#[derive(Debug, Clone)]
pub struct Authorized {
    principal: Principal,
    action: Action,
}

impl Authorized {
    /// Who was authorised.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    /// For what.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The organisation the caller is confined to; `None` when it acts for the whole city.
    pub fn org(&self) -> Option<&str> {
        self.principal.org.as_deref()
    }
    /// Whether objects of organisation `org` are within the caller's reach.
    pub fn reaches(&self, org: &str) -> bool {
        self.org().is_none_or(|o| o == org)
    }
    /// Whether an object owned by `owner` (`None`: the city's) is within the caller's reach.
    pub fn reaches_owner(&self, owner: Option<&str>) -> bool {
        self.org().is_none() || self.org() == owner
    }
    /// Refuse a caller confined to one organisation: for the city-wide parts of an action
    /// otherwise open to tenants (e.g. trusting a vendor's firmware keys).
    pub fn city_only(&self, what: &str) -> Result<(), crate::PlatformError> {
        match self.org() {
            None => Ok(()),
            Some(o) => Err(crate::PlatformError::Forbidden(format!(
                "{what} is a city-wide function; the caller is confined to organisation `{o}`"
            ))),
        }
    }
    /// Refuse unless this proof is for `a` (services check the proof they were handed).
    pub fn require(&self, a: Action) -> Result<(), crate::PlatformError> {
        if self.action == a {
            Ok(())
        } else {
            Err(crate::PlatformError::Forbidden(format!(
                "{} is needed",
                a.as_str()
            )))
        }
    }
}

/// Decide. A bootstrap credential may only rotate itself.
pub fn authorize(
    principal: &Principal,
    action: Action,
) -> Result<Authorized, crate::PlatformError> {
    type Memo = std::collections::HashMap<(u8, bool, bool, Assurance, Action), cf_authz::Verdict>;
    static POLICIES: std::sync::LazyLock<cf_authz::Policies> =
        std::sync::LazyLock::new(cf_authz::Policies::builtin);
    // The built-in policies read only the roles, `must_change`, the action, whether the
    // principal is confined to an organisation, its assurance and the default context (a test checks they name
    // no principal), so a decision is a pure function of those and is computed once per
    // combination: 2^4 role sets × 2 × 2 × 3 × the actions.
    static MEMO: std::sync::LazyLock<std::sync::RwLock<Memo>> =
        std::sync::LazyLock::new(Default::default);
    let mask = principal
        .roles
        .iter()
        .map(|r| 1u8 << Role::ALL.iter().position(|x| x == r).unwrap_or(7))
        .fold(0, |a, b| a | b);
    let tenant = principal.org.is_some();
    let key = (
        mask,
        principal.must_change,
        tenant,
        principal.assurance,
        action,
    );
    let cached = MEMO.read().ok().and_then(|m| m.get(&key).cloned());
    let verdict = match cached {
        Some(v) => v,
        None => {
            let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
            let subject = cf_authz::Subject {
                id: &principal.id,
                roles: &roles,
                must_change: principal.must_change,
                tenant,
                assurance: principal.assurance.as_str(),
            };
            let v = POLICIES
                .decide(
                    &subject,
                    action.as_str(),
                    "platform",
                    &cf_authz::AccessContext::default(),
                )
                .map_err(|e| crate::PlatformError::Internal(e.to_string()))?;
            if let Ok(mut m) = MEMO.write() {
                m.insert(key, v.clone());
            }
            v
        }
    };
    if !verdict.allowed {
        if verdict
            .reasons
            .iter()
            .any(|r| r == "bootstrap-must-rotate-first")
        {
            return Err(crate::PlatformError::Forbidden(
                "this bootstrap credential must be changed first: POST /api/v1/auth/rotate".into(),
            ));
        }
        if verdict
            .reasons
            .iter()
            .any(|r| r == "sensitive-actions-need-assurance")
        {
            return Err(crate::PlatformError::Forbidden(format!(
                "{} needs more assurance: this session is used from a network, place, device or hour unusual for {}; sign in again with a second factor",
                action.as_str(),
                principal.id
            )));
        }
        if verdict.reasons.iter().any(|r| r == "denied-by-risk") {
            return Err(crate::PlatformError::Forbidden(format!(
                "refused: this session of {} is used in a way its account never is (e.g. impossible travel); sign in again",
                principal.id
            )));
        }
        if let Some(o) = &principal.org
            && verdict
                .reasons
                .iter()
                .any(|r| r == "tenants-keep-to-their-organisation")
        {
            return Err(crate::PlatformError::Forbidden(format!(
                "{} is a city-wide function; {} is confined to organisation `{o}`",
                action.as_str(),
                principal.id
            )));
        }
        return Err(crate::PlatformError::Forbidden(format!(
            "{} may not {}",
            principal.id,
            action.as_str()
        )));
    }
    Ok(Authorized {
        principal: principal.clone(),
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoised_decisions_equal_fresh_ones_for_every_combination() {
        // The memo is only sound while the built-in policies name no principal.
        assert!(!cf_authz::DEFAULT_POLICIES.contains("Principal::\""));
        let policies = cf_authz::Policies::builtin();
        let actions = [
            Action::ReadAudit,
            Action::ManageTokens,
            Action::RotateBootstrap,
            Action::UseKeys,
            Action::ManageKeys,
            Action::ManageUsers,
            Action::OwnAccount,
            Action::ReadAlerts,
            Action::ManageRules,
        ];
        for (mask, must_change, org) in (0u8..16).flat_map(|m| {
            [false, true].into_iter().flat_map(move |c| {
                [None, Some("water".to_string())]
                    .into_iter()
                    .map(move |o| (m, c, o))
            })
        }) {
            for assurance in [Assurance::Normal, Assurance::StepUp, Assurance::Denied] {
                let roles: Vec<Role> = Role::ALL
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, r)| *r)
                    .collect();
                let p = Principal {
                    id: format!("user:m{mask}"),
                    roles: roles.clone(),
                    must_change,
                    org: org.clone(),
                    assurance,
                };
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                for a in actions {
                    // Twice: the second answer comes from the memo.
                    for _ in 0..2 {
                        let fresh = policies
                            .decide(
                                &cf_authz::Subject {
                                    id: &p.id,
                                    roles: &names,
                                    must_change,
                                    tenant: org.is_some(),
                                    assurance: assurance.as_str(),
                                },
                                a.as_str(),
                                "platform",
                                &cf_authz::AccessContext::default(),
                            )
                            .unwrap();
                        assert_eq!(authorize(&p, a).is_ok(), fresh.allowed, "{p:?} {a:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn admin_is_not_auditor() {
        let admin = Principal {
            id: "a".into(),
            roles: vec![Role::Admin],
            must_change: false,
            org: None,
            assurance: Assurance::Normal,
        };
        assert!(authorize(&admin, Action::ManageTokens).is_ok());
        assert!(authorize(&admin, Action::ReadAudit).is_err());
        let aud = Principal {
            id: "b".into(),
            roles: vec![Role::Auditor],
            must_change: false,
            org: None,
            assurance: Assurance::Normal,
        };
        assert!(authorize(&aud, Action::ReadAudit).is_ok());
        assert!(authorize(&aud, Action::ManageTokens).is_err());
    }

    #[test]
    fn bootstrap_can_only_rotate() {
        let boot = Principal {
            id: "boot".into(),
            roles: vec![Role::Admin, Role::Auditor],
            must_change: true,
            org: None,
            assurance: Assurance::Normal,
        };
        assert!(authorize(&boot, Action::RotateBootstrap).is_ok());
        assert!(authorize(&boot, Action::ManageTokens).is_err());
        assert!(authorize(&boot, Action::ReadAudit).is_err());
    }
}
