"""HTTP -> HTTPS redirect listener (conf/README.md §3.2, "Redirect"; conf/HARDENING.md §3.3 HH3)."""

import pytest

from support.harness import base_config, echo_headers, route, upstream_cfg, http_get_raw


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("redir-up")
    cfg = base_config(
        {"u": upstream_cfg(up)},
        [route("all", "/", "u")],
        listeners=("http", "https"),
    )
    gw = mod_procs.gateway(cfg, start=False)
    # The redirect points at the real HTTPS listener of this gateway.
    gw.config["https_redirect"] = {"enabled": True, "status": 308,
                                   "https_port": gw.port("https"),
                                   "exempt_paths": ["/.well-known/acme-challenge/"]}
    gw.write_config()
    gw.start()
    return gw, up


def test_get_redirected_with_exact_location(env):
    gw, up = env
    mark = up.count()
    r = gw.get("/a/b?x=1&y=%2F", headers={"Host": "example.com:8080"})
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://example.com:{gw.port('https')}/a/b?x=1&y=%2F"
    assert up.since(mark) == []


def test_host_without_port(env):
    gw, up = env
    r = gw.get("/p", headers={"Host": "api.example.com"})
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://api.example.com:{gw.port('https')}/p"


def test_post_with_query_and_body_redirected_not_proxied(env):
    gw, up = env
    mark = up.count()
    r = gw.request("POST", "/orders?dry_run=1&x=%20y", data=b"payload=1",
                   headers={"Host": "example.com"})
    assert r.status_code == 308
    assert r.headers["Location"] == f"https://example.com:{gw.port('https')}/orders?dry_run=1&x=%20y"
    assert up.since(mark) == []


def test_location_uses_canonical_path_and_raw_query(env):
    gw, up = env
    resp = gw.raw(http_get_raw("/a/./b//c/../d?q=%2e%2e&r=/../x", host="example.com"))
    assert resp.status == 308
    assert resp.header("Location") == f"https://example.com:{gw.port('https')}/a/b/d?q=%2e%2e&r=/../x"


def test_double_slash_path_cannot_become_open_redirect(env):
    gw, _ = env
    resp = gw.raw(http_get_raw("//evil.com/x", host="example.com"))
    assert resp.status in (308, 400)
    if resp.status == 308:
        assert resp.header("Location") == f"https://example.com:{gw.port('https')}/evil.com/x"


def test_hygiene_runs_before_redirect(env):
    gw, up = env
    mark = up.count()
    resp = gw.raw(http_get_raw("/x%0d%0aSet-Cookie:%20a=b", host="example.com"))
    assert resp.status == 400
    assert resp.headers_all("Set-Cookie") == []
    assert resp.header("Location") is None
    resp = gw.raw(http_get_raw("/a%2Fb", host="example.com"))
    assert resp.status == 400
    assert up.since(mark) == []


def test_authorization_not_needed_nor_forwarded_on_redirect(env):
    gw, up = env
    mark = up.count()
    r = gw.get("/secure?access_token=abc", headers={"Host": "example.com",
                                                    "Authorization": "Bearer secret.token.value"})
    assert r.status_code == 308
    assert up.since(mark) == []


def test_exempt_acme_path_is_proxied(env):
    gw, up = env
    mark = up.count()
    r = gw.get("/.well-known/acme-challenge/x", headers={"Host": "example.com"})
    assert r.status_code == 200, r.text
    assert "Location" not in r.headers
    doc = r.json()
    assert doc["path"] == "/.well-known/acme-challenge/x"
    got = up.since(mark)
    assert len(got) == 1 and got[0]["path"] == "/.well-known/acme-challenge/x"
    assert echo_headers(doc, "X-Forwarded-Proto") == ["http"]


def test_https_listener_does_not_redirect(env):
    gw, _ = env
    r = gw.get("/a", listener="https")
    assert r.status_code == 200
    assert r.json()["path"] == "/a"


def test_default_https_port_is_omitted(procs):
    up = procs.upstream("redir443")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      https_redirect={"enabled": True, "https_port": 443})
    gw = procs.gateway(cfg)
    r = gw.get("/x?y=1", headers={"Host": "example.com:8080"})
    assert r.status_code == 308
    assert r.headers["Location"] == "https://example.com/x?y=1"


def test_configured_status_is_used(procs):
    up = procs.upstream("redir301")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      https_redirect={"enabled": True, "status": 301, "https_port": 8443})
    gw = procs.gateway(cfg)
    r = gw.get("/x", headers={"Host": "example.com"})
    assert r.status_code == 301
    assert r.headers["Location"] == "https://example.com:8443/x"
    assert up.count() == 0
