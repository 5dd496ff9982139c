"""Bounds on what grows with traffic (README, "Bounds"): a flood of distinct tokens, unknown key
ids, or request heads built to mint new metric series leaves the gateway's resident memory
within the ceiling the README states for that structure. The rate limiter's flood is in
test_rate_limit.py, idle and slow connections in test_connections.py and test_faults.py.
"""

from __future__ import annotations

import os
import uuid

import pytest

from support.admin_api import file_provider, wait_ready, write_jwks
from support.flood import rss_bytes, send_all
from support.harness import base_config, route, upstream_cfg
from support.jwt import SigningKey, make_token, std_claims

MiB = 1024 * 1024
ISS = "https://id.bounds.test"
# token_cache.max_entries for the flood; the flood sends three times as many distinct tokens.
CACHE_ENTRIES = 5_000


def request(path: str, token: str | None = None, method: str = "GET", host: str = "example.com") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()


def distinct_tokens(key: SigningKey, n: int) -> list[bytes]:
    return [request("/api/x", key.token(std_claims(iss=ISS, sub=f"user-{i}", jti=uuid.uuid4().hex)))
            for i in range(n)]


def unknown_kids(key: SigningKey, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        tok = make_token(key, std_claims(iss=ISS), kid=f"unknown-{i}-{uuid.uuid4().hex}")
        out.append(request("/api/x", tok))
    return out


def label_bait(_key: SigningKey, n: int) -> list[bytes]:
    """Request heads whose method, host and path are all new each time: none of them may become
    a metric label value."""
    out = []
    for i in range(n):
        u = uuid.uuid4().hex[:12]
        out.append(request(f"/{u}/{i}", method=f"M{u.upper()}", host=f"h{u}.example.com"))
        out.append(request(f"/api/{u}?q={i}", host=f"h{u}.example.com"))
    return out


# name -> (requests builder, count, RSS ceiling in bytes): the ceilings are the README's.
FLOODS = {
    "token cache": (distinct_tokens, 3 * CACHE_ENTRIES, CACHE_ENTRIES * 2 * 1024 + 4 * MiB),
    "unknown-kid negative cache": (unknown_kids, 20_000, 8 * MiB),
    "metric label sets": (label_bait, 20_000, 4 * MiB),
}


@pytest.mark.parametrize("name", list(FLOODS))
def test_a_flood_leaves_memory_within_the_stated_ceiling(procs, name):
    build, n, ceiling = FLOODS[name]
    key = SigningKey("ES256", "bounds")
    up = procs.upstream("bounds")
    cfg = base_config(
        {"u": upstream_cfg(up)}, [route("api", "/api", "u", auth={"mode": "required"})],
        listeners=("http", "metrics"),
        providers=[file_provider("corp", ISS, write_jwks(procs.dir / "jwks.json", key))],
        token_cache={"max_entries": CACHE_ENTRIES})
    gw = procs.gateway(cfg)
    wait_ready(gw)
    raw = build(key, n)
    # Warm-up: allocator arenas, connection buffers and the first of each series exist before
    # the baseline is taken.
    send_all(gw.port("http"), raw[:200])
    series_before = len(gw.metrics())
    before = rss_bytes(gw.proc.pid)
    statuses = send_all(gw.port("http"), raw)
    after = rss_bytes(gw.proc.pid)
    series_after = len(gw.metrics())
    grew = after - before
    summary = (f"{name}: {len(raw)} requests ({dict(statuses)}); RSS {before / MiB:.1f} -> "
               f"{after / MiB:.1f} MiB (+{grew / MiB:.1f}, ceiling {ceiling / MiB:.0f}); "
               f"metric series {series_before} -> {series_after}")
    if os.environ.get("BOUNDS_VERBOSE"):
        print(summary)
    assert not any(str(s).startswith("error") for s in statuses), summary
    assert grew <= ceiling, summary
    assert series_after <= series_before + 10, summary
    assert gw.alive()
