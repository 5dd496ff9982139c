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
    ("P1", "//admin", ("ADMIN", "/admin")),
    ("P1", "/./admin", ("ADMIN", "/admin")),
    ("P1", "/public/../admin", ("ADMIN", "/admin")),
    ("P1", "/public/%2e%2e/admin", ("ADMIN", "/admin")),
    ("P1", "/public/%2E%2e/admin", ("ADMIN", "/admin")),
    ("P1", "/%2e/admin", ("ADMIN", "/admin")),
    ("P1", "/public/./../admin", ("ADMIN", "/admin")),
    ("P1", "/public/%2e/../admin", ("ADMIN", "/admin")),
    ("P1", "///public//..//admin", ("ADMIN", "/admin")),
    ("P1", "/../admin", {("ADMIN", "/admin"), REJECT}),
    ("P1", "/public/..", {("ROOT", "/"), REJECT}),
    ("P1", "/admin/../public/x", ("PUBLIC", "/public/x")),
    ("P1", "/admin/..%2fpublic", REJECT),
    # P2: trailing slash / merge
    ("P2", "/admin/", ("ADMIN", "/admin/")),
    ("P2", "/admin/.", ("ADMIN", "/admin/")),
    ("P2", "/admin//x", ("ADMIN", "/admin/x")),
    ("P2", "/admin/x/..", ("ADMIN", "/admin/")),
    # P3: decode unreserved once; %25 never decoded; encoded non-ASCII refused
    ("P3", "/%61dmin", ("ADMIN", "/admin")),
    ("P3", "/%61%64%6D%69%6E/x", ("ADMIN", "/admin/x")),
    ("P3", "/%2561dmin", {("ROOT", "/%2561dmin"), REJECT}),
    ("P3", "/%C0%AEadmin", REJECT),
    ("P3", "/%7Euser/%41-%5F", ("ROOT", "/~user/A-_")),
    ("P3", "/x%3Ay", ("ROOT", "/x%3Ay")),
    ("P3", "/x%3ay", {("ROOT", "/x%3ay"), ("ROOT", "/x%3Ay")}),
    ("P3", "/x%40y%2By%21", ("ROOT", "/x%40y%2By%21")),
    ("P3", "/x%2", REJECT),
    ("P3", "/x%", REJECT),
    ("P3", "/x%zz", REJECT),
    ("P3", "/x%g1", REJECT),
    # P4: matching is case-sensitive
    ("P4", "/ADMIN", ("ROOT", "/ADMIN")),
    ("P4", "/Admin/x", ("ROOT", "/Admin/x")),
    # P5: ';' path parameters
    ("P5", "/admin;jsessionid=x", REJECT),
    ("P5", "/admin;/x", REJECT),
    ("P5", "/public;/../admin", REJECT),
    ("P5", "/public/x;", REJECT),
    # P6: encoded slash / backslash
    ("P6", "/public%2fadmin", REJECT),
    ("P6", "/public%2Fadmin", REJECT),
    ("P6", "/admin%2f", REJECT),
    ("P6", "/public%5c..%5cadmin", REJECT),
    ("P6", "/admin%5C", REJECT),
    # P7: raw backslash
    ("P7", "/public\\..\\admin", REJECT),
    ("P7", "/admin\\", REJECT),
    # P8: raw NUL / control / space / tab / DEL in the target
    ("P8", "/admin\x00", REJECT),
    ("P8", "/admin\x01x", REJECT),
    ("P8", "/admin\tx", REJECT),
    ("P8", "/admin\x7f", REJECT),
    ("P8", "/public /../admin", REJECT),
    ("P8", "/x%20y", REJECT),
    # P9: encoded controls
    ("P9", "/admin%00", REJECT),
    ("P9", "/admin%0a", REJECT),
    ("P9", "/admin%0d", REJECT),
    ("P9", "/admin%0D%0AX-Injected:%201", REJECT),
    ("P9", "/admin%09", REJECT),
    ("P9", "/admin%1f", REJECT),
    ("P9", "/admin%7f", REJECT),
    ("P9", "/admin%7F", REJECT),
    # P11: fragments and query tricks
    # Pingora drops a fragment while parsing the request line, before the gateway sees it, so
    # the contract's 400 is not possible; what matters is that it is never forwarded.
    ("P11", "/admin#x", ("ADMIN", "/admin")),
    ("P11", "/admin?", {("ADMIN", "/admin?"), ("ADMIN", "/admin")}),
    ("P11", "/admin%3F", ("ROOT", "/admin%3F")),
    ("P11", "/admin%3Fx", ("ROOT", "/admin%3Fx")),
    ("P11", "/admin?x=/../public", ("ADMIN", "/admin?x=/../public")),
    ("P11", "/public?x=/../admin", ("PUBLIC", "/public?x=/../admin")),
    ("P11", "/public/..?x=%2F;", {("ROOT", "/?x=%2F;"), REJECT}),
    ("P11", "/admin?q=%00", ("ADMIN", "/admin?q=%00")),
    # P12: absolute-form and friends
    ("P12", "http://internal.local/admin", REJECT),
    ("P12", "https://example.com/admin", REJECT),
    ("P12", "//internal/admin", ("ROOT", "/internal/admin")),
    # P13: non-ASCII, raw or encoded
    ("P13", "/admin\xc3\xa9", REJECT),
    ("P13", "/\xff", REJECT),
    ("P13", "/admin%C3%A9", REJECT),
    ("P13", "/admin%80", REJECT),
    ("P13", "/admin%ff", REJECT),
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
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw("/admin", method=method))
    assert resp.status in (400, 405), resp.status
    assert _total(ups) == before


@pytest.mark.parametrize("target", ["http://internal.local/admin", "/\xff"])
def test_targets_pingora_refuses_while_parsing(env, target):
    """Absolute-form targets whose authority disagrees with Host, and raw bytes Pingora cannot
    parse, are refused by Pingora itself with a bare 400 (README "Known limits"): the status is
    the contract's, the body is not, and nothing reaches an upstream."""
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw(target))
    assert resp.status == 400, resp.status
    assert _total(ups) == before


def test_connect_rejected(env):
    gw, ups = env
    before = _total(ups)
    for target in ("internal:443", "example.com:443", "/admin"):
        resp = gw.raw(http_get_raw(target, method="CONNECT"))
        assert resp.status == 400, (target, resp.status)
    assert _total(ups) == before


def test_options_asterisk_answered_locally(env):
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw("*", method="OPTIONS"))
    assert resp.status == 200
    assert resp.header("Allow"), resp.headers
    assert _total(ups) == before


def test_options_on_a_path_is_proxied(env):
    check(env, "/admin/x", ("ADMIN", "/admin/x"), method="OPTIONS")


def test_duplicate_host_rejected(env):
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw("/admin", host="example.com", headers=[("Host", "evil.com")]))
    assert resp.status == 400
    assert _total(ups) == before


def test_missing_host_rejected(env):
    """RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400."""
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw("/admin", host=None))
    assert resp.status == 400
    assert _total(ups) == before


@pytest.mark.parametrize("host", ["exa mple.com", "user@example.com", "example.com:abc", ""])
def test_malformed_host_rejected(env, host):
    """conf/HARDENING.md HH1: a Host with a space, userinfo, a bad port, or empty is refused."""
    gw, ups = env
    before = _total(ups)
    resp = gw.raw(http_get_raw("/admin", host=host))
    assert resp.status == 400, resp.status
    assert _total(ups) == before


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
