"""Faults and floods: peers that break HTTP, key servers that misbehave, clients that abuse the
connection (conf/HARDENING.md; conf/README.md §2 `limits`, `providers[].jwks`).

Whatever a peer or client does, the gateway answers the request at hand as well as it can (502,
413, a cut stream), serves the next one, keeps its last good keys, and its memory stays bounded.
Measured numbers are in the assertion messages.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from support.flood import rss_bytes
from support.harness import (RawConn, base_config, free_port, http_get_raw, port_open, route,
                             upstream_cfg, wait_for)

FAULT = Path(__file__).resolve().parent / "support" / "fault_upstream.py"
MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Upstreams that break HTTP


@pytest.fixture(scope="module")
def faulty(mod_procs):
    port = free_port()
    log = open(mod_procs.dir / "fault-upstream.log", "ab")
    proc = subprocess.Popen([sys.executable, str(FAULT), "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        wait_for(lambda: port_open(port), 10, what="fault upstream")
        cfg = base_config({"f": upstream_cfg(f"127.0.0.1:{port}")}, [route("f", "/", "f")])
        yield mod_procs.gateway(cfg)
    finally:
        proc.kill()
        proc.wait(timeout=5)


def fetch(gw, path: str):
    """(status, body length, declared length) of one request on a fresh connection; status 0
    when no response head arrived."""
    with RawConn(gw.port("http"), timeout=15) as c:
        c.send(http_get_raw(path, close=True))
        r = c.read_response()
    declared = r.header("content-length")
    return r.status, len(r.body), int(declared) if declared is not None else None


@pytest.mark.parametrize("path", ["/reset-mid-body", "/bad-status", "/huge-headers"])
def test_a_broken_upstream_response_is_502_or_cut_and_the_next_request_is_served(faulty, path):
    gw = faulty
    rss_before = rss_bytes(gw.proc.pid)
    status, got, declared = fetch(gw, path)
    if status == 200:
        # The head was already forwarded: the client must see the stream cut, never a complete
        # response that was not.
        assert declared is not None and got < declared, \
            f"{path}: 200 with {got} of {declared} bytes presented as complete"
    else:
        assert status == 502, f"{path}: status {status}\n{gw.logs_tail()}"
    assert gw.alive(), gw.logs_tail()
    assert fetch(gw, "/fine")[0] == 200, f"the request after {path} failed\n{gw.logs_tail()}"
    grew = rss_bytes(gw.proc.pid) - rss_before
    assert grew < 16 * MiB, f"{path}: RSS grew {grew / MiB:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# Key servers that misbehave

ISS = "https://idp.faults.test"


def provider_status(gw, admin) -> dict:
    st = admin.status()
    (p,) = [p for p in st["providers"] if p["name"] == "corp"]
    return p


JWKS_FAULTS = {
    "5 MB body": dict(body_override=b'{"keys":[' + b'{"kty":"oct","k":"' + b"A" * (5 * MiB) + b'"}]}'),
    "invalid JSON": dict(body_override=b'{"keys": [ {"kty": "EC", '),
    "HTML page with 200": dict(body_override=b"<!doctype html><html><body>Sign in</body></html>",
                               content_type="text/html"),
    "hangs past fetch_timeout": dict(delay=3.0),
}


@pytest.mark.parametrize("fault", list(JWKS_FAULTS))
def test_a_misbehaving_jwks_server_keeps_the_last_good_keys(procs, fault):
    from support.admin_api import ADMIN_TOKEN, Admin
    from support.jwks_server import JwksServer
    from support.jwt import SigningKey, std_claims

    key = SigningKey("ES256", "good")
    with JwksServer([key]) as srv:
        up = procs.upstream("api")
        cfg = base_config(
            {"u": upstream_cfg(up)}, [route("api", "/api", "u", auth={"mode": "required"})],
            providers=[srv.provider("corp", ISS, jwks={"refresh_interval": "1s", "min_refresh": "1s",
                                                       "fetch_timeout": "1s"})],
            admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})
        gw = procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
        admin = Admin(gw)
        wait_for(lambda: provider_status(gw, admin)["keys"] == ["good"], 10, what="first key set")
        auth = {"Authorization": f"Bearer {key.token(std_claims(iss=ISS, aud='api'))}"}
        assert gw.get("/api/x", headers=auth).status_code == 200
        rss_before = rss_bytes(gw.proc.pid)
        for attr, value in JWKS_FAULTS[fault].items():
            setattr(srv, attr, value)
        fetches = srv.jwks_fetches()
        st = wait_for(lambda: (p := provider_status(gw, admin))["last_error"] and p, 10,
                      what=f"last_error after the JWKS server started sending a {fault}")
        # Fresh tokens each time, so the verified-token cache is not what answers.
        for i in range(3):
            auth = {"Authorization": f"Bearer {key.token(std_claims(iss=ISS, aud='api', jti=f'f{i}'))}"}
            r = gw.get("/api/x", headers=auth)
            assert r.status_code == 200, f"{fault}: {r.status_code} {r.text}; status {st}"
            time.sleep(0.5)
        st = provider_status(gw, admin)
        assert st["keys"] == ["good"] and st["last_error"], st
        assert srv.jwks_fetches() > fetches
        grew = rss_bytes(gw.proc.pid) - rss_before
        assert grew < 16 * MiB, f"{fault}: RSS grew {grew / MiB:.1f} MiB; last_error {st['last_error']!r}"
        # The server recovers: the error clears without a restart.
        srv.body_override, srv.content_type, srv.delay = None, "application/json", 0.0
        wait_for(lambda: provider_status(gw, admin)["last_error"] is None, 10,
                 what="last_error to clear once the JWKS server recovered")
        assert gw.alive()


# ---------------------------------------------------------------------------------------------
# Uploads past max_body_bytes

MAX_BODY = 1 * MiB


@pytest.fixture(scope="module")
def upload_gw(mod_procs):
    up = mod_procs.upstream("sink")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      limits={"max_body_bytes": MAX_BODY})
    return mod_procs.gateway(cfg)


def stream_upload(gw, head: bytes, chunk: bytes, total: int):
    """Sends `head`, then `chunk` repeatedly up to `total` bytes, stopping as soon as the gateway
    answers or closes. Returns (status, bytes of body sent, peak gateway RSS)."""
    import select

    peak = rss_bytes(gw.proc.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", gw.port("http")), timeout=10) as s:
        s.sendall(head)
        while sent < total:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break
            try:
                s.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
            if sent % (16 * MiB) == 0:
                peak = max(peak, rss_bytes(gw.proc.pid))
        buf = bytearray()
        try:
            from support.flood import read_response
            status, _ = read_response(s, buf)
        except OSError:
            status = 0
    return status, sent, max(peak, rss_bytes(gw.proc.pid))


def test_a_1_gib_chunked_upload_is_refused_early_without_memory_growth(upload_gw):
    gw = upload_gw
    before = rss_bytes(gw.proc.pid)
    piece = b"z" * (64 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    head = (b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    began = time.monotonic()
    status, sent, peak = stream_upload(gw, head, chunk, 1024 * MiB)
    took = time.monotonic() - began
    assert status == 413, f"status {status} after {sent / MiB:.1f} MiB sent in {took:.1f}s"
    assert sent < MAX_BODY + 32 * MiB, (f"the client sent {sent / MiB:.1f} MiB of a 1 GiB body before "
                                        f"the 413 (max_body_bytes {MAX_BODY / MiB:.0f} MiB)")
    grew = peak - before
    assert grew < 16 * MiB, f"RSS grew {grew / MiB:.1f} MiB while {sent / MiB:.1f} MiB streamed in"
    assert fetch(gw, "/after")[0] == 200


def test_a_1_gib_content_length_is_refused_before_the_body(upload_gw):
    gw = upload_gw
    head = (b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1073741824\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    status, sent, _ = stream_upload(gw, head, b"z" * (64 * 1024), 1024 * MiB)
    assert status == 413, f"status {status} after {sent / MiB:.1f} MiB sent"
    assert sent < 32 * MiB, f"the client sent {sent / MiB:.1f} MiB before the 413"


# ---------------------------------------------------------------------------------------------
# Slow and idle connections

HEAD_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 2.0


def test_slowloris_and_idle_connections_do_not_starve_other_clients(procs):
    import select

    up = procs.upstream("conn")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      limits={"header_read_timeout": f"{HEAD_TIMEOUT:g}s",
                              "keepalive_timeout": f"{KEEPALIVE_TIMEOUT:g}s"})
    gw = procs.gateway(cfg)
    port = gw.port("http")
    from support.flood import read_response

    opened: dict[int, float] = {}     # fd -> when its idle period or its head began
    kind: dict[int, str] = {}
    socks: dict[int, socket.socket] = {}
    closed: dict[int, float] = {}
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(http_get_raw("/idle", close=False))
            status, keep = read_response(s, bytearray())
            assert status == 200 and keep
            opened[s.fileno()], kind[s.fileno()], socks[s.fileno()] = time.monotonic(), "idle", s
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: example.com\r\n")
            opened[s.fileno()], kind[s.fileno()], socks[s.fileno()] = time.monotonic(), "slow", s

        stop = threading.Event()

        def dribble():
            while not stop.is_set():
                for fd, s in list(socks.items()):
                    if kind[fd] == "slow" and fd not in closed:
                        try:
                            s.send(b"X")
                        except OSError:
                            pass
                stop.wait(0.5)

        latencies: list[float] = []

        def probe():
            with requests.Session() as client:
                while not stop.is_set():
                    t = time.monotonic()
                    r = client.get(gw.url("http", "/probe"), timeout=5)
                    assert r.status_code == 200
                    latencies.append(time.monotonic() - t)
                    stop.wait(0.2)

        threads = [threading.Thread(target=dribble), threading.Thread(target=probe)]
        for t in threads:
            t.start()
        ep = select.epoll()
        for fd in socks:
            ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        deadline = time.monotonic() + HEAD_TIMEOUT + KEEPALIVE_TIMEOUT + 10
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for fd, _ in ep.poll(0.05):
                try:
                    data = socks[fd].recv(65536)
                except OSError:
                    data = b""
                if not data:
                    closed[fd] = time.monotonic()
                    ep.unregister(fd)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        ep.close()
    finally:
        for s in socks.values():
            s.close()

    def lifetimes(k: str) -> list[float]:
        return sorted(closed[fd] - opened[fd] for fd in closed if kind[fd] == k)

    slow, idle = lifetimes("slow"), lifetimes("idle")
    summary = (f"slow: {len(slow)}/300 closed after {slow[0]:.2f}..{slow[-1]:.2f}s; "
               f"idle: {len(idle)}/1000 closed after {idle[0]:.2f}..{idle[-1]:.2f}s; "
               f"probe latency max {max(latencies):.3f}s over {len(latencies)}") if slow and idle else \
        f"slow closed {len(slow)}, idle closed {len(idle)}"
    assert len(slow) == 300 and len(idle) == 1000, summary
    assert latencies and max(latencies) < 1.0, summary
    # Dribbling never buys a slow client more than the head timeout.
    assert HEAD_TIMEOUT - 0.2 <= slow[0] and slow[-1] <= HEAD_TIMEOUT + 1.5, summary
    # An idle keep-alive connection gets its idle time plus the time to send a next head.
    assert KEEPALIVE_TIMEOUT - 0.2 <= idle[0] and idle[-1] <= KEEPALIVE_TIMEOUT + HEAD_TIMEOUT + 1.5, summary
    assert gw.alive()
