//! Passkeys (WebAuthn; IDM-5, issue 3 #3): people register authenticators to their own account
//! and sign in with them — possession plus the authenticator's PIN or biometric, so a passkey
//! session counts as multi-factor. Ceremonies live in the shared store, single-use, for five
//! minutes; sign-ins go through the same throttle, risk engine and audit as password logins.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cf_identity::webauthn::{self as wa, Credential, RelyingParty};

use super::*;

/// How long a ceremony waits for the authenticator.
const CEREMONY_TTL_S: i64 = 300;
/// Passkeys per account.
const MAX_PASSKEYS: usize = 16;

/// A passkey as stored with its account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredPasskey {
    cred: Credential,
    name: String,
    created: Timestamp,
    last_used: Option<Timestamp>,
}

impl StoredPasskey {
    fn info(&self) -> PasskeyInfo {
        PasskeyInfo {
            id: self.cred.id.clone(),
            name: self.name.clone(),
            created: self.created,
            last_used: self.last_used,
            synced: self.cred.backup_eligible,
        }
    }
}

/// A passkey as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyInfo {
    /// Credential id (base64url).
    pub id: String,
    /// The owner's label (e.g. `work laptop`).
    pub name: String,
    /// Registered.
    pub created: Timestamp,
    /// Last sign-in with it.
    pub last_used: Option<Timestamp>,
    /// May be synced to the owner's other devices.
    pub synced: bool,
}

/// A browser's answer to `navigator.credentials.create()` or `.get()`, in WebAuthn's JSON form
/// (byte fields base64url).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebauthnResponse {
    /// Credential id.
    pub id: String,
    /// `public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The authenticator's response.
    pub response: ResponseFields,
}

/// The fields of an attestation or assertion response.
#[derive(Debug, Clone, Deserialize)]
pub struct ResponseFields {
    /// Client data (both ceremonies).
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    /// Registration.
    #[serde(rename = "attestationObject", default)]
    pub attestation_object: Option<String>,
    /// Sign-in.
    #[serde(rename = "authenticatorData", default)]
    pub authenticator_data: Option<String>,
    /// Sign-in.
    #[serde(default)]
    pub signature: Option<String>,
    /// Sign-in, when the authenticator returns it.
    #[serde(rename = "userHandle", default)]
    pub user_handle: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ceremony {
    purpose: String,
    account: String,
    challenge: String,
    expires: i64,
}

fn b64(v: &str, what: &str) -> Result<Vec<u8>, PlatformError> {
    B64.decode(v.trim_end_matches('='))
        .map_err(|_| PlatformError::InvalidInput(format!("{what}: not base64url")))
}

fn refused(e: wa::WebauthnError) -> PlatformError {
    PlatformError::InvalidInput(format!("passkey refused: {e}"))
}

/// The opaque WebAuthn user handle of an account: stable, and not its name.
fn user_handle(username: &str) -> Vec<u8> {
    cf_crypto::sha256(format!("chengfang-webauthn-user:{username}").as_bytes())[..16].to_vec()
}

impl IdentityService {
    /// The signed-in person's own account record (gone if it was deleted meanwhile).
    async fn signed_in_user(&self, name: &str) -> Result<(UserDoc, Document), PlatformError> {
        self.user(name)
            .await?
            .ok_or_else(|| PlatformError::Unauthenticated("account no longer exists".into()))
    }

    /// Whether passkeys can be used here (the server has a domain name browsers accept).
    pub fn passkeys_enabled(&self) -> bool {
        self.inner.webauthn.get().is_some()
    }

    fn relying_party(&self) -> Result<&RelyingParty, PlatformError> {
        self.inner.webauthn.get().ok_or_else(|| {
            PlatformError::Unavailable(
                "passkeys need server.public_url with a domain name: browsers do not accept an IP address as the relying party"
                    .into(),
            )
        })
    }

    async fn open_ceremony(
        &self,
        purpose: &str,
        account: &str,
    ) -> Result<(String, Vec<u8>), PlatformError> {
        let challenge = cf_crypto::random_bytes(self.inner.rng.as_ref(), 32)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let id = cf_crypto::random_token(self.inner.rng.as_ref(), 24)
            .map_err(|e| PlatformError::Internal(e.to_string()))?;
        let now = self.inner.clock.now();
        self.inner
            .store
            .doc_insert(&Document {
                kind: "webauthn".into(),
                id: id.clone(),
                body: json(&Ceremony {
                    purpose: purpose.into(),
                    account: account.into(),
                    challenge: B64.encode(&challenge),
                    expires: secs(now) + CEREMONY_TTL_S,
                })?,
                revision: 1,
                updated: now,
            })
            .await?;
        Ok((id, challenge))
    }

    /// Take a ceremony out of the store: it answers once, and only within its time.
    async fn close_ceremony(&self, id: &str, purpose: &str) -> Result<Ceremony, PlatformError> {
        let gone = || {
            PlatformError::InvalidInput("ceremony: unknown, used or expired; begin again".into())
        };
        if id.is_empty() || id.len() > 64 {
            return Err(gone());
        }
        let d = self
            .inner
            .store
            .doc_get("webauthn", id)
            .await?
            .ok_or_else(gone)?;
        // Of two answers to one ceremony, only the one that deletes it goes on.
        if !self.inner.store.doc_delete("webauthn", id).await? {
            return Err(gone());
        }
        let c: Ceremony =
            serde_json::from_str(&d.body).map_err(|e| PlatformError::Internal(e.to_string()))?;
        if c.purpose != purpose || c.expires < secs(self.inner.clock.now()) {
            return Err(gone());
        }
        Ok(c)
    }

    /// Start registering a passkey to the signed-in person's account: a ceremony id and the
    /// options for `navigator.credentials.create()`.
    pub async fn passkey_begin(
        &self,
        auth: &Authorized,
    ) -> Result<(String, serde_json::Value), PlatformError> {
        auth.require(Action::OwnAccount)?;
        let rp = self.relying_party()?.clone();
        let name = Self::username_of(auth)?;
        let (u, _) = self.signed_in_user(&name).await?;
        if u.passkeys.len() >= MAX_PASSKEYS {
            return Err(PlatformError::Conflict(format!(
                "at most {MAX_PASSKEYS} passkeys per account; remove one first"
            )));
        }
        let (id, challenge) = self.open_ceremony("register", &name).await?;
        let existing: Vec<Credential> = u.passkeys.iter().map(|p| p.cred.clone()).collect();
        Ok((
            id,
            wa::creation_options(
                &rp,
                &user_handle(&name),
                &name,
                &u.display_name,
                &challenge,
                &existing,
            ),
        ))
    }

    /// Finish registering: the authenticator's answer is checked against the ceremony, then the
    /// passkey is audited and stored.
    pub async fn passkey_finish(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        ceremony: &str,
        label: &str,
        r: &WebauthnResponse,
    ) -> Result<(PasskeyInfo, Receipt), PlatformError> {
        auth.require(Action::OwnAccount)?;
        let rp = self.relying_party()?.clone();
        let name = Self::username_of(auth)?;
        if label.trim().is_empty() || label.chars().count() > 64 {
            return Err(PlatformError::InvalidInput(
                "name: 1-64 characters to tell the passkey apart".into(),
            ));
        }
        let c = self.close_ceremony(ceremony, "register").await?;
        if c.account != name {
            return Err(PlatformError::InvalidInput(
                "ceremony: begun by another account".into(),
            ));
        }
        let att = r.response.attestation_object.as_deref().ok_or_else(|| {
            PlatformError::InvalidInput("response.attestationObject: missing".into())
        })?;
        let cred = wa::verify_registration(
            &rp,
            &b64(&c.challenge, "challenge")?,
            &b64(&r.response.client_data_json, "response.clientDataJSON")?,
            &b64(att, "response.attestationObject")?,
        )
        .map_err(refused)?;
        let (mut u, doc) = self.signed_in_user(&name).await?;
        if u.passkeys.iter().any(|p| p.cred.id == cred.id) {
            return Err(PlatformError::Conflict(
                "this passkey is registered already".into(),
            ));
        }
        let stored = StoredPasskey {
            cred,
            name: label.trim().to_string(),
            created: self.inner.clock.now(),
            last_used: None,
        };
        let receipt = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.passkey.add",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({"credential": stored.cred.id, "alg": stored.cred.alg, "aaguid": stored.cred.aaguid, "synced": stored.cred.backup_eligible}),
            )
            .await?;
        let info = stored.info();
        u.passkeys.push(stored);
        self.save(&u, &doc).await?;
        self.index_handle(&name).await?;
        self.forget(&name);
        self.emit_account(ctx, &auth.principal().id, &name, 10)
            .await;
        Ok((info, receipt))
    }

    /// The signed-in person's passkeys.
    pub async fn passkeys(&self, auth: &Authorized) -> Result<Vec<PasskeyInfo>, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        Ok(self
            .user(&name)
            .await?
            .map(|(u, _)| u.passkeys.iter().map(StoredPasskey::info).collect())
            .unwrap_or_default())
    }

    /// Remove one of the signed-in person's passkeys (a lost phone or key); audited.
    pub async fn remove_passkey(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<Receipt, PlatformError> {
        auth.require(Action::OwnAccount)?;
        let name = Self::username_of(auth)?;
        let (mut u, doc) = self.signed_in_user(&name).await?;
        let before = u.passkeys.len();
        u.passkeys.retain(|p| p.cred.id != id);
        if u.passkeys.len() == before {
            return Err(PlatformError::NotFound(format!("no passkey `{id}`")));
        }
        let r = self
            .audit(
                ctx,
                &auth.principal().id,
                "identity.passkey.remove",
                &format!("user:{name}"),
                Outcome::Success,
                serde_json::json!({"credential": id}),
            )
            .await?;
        self.save(&u, &doc).await?;
        self.forget(&name);
        self.emit_account(ctx, &auth.principal().id, &name, 11)
            .await;
        Ok(r)
    }

    /// Start a passkey sign-in for `username` (empty: any account whose passkey the
    /// authenticator holds): a ceremony id and the options for `navigator.credentials.get()`.
    /// An unknown account gets a ceremony too (that cannot succeed), so the answer does not tell
    /// which accounts exist.
    pub async fn passkey_login_begin(
        &self,
        username: &str,
    ) -> Result<(String, serde_json::Value), PlatformError> {
        let rp = self.relying_party()?.clone();
        if username.len() > 64 {
            return Err(PlatformError::InvalidInput(
                "username: at most 64 characters".into(),
            ));
        }
        if username.is_empty() {
            // Usernameless: the authenticator offers the passkeys it holds for this site, and
            // the one chosen names its account by its user handle.
            let (id, challenge) = self.open_ceremony("login", "").await?;
            return Ok((id, wa::request_options(&rp, &challenge, &[])));
        }
        let mut allow: Vec<String> = self
            .user(username)
            .await?
            .map(|(u, _)| u.passkeys.iter().map(|p| p.cred.id.clone()).collect())
            .unwrap_or_default();
        if allow.is_empty() {
            allow.push(self.decoy_credential(username));
        }
        let (id, challenge) = self.open_ceremony("login", username).await?;
        let ids: Vec<&str> = allow.iter().map(String::as_str).collect();
        Ok((id, wa::request_options(&rp, &challenge, &ids)))
    }

    /// Remember which account a user handle stands for, so that a usernameless sign-in can
    /// find it (the handle is a one-way function of the name).
    async fn index_handle(&self, username: &str) -> Result<(), PlatformError> {
        let made = self
            .inner
            .store
            .doc_insert(&Document {
                kind: "webauthn-user".into(),
                id: B64.encode(user_handle(username)),
                body: json(&username)?,
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await;
        match made {
            Ok(()) | Err(crate::ports::StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The account a user handle stands for. Passkeys registered before the index existed are
    /// indexed by one scan of the accounts, the first time a handle is not found; a marker keeps
    /// later misses (random handles from anyone) from scanning again.
    async fn account_of_handle(&self, handle: &[u8]) -> Result<Option<String>, PlatformError> {
        let key = B64.encode(handle);
        let lookup = || async {
            Ok::<_, PlatformError>(
                self.inner
                    .store
                    .doc_get("webauthn-user", &key)
                    .await?
                    .and_then(|d| serde_json::from_str::<String>(&d.body).ok()),
            )
        };
        if let Some(u) = lookup().await? {
            return Ok(Some(u));
        }
        if self
            .inner
            .store
            .doc_get("webauthn-meta", "handles-indexed")
            .await?
            .is_some()
        {
            return Ok(None);
        }
        for d in self.inner.store.doc_list("user").await? {
            let u = parse_user(&d)?;
            if !u.passkeys.is_empty() {
                self.index_handle(&u.username).await?;
            }
        }
        let marked = self
            .inner
            .store
            .doc_insert(&Document {
                kind: "webauthn-meta".into(),
                id: "handles-indexed".into(),
                body: "true".into(),
                revision: 1,
                updated: self.inner.clock.now(),
            })
            .await;
        match marked {
            Ok(()) | Err(crate::ports::StoreError::Conflict(_)) => lookup().await,
            Err(e) => Err(e.into()),
        }
    }

    /// A credential id for an account without passkeys (or no account at all): stable for
    /// the name and unguessable without the server's key, of a length real authenticators use,
    /// so the options do not tell who has a passkey.
    fn decoy_credential(&self, username: &str) -> String {
        let mut out = [0u8; 65];
        cf_kms::hash::hkdf(
            self.inner.totp_key.expose(),
            b"chengfang-webauthn-decoy",
            &[username.as_bytes()],
            &mut out,
        );
        let len = [16, 20, 32, 64][usize::from(out[64] % 4)];
        B64.encode(&out[..len])
    }

    /// Finish a passkey sign-in: throttled like password logins, the assertion checked against
    /// the ceremony and the stored credential (a counter that goes backwards is refused as a
    /// cloned authenticator), scored by the risk engine, and audited; a multi-factor session.
    pub async fn passkey_login_finish(
        &self,
        ctx: &RequestContext,
        ceremony: &str,
        r: &WebauthnResponse,
        device: &str,
    ) -> Result<LoginOk, PlatformError> {
        let rp = self.relying_party()?.clone();
        let c = self.close_ceremony(ceremony, "login").await?;
        let resolved;
        let username = if c.account.is_empty() {
            let handle = r
                .response
                .user_handle
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(|h| b64(h, "response.userHandle"))
                .transpose()?
                .ok_or_else(|| {
                    PlatformError::InvalidInput(
                        "response.userHandle: a sign-in without a username needs the passkey to name its account".into(),
                    )
                })?;
            resolved = self.account_of_handle(&handle).await?;
            match resolved.as_deref() {
                Some(u) => u,
                None => {
                    // Charged like any sign-in, against no account.
                    self.charge(ctx, "", self.inner.clock.now()).await?;
                    return Err(PlatformError::Unauthenticated(
                        "the passkey was not accepted".into(),
                    ));
                }
            }
        } else {
            c.account.as_str()
        };
        let now = self.inner.clock.now();
        let attempt = self.charge(ctx, username, now).await?;
        let fail = || PlatformError::Unauthenticated("the passkey was not accepted".into());
        let deny = |why: String| async move {
            self.audit_login(
                ctx,
                username,
                Outcome::Denied,
                serde_json::json!({"reason": why, "method": "passkey"}),
            )
            .await
        };
        let Some((mut u, doc)) = self.user(username).await? else {
            deny("passkey for an unknown account".into()).await?;
            return Err(fail());
        };
        let Some(i) = u.passkeys.iter().position(|p| p.cred.id == r.id) else {
            deny("passkey not registered to the account".into()).await?;
            return Err(fail());
        };
        let decoded = (|| {
            Ok::<_, PlatformError>((
                b64(&r.response.client_data_json, "response.clientDataJSON")?,
                b64(
                    r.response.authenticator_data.as_deref().unwrap_or_default(),
                    "response.authenticatorData",
                )?,
                b64(
                    r.response.signature.as_deref().unwrap_or_default(),
                    "response.signature",
                )?,
                r.response
                    .user_handle
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(|h| b64(h, "response.userHandle"))
                    .transpose()?,
            ))
        })();
        let (cd, ad, sig, handle) = match decoded {
            Ok(x) => x,
            Err(e) => {
                deny(e.to_string()).await?;
                return Err(e);
            }
        };
        let checked = wa::verify_assertion(
            &rp,
            &b64(&c.challenge, "challenge")?,
            &u.passkeys[i].cred,
            &user_handle(username),
            &cd,
            &ad,
            &sig,
            handle.as_deref(),
        );
        let a = match checked {
            Ok(a) => a,
            Err(e) => {
                deny(format!("passkey: {e}")).await?;
                return Err(fail());
            }
        };
        if u.disabled || u.valid_until.is_some_and(|v| v <= now) {
            deny("account disabled or expired".into()).await?;
            return Err(fail());
        }
        // A passkey is itself a second factor, so a step-up is met; a denial still stands.
        let (obs, risk, policy) = self.assess(ctx, &u, device, now).await?;
        if risk.decision == cf_identity::risk::Decision::Deny {
            self.audit_login(
                ctx,
                username,
                Outcome::Denied,
                serde_json::json!({"reason": "risk: denied", "risk": risk, "method": "passkey"}),
            )
            .await?;
            return Err(PlatformError::Unauthenticated(
                "sign-in refused: it does not match how this account usually signs in (device, place or time); contact the service desk".into(),
            ));
        }
        u.passkeys[i].cred.sign_count = a.sign_count;
        u.passkeys[i].last_used = Some(now);
        u.risk.record(obs, &policy);
        self.save(&u, &doc).await?;
        self.inner.throttle.succeeded(attempt, now).await?;
        // RFC 8176: a synced passkey lives in software, a device-bound one in the authenticator;
        // the user verification every ceremony requires adds `user`.
        let key = if u.passkeys[i].cred.backup_eligible || a.backed_up {
            "swk"
        } else {
            "hwk"
        };
        let amr: &[&str] = if a.user_verified {
            &[key, "user", "mfa"]
        } else {
            &[key]
        };
        let (session, info, ended) = self
            .start_session(username, device, &ctx.source_addr, amr)
            .await?;
        self.audit_login(
            ctx,
            username,
            Outcome::Success,
            serde_json::json!({"session": info.handle, "mfa": info.mfa, "amr": info.amr, "method": "passkey", "credential": r.id, "ended": ended, "risk": risk}),
        )
        .await?;
        Ok(LoginOk {
            session,
            info,
            must_change: u.must_change,
            ended,
        })
    }
}
