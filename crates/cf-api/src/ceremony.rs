//! The browser half of a passkey ceremony (IDM-5): a page that hands the server's options to
//! `navigator.credentials.create()` or `.get()` and posts the authenticator's answer back as a form.
//!
//! The pages' CSP forbids every script but this one, allowed by a nonce fresh on each page; the
//! options travel in an HTML-escaped data attribute, so nothing in them can become markup.

use axum::http::StatusCode;
use axum::response::Response;
use cf_platform::identity::WebauthnResponse;

use crate::oidc::{Params, esc, page_with_script};

/// What the page asks the authenticator for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Register a new passkey.
    Create,
    /// Sign in with one.
    Get,
}

/// Turns the options' base64url fields into bytes, calls the authenticator, and posts its
/// answer in WebAuthn's JSON form (the shape `PublicKeyCredential.toJSON()` gives).
const SCRIPT: &str = r#"(function () {
  var f = document.getElementById('cf-ceremony');
  var go = document.getElementById('cf-go');
  var status = document.getElementById('cf-status');
  function dec(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); });
  }
  function enc(buf) {
    var s = '';
    new Uint8Array(buf).forEach(function (x) { s += String.fromCharCode(x); });
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  if (!window.PublicKeyCredential || !navigator.credentials) {
    status.textContent = 'This browser cannot use passkeys.';
    go.disabled = true;
    return;
  }
  var mode = f.dataset.mode;
  var pk = JSON.parse(f.dataset.options);
  pk.challenge = dec(pk.challenge);
  if (pk.user) pk.user.id = dec(pk.user.id);
  (pk.excludeCredentials || []).forEach(function (c) { c.id = dec(c.id); });
  (pk.allowCredentials || []).forEach(function (c) { c.id = dec(c.id); });
  go.addEventListener('click', async function (ev) {
    ev.preventDefault();
    go.disabled = true;
    status.textContent = 'Waiting for your passkey…';
    try {
      var c = mode === 'create'
        ? await navigator.credentials.create({ publicKey: pk })
        : await navigator.credentials.get({ publicKey: pk });
      var r = c.response;
      var out = { id: c.id, rawId: enc(c.rawId), type: c.type, response: { clientDataJSON: enc(r.clientDataJSON) } };
      if (mode === 'create') {
        out.response.attestationObject = enc(r.attestationObject);
        if (r.getTransports) out.response.transports = r.getTransports();
      } else {
        out.response.authenticatorData = enc(r.authenticatorData);
        out.response.signature = enc(r.signature);
        if (r.userHandle) out.response.userHandle = enc(r.userHandle);
      }
      f.elements.credential.value = JSON.stringify(out);
      f.submit();
    } catch (e) {
      status.textContent = 'The passkey did not answer (' + e.name + '). Try again, or go back and use your password.';
      go.disabled = false;
    }
  });
})();"#;

/// The page that runs one ceremony and posts its answer, with `hidden` (already escaped inputs)
/// carried along, to `action`.
pub(crate) fn ceremony_page(
    title: &str,
    intro: &str,
    mode: Mode,
    options: &serde_json::Value,
    action: &str,
    hidden: &str,
) -> Response {
    // A nonce the page could guess would let injected markup run: without randomness, no page.
    let Ok(nonce) = cf_crypto::random_token(&cf_crypto::OsRng, 18) else {
        return crate::oidc::page(
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            "<p class=\"err\">Passkeys are unavailable right now; try again or use your password.</p>",
        );
    };
    page_with_script(
        StatusCode::OK,
        title,
        &format!(
            "<p>{intro}</p><form id=\"cf-ceremony\" method=\"post\" action=\"{action}\" data-mode=\"{mode}\" data-options=\"{opts}\">{hidden}<input type=\"hidden\" name=\"credential\" value=\"\"><button id=\"cf-go\" type=\"button\">{label}</button></form><p id=\"cf-status\" role=\"status\"></p><script nonce=\"{nonce}\">{SCRIPT}</script>",
            intro = esc(intro),
            action = esc(action),
            mode = if mode == Mode::Create {
                "create"
            } else {
                "get"
            },
            opts = esc(&options.to_string()),
            label = if mode == Mode::Create {
                "Create the passkey"
            } else {
                "Use my passkey"
            },
        ),
        &nonce,
    )
}

/// The authenticator's answer the ceremony page posted, or what is wrong with it.
pub(crate) fn posted_credential(p: &Params) -> Result<WebauthnResponse, String> {
    let raw = p
        .get("credential")
        .filter(|c| !c.is_empty())
        .ok_or("The passkey gave no answer; try again.")?;
    serde_json::from_str(raw).map_err(|e| format!("The passkey's answer is not readable: {e}"))
}

/// A hidden input, escaped.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_options_cannot_become_markup_and_only_the_nonced_script_runs() {
        let opts = serde_json::json!({"challenge": "AA", "user": {"displayName": "\"><script>alert(1)</script>"}});
        let r = ceremony_page("T", "i", Mode::Get, &opts, "/x", &hidden("a", "\"b"));
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert_eq!(html.matches("<script").count(), 1);
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|x| x.split('\'').next())
            .unwrap();
        assert!(nonce.len() >= 20, "{csp}");
        assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(html.contains("value=\"&quot;b\""));
    }

    #[test]
    fn a_missing_or_unreadable_answer_is_explained() {
        let mut p = Params::new();
        assert!(posted_credential(&p).unwrap_err().contains("no answer"));
        p.insert("credential".into(), "{".into());
        assert!(posted_credential(&p).unwrap_err().contains("not readable"));
    }
}
