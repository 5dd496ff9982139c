#!/usr/bin/env python3
"""An upstream that breaks HTTP on purpose, for the fault tests (stdlib only, raw sockets).

By request path:
    /reset-mid-body   200 with Content-Length 1,000,000, 64 KiB of it, then a TCP reset
    /bad-status       a status line that is not HTTP (`HTTP/1.1 2x0 ???`), then close
    /huge-headers     200 whose header block is over 1 MiB (1,100 headers of 1 KiB)
    anything else     200 `ok` (keep-alive)

Each request is appended to `--record FILE` as one JSON line {"path": ...} on arrival.
"""

import argparse
import json
import socket
import socketserver
import struct
import sys
import threading

_record_lock = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            self.server.record(path)
            if path == "/reset-mid-body":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 65536)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if path == "/bad-status":
                sock.sendall(b"HTTP/1.1 2x0 ???\r\nContent-Length: 2\r\n\r\nok")
                sock.close()
                return
            if path == "/huge-headers":
                filler = "".join(f"X-Filler-{i}: {'a' * 1000}\r\n" for i in range(1100))
                sock.sendall(("HTTP/1.1 200 OK\r\n" + filler + "Content-Length: 2\r\n\r\nok").encode())
                sock.close()
                return
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, record):
        super().__init__(addr, Handler)
        self.record_path = record

    def record(self, path):
        if self.record_path:
            with _record_lock, open(self.record_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": path}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--record")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    with Server((host, int(port)), a.record) as srv:
        print(f"fault upstream on {a.listen}", file=sys.stderr, flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
