"""TLS listener: HSTS (conf/README.md §3.8) and HTTP/2 over TLS."""

import json
import subprocess

import pytest

from support.harness import RawConn, base_config, echo_headers, route, upstream_cfg

DEFAULT_HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("tls-up")
    cfg = base_config({"u": upstream_cfg(up)}, [route("app", "/app", "u")],
                      listeners=("http", "https"))
    cfg["listeners"]["https"] = {"http2": True}
    gw = mod_procs.gateway(cfg)
    return gw, up


def test_hsts_on_https_response(env):
    gw, _ = env
    r = gw.get("/app/x", listener="https")
    assert r.status_code == 200
    assert r.headers.get("Strict-Transport-Security") == DEFAULT_HSTS
    assert len(r.raw.headers.getlist("Strict-Transport-Security")) == 1


def test_hsts_on_https_error_response(env):
    gw, _ = env
    r = gw.get("/nope", listener="https")
    assert r.status_code == 404
    assert r.headers.get("Strict-Transport-Security") == DEFAULT_HSTS


def test_no_hsts_on_plain_http(env):
    gw, _ = env
    for path in ("/app/x", "/nope"):
        r = gw.get(path)
        assert "Strict-Transport-Security" not in r.headers, path


def test_https_forwarded_proto(env):
    gw, _ = env
    doc = gw.get("/app/x", listener="https").json()
    assert echo_headers(doc, "X-Forwarded-Proto") == ["https"]


def test_alpn_offers_h2(env):
    gw, _ = env
    with RawConn(gw.port("https"), tls=True, ca=gw.tls.ca, alpn=["h2", "http/1.1"]) as c:
        assert c.sock.selected_alpn_protocol() == "h2"


def _curl(gw, path, *extra):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(gw.tls.ca),
         "--resolve", f"localhost:{gw.port('https')}:127.0.0.1",
         "-D", "-", "-w", "\n%{http_version}", *extra,
         f"https://localhost:{gw.port('https')}{path}"],
        capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    head, _, rest = text.partition("\r\n\r\n")
    body, _, version = rest.rpartition("\n")
    return head, body, version.strip()


def test_http2_proxied(env):
    gw, up = env
    mark = up.count()
    head, body, version = _curl(gw, "/app/h2?q=1", "--http2")
    assert version == "2", head
    assert head.lower().startswith("http/2 200")
    assert "strict-transport-security: " + DEFAULT_HSTS.lower() in head.lower()
    doc = json.loads(body)
    assert doc["method"] == "GET" and doc["path"] == "/app/h2?q=1"
    assert echo_headers(doc, "X-Forwarded-Proto") == ["https"]
    assert len(up.since(mark)) == 1


def test_http2_post_body(env):
    gw, _ = env
    head, body, version = _curl(gw, "/app/post", "--http2", "--data-binary", "hello-h2")
    assert version == "2"
    doc = json.loads(body)
    assert doc["method"] == "POST" and doc["body"] == "hello-h2"


def test_http2_disabled_negotiates_http11(procs):
    up = procs.upstream("tls-h1")
    cfg = base_config({"u": upstream_cfg(up)}, [route("app", "/app", "u")], listeners=("https",))
    cfg["listeners"]["https"] = {"http2": False}
    gw = procs.gateway(cfg)
    head, body, version = _curl(gw, "/app/x", "--http2")
    assert version == "1.1"
    assert json.loads(body)["path"] == "/app/x"


def test_hsts_custom_and_disabled(procs):
    up = procs.upstream("tls-hsts")
    cfg = base_config({"u": upstream_cfg(up)}, [route("app", "/app", "u")], listeners=("https",),
                      hsts={"enabled": True, "max_age": 600, "include_subdomains": False,
                            "preload": True})
    gw = procs.gateway(cfg)
    r = gw.get("/app/x", listener="https")
    assert r.headers.get("Strict-Transport-Security") == "max-age=600; preload"

    cfg2 = base_config({"u": upstream_cfg(up)}, [route("app", "/app", "u")], listeners=("https",),
                       hsts={"enabled": False})
    gw2 = procs.gateway(cfg2)
    r = gw2.get("/app/x", listener="https")
    assert r.status_code == 200
    assert "Strict-Transport-Security" not in r.headers

