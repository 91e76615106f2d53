//! OpenID Connect provider endpoints (IDM-2, IDM-5): discovery, JWKS, the authorization
//! endpoint with its server-rendered login page, token, userinfo, introspection, revocation and
//! RP-initiated logout, plus the administrators' routes for relying parties and key rotation.
//!
//! The browser's single sign-on session is a `cf_sso` cookie (Secure, HttpOnly, SameSite=Lax)
//! holding an ordinary platform session secret, so administrators see and end it like any other.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cf_platform::authz::{self, Action};
use cf_platform::oidc::{AuthFailure, AuthRequest, ClientAuth, OAuthError};
use cf_platform::tokens::RequestContext;

use crate::AppState;
use crate::ack::Ack;
use crate::auth::{Caller, context};
use crate::ceremony::{Mode, ceremony_page, hidden, posted_credential};
use crate::error::ApiError;

pub(crate) type Params = BTreeMap<String, String>;
pub(crate) type FormBody = Result<axum::Form<Params>, axum::extract::rejection::FormRejection>;

const COOKIE: &str = "cf_sso";

/// Parameters of the authorization request carried through the login form.
const REQUEST_PARAMS: [&str; 14] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "acr_values",
    "ui_locales",
    "display",
];

pub(crate) fn form(b: FormBody) -> Result<Params, OAuthError> {
    b.map(|axum::Form(p)| p).map_err(|e| OAuthError {
        error: "invalid_request",
        description: format!("the body is not a valid form: {}", e.body_text()),
        status: 400,
    })
}

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(e: OAuthError, basic: bool) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = (
        status,
        Json(serde_json::json!({"error": e.error, "error_description": e.description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        let v = if basic {
            "Basic realm=\"chengfang\""
        } else {
            "Bearer realm=\"chengfang\""
        };
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
    }
    no_store(r)
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1, form-encoded id and secret) or the body.
fn client_auth(h: &HeaderMap, p: &Params) -> (ClientAuth, bool) {
    if let Some((id, secret)) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
    {
        return (
            ClientAuth {
                client_id: Some(pct_decode(&id)),
                client_secret: Some(pct_decode(&secret)),
            },
            true,
        );
    }
    (
        ClientAuth {
            client_id: p.get("client_id").cloned(),
            client_secret: p.get("client_secret").cloned(),
        },
        false,
    )
}

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with_script(status, title, body, "")
}

/// [`page`] whose CSP lets the one script carrying `nonce` run (none when it is empty).
pub(crate) fn page_with_script(
    status: StatusCode,
    title: &str,
    body: &str,
    nonce: &str,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t} · Chengfang</title><style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#1d2733}}h1{{font-size:1.3rem}}label{{display:block;margin:.8rem 0 .2rem}}input[type=text],input[type=password]{{width:100%;padding:.5rem;box-sizing:border-box}}button{{margin-top:1rem;padding:.5rem 1.2rem}}.err{{color:#a11;background:#fdecec;padding:.5rem}}.app{{color:#556}}</style></head><body><h1>城防 Chengfang · {t}</h1>{body}</body></html>",
        t = esc(title)
    );
    let mut r = (status, axum::response::Html(html)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let script = if nonce.is_empty() {
        String::new()
    } else {
        format!("; script-src 'nonce-{nonce}'")
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'{script}"
    )) {
        h.insert("content-security-policy", v);
    }
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

pub(crate) fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            no_store(r)
        }
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p class=\"err\">The redirect address is not valid.</p>",
        ),
    }
}

pub(crate) fn sso_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("cf_sso=").map(str::to_string))
        .filter(|v| !v.is_empty())
}

pub(crate) fn set_cookie(r: &mut Response, value: &str, secure: bool, clear: bool) {
    let attrs = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{}{}",
        if secure { "; Secure" } else { "" },
        if clear { "; Max-Age=0" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&attrs) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn failure(s: &AppState, f: AuthFailure) -> Response {
    match f.location(&s.oidc.issuer()) {
        Some(to) => redirect(&to),
        None => {
            let AuthFailure::Page(msg) = f else {
                return page(StatusCode::BAD_REQUEST, "Error", "");
            };
            page(
                StatusCode::BAD_REQUEST,
                "Sign-in error",
                &format!("<p class=\"err\">{}</p>", esc(&msg)),
            )
        }
    }
}

/// The authorization request's parameters as the hidden inputs of a form.
fn request_hidden(p: &Params) -> String {
    REQUEST_PARAMS
        .iter()
        .filter_map(|k| p.get(*k).map(|v| hidden(k, v)))
        .collect()
}

fn login_page(
    s: &AppState,
    r: &AuthRequest,
    p: &Params,
    error: Option<&str>,
    change: bool,
) -> Response {
    let hidden = request_hidden(p);
    let err = error
        .map(|e| format!("<p class=\"err\">{}</p>", esc(e)))
        .unwrap_or_default();
    let user = p
        .get("username")
        .or(r.login_hint.as_ref())
        .map(|u| esc(u))
        .unwrap_or_default();
    let change_fields = if change {
        "<label for=\"new_password\">New password (your initial password must be changed)</label><input type=\"password\" id=\"new_password\" name=\"new_password\" autocomplete=\"new-password\" required>"
    } else {
        ""
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
        status,
        "Sign in",
        &format!(
            "<p class=\"app\">to <b>{app}</b></p>{err}<form method=\"post\" action=\"/oidc/login\">{hidden}<label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" value=\"{user}\" autocomplete=\"username\" required><label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required><label for=\"otp\">Authenticator or recovery code (if enrolled)</label><input type=\"text\" id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\">{change_fields}<button type=\"submit\">Sign in</button></form>{passkey}",
            app = esc(&r.client.name),
            passkey = if s.identity.passkeys_enabled() && !change {
                format!(
                    "<h2>Or with a passkey</h2><form method=\"post\" action=\"/oidc/passkey\">{hidden}<label for=\"pk_username\">Username (or leave it empty and pick a passkey)</label><input type=\"text\" id=\"pk_username\" name=\"username\" value=\"{user}\" autocomplete=\"username webauthn\"><button type=\"submit\">Sign in with a passkey</button></form>"
                )
            } else {
                String::new()
            }
        ),
    )
}

/// `GET /.well-known/openid-configuration`
pub async fn discovery(State(s): State<AppState>) -> Response {
    Json(s.oidc.discovery()).into_response()
}

/// `GET /oidc/jwks`
pub async fn jwks(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(s.oidc.jwks().await?).into_response())
}

/// `GET /oidc/authorize`
pub async fn authorize_get(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match q {
        Ok(Query(p)) => authorize(&s, &parts, p).await,
        Err(e) => failure(&s, AuthFailure::Page(e.body_text())),
    }
}

/// `POST /oidc/authorize` (OIDC Core §3.1.2.1 allows form posts).
pub async fn authorize_post(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    match form(b) {
        Ok(p) => authorize(&s, &parts, p).await,
        Err(e) => failure(&s, AuthFailure::Page(e.description)),
    }
}

async fn authorize(s: &AppState, parts: &axum::http::request::Parts, p: Params) -> Response {
    let ctx = context(parts);
    let r = match s.oidc.check_request(&p).await {
        Ok(r) => r,
        Err(f) => return failure(s, f),
    };
    let session = match sso_cookie(&parts.headers) {
        Some(c) => match s.oidc.identity().sso_session(&c).await {
            Ok(x) => x,
            Err(e) => return failure(s, AuthFailure::Page(e.to_string())),
        },
        None => None,
    };
    if let Some((info, _)) = session.as_ref().filter(|(i, u)| {
        s.oidc.session_satisfies(&r, i) && !u.must_change && s.oidc.chain_possible(&r, u).is_ok()
    }) {
        return match s.oidc.issue_code(&ctx, &r, info).await {
            Ok(to) => redirect(&to),
            Err(e) => failure(s, AuthFailure::Page(e.to_string())),
        };
    }
    if r.prompt.iter().any(|x| x == "none") {
        let uri = r.redirect_uri.clone();
        return failure(
            s,
            AuthFailure::Redirect {
                redirect_uri: uri,
                error: "login_required",
                description: "no session satisfies this request".into(),
                state: r.state.clone(),
            },
        );
    }
    login_page(s, &r, &p, None, false)
}

/// `POST /oidc/login`: the login form, then a code for the request it carries.
pub async fn login(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let ctx = context(&parts);
    let (p, r) = match carried_request(&s, b).await {
        Ok(x) => x,
        Err(e) => return *e,
    };
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(user), Some(pass)) = (get("username"), get("password")) else {
        return login_page(&s, &r, &p, Some("Enter your username and password."), false);
    };
    let device = user_agent(&parts.headers);
    let ok = match s
        .oidc
        .identity()
        .login(&ctx, user, pass, get("otp"), device)
        .await
    {
        Ok(ok) => ok,
        Err(e) => return login_page(&s, &r, &p, Some(&sign_in_refusal(&e)), false),
    };
    if ok.must_change {
        let Some(new) = get("new_password") else {
            let _ = s.oidc.identity().logout(&ctx, &ok.session).await;
            return login_page(
                &s,
                &r,
                &p,
                Some("Your password must be changed before you continue."),
                true,
            );
        };
        let changed = async {
            let principal = s
                .oidc
                .identity()
                .authenticate(&ok.session, Some(&ctx.source_addr))
                .await?;
            let auth = authz::authorize(&principal, Action::OwnAccount)?;
            s.oidc
                .identity()
                .change_password(&auth, &ctx, pass, new)
                .await
        }
        .await;
        if let Err(e) = changed {
            let _ = s.oidc.identity().logout(&ctx, &ok.session).await;
            return login_page(&s, &r, &p, Some(&e.to_string()), true);
        }
    }
    signed_in(&s, &parts, &r, &p, ok).await
}

/// The request a sign-in form carries, or the page to answer instead.
async fn carried_request(
    s: &AppState,
    b: FormBody,
) -> Result<(Params, AuthRequest), Box<Response>> {
    let p = form(b).map_err(|e| Box::new(failure(s, AuthFailure::Page(e.description))))?;
    match s.oidc.check_request(&p).await {
        Ok(r) => Ok((p, r)),
        Err(f) => Err(Box::new(failure(s, f))),
    }
}

/// What a refused sign-in tells the person; internal failures are not spelled out.
fn sign_in_refusal(e: &cf_platform::PlatformError) -> String {
    match e {
        cf_platform::PlatformError::Unauthenticated(m)
        | cf_platform::PlatformError::RateLimited(m)
        | cf_platform::PlatformError::InvalidInput(m) => m.clone(),
        _ => "Sign-in is unavailable right now; try again.".into(),
    }
}

/// `POST /oidc/passkey`: begin a passkey sign-in for the authorization request the form carries.
pub async fn passkey_begin(State(s): State<AppState>, b: FormBody) -> Response {
    let (p, r) = match carried_request(&s, b).await {
        Ok(x) => x,
        Err(e) => return *e,
    };
    let user = p.get("username").map_or("", |u| u.trim());
    match s.oidc.identity().passkey_login_begin(user).await {
        Ok((ceremony, options)) => ceremony_page(
            "Sign in with a passkey",
            &if user.is_empty() {
                format!("to {} with a passkey you choose", r.client.name)
            } else {
                format!("to {} as {user}", r.client.name)
            },
            Mode::Get,
            &options,
            "/oidc/passkey/finish",
            &format!(
                "{}{}{}",
                request_hidden(&p),
                hidden("username", user),
                hidden("ceremony", &ceremony)
            ),
        ),
        Err(e) => login_page(&s, &r, &p, Some(&sign_in_refusal(&e)), false),
    }
}

/// `POST /oidc/passkey/finish`: the authenticator's answer, then a code as after a password
/// sign-in; the ID token's `amr` names the passkey.
pub async fn passkey_finish(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let (p, r) = match carried_request(&s, b).await {
        Ok(x) => x,
        Err(e) => return *e,
    };
    let ctx = context(&parts);
    let cred = match posted_credential(&p) {
        Ok(c) => c,
        Err(m) => return login_page(&s, &r, &p, Some(&m), false),
    };
    let ok = match s
        .oidc
        .identity()
        .passkey_login_finish(
            &ctx,
            p.get("ceremony").map_or("", String::as_str),
            &cred,
            user_agent(&parts.headers),
        )
        .await
    {
        Ok(ok) => ok,
        Err(e) => return login_page(&s, &r, &p, Some(&sign_in_refusal(&e)), false),
    };
    if ok.must_change {
        let _ = s.oidc.identity().logout(&ctx, &ok.session).await;
        return login_page(
            &s,
            &r,
            &p,
            Some("Your initial password must be changed first: sign in with it once."),
            false,
        );
    }
    signed_in(&s, &parts, &r, &p, ok).await
}

pub(crate) fn user_agent(h: &HeaderMap) -> &str {
    h.get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("browser")
}

/// After a sign-in (password or passkey): the application's authentication chain is checked,
/// a code issued, and the browser's single sign-on cookie replaced by the new session.
async fn signed_in(
    s: &AppState,
    parts: &axum::http::request::Parts,
    r: &AuthRequest,
    p: &Params,
    ok: cf_platform::identity::LoginOk,
) -> Response {
    let ctx = context(parts);
    let subject = match s.oidc.identity().sso_session(&ok.session).await {
        Ok(Some((_, u))) => u,
        Ok(None) => return login_page(s, r, p, Some("The session ended; sign in again."), false),
        Err(e) => return failure(s, AuthFailure::Page(e.to_string())),
    };
    if let Err(why) = s.oidc.chain_possible(r, &subject) {
        let _ = s.oidc.identity().logout(&ctx, &ok.session).await;
        return failure(
            s,
            AuthFailure::Redirect {
                redirect_uri: r.redirect_uri.clone(),
                error: "access_denied",
                description: why,
                state: r.state.clone(),
            },
        );
    }
    let mut resp = match s.oidc.issue_code(&ctx, r, &ok.info).await {
        Ok(to) => redirect(&to),
        Err(e) => return failure(s, AuthFailure::Page(e.to_string())),
    };
    // A browser that signs in again replaces its session: the old one ends (its grants stay
    // until they expire or the user logs out), so re-logins do not pile up against the cap.
    if let Some(old) = sso_cookie(&parts.headers).filter(|o| *o != ok.session) {
        let _ = s.oidc.identity().logout(&ctx, &old).await;
    }
    let secure = s.oidc.issuer().starts_with("https://");
    set_cookie(&mut resp, &ok.session, secure, false);
    resp
}

/// `POST /oidc/token`
pub async fn token(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let ctx = context(&parts);
    let p = match form(b) {
        Ok(p) => p,
        Err(e) => return oauth_error(e, false),
    };
    let (a, basic) = client_auth(&parts.headers, &p);
    match s.oidc.token(&ctx, &a, &p).await {
        Ok(t) => no_store(Json(t).into_response()),
        Err(e) => oauth_error(e, basic),
    }
}

fn bearer_error(status: StatusCode, error: &str) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"chengfang\", error=\"{error}\""))
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    no_store(r)
}

async fn userinfo(s: &AppState, token: Option<String>) -> Response {
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_request");
    };
    match s.oidc.userinfo(&t).await {
        Ok(Some(v)) => no_store(Json(v).into_response()),
        Ok(None) => bearer_error(StatusCode::UNAUTHORIZED, "invalid_token"),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// `GET /oidc/userinfo`
pub async fn userinfo_get(State(s): State<AppState>, h: HeaderMap) -> Response {
    userinfo(&s, bearer(&h)).await
}

/// `POST /oidc/userinfo` (bearer in the header or `access_token` in the form body).
pub async fn userinfo_post(State(s): State<AppState>, h: HeaderMap, b: FormBody) -> Response {
    let from_body = b
        .ok()
        .and_then(|axum::Form(p)| p.get("access_token").cloned());
    userinfo(&s, bearer(&h).or(from_body)).await
}

/// `POST /oidc/introspect` (RFC 7662)
pub async fn introspect(State(s): State<AppState>, h: HeaderMap, b: FormBody) -> Response {
    let p = match form(b) {
        Ok(p) => p,
        Err(e) => return oauth_error(e, false),
    };
    let (a, basic) = client_auth(&h, &p);
    let Some(t) = p.get("token") else {
        return oauth_error(
            OAuthError {
                error: "invalid_request",
                description: "token is missing".into(),
                status: 400,
            },
            basic,
        );
    };
    match s.oidc.introspect(&a, t).await {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => oauth_error(e, basic),
    }
}

/// `POST /oidc/revoke` (RFC 7009)
pub async fn revoke(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    let ctx = context(&parts);
    let p = match form(b) {
        Ok(p) => p,
        Err(e) => return oauth_error(e, false),
    };
    let (a, basic) = client_auth(&parts.headers, &p);
    let Some(t) = p.get("token") else {
        return oauth_error(
            OAuthError {
                error: "invalid_request",
                description: "token is missing".into(),
                status: 400,
            },
            basic,
        );
    };
    match s.oidc.revoke(&ctx, &a, t).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => oauth_error(e, basic),
    }
}

/// `GET /oidc/logout`
pub async fn logout_get(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = q.map(|Query(p)| p).unwrap_or_default();
    logout(&s, &parts, p).await
}

/// `POST /oidc/logout`
pub async fn logout_post(
    State(s): State<AppState>,
    parts: axum::http::request::Parts,
    b: FormBody,
) -> Response {
    match form(b) {
        Ok(p) => logout(&s, &parts, p).await,
        Err(e) => page(
            StatusCode::BAD_REQUEST,
            "Sign out",
            &format!("<p class=\"err\">{}</p>", esc(&e.description)),
        ),
    }
}

/// RP-initiated logout 1.0: with a valid `id_token_hint` the session ends at once; without one
/// the user confirms first (a bare link must not sign people out). A bad hint or an unregistered
/// `post_logout_redirect_uri` is shown as an error and never followed.
async fn logout(s: &AppState, parts: &axum::http::request::Parts, p: Params) -> Response {
    let ctx: RequestContext = context(parts);
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let target = match s
        .oidc
        .logout_target(
            get("id_token_hint"),
            get("client_id"),
            get("post_logout_redirect_uri"),
            get("state"),
        )
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign out",
                &format!("<p class=\"err\">{}</p>", esc(&e.to_string())),
            );
        }
    };
    let confirmed = get("id_token_hint").is_some() || get("confirm") == Some("yes");
    if !confirmed {
        let hidden: String = ["client_id", "post_logout_redirect_uri", "state"]
            .iter()
            .filter_map(|k| get(k).map(|v| (k, v)))
            .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)))
            .collect();
        return page(
            StatusCode::OK,
            "Sign out",
            &format!(
                "<p>Sign out of every city application?</p><form method=\"post\" action=\"/oidc/logout\">{hidden}<input type=\"hidden\" name=\"confirm\" value=\"yes\"><button type=\"submit\">Sign out</button></form>"
            ),
        );
    }
    if let Some(c) = sso_cookie(&parts.headers)
        && let Err(e) = s.oidc.logout(&ctx, &c).await
    {
        return ApiError::from(e).into_response();
    }
    let secure = s.oidc.issuer().starts_with("https://");
    let mut r = match target {
        Some(to) => redirect(&to),
        None => page(
            StatusCode::OK,
            "Signed out",
            "<p>You are signed out of every city application.</p>",
        ),
    };
    set_cookie(&mut r, "", secure, true);
    r
}

// ---- administration -------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/v1/oidc/clients", tag = "identity", responses((status = 201, description = "The relying party and, if confidential, its secret (shown once)")))]
pub async fn register_client(
    State(s): State<AppState>,
    caller: Caller,
    b: Result<Json<cf_platform::oidc::NewClient>, axum::extract::rejection::JsonRejection>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let c = b
        .map(|Json(v)| v)
        .map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let (info, secret, r) = s.oidc.register_client(&auth, &caller.ctx, c).await?;
    Ok(Ack::created(
        r,
        serde_json::json!({"client": info, "client_secret": secret}),
    ))
}

#[utoipa::path(get, path = "/api/v1/oidc/clients", tag = "identity", responses((status = 200, description = "Relying parties (no secrets)")))]
pub async fn clients(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_platform::oidc::ClientInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    Ok(Json(s.oidc.clients(&auth).await?))
}

#[utoipa::path(delete, path = "/api/v1/oidc/clients/{id}", tag = "identity", responses((status = 200, description = "Removed; its grants revoked")))]
pub async fn remove_client(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let r = s.oidc.remove_client(&auth, &caller.ctx, &id).await?;
    Ok(Ack::ok(r, serde_json::json!({"removed": id})))
}

#[utoipa::path(post, path = "/api/v1/oidc/keys/rotate", tag = "identity", responses((status = 200, description = "New signing keys; old ones stay published for a day")))]
pub async fn rotate_keys(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Ack<serde_json::Value>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageUsers).await?;
    let (kids, r) = s.oidc.rotate_keys(&auth, &caller.ctx).await?;
    Ok(Ack::ok(r, serde_json::json!({"new_kids": kids})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_basic_credentials() {
        assert_eq!(pct_decode("a%3Ab+c%25"), "a:b c%");
        assert_eq!(pct_decode("bad%zz"), "bad%zz");
        assert_eq!(pct_decode("end%4"), "end%4");
        assert_eq!(pct_decode("%é1"), "%é1");
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
