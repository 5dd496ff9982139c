"""Many small HTTP/1.1 requests from several processes over keep-alive sockets, for the flood
tests: each request can carry its own `X-Forwarded-For`, so a trusted-proxy gateway sees that
many distinct clients. Plain sockets and a minimal response reader keep the client cheap enough
that the gateway, not the test, is what is measured."""

from __future__ import annotations

import multiprocessing
import socket
from collections import Counter


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """(status, keep-alive) of the next response on `sock`; leftover bytes stay in `buf`."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1")
    del buf[:end]
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and "close" in value.lower():
            close = True
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in a response body")
        buf += chunk
    del buf[:length]
    return status, not close


def _worker(args) -> Counter:
    port, path, first, count, key_of = args
    reqs = (f"GET {path} HTTP/1.1\r\nHost: flood.test\r\n"
            f"X-Forwarded-For: {key_of(i)}\r\n\r\n".encode() for i in range(first, first + count))
    return _send_worker((port, reqs))


def ipv6_key(i: int) -> str:
    """The i-th address of 2001:db8::/32, one distinct client per request."""
    return f"2001:db8:{(i >> 48) & 0xffff:x}:{(i >> 32) & 0xffff:x}:{(i >> 16) & 0xffff:x}:{i & 0xffff:x}::1"


def flood(port: int, path: str, count: int, key_of=ipv6_key, workers: int = 4,
          offset: int = 0) -> Counter:
    """Sends `count` requests for `path`, request i with `X-Forwarded-For: key_of(offset + i)`;
    returns how many got each status (or `error:<kind>`)."""
    per = -(-count // workers)
    jobs = [(port, path, offset + w * per, min(per, count - w * per), key_of)
            for w in range(workers) if count - w * per > 0]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(jobs)) as pool:
        total: Counter = Counter()
        for c in pool.map(_worker, jobs):
            total.update(c)
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid`, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _send_worker(args) -> Counter:
    port, raw = args
    statuses: Counter = Counter()
    sock = None
    buf = bytearray()
    for req in raw:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            buf = bytearray()
        try:
            sock.sendall(req)
            status, keep = read_response(sock, buf)
        except OSError as e:
            statuses[f"error:{type(e).__name__}"] += 1
            sock.close()
            sock = None
            continue
        statuses[status] += 1
        if not keep:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return statuses


def send_all(port: int, raw_requests: list[bytes], workers: int = 4) -> Counter:
    """Sends each of `raw_requests` (complete HTTP/1.1 requests) over keep-alive connections
    from `workers` processes; returns how many got each status (or `error:<kind>`)."""
    slices = [raw_requests[w::workers] for w in range(workers)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        total: Counter = Counter()
        for c in pool.map(_send_worker, [(port, s) for s in slices if s]):
            total.update(c)
    return total
