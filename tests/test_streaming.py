"""Streaming (conf/README.md §8): response bodies are relayed as they arrive and request bodies
stream to the upstream.

The upstream (tests/support/stream_upstream.py) holds back the second half of each exchange
until the test releases it, so "the client saw the first event before the upstream sent the
second" is a fact about the order of events, not about timings.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from support.harness import RawConn, base_config, route, upstream_cfg
from support.stream_upstream import FIXED_PARTS, StreamUpstream

FIRST_WAIT = 8.0   # generous: the first part must arrive while the upstream still holds the rest


@pytest.fixture(scope="module")
def env(mod_procs):
    up = StreamUpstream()
    try:
        cfg = base_config({"s": upstream_cfg(up.addr)}, [route("stream", "/", "s")],
                          listeners=("http", "https"))
        cfg["listeners"]["https"] = {"http2": True}
        gw = mod_procs.gateway(cfg)
        yield gw, up
    finally:
        up.stop()


def read_until(conn: RawConn, marker: bytes, seconds: float) -> bool:
    """Reads from `conn` until `marker` is in its buffer (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while marker not in conn.buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        conn.sock.settimeout(left)
        try:
            if not conn._fill():
                return marker in conn.buf
        except (TimeoutError, OSError):
            return marker in conn.buf
    return True


def get(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n"
            f"Connection: close\r\n\r\n").encode()


@pytest.mark.parametrize("path,ctype,one,two", [
    ("/events/feed", "text/event-stream", b"data: one\n\n", b"data: two\n\n"),
    ("/download/file", "application/octet-stream", b"part-one;", b"part-two;"),
    ("/fixed/file", "application/octet-stream", *FIXED_PARTS),
])
def test_response_body_reaches_the_client_as_it_arrives(env, path, ctype, one, two):
    gw, up = env
    up.reset()
    with RawConn(gw.port("http"), timeout=10) as c:
        c.send(get(path))
        try:
            first = read_until(c, one, FIRST_WAIT)
        finally:
            up.release.set()
        assert first, (f"the first part did not reach the client while the upstream held the rest "
                       f"(received so far: {c.buf!r})")
        assert b"\r\n\r\n" in c.buf
        resp = c.read_response()
    assert resp.status == 200, resp
    assert (resp.header("Content-Type") or "").startswith(ctype), resp.headers
    assert resp.body == one + two, resp.body


def test_server_sent_events_over_http2(env):
    """The same through the `https` listener with HTTP/2 (curl streams its output unbuffered)."""
    gw, up = env
    up.reset()
    port = gw.port("https")
    proc = subprocess.Popen(
        ["curl", "-sS", "-N", "--http2", "--max-time", "20", "--cacert", str(gw.tls.ca),
         "--resolve", f"localhost:{port}:127.0.0.1", "-H", "Accept: text/event-stream",
         f"https://localhost:{port}/events/h2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got: list = []
    try:
        reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(FIRST_WAIT)
        seen_first = got == [b"data: one\n"]
        up.release.set()
        out = proc.stdout.read()   # the same buffered reader as readline(): nothing is lost
        proc.wait(20)
        err = proc.stderr.read()
    finally:
        up.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert seen_first, f"first event not streamed over HTTP/2: {got!r}"
    assert proc.returncode == 0, err.decode()
    assert b"".join(got) + out == b"data: one\n\ndata: two\n\n"


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_request_body_streams_to_the_upstream(env, framing):
    gw, up = env
    up.reset()
    first, last = b"hello", b" world"
    with RawConn(gw.port("http"), timeout=10) as c:
        if framing == "chunked":
            c.send(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                   b"5\r\n" + first + b"\r\n")
        else:
            c.send(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
                   b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n" + first)
        # The last part goes out only after the upstream has the first one.
        arrived = up.got_first.wait(FIRST_WAIT)
        if framing == "chunked":
            c.send(b"6\r\n" + last + b"\r\n0\r\n\r\n")
        else:
            c.send(last)
        resp = c.read_response()
    assert arrived, "the upstream did not receive the first part of the body before the last was sent"
    assert resp.status == 200, resp
    doc = json.loads(resp.body)
    assert doc["body"] == "hello world", doc
    assert doc["first"] and "hello".startswith(doc["first"]), doc
