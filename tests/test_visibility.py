"""Internal routes and allow_cidrs answer exactly the no-route 404 (conf/README.md §3.3,
"Listeners"; conf/HARDENING.md §3.2 P14), trusted proxies and the client IP."""

import re

import pytest

from support.harness import assert_json_error, base_config, http_get_raw, route, upstream_cfg

RID = "same-request-id-0123"


@pytest.fixture(scope="module")
def env(mod_procs):
    pub = mod_procs.upstream("PUB")
    internal = mod_procs.upstream("INT")
    cfg = base_config(
        {"pub": upstream_cfg(pub), "int": upstream_cfg(internal)},
        [
            route("pub", "/pub", "pub"),
            route("int", "/internal", "int", visibility="internal"),
            route("int-get", "/intget", "int", methods=["GET"], visibility="internal"),
            route("restricted", "/restricted", "pub", allow_cidrs=["10.0.0.0/8"]),
            route("allowed", "/allowed", "pub", allow_cidrs=["127.0.0.0/8"]),
        ],
        listeners=("http", "internal"),
    )
    return mod_procs.gateway(cfg), pub, internal


def _req(gw, target, method="GET", host="example.com", listener="http", extra=()):
    return gw.raw(http_get_raw(target, method=method, host=host,
                               headers=[("X-Request-Id", RID), *extra]), listener=listener)


def _comparable(resp, *paths):
    headers = sorted((k.lower(), v) for k, v in resp.headers
                     if k.lower() not in ("date", "content-length"))
    body = resp.body
    # A description naming the requested path reveals nothing; mask it so only the rest counts.
    for p in sorted(set(paths), key=len, reverse=True):
        body = body.replace(p.encode(), b"<path>")
    return resp.status, headers, body


def assert_same_as_no_route(gw, target, method="GET", host="example.com", listener="http",
                            extra=(), canonical=None):
    hidden = _req(gw, target, method, host, listener, extra)
    query = target[target.index("?"):] if "?" in target else ""
    baseline = _req(gw, "/no-such-route" + query, method, host, listener, extra)
    assert baseline.status == 404
    path = target.split("?")[0]
    h = _comparable(hidden, target, path, canonical or path)
    b = _comparable(baseline, "/no-such-route" + query, "/no-such-route")
    assert h == b, (f"{method} {target!r} Host {host}: differs from the no-route 404\n"
                    f"{hidden.raw!r}\n{baseline.raw!r}")
    assert int(hidden.header("Content-Length") or len(hidden.body)) == len(hidden.body)


P1_VARIANTS = [("/internal", "/internal"), ("/internal/x", "/internal/x"),
               ("/internal/", "/internal/"), ("//internal/x", "/internal/x"),
               ("/./internal/x", "/internal/x"), ("/pub/../internal/x", "/internal/x"),
               ("/pub/%2e%2e/internal/x", "/internal/x"), ("/%69nternal/x", "/internal/x"),
               ("/internal/x?y=1", "/internal/x")]


@pytest.mark.parametrize("target,canonical", P1_VARIANTS, ids=[t for t, _ in P1_VARIANTS])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_internal_route_hidden_on_public_listener(env, target, canonical, method):
    gw, _, internal = env
    mark = internal.count()
    assert_same_as_no_route(gw, target, method, canonical=canonical)
    assert internal.since(mark) == []


@pytest.mark.parametrize("host", ["internal.svc", "localhost"])
def test_internal_route_hidden_for_any_host(env, host):
    gw, _, internal = env
    mark = internal.count()
    assert_same_as_no_route(gw, "/internal/x", host=host,
                            extra=[("Authorization", "Bearer a.b.c")])
    assert internal.since(mark) == []


def test_internal_route_method_mismatch_is_404_not_405(env):
    gw, _, _ = env
    assert_same_as_no_route(gw, "/intget/x", "POST")


def test_no_route_404_shape(env):
    gw, _, _ = env
    resp = _req(gw, "/no-such-route")
    assert_json_error(resp.status, resp.headers, resp.body, 404, "not_found")
    assert resp.header("X-Request-Id") == RID


def test_internal_route_served_on_internal_listener(env):
    gw, _, internal = env
    resp = _req(gw, "/internal/x", listener="internal")
    assert resp.status == 200
    doc = resp.json()
    assert (doc["peer"], doc["path"]) == ("INT", "/internal/x")
    resp = _req(gw, "/pub/../internal/y", listener="internal")
    assert resp.status == 200 and resp.json()["path"] == "/internal/y"


def test_public_route_served_on_internal_listener(env):
    gw, _, _ = env
    resp = _req(gw, "/pub/x", listener="internal")
    assert resp.status == 200 and resp.json()["peer"] == "PUB"


def test_allow_cidrs_refuses_with_no_route_404(env):
    gw, pub, _ = env
    mark = pub.count()
    for listener in ("http", "internal"):
        assert_same_as_no_route(gw, "/restricted/x", listener=listener)
    assert pub.since(mark) == []


def test_allow_cidrs_admits_matching_ip(env):
    gw, _, _ = env
    resp = _req(gw, "/allowed/x")
    assert resp.status == 200 and resp.json()["path"] == "/allowed/x"


def test_untrusted_peer_cannot_spoof_x_forwarded_for(env):
    gw, _, _ = env
    assert_same_as_no_route(gw, "/restricted/x", extra=[("X-Forwarded-For", "10.1.2.3")])


@pytest.fixture(scope="module")
def behind_proxy(mod_procs):
    up = mod_procs.upstream("TP")
    cfg = base_config(
        {"u": upstream_cfg(up)},
        [route("restricted", "/restricted", "u", allow_cidrs=["10.0.0.0/8"])],
        trusted_proxies=["127.0.0.1/32"],
    )
    return mod_procs.gateway(cfg)


@pytest.mark.parametrize("xff,allowed", [
    (["10.1.2.3"], True),
    (["10.1.2.3, 127.0.0.1"], True),            # trusted hops are skipped
    (["192.168.1.1, 10.1.2.3"], True),          # rightmost untrusted entry decides
    (["10.1.2.3, 192.168.1.1"], False),
    (["10.1.2.3", "192.168.1.1"], False),       # several header lines form one list
    ([], False),                                # no XFF: the trusted peer itself (127.0.0.1)
])
def test_client_ip_behind_trusted_proxy(behind_proxy, xff, allowed):
    gw = behind_proxy
    resp = gw.raw(http_get_raw("/restricted/x", headers=[("X-Forwarded-For", v) for v in xff]))
    if allowed:
        assert resp.status == 200, resp.raw
    else:
        assert resp.status == 404, resp.raw


def test_garbage_x_forwarded_for_does_not_grant_access(behind_proxy):
    for v in ("not-an-ip", "10.1.2.3 garbage", ""):
        resp = behind_proxy.raw(http_get_raw("/restricted/x", headers=[("X-Forwarded-For", v)]))
        assert resp.status in (404, 400), (v, resp.status)
