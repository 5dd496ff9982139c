"""A raw-socket HTTP/1.1 upstream that streams on cue (conf/README.md §8 "Streaming").

It runs in a thread of the test process and holds the second half of every exchange until the
test says so, which proves streaming without timing assumptions:

- `GET /events...`: `text/event-stream`, chunked: the event `data: one`, then it waits for
  `release` before the event `data: two` and the end of the body.
- `GET /download...`: the same with `application/octet-stream` chunks `part-one;` / `part-two;`.
- `GET /fixed...`: a `Content-Length` body in two parts (`FIXED_PARTS`): the first 4 KiB, then
  after `release` the rest. A part that size, not a few bytes: with a `Content-Length` the gateway
  may coalesce up to one TCP segment (1,460 bytes) before writing (conf/README.md §8).
- any other request (an upload): reads the body as it arrives (chunked or Content-Length), sets
  `got_first` as soon as the first body byte is in, then answers 200 with a JSON
  `{"body", "first"}` once the whole body is there (`first`: the bytes it had when `got_first`
  was set).
"""

from __future__ import annotations

import json
import socket
import threading

from .harness import free_port


def _decode_chunked(buf: bytes) -> tuple[bytes, bool]:
    """The payload decodable from `buf` so far (partial chunks included) and whether the body
    is complete (the zero chunk and the empty trailer line are in)."""
    out = b""
    pos = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return out, False
        size = int(buf[pos:eol].split(b";")[0].strip() or b"0", 16)
        start = eol + 2
        if size == 0:
            rest = buf[start:]
            return out, rest.startswith(b"\r\n") or b"\r\n\r\n" in rest
        out += buf[start:start + size]
        if len(buf) < start + size + 2:
            return out, False
        pos = start + size + 2

# Larger than one TCP segment, so it is written out before the rest arrives.
FIXED_PARTS = (b"part-one;" + b"1" * 4087, b"part-two;")


class StreamUpstream:
    def __init__(self):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.release = threading.Event()
        self.got_first = threading.Event()
        self.requests: list[dict] = []   # {"method", "path", "headers"} per request head
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"stream-{self.port}")
        self._thread.start()

    def reset(self) -> None:
        self.release.clear()
        self.got_first.clear()

    def stop(self) -> None:
        self._stop.set()
        self.release.set()
        self._thread.join(timeout=5)
        self._sock.close()

    # ---- server

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(20)
        try:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
                with self._lock:
                    self.requests.append({"method": method, "path": path, "headers": headers})
                hd = {k.lower(): v for k, v in headers}
                if path.startswith("/healthz"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                elif path.startswith("/events") or path.startswith("/download"):
                    self._chunked_stream(conn, path)
                elif path.startswith("/fixed"):
                    first, second = FIXED_PARTS
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                                 + f"Content-Length: {len(first) + len(second)}\r\n\r\n".encode()
                                 + first)
                    self.release.wait(15)
                    conn.sendall(second)
                else:
                    buf = self._upload(conn, hd, buf)
                    if buf is None:
                        return
        except OSError:
            pass
        finally:
            conn.close()

    def _chunked_stream(self, conn: socket.socket, path: str) -> None:
        if path.startswith("/events"):
            ctype, one, two = b"text/event-stream", b"data: one\n\n", b"data: two\n\n"
        else:
            ctype, one, two = b"application/octet-stream", b"part-one;", b"part-two;"

        def chunk(b: bytes) -> bytes:
            return b"%x\r\n" % len(b) + b + b"\r\n"

        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype +
                     b"\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(one))
        self.release.wait(15)
        conn.sendall(chunk(two) + b"0\r\n\r\n")

    def _upload(self, conn: socket.socket, hd: dict, buf: bytes) -> bytes | None:
        chunked = "chunked" in hd.get("transfer-encoding", "").lower()
        length = int(hd.get("content-length", "0") or 0)
        first = None
        while True:
            if chunked:
                body, done = _decode_chunked(buf)
            else:
                body, done = buf[:length], len(buf) >= length
            if body and first is None:
                first = body
                self.got_first.set()
            if done:
                break
            data = conn.recv(65536)
            if not data:
                return None
            buf += data
        payload = json.dumps({"body": body.decode("latin-1"),
                              "first": (first or b"").decode("latin-1")}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                     str(len(payload)).encode() + b"\r\n\r\n" + payload)
        return b""  # leftover after a chunked body is not expected from the gateway
