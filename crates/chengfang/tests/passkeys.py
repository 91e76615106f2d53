"""Passkeys end to end with an independent software authenticator (soft-webauthn, PyPI).

Reads a JSON config (base URL, CA file, a signed-in session, the username, the origin a browser
would show) and prints one line per check: `ok NAME` or `FAIL NAME: why`. Run by
tests/passkeys.rs in a virtual environment (soft-webauthn pins an older `cryptography`).
"""

import base64
import copy
import json
import os
import sys
from struct import pack

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.utils import sha256
from soft_webauthn import SoftWebauthnDevice


# requests lets these variables override a session's own `verify`; the server's CA must win.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)


def b64e(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class VerifyingDevice(SoftWebauthnDevice):
    """A soft authenticator that verifies its user (a PIN), as passkeys require: the UV flag."""

    def create(self, options, origin):
        out = super().create(options, origin)
        att = cbor.decode(out["response"]["attestationObject"])
        ad = bytearray(att["authData"])
        ad[32] |= 0x04
        att["authData"] = bytes(ad)
        out["response"]["attestationObject"] = cbor.encode(att)
        return out

    def get(self, options, origin):
        if self.rp_id != options["publicKey"]["rpId"]:
            raise ValueError("rpId mismatch")
        self.sign_count += 1
        client_data = json.dumps(
            {
                "type": "webauthn.get",
                "challenge": b64e(options["publicKey"]["challenge"]),
                "origin": origin,
            }
        ).encode()
        ad = sha256(self.rp_id.encode()) + b"\x05" + pack(">I", self.sign_count)
        sig = self.private_key.sign(ad + sha256(client_data), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64e(self.credential_id),
            "rawId": self.credential_id,
            "response": {
                "authenticatorData": ad,
                "clientDataJSON": client_data,
                "signature": sig,
                "userHandle": self.user_handle,
            },
            "type": "public-key",
        }


def creation(opts):
    """The server's JSON options in the shape soft-webauthn takes (bytes, not base64url)."""
    pk = copy.deepcopy(opts)
    pk["challenge"] = b64d(pk["challenge"])
    pk["user"]["id"] = b64d(pk["user"]["id"])
    return {"publicKey": pk}


def request(opts):
    pk = copy.deepcopy(opts)
    pk["challenge"] = b64d(pk["challenge"])
    return {"publicKey": pk}


def as_json(cred):
    r = {k: b64e(v) if isinstance(v, bytes) else v for k, v in cred["response"].items()}
    return {"id": b64e(cred["rawId"]), "type": cred["type"], "response": r}


def main():
    cfg = json.load(open(sys.argv[1]))
    base, origin, user = cfg["base"], cfg["origin"], cfg["username"]
    s = requests.Session()
    s.verify = cfg["ca"]
    auth = {"Authorization": "Bearer " + cfg["session"]}
    results = []

    def check(name, cond, why=""):
        results.append(("ok " + name) if cond else ("FAIL %s: %s" % (name, why)))

    # Registration needs user verification: a plain soft-webauthn device (UP only) is refused.
    r = s.post(base + "/api/v1/account/passkeys/begin", headers=auth).json()
    plain = SoftWebauthnDevice()
    att = plain.create(creation(r["publicKey"]), origin)
    x = s.post(
        base + "/api/v1/account/passkeys/finish",
        headers=auth,
        json={"ceremony": r["ceremony"], "name": "no pin", "credential": as_json(att)},
    )
    check("registration_without_user_verification_refused", x.status_code == 400 and "not verified" in x.text, x.text)

    # Register with a verifying authenticator.
    r = s.post(base + "/api/v1/account/passkeys/begin", headers=auth).json()
    opts = r["publicKey"]
    check("options_ask_for_user_verification", opts["authenticatorSelection"]["userVerification"] == "required", opts)
    check("options_name_the_relying_party", opts["rp"]["id"] == cfg["rp_id"], opts)
    dev = VerifyingDevice()
    att = dev.create(creation(opts), origin)
    body = {"ceremony": r["ceremony"], "name": "work laptop", "credential": as_json(att)}
    x = s.post(base + "/api/v1/account/passkeys/finish", headers=auth, json=body)
    check("registration_accepted", x.status_code == 201, x.text)
    x = s.post(base + "/api/v1/account/passkeys/finish", headers=auth, json=body)
    check("registration_ceremony_single_use", x.status_code == 400 and "ceremony" in x.text, x.text)
    # A registration made for another origin (a phishing site) is refused.
    r = s.post(base + "/api/v1/account/passkeys/begin", headers=auth).json()
    other = VerifyingDevice()
    att = other.create(creation(r["publicKey"]), "https://city-sso.example.net")
    x = s.post(
        base + "/api/v1/account/passkeys/finish",
        headers=auth,
        json={"ceremony": r["ceremony"], "name": "phished", "credential": as_json(att)},
    )
    check("registration_from_another_origin_refused", x.status_code == 400 and "origin" in x.text, x.text)
    keys = s.get(base + "/api/v1/account/passkeys", headers=auth).json()
    check("one_passkey_listed", len(keys) == 1 and keys[0]["name"] == "work laptop", keys)

    def begin_login(name=user):
        return s.post(base + "/api/v1/auth/passkey/begin", json={"username": name}).json()

    def finish_login(ceremony, assertion):
        return s.post(
            base + "/api/v1/auth/passkey/finish",
            json={"ceremony": ceremony, "credential": as_json(assertion)},
            headers={"User-Agent": "soft-webauthn test"},
        )

    # Sign in with the passkey: a multi-factor session that works.
    r = begin_login()
    check("login_allows_the_registered_credential", [c["id"] for c in r["publicKey"]["allowCredentials"]] == [keys[0]["id"]], r)
    assertion = dev.get(request(r["publicKey"]), origin)
    x = finish_login(r["ceremony"], assertion)
    ok = x.status_code == 200 and x.json().get("mfa") is True
    check("login_gives_a_multi_factor_session", ok, x.text)
    if ok:
        who = s.get(base + "/api/v1/whoami", headers={"Authorization": "Bearer " + x.json()["session"]})
        check("the_session_works", who.status_code == 200 and who.json()["subject"] == "user:" + user, who.text)
    x = finish_login(r["ceremony"], assertion)
    check("login_ceremony_single_use", x.status_code == 400, x.text)

    # A phishing origin, a tampered signature and a cloned authenticator are refused.
    r = begin_login()
    x = finish_login(r["ceremony"], dev.get(request(r["publicKey"]), "https://city-sso.example.net"))
    check("login_from_another_origin_refused", x.status_code == 401, x.text)
    clone = VerifyingDevice()
    clone.__dict__.update(dev.__dict__)  # the same key, copied off the device
    r = begin_login()
    a = dev.get(request(r["publicKey"]), origin)
    sig = bytearray(a["response"]["signature"])
    sig[-1] ^= 1
    a["response"]["signature"] = bytes(sig)
    x = finish_login(r["ceremony"], a)
    check("tampered_signature_refused", x.status_code == 401, x.text)
    r = begin_login()
    x = finish_login(r["ceremony"], dev.get(request(r["publicKey"]), origin))
    check("the_real_authenticator_still_works", x.status_code == 200, x.text)
    clone.sign_count -= 1
    r = begin_login()
    x = finish_login(r["ceremony"], clone.get(request(r["publicKey"]), origin))
    check("cloned_authenticator_refused", x.status_code == 401, x.text)

    # Another account's ceremony cannot be answered with this passkey.
    r = begin_login("nobody.here")
    again = begin_login("nobody.here")
    decoy = [c["id"] for c in r["publicKey"]["allowCredentials"]]
    check("unknown_account_gets_a_ceremony_too", "ceremony" in r and len(decoy) == 1, r)
    # The same stand-in credential every time, so asking twice does not give the account away.
    check("unknown_account_looks_like_one_with_a_passkey",
          decoy == [c["id"] for c in again["publicKey"]["allowCredentials"]]
          and len(b64d(decoy[0])) in (16, 20, 32, 64) and decoy != [keys[0]["id"]], (r, again))
    x = finish_login(r["ceremony"], dev.get(request(dict(r["publicKey"], rpId=cfg["rp_id"])), origin))
    check("passkey_for_another_account_refused", x.status_code == 401, x.text)

    # Without a username: the passkey names its account by its user handle.
    r = begin_login("")
    check("usernameless_options_list_no_credentials", r["publicKey"]["allowCredentials"] == [], r)
    x = finish_login(r["ceremony"], dev.get(request(dict(r["publicKey"], rpId=cfg["rp_id"])), origin))
    who = None
    if x.status_code == 200:
        who = s.get(base + "/api/v1/whoami", headers={"Authorization": "Bearer " + x.json()["session"]}).json()
    check("usernameless_sign_in_finds_the_account", who is not None and who["subject"] == "user:" + user, x.text)
    r = begin_login("")
    a = dev.get(request(dict(r["publicKey"], rpId=cfg["rp_id"])), origin)
    a["response"]["userHandle"] = bytes(16)
    x = finish_login(r["ceremony"], a)
    check("usernameless_with_an_unknown_handle_refused", x.status_code == 401, x.text)

    # Removing the passkey ends its use.
    x = s.delete(base + "/api/v1/account/passkeys/" + keys[0]["id"], headers=auth)
    check("passkey_removed", x.status_code == 200, x.text)
    r = begin_login()
    x = finish_login(r["ceremony"], dev.get(request(dict(r["publicKey"], rpId=cfg["rp_id"])), origin))
    check("removed_passkey_refused", x.status_code == 401, x.text)
    # An account without passkeys is offered a stand-in too, never an empty list.
    r = begin_login()
    check("account_without_passkeys_looks_the_same",
          len(r["publicKey"]["allowCredentials"]) == 1
          and r["publicKey"]["allowCredentials"][0]["id"] != keys[0]["id"], r)

    print("\n".join(results))


if __name__ == "__main__":
    main()
