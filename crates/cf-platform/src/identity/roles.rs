//! Role changes after an account exists (AUZ-1, AUZ-4, IDM-3 movers): administrators set an
//! account's own roles, and the SCIM groups an HR system manages grant roles through a mapping.
//!
//! The two sources are kept apart — an account's roles are its own plus its groups' — so a
//! group change never takes away what an administrator granted, and every grant of either kind
//! passes the separation-of-duties rules on the union before anything is saved.

use super::*;

impl UserDoc {
    /// The roles the account holds: its own and those its SCIM groups grant.
    pub(super) fn effective_roles(&self) -> Vec<String> {
        let mut all = self.roles.clone();
        for r in &self.group_roles {
            if !all.contains(r) {
                all.push(r.clone());
            }
        }
        all
    }
}

/// Role names checked: known, without repeats, in a stable order.
pub(super) fn vet_roles(roles: &[String], field: &str) -> Result<Vec<String>, PlatformError> {
    let mut out: Vec<String> = Vec::new();
    for r in roles {
        if Role::parse(r).is_none() {
            return Err(PlatformError::InvalidInput(format!(
                "{field}: `{r}` is not a role; use admin, auditor, operator or service"
            )));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out.sort();
    Ok(out)
}

/// Refuse a combination the separation-of-duties rules forbid (AUZ-4).
pub(super) fn check_duties(own: &[String], groups: &[String]) -> Result<(), PlatformError> {
    let mut all: Vec<&str> = own.iter().map(String::as_str).collect();
    all.extend(groups.iter().map(String::as_str));
    all.sort_unstable();
    all.dedup();
    cf_authz::rights::check(&all, &cf_authz::rights::default_rules())
        .map_err(|v| PlatformError::Conflict(v.to_string()))
}

/// Which source of roles a change is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleSource {
    /// Granted to the account by an administrator.
    Own,
    /// Granted through the SCIM groups the account is a member of.
    Groups,
}

impl IdentityService {
    /// Set the roles of `username` from one source; the other source's roles stay. Refused when
    /// the union would break separation of duties; audited as a privileged change, with what
    /// was added and removed; the account's sessions see the new roles on their next request.
    pub async fn set_roles(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        username: &str,
        source: RoleSource,
        roles: &[String],
        why: serde_json::Value,
    ) -> Result<(UserInfo, Option<Receipt>), PlatformError> {
        auth.require(Action::ManageUsers)?;
        let roles = vet_roles(roles, "roles")?;
        let (mut u, doc) = self.administered(auth, username).await?;
        let before = u.effective_roles();
        let was = (u.roles.clone(), u.group_roles.clone());
        let (own, groups) = match source {
            RoleSource::Own => (roles.clone(), u.group_roles.clone()),
            RoleSource::Groups => (u.roles.clone(), roles.clone()),
        };
        if let Err(e) = check_duties(&own, &groups) {
            self.audit(
                ctx,
                &auth.principal().id,
                "identity.user.roles",
                &format!("user:{username}"),
                Outcome::Denied,
                serde_json::json!({"source": source_name(source), "requested": roles, "reason": e.to_string(), "why": why}),
            )
            .await?;
            return Err(e);
        }
        u.roles = own;
        u.group_roles = groups;
        let after = u.effective_roles();
        let added: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
        let removed: Vec<&String> = before.iter().filter(|r| !after.contains(r)).collect();
        if was == (u.roles.clone(), u.group_roles.clone()) {
            return Ok((u.info(), None));
        }
        let r = self
            .audit_privileged(
                ctx,
                &auth.principal().id,
                "identity.user.roles",
                &format!("user:{username}"),
                serde_json::json!({"source": source_name(source), "roles": roles, "added": added, "removed": removed, "effective": after, "why": why}),
            )
            .await?;
        self.save(&u, &doc).await?;
        self.emit_account(
            ctx,
            &auth.principal().id,
            username,
            // OCSF Account Change: Attach Policy, or Detach Policy when rights only shrank.
            if added.is_empty() && !removed.is_empty() {
                8
            } else {
                7
            },
        )
        .await;
        Ok((u.info(), Some(r)))
    }

    /// Would giving `username` these group roles break separation of duties? Checked before a
    /// SCIM group change is stored, so a refused change leaves nothing half done.
    pub async fn check_group_roles(
        &self,
        auth: &Authorized,
        username: &str,
        roles: &[String],
    ) -> Result<(), PlatformError> {
        let roles = vet_roles(roles, "group roles")?;
        let (u, _) = self.administered(auth, username).await?;
        check_duties(&u.roles, &roles)
            .map_err(|e| PlatformError::Conflict(format!("`{username}`: {e}")))
    }
}

fn source_name(s: RoleSource) -> &'static str {
    match s {
        RoleSource::Own => "own",
        RoleSource::Groups => "scim-groups",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_vetted_and_duties_checked_on_the_union() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            vet_roles(&s(&["operator", "auditor", "operator"]), "roles").unwrap(),
            s(&["auditor", "operator"])
        );
        assert!(
            vet_roles(&s(&["root"]), "roles")
                .unwrap_err()
                .to_string()
                .contains("`root` is not a role")
        );
        assert!(check_duties(&s(&["operator"]), &s(&["auditor"])).is_ok());
        // Each source alone is fine; together they are not.
        assert!(check_duties(&s(&["admin"]), &s(&[])).is_ok());
        assert!(check_duties(&s(&[]), &s(&["auditor"])).is_ok());
        let e = check_duties(&s(&["admin"]), &s(&["auditor"])).unwrap_err();
        assert!(e.to_string().contains("admin"), "{e}");
    }
}
