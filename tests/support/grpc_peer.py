"""A real gRPC upstream (grpcio server, generic handlers, raw bytes: no generated code) and a
client channel through the gateway's `https` listener (conf/README.md §8).

Every service name is served the same methods, so routes with different prefixes
(`/test.Echo`, `/tls.Echo`, `/limited.Echo`, ...) can share one peer:

- `Unary`: answers `echo:<request>`, with initial metadata `x-initial: i-value` and trailing
  metadata `x-trailer: t-value`.
- `Stream` (server streaming): request `N` or `N:wait`; answers `msg-0` .. `msg-{N-1}`; with
  `:wait` it sends `msg-0` and then waits for `release` (a threading.Event the test sets) before
  the rest, so a test can prove the first message arrived while the call was still open.
- `Chat` (bidirectional): answers each request message with `echo:<message>` as it arrives.
- `Upload` (client streaming): answers the concatenation of the request messages.
- `Fail`: aborts with NOT_FOUND "no such widget".

Each call is recorded (method and invocation metadata as received) for assertions on what the
gateway forwarded.
"""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc


def _identity(b: bytes) -> bytes:
    return b


class GrpcPeer:
    def __init__(self, tls=None, start: bool = True):
        """`tls`: a harness.TlsFiles whose server certificate the peer presents (ALPN h2); None
        serves cleartext HTTP/2 (h2c)."""
        self.tls = tls
        self._lock = threading.Lock()
        self.calls: list[dict] = []   # {"method", "metadata": [(key, value)]}
        self.release = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  handlers=[_Handler(self)],
                                  options=[("grpc.so_reuseport", 0)])
        if tls is not None:
            creds = grpc.ssl_server_credentials(
                [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{self.port}"
        if start:
            self.server.start()

    def record(self, method: str, context) -> None:
        with self._lock:
            self.calls.append({"method": method,
                               "metadata": [(m.key, m.value) for m in context.invocation_metadata()]})

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def last(self) -> dict:
        with self._lock:
            return self.calls[-1]

    def stop(self) -> None:
        self.release.set()
        self.server.stop(grace=0).wait(5)


def metadata_values(call: dict, key: str) -> list:
    k = key.lower()
    return [v for mk, v in call["metadata"] if mk.lower() == k]


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, peer: GrpcPeer):
        self.peer = peer

    def service(self, details):
        method = details.method.rsplit("/", 1)[-1]
        peer = self.peer

        def unary(request, context):
            peer.record(details.method, context)
            context.send_initial_metadata((("x-initial", "i-value"),))
            context.set_trailing_metadata((("x-trailer", "t-value"),))
            return b"echo:" + request

        def stream(request, context):
            peer.record(details.method, context)
            text = request.decode()
            n, _, mode = text.partition(":")
            for i in range(int(n)):
                if i == 1 and mode == "wait":
                    peer.release.wait(15)
                yield f"msg-{i}".encode()

        def chat(requests, context):
            peer.record(details.method, context)
            for r in requests:
                yield b"echo:" + r

        def upload(requests, context):
            peer.record(details.method, context)
            return b"".join(requests)

        def fail(request, context):
            peer.record(details.method, context)
            context.abort(grpc.StatusCode.NOT_FOUND, "no such widget")

        kw = {"request_deserializer": _identity, "response_serializer": _identity}
        if method == "Unary":
            return grpc.unary_unary_rpc_method_handler(unary, **kw)
        if method == "Stream":
            return grpc.unary_stream_rpc_method_handler(stream, **kw)
        if method == "Chat":
            return grpc.stream_stream_rpc_method_handler(chat, **kw)
        if method == "Upload":
            return grpc.stream_unary_rpc_method_handler(upload, **kw)
        if method == "Fail":
            return grpc.unary_unary_rpc_method_handler(fail, **kw)
        return None  # UNIMPLEMENTED from the peer itself


class GatewayChannel:
    """A grpcio channel to the gateway's `https` listener (TLS with the test CA, ALPN h2)."""

    def __init__(self, gw, token: str | None = None):
        self.token = token
        creds = grpc.ssl_channel_credentials(root_certificates=Path(gw.tls.ca).read_bytes())
        self.channel = grpc.secure_channel(
            f"127.0.0.1:{gw.port('https')}", creds,
            options=[("grpc.ssl_target_name_override", "localhost"),
                     ("grpc.default_authority", "localhost"),
                     ("grpc.enable_http_proxy", 0),
                     ("grpc.enable_retries", 0)])

    def metadata(self, token: str | None = None, extra=()) -> list:
        tok = token if token is not None else self.token
        md = [("authorization", f"Bearer {tok}")] if tok else []
        return md + list(extra)

    def unary(self, path: str):
        return self.channel.unary_unary(path, request_serializer=_identity,
                                        response_deserializer=_identity)

    def unary_stream(self, path: str):
        return self.channel.unary_stream(path, request_serializer=_identity,
                                         response_deserializer=_identity)

    def stream_stream(self, path: str):
        return self.channel.stream_stream(path, request_serializer=_identity,
                                          response_deserializer=_identity)

    def stream_unary(self, path: str):
        return self.channel.stream_unary(path, request_serializer=_identity,
                                         response_deserializer=_identity)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "GatewayChannel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
