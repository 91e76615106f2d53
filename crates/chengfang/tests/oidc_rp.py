"""An independent relying party (authlib + joserfc) driving Chengfang's OpenID Connect provider.

Run by `crates/chengfang/tests/sso.rs` against a live server. Each check prints one line
`PASS <oidf-module or check name>`; the first failure raises and the script exits non-zero.
The OIDF names come from the OpenID Foundation OP test plans in
shared/datasets/vectors/oidc/oidf-op-test-plans.json (the Rust test compares the two lists).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import time
import urllib.parse

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet

# requests lets these variables override a session's own `verify`; the server's CA must win.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)

cfg = json.load(open(sys.argv[1]))
ISS = cfg["issuer"]
CA = cfg["ca"]
CONF = cfg["confidential"]
PUB = cfg["public"]
HIGH = cfg["high"]
SVC = cfg["service"]
USER = cfg["user"]
MFA = cfg["mfa_user"]
ADMIN = cfg["admin_token"]


def ok(name):
    print("PASS", name, flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def get_json(url, **kw):
    r = requests.get(url, verify=CA, **kw)
    check(r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:300]}")
    return r.json()


# ---- discovery (oidcc-discovery-endpoint-verification) ------------------------------------------
meta = get_json(ISS + "/.well-known/openid-configuration")
check(meta["issuer"] == ISS, f"issuer {meta['issuer']} != {ISS}")
for k in ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
          "end_session_endpoint", "introspection_endpoint", "revocation_endpoint"]:
    check(meta[k].startswith(ISS + "/"), f"{k} not under the issuer: {meta[k]}")
check("RS256" in meta["id_token_signing_alg_values_supported"], "RS256 must be supported")
check(meta["code_challenge_methods_supported"] == ["S256"], "S256 only")
check("code" in meta["response_types_supported"], "code flow")
check("public" in meta["subject_types_supported"], "subject types")
ok("oidcc-discovery-endpoint-verification")
ok("oidcc-rp-initiated-logout-discovery-endpoint-verification")


def jwks():
    return KeySet.import_key_set(get_json(meta["jwks_uri"]))


def browser():
    s = requests.Session()
    s.verify = CA
    return s


def hidden_fields(html):
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def unescape(v):
    return (v.replace("&quot;", '"').replace("&#39;", "'").replace("&lt;", "<")
            .replace("&gt;", ">").replace("&amp;", "&"))


def totp(uri, at=None):
    q = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    secret = q["secret"][0]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((at or time.time()) // 30)
    h = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def authorize(b, client, params, user=None, otp=None, method="GET", expect_login=None):
    """Drive the browser through the authorization endpoint; returns the redirect's query."""
    if method == "GET":
        r = b.get(meta["authorization_endpoint"], params=params, allow_redirects=False)
    else:
        r = b.post(meta["authorization_endpoint"], data=params, allow_redirects=False)
    if r.status_code == 200 and "<form" in r.text:
        check(expect_login is not False, "a login page was shown where the session should do")
        check(user is not None, f"login page shown unexpectedly: {r.text[:200]}")
        fields = {k: unescape(v) for k, v in hidden_fields(r.text).items()}
        fields.update({"username": user["username"], "password": user["password"]})
        if otp:
            fields["otp"] = otp
        r = b.post(ISS + "/oidc/login", data=fields, allow_redirects=False)
    else:
        check(expect_login is not True, f"expected a login page, got {r.status_code}")
    check(r.status_code == 303, f"expected a redirect, got {r.status_code}: {r.text[:300]}")
    loc = r.headers["location"]
    return loc, dict(urllib.parse.parse_qsl(urllib.parse.urlparse(loc).query))


def session_for(client, scope="openid profile", secret=True, method="client_secret_basic"):
    return OAuth2Session(
        client["id"], client.get("secret") if secret else None, scope=scope,
        redirect_uri=client["redirect_uri"], code_challenge_method="S256",
        token_endpoint_auth_method=method if secret else "none",
    )


def code_flow(b, client, user, scope="openid profile", extra=None, otp=None, secret=True,
              method="client_secret_basic", expect_login=None, nonce=True):
    rp = session_for(client, scope, secret, method)
    rp.verify = CA
    verifier = generate_token(48)
    n = generate_token(20) if nonce else None
    kw = {"code_verifier": verifier}
    if n:
        kw["nonce"] = n
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], **kw)
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
    params.update(extra or {})
    loc, q = authorize(b, client, params, user, otp, expect_login=expect_login)
    check(q.get("state") == state, f"state not echoed: {q}")
    check(q.get("iss") == ISS, f"iss missing from the response (RFC 9207): {q}")
    check("code" in q, f"no code: {q}")
    tok = rp.fetch_token(meta["token_endpoint"], authorization_response=loc,
                         code_verifier=verifier)
    claims = validate_id_token(tok["id_token"], client["id"], n, tok["access_token"])
    return rp, tok, claims, q["code"], verifier


def validate_id_token(idt, aud, nonce, access_token=None, keys=None):
    t = jwt.decode(idt, keys or jwks(), algorithms=["RS256", "ES256"])
    c = t.claims
    reg = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISS}, aud={"essential": True, "value": aud},
        sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
    )
    reg.validate(c)
    if nonce is not None:
        check(c.get("nonce") == nonce, "nonce mismatch")
    else:
        check("nonce" not in c, "unexpected nonce")
    check(isinstance(c.get("auth_time"), int), "auth_time")
    if access_token:
        d = hashlib.sha256(access_token.encode()).digest()[:16]
        check(c["at_hash"] == base64.urlsafe_b64encode(d).rstrip(b"=").decode(), "at_hash")
    return c | {"_alg": t.header["alg"], "_kid": t.header["kid"]}


def userinfo(at, how="get"):
    if how == "get":
        return requests.get(meta["userinfo_endpoint"], verify=CA,
                            headers={"Authorization": f"Bearer {at}"})
    if how == "post-header":
        return requests.post(meta["userinfo_endpoint"], verify=CA,
                             headers={"Authorization": f"Bearer {at}"})
    return requests.post(meta["userinfo_endpoint"], verify=CA, data={"access_token": at})


def token_post(data, auth=None):
    return requests.post(meta["token_endpoint"], verify=CA, data=data, auth=auth)


def introspect(token):
    r = requests.post(meta["introspection_endpoint"], verify=CA, data={"token": token},
                      auth=(CONF["id"], CONF["secret"]))
    check(r.status_code == 200, f"introspection: {r.status_code} {r.text}")
    return r.json()


# ---- the happy flow (oidcc-server) ----------------------------------------------------------------
b = browser()
rp, tok, c, code, verifier = code_flow(b, CONF, USER, expect_login=True)
check(c["_alg"] == "RS256", "the default ID token algorithm is RS256")
check(c["sub"] == USER["username"] and c["name"], f"claims: {c}")
check(c["acr"] == "urn:chengfang:loa:1" and c["amr"] == ["pwd"], f"acr/amr: {c}")
check(tok["token_type"].lower() == "bearer" and tok.get("refresh_token"), "token response")
ok("oidcc-server")
ok("oidcc-idtoken-signature")
ok("oidcc-scope-profile")
ok("oidcc-ensure-request-with-valid-pkce-succeeds")

for how, name in [("get", "oidcc-userinfo-get"), ("post-header", "oidcc-userinfo-post-header"),
                  ("post-body", "oidcc-userinfo-post-body")]:
    r = userinfo(tok["access_token"], how)
    check(r.status_code == 200 and r.json()["sub"] == c["sub"], f"{how}: {r.status_code} {r.text}")
    ok(name)

# The same code again: refused, and what it bought is revoked (RFC 6749 §4.1.2).
r = token_post({"grant_type": "authorization_code", "code": code, "redirect_uri": CONF["redirect_uri"],
                "code_verifier": verifier}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"code reuse: {r.text}")
check(userinfo(tok["access_token"]).status_code == 401, "tokens of a replayed code stay valid")
ok("code-reuse-revokes-tokens")

# ---- single sign-on and prompt/max_age -----------------------------------------------------------
rp, tok, c2, _, _ = code_flow(b, CONF, USER, extra={"prompt": "none"}, expect_login=False)
check(c2["auth_time"] == c["auth_time"], "SSO keeps the original auth_time")
ok("oidcc-prompt-none-logged-in")
code_flow(b, CONF, USER, extra={"max_age": "10000"}, expect_login=False)
ok("oidcc-max-age-10000")
_, _, c3, _, _ = code_flow(b, CONF, USER, extra={"prompt": "login"}, expect_login=True)
check(c3["auth_time"] >= c["auth_time"], "prompt=login re-authenticates")
ok("oidcc-prompt-login")
time.sleep(2)
_, _, c4, _, _ = code_flow(b, CONF, USER, extra={"max_age": "1"}, expect_login=True)
check(c4["auth_time"] > c3["auth_time"], "max_age=1 forces a new login")
ok("oidcc-max-age-1")
code_flow(b, CONF, USER, extra={"prompt": "none", "id_token_hint": "x"}, expect_login=False)
ok("oidcc-id-token-hint")

fresh = browser()
rp = session_for(CONF)
url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48),
                                         prompt="none")
r = fresh.get(url, allow_redirects=False)
q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers.get("location", "")).query))
check(r.status_code == 303 and q.get("error") == "login_required" and q.get("state") == state,
      f"prompt=none without a session: {r.status_code} {q}")
ok("oidcc-prompt-none-not-logged-in")

# Parameters that must be tolerated.
for extra, name in [({"display": "page"}, "oidcc-display-page"), ({"display": "popup"}, "oidcc-display-popup"),
                    ({"ui_locales": "zh-CN"}, "oidcc-ui-locales"), ({"claims_locales": "se"}, "oidcc-claims-locales"),
                    ({"login_hint": USER["username"]}, "oidcc-login-hint"),
                    ({"acr_values": "urn:chengfang:loa:1"}, "oidcc-ensure-request-with-acr-values-succeeds"),
                    ({"extra": "foobar"}, "oidcc-ensure-request-with-unknown-parameter-succeeds"),
                    ({"claims": json.dumps({"userinfo": {"name": {"essential": True}}})}, "oidcc-claims-essential")]:
    code_flow(b, CONF, USER, extra=extra, expect_login=False)
    ok(name)
code_flow(b, CONF, USER, nonce=False, expect_login=False)
ok("oidcc-ensure-request-without-nonce-succeeds-for-code-flow")
_, _, c5, _, _ = code_flow(b, CONF, USER, scope="profile openid", expect_login=False)
ok("oidcc-alternate-happy-flow")
for scope, name in [("openid email", "oidcc-scope-email"), ("openid address", "oidcc-scope-address"),
                    ("openid phone", "oidcc-scope-phone"),
                    ("openid profile email address phone", "oidcc-scope-all")]:
    rp, tok, _, _, _ = code_flow(b, CONF, USER, scope=scope, expect_login=False)
    check(userinfo(tok["access_token"]).status_code == 200, scope)
    ok(name)
code_flow(b, CONF, USER, method="client_secret_post", expect_login=False)
ok("oidcc-server-client-secret-post")

# POSTed authorization request.
rp = session_for(CONF)
v = generate_token(48)
url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=v)
params = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query))
loc, q = authorize(b, CONF, params, method="POST", expect_login=False)
check("code" in q, "POST authorization")
ok("oidcc-ensure-post-request-succeeds")

# ---- refused requests ---------------------------------------------------------------------------
def raw_authorize(params, browser_=None):
    r = (browser_ or b).get(meta["authorization_endpoint"], params=params, allow_redirects=False)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers.get("location", "")).query))
    return r, q


base = {"client_id": CONF["id"], "redirect_uri": CONF["redirect_uri"], "response_type": "code",
        "scope": "openid", "state": "st-1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"}
r, q = raw_authorize({k: v for k, v in base.items() if k != "response_type"})
check(r.status_code == 303 and q.get("error") == "invalid_request" and q.get("state") == "st-1", f"{q}")
ok("oidcc-response-type-missing")
r, q = raw_authorize(base | {"redirect_uri": "https://attacker.example/cb"})
check(r.status_code == 400 and "location" not in r.headers, "unregistered redirect_uri must not redirect")
ok("oidcc-ensure-registered-redirect-uri")
r, q = raw_authorize(base | {"request": "eyJhbGciOiJub25lIn0.e30."})
check(q.get("error") == "request_not_supported", f"{q}")
ok("oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported")
ok("oidcc-ensure-request-object-with-redirect-uri")
r, q = raw_authorize(base | {"request_uri": "https://rp.example/req"})
check(q.get("error") == "request_uri_not_supported", f"{q}")
ok("oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported")
r, q = raw_authorize({k: v for k, v in base.items() if not k.startswith("code_challenge")})
check(q.get("error") == "invalid_request" and "PKCE" in q.get("error_description", ""), f"{q}")
r, q = raw_authorize(base | {"code_challenge_method": "plain"})
check(q.get("error") == "invalid_request", f"plain PKCE: {q}")
ok("pkce-required-s256-only")

# A wrong verifier is refused.
rp = session_for(CONF)
v = generate_token(48)
url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=v)
loc, q = authorize(b, CONF, dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query)), expect_login=False)
r = token_post({"grant_type": "authorization_code", "code": q["code"], "redirect_uri": CONF["redirect_uri"],
                "code_verifier": generate_token(48)}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"wrong verifier: {r.text}")
r = token_post({"grant_type": "authorization_code", "code": q["code"], "redirect_uri": CONF["redirect_uri"],
                "code_verifier": v}, auth=(CONF["id"], "wrong-secret"))
check(r.status_code == 401 and r.json()["error"] == "invalid_client", f"wrong secret: {r.text}")
ok("pkce-wrong-verifier-and-bad-client-refused")

# ---- refresh tokens: rotation and reuse detection (oidcc-refresh-token) ----------------------------
rp, tok, c, _, _ = code_flow(b, CONF, USER, expect_login=False)
rt1 = tok["refresh_token"]
new = rp.refresh_token(meta["token_endpoint"], refresh_token=rt1)
check(new["refresh_token"] != rt1 and new["access_token"] != tok["access_token"], "rotation")
rc = validate_id_token(new["id_token"], CONF["id"], None, new["access_token"])
check(rc["sub"] == c["sub"] and rc["auth_time"] == c["auth_time"], "refreshed ID token keeps sub/auth_time")
check(userinfo(new["access_token"]).status_code == 200, "refreshed access token works")
r = token_post({"grant_type": "refresh_token", "refresh_token": rt1}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400 and r.json()["error"] == "invalid_grant", f"reuse: {r.text}")
r = token_post({"grant_type": "refresh_token", "refresh_token": new["refresh_token"]},
               auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400, "after reuse the whole family is revoked")
check(userinfo(new["access_token"]).status_code == 401, "family's access token revoked too")
r = token_post({"grant_type": "refresh_token", "refresh_token": "cfr_bogus"}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400 and r.json()["error"] == "invalid_grant", "bogus refresh token")
ok("oidcc-refresh-token")
ok("refresh-reuse-revokes-family")

# ---- public client (PKCE only) with ES256 ---------------------------------------------------------
rp, tok, c, _, _ = code_flow(b, PUB, USER, secret=False, expect_login=False)
check(c["_alg"] == "ES256", f"public client asked for ES256: {c['_alg']}")
ok("public-client-pkce-es256")

# ---- client credentials, introspection, revocation -------------------------------------------------
r = token_post({"grant_type": "client_credentials", "scope": "events.read"}, auth=(SVC["id"], SVC["secret"]))
check(r.status_code == 200, f"client credentials: {r.text}")
st = r.json()
check("id_token" not in st and "refresh_token" not in st, "no user tokens for a service")
i = introspect(st["access_token"])
check(i["active"] and i["sub"] == SVC["id"] and i["scope"] == "events.read", f"introspection: {i}")
r = token_post({"grant_type": "client_credentials", "scope": "admin"}, auth=(SVC["id"], SVC["secret"]))
check(r.status_code == 400 and r.json()["error"] == "invalid_scope", f"scope escalation: {r.text}")
r = token_post({"grant_type": "client_credentials"}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400 and r.json()["error"] == "unauthorized_client", f"grant not allowed: {r.text}")
ok("client-credentials")

rp, tok, c, _, _ = code_flow(b, CONF, USER, expect_login=False)
i = introspect(tok["access_token"])
check(i["active"] and i["sub"] == USER["username"] and i["client_id"] == CONF["id"], f"{i}")
check(introspect(tok["refresh_token"])["active"], "refresh token introspects active")
check(not introspect("cfa_unknown")["active"], "unknown token inactive")
r = requests.post(meta["revocation_endpoint"], verify=CA, data={"token": tok["refresh_token"]},
                  auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 200, f"revocation: {r.status_code}")
check(not introspect(tok["refresh_token"])["active"], "revoked refresh token inactive")
check(not introspect(tok["access_token"])["active"], "revoking the refresh token revokes the grant")
ok("introspection-and-revocation")

# ---- key rotation: old tokens verify, new ones use new keys ---------------------------------------
old_keys = jwks()
rp, tok, before, _, _ = code_flow(b, CONF, USER, expect_login=False)
r = requests.post(ISS + "/api/v1/oidc/keys/rotate", verify=CA, headers={"Authorization": f"Bearer {ADMIN}"})
check(r.status_code == 200, f"rotate: {r.status_code} {r.text}")
rotated = get_json(meta["jwks_uri"])
check(len(rotated["keys"]) == 4, f"old and new keys published: {len(rotated['keys'])}")
validate_id_token(tok["id_token"], CONF["id"], before.get("nonce"), tok["access_token"])
rp, tok, after, _, _ = code_flow(b, CONF, USER, expect_login=False)
check(after["_kid"] != before["_kid"], "new tokens are signed with the new key")
ok("jwks-key-rotation")

# ---- authentication chain per risk grade: high needs a second factor --------------------------------
nb = browser()
rp = session_for(HIGH)
url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48))
loc, q = authorize(nb, HIGH, dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query)), USER)
check(q.get("error") == "access_denied" and "second factor" in q.get("error_description", ""), f"{q}")
mb = browser()
rp, tok, c, _, _ = code_flow(mb, HIGH, MFA, otp=totp(MFA["totp_uri"]), expect_login=True)
check(c["acr"] == "urn:chengfang:loa:2" and set(c["amr"]) == {"pwd", "otp", "mfa"}, f"{c}")
ok("risk-grade-high-requires-mfa-acr-amr")
# A password-only session does not satisfy the high grade: the SSO session of `b` is not reused.
rp = session_for(HIGH)
url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48), prompt="none")
r = b.get(url, allow_redirects=False)
q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers.get("location", "")).query))
check(q.get("error") == "login_required", f"password session reused for a high-grade app: {q}")
ok("risk-grade-session-step-up")

# ---- RP-initiated logout -----------------------------------------------------------------------------
lb = browser()
rp, tok, c, _, _ = code_flow(lb, CONF, USER, expect_login=True)
idt = tok["id_token"]
r = lb.get(meta["end_session_endpoint"], allow_redirects=False,
           params={"id_token_hint": idt, "post_logout_redirect_uri": "https://attacker.example/", "state": "s"})
check(r.status_code == 400 and "location" not in r.headers, "unregistered post_logout_redirect_uri")
ok("oidcc-rp-initiated-logout-bad-post-logout-redirect-uri")
parts = idt.split(".")
forged = parts[0] + "." + base64.urlsafe_b64encode(b'{"sub":"someone-else"}').rstrip(b"=").decode() + "." + parts[2]
r = lb.get(meta["end_session_endpoint"], allow_redirects=False, params={"id_token_hint": forged})
check(r.status_code == 400, "a modified id_token_hint is refused")
ok("oidcc-rp-initiated-logout-modified-id-token-hint")
r = lb.get(meta["end_session_endpoint"], allow_redirects=False, params={"id_token_hint": "not-a-token"})
check(r.status_code == 400, "a bad id_token_hint is refused")
ok("oidcc-rp-initiated-logout-bad-id-token-hint")
r = lb.get(meta["end_session_endpoint"], allow_redirects=False)
check(r.status_code == 200 and 'name="confirm"' in r.text, "no params: the user confirms")
code_flow(lb, CONF, USER, extra={"prompt": "none"}, expect_login=False)
ok("oidcc-rp-initiated-logout-no-params")
ok("oidcc-rp-initiated-logout-no-id-token-hint")
r = lb.get(meta["end_session_endpoint"], allow_redirects=False,
           params={"id_token_hint": idt, "post_logout_redirect_uri": CONF["post_logout"], "state": "bye"})
check(r.status_code == 303, f"logout: {r.status_code} {r.text[:200]}")
check(r.headers["location"] == CONF["post_logout"] + "?state=bye", r.headers["location"])
ok("oidcc-rp-initiated-logout")
rp = session_for(CONF)
url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48), prompt="none")
r = lb.get(url, allow_redirects=False)
q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers.get("location", "")).query))
check(q.get("error") == "login_required", f"session still alive after logout: {q}")
r = token_post({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]},
               auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400, "the session's refresh tokens end with it")
ok("logout-ends-session-and-its-grants")
lb2 = browser()
_, t2, _, _, _ = code_flow(lb2, CONF, USER, expect_login=True)
r = lb2.get(meta["end_session_endpoint"], allow_redirects=False, params={"id_token_hint": t2["id_token"]})
check(r.status_code == 200 and "signed out" in r.text, "no post_logout_redirect_uri: a signed-out page")
ok("oidcc-rp-initiated-logout-no-post-logout-redirect-uri")
lb3 = browser()
_, t3, _, _, _ = code_flow(lb3, CONF, USER, expect_login=True)
r = lb3.get(meta["end_session_endpoint"], allow_redirects=False,
            params={"id_token_hint": t3["id_token"], "post_logout_redirect_uri": CONF["post_logout"]})
check(r.status_code == 303 and r.headers["location"] == CONF["post_logout"], "no state")
ok("oidcc-rp-initiated-logout-no-state")
r = lb3.get(meta["end_session_endpoint"], allow_redirects=False, params={"state": "only"})
check(r.status_code == 200, "only state: confirmation page")
ok("oidcc-rp-initiated-logout-only-state")
lb4 = browser()
_, t4, _, _, _ = code_flow(lb4, CONF, USER, expect_login=True)
r = lb4.get(meta["end_session_endpoint"], allow_redirects=False,
            params={"id_token_hint": t4["id_token"], "post_logout_redirect_uri": CONF["post_logout_q"], "state": "z"})
check(r.status_code == 303 and r.headers["location"] == CONF["post_logout_q"] + "&state=z", r.headers.get("location"))
ok("oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri")

# ---- real-name verification levels an application requires (IDM-4) -----------------------------------
RN = cfg["realname"]
rb = browser()
rp = session_for(RN)
url, _ = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(48))
loc, q = authorize(rb, RN, dict(urllib.parse.parse_qsl(urllib.parse.urlparse(url).query)), USER)
check(q.get("error") == "access_denied" and "real-name" in q.get("error_description", ""), f"{q}")
r = requests.post(ISS + f"/api/v1/users/{USER['username']}/real-name", verify=CA,
                  headers={"Authorization": f"Bearer {ADMIN}"}, json={"level": 2, "method": "ctid"})
check(r.status_code == 200, f"real-name: {r.status_code} {r.text}")
rp, tok, c, _, _ = code_flow(browser(), RN, USER, expect_login=True)
check(c["real_name_level"] == 2, f"{c}")
check(userinfo(tok["access_token"]).json()["real_name_level"] == 2, "userinfo real_name_level")
ok("real-name-level-required-by-application")

# ---- a leaver: disabled account, tokens dead within a second (IDM-3) ------------------------------------
kb = browser()
rp, tok, c, _, _ = code_flow(kb, CONF, MFA, otp=totp(MFA["totp_uri"], time.time() + 30), expect_login=True)
check(introspect(tok["access_token"])["active"], "active before")
t0 = time.monotonic()
r = requests.post(ISS + f"/api/v1/users/{MFA['username']}/disable", verify=CA,
                  headers={"Authorization": f"Bearer {ADMIN}"})
check(r.status_code == 200, f"disable: {r.status_code} {r.text}")
check(not introspect(tok["access_token"])["active"], "disabled user's token still active")
check(userinfo(tok["access_token"]).status_code == 401, "disabled user's userinfo")
r = token_post({"grant_type": "refresh_token", "refresh_token": tok["refresh_token"]}, auth=(CONF["id"], CONF["secret"]))
check(r.status_code == 400, "disabled user's refresh")
elapsed = time.monotonic() - t0
check(elapsed < 1.0, f"leaver's tokens took {elapsed:.2f}s to die")
print(f"leaver tokens dead after {elapsed * 1000:.0f} ms", flush=True)
ok("leaver-tokens-stop-within-one-second")
print("ALL CHECKS PASSED", flush=True)
