"""A real WebSocket upstream (the `websockets` library's server) in a thread of the test process,
and a client that connects through the gateway (conf/README.md §8).

The server records every opening handshake it receives (path and headers, as received), echoes
each message back as `echo:<message>`, can push a message to every open connection, and counts
its open connections, so a test can prove what reached it, that nothing reached it, and that the
gateway closed the upstream side of a tunnel too.
"""

from __future__ import annotations

import ssl
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import ServerConnection, serve

from .harness import free_port


class WsUpstream:
    def __init__(self, port: int | None = None, start: bool = True):
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self.handshakes: list[dict] = []   # {"path", "headers": [(name, value)]} per handshake
        self.messages: list = []           # every message received, in order
        self._live: set[ServerConnection] = set()
        self._server = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # ---- what arrived

    def handshake_count(self) -> int:
        with self._lock:
            return len(self.handshakes)

    def last_handshake(self) -> dict:
        with self._lock:
            return self.handshakes[-1]

    def live(self) -> int:
        """Connections currently open on the upstream side."""
        with self._lock:
            return len(self._live)

    def push(self, message: str) -> int:
        """Sends `message` from the upstream on every open connection; returns how many."""
        with self._lock:
            conns = list(self._live)
        sent = 0
        for c in conns:
            try:
                c.send(message)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    # ---- server side

    def _on_request(self, connection: ServerConnection, request):
        with self._lock:
            self.handshakes.append({"path": request.path,
                                    "headers": [(k, v) for k, v in request.headers.raw_items()]})
        return None  # go on with the handshake

    def _handler(self, ws: ServerConnection) -> None:
        with self._lock:
            self._live.add(ws)
        try:
            for msg in ws:
                with self._lock:
                    self.messages.append(msg)
                ws.send("echo:" + msg if isinstance(msg, str) else b"echo:" + msg)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._live.discard(ws)

    def start(self) -> "WsUpstream":
        self._server = serve(self._handler, "127.0.0.1", self.port, process_request=self._on_request,
                             ping_interval=None, close_timeout=1, compression=None)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"ws-upstream-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            conns = list(self._live)
        for c in conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "WsUpstream":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def header_values(handshake: dict, name: str) -> list:
    n = name.lower()
    return [v for k, v in handshake["headers"] if k.lower() == n]


def ws_connect(gw, path: str, token: str | None = None, listener: str = "http",
               headers: list | tuple = ()) -> ClientConnection:
    """Opens a WebSocket through the gateway's `http` (ws://) or `https` (wss://) listener; use it
    as a context manager (`with ws_connect(...) as ws:`), which closes the connection at the end.
    Raises websockets.exceptions.InvalidStatus when the handshake is refused."""
    hdrs = list(headers)
    if token is not None:
        hdrs.append(("Authorization", f"Bearer {token}"))
    kw = {}
    if listener == "https":
        kw["ssl"] = ssl.create_default_context(cafile=str(gw.tls.ca))
        kw["server_hostname"] = "localhost"
        uri = f"wss://127.0.0.1:{gw.port('https')}{path}"
    else:
        uri = f"ws://127.0.0.1:{gw.port(listener)}{path}"
    return connect(uri, additional_headers=hdrs, open_timeout=5, ping_interval=None,
                   close_timeout=2, proxy=None, compression=None, **kw)


def closed_within(ws: ClientConnection, seconds: float) -> tuple[bool, list]:
    """(True if the connection ends within `seconds`, the messages received meanwhile)."""
    got = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, got
        try:
            got.append(ws.recv(timeout=left))
        except ConnectionClosed:
            return True, got
        except TimeoutError:
            return False, got
