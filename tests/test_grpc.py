"""gRPC through the gateway (conf/README.md §8; §2 `upstreams.*.protocol`, `listeners.https.http2`).

A grpcio client speaks HTTP/2 over TLS (ALPN h2) to the `https` listener; the upstreams are real
grpcio servers on cleartext HTTP/2 (`protocol: h2c`) and on TLS (`protocol: h2`, certificate
verified against the test CA). Calls are proxied with their metadata and trailers, unary and
streaming; the gateway's own refusals are trailers-only gRPC answers with the mapped status, and
never reach the upstream.
"""

from __future__ import annotations

import queue
import subprocess
import threading

import grpc
import pytest

from support.admin_api import file_provider, metric_value, wait_ready, write_jwks
from support.grpc_peer import GatewayChannel, GrpcPeer, metadata_values
from support.harness import base_config, free_port, metric, route, upstream_cfg, wait_for
from support.jwt import SigningKey, make_token, std_claims

CORP = "https://id.test"
REQUESTS = "portcullis_requests_total"
TIMEOUT = 10
TCP_HEALTH = {"kind": "tcp", "interval": "200ms", "timeout": "200ms", "healthy_threshold": 1,
              "unhealthy_threshold": 1}


class Env:
    def __init__(self, gw, h2c: GrpcPeer, h2: GrpcPeer, key: SigningKey, down_addr: str):
        self.gw, self.h2c, self.h2, self.key, self.down_addr = gw, h2c, h2, key, down_addr

    def tok(self, scope: str = "echo", **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(scope=scope, **claims))

    def channel(self, token: str | None = None) -> GatewayChannel:
        return GatewayChannel(self.gw, token)


@pytest.fixture(scope="module")
def env(mod_procs, tls_files):
    h2c = GrpcPeer()
    h2 = GrpcPeer(tls=tls_files)
    try:
        key = SigningKey("ES256", "grpc-1")
        jwks_path = write_jwks(mod_procs.dir / "jwks.json", key)
        down_addr = f"127.0.0.1:{free_port()}"
        auth = {"mode": "required", "scopes": ["echo"]}
        cfg = base_config(
            {"h2c": upstream_cfg(h2c.addr, protocol="h2c"),
             "h2": upstream_cfg(h2.addr, protocol="h2",
                                tls={"enabled": True, "sni": "localhost", "verify": True}),
             "dead": upstream_cfg(f"127.0.0.1:{free_port()}", protocol="h2c", retries=0),
             "down": upstream_cfg(down_addr, protocol="h2c", retries=0, health=TCP_HEALTH)},
            [route("grpc", "/test.Echo", "h2c", auth=auth),
             route("grpc-tls", "/tls.Echo", "h2", auth=auth),
             route("grpc-limited", "/limited.Echo", "h2c", auth=auth,
                   rate_limit={"rps": 1, "burst": 1, "key": "client_ip"}),
             route("grpc-dead", "/dead.Echo", "dead", auth=auth),
             route("grpc-down", "/down.Echo", "down", auth=auth)],
            listeners=("https", "metrics"),
            providers=[file_provider("corp", CORP, jwks_path)],
            identity_headers={"sub": "X-Auth-Subject", "scope": "X-Auth-Scopes"},
            server={"ca_file": str(tls_files.ca)},
        )
        cfg["listeners"]["https"] = {"http2": True}
        gw = mod_procs.gateway(cfg)
        wait_ready(gw)
        yield Env(gw, h2c, h2, key, down_addr)
    finally:
        h2c.stop()
        h2.stop()


PEERS = {"/test.Echo": "h2c", "/tls.Echo": "h2"}


def peer_of(env: Env, service: str) -> GrpcPeer:
    return env.h2c if PEERS[service] == "h2c" else env.h2


# ---------------------------------------------------------------------------------------------
# Proxied calls


@pytest.mark.parametrize("service", ["/test.Echo", "/tls.Echo"])
def test_unary_call_with_metadata_trailers_and_identity(env, service):
    peer = peer_of(env, service)
    before = peer.count()
    with env.channel(env.tok(sub="alice")) as ch:
        resp, call = ch.unary(f"{service}/Unary").with_call(
            b"hello", metadata=ch.metadata(extra=[("x-auth-subject", "mallory"), ("x-custom", "c1")]),
            timeout=TIMEOUT)
        assert resp == b"echo:hello"
        assert call.code() == grpc.StatusCode.OK
        assert ("x-initial", "i-value") in [(m.key, m.value) for m in call.initial_metadata()]
        assert ("x-trailer", "t-value") in [(m.key, m.value) for m in call.trailing_metadata()], \
            call.trailing_metadata()
    assert peer.count() == before + 1
    seen = peer.last()
    assert seen["method"] == f"{service}/Unary"
    assert metadata_values(seen, "x-auth-subject") == ["alice"], seen
    assert metadata_values(seen, "x-auth-scopes") == ["echo"], seen
    assert metadata_values(seen, "authorization") == [], "Authorization was forwarded"
    assert metadata_values(seen, "x-custom") == ["c1"], seen


@pytest.mark.parametrize("service", ["/test.Echo", "/tls.Echo"])
def test_server_streaming_relays_each_message_as_it_comes(env, service):
    peer = peer_of(env, service)
    peer.release.clear()
    with env.channel(env.tok()) as ch:
        it = ch.unary_stream(f"{service}/Stream")(b"4:wait", metadata=ch.metadata(), timeout=20)
        got = []
        # The peer holds msg-1.. until released: msg-0 must arrive while the call is still open.
        def first():
            try:
                got.append(next(it))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                got.append(e)

        t = threading.Thread(target=first, daemon=True)
        t.start()
        t.join(8)
        released_late = not peer.release.is_set()
        peer.release.set()
        t.join(8)
        assert got == [b"msg-0"] and released_late, \
            f"the first message did not arrive before the peer sent the rest: {got!r}"
        assert list(it) == [b"msg-1", b"msg-2", b"msg-3"]
        assert it.code() == grpc.StatusCode.OK


def test_bidirectional_streaming_is_full_duplex(env):
    replies: queue.Queue = queue.Queue()

    def requests():
        for word in (b"one", b"two", b"three"):
            yield word
            # The next message goes out only once the reply to this one came back through
            # the gateway: a proxy that buffers either direction deadlocks here (and times out).
            try:
                replies.get(timeout=8)
            except queue.Empty:
                return

    with env.channel(env.tok()) as ch:
        out = []
        for msg in ch.stream_stream("/test.Echo/Chat")(requests(), metadata=ch.metadata(), timeout=20):
            out.append(msg)
            replies.put(msg)
        assert out == [b"echo:one", b"echo:two", b"echo:three"]


def test_client_streaming(env):
    with env.channel(env.tok()) as ch:
        resp = ch.stream_unary("/test.Echo/Upload")(iter([b"a" * 1000, b"b" * 70000, b"c"]),
                                                    metadata=ch.metadata(), timeout=TIMEOUT)
    assert resp == b"a" * 1000 + b"b" * 70000 + b"c"


@pytest.mark.parametrize("service", ["/test.Echo", "/tls.Echo"])
def test_upstream_error_status_and_message_are_relayed(env, service):
    with env.channel(env.tok()) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            ch.unary(f"{service}/Fail")(b"", metadata=ch.metadata(), timeout=TIMEOUT)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND, (ei.value.code(), ei.value.details())
    assert ei.value.details() == "no such widget"


# ---------------------------------------------------------------------------------------------
# The gateway's own refusals: trailers-only answers with the mapped status


def refused(env: Env, path: str, token: str | None, want: grpc.StatusCode,
            peer: GrpcPeer | None = None) -> grpc.RpcError:
    peer = peer or env.h2c
    before = peer.count()
    with env.channel(token) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            ch.unary(path)(b"x", metadata=ch.metadata(), timeout=TIMEOUT)
    e = ei.value
    assert e.code() == want, (e.code(), e.details())
    # The status came from grpc-status, not from grpc's mapping of a non-200 HTTP status.
    assert "http2 header with status" not in (e.details() or ""), e.details()
    assert peer.count() == before, "a refused call reached the upstream"
    return e


def all_metadata(e: grpc.RpcError) -> dict:
    out = {}
    for m in list(e.initial_metadata() or ()) + list(e.trailing_metadata() or ()):
        out.setdefault(m.key.lower(), m.value)
    return out


def test_no_token_is_unauthenticated(env):
    n0 = metric_value(env.gw, REQUESTS, route="grpc", method="POST", status="401")
    e = refused(env, "/test.Echo/Unary", None, grpc.StatusCode.UNAUTHENTICATED)
    assert all_metadata(e).get("www-authenticate") == 'Bearer realm="portcullis"', all_metadata(e)
    assert metric_value(env.gw, REQUESTS, route="grpc", method="POST", status="401") == n0 + 1


def test_bad_token_is_unauthenticated(env):
    forged = make_token(SigningKey("ES256", "grpc-1"), std_claims(iss=CORP, scope="echo"))
    e = refused(env, "/test.Echo/Unary", forged, grpc.StatusCode.UNAUTHENTICATED)
    assert 'error="invalid_token"' in all_metadata(e).get("www-authenticate", ""), all_metadata(e)


def test_insufficient_scope_is_permission_denied(env):
    n0 = metric_value(env.gw, REQUESTS, route="grpc", method="POST", status="403")
    e = refused(env, "/test.Echo/Unary", env.tok(scope="other"), grpc.StatusCode.PERMISSION_DENIED)
    assert 'error="insufficient_scope"' in all_metadata(e).get("www-authenticate", ""), all_metadata(e)
    assert metric_value(env.gw, REQUESTS, route="grpc", method="POST", status="403") == n0 + 1


def test_unknown_route_is_unimplemented(env):
    n0 = metric_value(env.gw, REQUESTS, route="", method="POST", status="404")
    refused(env, "/nowhere.Svc/Call", env.tok(), grpc.StatusCode.UNIMPLEMENTED)
    assert metric_value(env.gw, REQUESTS, route="", method="POST", status="404") == n0 + 1


def test_rate_limited_is_resource_exhausted(env):
    with env.channel(env.tok()) as ch:
        first = ch.unary("/limited.Echo/Unary")(b"1", metadata=ch.metadata(), timeout=TIMEOUT)
    assert first == b"echo:1"
    refused(env, "/limited.Echo/Unary", env.tok(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert metric_value(env.gw, "portcullis_rate_limited_total", route="grpc-limited") >= 1


def test_dead_peer_is_unavailable(env):
    n0 = metric_value(env.gw, REQUESTS, route="grpc-dead", method="POST", status="502")
    refused(env, "/dead.Echo/Unary", env.tok(), grpc.StatusCode.UNAVAILABLE)
    assert metric_value(env.gw, REQUESTS, route="grpc-dead", method="POST", status="502") == n0 + 1


def test_no_healthy_peer_is_unavailable(env):
    wait_for(lambda: metric(env.gw.metrics(), "portcullis_upstream_peer_healthy", upstream="down",
                            peer=env.down_addr) == 0, 10, what="the down peer marked unhealthy")
    n0 = metric_value(env.gw, REQUESTS, route="grpc-down", method="POST", status="503")
    refused(env, "/down.Echo/Unary", env.tok(), grpc.StatusCode.UNAVAILABLE)
    assert metric_value(env.gw, REQUESTS, route="grpc-down", method="POST", status="503") == n0 + 1


def test_refusal_is_a_trailers_only_answer_on_the_wire(env, tmp_path):
    """What any gRPC client sees, byte for byte: HTTP/2 200, `content-type: application/grpc`,
    `grpc-status` and `grpc-message` in the one header block, and the WWW-Authenticate header."""
    body = tmp_path / "req.bin"
    body.write_bytes(b"\x00\x00\x00\x00\x01x")   # one uncompressed message of one byte
    port = env.gw.port("https")
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--http2", "--cacert", str(env.gw.tls.ca),
         "--resolve", f"localhost:{port}:127.0.0.1", "-D", "-", "-o", "/dev/null",
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--data-binary", f"@{body}", f"https://localhost:{port}/test.Echo/Unary"],
        capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr.decode()
    lines = [ln.strip() for ln in out.stdout.decode().splitlines() if ln.strip()]
    assert lines and lines[0].lower().startswith("http/2 200"), lines
    head = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        head.setdefault(k.strip().lower(), v.strip())
    assert head.get("content-type", "").startswith("application/grpc"), head
    assert head.get("grpc-status") == "16", head
    assert head.get("grpc-message"), head
    assert head.get("www-authenticate") == 'Bearer realm="portcullis"', head


# ---------------------------------------------------------------------------------------------
# Config check


def test_config_check_requires_tls_for_h2(procs):
    def cfg(up: dict) -> dict:
        c = base_config({"x": up}, [route("r", "/r", "x")])
        c["listeners"]["http"] = {"addr": "127.0.0.1:18080"}
        return c

    def protocol_errors(up: dict) -> list:
        rc, out = procs.validate(cfg(up))
        assert rc == 1, out
        lines = [ln for ln in out.splitlines() if "upstreams.x.protocol" in ln]
        assert lines, f"no error names upstreams.x.protocol:\n{out}"
        # The key is known; its value (or its combination with tls) is what is wrong.
        assert not any("unknown key" in ln.lower() for ln in lines), lines
        return lines

    for up in (upstream_cfg("127.0.0.1:9", protocol="h2"),
               upstream_cfg("127.0.0.1:9", protocol="h2", tls={"enabled": False})):
        lines = protocol_errors(up)
        assert any("tls" in ln.lower() for ln in lines), lines
    protocol_errors(upstream_cfg("127.0.0.1:9", protocol="http3"))

    for ok in (upstream_cfg("127.0.0.1:9", protocol="h2", tls={"enabled": True, "sni": "x.internal"}),
               upstream_cfg("127.0.0.1:9", protocol="h2c"),
               upstream_cfg("127.0.0.1:9", protocol="http1")):
        rc, out = procs.validate(cfg(ok))
        assert rc == 0, (ok, out)
