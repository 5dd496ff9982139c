"""Contract points that are easy to get subtly wrong (conf/README.md §3.3 "Routing order", §3.4
keys without `alg`, §4 reload, §3 error table):

1. A host-specific route never hides a host-less route it does not match; the most specific host
   wins first, then the longest prefix.
2. An RSA key without `alg` serves every algorithm of its family the provider lists; a token whose
   `alg` its key does not serve is "algorithm not allowed for key", never "unknown key id", and
   costs no JWKS refetch.
3. Reloads never close a client's keep-alive connection.
4. `?access_token=` is a 400 invalid_request, never a credential.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, metric_value, wait_ready,
                               write_config_atomically, write_jwks)
from support.harness import RawConn, assert_json_error, base_config, route, upstream_cfg, wait_for
from support.jwks_server import JwksServer
from support.jwt import SigningKey, make_token, std_claims

INVALID_REQUEST = 'Bearer realm="portcullis", error="invalid_request"'
RELOADS = "portcullis_config_reloads_total"


# ---------------------------------------------------------------------------------------------
# 1. Routing order


@pytest.fixture(scope="module")
def routing(mod_procs):
    ups = {n: mod_procs.upstream(n) for n in ("hosted", "public", "wild", "exact")}
    routes = [
        route("hosted", "/hosted", "hosted", host="api.example.com"),
        route("wild-deep", "/public/deep", "wild", host="*.example.com"),
        route("exact-short", "/public", "exact", host="shop.example.com"),
        route("public", "/public", "public"),
    ]
    return mod_procs.gateway(base_config({n: upstream_cfg(u) for n, u in ups.items()}, routes))


@pytest.mark.parametrize("host,path,want", [
    # The contract's example: the host-specific /hosted route does not hide /public.
    ("api.example.com", "/public/x", "public"),
    ("api.example.com", "/hosted/x", "hosted"),
    # Most specific host first: exact beats a wildcard with a longer prefix ...
    ("shop.example.com", "/public/deep/x", "exact"),
    # ... a wildcard beats host-less with the same or a shorter prefix ...
    ("api.example.com", "/public/deep/x", "wild"),
    ("foo.example.com", "/public/deep/x", "wild"),
    # ... and where the more specific hosts have no matching prefix, host-less serves.
    ("foo.example.com", "/public/x", "public"),
    ("other.org", "/public/deep/x", "public"),
])
def test_routing_order(routing, host, path, want):
    r = routing.get(path, headers={"Host": host})
    assert r.status_code == 200, (host, path, r.status_code, r.text)
    assert r.json()["peer"] == want, (host, path, r.json()["peer"])


@pytest.mark.parametrize("host,path", [
    ("api.example.com", "/nothing"),
    ("other.org", "/hosted/x"),
    ("shop.example.com", "/hosted/x"),
])
def test_routing_order_no_candidate_is_404(routing, host, path):
    r = routing.get(path, headers={"Host": host})
    assert_json_error(r.status_code, r.headers, r.content, 404, "not_found")


# ---------------------------------------------------------------------------------------------
# 2. RSA keys without `alg`


def test_rsa_key_without_alg_serves_the_listed_algorithms_of_its_family(procs):
    key = SigningKey("RS256", "rsa-no-alg")
    jwk = key.jwk(include_alg=False)
    assert "alg" not in jwk
    with JwksServer([jwk]) as both_srv, JwksServer([jwk]) as rs_srv:
        up = procs.upstream("rsa")
        cfg = base_config(
            {"u": upstream_cfg(up)}, [route("api", "/api", "u", auth={"mode": "required"})],
            listeners=("http", "metrics"),
            providers=[both_srv.provider("both", "https://both.test", algorithms=["RS256", "PS256"]),
                       rs_srv.provider("rs-only", "https://rs.test", algorithms=["RS256"])])
        gw = procs.gateway(cfg)
        wait_ready(gw)

        def call(iss: str, alg: str):
            tok = make_token(key, std_claims(iss=iss), alg=alg)
            return gw.get("/api/x", headers={"Authorization": f"Bearer {tok}"})

        for alg in ("RS256", "PS256"):
            r = call("https://both.test", alg)
            assert r.status_code == 200, (alg, r.status_code, r.headers.get("WWW-Authenticate"), r.text)
        r = call("https://rs.test", "RS256")
        assert r.status_code == 200, (r.status_code, r.headers.get("WWW-Authenticate"), r.text)

        # PS256 against the RS256-only provider: the key is known, the algorithm is not allowed.
        time.sleep(1.2)   # past min_refresh (1s): an unknown-kid refetch would be allowed now
        fetches = rs_srv.jwks_fetches()
        mark = up.count()
        r = call("https://rs.test", "PS256")
        assert r.status_code == 401, (r.status_code, r.text)
        desc = "algorithm not allowed for key"
        assert r.headers.get("WWW-Authenticate") == \
            f'Bearer realm="portcullis", error="invalid_token", error_description="{desc}"', r.headers
        assert_json_error(r.status_code, r.headers, r.content, 401, "invalid_token")
        assert r.json()["error_description"] == desc, r.json()
        assert up.count() == mark
        time.sleep(0.5)
        assert rs_srv.jwks_fetches() == fetches, "an algorithm mismatch triggered a JWKS refetch"


# ---------------------------------------------------------------------------------------------
# 3. Keep-alive connections across reloads


def test_keepalive_connections_survive_ten_reloads(procs):
    """Two clients send back to back, two pause 250 ms between requests (so reloads also land on
    idle connections), one of each pair over plain HTTP and one over TLS; the reloads alternate
    between the admin API and SIGHUP."""
    a, b = procs.upstream("a"), procs.upstream("b")
    cfg_a = base_config({"svc": upstream_cfg(a)}, [route("api", "/api", "svc")],
                        listeners=("http", "https", "metrics"),
                        admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"}, limits={"keepalive_requests": 100000, "keepalive_timeout": "60s"})
    gw = procs.gateway(cfg_a, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    admin = Admin(gw)
    cfg_a = json.loads(json.dumps(gw.config))
    cfg_b = json.loads(json.dumps(gw.config))
    cfg_b["upstreams"]["svc"] = upstream_cfg(b)
    clients = [("http", 0.005), ("https", 0.005), ("http", 0.25), ("https", 0.25)]

    stop = threading.Event()
    results: list[dict] = [{"statuses": [], "peers": set(), "closed": None, "close_header": 0}
                           for _ in clients]

    def client(i: int) -> None:
        res = results[i]
        try:
            listener, pause = clients[i]
            with RawConn(gw.port(listener), tls=listener == "https", ca=gw.tls.ca, timeout=10) as c:
                while not stop.is_set():
                    c.send(f"GET /api/k{i} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
                    resp = c.read_response()
                    if resp.status == 0:
                        res["closed"] = f"connection closed after {len(res['statuses'])} responses"
                        return
                    res["statuses"].append(resp.status)
                    if "close" in (resp.header("Connection") or "").lower():
                        res["close_header"] += 1
                    if resp.status == 200:
                        res["peers"].add(json.loads(resp.body)["peer"])
                    time.sleep(pause)
        except Exception as e:  # noqa: BLE001 - recorded, asserted below
            res["closed"] = f"{e!r} after {len(res['statuses'])} responses"

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    reloads = []
    try:
        time.sleep(0.3)
        for n in range(10):
            write_config_atomically(gw, cfg_b if n % 2 == 0 else cfg_a)
            if n % 2 == 0:
                reloads.append(admin.reload().status_code)
            else:
                ok0 = metric_value(gw, RELOADS, result="ok")
                os.kill(gw.proc.pid, signal.SIGHUP)
                wait_for(lambda: metric_value(gw, RELOADS, result="ok") > ok0, 5,
                         what="the SIGHUP reload to be applied")
                reloads.append(200)
            time.sleep(0.3)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert reloads == [200] * 10, reloads
    assert metric_value(gw, RELOADS, result="ok") == 10
    for i, res in enumerate(results):
        assert res["closed"] is None, f"client {i} {clients[i]}: {res['closed']}"
        assert res["close_header"] == 0, f"client {i}: {res['close_header']} responses said Connection: close"
        assert res["statuses"] and all(s == 200 for s in res["statuses"]), (i, res["statuses"])
        assert len(res["statuses"]) >= 10, (i, len(res["statuses"]))
        # The reloads took effect on these very connections.
        assert res["peers"] == {"a", "b"}, (i, res["peers"])


# ---------------------------------------------------------------------------------------------
# 4. access_token in the query


def test_access_token_query_is_invalid_request(procs, tmp_path):
    key = SigningKey("ES256", "q-1")
    up = procs.upstream("q")
    cfg = base_config({"u": upstream_cfg(up)}, [route("api", "/api", "u", auth={"mode": "required"})],
                      providers=[file_provider("corp", "https://id.test",
                                               write_jwks(tmp_path / "jwks.json", key))])
    gw = procs.gateway(cfg)
    wait_ready(gw)
    tok = key.token(std_claims())
    mark = up.count()
    for query in (f"access_token={tok}", f"a=1&access_token={tok}"):
        r = gw.get(f"/api/x?{query}")
        assert_json_error(r.status_code, r.headers, r.content, 400, "invalid_request")
        assert r.headers.get("WWW-Authenticate") == INVALID_REQUEST, r.headers
        assert tok not in r.text and tok.split(".")[2] not in r.text
    assert up.count() == mark, "a request with ?access_token= reached the upstream"
    # The same token in the Authorization header is fine.
    assert gw.get("/api/x", headers={"Authorization": f"Bearer {tok}"}).status_code == 200


# ---------------------------------------------------------------------------------------------
# 5. An HTTP/2 request with a body that the gateway refuses still gets its answer


@pytest.mark.parametrize("size", [5, 100_000])
def test_http2_refusal_of_a_request_with_a_body_is_answered(procs, tmp_path, size):
    """The gateway answers 401 before reading the body; over HTTP/2 the client must still get
    that answer (a stream reset in its place is what a client would see as a broken gateway)."""
    key = SigningKey("ES256", "h2-1")
    up = procs.upstream("h2body")
    cfg = base_config({"u": upstream_cfg(up)}, [route("api", "/api", "u", auth={"mode": "required"})],
                      listeners=("https",),
                      providers=[file_provider("corp", "https://id.test",
                                               write_jwks(tmp_path / "jwks.json", key))])
    cfg["listeners"]["https"] = {"http2": True}
    gw = procs.gateway(cfg)
    wait_ready(gw)
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * size)
    port = gw.port("https")
    outcomes = []
    for _ in range(5):
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "--http2", "--cacert", str(gw.tls.ca),
             "--resolve", f"localhost:{port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code} %{http_version}",
             "--data-binary", f"@{body}", f"https://localhost:{port}/api/x"],
            capture_output=True, timeout=20)
        text = out.stdout.decode(errors="replace")
        outcomes.append((out.returncode, text.rsplit("\n", 1)[-1], out.stderr.decode().strip()))
    assert all(o[:2] == (0, "401 2") for o in outcomes), outcomes
    assert up.count() == 0
