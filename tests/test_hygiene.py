"""Request hygiene and path canonicalisation (conf/README.md §3.1; conf/HARDENING.md §3.2 P1-P13,
§3.3 HH1).

Every row is sent byte-for-byte over a raw socket. The outcome is either 400, or the request is
routed by its canonical path AND the upstream receives exactly that canonical path: the path that
is routed is the path that is forwarded.
"""

import pytest

from support.harness import assert_json_error, base_config, http_get_raw, route, upstream_cfg

REJECT = "400"


@pytest.fixture(scope="module")
def env(mod_procs):
    ups = {n: mod_procs.upstream(n) for n in ("ADMIN", "PUBLIC", "ROOT")}
    cfg = base_config(
        {n: upstream_cfg(u) for n, u in ups.items()},
        [route("admin", "/admin", "ADMIN"), route("public", "/public", "PUBLIC"),
         route("root", "/", "ROOT")],
    )
    return mod_procs.gateway(cfg), ups


def _total(ups):
    return sum(u.count() for u in ups.values())


def send_unforwarded(env, raw: bytes):
    """Sends `raw` and returns the response, checking that no upstream received anything."""
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(raw)
    assert _total(ups) == before, f"{raw[:80]!r}: an upstream received it (status {resp.status})"
    return resp


def rows(row: str, expected, *targets: str) -> list:
    """CANONICAL rows: every one of `targets` must have the outcome `expected`."""
    return [(row, target, expected) for target in targets]


def as_sent(row: str, peer: str, *targets: str) -> list:
    """CANONICAL rows of targets that are already canonical: routed to `peer` and forwarded
    byte for byte as sent."""
    return [(row, target, (peer, target)) for target in targets]


def check(env, target, expected, method="GET", host="example.com", headers=()):
    """expected: REJECT, (peer, forwarded_target), or a set of those alternatives."""
    gw, ups = env
    before = {n: u.count() for n, u in ups.items()}
    resp = gw.raw(http_get_raw(target, method=method, host=host, headers=headers))
    alts = expected if isinstance(expected, set) else {expected}
    if resp.status == 400:
        assert REJECT in alts, f"{target!r}: 400 but expected {expected}; body={resp.body!r}"
        after = {n: u.count() for n, u in ups.items()}
        assert after == before, f"{target!r}: rejected but the upstream received it"
        return resp
    assert resp.status == 200, f"{target!r}: status {resp.status} (expected {expected}); body={resp.body[:300]!r}"
    doc = resp.json()
    got = (doc["peer"], doc["path"])
    assert got in alts, f"{target!r}: routed/forwarded as {got}, expected {expected}"
    return resp


CANONICAL = [
    # P1: dot segments, merged slashes, encoded dots
    *rows("P1", ("ADMIN", "/admin"), "//admin", "/./admin", "/public/../admin",
          "/public/%2e%2e/admin", "/public/%2E%2e/admin", "/%2e/admin", "/public/./../admin",
          "/public/%2e/../admin", "///public//..//admin"),
    ("P1", "/../admin", {("ADMIN", "/admin"), REJECT}),
    ("P1", "/public/..", {("ROOT", "/"), REJECT}),
    ("P1", "/admin/../public/x", ("PUBLIC", "/public/x")),
    ("P1", "/admin/..%2fpublic", REJECT),
    # P2: trailing slash / merge
    *rows("P2", ("ADMIN", "/admin/"), "/admin/", "/admin/.", "/admin/x/.."),
    ("P2", "/admin//x", ("ADMIN", "/admin/x")),
    # P3: decode unreserved once; %25 never decoded; encoded non-ASCII refused
    ("P3", "/%61dmin", ("ADMIN", "/admin")),
    ("P3", "/%61%64%6D%69%6E/x", ("ADMIN", "/admin/x")),
    ("P3", "/%2561dmin", {("ROOT", "/%2561dmin"), REJECT}),
    ("P3", "/%7Euser/%41-%5F", ("ROOT", "/~user/A-_")),
    *as_sent("P3", "ROOT", "/x%3Ay", "/x%40y%2By%21"),
    ("P3", "/x%3ay", {("ROOT", "/x%3ay"), ("ROOT", "/x%3Ay")}),
    *rows("P3", REJECT, "/%C0%AEadmin", "/x%2", "/x%", "/x%zz", "/x%g1"),
    # P4: matching is case-sensitive
    *as_sent("P4", "ROOT", "/ADMIN", "/Admin/x"),
    # P5: ';' path parameters
    *rows("P5", REJECT, "/admin;jsessionid=x", "/admin;/x", "/public;/../admin", "/public/x;"),
    # P6: encoded slash / backslash
    *rows("P6", REJECT, "/public%2fadmin", "/public%2Fadmin", "/admin%2f", "/public%5c..%5cadmin",
          "/admin%5C"),
    # P7: raw backslash
    *rows("P7", REJECT, "/public\\..\\admin", "/admin\\"),
    # P8: raw NUL / control / space / tab / DEL in the target
    *rows("P8", REJECT, "/admin\x00", "/admin\x01x", "/admin\tx", "/admin\x7f", "/public /../admin",
          "/x%20y"),
    # P9: encoded controls
    *rows("P9", REJECT, "/admin%00", "/admin%0a", "/admin%0d", "/admin%0D%0AX-Injected:%201",
          "/admin%09", "/admin%1f", "/admin%7f", "/admin%7F"),
    # P11: fragments and query tricks
    # Pingora drops a fragment while parsing the request line, before the gateway sees it, so
    # the contract's 400 is not possible; what matters is that it is never forwarded.
    ("P11", "/admin#x", ("ADMIN", "/admin")),
    ("P11", "/admin?", {("ADMIN", "/admin?"), ("ADMIN", "/admin")}),
    *as_sent("P11", "ROOT", "/admin%3F", "/admin%3Fx"),
    *as_sent("P11", "ADMIN", "/admin?x=/../public", "/admin?q=%00"),
    *as_sent("P11", "PUBLIC", "/public?x=/../admin"),
    ("P11", "/public/..?x=%2F;", {("ROOT", "/?x=%2F;"), REJECT}),
    # P12: absolute-form and friends
    *rows("P12", REJECT, "http://internal.local/admin", "https://example.com/admin"),
    ("P12", "//internal/admin", ("ROOT", "/internal/admin")),
    # P13: non-ASCII, raw or encoded
    *rows("P13", REJECT, "/admin\xc3\xa9", "/\xff", "/admin%C3%A9", "/admin%80", "/admin%ff"),
]


@pytest.mark.parametrize("row,target,expected", CANONICAL,
                         ids=[f"{r}:{t!r}" for r, t, _ in CANONICAL])
def test_canonical_path(env, row, target, expected):
    check(env, target, expected)


def test_hygiene_400_is_json(env):
    gw, _ = env
    for target in ("/public%2fadmin", "/admin;x", "/x%00", "/%C3%A9", "/x%zz"):
        resp = gw.raw(http_get_raw(target))
        assert_json_error(resp.status, resp.headers, resp.body, 400, "invalid_request")


@pytest.mark.parametrize("target,method", [
    ("example.com:443", "CONNECT"),
])
def test_parser_level_rejections_use_the_error_shape(env, target, method):
    """Requests refused while the head is parsed still get the contract's JSON error."""
    gw, _ = env
    resp = gw.raw(http_get_raw(target, method=method))
    assert_json_error(resp.status, resp.headers, resp.body, 400, "invalid_request")


@pytest.mark.parametrize("method", ["get", "GeT", "delete", "FOO", "PROPFIND"])
def test_nonstandard_methods_refused(env, method):
    resp = send_unforwarded(env, http_get_raw("/admin", method=method))
    assert resp.status in (400, 405), resp.status


@pytest.mark.parametrize("target", ["http://internal.local/admin", "/\xff"])
def test_targets_pingora_refuses_while_parsing(env, target):
    """Absolute-form targets whose authority disagrees with Host, and raw bytes Pingora cannot
    parse, are refused by Pingora itself with a bare 400 (README "Known limits"): the status is
    the contract's, the body is not, and nothing reaches an upstream."""
    resp = send_unforwarded(env, http_get_raw(target))
    assert resp.status == 400, resp.status


def test_connect_rejected(env):
    for target in ("internal:443", "example.com:443", "/admin"):
        resp = send_unforwarded(env, http_get_raw(target, method="CONNECT"))
        assert resp.status == 400, (target, resp.status)


def test_options_asterisk_answered_locally(env):
    resp = send_unforwarded(env, http_get_raw("*", method="OPTIONS"))
    assert resp.status == 200
    assert resp.header("Allow"), resp.headers


def test_options_on_a_path_is_proxied(env):
    check(env, "/admin/x", ("ADMIN", "/admin/x"), method="OPTIONS")


def test_duplicate_host_rejected(env):
    resp = send_unforwarded(env, http_get_raw("/admin", host="example.com",
                                              headers=[("Host", "evil.com")]))
    assert resp.status == 400


def test_missing_host_rejected(env):
    """RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400."""
    resp = send_unforwarded(env, http_get_raw("/admin", host=None))
    assert resp.status == 400


@pytest.mark.parametrize("host", ["exa mple.com", "user@example.com", "example.com:abc", ""])
def test_malformed_host_rejected(env, host):
    """conf/HARDENING.md HH1: a Host with a space, userinfo, a bad port, or empty is refused."""
    resp = send_unforwarded(env, http_get_raw("/admin", host=host))
    assert resp.status == 400, resp.status


def test_keepalive_connection_survives_canonicalisation(env):
    """Two requests on one connection: each is canonicalised on its own."""
    from support.harness import RawConn
    gw, _ = env
    with RawConn(gw.port("http")) as c:
        c.send(http_get_raw("/public/../admin", close=False))
        r1 = c.read_response()
        c.send(http_get_raw("/public/x", close=True))
        r2 = c.read_response()
    assert (r1.status, r1.json()["path"], r1.json()["peer"]) == (200, "/admin", "ADMIN")
    assert (r2.status, r2.json()["path"], r2.json()["peer"]) == (200, "/public/x", "PUBLIC")
