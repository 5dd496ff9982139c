"""Load balancing, health checks and upstream failures (conf/README.md §2 upstreams, §3.7;
conf/HARDENING.md §3.4)."""

import collections
import time

import pytest

from support.harness import (FAST_HEALTH, assert_json_error, base_config, metric, route,
                             upstream_cfg, wait_for)


def lb_gateway(procs, *peers, listeners=("http",), **upstream):
    """A gateway whose one route `/lb` goes to upstream `u` over `peers` (`upstream_cfg` takes
    the peers and the other upstream keys)."""
    return procs.gateway(base_config({"u": upstream_cfg(*peers, **upstream)},
                                     [route("lb", "/lb", "u")], listeners=listeners))


def spread(gw, n, path="/lb/x", **kw):
    c = collections.Counter()
    for _ in range(n):
        r = gw.get(path, **kw)
        c[r.json()["peer"] if r.status_code == 200 else r.status_code] += 1
    return c


def test_round_robin_spreads_evenly(procs):
    a, b = procs.upstream("RR-A"), procs.upstream("RR-B")
    gw = lb_gateway(procs, a, b, balance="round_robin")
    c = spread(gw, 20)
    assert set(c) == {"RR-A", "RR-B"}, c
    assert abs(c["RR-A"] - 10) <= 2 and abs(c["RR-B"] - 10) <= 2, c


def test_weights_honoured(procs):
    a, b = procs.upstream("W-A"), procs.upstream("W-B")
    gw = lb_gateway(procs, (a, 3), (b, 1))
    c = spread(gw, 40)
    assert set(c) == {"W-A", "W-B"}, c
    assert 26 <= c["W-A"] <= 34, c


def test_random_uses_both_peers(procs):
    a, b = procs.upstream("RND-A"), procs.upstream("RND-B")
    gw = lb_gateway(procs, a, b, balance="random")
    c = spread(gw, 40)
    assert set(c) == {"RND-A", "RND-B"}, c


def test_consistent_hash_on_header_is_sticky(procs):
    a, b = procs.upstream("CH-A"), procs.upstream("CH-B")
    gw = lb_gateway(procs, a, b, balance="consistent", hash_key="header:X-Tenant")
    seen = {}
    for i in range(20):
        key = f"tenant-{i}"
        peers = {gw.get("/lb/x", headers={"X-Tenant": key}).json()["peer"] for _ in range(3)}
        assert len(peers) == 1, (key, peers)
        seen[key] = peers.pop()
    assert set(seen.values()) == {"CH-A", "CH-B"}, seen


def test_consistent_hash_on_client_ip_is_sticky(procs):
    a, b = procs.upstream("CIP-A"), procs.upstream("CIP-B")
    gw = lb_gateway(procs, a, b, balance="consistent", hash_key="client_ip")
    c = spread(gw, 10)
    assert len(c) == 1 and list(c.values()) == [10], c


def _wait_both_serving(gw, names, timeout=10):
    def both():
        return set(spread(gw, 6)) == set(names)
    wait_for(both, timeout, interval=0.1, what=f"{names} both serving")


def test_killed_peer_leaves_rotation_and_returns(procs):
    a, b = procs.upstream("HC-A"), procs.upstream("HC-B")
    # retries 0: a request sent to the dead peer would surface as a 502 instead of being hidden.
    gw = lb_gateway(procs, a, b, health=FAST_HEALTH, retries=0, listeners=("http", "metrics"))
    _wait_both_serving(gw, {"HC-A", "HC-B"})
    assert metric(gw.metrics(), "portcullis_upstream_peer_healthy", upstream="u", peer=a.addr) == 1

    a.kill()

    def only_b():
        return spread(gw, 10) == {"HC-B": 10}
    wait_for(only_b, 10, interval=0.1, what="killed peer removed from rotation")
    # After the unhealthy threshold, every request goes to the live peer and none fails.
    assert spread(gw, 20) == {"HC-B": 20}
    wait_for(lambda: metric(gw.metrics(), "portcullis_upstream_peer_healthy",
                            upstream="u", peer=a.addr) == 0, 5, what="healthy gauge 0")

    a.start()
    _wait_both_serving(gw, {"HC-A", "HC-B"})
    wait_for(lambda: metric(gw.metrics(), "portcullis_upstream_peer_healthy",
                            upstream="u", peer=a.addr) == 1, 5, what="healthy gauge back to 1")


def test_peer_that_never_passed_a_check_gets_no_traffic(procs):
    a = procs.upstream("NEW-A", start=False)      # down when the gateway starts
    b = procs.upstream("NEW-B")
    gw = lb_gateway(procs, a, b, health=dict(FAST_HEALTH, healthy_threshold=2), retries=0)
    seen = collections.Counter()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and seen["NEW-B"] < 20:
        r = gw.get("/lb/x")
        if r.status_code == 200:
            seen[r.json()["peer"]] += 1
        else:
            # Before the live peer has passed its checks, 503 is the only acceptable answer:
            # a 502 would mean traffic went to the peer that never passed a check.
            assert r.status_code == 503, (r.status_code, r.text)
            seen[r.status_code] += 1
    assert seen["NEW-B"] == 20, seen
    assert "NEW-A" not in seen


def test_peer_failing_expect_status_gets_no_traffic(procs):
    a = procs.upstream("EXP-A")
    gw = lb_gateway(procs, a, health=dict(FAST_HEALTH, path="/check?status=500"))
    # The peer never passes a check, so from the first request on the answer is 503.
    for _ in range(5):
        r = gw.get("/lb/x")
        assert_json_error(r.status_code, r.headers, r.content, 503, "service_unavailable")
    assert a.count() == 0 or all(d["path"].startswith("/check") for d in a.requests())


def test_health_check_sends_no_client_credentials(procs):
    a = procs.upstream("HCC-A")
    gw = lb_gateway(procs, a, health=FAST_HEALTH)
    wait_for(lambda: gw.get("/lb/x", headers={"Authorization": "Bearer x.y.z"}).status_code == 200,
             10, what="peer healthy")
    checks = [d for d in a.requests(include_health=True) if d.get("health")]
    assert checks, "no health check reached the upstream"
    for d in checks:
        names = [k.lower() for k, _ in d["headers"]]
        assert "authorization" not in names and "cookie" not in names


def test_all_peers_down_is_503(procs):
    gw = lb_gateway(procs, procs.dead_addr(), procs.dead_addr(), health=FAST_HEALTH)
    for _ in range(5):
        r = gw.get("/lb/x")
        assert_json_error(r.status_code, r.headers, r.content, 503, "service_unavailable")


def test_all_peers_killed_at_runtime_is_503(procs):
    a = procs.upstream("DOWN-A")
    gw = lb_gateway(procs, a, health=FAST_HEALTH)
    wait_for(lambda: gw.get("/lb/x").status_code == 200, 10, what="peer healthy")
    a.kill()
    wait_for(lambda: gw.get("/lb/x").status_code == 503, 10, what="503 after the peer died")
    r = gw.get("/lb/x")
    assert_json_error(r.status_code, r.headers, r.content, 503, "service_unavailable")


def test_connect_failure_is_502(procs):
    gw = lb_gateway(procs, procs.dead_addr(), retries=0)
    r = gw.get("/lb/x")
    assert_json_error(r.status_code, r.headers, r.content, 502, "bad_gateway")


def test_connect_failure_after_retries_is_502(procs):
    gw = lb_gateway(procs, procs.dead_addr(), procs.dead_addr(), retries=2)
    r = gw.get("/lb/x")
    assert_json_error(r.status_code, r.headers, r.content, 502, "bad_gateway")


def test_retries_move_connect_failure_to_next_peer(procs):
    live = procs.upstream("RETRY-LIVE")
    gw = lb_gateway(procs, procs.dead_addr(), live, retries=2)
    c = spread(gw, 20)
    assert c == {"RETRY-LIVE": 20}, c


def test_retry_with_body_after_connect_failure(procs):
    """A connect failure happens before any body byte is sent, so moving a POST to the next peer
    replays nothing; the body must arrive intact."""
    live = procs.upstream("RETRY-BODY")
    gw = lb_gateway(procs, procs.dead_addr(), live, retries=2)
    for i in range(6):
        r = gw.request("POST", "/lb/post", data=f"payload-{i}".encode())
        assert r.status_code == 200, (i, r.status_code, r.text)
        assert r.json()["body"] == f"payload-{i}"


def test_slow_upstream_is_504(procs):
    slow = procs.upstream("SLOW")
    gw = lb_gateway(procs, slow, timeouts={"read": "300ms"})
    assert gw.get("/lb/x?delay_ms=50").status_code == 200
    t0 = time.monotonic()
    r = gw.get("/lb/x?delay_ms=2000")
    elapsed = time.monotonic() - t0
    assert_json_error(r.status_code, r.headers, r.content, 504, "gateway_timeout")
    assert elapsed < 1.5, elapsed
    # Retries cover connect failures only: a timed-out request is not sent again.
    assert len([d for d in slow.requests() if "delay_ms=2000" in d["path"]]) == 1


def test_upstream_status_passed_through(procs):
    a = procs.upstream("ST")
    gw = lb_gateway(procs, a)
    for status in (201, 404, 418, 500, 503):
        r = gw.get(f"/lb/x?status={status}")
        assert r.status_code == status
        assert r.json()["peer"] == "ST"
    r = gw.get("/lb/x?status=204")
    assert r.status_code == 204 and r.content == b""


def test_keepalive_client_connection_reused(procs):
    a = procs.upstream("KA")
    gw = lb_gateway(procs, a)
    from support.harness import RawConn, http_get_raw
    with RawConn(gw.port("http")) as c:
        for i in range(5):
            c.send(http_get_raw(f"/lb/{i}", close=False))
            r = c.read_response()
            assert r.status == 200 and r.json()["path"] == f"/lb/{i}"
