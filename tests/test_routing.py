"""Route selection (conf/README.md §3.3, "Routing order"), 404/405, strip_prefix."""

import pytest

from support.harness import assert_json_error, base_config, route, upstream_cfg


@pytest.fixture(scope="module")
def env(mod_procs):
    ups = {n: mod_procs.upstream(n) for n in ("A", "B", "C", "D")}
    upstreams = {n: upstream_cfg(u) for n, u in ups.items()}
    routes = [
        # Wildcard and host-less routes come first in the file: precedence must not be file order.
        route("h-wild", "/h", "B", host="*.example.com"),
        route("h-any", "/h", "C"),
        route("h-exact", "/h", "A", host="api.example.com"),
        route("api", "/api", "A"),
        route("api-v2", "/api/v2", "B"),
        route("users", "/users", "C"),
        route("m-get", "/m", "A", methods=["GET"]),
        route("m-post", "/m", "B", methods=["POST"]),
        route("m-many", "/m", "C", methods=["GET", "POST", "PUT"]),
        route("lp", "/lp", "B", methods=["GET"]),
        route("lp-deep", "/lp/deep", "A", methods=["POST"]),
        route("strip", "/strip", "D", strip_prefix=True),
        route("anym", "/anym", "D"),
        route("hostonly", "/ho", "D", host="only.example.org"),
    ]
    gw = mod_procs.gateway(base_config(upstreams, routes))
    return gw


def peer(gw, path, method="GET", host="example.net", **kw):
    r = gw.request(method, path, headers={"Host": host}, **kw)
    assert r.status_code == 200, (path, method, host, r.status_code, r.text)
    return r.json()["peer"]


@pytest.mark.parametrize("host,want", [
    ("api.example.com", "A"),        # exact beats wildcard and host-less
    ("foo.example.com", "B"),        # wildcard beats host-less
    ("other.org", "C"),              # host-less matches any host
    ("example.com", "C"),            # "*.example.com" does not match the bare domain
])
def test_host_precedence(env, host, want):
    assert peer(env, "/h/x", host=host) == want


def test_host_with_port_matches(env):
    assert peer(env, "/h/x", host="api.example.com:8080") == "A"
    assert peer(env, "/h/x", host="foo.example.com:8080") == "B"


def test_host_only_route_needs_its_host(env):
    assert peer(env, "/ho/x", host="only.example.org") == "D"
    r = env.get("/ho/x", headers={"Host": "else.example.org"})
    assert_json_error(r.status_code, r.headers, r.content, 404, "not_found")


@pytest.mark.parametrize("path,want", [
    ("/api", "A"),
    ("/api/v1", "A"),
    ("/api/v2", "B"),
    ("/api/v2/", "B"),
    ("/api/v2/x/y", "B"),
    ("/api/v2x", "A"),               # segment-aware: /api/v2 does not match /api/v2x
    ("/api?x=/api/v2", "A"),         # route on the path only
])
def test_longest_prefix(env, path, want):
    assert peer(env, path) == want


def test_segment_aware_prefix(env):
    assert peer(env, "/users") == "C"
    assert peer(env, "/users/1") == "C"
    r = env.get("/usersx")
    assert_json_error(r.status_code, r.headers, r.content, 404, "not_found")


def test_no_route_is_json_404(env):
    r = env.get("/zzz")
    assert_json_error(r.status_code, r.headers, r.content, 404, "not_found")
    r = env.get("/")
    assert r.status_code == 404


@pytest.mark.parametrize("method,want", [("GET", "A"), ("POST", "B"), ("PUT", "C")])
def test_first_route_by_order_among_equal_prefixes(env, method, want):
    assert peer(env, "/m/x", method=method) == want


def _allow_set(value):
    assert value, "Allow header missing"
    parts = [p.strip() for p in value.split(",")]
    assert all(p and p == p.upper() and " " not in p for p in parts), value
    return set(parts)


def test_405_allow_lists_union(env):
    r = env.request("DELETE", "/m/x")
    assert_json_error(r.status_code, r.headers, r.content, 405, "method_not_allowed")
    assert _allow_set(r.headers.get("Allow")) == {"GET", "POST", "PUT"}


def test_405_on_longest_prefix_does_not_fall_back(env):
    """The longest prefix decides; a shorter route with the method does not take over."""
    r = env.get("/lp/deep/x")
    assert r.status_code == 405, r.text
    assert _allow_set(r.headers.get("Allow")) == {"POST"}
    assert peer(env, "/lp/deep/x", method="POST") == "A"
    assert peer(env, "/lp/x") == "B"


def test_405_not_proxied(env, mod_procs):
    ups = {u.name: u for u in mod_procs.upstreams}
    marks = {n: u.count() for n, u in ups.items()}
    env.request("PATCH", "/m/x")
    assert all(ups[n].count() == marks[n] for n in ups)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_route_without_methods_takes_any_standard_method(env, method):
    r = env.request(method, "/anym/x", data=b"abc" if method in ("POST", "PUT", "PATCH") else None)
    assert r.status_code == 200
    doc = r.json()
    assert doc["method"] == method
    if method in ("POST", "PUT", "PATCH"):
        assert doc["body"] == "abc"


def test_head_request(env):
    r = env.request("HEAD", "/anym/x")
    assert r.status_code == 200
    assert r.content == b""


@pytest.mark.parametrize("path,forwarded", [
    ("/strip/1", "/1"),
    ("/strip/1/2?x=y", "/1/2?x=y"),
    ("/strip", "/"),
    ("/strip/", "/"),
    ("/strip?x=1", "/?x=1"),
])
def test_strip_prefix(env, path, forwarded):
    r = env.get(path)
    assert r.status_code == 200
    assert r.json()["path"] == forwarded


def test_without_strip_prefix_path_forwarded_unchanged(env):
    r = env.get("/users/1?a=%2F&b=%20c")
    assert r.json()["path"] == "/users/1?a=%2F&b=%20c"
