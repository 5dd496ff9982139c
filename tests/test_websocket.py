"""WebSocket through the gateway (conf/README.md §8; §2 `routes[].websocket`, `upstreams.*.timeouts.idle`;
§5 `portcullis_websocket_connections`).

Real parts on both ends: the `websockets` library's client connects over ws:// (the `http`
listener) and wss:// (the `https` listener, test CA), and its server is the upstream
(tests/support/ws_upstream.py). An upgrade is routed, authenticated and authorized like any request;
refused upgrades never reach the upstream; an open connection ends when its token expires or is
revoked (at the latest at the next frame), or after `timeouts.idle` of silence.
"""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import InvalidStatus

from support.admin_api import ADMIN_TOKEN, Admin, file_provider, metric_value, wait_ready, write_jwks
from support.harness import base_config, route, upstream_cfg, wait_for
from support.jwt import SigningKey, b64u_decode, make_token, std_claims
from support.ws_upstream import WsUpstream, closed_within, header_values, ws_connect

CORP = "https://id.test"
WS_GAUGE = "portcullis_websocket_connections"
REQUESTS = "portcullis_requests_total"


class Env:
    def __init__(self, gw, up: WsUpstream, key: SigningKey):
        self.gw, self.up, self.key = gw, up, key
        self.admin = Admin(gw)

    def tok(self, scope: str = "chat", **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(scope=scope, **claims))


def ws_config(up_addr: str, jwks_path, routes: list | None = None) -> dict:
    return base_config(
        {"ws": upstream_cfg(up_addr),
         "ws-idle": upstream_cfg(up_addr, timeouts={"idle": "2s"})},
        routes or [
            route("ws", "/ws", "ws", auth={"mode": "required", "scopes": ["chat"]}),
            route("ws-gauge", "/gauge", "ws", auth={"mode": "required"}),
            route("ws-idle", "/idle", "ws-idle", auth={"mode": "required"}),
        ],
        listeners=("http", "https", "metrics"),
        providers=[file_provider("corp", CORP, jwks_path, leeway="0s")],
        identity_headers={"sub": "X-Auth-Subject", "scope": "X-Auth-Scopes"},
        admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"},
        revocation={"store": "memory"},
    )


@pytest.fixture(scope="module")
def env(mod_procs):
    up = WsUpstream()
    key = SigningKey("ES256", "ws-1")
    jwks_path = write_jwks(mod_procs.dir / "jwks.json", key)
    cfg = ws_config(up.addr, jwks_path)
    cfg["listeners"]["https"] = {"http2": True}
    try:
        gw = mod_procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
        wait_ready(gw)
        yield Env(gw, up, key)
    finally:
        up.stop()


def assert_refused(env: Env, path: str, token: str | None, status: int, code: str | None = None,
                   **kw) -> dict:
    """The handshake is answered `status` (not 101) and the upstream saw nothing."""
    before = env.up.handshake_count()
    with pytest.raises(InvalidStatus) as ei:
        with ws_connect(env.gw, path, token, **kw):
            pass
    resp = ei.value.response
    assert resp.status_code == status, (resp.status_code, resp.headers, resp.body)
    assert env.up.handshake_count() == before, "a refused upgrade reached the upstream"
    doc = json.loads(resp.body) if resp.body else {}
    if code is not None:
        assert doc.get("error") == code, doc
    return {"headers": resp.headers, "doc": doc}


@pytest.mark.parametrize("listener", ["http", "https"])
def test_upgrade_echoes_both_ways_with_identity_headers(env, listener):
    before = env.up.handshake_count()
    tok = env.tok(sub="alice")
    with ws_connect(env.gw, "/ws/chat?room=1", tok, listener=listener,
                    headers=[("X-Auth-Subject", "mallory")]) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"echo:\x00\x01binary"
        # Upstream-initiated frames reach the client too.
        assert env.up.push("from-upstream") >= 1
        assert ws.recv(timeout=5) == "from-upstream"
    assert env.up.handshake_count() == before + 1
    hs = env.up.last_handshake()
    assert hs["path"] == "/ws/chat?room=1"
    assert [v.lower() for v in header_values(hs, "Upgrade")] == ["websocket"], hs
    assert header_values(hs, "X-Auth-Subject") == ["alice"], hs
    assert header_values(hs, "X-Auth-Scopes") == ["chat"], hs
    assert header_values(hs, "Authorization") == [], "Authorization was forwarded"
    assert header_values(hs, "Sec-WebSocket-Key"), hs


def test_upgrade_without_token_is_401(env):
    r = assert_refused(env, "/ws/chat", None, 401)
    assert r["headers"].get("WWW-Authenticate") == 'Bearer realm="portcullis"'


def test_upgrade_with_bad_token_is_401(env):
    forger = SigningKey("ES256", "ws-1")  # same kid, another key: the signature does not verify
    bad = make_token(forger, std_claims(iss=CORP, scope="chat"))
    r = assert_refused(env, "/ws/chat", bad, 401, "invalid_token")
    assert 'error="invalid_token"' in (r["headers"].get("WWW-Authenticate") or "")


def test_upgrade_with_insufficient_scope_is_403(env):
    r = assert_refused(env, "/ws/chat", env.tok(scope="other"), 403, "insufficient_scope")
    assert r["headers"].get("WWW-Authenticate") == \
        'Bearer realm="portcullis", error="insufficient_scope", scope="chat"'


def test_upgrade_over_wss_refused_without_token(env):
    assert_refused(env, "/ws/chat", None, 401, listener="https")


def test_expired_token_closes_the_connection_at_the_next_frame(env):
    ttl = 3
    tok = env.tok(sub="expiring", ttl=ttl)
    exp = json.loads(b64u_decode(tok.split(".")[1]))["exp"]
    with ws_connect(env.gw, "/ws/exp", tok) as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "echo:before"
        # Past exp (leeway 0s on this provider), a frame from the client must end the connection.
        time.sleep(max(0.0, exp + 1.2 - time.time()))
        try:
            ws.send("after-exp")
        except Exception:  # noqa: BLE001 - already closed by the gateway: that is fine too
            pass
        closed, got = closed_within(ws, 5)
        assert closed, f"connection still open after the token expired; received {got!r}"
    wait_for(lambda: env.up.live() == 0, 5, what="the upstream side to be closed too")


def test_a_silent_connection_is_closed_when_its_token_expires(env):
    """Nobody writes, yet the connection does not outlive the token: the gateway's silence limit
    is cut to the token's remaining life (the route's idle timeout is far longer)."""
    ttl = 3
    tok = env.tok(sub="silent", ttl=ttl)
    exp = json.loads(b64u_decode(tok.split(".")[1]))["exp"]
    with ws_connect(env.gw, "/ws/exp", tok) as ws:
        closed, got = closed_within(ws, exp + 4 - time.time())
        ended = time.time()
        assert closed, f"a silent connection outlived its token; received {got!r}"
        assert ended >= exp - 1, f"closed {exp - ended:.1f} s before the token expired"
    wait_for(lambda: env.up.live() == 0, 5, what="the upstream side to be closed too")


def test_revoked_token_closes_the_connection_at_the_next_frame(env):
    tok = env.tok(sub="to-be-revoked")
    other = env.tok(sub="bystander")
    with ws_connect(env.gw, "/ws/rev", tok) as ws, ws_connect(env.gw, "/ws/other", other) as ws2:
        ws.send("one")
        assert ws.recv(timeout=5) == "echo:one"
        env.admin.revoke_ok({"token": tok})
        try:
            ws.send("after-revocation")
        except Exception:  # noqa: BLE001
            pass
        closed, got = closed_within(ws, 5)
        assert closed, f"connection still open after its token was revoked; received {got!r}"
        # Another connection, with a token that is not revoked, goes on.
        ws2.send("still-here")
        assert ws2.recv(timeout=5) == "echo:still-here"


def test_revoked_token_closes_the_connection_at_the_next_upstream_frame(env):
    tok = env.tok(sub="revoked-upstream-side")
    with ws_connect(env.gw, "/ws/rev2", tok) as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "echo:one"
        wait_for(lambda: env.up.live() >= 1, 5, what="an open upstream connection")
        env.admin.revoke_ok({"token": tok})
        env.up.push("after-revocation")   # the next frame comes from the upstream
        closed, got = closed_within(ws, 5)
        assert closed, f"connection still open after its token was revoked; received {got!r}"


def test_idle_timeout_closes_a_silent_connection(env):
    with ws_connect(env.gw, "/idle/x", env.tok()) as ws:
        # Traffic every 0.8 s for longer than the 2 s idle timeout keeps it open ...
        for i in range(5):
            if i:
                time.sleep(0.8)
            ws.send(f"tick-{i}")
            assert ws.recv(timeout=5) == f"echo:tick-{i}"
        # ... and silence ends it after about 2 s.
        t0 = time.monotonic()
        closed, got = closed_within(ws, 10)
        elapsed = time.monotonic() - t0
    assert closed, "a silent connection outlived timeouts.idle (2s) by far"
    assert elapsed >= 1.5, f"closed after {elapsed:.2f}s of silence, before timeouts.idle"
    assert got == [], got


def test_gauge_and_requests_total_count_the_upgrade(env):
    gw = env.gw
    r0 = metric_value(gw, REQUESTS, route="ws-gauge", method="GET", status="101")
    with ws_connect(gw, "/gauge/x", env.tok()) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "echo:x"
        assert metric_value(gw, WS_GAUGE, route="ws-gauge") == 1
        with ws_connect(gw, "/gauge/y", env.tok()) as ws2:
            ws2.send("y")
            assert ws2.recv(timeout=5) == "echo:y"
            assert metric_value(gw, WS_GAUGE, route="ws-gauge") == 2
        wait_for(lambda: metric_value(gw, WS_GAUGE, route="ws-gauge") == 1, 5,
                 what="gauge back to 1 after one close")
    wait_for(lambda: metric_value(gw, WS_GAUGE, route="ws-gauge") == 0, 5,
             what="gauge back to 0 after both closed")
    wait_for(lambda: metric_value(gw, REQUESTS, route="ws-gauge", method="GET", status="101") == r0 + 2,
             5, what='portcullis_requests_total{status="101"} + 2')


def test_websocket_false_route_is_403_forbidden(procs):
    up = WsUpstream()
    try:
        key = SigningKey("ES256", "ws-2")
        jwks_path = write_jwks(procs.dir / "jwks.json", key)
        cfg = ws_config(up.addr, jwks_path, routes=[
            route("no-ws", "/nows", "ws", auth={"mode": "required"}, websocket=False),
            route("yes-ws", "/yesws", "ws", auth={"mode": "required"}, websocket=True),
        ])
        gw = procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
        wait_ready(gw)
        e = Env(gw, up, key)
        r = assert_refused(e, "/nows/x", e.tok(), 403, "forbidden")
        assert isinstance(r["doc"].get("error_description"), str), r["doc"]
        ctype = (r["headers"].get("Content-Type") or "").split(";")[0].strip()
        assert ctype == "application/json", r["headers"]
        # The same gateway upgrades on the route that allows it.
        with ws_connect(gw, "/yesws/x", e.tok()) as ws:
            ws.send("ok")
            assert ws.recv(timeout=5) == "echo:ok"
    finally:
        up.stop()
