"""Metrics listener (conf/README.md §5) and admin health endpoints (conf/README.md §4)."""

import pytest
import requests

from support.harness import (FAST_HEALTH, base_config, metric, metric_select, route, upstream_cfg,
                             wait_for)


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("MET")
    cfg = base_config({"api": upstream_cfg(up, health=FAST_HEALTH)},
                      [route("m", "/m", "api"), route("p", "/p", "api", methods=["POST"])],
                      listeners=("http", "metrics"))
    gw = mod_procs.gateway(cfg)
    wait_for(lambda: gw.get("/m/warmup").status_code == 200, 10, what="peer healthy")
    # A request is counted just after its response is sent: wait for the warm-up's count so it
    # cannot land between a test's two scrapes.
    wait_for(lambda: metric(gw.metrics(), "portcullis_requests_total", route="m", method="GET",
                            status="200"), 5, what="warm-up counted")
    return gw, up


def test_traffic_is_counted(env):
    gw, up = env
    before = gw.metrics()

    def val(samples, name, **labels):
        return metric(samples, name, **labels) or 0

    for _ in range(3):
        assert gw.get("/m/x").status_code == 200
    assert gw.request("POST", "/p/x", data=b"1").status_code == 200
    assert gw.get("/nothing").status_code == 404
    assert gw.get("/m/x?status=500").status_code == 500
    after = wait_for(lambda: (s := gw.metrics()) and metric(
        s, "portcullis_requests_total", route="m", method="GET", status="500") and s,
        5, what="the last request counted")

    def delta(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    assert delta("portcullis_requests_total", route="m", method="GET", status="200") == 3
    assert delta("portcullis_requests_total", route="p", method="POST", status="200") == 1
    assert delta("portcullis_requests_total", route="m", method="GET", status="500") == 1
    assert delta("portcullis_requests_total", route="", method="GET", status="404") == 1

    assert delta("portcullis_request_duration_seconds_count", route="m") == 4
    assert delta("portcullis_request_duration_seconds_bucket", route="m", le="+Inf") == 4
    assert metric_select(after, "portcullis_request_duration_seconds_bucket", route="m")
    assert val(after, "portcullis_request_duration_seconds_count", route="") >= 1

    assert delta("portcullis_upstream_requests_total", upstream="api", peer=up.addr, status="200") == 4
    assert delta("portcullis_upstream_requests_total", upstream="api", peer=up.addr, status="500") == 1
    assert delta("portcullis_upstream_duration_seconds_count", upstream="api") == 5
    assert metric_select(after, "portcullis_upstream_duration_seconds_bucket", upstream="api")


def test_peer_health_gauge(env):
    gw, up = env
    assert metric(gw.metrics(), "portcullis_upstream_peer_healthy", upstream="api", peer=up.addr) == 1


def test_metrics_content_type(env):
    gw, _ = env
    r = requests.get(gw.url("metrics", "/metrics"), timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE portcullis_requests_total counter" in r.text
    assert "# TYPE portcullis_request_duration_seconds histogram" in r.text


def test_metrics_not_served_on_public_listener(env):
    gw, _ = env
    r = gw.get("/metrics")
    assert r.status_code == 404
    assert "portcullis_requests_total" not in r.text


def test_healthz_and_readyz(env):
    gw, _ = env
    assert requests.get(gw.url("admin", "/healthz"), timeout=5).status_code == 200
    assert requests.get(gw.url("admin", "/readyz"), timeout=5).status_code == 200


def test_admin_api_refused_without_configured_token(env):
    gw, _ = env
    for path in ("/admin/status", "/admin/revocations"):
        r = requests.get(gw.url("admin", path), headers={"Authorization": "Bearer anything"}, timeout=5)
        assert r.status_code == 403, (path, r.status_code)


def test_admin_endpoints_not_on_public_listener(env):
    gw, _ = env
    for path in ("/healthz", "/readyz", "/admin/status"):
        assert gw.get(path).status_code == 404, path
