"""Size and time limits (conf/README.md §2 limits, §3.1; conf/HARDENING.md §3.3 SZ1, SL1)."""

import time

import pytest

from support.harness import (RawConn, assert_json_error, base_config, http_get_raw, route,
                             upstream_cfg)

MAX_HEAD = 4096
MAX_BODY = 1024


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("LIM")
    cfg = base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                      limits={"max_header_bytes": MAX_HEAD, "max_token_bytes": 2048,
                              "max_body_bytes": MAX_BODY,
                              "header_read_timeout": "1s", "keepalive_timeout": "1s",
                              "keepalive_requests": 3})
    return mod_procs.gateway(cfg), up


def test_one_big_header_431(env):
    gw, up = env
    mark = up.count()
    resp = gw.raw(http_get_raw("/x", headers=[("X-Big", "a" * (MAX_HEAD + 500))]))
    assert_json_error(resp.status, resp.headers, resp.body, 431, "request_header_fields_too_large")
    assert up.since(mark) == []


def test_many_headers_over_limit_431(env):
    gw, up = env
    mark = up.count()
    headers = [(f"X-H-{i}", "v" * 80) for i in range(60)]   # ~5.5 KiB in total
    resp = gw.raw(http_get_raw("/x", headers=headers))
    assert_json_error(resp.status, resp.headers, resp.body, 431, "request_header_fields_too_large")
    assert up.since(mark) == []


def test_long_request_line_refused(env):
    gw, up = env
    mark = up.count()
    resp = gw.raw(http_get_raw("/x?q=" + "a" * (MAX_HEAD + 500)))
    assert resp.status in (431, 414), resp.status
    assert up.since(mark) == []


def test_head_under_limit_passes_intact(env):
    gw, _ = env
    value = "b" * (MAX_HEAD - 600)
    resp = gw.raw(http_get_raw("/x", headers=[("X-Big", value)]))
    assert resp.status == 200
    assert ["X-Big", value] in resp.json()["headers"]


def test_body_over_limit_413(env):
    gw, up = env
    mark = up.count()
    body = b"z" * (MAX_BODY + 500)
    resp = gw.raw(http_get_raw("/upload", method="POST", body=body))
    assert_json_error(resp.status, resp.headers, resp.body, 413, "payload_too_large")
    assert up.since(mark) == []


def test_body_over_limit_refused_on_content_length_alone(env):
    """With `Expect: 100-continue` the client waits: the 413 must come from the declared length."""
    gw, up = env
    mark = up.count()
    head = (b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    t0 = time.monotonic()
    resp = gw.raw(head, timeout=5)
    assert resp.status == 413, resp.raw
    assert time.monotonic() - t0 < 3
    assert up.since(mark) == []


@pytest.mark.parametrize("size", [0, 1, 100, MAX_BODY])
def test_body_within_limit_arrives_intact(env, size):
    gw, _ = env
    body = bytes((i * 7) % 256 for i in range(size))
    resp = gw.raw(http_get_raw("/upload", method="POST", body=body,
                               headers=[("Content-Type", "application/octet-stream")]))
    assert resp.status == 200, resp.raw[:300]
    doc = resp.json()
    assert doc["body_length"] == size
    assert doc["body"].encode("latin-1") == body


def _chunked(body: bytes, piece: int = 300) -> bytes:
    out = b""
    for i in range(0, len(body), piece):
        part = body[i:i + piece]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_chunked_body_within_limit_arrives_intact(env):
    gw, _ = env
    body = b"chunk-" * 100
    req = (b"POST /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + _chunked(body))
    resp = gw.raw(req)
    assert resp.status == 200
    assert resp.json()["body"].encode() == body


def test_chunked_body_over_limit_413(env):
    gw, up = env
    mark = up.count()
    body = b"y" * (MAX_BODY * 3)
    req = (b"POST /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + _chunked(body))
    resp = gw.raw(req)
    assert resp.status == 413, resp.raw[:300]
    assert all(d["body_length"] <= MAX_BODY for d in up.since(mark))


def test_slow_request_head_is_cut_off(env):
    gw, up = env
    with RawConn(gw.port("http"), timeout=5) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: example.com\r\n")   # head never finished
        assert c.closed_within(4), "connection still open after header_read_timeout (1s)"
        if c.buf:
            assert c.buf.startswith(b"HTTP/1.1 408") or c.buf.startswith(b"HTTP/1.1 400"), c.buf


def test_idle_keepalive_connection_closed(env):
    gw, _ = env
    with RawConn(gw.port("http"), timeout=5) as c:
        c.send(http_get_raw("/idle", close=False))
        assert c.read_response().status == 200
        assert c.closed_within(4), "idle keep-alive connection still open after keepalive_timeout (1s)"


def test_keepalive_requests_limit(env):
    gw, _ = env
    with RawConn(gw.port("http"), timeout=5) as c:
        for i in range(3):
            c.send(http_get_raw(f"/ka/{i}", close=False))
            r = c.read_response()
            assert r.status == 200, (i, r.raw)
        # A fourth request on the same connection must not be served (the idle timeout is 1 s,
        # so this is sent well inside it).
        try:
            c.send(http_get_raw("/ka/3", close=False))
            r4 = c.read_response()
        except OSError:
            r4 = None
        assert r4 is None or r4.status == 0, "4th request served: keepalive_requests=3 ignored"
