"""Request framing / smuggling (conf/HARDENING.md §3.1 S1-S6): ambiguous framing is refused, and the
upstream never sees attacker framing or a smuggled second request."""

import pytest

from support.harness import RawConn, base_config, echo_header_names, route, upstream_cfg


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("FRAME")
    return mod_procs.gateway(base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")])), up


H = b"POST /f HTTP/1.1\r\nHost: example.com\r\n"


@pytest.mark.parametrize("head,body", [
    (H + b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),           # S3
    (H + b"Content-Length: 5, 5\r\n", b"hello"),                              # S3
    (H + b"Content-Length: +5\r\n", b"hello"),                                # S4
    (H + b"Content-Length: 0x5\r\n", b"hello"),                               # S4
    (H + b"Content-Length: -1\r\n", b""),                                     # S4
    (H + b"Content-Length: 123456789012345678901234567890\r\n", b""),         # S4
    (H + b"Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),     # S5
    (H + b"Transfer-Encoding: chunked, identity\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (H + b"Transfer-Encoding: gzip\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (H + b"Transfer-Encoding : chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    (H + b"X-Folded: a\r\n b\r\n", b""),                                      # obs-fold
    (b"POST /f HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n",
     b"5\r\nhello\r\n0\r\n\r\n"),                                             # S6
], ids=["dup-cl-differ", "cl-list", "cl-plus", "cl-hex", "cl-negative", "cl-overflow",
        "te-xchunked", "te-chunked-identity", "te-gzip", "te-space-before-colon", "obs-fold",
        "http10-te"])
def test_ambiguous_framing_rejected(env, head, body):
    gw, up = env
    mark = up.count()
    resp = gw.raw(head + b"Connection: close\r\n\r\n" + body)
    assert resp.status == 400, resp.raw[:200]
    assert up.since(mark) == []


def test_identical_duplicate_content_length(env):
    """S3: RFC 9110 §8.6 lets a recipient refuse `Content-Length: 5` sent twice or fold it into
    one; forwarding both lines leaves the upstream's parser to guess."""
    gw, up = env
    mark = up.count()
    resp = gw.raw(H + b"Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    if resp.status == 400:
        assert up.since(mark) == []
        return
    assert resp.status == 200, resp.raw[:200]
    doc = resp.json()
    cls = [v for k, v in doc["headers"] if k.lower() == "content-length"]
    assert cls == ["5"], f"upstream received Content-Length {cls}"
    assert doc["body"] == "hello"


@pytest.mark.parametrize("order", ["cl-te", "te-cl"])
def test_cl_te_never_smuggles(env, order):
    """S1/S2: either 400, or the body is forwarded chunked-only and no second request appears."""
    gw, up = env
    mark = up.count()
    framing = [b"Content-Length: 6\r\n", b"Transfer-Encoding: chunked\r\n"]
    if order == "te-cl":
        framing.reverse()
    smuggle = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
    with RawConn(gw.port("http")) as c:
        c.send(H + b"".join(framing) + b"\r\n" + smuggle)
        first = c.read_response()
        if first.status != 400 and not c.eof:
            c.send(b"GET /after HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            c.read_response()
    assert first.status in (200, 400), first.raw[:200]
    seen = up.since(mark)
    assert all("/smuggled" not in d["path"] for d in seen), seen
    for d in seen:
        names = echo_header_names(d)
        assert not ("content-length" in names and "transfer-encoding" in names), d["headers"]
        assert d["method"] in ("POST", "GET"), d


def test_pipelined_requests_never_bleed(env):
    """S12: pipelined requests are never merged. The gateway answers the first and then closes
    the connection instead of parsing bytes that arrived behind it (RFC 9112 §9.3.2 lets the
    client retry on a new connection); the second request never reaches an upstream carrying
    anything of the first."""
    gw, up = env
    mark = up.count()
    with RawConn(gw.port("http")) as c:
        c.send(b"GET /one HTTP/1.1\r\nHost: example.com\r\nX-First: 1\r\n\r\n"
               b"GET /two HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        r1 = c.read_response()
        assert r1.status == 200 and r1.json()["path"] == "/one", r1.raw[:200]
        r2 = c.read_response()
    seen = up.since(mark)
    assert [d["path"] for d in seen][:1] == ["/one"], seen
    if r2.status:  # answered after all: then as its own request
        assert r2.json()["path"] == "/two"
        assert "x-first" not in echo_header_names(r2.json())
    else:
        assert [d["path"] for d in seen] == ["/one"], seen
