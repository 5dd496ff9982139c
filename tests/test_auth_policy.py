"""Route authorization and what the upstream sees (conf/README.md §2 routes[].auth,
identity_headers, forward_authorization, token_cache; §3.4–§3.7; conf/HARDENING.md Z1/Z2, ID1,
ID3), plus the verified-token cache: a hit must still honour `exp` and the key set.
"""

from __future__ import annotations

import time

import pytest
import requests

from support.harness import base_config, echo_headers, metric, route, upstream_cfg, wait_for
from support.jwks_server import JwksServer
from support.jwt import (AuthClient, SigningKey, assert_forbidden, assert_invalid_token, assert_ok,
                         make_token, std_claims)

ISS = "https://id.test"
ZERO = "https://zero.test"
CACHE = "portcullis_token_cache_requests_total"

ROUTES = {
    "scopes": ("/scopes", {"scopes": ["read", "write"]}),
    "admin": ("/admin", {"scopes": ["admin"]}),
    "any": ("/any", {"any_scopes": ["a", "b"]}),
    "roles": ("/roles", {"roles": {"claim": "realm_access.roles", "any_of": ["admin", "ops"]}}),
    "claims": ("/claims", {"claims": {"tenant": "acme", "org.tier": "gold"}}),
    "combo": ("/combo", {"scopes": ["read"], "roles": {"claim": "realm_access.roles", "any_of": ["admin"]},
                         "claims": {"tenant": "acme"}}),
    "ident": ("/ident", {}),
    "optional": ("/optional", {"mode": "optional"}),
    "none": ("/none", {"mode": "none"}),
    "zero": ("/zero", {"providers": ["zero"]}),
}


class P:
    def __init__(self, gw, up, client, key, zsrv):
        self.gw, self.up, self.client, self.key, self.zsrv = gw, up, client, key, zsrv

    def call(self, name: str, token: str | None = None, **kw):
        return self.client.call(ROUTES[name][0] + "/x", token, route=name, **kw)

    def tok(self, **claims) -> str:
        return make_token(self.key, std_claims(**claims))

    def check(self, name: str, claims: dict, granted: bool, scope: str = "") -> None:
        """A token with `claims` on route `name`: proxied when `granted`, else 403
        insufficient_scope with `scope` in the challenge."""
        o = self.call(name, self.tok(**claims))
        if granted:
            assert_ok(o)
        else:
            assert_forbidden(o, scope)


@pytest.fixture(scope="module")
def pg(mod_procs):
    key = SigningKey("ES256", "p1")
    srv = JwksServer([key])
    zsrv = JwksServer([], max_age=1)  # the `zero` provider: leeway 0s, refreshed every second
    zsrv.set_keys([SigningKey("ES256", "zero-anchor")])
    up = mod_procs.upstream("policy")
    routes = []
    for name, (prefix, auth) in ROUTES.items():
        routes.append(route(name, prefix, "echo", auth={"mode": "required", **auth}))
    providers = [srv.provider("corp", ISS), zsrv.provider("zero", ZERO, leeway="0s")]
    cfg = base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"), providers=providers)
    gw = mod_procs.gateway(cfg)
    wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200, 10, what="ready")
    yield P(gw, up, AuthClient(gw, up), key, zsrv)
    srv.stop()
    zsrv.stop()


# ---------------------------------------------------------------------------------------------
# Scopes


@pytest.mark.parametrize("claims", [
    {"scope": "read write"}, {"scope": "write read extra"}, {"scp": ["read", "write"]},
])
def test_all_scopes_present(pg, claims):
    assert_ok(pg.call("scopes", pg.tok(**claims)))


@pytest.mark.parametrize("claims", [
    {"scope": "read"}, {"scope": "readwrite"}, {"scope": "read,write"}, {"scope": "read:write"},
    {"scp": ["read write"]}, {"scp": ["read"]}, {},
])
def test_missing_scope_is_403_with_required_scopes(pg, claims):
    assert_forbidden(pg.call("scopes", pg.tok(**claims)), "read write")


@pytest.mark.parametrize("claims", [
    {"scope": "read:admin"}, {"scope": "superadmin"}, {"scope": "admin:read"}, {"scope": "administrator"},
    {"scope": "Admin"}, {"scope": "read\tadmin"}, {"scp": ["read:admin"]}, {"scp": ["superadmin"]},
    {"scope": "admin:*"}, {"scope": "*"},
])
def test_scope_is_whole_word_only(pg, claims):
    assert_forbidden(pg.call("admin", pg.tok(**claims)), "admin")


@pytest.mark.parametrize("claims", [{"scope": "admin"}, {"scope": "read admin"}, {"scp": ["admin"]},
                                    {"scp": ["read", "admin"]}])
def test_scope_admin_granted(pg, claims):
    assert_ok(pg.call("admin", pg.tok(**claims)))


def test_wrongly_typed_scope_claims_are_invalid_tokens(pg):
    for claims in ({"scope": ["admin"]}, {"scope": 1}, {"scp": {"admin": True}}, {"scp": [["admin"]]}):
        assert_invalid_token(pg.call("admin", pg.tok(**claims)), "malformed")


@pytest.mark.parametrize("claims,granted", [
    ({"scope": "a"}, True), ({"scope": "b c"}, True), ({"scp": ["x", "b"]}, True),
    ({"scope": "c"}, False), ({"scope": "ab"}, False), ({}, False),
])
def test_any_scopes(pg, claims, granted):
    pg.check("any", claims, granted, "a b")


# ---------------------------------------------------------------------------------------------
# Roles and claims by dotted path


@pytest.mark.parametrize("realm,granted", [
    ({"roles": ["user", "admin"]}, True),
    ({"roles": ["ops"]}, True),
    ({"roles": "admin"}, True),                  # a string claim holds one role
    ({"roles": ["user"]}, False),
    ({"roles": [["admin"]]}, False),             # nested arrays never grant
    ({"roles": {"admin": True}}, False),         # objects never grant
    ({"roles": [{"name": "admin"}]}, False),
    ({"roles": "user admin"}, False),            # a string is one role, not a list
    ({"roles": ["Admin"]}, False),
    ({"roles": ["superadmin"]}, False),
    ({"roles": [True, 1]}, False),
    ({}, False),
    (None, False),
])
def test_roles_by_dotted_path(pg, realm, granted):
    pg.check("roles", {} if realm is None else {"realm_access": realm}, granted)


def test_roles_path_must_be_nested_object(pg):
    for claims in ({"realm_access": "admin"}, {"realm_access": ["admin"]}, {"roles": ["admin"]},
                   {"realm_access": {"role": ["admin"]}}):
        assert_forbidden(pg.call("roles", pg.tok(**claims)), "")


@pytest.mark.parametrize("claims,granted", [
    ({"tenant": "acme", "org": {"tier": "gold"}}, True),
    ({"tenant": ["other", "acme"], "org": {"tier": "gold"}}, True),  # arrays match by element
    ({"tenant": "ACME", "org": {"tier": "gold"}}, False),
    ({"tenant": "acme"}, False),
    ({"tenant": "acme", "org": {"tier": "silver"}}, False),
    ({"tenant": "acme", "org": "gold"}, False),
    ({"tenant": "acme", "org.tier": "silver", "org": {"tier": "bronze"}}, False),
    ({"tenant": {"acme": True}, "org": {"tier": "gold"}}, False),
    ({"tenant": [["acme"]], "org": {"tier": "gold"}}, False),
    ({"tenant": "acme ", "org": {"tier": "gold"}}, False),
    ({"org": {"tier": "gold"}}, False),
])
def test_claims_equality(pg, claims, granted):
    pg.check("claims", claims, granted)


def test_combined_policy_needs_every_part(pg):
    full = {"scope": "read", "realm_access": {"roles": ["admin"]}, "tenant": "acme"}
    assert_ok(pg.call("combo", pg.tok(**full)))
    for drop in full:
        partial = {k: v for k, v in full.items() if k != drop}
        assert_forbidden(pg.call("combo", pg.tok(**partial)), "read")


# ---------------------------------------------------------------------------------------------
# Modes


def test_optional_mode(pg):
    spoof = [("X-Auth-Subject", "evil"), ("X-Auth-Scopes", "admin"), ("X-Auth-Issuer", ISS)]
    # No credentials: anonymous, forwarded without any identity.
    seen = assert_ok(pg.call("optional", None, headers=spoof), label="anonymous")
    for h in ("X-Auth-Subject", "X-Auth-Scopes", "X-Auth-Issuer", "Authorization"):
        assert echo_headers(seen, h) == [], (h, seen["headers"])
    # A non-Bearer scheme is "no bearer credentials": anonymous, and the header is not forwarded.
    seen = assert_ok(pg.call("optional", None, headers=[("Authorization", "Basic dXNlcjpwYXNz")]),
                     label="anonymous")
    assert echo_headers(seen, "Authorization") == []
    # A valid token: authenticated, identity set from the claims.
    seen = assert_ok(pg.call("optional", pg.tok(sub="bob"), headers=spoof))
    assert echo_headers(seen, "X-Auth-Subject") == ["bob"]
    assert echo_headers(seen, "Authorization") == []
    # An invalid token is refused, not downgraded to anonymous.
    bad = make_token(pg.key, std_claims(exp=int(time.time()) - 3600, iat=int(time.time()) - 4000))
    assert_invalid_token(pg.call("optional", bad), "expired", "token expired")
    forged = make_token(SigningKey("ES256", "p1"), std_claims())
    assert_invalid_token(pg.call("optional", forged), "bad_signature", "bad signature")


def test_none_mode_ignores_token_and_passes_authorization_through(pg):
    junk = "Bearer not.a.token"
    o = pg.call("none", None, headers=[("Authorization", junk), ("X-Auth-Subject", "evil"),
                                       ("x_auth_subject", "evil2")])
    assert o.status == 200, o
    assert o.delta == {}, f"mode none must not produce an auth decision: {o.delta}"
    seen = o.forwarded[0]
    assert echo_headers(seen, "Authorization") == [junk]
    assert echo_headers(seen, "X-Auth-Subject") == [], "identity header names are always stripped"
    assert echo_headers(seen, "x_auth_subject") == []
    expired = make_token(pg.key, std_claims(exp=int(time.time()) - 3600, iat=int(time.time()) - 4000))
    o = pg.call("none", expired)
    assert o.status == 200 and o.delta == {}, o
    assert echo_headers(o.forwarded[0], "Authorization") == [f"Bearer {expired}"]
    assert echo_headers(o.forwarded[0], "X-Auth-Subject") == []


# ---------------------------------------------------------------------------------------------
# Identity headers


def test_identity_headers_from_verified_claims_replace_client_copies(pg):
    spoof = [("X-Auth-Subject", "admin"), ("x-auth-subject", "root"), ("X_Auth_Subject", "root2"),
             ("X-AUTH-SCOPES", "admin"), ("X-Auth-Issuer", "https://evil.test")]
    seen = assert_ok(pg.call("ident", pg.tok(sub="alice", scope="read  write"), headers=spoof))
    assert echo_headers(seen, "X-Auth-Subject") == ["alice"]
    assert echo_headers(seen, "X-Auth-Scopes") == ["read write"]
    assert echo_headers(seen, "X-Auth-Issuer") == [ISS]
    assert echo_headers(seen, "X_Auth_Subject") == []
    assert echo_headers(seen, "Authorization") == []
    # scp arrays are joined by spaces.
    seen = assert_ok(pg.call("ident", pg.tok(scp=["x", "y", "z"])))
    assert echo_headers(seen, "X-Auth-Scopes") == ["x y z"]


@pytest.mark.parametrize("sub,header", [
    ("a\r\nX-Admin: 1", "a%0D%0AX-Admin: 1"),
    ("jos\u00e9", "jos%C3%A9"),
    ("100%", "100%25"),
    ("%41", "%2541"),
    ("tab\there", "tab%09here"),
    ("nul\x00byte", "nul%00byte"),
    ("del\x7f", "del%7F"),
    ("\u65e5\u672c", "%E6%97%A5%E6%9C%AC"),
    ("plain user@example.com", "plain user@example.com"),
])
def test_identity_header_values_are_percent_encoded(pg, sub, header):
    seen = assert_ok(pg.call("ident", pg.tok(sub=sub)))
    assert echo_headers(seen, "X-Auth-Subject") == [header], seen["headers"]
    assert echo_headers(seen, "X-Admin") == []


def test_forward_authorization_true(procs):
    key = SigningKey("RS256", "fw1")
    srv = JwksServer([key])
    try:
        up = procs.upstream("echo")
        routes = [route("fw", "/fw", "echo", auth={"mode": "required"})]
        cfg = base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                          providers=[srv.provider("corp", ISS)], forward_authorization=True,
                          identity_headers={"sub": "X-Auth-Subject", "scope": "X-Auth-Scopes",
                                            "iss": "X-Auth-Issuer", "realm_access.roles": "X-Auth-Roles"})
        gw = procs.gateway(cfg)
        wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200, 10)
        client = AuthClient(gw, up)
        t = make_token(key, std_claims(realm_access={"roles": ["admin", "ops"]}))
        seen = assert_ok(client.call("/fw/x", t, route="fw", headers=[("X-Auth-Roles", "root")]))
        assert echo_headers(seen, "Authorization") == [f"Bearer {t}"]
        assert echo_headers(seen, "X-Auth-Roles") == ["admin ops"]
        assert echo_headers(seen, "X-Auth-Subject") == ["alice"]
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------
# Verified-token cache


def cache_counts(pg) -> tuple[float, float]:
    s = pg.gw.metrics()
    return (metric(s, CACHE, result="miss") or 0.0, metric(s, CACHE, result="hit") or 0.0)


def test_same_token_twice_is_one_miss_then_a_hit(pg):
    t = pg.tok(sub="cache-me")
    m0, h0 = cache_counts(pg)
    assert_ok(pg.call("ident", t))
    m1, h1 = cache_counts(pg)
    assert (m1 - m0, h1 - h0) == (1, 0)
    seen = assert_ok(pg.call("ident", t))
    m2, h2 = cache_counts(pg)
    assert (m2 - m1, h2 - h1) == (0, 1)
    assert echo_headers(seen, "X-Auth-Subject") == ["cache-me"]
    # A cached token still obeys the route policy and the route's provider list.
    assert_forbidden(pg.call("admin", t), "admin")
    assert_invalid_token(pg.call("zero", t), "wrong_issuer")


def publish(pg, key: SigningKey) -> None:
    """Add a key to the `zero` provider's JWKS and wait for its next scheduled refresh (every
    second; an unknown-kid refetch could be refused by min_refresh right after one)."""
    pg.zsrv.set_keys(pg.zsrv.keys() + [key.jwk()])
    n = pg.zsrv.jwks_fetches()
    wait_for(lambda: pg.zsrv.jwks_fetches() > n, 3.0, what="scheduled refresh (max-age=1)")
    time.sleep(0.2)


def test_cached_token_is_refused_after_exp(pg):
    key = SigningKey("ES256", "z-exp")
    publish(pg, key)
    t0 = int(time.time())
    t = make_token(key, std_claims(iss=ZERO, iat=t0, exp=t0 + 3))
    assert_ok(pg.call("zero", t))          # verified and cached
    _, h0 = cache_counts(pg)
    assert_ok(pg.call("zero", t))
    assert cache_counts(pg)[1] == h0 + 1, "second use should be a cache hit"
    wait = t0 + 3 + 1.05 - time.time()     # leeway 0s: refused from exp + 1s on
    if wait > 0:
        time.sleep(wait)
    assert_invalid_token(pg.call("zero", t), "expired", "token expired")


def test_cached_token_is_refused_after_its_key_leaves_the_jwks(pg):
    key = SigningKey("ES256", "z-gone")
    publish(pg, key)
    t = make_token(key, std_claims(iss=ZERO, exp=int(time.time()) + 600))
    assert_ok(pg.call("zero", t))
    _, h0 = cache_counts(pg)
    assert_ok(pg.call("zero", t))
    assert cache_counts(pg)[1] == h0 + 1
    pg.zsrv.set_keys([k for k in pg.zsrv.keys() if k["kid"] != "z-gone"])
    n = pg.zsrv.jwks_fetches()
    wait_for(lambda: pg.zsrv.jwks_fetches() > n, 3.0, what="scheduled refresh (max-age=1)")
    time.sleep(0.2)
    assert_invalid_token(pg.call("zero", t), "unknown_kid", "unknown key id")
