"""Tracing (conf/README.md §9): W3C trace context on every request, spans exported over OTLP/HTTP.

The collector here is a real HTTP server in a thread that records every export body and decodes
it with the reference protobuf classes (`opentelemetry-proto`), so the wire format is checked
by an implementation other than the gateway's. A dead collector is a closed port; a hanging one
is a listening socket that never answers.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from support.harness import (base_config, echo_headers, free_port, metric, route, upstream_cfg,
                             wait_for)
from support.jwks_server import JwksServer
from support.jwt import SigningKey, make_token, std_claims

ISS = "https://id.test"
SERVICE = "portcullis-under-test"
DROPPED = "portcullis_trace_spans_dropped_total"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
KIND_INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL
KIND_SERVER = trace_pb2.Span.SPAN_KIND_SERVER
KIND_CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


class Collector:
    """An OTLP/HTTP traces endpoint: keeps each body as received and its decoded spans."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with collector.lock:
                    collector.bodies.append(body)
                    collector.content_types.append(self.headers.get("Content-Type", ""))
                ok = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                status = 200 if self.path == "/v1/traces" else 404
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(ok)))
                self.end_headers()
                self.wfile.write(ok)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self) -> list:
        with self.lock:
            bodies = list(self.bodies)
        out = []
        for b in bodies:
            req = trace_service_pb2.ExportTraceServiceRequest()
            req.ParseFromString(b)
            out.append(req)
        return out

    def spans(self) -> list:
        """(resource attributes, span) for every span received so far."""
        out = []
        for req in self.requests():
            for rs in req.resource_spans:
                res = attrs(rs.resource)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append((res, s))
        return out

    def trace(self, trace_id: str, n: int, timeout: float = 10) -> list:
        """The spans of one trace, once at least `n` arrived."""
        def got():
            spans = [s for _, s in self.spans() if s.trace_id.hex() == trace_id]
            return spans if len(spans) >= n else None
        return wait_for(got, timeout, interval=0.1, what=f"{n} spans of trace {trace_id}")

    def raw(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)


def attrs(obj) -> dict:
    out = {}
    for kv in obj.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


def one(spans, kind):
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, spans
    return found[0]


def upstream_traceparent(up, rid: str):
    docs = [d for d in up.requests() if rid in json.dumps(d["headers"])]
    assert len(docs) == 1, docs
    values = echo_headers(docs[0], "traceparent")
    assert len(values) == 1, values
    m = TRACEPARENT.match(values[0])
    assert m, values[0]
    return m.group(1), m.group(2), m.group(3), docs[0]


def access_log_entry(gw, rid: str) -> dict:
    def find():
        path = gw.dir / "access.log"
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            if rid in line:
                return json.loads(line)
        return None
    return wait_for(find, 5, what=f"access log line of {rid}")


class Env:
    def __init__(self, gw, up, key, collector):
        self.gw, self.up, self.key, self.collector = gw, up, key, collector

    def token(self, **claims) -> str:
        return make_token(self.key, std_claims(iss=ISS, **claims))

    def get(self, path: str, token: str | None = None, headers: dict | None = None):
        rid = "trace-" + uuid.uuid4().hex
        h = {"X-Request-Id": rid, **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        return self.gw.get(path, headers=h), rid


def gateway_config(up, provider, tracing: dict | None, **top):
    routes = [route("traced", "/t", "echo", auth={"mode": "required"}),
              route("open", "/o", "echo")]
    cfg = base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                      providers=[provider], access_log={"enabled": True, "path": "access.log"},
                      **top)
    if tracing is not None:
        cfg["tracing"] = tracing
    return cfg


@pytest.fixture(scope="module")
def env(mod_procs):
    key = SigningKey("ES256", "trace-key")
    jwks = JwksServer([key])
    collector = Collector()
    up = mod_procs.upstream("traced")
    cfg = gateway_config(up, jwks.provider("corp", ISS), {
        "enabled": True, "otlp_endpoint": collector.endpoint, "service_name": SERVICE,
        "sample_ratio": 1.0})
    gw = mod_procs.gateway(cfg)
    wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200, 10,
             what="ready")
    yield Env(gw, up, key, collector)
    collector.stop()
    jwks.stop()


# ---------------------------------------------------------------------------------------------
# Spans


def test_server_client_and_verification_spans(env):
    token = env.token(scope="read")
    r, rid = env.get("/t/a/../b//c?q=1", token)
    assert r.status_code == 200
    trace_id, parent, flags, _ = upstream_traceparent(env.up, rid)
    assert flags == "01"
    spans = env.collector.trace(trace_id, 3)
    assert len(spans) == 3, spans

    server = one(spans, KIND_SERVER)
    a = attrs(server)
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/t/b/c", "the canonical path, without the query"
    assert a["http.route"] == "traced"
    assert a["http.response.status_code"] == 200
    assert a["portcullis.auth.result"] == "ok"
    assert server.parent_span_id == b"", "a new trace: the server span is the root"
    assert server.end_time_unix_nano >= server.start_time_unix_nano > 0
    assert abs(server.start_time_unix_nano / 1e9 - time.time()) < 60

    client = one(spans, KIND_CLIENT)
    assert client.parent_span_id == server.span_id
    assert client.span_id.hex() == parent, "the upstream's parent is the gateway's client span"
    ca = attrs(client)
    assert ca["server.address"] == "127.0.0.1" and ca["server.port"] == env.up.port
    assert ca["http.response.status_code"] == 200
    assert server.start_time_unix_nano <= client.start_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano

    verify = one(spans, KIND_INTERNAL)
    assert verify.parent_span_id == server.span_id
    assert server.start_time_unix_nano <= verify.start_time_unix_nano <= verify.end_time_unix_nano

    resources = [res for res, s in env.collector.spans() if s.trace_id.hex() == trace_id]
    assert all(res.get("service.name") == SERVICE for res in resources), resources
    assert "application/x-protobuf" in env.collector.content_types[-1]

    # The same token again is a cache hit: no verification span this time.
    r, rid = env.get("/t/again", token)
    assert r.status_code == 200
    trace_id, _, _, _ = upstream_traceparent(env.up, rid)
    spans = env.collector.trace(trace_id, 2)
    time.sleep(1.5)  # a batch is sent within half a second; anything late would show now
    spans = [s for _, s in env.collector.spans() if s.trace_id.hex() == trace_id]
    assert sorted(s.kind for s in spans) == [KIND_SERVER, KIND_CLIENT], spans


def test_refused_request_has_a_server_span_only(env):
    r, rid = env.get("/t/x", "not-a-token")
    assert r.status_code == 401
    trace_id = access_log_entry(env.gw, rid)["trace_id"]
    spans = env.collector.trace(trace_id, 1)
    server = one(spans, KIND_SERVER)
    a = attrs(server)
    assert a["http.response.status_code"] == 401
    assert a["portcullis.auth.result"] == "malformed"
    assert server.status.code != trace_pb2.Status.STATUS_CODE_ERROR, "a 4xx is the client's error"
    assert not [s for s in spans if s.kind == KIND_CLIENT]


def test_no_token_or_authorization_value_in_exported_bytes(env):
    valid = env.token(scope="secret-scope-marker")
    expired = env.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    bogus = "QmVhcmVyU2VjcmV0.eyJzZWNyZXQiOjF9.c2lnbmF0dXJlLW1hcmtlcg"
    ids = []
    for tok, path in [(valid, "/t/x"), (expired, "/t/y"), (bogus, "/t/z"), (valid, "/o/open")]:
        r, rid = env.get(path, tok)
        ids.append(access_log_entry(env.gw, rid)["trace_id"])
    r, rid = env.get("/o/q?access_token=query-secret-marker", None,
                     {"Authorization": "Basic dXNlcjpwYXNzd29yZC1tYXJrZXI="})
    ids.append(access_log_entry(env.gw, rid)["trace_id"])
    for trace_id in ids:
        env.collector.trace(trace_id, 1)
    raw = env.collector.raw()
    for secret in [valid, expired, bogus, *valid.split("."), *bogus.split("."),
                   "query-secret-marker", "dXNlcjpwYXNzd29yZC1tYXJrZXI=", "Bearer"]:
        assert secret.encode() not in raw, f"{secret[:20]}... exported"


# ---------------------------------------------------------------------------------------------
# Trace context


def test_incoming_trace_is_continued(env):
    incoming_trace = uuid.uuid4().hex
    incoming_parent = uuid.uuid4().hex[:16]
    tp = f"00-{incoming_trace}-{incoming_parent}-01"
    r, rid = env.get("/o/continued", headers={"traceparent": tp})
    assert r.status_code == 200
    trace_id, parent, flags, _ = upstream_traceparent(env.up, rid)
    assert trace_id == incoming_trace
    assert parent != incoming_parent
    assert flags == "01"
    assert access_log_entry(env.gw, rid)["trace_id"] == incoming_trace
    spans = env.collector.trace(incoming_trace, 2)
    server = one(spans, KIND_SERVER)
    assert server.parent_span_id.hex() == incoming_parent
    assert one(spans, KIND_CLIENT).span_id.hex() == parent


def test_unsampled_flag_is_kept_and_not_recorded(env):
    incoming_trace = uuid.uuid4().hex
    tp = f"00-{incoming_trace}-{uuid.uuid4().hex[:16]}-00"
    r, rid = env.get("/o/unsampled", headers={"traceparent": tp})
    assert r.status_code == 200
    trace_id, _, flags, _ = upstream_traceparent(env.up, rid)
    assert (trace_id, flags) == (incoming_trace, "00")
    # A sampled request sent after it is exported; by then the unsampled one would have been.
    r, rid = env.get("/o/after")
    after, _, _, _ = upstream_traceparent(env.up, rid)
    env.collector.trace(after, 2)
    assert not [s for _, s in env.collector.spans() if s.trace_id.hex() == incoming_trace]


def test_absent_traceparent_starts_a_new_trace(env):
    seen = set()
    for _ in range(3):
        r, rid = env.get("/o/new")
        assert r.status_code == 200
        trace_id, parent, flags, _ = upstream_traceparent(env.up, rid)
        assert trace_id != "0" * 32 and parent != "0" * 16
        assert flags == "01", "sample_ratio 1.0 samples every new trace"
        assert access_log_entry(env.gw, rid)["trace_id"] == trace_id
        seen.add(trace_id)
    assert len(seen) == 3


@pytest.mark.parametrize("bad", [
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # version ff
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",   # uppercase hex
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",    # trace id too short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",  # version 00 is 55 bytes
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",      # no flags
    "garbage",
])
def test_invalid_traceparent_is_replaced(env, bad):
    r, rid = env.get("/o/invalid", headers={"traceparent": bad})
    assert r.status_code == 200
    trace_id, parent, _, _ = upstream_traceparent(env.up, rid)
    assert trace_id not in bad.lower() and parent not in bad.lower()
    assert trace_id != "0" * 32
    assert access_log_entry(env.gw, rid)["trace_id"] == trace_id
    server = one(env.collector.trace(trace_id, 2), KIND_SERVER)
    assert server.parent_span_id == b"", "an invalid parent is not a parent"


def test_tracestate_passes_through_unchanged(env):
    tp = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    r, rid = env.get("/o/state", headers={"traceparent": tp, "tracestate": state})
    assert r.status_code == 200
    _, _, _, doc = upstream_traceparent(env.up, rid)
    assert echo_headers(doc, "tracestate") == [state]


def test_local_answers_carry_a_trace_id_in_the_access_log(env):
    tp_trace = uuid.uuid4().hex
    r, rid = env.get("/nowhere", headers={"traceparent": f"00-{tp_trace}-{uuid.uuid4().hex[:16]}-01"})
    assert r.status_code == 404
    assert access_log_entry(env.gw, rid)["trace_id"] == tp_trace
    r, rid = env.get("/nowhere")
    assert re.fullmatch(r"[0-9a-f]{32}", access_log_entry(env.gw, rid)["trace_id"])


# ---------------------------------------------------------------------------------------------
# Tracing disabled, sampling, and collectors that fail


def test_context_propagates_with_tracing_disabled(procs):
    collector = Collector()
    try:
        up = procs.upstream("untraced")
        jwks = JwksServer([SigningKey("ES256", "k")])
        cfg = gateway_config(up, jwks.provider("corp", ISS),
                             {"otlp_endpoint": collector.endpoint})  # enabled defaults to false
        gw = procs.gateway(cfg)
        incoming = uuid.uuid4().hex
        rid = "untraced-1"
        r = gw.get("/o/x", headers={"X-Request-Id": rid,
                                     "traceparent": f"00-{incoming}-{uuid.uuid4().hex[:16]}-01"})
        assert r.status_code == 200
        trace_id, _, flags, _ = upstream_traceparent(up, rid)
        assert (trace_id, flags) == (incoming, "01")
        rid = "untraced-2"
        assert gw.get("/o/y", headers={"X-Request-Id": rid}).status_code == 200
        trace_id, _, flags, _ = upstream_traceparent(up, rid)
        assert flags == "00", "a new trace that nothing records is not marked sampled"
        assert access_log_entry(gw, rid)["trace_id"] == trace_id
        time.sleep(1.5)
        assert collector.bodies == []
        jwks.stop()
    finally:
        collector.stop()


def test_sample_ratio_zero_still_records_sampled_incoming_traces(procs):
    collector = Collector()
    try:
        up = procs.upstream("ratio0")
        jwks = JwksServer([SigningKey("ES256", "k")])
        cfg = gateway_config(up, jwks.provider("corp", ISS), {
            "enabled": True, "otlp_endpoint": collector.endpoint, "sample_ratio": 0})
        gw = procs.gateway(cfg)
        for i in range(5):
            assert gw.get("/o/new", headers={"X-Request-Id": f"ratio0-{i}"}).status_code == 200
            _, _, flags, _ = upstream_traceparent(up, f"ratio0-{i}")
            assert flags == "00"
        incoming = uuid.uuid4().hex
        assert gw.get("/o/in", headers={"X-Request-Id": "ratio0-in", "traceparent":
                                        f"00-{incoming}-{uuid.uuid4().hex[:16]}-01"}).status_code == 200
        spans = wait_for(lambda: [s for _, s in collector.spans()], 10, what="exported spans")
        time.sleep(1)
        assert {s.trace_id.hex() for _, s in collector.spans()} == {incoming}, spans
        jwks.stop()
    finally:
        collector.stop()


def _requests_stay_fast(gw, n=200):
    s = requests.Session()
    slowest = 0.0
    for i in range(n):
        t0 = time.monotonic()
        r = s.get(gw.url("http", f"/o/fast/{i}"), timeout=5)
        took = time.monotonic() - t0
        assert r.status_code == 200
        assert took < 1.0, f"request {i} took {took:.2f}s"
        slowest = max(slowest, took)
    return slowest


def _dropped(gw) -> float:
    return metric(gw.metrics(), DROPPED) or 0.0


def test_dead_collector_never_slows_requests(procs):
    up = procs.upstream("deadcol")
    jwks = JwksServer([SigningKey("ES256", "k")])
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    cfg = gateway_config(up, jwks.provider("corp", ISS), {"enabled": True, "otlp_endpoint": dead})
    gw = procs.gateway(cfg)
    assert _dropped(gw) == 0, "the counter is exported from the start"
    _requests_stay_fast(gw)
    wait_for(lambda: _dropped(gw) >= 200, 15, interval=0.2, what="dropped spans counted")
    jwks.stop()


def test_hanging_collector_never_slows_requests(procs):
    hang = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections in the kernel, never answers
    try:
        up = procs.upstream("hangcol")
        jwks = JwksServer([SigningKey("ES256", "k")])
        endpoint = f"http://127.0.0.1:{hang.getsockname()[1]}/v1/traces"
        cfg = gateway_config(up, jwks.provider("corp", ISS), {"enabled": True, "otlp_endpoint": endpoint})
        gw = procs.gateway(cfg)
        _requests_stay_fast(gw)
        wait_for(lambda: _dropped(gw) > 0, 20, interval=0.2, what="dropped spans counted")
        jwks.stop()
    finally:
        hang.close()


# ---------------------------------------------------------------------------------------------
# Config


def test_tracing_block_is_validated_with_key_paths(procs):
    up_cfg = {"echo": upstream_cfg("127.0.0.1:1")}
    listeners = {"http": {"addr": f"127.0.0.1:{free_port()}"}}
    for tracing, wanted in [
        ({"otlp_endpoint": "ftp://collector:4318/v1/traces"}, "tracing.otlp_endpoint"),
        ({"otlp_endpoint": "not a url"}, "tracing.otlp_endpoint"),
        ({"sample_ratio": 1.5}, "tracing.sample_ratio"),
        ({"sample_ratio": -0.1}, "tracing.sample_ratio"),
        ({"enabled": True, "sample_rate": 1}, "tracing.sample_rate"),
        ({"service_name": ""}, "tracing.service_name"),
    ]:
        cfg = base_config(up_cfg, [route("r", "/", "echo")], tracing=tracing)
        cfg["listeners"] = listeners
        code, out = procs.validate(cfg)
        assert code == 1, (tracing, out)
        assert wanted in out, (tracing, out)
        assert "listeners" not in out, out
    cfg = base_config(up_cfg, [route("r", "/", "echo")], tracing={
        "enabled": True, "otlp_endpoint": "https://otel.example.com/v1/traces", "sample_ratio": 0.25})
    cfg["listeners"] = listeners
    code, out = procs.validate(cfg)
    assert code == 0, out


def test_reload_turns_tracing_on(procs):
    collector = Collector()
    try:
        up = procs.upstream("reloaded")
        jwks = JwksServer([SigningKey("ES256", "k")])
        gw = procs.gateway(gateway_config(up, jwks.provider("corp", ISS), None))
        assert gw.get("/o/before", headers={"X-Request-Id": "reload-before"}).status_code == 200
        before, _, flags, _ = upstream_traceparent(up, "reload-before")
        assert flags == "00"
        gw.config["tracing"] = {"enabled": True, "otlp_endpoint": collector.endpoint,
                                "service_name": "after-reload"}
        gw.write_config()
        gw.proc.send_signal(signal.SIGHUP)

        def traced():
            rid = "reload-" + uuid.uuid4().hex
            assert gw.get("/o/after", headers={"X-Request-Id": rid}).status_code == 200
            return upstream_traceparent(up, rid)[2] == "01" and rid
        rid = wait_for(traced, 10, interval=0.2, what="the reload to enable tracing")
        trace_id, _, _, _ = upstream_traceparent(up, rid)
        collector.trace(trace_id, 2)
        resources = [res for res, s in collector.spans() if s.trace_id.hex() == trace_id]
        assert resources and all(r["service.name"] == "after-reload" for r in resources)
        assert not [s for _, s in collector.spans() if s.trace_id.hex() == before]
        jwks.stop()
    finally:
        collector.stop()
