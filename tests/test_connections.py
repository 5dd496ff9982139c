"""Connection scale: what an idle keep-alive connection costs, that the memory comes back, and
the `limits.max_connections` cap (conf/README.md §2 limits, §5 connection metrics)."""

import resource
import time
from pathlib import Path

import pytest

from support.harness import (RawConn, base_config, http_get_raw, metric, route, upstream_cfg,
                             wait_for)

IDLE = 2000
# The budgets the README states: per idle keep-alive connection, and what may stay resident
# once a burst of connections has closed.
PER_IDLE_CONNECTION = 16 * 1024
RETURNED_WITHIN = 20 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def keepalive_request(conn: RawConn, path: str = "/x"):
    conn.send(http_get_raw(path, close=False))
    return conn.read_response()


@pytest.fixture(autouse=True)
def enough_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE * 2 + 256:
        pytest.fail(f"the test needs {IDLE * 2 + 256} file descriptors; ulimit -Hn is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_keepalive_connections_are_cheap_and_memory_comes_back(procs):
    up = procs.upstream("IDLE")
    gw = procs.gateway(base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                                   listeners=("http", "metrics"), server={"threads": 1}))
    pid = gw.proc.pid
    # Warm every lazily built structure (metric handles, the upstream pool) before the baseline.
    for _ in range(3):
        with RawConn(gw.port("http")) as c:
            assert keepalive_request(c).status == 200
    time.sleep(0.5)
    before = rss(pid)

    conns = []
    try:
        for _ in range(IDLE):
            c = RawConn(gw.port("http"), timeout=10)
            assert keepalive_request(c).status == 200
            conns.append(c)
        time.sleep(1.0)
        held = rss(pid)
        per_connection = (held - before) / IDLE
        samples = gw.metrics()
        assert metric(samples, "portcullis_downstream_connections", listener="http") == IDLE
        assert per_connection <= PER_IDLE_CONNECTION, (
            f"{per_connection / 1024:.1f} KiB per idle connection "
            f"(RSS {before >> 20} -> {held >> 20} MiB for {IDLE})")
        # Still answering on a held connection after the others arrived.
        assert keepalive_request(conns[0]).status == 200
    finally:
        for c in conns:
            c.close()

    wait_for(lambda: metric(gw.metrics(), "portcullis_downstream_connections",
                            listener="http") == 0, timeout=10, what="connections closed")
    back = wait_for(lambda: (r := rss(pid)) <= before + RETURNED_WITHIN and r, timeout=10,
                    what=f"RSS back within {RETURNED_WITHIN >> 20} MiB of {before >> 20} MiB")
    assert back <= before + RETURNED_WITHIN


def test_max_connections_closes_new_ones_at_once_and_counts_them(procs):
    up = procs.upstream("CAP")
    cap = 5
    gw = procs.gateway(base_config({"u": upstream_cfg(up)}, [route("all", "/", "u")],
                                   listeners=("http", "internal", "metrics"),
                                   limits={"max_connections": cap}))
    held = [RawConn(gw.port("http")) for _ in range(cap - 1)]
    held.append(RawConn(gw.port("internal")))   # the cap spans every proxy listener
    try:
        for c in held:
            assert keepalive_request(c).status == 200
        for listener in ("http", "internal"):
            with RawConn(gw.port(listener), timeout=5) as extra:
                assert extra.closed_within(2.0), f"a connection over the cap on {listener} stayed open"
        samples = gw.metrics()   # the metrics listener is not counted against the cap
        assert metric(samples, "portcullis_connections_rejected_total", listener="http") == 1
        assert metric(samples, "portcullis_connections_rejected_total", listener="internal") == 1
        assert metric(samples, "portcullis_downstream_connections", listener="http") == cap - 1
        assert metric(samples, "portcullis_downstream_connections", listener="internal") == 1
        for c in held:   # the held connections are still served
            assert keepalive_request(c).status == 200
    finally:
        for c in held:
            c.close()
    # Once they close there is room again.
    wait_for(lambda: metric(gw.metrics(), "portcullis_downstream_connections",
                            listener="http") == 0, timeout=10, what="connections closed")
    with RawConn(gw.port("http")) as c:
        assert keepalive_request(c).status == 200


def test_max_connections_must_be_positive(procs):
    cfg = base_config({"u": upstream_cfg("127.0.0.1:1")}, [route("all", "/", "u")],
                      limits={"max_connections": 0})
    cfg["listeners"]["http"] = {"addr": "127.0.0.1:18080"}
    code, out = procs.validate(cfg)
    assert code != 0
    assert "limits.max_connections" in out
