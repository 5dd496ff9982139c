#!/usr/bin/env python3
"""Echo upstream for Portcullis integration tests and `make demo` (stdlib only).

Every request is answered 200 with a JSON description of exactly what arrived, so a test can
assert on what the gateway forwarded:

    {"peer", "method", "path" (raw request target), "headers" ([[name, value], ...] in received
     order), "body" (latin-1), "body_length", "connection_id", "connection_request"}

Exceptions: `GET /healthz` answers 200 `ok` (plain text, so health checks pass); `?delay_ms=N`
sleeps N ms before answering; `?status=N` answers with status N (same JSON body).
`--record FILE` appends one JSON line per request (the same object) before answering, so a test
can also prove that a request never reached the upstream.
"""

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_conn_ids = itertools.count(1)


class _BadChunk(Exception):
    pass


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately; without this, Nagle + delayed ACK add ~40 ms
    # to every keep-alive response.
    disable_nagle_algorithm = True
    server_version = "echo-upstream"

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        self.connection_id = next(_conn_ids)
        self.connection_requests = 0

    def log_message(self, format, *args):  # quiet: nothing per request
        pass

    def __getattr__(self, name):
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; answer every method the same way.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _read_chunked(self):
        out = bytearray()
        while True:
            line = self.rfile.readline(65537)
            if not line.endswith(b"\n"):
                raise _BadChunk("truncated chunk size line")
            size_txt = line.split(b";", 1)[0].strip()
            try:
                size = int(size_txt, 16)
            except ValueError:
                raise _BadChunk("bad chunk size") from None
            if size == 0:
                # Trailers until the empty line.
                while True:
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        return bytes(out)
            data = self.rfile.read(size)
            if len(data) != size:
                raise _BadChunk("truncated chunk")
            out += data
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadChunk("missing chunk terminator")

    def _read_body(self):
        te = self.headers.get_all("Transfer-Encoding") or []
        if te and te[-1].strip().lower().endswith("chunked"):
            return self._read_chunked()
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        n = int(cl.strip())
        data = self.rfile.read(n)
        if len(data) != n:
            raise _BadChunk("truncated body")
        return data

    def _handle(self):
        self.connection_requests += 1
        try:
            body = self._read_body()
        except (_BadChunk, ValueError) as e:
            self.close_connection = True
            self._send(400, "text/plain", f"bad request body: {e}\n".encode())
            return
        split = urlsplit(self.path)
        if self.command in ("GET", "HEAD") and split.path == "/healthz" and not split.query:
            self._record({"peer": self.server.peer_name, "method": self.command,
                          "path": self.path, "headers": [list(h) for h in self.headers.items()],
                          "body": "", "body_length": 0, "health": True})
            self._send(200, "text/plain", b"ok")
            return
        query = parse_qs(split.query)
        doc = {
            "peer": self.server.peer_name,
            "method": self.command,
            "path": self.path,
            "headers": [list(h) for h in self.headers.items()],
            "body": body.decode("latin-1"),
            "body_length": len(body),
            "connection_id": self.connection_id,
            "connection_request": self.connection_requests,
        }
        self._record(doc)  # on arrival, before any delay
        status = 200
        try:
            if "delay_ms" in query:
                time.sleep(int(query["delay_ms"][0]) / 1000.0)
            if "status" in query:
                status = int(query["status"][0])
        except ValueError:
            pass
        self._send(status, "application/json", json.dumps(doc).encode())

    def _record(self, doc):
        path = self.server.record_path
        if not path:
            return
        line = json.dumps(doc) + "\n"
        with self.server.record_lock:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)

    def _send(self, status, ctype, payload):
        try:
            self.send_response(status)
            no_body = status in (204, 304) or 100 <= status < 200
            if not no_body:
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and not no_body:
                self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:7001", help="HOST:PORT")
    ap.add_argument("--name", default="echo", help="peer name reported in every answer")
    ap.add_argument("--record", default=None, help="append one JSON line per request to FILE")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = EchoServer((host.strip("[]") or "127.0.0.1", int(port)), EchoHandler)
    server.peer_name = args.name
    server.record_path = args.record
    server.record_lock = threading.Lock()

    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"listening on {args.listen} as {args.name}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except SystemExit:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
