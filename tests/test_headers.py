"""What reaches the upstream: identity-header stripping, hop-by-hop and Connection-named headers,
X-Forwarded-*, X-Request-Id (conf/README.md §3.7; conf/HARDENING.md §3.3 ID1, ID2, HB1)."""

import re

import pytest

from support.harness import (assert_json_error, base_config, echo_header_names, echo_headers, http_get_raw, route,
                             upstream_cfg)


# Every spelling a client could use to forge the default identity headers: case variants and the
# `_` form that CGI-style servers read as `-`.
IDENTITY_SPOOFS = [
    ("X-Auth-Subject", "admin"),
    ("x-auth-subject", "admin2"),
    ("X-AUTH-SCOPES", "admin:all"),
    ("x-Auth-Issuer", "https://evil.example"),
    ("X_Auth_Subject", "admin3"),
    ("x_auth_scopes", "admin:all"),
    ("X-Auth_Issuer", "https://evil.example"),
]

# Hop-by-hop headers (and the h2c upgrade's) that must never reach an upstream.
HOP_BY_HOP = [
    ("Keep-Alive", "timeout=5, max=100"),
    ("Proxy-Connection", "keep-alive"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Trailer", "X-Checksum"),
    ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
]


def forwarded_names(doc) -> list:
    """Header names the echo upstream received, lower-case, with `_` read as `-`."""
    return [n.replace("_", "-") for n in echo_header_names(doc)]


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("HDR")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      listeners=("http", "https"))
    return mod_procs.gateway(cfg)


def send(gw, headers, target="/h", host="api.example.com", listener="http", method="GET", body=b""):
    resp = gw.raw(http_get_raw(target, host=host, headers=headers, method=method, body=body),
                  listener=listener)
    assert resp.status == 200, resp.raw
    return resp, resp.json()


def test_identity_headers_from_client_never_reach_upstream(env):
    _, doc = send(env, IDENTITY_SPOOFS + [("X-Auth-Subject", "dup")])
    for n in forwarded_names(doc):
        assert n not in ("x-auth-subject", "x-auth-scopes", "x-auth-issuer"), doc["headers"]
    for _, v in IDENTITY_SPOOFS:
        assert not any(v == hv for _, hv in doc["headers"]), doc["headers"]


def test_identity_headers_stripped_on_https_too(env):
    _, doc = send(env, IDENTITY_SPOOFS, listener="https")
    for n in forwarded_names(doc):
        assert n not in ("x-auth-subject", "x-auth-scopes", "x-auth-issuer")


def test_configured_identity_header_names_are_stripped(procs):
    up = procs.upstream("HDR2")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      identity_headers={"sub": "X-User-Id", "scope": "X-User-Scopes",
                                        "tenant": "X-Tenant"})
    gw = procs.gateway(cfg)
    _, doc = send(gw, [("X-User-Id", "admin"), ("x-user-scopes", "all"), ("X_User_Id", "admin"),
                       ("X-TENANT", "acme"), ("X-Other", "kept")])
    names = forwarded_names(doc)
    assert "x-user-id" not in names and "x-user-scopes" not in names and "x-tenant" not in names
    assert echo_headers(doc, "X-Other") == ["kept"]


def test_hop_by_hop_headers_removed(env):
    _, doc = send(env, HOP_BY_HOP + [("Connection", "keep-alive, Upgrade, HTTP2-Settings, TE")])
    names = echo_header_names(doc)
    for h, _ in HOP_BY_HOP:
        assert h.lower() not in names, doc["headers"]


@pytest.mark.parametrize("connection", ["close, X-Foo", "X-Foo", "keep-alive,x-foo , X-Bar"])
def test_headers_named_in_connection_removed(env, connection):
    _, doc = send(env, [("Connection", connection), ("X-Foo", "1"), ("X-Bar", "2"), ("X-Keep", "3")])
    names = echo_header_names(doc)
    assert "x-foo" not in names, doc["headers"]
    if "bar" in connection.lower():
        assert "x-bar" not in names
    assert echo_headers(doc, "X-Keep") == ["3"]
    for v in echo_headers(doc, "Connection"):
        assert "x-foo" not in v.lower() and "x-bar" not in v.lower(), v


def test_connection_cannot_remove_gateway_headers(env):
    """Headers the gateway sets itself are added after the Connection-named ones are dropped."""
    _, doc = send(env, [("Connection", "X-Request-Id, X-Auth-Subject"),
                        ("X-Auth-Subject", "admin"), ("X-Request-Id", "rid-connection-1")])
    assert echo_headers(doc, "X-Forwarded-For") == ["127.0.0.1"]
    assert echo_headers(doc, "X-Forwarded-Proto") == ["http"]
    assert echo_headers(doc, "X-Request-Id") == ["rid-connection-1"]
    assert "x-auth-subject" not in echo_header_names(doc)


@pytest.mark.parametrize("nominated", ["X-Forwarded-For", "x-forwarded-proto", "Host", "X-Forwarded-Host"])
def test_connection_naming_forwarding_headers_is_refused(env, nominated):
    """Like Envoy, a Connection header that tries to remove Host or X-Forwarded-* is refused
    outright (400, JSON error) rather than honoured, and nothing is proxied."""
    resp = env.raw(http_get_raw("/h", host="api.example.com", headers=[("Connection", nominated)]))
    # The body is the gateway's own JSON error, so the request was never proxied.
    assert_json_error(resp.status, resp.headers, resp.body, 400, "invalid_request")


def test_authorization_passes_through_on_mode_none(env):
    _, doc = send(env, [("Authorization", "Bearer opaque-upstream-token")])
    assert echo_headers(doc, "Authorization") == ["Bearer opaque-upstream-token"]


def test_x_forwarded_headers_replaced_without_trusted_proxy(env):
    _, doc = send(env, [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8"),
                        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example")],
                  host="api.example.com")
    assert echo_headers(doc, "X-Forwarded-For") == ["127.0.0.1"]
    assert echo_headers(doc, "X-Forwarded-Proto") == ["http"]
    assert echo_headers(doc, "X-Forwarded-Host") == ["api.example.com"]


def test_x_forwarded_host_with_port(env):
    _, doc = send(env, [], host="api.example.com:8080")
    assert echo_headers(doc, "X-Forwarded-Host") in (["api.example.com:8080"], ["api.example.com"])


def test_x_forwarded_proto_https(env):
    _, doc = send(env, [("X-Forwarded-Proto", "http")], listener="https", host="localhost")
    assert echo_headers(doc, "X-Forwarded-Proto") == ["https"]
    assert echo_headers(doc, "X-Forwarded-For") == ["127.0.0.1"]


@pytest.fixture(scope="module")
def trusted(mod_procs):
    up = mod_procs.upstream("HDR-T")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      trusted_proxies=["127.0.0.1/32"])
    return mod_procs.gateway(cfg)


def _xff_list(doc):
    vals = echo_headers(doc, "X-Forwarded-For")
    assert len(vals) == 1, vals
    return [p.strip() for p in vals[0].split(",")]


@pytest.mark.parametrize("sent,want", [
    ([], ["127.0.0.1"]),
    (["1.2.3.4"], ["1.2.3.4", "127.0.0.1"]),
    (["1.1.1.1, 2.2.2.2"], ["1.1.1.1", "2.2.2.2", "127.0.0.1"]),
    (["1.1.1.1", "2.2.2.2"], ["1.1.1.1", "2.2.2.2", "127.0.0.1"]),
])
def test_x_forwarded_for_appended_behind_trusted_proxy(trusted, sent, want):
    _, doc = send(trusted, [("X-Forwarded-For", v) for v in sent])
    assert _xff_list(doc) == want


VALID_RID = re.compile(r"^[\x21-\x7e]{1,128}$")


@pytest.mark.parametrize("rid", ["abc-123", "A" * 128, "!#$%&'*+-.^_`|~:/=?@[]{}<>\"\\,;()"])
def test_valid_request_id_kept_and_echoed(env, rid):
    resp, doc = send(env, [("X-Request-Id", rid)])
    assert resp.headers_all("X-Request-Id") == [rid]
    assert echo_headers(doc, "X-Request-Id") == [rid]


@pytest.mark.parametrize("rid", ["A" * 129, "has space", "caf\xe9", "", "tab\there"])
def test_invalid_request_id_replaced(env, rid):
    resp, doc = send(env, [("X-Request-Id", rid)])
    got = resp.headers_all("X-Request-Id")
    assert len(got) == 1 and got[0] != rid and VALID_RID.match(got[0]), got
    assert echo_headers(doc, "X-Request-Id") == got


def test_generated_request_ids_are_unique(env):
    ids = set()
    for _ in range(5):
        resp, doc = send(env, [])
        rid = resp.header("X-Request-Id")
        assert rid and VALID_RID.match(rid)
        assert echo_headers(doc, "X-Request-Id") == [rid]
        ids.add(rid)
    assert len(ids) == 5


def test_request_id_echoed_on_gateway_errors(env):
    resp = env.raw(http_get_raw("/x%2fy", headers=[("X-Request-Id", "err-rid-1")]))
    assert resp.status == 400
    assert resp.header("X-Request-Id") == "err-rid-1"


def test_end_to_end_headers_and_body_preserved(env):
    body = bytes(range(256)) * 4
    resp, doc = send(env, [("X-Custom", "v1"), ("Accept", "application/json"),
                           ("Cookie", "a=b"), ("Content-Type", "application/octet-stream")],
                     method="POST", body=body, target="/h/post?x=1")
    assert doc["method"] == "POST" and doc["path"] == "/h/post?x=1"
    assert doc["body"].encode("latin-1") == body
    assert echo_headers(doc, "X-Custom") == ["v1"]
    assert echo_headers(doc, "Cookie") == ["a=b"]
