#!/usr/bin/env python3
"""What `revocation.store: redis` costs at scale, against the file and memory stores, on loopback.

    python3 benches/redis_scale.py              # 1,000,000 revocations, 3 rounds x 3 s of wrk
    REVOCATIONS=100000 ROUNDS=2 python3 benches/redis_scale.py

It starts a redis-server of its own (no persistence) on a free port, fills the shared list with
REVOCATIONS unrelated jti entries in the gateway's own snapshot format, writes the same number
into a file store, and starts one gateway per store (one worker thread, access log off, nginx as
the upstream). Then, for each store: the time from start to the first `/readyz` 200 (the whole
list loaded) and the RSS at that moment; and, round by round, wrk's req/s for a cached token on
a route that checks revocations. Finally, on the redis gateway, req/s of a route whose rate limit
is `shared: true` (one Redis round trip per request) against the same limit kept locally.
Needs redis-server, nginx, wrk and a release build (PORTCULLIS_BIN); prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("PORTCULLIS_BIN", str(ROOT / "target/release/portcullis"))
N = int(os.environ.get("REVOCATIONS", "1000000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "3"))
ISS = "https://bench.local"
PREFIX = "portcullis:"
ADMIN_TOKEN = secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> float:
    """Seconds until `url` answers 200, polling every 10 ms."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready within {timeout} s")


def revoked_jti(admin: int) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/admin/status",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["revocations"]["jti"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def fill_redis(port: int) -> None:
    """N jti entries in the snapshot hash, as the gateway's own write script stores them."""
    key = PREFIX + "{revocations}:list"
    feed = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    assert feed.stdin is not None
    batch: list[str] = []
    for _ in range(N):
        batch += [json.dumps(["jti", ISS, secrets.token_hex(16)], separators=(",", ":")),
                  "0:4102444800"]
        if len(batch) >= 2000:
            feed.stdin.write(resp("HSET", key, *batch))
            batch = []
    if batch:
        feed.stdin.write(resp("HSET", key, *batch))
    feed.stdin.close()
    if feed.wait() != 0:
        raise RuntimeError("redis-cli --pipe failed")


def fill_file(path: Path) -> None:
    with path.open("w") as f:
        for _ in range(N):
            f.write(json.dumps({"op": "revoke_jti", "iss": ISS, "jti": secrets.token_hex(16),
                                "expires_at": 4102444800}) + "\n")


def config(work: Path, name: str, port: int, admin: int, upstream: int, redis_port: int,
           store: str) -> Path:
    d = work / name
    (d / "data").mkdir(parents=True, exist_ok=True)
    redis = f'redis: {{ url: "redis://127.0.0.1:{redis_port}/0" }}\n' if store == "redis" else ""
    shared = "true" if store == "redis" else "false"
    limit = "{ rps: 1000000, burst: 1000000, key: client_ip, shared: %s }"
    (d / "portcullis.yaml").write_text(f"""\
server: {{ threads: 1, pid_file: {d}/pid, upgrade_sock: {d}/upgrade.sock }}
listeners:
  http: {{ addr: "127.0.0.1:{port}" }}
  admin: {{ addr: "127.0.0.1:{admin}" }}
https_redirect: {{ enabled: false }}
access_log: {{ enabled: false }}
admin: {{ token_env: PORTCULLIS_ADMIN_TOKEN }}
revocation: {{ store: {store} }}
{redis}providers:
  - {{ name: bench, issuer: "{ISS}", audiences: [api], algorithms: [ES256], jwks: {{ file: {work}/keys/jwks.json }} }}
upstreams:
  up: {{ peers: [{{ addr: "127.0.0.1:{upstream}" }}], health_check: {{ kind: none }} }}
routes:
  - {{ name: shared, match: {{ path_prefix: /shared }}, upstream: up, rate_limit: {limit % shared} }}
  - {{ name: local, match: {{ path_prefix: /local }}, upstream: up, rate_limit: {limit % "false"} }}
  - {{ name: api, match: {{ path_prefix: / }}, upstream: up }}
""")
    return d


def wrk(port: int, path: str, token: str) -> float:
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{DURATION}s", "-H",
                          f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or non2xx:
        raise RuntimeError(f"wrk on {path}: {out}")
    return float(m.group(1))


def main() -> int:
    for tool in ("redis-server", "redis-cli", "nginx", "wrk"):
        if not shutil.which(tool):
            print(f"redis_scale: {tool} is missing (apt-get install redis-server nginx wrk)",
                  file=sys.stderr)
            return 1
    work = Path(tempfile.mkdtemp(prefix="portcullis-redis-scale."))
    procs: list[subprocess.Popen] = []
    try:
        redis_port, up_port = free_port(), free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no", "--dir", str(work)],
                                      stdout=subprocess.DEVNULL))
        (work / "nginx.conf").write_text(f"""\
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {work}; proxy_temp_path {work};
  fastcgi_temp_path {work}; uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:{up_port}; keepalive_requests 100000;
    location / {{ return 200 "ok"; }} }} }}
""")
        procs.append(subprocess.Popen(["nginx", "-c", str(work / "nginx.conf")]))
        subprocess.run([BIN, "keygen", "--alg", "ES256", "--kid", "k1", "--out",
                        str(work / "keys")], check=True, capture_output=True)
        token = subprocess.run([BIN, "token", "--key", str(work / "keys/k1.pem"), "--iss", ISS,
                                "--aud", "api", "--sub", "alice", "--ttl", "1h",
                                "--claim", "jti=bench-token"],
                               check=True, capture_output=True, text=True).stdout.strip()
        time.sleep(0.3)
        t = time.monotonic()
        fill_redis(redis_port)
        print(f"redis_scale: {N} revocations into Redis in {time.monotonic() - t:.1f} s",
              file=sys.stderr)

        gateways = {}
        for store in ("memory", "file", "redis"):
            port, admin = free_port(), free_port()
            d = config(work, store, port, admin, up_port, redis_port, store)
            if store == "file":
                fill_file(d / "data/revocations.jsonl")
            p = subprocess.Popen([BIN, "-c", str(d / "portcullis.yaml")],
                                 stdout=(d / "out.log").open("w"), stderr=subprocess.STDOUT,
                                 env={**os.environ, "PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
            procs.append(p)
            ready = wait_http(f"http://127.0.0.1:{admin}/readyz", 120)
            held = revoked_jti(admin)
            if held != (0 if store == "memory" else N):
                raise RuntimeError(f"{store}: {held} revocations loaded, expected {N}")
            gateways[store] = {"port": port, "ready": ready, "rss": rss_mib(p.pid), "rps": []}
            print(f"redis_scale: {store}: ready in {ready:.2f} s, RSS {gateways[store]['rss']:.0f} MiB",
                  file=sys.stderr)

        shared_rps, local_rps = [], []
        for r in range(ROUNDS):
            for store, g in gateways.items():
                g["rps"].append(wrk(g["port"], "/x", token))
            shared_rps.append(wrk(gateways["redis"]["port"], "/shared", token))
            local_rps.append(wrk(gateways["redis"]["port"], "/local", token))
            print(f"redis_scale: round {r + 1}/{ROUNDS} done", file=sys.stderr)

        def per_round(a: list[float], b: list[float]) -> float:
            return statistics.median(x / y for x, y in zip(a, b))

        mem = gateways["memory"]
        print(f"\n{N:,} revocations, {ROUNDS} rounds x {DURATION} s of wrk -t1 -c32, one worker "
              f"thread, cached ES256 token; ratios are medians of per-round ratios.\n")
        print("| store | ready after start | RSS when ready | req/s (median) | req/s × memory |")
        print("|---|---:|---:|---:|---:|")
        for store, g in gateways.items():
            print(f"| {store} | {g['ready']:.2f} s | {g['rss']:.0f} MiB | "
                  f"{statistics.median(g['rps']):,.0f} | {per_round(g['rps'], mem['rps']):.2f}× |")
        print(f"\nredis RSS × file RSS: {gateways['redis']['rss'] / gateways['file']['rss']:.2f}×")
        print(f"shared rate limit (one Redis round trip a request): "
              f"{statistics.median(shared_rps):,.0f} req/s, "
              f"{per_round(shared_rps, local_rps):.2f}× the same limit kept locally "
              f"({statistics.median(local_rps):,.0f} req/s)")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
