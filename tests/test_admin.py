"""The admin API's own contract (conf/README.md §4): who may call it, where it is served, how it
answers bad requests, and the shape of `/admin/status`.

- `/admin/*` needs `Authorization: Bearer <admin token>` (env `PORTCULLIS_ADMIN_TOKEN` by default,
  or `admin.token_file`); a missing, wrong or almost-right token gets 401 (403 accepted), and with
  no token configured every `/admin/*` request gets 403. `/healthz` and `/readyz` need no token.
- Admin paths exist only on the admin listener: the public and metrics listeners answer 404.
- A bad body answers 400 `invalid_request` with `error_description` `"<field>: <problem>"`; a body
  over 64 KiB answers 413 (declared or chunked).
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, metric_value, wait_ready,
                               write_jwks)
from support.harness import (RawConn, assert_json_error, base_config, route, upstream_cfg,
                             wait_for)
from support.jwt import SigningKey, make_token, std_claims

CORP = "https://id.test"

# Every admin endpoint with a harmless body (a revocation of a jti nobody uses).
ENDPOINTS = [
    ("GET", "/admin/status", None),
    ("GET", "/admin/revocations", None),
    ("POST", "/admin/revocations", {"iss": CORP, "jti": "unauthorised-attempt"}),
    ("DELETE", "/admin/revocations", {"iss": CORP, "jti": "unauthorised-attempt"}),
    ("POST", "/admin/reload", None),
]


class Env:
    def __init__(self, gw, up, key):
        self.gw, self.up, self.key = gw, up, key
        self.admin = Admin(gw)


def config(procs, up, key, name: str, **top) -> dict:
    jwks_path = write_jwks(procs.dir / f"{name}-jwks.json", key)
    routes = [route("api", "/api", "echo", auth={"mode": "required"})]
    return base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                       providers=[file_provider("corp", CORP, jwks_path)],
                       revocation={"store": "memory"}, **top)


@pytest.fixture(scope="module")
def env(mod_procs) -> Env:
    key = SigningKey("ES256", "es1")
    up = mod_procs.upstream("admin")
    gw = mod_procs.gateway(config(mod_procs, up, key, "adm",
                                  admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"}),
                           env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    return Env(gw, up, key)


def call(gw, method: str, path: str, body=None, headers: dict | None = None,
         listener: str = "admin") -> requests.Response:
    return requests.request(method, gw.url(listener, path), json=body, headers=headers or {},
                            timeout=10, allow_redirects=False)


# ---------------------------------------------------------------------------------------------
# Authentication of the admin API


BAD_CREDENTIALS = {
    "none": None,
    "wrong": "Bearer not-the-admin-token",
    "last-byte": "Bearer " + ADMIN_TOKEN[:-1] + chr(ord(ADMIN_TOKEN[-1]) ^ 1),
    "prefix": "Bearer " + ADMIN_TOKEN[:-1],
    "suffix": "Bearer " + ADMIN_TOKEN + "x",
    "empty": "Bearer ",
    "basic-scheme": "Basic " + ADMIN_TOKEN,
    "no-scheme": ADMIN_TOKEN,
}


@pytest.mark.parametrize("cred", list(BAD_CREDENTIALS), ids=list(BAD_CREDENTIALS))
def test_admin_refuses_a_missing_or_wrong_token(env, cred):
    value = BAD_CREDENTIALS[cred]
    reloads = metric_value(env.gw, "portcullis_config_reloads_total", result="ok") + \
        metric_value(env.gw, "portcullis_config_reloads_total", result="error")
    for method, path, body in ENDPOINTS:
        r = call(env.gw, method, path, body, {"Authorization": value} if value is not None else {})
        assert r.status_code in (401, 403), f"{cred}: {method} {path} -> {r.status_code} {r.text}"
        assert "config_hash" not in r.text and "unauthorised-attempt" not in r.text, r.text
    # Nothing happened: no revocation stored, no reload attempted.
    assert all(e["jti"] != "unauthorised-attempt" for e in env.admin.revocations()["jti"])
    after = metric_value(env.gw, "portcullis_config_reloads_total", result="ok") + \
        metric_value(env.gw, "portcullis_config_reloads_total", result="error")
    assert after == reloads, "an unauthenticated POST /admin/reload reloaded"


def test_admin_accepts_the_token(env):
    r = call(env.gw, "GET", "/admin/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"


def test_health_endpoints_need_no_token(env):
    for path in ("/healthz", "/readyz"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = call(env.gw, "GET", path, headers=headers)
            assert r.status_code == 200, f"{path} {headers}: {r.status_code} {r.text}"


@pytest.mark.parametrize("variant", ["env-unset", "env-empty"])
def test_no_admin_token_configured_means_403(procs, variant):
    key = SigningKey("ES256", "es1")
    up = procs.upstream("noadm")
    env = {"PORTCULLIS_ADMIN_TOKEN": ""} if variant == "env-empty" else None
    gw = procs.gateway(config(procs, up, key, "noadm"), env=env)
    wait_ready(gw)
    for method, path, body in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            r = call(gw, method, path, body, headers)
            assert r.status_code == 403, f"{method} {path} {headers}: {r.status_code} {r.text}"
    assert call(gw, "GET", "/healthz").status_code == 200
    assert call(gw, "GET", "/readyz").status_code == 200


def test_admin_token_from_a_file(procs):
    key = SigningKey("ES256", "es1")
    up = procs.upstream("tokfile")
    token_file = procs.dir / "admin.token"
    token_file.write_text("file-token-5f1d2c\n")
    token_file.chmod(0o600)
    gw = procs.gateway(config(procs, up, key, "tokfile", admin={"token_file": str(token_file)}),
                       env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    ok = call(gw, "GET", "/admin/status", headers={"Authorization": "Bearer file-token-5f1d2c"})
    assert ok.status_code == 200, ok.text
    # The environment variable is not a second way in when token_file is configured.
    r = call(gw, "GET", "/admin/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code in (401, 403), r.text
    r = call(gw, "GET", "/admin/status", headers={"Authorization": "Bearer file-token-5f1d2"})
    assert r.status_code in (401, 403), r.text


def test_admin_paths_are_not_served_on_public_listeners(env):
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    no_route = call(env.gw, "GET", "/no-such-route", listener="http")
    assert no_route.status_code == 404
    mark = env.up.count()
    for method, path, body in ENDPOINTS:
        r = call(env.gw, method, path, body, auth, listener="http")
        assert r.status_code == 404, f"http listener: {method} {path} -> {r.status_code} {r.text}"
        if method == "GET":
            assert r.content == no_route.content, "an admin path answers differently from no route"
        r = call(env.gw, method, path, body, auth, listener="metrics")
        assert r.status_code == 404, f"metrics listener: {method} {path} -> {r.status_code} {r.text}"
    assert env.up.count() == mark, "an admin path was proxied upstream"
    assert all(e["jti"] != "unauthorised-attempt" for e in env.admin.revocations()["jti"])


# ---------------------------------------------------------------------------------------------
# Bad bodies


def _token_without_ids(key) -> str:
    return make_token(key, std_claims(iss=CORP, jti=None, sub=None))


# (id, body (dict, or raw bytes), acceptable description prefixes; None: any "<field>: <problem>")
BAD_BODIES = [
    ("iss-only", {"iss": "x"}, ("jti:",)),
    ("empty-object", {}, ("iss:",)),
    ("jti-without-iss", {"jti": "a"}, ("iss:",)),
    ("empty-iss", {"iss": "", "jti": "a"}, ("iss:",)),
    ("empty-jti", {"iss": "x", "jti": ""}, ("jti:",)),
    ("empty-sub", {"iss": "x", "sub": ""}, ("sub:",)),
    ("jti-and-sub", {"iss": "x", "jti": "a", "sub": "b"}, ("jti:", "sub:")),
    ("before-with-jti", {"iss": "x", "jti": "a", "before": 1}, ("before:",)),
    ("exp-with-sub", {"iss": "x", "sub": "a", "exp": 1}, ("exp:",)),
    ("unknown-field", {"iss": "x", "jti": "a", "colour": "red"}, ("colour:",)),
    ("exp-string", {"iss": "x", "jti": "a", "exp": "tomorrow"}, ("exp:",)),
    ("before-string", {"iss": "x", "sub": "a", "before": "yesterday"}, ("before:",)),
    ("jti-number", {"iss": "x", "jti": 5}, ("jti:",)),
    ("iss-number", {"iss": 7, "jti": "a"}, ("iss:",)),
    ("token-not-a-jwt", {"token": "not-a-jwt"}, ("token:",)),
    ("token-number", {"token": 42}, ("token:",)),
    ("token-and-iss", "token+iss", ("token:",)),
    ("token-without-jti-or-sub", "token-no-ids", ("token:",)),
    ("not-json", b"this is not json", None),
    ("json-array", b"[]", None),
    ("empty-body", b"", None),
]


@pytest.mark.parametrize("method", ["POST", "DELETE"])
@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_revocation_bodies_name_the_field(env, method, case):
    _id, body, prefixes = case
    if body == "token+iss":
        body = {"token": env.key.token(std_claims(iss=CORP)), "iss": CORP}
    elif body == "token-no-ids":
        body = {"token": _token_without_ids(env.key)}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    before = env.admin.revocations()
    r = env.admin.request(method, "/admin/revocations", data=data,
                          headers={"Content-Type": "application/json"})
    assert_json_error(r.status_code, r.headers, r.content, 400, "invalid_request")
    desc = r.json()["error_description"]
    if prefixes is None:
        assert re.match(r"^[a-z_]+: \S", desc), f"not '<field>: <problem>': {desc!r}"
    else:
        assert desc.startswith(prefixes), f"{desc!r} does not start with any of {prefixes}"
    assert env.admin.revocations() == before, "a refused body changed the revocation list"


def test_body_size_limit(env):
    # Exactly 64 KiB is still a body the API reads.
    core = json.dumps({"iss": CORP, "jti": "size-limit-ok"})
    body = core + " " * (64 * 1024 - len(core))
    assert len(body) == 64 * 1024
    r = env.admin.request("POST", "/admin/revocations", data=body.encode(),
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    # One byte more is refused.
    big = core + " " * (64 * 1024 + 1 - len(core))
    r = env.admin.request("POST", "/admin/revocations", data=big.encode(),
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 413, f"{r.status_code} {r.text}"
    # A declared 1 MiB body is refused without waiting for it.
    head = (f"POST /admin/revocations HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {1 << 20}\r\n\r\n").encode()
    with RawConn(env.gw.port("admin"), timeout=5) as c:
        c.send(head + b"{" + b" " * 1000)
        resp = c.read_response()
    assert resp.status == 413, resp.raw[:300]
    # A chunked body (no Content-Length) that grows past 64 KiB.
    chunk = b" " * 8192
    payload = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(9)) + b"0\r\n\r\n"
    head = (f"POST /admin/revocations HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with RawConn(env.gw.port("admin"), timeout=5) as c:
        try:
            c.send(head + b"1\r\n{\r\n" + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = c.read_response()
    assert resp.status == 413, resp.raw[:300]
    assert [e["jti"] for e in env.admin.revocations()["jti"]].count("size-limit-ok") == 1


# ---------------------------------------------------------------------------------------------
# Status


def test_status_document(env):
    st = env.admin.status()
    assert set(st) >= {"config_hash", "providers", "upstreams", "revocations"}, st
    assert isinstance(st["config_hash"], str) and st["config_hash"], st
    assert len(st["providers"]) == 1, st
    p = st["providers"][0]
    assert set(p) >= {"name", "issuer", "keys", "last_refresh", "last_error"}, p
    assert p["name"] == "corp" and p["issuer"] == CORP, p
    assert p["keys"] == ["es1"], p
    assert p["last_refresh"] is not None and p["last_error"] is None, p
    peers = st["upstreams"]["echo"]
    assert [(p["peer"], p["healthy"]) for p in peers] == [(env.up.addr, True)], st["upstreams"]
    assert peers[0]["last_check"] is None, peers  # no health check configured
    listed = env.admin.revocations()
    assert st["revocations"] == {"jti": len(listed["jti"]), "subject": len(listed["subjects"])}, st
    env.admin.revoke_ok({"iss": CORP, "sub": "status-counted"})
    st2 = env.admin.status()
    assert st2["revocations"]["subject"] == st["revocations"]["subject"] + 1, st2
    # An unchanged file reloads to the same hash.
    r = env.admin.reload()
    assert r.status_code == 200, r.text
    assert r.json() == {"config_hash": st["config_hash"]}, r.text


def test_status_additions_for_the_status_page(procs):
    """conf/README.md §10: version, start time, the last reload, route counts kept across reloads
    for a route of the same name, and each peer's last health check."""
    key = SigningKey("ES256", "es1")
    up = procs.upstream("additions")
    dead = procs.upstream("additions-dead")
    dead.stop()
    cfg = config(procs, up, key, "add", admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})
    checked = {"kind": "http", "interval": "250ms"}
    cfg["upstreams"]["echo"] = upstream_cfg(up, health=checked)
    cfg["upstreams"]["gone"] = upstream_cfg(dead.addr, health=checked)
    cfg["upstreams"]["unchecked"] = upstream_cfg(dead.addr, health={"kind": "none"})
    cfg["routes"].append(route("open", "/open", "echo", auth={"mode": "none"}))
    gw = procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    admin = Admin(gw)
    before = admin.status()
    assert before["version"] and isinstance(before["version"], str), before
    assert abs(before["started_at"] - time.time()) < 60, before
    assert before["last_reload"] is None, before

    for path, n in (("/open/a", 3), ("/api/x", 2), ("/nowhere", 1)):
        for _ in range(n):
            gw.get(path)
    routes = {r["name"]: r for r in admin.status()["routes"]}
    assert routes["open"] == {"name": "open", "host": None, "path_prefix": "/open",
                              "upstream": "echo", "auth": "none", "visibility": "public",
                              "requests": 3, "responses_4xx": 0, "responses_5xx": 0}, routes
    assert (routes["api"]["requests"], routes["api"]["responses_4xx"]) == (2, 2), routes
    assert routes["api"]["auth"] == "required", routes

    # A reload that changes the route keeps its counts under the same name.
    gw.config["routes"][-1]["match"]["path_prefix"] = "/opened"
    gw.write_config()
    assert admin.reload().status_code == 200
    gw.get("/opened/b")
    st = admin.status()
    routes = {r["name"]: r for r in st["routes"]}
    assert routes["open"]["path_prefix"] == "/opened" and routes["open"]["requests"] == 4, routes
    assert st["last_reload"]["result"] == "ok" and st["last_reload"]["errors"] == [], st
    assert st["last_reload"]["config_hash"] == st["config_hash"], st
    assert abs(st["last_reload"]["at"] - time.time()) < 60, st

    # A refused reload is reported with its lines, and the old config stays.
    gw.config["routes"][-1]["upstream"] = "missing"
    gw.write_config()
    assert admin.reload().status_code == 422
    st2 = admin.status()
    assert st2["last_reload"]["result"] == "error", st2
    assert any("upstream" in e for e in st2["last_reload"]["errors"]), st2
    assert st2["last_reload"]["config_hash"] == st["config_hash"], st2

    def checks():
        ups = admin.status()["upstreams"]
        return {name: peers[0]["last_check"] for name, peers in ups.items()}
    wait_for(lambda: all(checks()[n] for n in ("echo", "gone")), 10, what="a first health check")
    c = checks()
    assert c["echo"]["result"] == "200", c
    assert c["gone"]["result"] == "connection refused", c
    assert c["unchecked"] is None, c
