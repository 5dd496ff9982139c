"""Per-route rate limits (conf/README.md §2 `routes[].rate_limit`; §3.9 error table: 429 with
Retry-After)."""
import json
import threading
import time

import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, wait_ready, write_config_atomically,
                               write_jwks)
from support.flood import flood, rss_bytes
from support.harness import assert_json_error, base_config, metric, route, upstream_cfg
from support.jwt import SigningKey, make_token, std_claims


def test_bucket_refuses_past_burst_and_keys_per_client(procs):
    up = procs.upstream("RL")
    cfg = base_config(
        {"u": upstream_cfg(up)},
        [route("limited", "/rl", "u", rate_limit={"rps": 1, "burst": 2, "key": "client_ip"}),
         route("free", "/free", "u")],
        listeners=("http", "metrics"),
        trusted_proxies=["127.0.0.1/32"],
    )
    gw = procs.gateway(cfg)
    mark = up.count()
    ok = [gw.get("/rl/x", headers={"X-Forwarded-For": "203.0.113.1"}) for _ in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    r = gw.get("/rl/x", headers={"X-Forwarded-For": "203.0.113.1"})
    assert_json_error(r.status_code, r.headers, r.content, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert len(up.since(mark)) == 2, "the refused request must not reach the upstream"
    # Another client has its own bucket; another route has no limit at all.
    assert gw.get("/rl/x", headers={"X-Forwarded-For": "203.0.113.2"}).status_code == 200
    assert all(gw.get("/free/x").status_code == 200 for _ in range(5))
    assert metric(gw.metrics(), "portcullis_rate_limited_total", route="limited") == 1


def test_bad_rate_limit_config_names_its_path(procs):
    up = procs.upstream("RL2")
    cfg = base_config({"u": upstream_cfg(up)},
                      [route("r", "/r", "u", rate_limit={"rps": 0, "key": "cookie"})])
    code, out = procs.validate(cfg)
    assert code == 1
    assert "routes[0].rate_limit.rps" in out and "routes[0].rate_limit.key" in out, out


def test_client_ip_limit_is_checked_before_any_token_work(procs, tmp_path):
    """Forged tokens must not buy signature checks past a client-IP limit: the bucket is
    consulted before the token is looked at (a `claim:sub` limit necessarily comes after)."""
    key = SigningKey("ES256", "rl-1")
    forger = SigningKey("ES256", "rl-1")   # same kid, another key: every signature is bad
    up = procs.upstream("RL3")
    cfg = base_config(
        {"u": upstream_cfg(up)},
        [route("guarded", "/g", "u", auth={"mode": "required"},
               rate_limit={"rps": 2, "burst": 4, "key": "client_ip"})],
        listeners=("http", "metrics", "admin"),
        providers=[file_provider("idp", "https://id.test", write_jwks(tmp_path / "jwks.json", key))],
    )
    gw = procs.gateway(cfg)
    wait_ready(gw)
    forged = make_token(forger, std_claims())
    statuses = [gw.get("/g/x", headers={"Authorization": f"Bearer {forged}"}).status_code
                for _ in range(50)]
    assert statuses.count(401) <= 6 and statuses.count(429) >= 44, statuses
    samples = gw.metrics()
    assert metric(samples, "portcullis_rate_limited_total", route="guarded") == statuses.count(429)
    checked = metric(samples, "portcullis_auth_decisions_total", route="guarded",
                     result="bad_signature")
    assert checked == statuses.count(401), f"{checked} signature checks for 50 forged tokens"


def self_limited_gateway(procs, rate_limit: dict):
    """A gateway whose limited route `/healthz` is proxied to its own admin listener: a fast,
    keep-alive upstream, so a flood of distinct clients measures the gateway, not a test peer."""
    cfg = base_config({}, [], listeners=("http",), trusted_proxies=["127.0.0.1/32"],
                      admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})
    gw = procs.gateway(cfg, start=False, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    gw.config["upstreams"] = {"self": upstream_cfg(gw.config["listeners"]["admin"]["addr"])}
    gw.config["routes"] = [route("limited", "/healthz", "self", rate_limit=rate_limit)]
    gw.write_config()
    return gw.start()


def as_client(gw, ip: str) -> int:
    return gw.get("/healthz", headers={"X-Forwarded-For": ip}).status_code


def test_a_flood_of_distinct_clients_does_not_reset_an_exhausted_bucket(procs):
    """More distinct client keys than the limiter holds (16 shards x 14,336) arrive while one
    client keeps hammering: that client's bucket stays exhausted, it gets no more than its rate,
    and the gateway's memory stays bounded."""
    gw = self_limited_gateway(procs, {"rps": 1, "burst": 3, "key": "client_ip"})
    victim = "198.51.100.7"
    assert [as_client(gw, victim) for _ in range(4)] == [200, 200, 200, 429]
    rss_before = rss_bytes(gw.proc.pid)
    seen: list[int] = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as s:
            while not stop.is_set():
                seen.append(s.get(gw.url("http", "/healthz"), headers={"X-Forwarded-For": victim},
                                  timeout=10).status_code)
                time.sleep(0.05)

    t = threading.Thread(target=hammer)
    began = time.monotonic()
    t.start()
    try:
        n = 240_000
        statuses = flood(gw.port("http"), "/healthz", n)
    finally:
        stop.set()
        t.join(timeout=20)
    took = time.monotonic() - began
    rss_after = rss_bytes(gw.proc.pid)
    print(f"flood: {n} keys in {took:.1f}s; victim {seen.count(200)}/{len(seen)} allowed; "
          f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB")
    assert statuses[200] == n, f"each new client's first request is allowed: {dict(statuses)}"
    allowed = seen.count(200)
    # 1 rps: at most one token per elapsed second (plus one for the partial second at each end).
    assert allowed <= took + 2, (f"the victim got {allowed} of {len(seen)} requests through in "
                                 f"{took:.1f}s at 1 rps during a flood of {n} keys: its bucket was reset")
    assert seen.count(429) >= len(seen) - allowed and len(seen) > 10 * took, (len(seen), took)
    grew = rss_after - rss_before
    assert grew < 48 * 1024 * 1024, (f"RSS grew {grew / 2**20:.1f} MiB ({rss_before / 2**20:.1f} -> "
                                     f"{rss_after / 2**20:.1f}) over {n} distinct clients")
    assert gw.alive()


def test_a_reload_keeps_the_buckets_of_a_route_whose_limit_is_unchanged(procs):
    gw = self_limited_gateway(procs, {"rps": 1, "burst": 2, "key": "client_ip"})
    admin = Admin(gw)
    client = "203.0.113.9"
    assert [as_client(gw, client) for _ in range(3)] == [200, 200, 429]
    cfg = json.loads(json.dumps(gw.config))
    # Another route: the limited route and its limit stay as they are.
    cfg["routes"].append(route("other", "/other", "self"))
    write_config_atomically(gw, cfg)
    r = admin.reload()
    assert r.status_code == 200, r.text
    assert as_client(gw, client) == 429, "a reload refilled an unchanged route's bucket"
    # A changed limit starts afresh.
    cfg["routes"][0]["rate_limit"]["burst"] = 5
    write_config_atomically(gw, cfg)
    r = admin.reload()
    assert r.status_code == 200, r.text
    assert as_client(gw, client) == 200
