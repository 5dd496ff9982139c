"""The built-in token issuer (conf/README.md §6) and the CLI tools it relies on (conf/README.md §1
`keygen`, `hash-password`).

Real gateways, real key files from `portcullis keygen`, real argon2id hashes from
`portcullis hash-password`, and an independent verifier (PyJWT + cryptography) for the JWKS.

Gateways (one each per module):
  main  ES256 key `dev-1`, max_failed_logins 5, trusted_proxies 127.0.0.1/32, admin token, a
        protected route /users (scope users:read) and no `providers:` at all, so only the issuer's
        own provider can accept tokens there.
  ed    EdDSA key `ed-1`, max_failed_logins 1000 (the timing test must never meet the throttle).

The throttle tests present other client IPs in two ways: another loopback *source address*
(127.0.0.2, 127.0.0.3: a different TCP peer, not trusted) and `X-Forwarded-For` behind the trusted
peer 127.0.0.1 (the client IP is then the rightmost untrusted entry, conf/README.md §3.3
"Listeners").
"""

from __future__ import annotations

import json
import random
import statistics
import time
import uuid

import jwt as pyjwt
import pytest

from support.admin_api import ADMIN_TOKEN, Admin
from support.harness import base_config, route, upstream_cfg
from support.issuer import (AUDIENCE, ISSUER, IssuerSite, basic, hash_password, issuer_block,
                            jwt_parts, post_form, run_cli)
from support.jwt import (AuthClient, SigningKey, assert_forbidden, assert_invalid_token,
                         assert_ok, b64u, b64u_decode, make_token)

TOKEN = "/auth/token"
REVOKE = "/auth/revoke"
JWKS = "/auth/jwks.json"
TTL = 15 * 60

# One password per account, hashed once per module with the real CLI.
PASSWORDS = {
    "alice": "alice-Pw-0001",      # users:read users:write; the success paths
    "bob": "bob-Pw-0002",          # wrong-password answers
    "carol": "carol-Pw-0003",      # disabled by a users-file reload
    "dave": "dave-Pw-0004",        # disabled from the start
    "mallory": "mallory-Pw-0005",  # throttle, by TCP peer
    "trent": "trent-Pw-0006",      # throttle, by X-Forwarded-For behind a trusted proxy
    "victor": "victor-Pw-0007",    # throttle, spoofed X-Forwarded-For from an untrusted peer
    "rita": "rita-Pw-0008",        # throttle state across a reload
}
SECRETS = {"reporting": "reporting-Secret-01", "retired": "retired-Secret-02"}
ED_PASSWORDS = {"tim": "tim-Pw-0101", "dis": "dis-Pw-0102"}


class Env:
    def __init__(self, gw, up, site: IssuerSite):
        self.gw, self.up, self.site = gw, up, site
        self.client = AuthClient(gw, up)
        self.admin = Admin(gw)

    def token(self, fields: dict, **kw):
        return post_form(self.gw, TOKEN, fields, **kw)

    def login(self, username: str, password: str | None = None, scope: str | None = None,
              **kw) -> str:
        fields = {"grant_type": "password", "username": username,
                  "password": password if password is not None else PASSWORDS[username]}
        if scope is not None:
            fields["scope"] = scope
        r = self.token(fields, **kw)
        assert r.status == 200, r
        return r.json()["access_token"]

    def revoke(self, body, **kw):
        return post_form(self.gw, REVOKE, body, **kw)

    def call(self, token: str):
        return self.client.call("/users/1", token, route="users")


def _start(mod_procs, name: str, alg: str, kid: str, accounts, clients, **issuer_overrides) -> Env:
    up = mod_procs.upstream(name)
    routes = [route("users", "/users", "u", auth={"mode": "required", "scopes": ["users:read"]})]
    cfg = base_config({"u": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                      issuer=issuer_block(signing_key=f"keys/{kid}.pem", **issuer_overrides),
                      trusted_proxies=["127.0.0.1/32"],
                      admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})
    gw = mod_procs.gateway(cfg, start=False, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    site = IssuerSite(gw, alg, kid)
    for args in accounts:
        site.user(*args)
    for args in clients:
        site.client(*args)
    site.write()
    gw.start()
    return Env(gw, up, site)


@pytest.fixture(scope="module")
def hashes() -> dict:
    return {name: hash_password(pw)
            for name, pw in {**PASSWORDS, **SECRETS, **ED_PASSWORDS}.items()}


@pytest.fixture(scope="module")
def env(mod_procs, hashes) -> Env:
    rw = ["users:read", "users:write"]
    users = [("alice", hashes["alice"], rw), ("bob", hashes["bob"], rw),
             ("carol", hashes["carol"], rw), ("dave", hashes["dave"], rw, True),
             ("mallory", hashes["mallory"], rw), ("trent", hashes["trent"], rw),
             ("victor", hashes["victor"], rw), ("rita", hashes["rita"], rw)]
    clients = [("reporting", hashes["reporting"], ["reports:read", "reports:write"]),
               ("retired", hashes["retired"], ["reports:read"], True)]
    return _start(mod_procs, "main", "ES256", "dev-1", users, clients, max_failed_logins=5)


@pytest.fixture(scope="module")
def ed_env(mod_procs, hashes) -> Env:
    users = [("tim", hashes["tim"], ["users:read"]), ("dis", hashes["dis"], ["users:read"], True)]
    return _start(mod_procs, "ed", "EdDSA", "ed-1", users, [], max_failed_logins=1000)


def assert_oauth_error(r, status: int, code: str) -> dict:
    """RFC 6749 §5.2 error: JSON {error, error_description}, never cached."""
    assert r.status == status, r
    ctype = (r.header("Content-Type") or "").split(";")[0].strip().lower()
    assert ctype == "application/json", r
    assert "no-store" in (r.header("Cache-Control") or "").lower(), r
    doc = r.json()
    assert doc.get("error") == code, r
    assert "access_token" not in doc, r
    return doc


def assert_token_response(r, scope: str) -> tuple[dict, dict, str]:
    """RFC 6749 §5.1 success; returns (header, claims, token)."""
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").split(";")[0].strip().lower() == "application/json", r
    assert "no-store" in (r.header("Cache-Control") or "").lower(), r
    assert (r.header("Pragma") or "").lower() == "no-cache", r
    doc = r.json()
    assert doc["token_type"] == "Bearer", doc
    assert doc["expires_in"] == TTL, doc
    assert set(doc["scope"].split()) == set(scope.split()), doc
    assert "refresh_token" not in doc, doc  # conf/README.md §6: no refresh tokens
    header, claims = jwt_parts(doc["access_token"])
    assert set(claims["scope"].split()) == set(scope.split()), claims
    for c in ("iss", "sub", "aud", "exp", "iat", "jti", "scope"):
        assert c in claims, (c, claims)
    assert claims["iss"] == ISSUER, claims
    assert claims["aud"] == AUDIENCE or claims["aud"] == [AUDIENCE], claims
    assert claims["exp"] - claims["iat"] == TTL, claims
    assert abs(claims["iat"] - time.time()) < 60, claims
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16, claims
    assert header.get("typ", "").lower() == "at+jwt", header
    return header, claims, doc["access_token"]


def tamper_signature(token: str) -> str:
    h, p, s = token.split(".")
    sig = bytearray(b64u_decode(s))
    sig[len(sig) // 2] ^= 0x01
    return f"{h}.{p}.{b64u(bytes(sig))}"


# --------------------------------------------------------------------------------------------
# conf/README.md §1: hash-password


def test_hash_password_prints_a_verifiable_argon2id_phc_string():
    p = run_cli(["hash-password"], stdin=b"correct horse battery")
    assert p.returncode == 0, p
    out = p.stdout.decode()
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    phc = lines[0]
    assert phc.startswith("$argon2id$v=19$"), phc
    assert "correct horse" not in out + p.stderr.decode()
    again = run_cli(["hash-password"], stdin=b"correct horse battery").stdout.decode().strip()
    assert again != phc, "two hashes of one password are equal: no random salt"
    # An independent verifier (the login tests below verify the same strings in the gateway).
    from cryptography.hazmat.primitives.kdf import argon2
    if not hasattr(argon2.Argon2id, "verify_phc_encoded"):
        pytest.skip("cryptography too old for Argon2id.verify_phc_encoded")
    from cryptography.exceptions import InvalidKey
    argon2.Argon2id.verify_phc_encoded(b"correct horse battery", phc)
    with pytest.raises(InvalidKey):
        argon2.Argon2id.verify_phc_encoded(b"correct horse batterz", phc)


def test_hash_password_refuses_an_empty_password():
    p = run_cli(["hash-password"], stdin=b"")
    assert p.returncode == 1, p
    assert b"$argon2" not in p.stdout, p
    assert p.stderr.strip(), "no explanation on stderr"


# --------------------------------------------------------------------------------------------
# conf/README.md §6: grants


def test_password_grant_issues_a_token_with_every_allowed_scope(env):
    r = env.token({"grant_type": "password", "username": "alice",
                   "password": PASSWORDS["alice"]})
    header, claims, _ = assert_token_response(r, "users:read users:write")
    assert claims["sub"] == "alice", claims
    assert header["alg"] == "ES256" and header["kid"] == "dev-1", header


def test_client_credentials_grant_issues_a_token_for_the_client(env):
    r = env.token({"grant_type": "client_credentials"},
                  headers={"Authorization": basic("reporting", SECRETS["reporting"])})
    header, claims, _ = assert_token_response(r, "reports:read reports:write")
    assert claims["sub"] == "reporting", claims
    assert header["alg"] == "ES256" and header["kid"] == "dev-1", header
    # The scheme is case-insensitive (RFC 7617) and the form media type may carry a charset.
    r = env.token({"grant_type": "client_credentials"},
                  headers={"Authorization":
                           "basic " + basic("reporting", SECRETS["reporting"])[len("Basic "):]},
                  content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert_token_response(r, "reports:read reports:write")


def test_wrong_password_unknown_user_and_disabled_user_get_one_answer(env):
    answers = {
        "wrong password": env.token({"grant_type": "password", "username": "bob",
                                     "password": "not-" + PASSWORDS["bob"]}),
        "unknown user": env.token({"grant_type": "password",
                                   "username": "nobody-" + uuid.uuid4().hex[:8],
                                   "password": PASSWORDS["bob"]}),
        # The right password: a disabled account must not even confirm that.
        "disabled user": env.token({"grant_type": "password", "username": "dave",
                                    "password": PASSWORDS["dave"]}),
    }
    for what, r in answers.items():
        assert_oauth_error(r, 400, "invalid_grant")
    bodies = {what: r.body for what, r in answers.items()}
    assert len(set(bodies.values())) == 1, f"the answers differ: {bodies!r}"
    shapes = {what: sorted((k.lower(), v) for k, v in r.headers
                     if k.lower() not in ("date", "x-request-id"))
              for what, r in answers.items()}
    assert len({repr(s) for s in shapes.values()}) == 1, f"the headers differ: {shapes!r}"


def test_failed_logins_take_the_same_time_whatever_the_reason(ed_env):
    """Medians of 20 interleaved tries each of wrong password / unknown user / disabled user
    differ by less than 20%. A noisy machine can spoil one measurement, so it is taken up to three
    times; a real difference (e.g. skipping argon2 for unknown names) shows in every one."""
    gw = ed_env.gw

    def attempt(username: str, password: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        r = gw.request("POST", TOKEN, data={"grant_type": "password", "username": username,
                                            "password": password})
        dt = time.perf_counter() - t0
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant", \
            (r.status_code, r.text)
        return dt, r.content

    kinds = {
        "wrong password": lambda i: ("tim", f"wrong-{i}"),
        "unknown user": lambda i: (f"ghost-{i}-{uuid.uuid4().hex[:6]}", ED_PASSWORDS["tim"]),
        "disabled user": lambda i: ("dis", ED_PASSWORDS["dis"]),
    }
    for i in range(2):  # warm-up: connections, allocator, argon2 threads
        for make in kinds.values():
            attempt(*make(i))
    report = []
    for _ in range(3):
        times = {k: [] for k in kinds}
        bodies = set()
        order = list(kinds)
        for i in range(20):
            random.shuffle(order)
            for k in order:
                dt, body = attempt(*kinds[k](i))
                times[k].append(dt)
                bodies.add(body)
        assert len(bodies) == 1, f"the answers differ: {bodies!r}"
        medians = {k: statistics.median(v) for k, v in times.items()}
        spread = max(medians.values()) / min(medians.values()) - 1
        report.append({k: f"{v * 1000:.1f}ms" for k, v in medians.items()}
                      | {"spread": f"{spread:.0%}"})
        print(f"login timing: {report[-1]}")
        if spread < 0.20:
            return
    pytest.fail(f"login timing reveals the failure reason (medians differ by >= 20%): {report}")


@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token", "implicit", "PASSWORD"])
def test_unsupported_grant_type(env, grant):
    r = env.token({"grant_type": grant, "username": "alice", "password": PASSWORDS["alice"],
                   "code": "x", "refresh_token": "y"})
    assert_oauth_error(r, 400, "unsupported_grant_type")


@pytest.mark.parametrize("body,ctype", [
    ({"username": "bob", "password": "x"}, "application/x-www-form-urlencoded"),
    ({"grant_type": "password", "password": "x"}, "application/x-www-form-urlencoded"),
    ({"grant_type": "password", "username": "bob"}, "application/x-www-form-urlencoded"),
    ('{"grant_type":"password","username":"bob","password":"x"}', "application/json"),
    ("grant_type=password&username=bob&password=x", None),
    ("grant_type=password&username=bob&username=alice&password=x",
     "application/x-www-form-urlencoded"),
    ("grant_type=password&grant_type=password&username=bob&password=x",
     "application/x-www-form-urlencoded"),
], ids=["no-grant_type", "no-username", "no-password", "json-body", "no-content-type",
        "repeated-username", "repeated-grant_type"])
def test_malformed_token_request_is_invalid_request(env, body, ctype):
    r = env.token(body, content_type=ctype)
    assert_oauth_error(r, 400, "invalid_request")


def test_client_authentication_failures_are_invalid_client(env):
    cases = {
        "wrong secret": basic("reporting", "not-" + SECRETS["reporting"]),
        "unknown client": basic("nobody-" + uuid.uuid4().hex[:8], SECRETS["reporting"]),
        "disabled client": basic("retired", SECRETS["retired"]),
    }
    answers = {}
    for what, auth in cases.items():
        r = env.token({"grant_type": "client_credentials"}, headers={"Authorization": auth})
        assert_oauth_error(r, 401, "invalid_client")
        assert r.header("WWW-Authenticate") == 'Basic realm="portcullis"', (what, r)
        answers[what] = r.body
    assert len(set(answers.values())) == 1, f"client failures are distinguishable: {answers!r}"
    malformed = {"no Basic": {}, "Bearer instead of Basic": {"Authorization": "Bearer abc"},
                 "Basic without a colon": {"Authorization": "Basic " + b64u("reporting")}}
    for what, headers in malformed.items():
        r = env.token({"grant_type": "client_credentials"}, headers=headers)
        assert_oauth_error(r, 401, "invalid_client")
        assert r.header("WWW-Authenticate") == 'Basic realm="portcullis"', (what, r)


def test_requested_scope_narrows_the_token(env):
    r = env.token({"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"],
                   "scope": "users:read"})
    assert_token_response(r, "users:read")
    r = env.token({"grant_type": "client_credentials", "scope": "reports:read"},
                  headers={"Authorization": basic("reporting", SECRETS["reporting"])})
    _, claims, _ = assert_token_response(r, "reports:read")
    assert claims["sub"] == "reporting", claims


def test_scope_beyond_the_grant_is_invalid_scope(env):
    r = env.token({"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"],
                   "scope": "users:read admin"})
    assert_oauth_error(r, 400, "invalid_scope")
    r = env.token({"grant_type": "client_credentials", "scope": "users:read"},
                  headers={"Authorization": basic("reporting", SECRETS["reporting"])})
    assert_oauth_error(r, 400, "invalid_scope")
    # Whole-word: a prefix of an allowed scope is not that scope.
    r = env.token({"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"],
                   "scope": "users"})
    assert_oauth_error(r, 400, "invalid_scope")


def test_token_endpoint_methods(env):
    r = post_form(env.gw, TOKEN, method="GET", content_type=None)
    assert r.status == 405, r
    assert "POST" in (r.header("Allow") or ""), r


# --------------------------------------------------------------------------------------------
# Throttle: max_failed_logins per username + client IP per 15 minutes


def _fail(env: Env, user: str, n: int, **kw) -> None:
    for i in range(n):
        r = env.token({"grant_type": "password", "username": user,
                       "password": f"wrong-{i}"}, **kw)
        assert_oauth_error(r, 400, "invalid_grant")


def _assert_throttled(r) -> None:
    assert r.status == 429, r
    ra = r.header("Retry-After")
    assert ra is not None and ra.isdigit() and 1 <= int(ra) <= 15 * 60, r
    assert b"access_token" not in r.body, r


def test_sixth_bad_login_is_429_and_another_ip_still_logs_in(env):
    _fail(env, "mallory", 5)
    good = {"grant_type": "password", "username": "mallory", "password": PASSWORDS["mallory"]}
    _assert_throttled(env.token(good))  # even the right password
    # Another client IP (another TCP peer) is not affected ...
    r = env.token(good, source_ip="127.0.0.2")
    assert_token_response(r, "users:read users:write")
    # ... and its success does not unlock the first one.
    _assert_throttled(env.token(good))


def test_throttle_keys_on_the_forwarded_client_ip_behind_a_trusted_proxy(env):
    """Behind a trusted proxy every client shares the proxy's TCP address; the throttle must use
    the client IP the gateway derives from X-Forwarded-For (conf/README.md §3), or one attacker
    locks every user out for everyone behind that proxy."""
    attacker = {"X-Forwarded-For": "203.0.113.10"}
    _fail(env, "trent", 5, headers=attacker)
    good = {"grant_type": "password", "username": "trent", "password": PASSWORDS["trent"]}
    _assert_throttled(env.token(good, headers=attacker))
    r = env.token(good, headers={"X-Forwarded-For": "203.0.113.11"})
    assert r.status == 200, (
        "a login from another client IP (X-Forwarded-For behind trusted 127.0.0.1) is throttled: "
        f"the throttle keys on the TCP peer, not the client IP: {r!r}")


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_reset_the_throttle(env):
    for i in range(5):
        r = env.token({"grant_type": "password", "username": "victor", "password": f"wrong-{i}"},
                      source_ip="127.0.0.3", headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
        assert_oauth_error(r, 400, "invalid_grant")
    r = env.token({"grant_type": "password", "username": "victor", "password": PASSWORDS["victor"]},
                  source_ip="127.0.0.3", headers={"X-Forwarded-For": "198.51.100.99"})
    _assert_throttled(r)


# --------------------------------------------------------------------------------------------
# Issued tokens at the gateway, and RFC 7009 revocation


def test_issued_tokens_pass_the_gateway_auth_on_a_protected_route(env):
    doc = assert_ok(env.call(env.login("alice")))
    assert doc["path"] == "/users/1", doc
    narrow = env.login("alice", scope="users:write")
    assert_forbidden(env.call(narrow), "users:read")
    client = env.token({"grant_type": "client_credentials"},
                       headers={"Authorization": basic("reporting", SECRETS["reporting"])})
    assert_forbidden(env.call(client.json()["access_token"]), "users:read")


def test_revoked_token_is_refused_and_others_keep_working(env):
    a, b = env.login("alice"), env.login("alice")
    assert_ok(env.call(a))  # also puts it in the verified-token cache
    r = env.revoke({"token": a})
    assert r.status == 200, r
    assert "no-store" in (r.header("Cache-Control") or "").lower(), r
    assert_invalid_token(env.call(a), "revoked", "token revoked")
    assert_ok(env.call(b))
    assert env.revoke({"token": a, "token_type_hint": "access_token"}).status == 200


def test_revoking_a_forged_token_revokes_nothing(env):
    real = env.login("alice")
    _, claims = jwt_parts(real)
    assert_ok(env.call(real))
    forged_sig = tamper_signature(real)
    # Same iss and jti, signed by a key the gateway does not know, claiming the issuer's kid.
    impostor = SigningKey("ES256", "dev-1")
    foreign = make_token(impostor, dict(claims), header_extra={"typ": "at+jwt"})
    for forged in (forged_sig, foreign):
        r = env.revoke({"token": forged})
        assert r.status == 200, r
    assert_ok(env.call(real))


@pytest.mark.parametrize("body,ctype", [
    ("token=garbage", "application/x-www-form-urlencoded"),
    ("token=", "application/x-www-form-urlencoded"),
    ("token=a.b.c", "application/x-www-form-urlencoded"),
    ("", "application/x-www-form-urlencoded"),
    ("unrelated=1", "application/x-www-form-urlencoded"),
    ('{"token":"x"}', "application/json"),
], ids=["garbage", "empty-token", "three-dots", "empty-body", "no-token", "json"])
def test_revoke_with_garbage_answers_200(env, body, ctype):
    r = env.revoke(body, content_type=ctype)
    assert r.status == 200, r


# --------------------------------------------------------------------------------------------
# JWKS: an independent library verifies issued tokens


@pytest.mark.parametrize("which,alg,kid", [("env", "ES256", "dev-1"), ("ed_env", "EdDSA", "ed-1")])
def test_jwks_verifies_issued_tokens_with_pyjwt(request, which, alg, kid):
    e: Env = request.getfixturevalue(which)
    user = "alice" if which == "env" else "tim"
    pw = PASSWORDS.get(user) or ED_PASSWORDS[user]
    token = e.login(user, pw)
    header, _ = jwt_parts(token)
    assert header["alg"] == alg and header["kid"] == kid, header

    r = post_form(e.gw, JWKS, method="GET", content_type=None)
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").split(";")[0].strip() == "application/json", r
    doc = r.json()
    assert [k["kid"] for k in doc["keys"]] == [kid], doc
    jwk = doc["keys"][0]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk), "private key material in the JWKS"
    # The same public key `keygen` published next to the private one.
    published = json.loads((e.site.dir / "keys" / "jwks.json").read_text())["keys"]
    pub = next(k for k in published if k["kid"] == kid)
    assert {k: jwk.get(k) for k in ("kty", "crv", "x", "y")} == \
        {k: pub.get(k) for k in ("kty", "crv", "x", "y")}, (jwk, pub)

    key = pyjwt.PyJWK(jwk)
    claims = pyjwt.decode(token, key.key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == user
    client = pyjwt.PyJWKClient(e.gw.url("http", JWKS), cache_keys=False)
    claims2 = pyjwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=[alg],
                           audience=AUDIENCE, issuer=ISSUER)
    assert claims2 == claims
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(token, key.key, algorithms=[alg], audience="other", issuer=ISSUER)
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(tamper_signature(token), key.key, algorithms=[alg], audience=AUDIENCE,
                     issuer=ISSUER)


def test_eddsa_tokens_pass_the_gateway_auth(ed_env):
    assert_ok(ed_env.call(ed_env.login("tim", ED_PASSWORDS["tim"])))


# --------------------------------------------------------------------------------------------
# The users file reloads with the config


def test_users_file_reload_disables_a_user_and_keeps_the_throttle(env):
    good = {"grant_type": "password", "username": "carol", "password": PASSWORDS["carol"]}
    assert env.token(good).status == 200
    _fail(env, "rita", 5)
    env.site.set_disabled("carol", True)
    r = env.admin.reload()
    assert r.status_code == 200, (r.status_code, r.text)
    after = env.token(good)
    assert_oauth_error(after, 400, "invalid_grant")
    wrong = env.token({"grant_type": "password", "username": "bob", "password": "nope"})
    assert after.body == wrong.body, (after, wrong)
    # A reload is not a way to reset failed-login counts.
    _assert_throttled(env.token({"grant_type": "password", "username": "rita",
                                 "password": PASSWORDS["rita"]}))
    # Other users are untouched by the reload.
    assert env.token({"grant_type": "password", "username": "alice",
                      "password": PASSWORDS["alice"]}).status == 200
