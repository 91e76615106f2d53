//! Server-rendered pages for people (IDM-1, IDM-5, PWD-2, AUZ-3): `/account` — sign in, change the
//! password, enrol a second factor, see and end one's sessions — and `/admin`, the identity
//! administrators' console for accounts, roles, sessions and relying parties.
//!
//! The browser session is the single sign-on cookie; every form carries a token derived from the
//! session secret (CSRF), and every action goes through the same platform services, rights and
//! audit as the API.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cf_platform::authz::{self, Action, Authorized, Principal};

use crate::AppState;
use crate::auth::context;
use crate::ceremony::{Mode, ceremony_page, hidden, posted_credential};
use crate::oidc::{
    FormBody, Params, esc, form, page, redirect, set_cookie, sso_cookie, user_agent,
};

fn csrf_of(secret: &str) -> String {
    cf_identity::oidc::token_key(&format!("chengfang-csrf:{secret}"))[..32].to_string()
}

fn hidden_csrf(secret: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        csrf_of(secret)
    )
}

/// The signed-in person behind the browser's cookie.
struct Browser {
    secret: String,
    principal: Principal,
}

/// `source`: the request's address, so that the risk engine scores it (forms that change
/// something); pages that only show the person's own data pass `None`.
async fn browser(s: &AppState, h: &HeaderMap, source: Option<&str>) -> Option<Browser> {
    let secret = sso_cookie(h)?;
    let principal = s.identity.authenticate(&secret, source).await.ok()?;
    Some(Browser { secret, principal })
}

fn secure(s: &AppState) -> bool {
    s.oidc.issuer().starts_with("https://")
}

/// The refusal page when a form's CSRF token is not this session's.
fn check_csrf(b: &Browser, p: &Params) -> Option<Response> {
    match p.get("csrf") {
        Some(t) if cf_crypto::ct_eq(t.as_bytes(), csrf_of(&b.secret).as_bytes()) => None,
        _ => Some(page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p class=\"err\">This form is stale or came from another site; reload the page.</p>",
        )),
    }
}

/// The signed-in browser and its form, or the page to answer instead: the sign-in form (back to
/// `back`) without a session, a refusal when the form's CSRF token is not this session's.
async fn signed_form(
    s: &AppState,
    parts: &axum::http::request::Parts,
    b: FormBody,
    back: &str,
) -> Result<(Browser, Params), Box<Response>> {
    let Some(br) = browser(s, &parts.headers, Some(&context(parts).source_addr)).await else {
        return Err(Box::new(sign_in_form(s, None, back)));
    };
    let p = form(b).unwrap_or_default();
    match check_csrf(&br, &p) {
        Some(r) => Err(Box::new(r)),
        None => Ok((br, p)),
    }
}

/// [`signed_form`] for the administration console: the answer is the console itself when the
/// signed-in person may not administer accounts.
async fn admin_form(
    s: &AppState,
    parts: &axum::http::request::Parts,
    b: FormBody,
) -> Result<(Browser, Params, Authorized), Box<Response>> {
    let (br, p) = signed_form(s, parts, b, "/admin").await?;
    match allowed(&br, Action::ManageUsers) {
        Some(auth) => Ok((br, p, auth)),
        None => Err(Box::new(admin_page(s, &br, None).await)),
    }
}

fn allowed(b: &Browser, a: Action) -> Option<Authorized> {
    authz::authorize(&b.principal, a).ok()
}

fn sign_in_form(s: &AppState, error: Option<&str>, back: &str) -> Response {
    let err = error
        .map(|e| format!("<p class=\"err\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        "Sign in",
        &format!(
            "{err}<form method=\"post\" action=\"/account/login\"><input type=\"hidden\" name=\"back\" value=\"{}\"><label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required><label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required><label for=\"otp\">Authenticator or recovery code (if enrolled)</label><input type=\"text\" id=\"otp\" name=\"otp\" autocomplete=\"one-time-code\"><button type=\"submit\">Sign in</button></form>{passkey}",
            esc(back),
            passkey = if s.identity.passkeys_enabled() {
                format!(
                    "<h2>Or with a passkey</h2><form method=\"post\" action=\"/account/passkey\">{}<label for=\"pk_username\">Username (or leave it empty and pick a passkey)</label><input type=\"text\" id=\"pk_username\" name=\"username\" autocomplete=\"username webauthn\"><button type=\"submit\">Sign in with a passkey</button></form>",
                    hidden("back", back)
                )
            } else {
                String::new()
            }
        ),
    )
}

/// Where a sign-in form may send the browser afterwards (nothing outside the pages).
fn back_of(p: &Params) -> &'static str {
    match p.get("back").map(String::as_str) {
        Some("/admin") => "/admin",
        _ => "/account",
    }
}

/// A credential id as one path segment (base64url needs no escaping; anything else is refused
/// by the route).
fn url_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// `POST /account/passkey`: begin signing in with a passkey.
pub async fn passkey_sign_in(State(s): State<AppState>, b: FormBody) -> Response {
    let p = form(b).unwrap_or_default();
    let back = back_of(&p);
    let user = p.get("username").map_or("", |u| u.trim());
    match s.identity.passkey_login_begin(user).await {
        Ok((ceremony, options)) => ceremony_page(
            "Sign in with a passkey",
            &if user.is_empty() {
                "with a passkey you choose".to_string()
            } else {
                format!("as {user}")
            },
            Mode::Get,
            &options,
            "/account/passkey/finish",
            &format!("{}{}", hidden("back", back), hidden("ceremony", &ceremony)),
        ),
        Err(e) => sign_in_form(&s, Some(&e.to_string()), back),
    }
}

/// `POST /account/passkey/finish`: the authenticator's answer; a multi-factor session.
pub async fn passkey_signed_in(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let p = form(b).unwrap_or_default();
    let back = back_of(&p);
    let cred = match posted_credential(&p) {
        Ok(c) => c,
        Err(m) => return sign_in_form(&s, Some(&m), back),
    };
    match s
        .identity
        .passkey_login_finish(
            &context(&parts),
            p.get("ceremony").map_or("", String::as_str),
            &cred,
            user_agent(&parts.headers),
        )
        .await
    {
        Ok(ok) => signed_in(&s, &ok, back),
        Err(e) => sign_in_form(&s, Some(&e.to_string()), back),
    }
}

/// The browser signed in: its session cookie, and on to `back`.
fn signed_in(s: &AppState, ok: &cf_platform::identity::LoginOk, back: &str) -> Response {
    let mut r = redirect(back);
    set_cookie(&mut r, &ok.session, secure(s), false);
    r
}

/// [`signed_form`] for the person's own account: the answer is the account page when the
/// session may not act on it yet (a one-time password not yet changed).
async fn own_form(
    s: &AppState,
    parts: &axum::http::request::Parts,
    b: FormBody,
) -> Result<(Browser, Params, Authorized), Box<Response>> {
    let (br, p) = signed_form(s, parts, b, "/account").await?;
    match allowed(&br, Action::OwnAccount) {
        Some(auth) => Ok((br, p, auth)),
        None => Err(Box::new(
            account_page(s, &br, Some("Change your password first.")).await,
        )),
    }
}

/// `POST /account/passkeys`: begin registering a passkey to the signed-in person's account.
pub async fn passkey_add(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match own_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let name = p.get("name").map_or("", |n| n.trim());
    if name.is_empty() || name.chars().count() > 64 {
        return account_page(&s, &br, Some("Give the passkey a name of 1-64 characters.")).await;
    }
    match s.identity.passkey_begin(&auth).await {
        Ok((ceremony, options)) => ceremony_page(
            "Add a passkey",
            &format!("Your browser or security key will create the passkey “{name}”."),
            Mode::Create,
            &options,
            "/account/passkeys/finish",
            &format!(
                "{}{}{}",
                hidden_csrf(&br.secret),
                hidden("name", name),
                hidden("ceremony", &ceremony)
            ),
        ),
        Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
    }
}

/// `POST /account/passkeys/finish`: check and store the new passkey.
pub async fn passkey_added(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match own_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let cred = match posted_credential(&p) {
        Ok(c) => c,
        Err(m) => return account_page(&s, &br, Some(&m)).await,
    };
    let r = s
        .identity
        .passkey_finish(
            &auth,
            &context(&parts),
            p.get("ceremony").map_or("", String::as_str),
            p.get("name").map_or("", String::as_str),
            &cred,
        )
        .await;
    match r {
        Ok((info, _)) => {
            account_page(&s, &br, Some(&format!("Passkey “{}” added.", info.name))).await
        }
        Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
    }
}

/// `POST /account/passkeys/{id}/remove`
pub async fn passkey_remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, _, auth) = match own_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match s
        .identity
        .remove_passkey(&auth, &context(&parts), &id)
        .await
    {
        Ok(_) => account_page(&s, &br, Some("Passkey removed.")).await,
        Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
    }
}

/// `POST /account/login`
pub async fn login(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let Ok(p) = form(b) else {
        return sign_in_form(&s, Some("The form could not be read."), "/account");
    };
    let back = back_of(&p);
    let (Some(user), Some(pass)) = (p.get("username"), p.get("password")) else {
        return sign_in_form(&s, Some("Enter your username and password."), back);
    };
    let device = user_agent(&parts.headers);
    let otp = p.get("otp").map(String::as_str).filter(|o| !o.is_empty());
    match s
        .identity
        .login(&context(&parts), user, pass, otp, device)
        .await
    {
        Ok(ok) => signed_in(&s, &ok, back),
        Err(e) => sign_in_form(&s, Some(&e.to_string()), back),
    }
}

/// `POST /account/logout`
pub async fn logout(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let Some(br) = browser(&s, &parts.headers, Some(&context(&parts).source_addr)).await else {
        return redirect("/account");
    };
    let p = form(b).unwrap_or_default();
    if let Some(r) = check_csrf(&br, &p) {
        return r;
    }
    let _ = s.oidc.logout(&context(&parts), &br.secret).await;
    let mut r = redirect("/account");
    set_cookie(&mut r, "", secure(&s), true);
    r
}

fn session_rows(
    sessions: &[cf_identity::session::SessionInfo],
    csrf: &str,
    mine: &str,
    admin: bool,
) -> String {
    let mut rows = String::from(
        "<table><tr><th>Account</th><th>Device</th><th>Address</th><th>Started (unix)</th><th>MFA</th><th></th></tr>",
    );
    for x in sessions {
        let target = if admin { "/admin" } else { "/account" };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.account),
            esc(&x.device),
            esc(&x.address),
            x.created,
            if x.mfa { "yes" } else { "no" },
            if x.handle == mine {
                "this browser".to_string()
            } else {
                format!(
                    "<form method=\"post\" action=\"{target}/sessions/{h}/end\">{csrf}<button>End</button></form>",
                    h = esc(&x.handle)
                )
            }
        ));
    }
    rows.push_str("</table>");
    rows
}

/// `GET /account`
pub async fn account(State(s): State<AppState>, h: HeaderMap) -> Response {
    let Some(b) = browser(&s, &h, None).await else {
        return sign_in_form(&s, None, "/account");
    };
    account_page(&s, &b, None).await
}

async fn account_page(s: &AppState, b: &Browser, note: Option<&str>) -> Response {
    let csrf = hidden_csrf(&b.secret);
    let note = note
        .map(|n| format!("<p class=\"ok\">{}</p>", esc(n)))
        .unwrap_or_default();
    let (handle, _) = cf_identity::session::key_of(&b.secret);
    let (sessions, passkeys) = match allowed(b, Action::OwnAccount) {
        Some(auth) => (
            s.identity.sessions(&auth).await.unwrap_or_default(),
            s.identity.passkeys(&auth).await.unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let passkey_section = if s.identity.passkeys_enabled() {
        let mut rows = String::new();
        for k in &passkeys {
            rows.push_str(&format!(
                "<li>{} — added {}{}{} <form method=\"post\" action=\"/account/passkeys/{}/remove\">{csrf}<button>Remove</button></form></li>",
                esc(&k.name),
                k.created,
                k.last_used.map(|t| format!(", last used {t}")).unwrap_or_default(),
                if k.synced { ", synced" } else { "" },
                esc(&url_segment(&k.id)),
            ));
        }
        format!(
            "<h2>Passkeys</h2><ul id=\"passkeys\">{rows}</ul><form method=\"post\" action=\"/account/passkeys\">{csrf}<label for=\"pk_name\">Name for a new passkey</label><input type=\"text\" id=\"pk_name\" name=\"name\" maxlength=\"64\" placeholder=\"work laptop\" required><button>Add a passkey</button></form>"
        )
    } else {
        String::new()
    };
    let must = if b.principal.must_change {
        "<p class=\"err\">Your password is a one-time password: change it before anything else.</p>"
    } else {
        ""
    };
    let admin_link = if allowed(b, Action::ManageUsers).is_some() {
        "<p><a href=\"/admin\">Administration console</a></p>"
    } else {
        ""
    };
    page(
        StatusCode::OK,
        "My account",
        &format!(
            "{note}{must}<p>Signed in as <b>{who}</b>.</p>{admin_link}\
             <h2>Change password</h2><form method=\"post\" action=\"/account/password\">{csrf}<label for=\"old\">Current password</label><input type=\"password\" id=\"old\" name=\"old\" required><label for=\"new\">New password</label><input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" required><button>Change</button></form>\
             <h2>Second factor</h2><form method=\"post\" action=\"/account/mfa\">{csrf}<button>Enrol an authenticator app</button></form>\
             {passkey_section}<h2>Sessions</h2>{rows}\
             <form method=\"post\" action=\"/account/logout\">{csrf}<button>Sign out everywhere in this browser</button></form>",
            who = esc(b.principal.id.trim_start_matches("user:")),
            rows = session_rows(&sessions, &csrf, &handle, false)
        ),
    )
}

/// `POST /account/password`
pub async fn password(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p) = match signed_form(&s, &parts, b, "/account").await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(auth) = allowed(&br, Action::OwnAccount) else {
        return account_page(&s, &br, Some("Not allowed.")).await;
    };
    let r = s
        .identity
        .change_password(
            &auth,
            &context(&parts),
            p.get("old").map_or("", String::as_str),
            p.get("new").map_or("", String::as_str),
        )
        .await;
    // The principal changed (must_change cleared): read it again.
    let br = browser(&s, &parts.headers, Some(&context(&parts).source_addr))
        .await
        .unwrap_or(br);
    match r {
        Ok(_) => account_page(&s, &br, Some("Password changed.")).await,
        Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
    }
}

/// `POST /account/mfa`: start (no `code`) or confirm (with `code`) TOTP enrolment.
pub async fn mfa(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match own_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let ctx = context(&parts);
    let csrf = hidden_csrf(&br.secret);
    match p.get("code").filter(|c| !c.is_empty()) {
        None => match s.identity.totp_begin(&auth, &ctx, "Chengfang").await {
            Ok(uri) => page(
                StatusCode::OK,
                "Enrol an authenticator",
                &format!(
                    "<p>Add this account to your authenticator app (scan or paste):</p><p><code id=\"otpauth\">{}</code></p><form method=\"post\" action=\"/account/mfa\">{csrf}<label for=\"code\">Code from the app</label><input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" required><button>Confirm</button></form>",
                    esc(uri.expose())
                ),
            ),
            Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
        },
        Some(code) => match s.identity.totp_confirm(&auth, &ctx, code).await {
            Ok((codes, _)) => {
                let list: String = codes
                    .iter()
                    .map(|c| format!("<li><code>{}</code></li>", esc(c.expose())))
                    .collect();
                page(
                    StatusCode::OK,
                    "Second factor enrolled",
                    &format!(
                        "<p>Keep these recovery codes somewhere safe; each works once, and they are not shown again:</p><ul id=\"recovery\">{list}</ul><p><a href=\"/account\">Back to my account</a></p>"
                    ),
                )
            }
            Err(e) => account_page(&s, &br, Some(&e.to_string())).await,
        },
    }
}

async fn end_session(
    s: &AppState,
    parts: &axum::http::request::Parts,
    p: &Params,
    handle: &str,
    admin: bool,
) -> Response {
    let Some(br) = browser(s, &parts.headers, Some(&context(parts).source_addr)).await else {
        return sign_in_form(s, None, if admin { "/admin" } else { "/account" });
    };
    if let Some(r) = check_csrf(&br, p) {
        return r;
    }
    let action = if admin {
        Action::ManageUsers
    } else {
        Action::OwnAccount
    };
    let note = match allowed(&br, action) {
        Some(auth) => match s.identity.end_session(&auth, &context(parts), handle).await {
            Ok(_) => "Session ended.".to_string(),
            Err(e) => e.to_string(),
        },
        None => "Not allowed.".into(),
    };
    if admin {
        admin_page(s, &br, Some(&note)).await
    } else {
        account_page(s, &br, Some(&note)).await
    }
}

/// `POST /account/sessions/{handle}/end`
pub async fn end_own_session(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let p = form(b).unwrap_or_default();
    end_session(&s, &parts, &p, &handle, false).await
}

/// `POST /admin/sessions/{handle}/end`
pub async fn end_any_session(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let p = form(b).unwrap_or_default();
    end_session(&s, &parts, &p, &handle, true).await
}

/// `GET /admin`
pub async fn admin(State(s): State<AppState>, h: HeaderMap) -> Response {
    let Some(b) = browser(&s, &h, None).await else {
        return sign_in_form(&s, None, "/admin");
    };
    admin_page(&s, &b, None).await
}

async fn admin_page(s: &AppState, b: &Browser, note: Option<&str>) -> Response {
    let Some(auth) = allowed(b, Action::ManageUsers) else {
        return page(
            StatusCode::FORBIDDEN,
            "Administration",
            "<p class=\"err\">Only identity administrators use this console.</p><p><a href=\"/account\">My account</a></p>",
        );
    };
    let csrf = hidden_csrf(&b.secret);
    let note = note
        .map(|n| format!("<p class=\"ok\">{}</p>", esc(n)))
        .unwrap_or_default();
    let mut users = String::from(
        "<table id=\"users\"><tr><th>Username</th><th>Name</th><th>Domain</th><th>Organisation</th><th>Roles</th><th>MFA</th><th>Real name</th><th>State</th><th></th></tr>",
    );
    for u in s.identity.users(&auth).await.unwrap_or_default() {
        let (label, to) = if u.disabled {
            ("Enable", "enable")
        } else {
            ("Disable", "disable")
        };
        users.push_str(&format!(
            "<tr><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/admin/users/{n}/{to}\">{csrf}<button>{label}</button></form><form method=\"post\" action=\"/admin/users/{n}/reset\">{csrf}<button>Reset password</button></form><form method=\"post\" action=\"/admin/users/{n}/roles\">{csrf}<input type=\"text\" name=\"roles\" value=\"{own}\" aria-label=\"Own roles of {n}\" size=\"14\"><button>Set roles</button></form></td></tr>",
            esc(&u.display_name),
            esc(&u.domain),
            esc(&u.org),
            esc(&if u.group_roles.is_empty() {
                u.roles.join(", ")
            } else {
                format!(
                    "{} (groups: {})",
                    u.roles.join(", "),
                    u.group_roles.join(", ")
                )
            }),
            if u.mfa { "yes" } else { "no" },
            u.real_name_level,
            if u.disabled {
                "disabled"
            } else if u.must_change {
                "must change password"
            } else {
                "active"
            },
            n = esc(&u.username),
            own = esc(&u.own_roles.join(",")),
        ));
    }
    users.push_str("</table>");
    let sessions = s.identity.sessions(&auth).await.unwrap_or_default();
    let (mine, _) = cf_identity::session::key_of(&b.secret);
    let mut clients = String::from(
        "<table id=\"clients\"><tr><th>Client</th><th>Name</th><th>Type</th><th>Risk grade</th><th>Real-name level</th></tr>",
    );
    for c in s.oidc.clients(&auth).await.unwrap_or_default() {
        clients.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td></tr>",
            esc(&c.client_id),
            esc(&c.name),
            if c.confidential {
                "confidential"
            } else {
                "public"
            },
            c.risk_grade,
            c.min_real_name_level
        ));
    }
    clients.push_str("</table>");
    let known = s.identity.known_orgs().await.unwrap_or_default();
    let mut orgs = String::from(
        "<table id=\"orgs\"><tr><th>Organisation</th><th>Name</th><th>Scope</th><th>Departments</th></tr>",
    );
    for o in s
        .identity
        .orgs()
        .list(&auth, &known)
        .await
        .unwrap_or_default()
    {
        orgs.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.id),
            esc(&o.name),
            match o.scope {
                cf_platform::orgs::OrgScope::City => "city-wide",
                cf_platform::orgs::OrgScope::Tenant => "tenant",
            },
            esc(&o.departments.join(", "))
        ));
    }
    orgs.push_str("</table>");
    let own_org = esc(auth.org().unwrap_or_default());
    // Registering organisations is the city's; a tenant's administrator sees only the list.
    let org_form = if auth.org().is_none() {
        format!(
            "<h2>New organisation</h2><form method=\"post\" action=\"/admin/orgs\">{csrf}<label for=\"org_id\">Id</label><input type=\"text\" id=\"org_id\" name=\"id\" required><label for=\"org_name\">Name</label><input type=\"text\" id=\"org_name\" name=\"name\" required><label for=\"departments\">Departments (comma-separated)</label><input type=\"text\" id=\"departments\" name=\"departments\"><label for=\"scope\">Scope</label><select id=\"scope\" name=\"scope\"><option value=\"tenant\">tenant</option><option value=\"city\">city-wide</option></select><button>Register</button></form>"
        )
    } else {
        String::new()
    };
    let domains: String = cf_platform::identity::DOMAINS
        .iter()
        .map(|d| format!("<option>{d}</option>"))
        .collect();
    page(
        StatusCode::OK,
        "Administration",
        &format!(
            "{note}<p><a href=\"/account\">My account</a></p><h2>Accounts</h2>{users}\
             <h2>New account</h2><form method=\"post\" action=\"/admin/users\">{csrf}<label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" required><label for=\"display_name\">Name</label><input type=\"text\" id=\"display_name\" name=\"display_name\" required><label for=\"domain\">Identity domain</label><select id=\"domain\" name=\"domain\">{domains}</select><label for=\"org\">Organisation</label><input type=\"text\" id=\"org\" name=\"org\" value=\"{own_org}\" required><label for=\"department\">Department</label><input type=\"text\" id=\"department\" name=\"department\"><label for=\"post\">Post</label><input type=\"text\" id=\"post\" name=\"post\"><label for=\"roles\">Roles (comma-separated: admin, auditor, operator, service)</label><input type=\"text\" id=\"roles\" name=\"roles\"><button>Create</button></form>\
             <h2>Organisations</h2>{orgs}{org_form}<h2>Sessions</h2>{rows}<h2>Applications (single sign-on)</h2>{clients}",
            rows = session_rows(&sessions, &csrf, &mine, true)
        ),
    )
}

/// `POST /admin/users`
pub async fn create_user(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match admin_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let new = cf_platform::identity::NewUser {
        username: get("username"),
        display_name: get("display_name"),
        domain: get("domain"),
        org: get("org"),
        roles: get("roles")
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
        valid_until: None,
        department: Some(get("department")).filter(|d| !d.trim().is_empty()),
        post: Some(get("post")).filter(|d| !d.trim().is_empty()),
    };
    let note = match s.identity.create_user(&auth, &context(&parts), new).await {
        Ok((u, initial, _)) => format!(
            "{} created; one-time password (give it to the person; it must be changed at first sign-in): {}",
            u.username,
            initial.expose()
        ),
        Err(e) => e.to_string(),
    };
    admin_page(&s, &br, Some(&note)).await
}

/// `POST /admin/orgs`: register an organisation (the city's administrators).
pub async fn create_org(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match admin_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let new = cf_platform::orgs::NewOrg {
        id: get("id"),
        name: get("name"),
        scope: if get("scope") == "city" {
            cf_platform::orgs::OrgScope::City
        } else {
            cf_platform::orgs::OrgScope::Tenant
        },
        departments: get("departments")
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
    };
    let note = match s.identity.orgs().create(&auth, &context(&parts), new).await {
        Ok((o, _)) => format!("organisation {} registered", o.id),
        Err(e) => e.to_string(),
    };
    admin_page(&s, &br, Some(&note)).await
}

/// `POST /admin/users/{username}/{disable|enable|reset}`
pub async fn user_action(
    State(s): State<AppState>,
    Path((username, what)): Path<(String, String)>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (br, p, auth) = match admin_form(&s, &parts, b).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let ctx = context(&parts);
    let note = match what.as_str() {
        "roles" => {
            let roles: Vec<String> = p
                .get("roles")
                .map(String::as_str)
                .unwrap_or_default()
                .split([',', ' '])
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            match s
                .identity
                .set_roles(
                    &auth,
                    &ctx,
                    &username,
                    cf_platform::identity::RoleSource::Own,
                    &roles,
                    serde_json::json!({"via": "admin console"}),
                )
                .await
            {
                Ok((u, _)) => format!("{username}: roles {}", u.roles.join(", ")),
                Err(e) => e.to_string(),
            }
        }
        "disable" | "enable" => match s
            .identity
            .set_disabled(&auth, &ctx, &username, what == "disable")
            .await
        {
            Ok(_) => format!("{username} {what}d"),
            Err(e) => e.to_string(),
        },
        "reset" => match s.identity.admin_reset(&auth, &ctx, &username).await {
            Ok((pw, _)) => format!("{username}: new one-time password {}", pw.expose()),
            Err(e) => e.to_string(),
        },
        other => format!("unknown action `{other}`"),
    };
    admin_page(&s, &br, Some(&note)).await
}
