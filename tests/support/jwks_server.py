"""A real HTTP JWKS server (and request canary) running in a thread of the test process.

Serves a mutable key list at `/jwks.json` and an OpenID discovery document at
`/.well-known/openid-configuration`; optionally sends `Cache-Control: max-age=N` and an `ETag`
(answering 304 to a matching `If-None-Match`). It counts every request per path, so tests can
prove how often the gateway fetched (K6) or that nothing was fetched at all (K2 canary).
`stop()` / `start()` keep the same port, like an IdP going down and coming back.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .harness import free_port, with_overrides


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class JwksServer:
    JWKS_PATH = "/jwks.json"
    DISCOVERY_PATH = "/.well-known/openid-configuration"

    def __init__(self, keys: list | None = None, *, port: int | None = None,
                 max_age: int | None = None, etag: bool = False, start: bool = True):
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + self.JWKS_PATH
        self._lock = threading.Lock()
        self._keys: list = []
        self.set_keys(keys or [])
        self.max_age = max_age
        self.etag = etag
        self.status: int | None = None        # force this status for /jwks.json (e.g. 500)
        self.body_override: bytes | None = None  # serve these bytes instead of the key set
        self.content_type = "application/json"  # of /jwks.json
        self.delay = 0.0                       # seconds /jwks.json waits before answering
        self.discovery_issuer: str | None = None  # default: self.base
        self.counts: Counter = Counter()       # path (without query) -> requests
        self.not_modified = 0                  # 304s sent
        self.log: list[dict] = []              # {"path", "headers" (lower-case names), "t"} per request
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ---- key set

    def set_keys(self, keys: list) -> None:
        """`keys`: SigningKey objects (exported with `.jwk()`) or raw JWK dicts."""
        out = []
        for k in keys:
            out.append(k if isinstance(k, dict) else k.jwk())
        with self._lock:
            self._keys = out

    def keys(self) -> list:
        with self._lock:
            return list(self._keys)

    def document(self) -> bytes:
        if self.body_override is not None:
            return self.body_override
        return json.dumps({"keys": self.keys()}).encode()

    def current_etag(self) -> str:
        return '"' + hashlib.sha256(self.document()).hexdigest()[:16] + '"'

    # ---- counters

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def jwks_fetches(self) -> int:
        with self._lock:
            return self.counts[self.JWKS_PATH]

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.not_modified = 0
            self.log.clear()

    def _record(self, path: str, headers) -> None:
        with self._lock:
            self.counts[path] += 1
            self.log.append({"path": path, "headers": {k.lower(): v for k, v in headers.items()},
                             "t": time.monotonic()})

    # ---- lifecycle

    def start(self) -> "JwksServer":
        if self._httpd is not None:
            return self
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                path = self.path.split("?", 1)[0]
                owner._record(path, self.headers)
                if path == owner.JWKS_PATH:
                    if owner.delay:
                        time.sleep(owner.delay)
                    if owner.status is not None:
                        return self._send(owner.status, b'{"error":"unavailable"}')
                    body = owner.document()
                    extra = {}
                    if owner.max_age is not None:
                        extra["Cache-Control"] = f"max-age={owner.max_age}"
                    if owner.etag:
                        tag = owner.current_etag()
                        extra["ETag"] = tag
                        if self.headers.get("If-None-Match") == tag:
                            with owner._lock:
                                owner.not_modified += 1
                            return self._send(304, b"", extra)
                    return self._send(200, body, extra, owner.content_type)
                if path == owner.DISCOVERY_PATH:
                    doc = {"issuer": owner.discovery_issuer or owner.base,
                           "jwks_uri": owner.url,
                           "id_token_signing_alg_values_supported": ["ES256", "RS256"]}
                    return self._send(200, json.dumps(doc).encode())
                return self._send(404, b'{"error":"not_found"}')

            do_POST = do_GET  # noqa: N815 - a canary counts every method
            do_HEAD = do_GET  # noqa: N815

            def _send(self, status: int, body: bytes, extra: dict | None = None,
                      content_type: str = "application/json"):
                try:
                    self.send_response(status)
                    for k, v in (extra or {}).items():
                        self.send_header(k, v)
                    if status != 304:
                        self.send_header("Content-Type", content_type)
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if status != 304 and self.command != "HEAD":
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        deadline = time.monotonic() + 10
        while True:
            try:
                self._httpd = _Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name=f"jwks-{self.port}")
        self._thread.start()
        return self

    def __enter__(self) -> "JwksServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (connections are refused, like a crashed IdP); the port is kept. Using
        the server as a context manager stops it at the end of the block however it ends."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def running(self) -> bool:
        return self._httpd is not None

    # ---- gateway configuration

    def provider(self, name: str, issuer: str, *, discovery: bool = False, **overrides) -> dict:
        """A conf/README.md §2 provider entry whose JWKS is this server; `jwks` overrides merge into
        the `jwks` block, the rest into the provider (None removes a key)."""
        jwks: dict[str, Any] = {"discovery": True} if discovery else {"url": self.url}
        jwks.update({"refresh_interval": "1h", "min_refresh": "1s", "fetch_timeout": "1s",
                     "max_stale": "1h"})
        with_overrides(jwks, overrides.pop("jwks", None) or {})
        p: dict[str, Any] = {"name": name, "issuer": issuer, "audiences": ["api"],
                             "algorithms": ["ES256", "RS256", "EdDSA", "PS256", "ES384"],
                             "jwks": jwks, "leeway": "30s", "max_lifetime": "24h"}
        return with_overrides(p, overrides)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
