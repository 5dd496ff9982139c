"""The shipped dashboard and alert rules (conf/README.md §9): the Grafana dashboard parses and
queries only series the gateway exports; `promtool` accepts the alert rules and their unit tests
pass.

Which series a query may name: those on the `/metrics` of a running gateway that this module
drives through every feature it can (authentication with a token cache, JWKS, a health-checked
upstream, a rate limit, a reload, revocations), **plus** those listed in the conf/README.md §5
metrics table. The second half of the rule is for series of features that a single loopback
gateway here cannot show (`portcullis_redis_up` needs a `redis:` block): they are allowed
because the reference promises them, and nothing else is.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import uuid

import pytest
import requests

from support.harness import (FAST_HEALTH, REPO_DIR, base_config, route, upstream_cfg, wait_for)
from support.jwks_server import JwksServer
from support.jwt import SigningKey, make_token, std_claims

DASHBOARD = REPO_DIR / "conf" / "grafana" / "portcullis.json"
ALERTS = REPO_DIR / "conf" / "prometheus" / "alerts.yaml"
ALERT_TESTS = REPO_DIR / "conf" / "prometheus" / "alerts.test.yaml"
REFERENCE = REPO_DIR / "conf" / "README.md"
README = REPO_DIR / "README.md"
ISS = "https://id.test"
METRIC_NAME = re.compile(r"\bportcullis_[a-z0-9_]+")
# Required by conf/README.md §9 (with the metrics behind each).
REQUIRED_SERIES = {
    "requests": "portcullis_requests_total",
    "latency": "portcullis_request_duration_seconds_bucket",
    "auth decisions": "portcullis_auth_decisions_total",
    "token cache": "portcullis_token_cache_requests_total",
    "JWKS keys": "portcullis_jwks_keys",
    "JWKS freshness": "portcullis_jwks_last_success_timestamp_seconds",
    "peer health": "portcullis_upstream_peer_healthy",
    "revocations": "portcullis_revocations",
    "rate limited": "portcullis_rate_limited_total",
    "redis": "portcullis_redis_up",
}
REQUIRED_ALERTS = {
    "PortcullisJwksStale": "portcullis_jwks_last_success_timestamp_seconds",
    "PortcullisProviderWithoutKeys": "portcullis_jwks_keys",
    "PortcullisUpstreamDown": "portcullis_upstream_peer_healthy",
    "PortcullisHigh5xxRatio": "portcullis_requests_total",
    "PortcullisRedisDown": "portcullis_redis_up",
    "PortcullisConfigReloadFailed": "portcullis_config_reloads_total",
}


def documented_series() -> set:
    """Series names of the conf/README.md §5 table; a histogram stands for its three series."""
    text = REFERENCE.read_text()
    section = text.split("## §5 Metrics", 1)[1].split("\n## ", 1)[0]
    names = set()
    for name, kind in re.findall(r"^\| `(portcullis_[a-z0-9_]+)` \| (counter|gauge|histogram) \|",
                                 section, re.M):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    assert len(names) >= 15, f"the §5 table did not parse: {names}"
    return names


def exported_series(metrics_text: str) -> set:
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, 1)[0])
    return names


def dashboard_queries(dash: dict) -> list:
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for var in dash["templating"]["list"]:
        q = var.get("query")
        if isinstance(q, dict):
            out.append((f"variable {var['name']}", q["query"]))
    return out


@pytest.fixture(scope="module")
def live_metrics(mod_procs) -> str:
    """The /metrics text of a gateway that went through every feature a loopback test can show."""
    key = SigningKey("ES256", "dash")
    jwks = JwksServer([key])
    up = mod_procs.upstream("dash")
    routes = [route("api", "/api", "echo", auth={"mode": "required"}),
              route("limited", "/limited", "echo", rate_limit={"rps": 1, "burst": 1})]
    cfg = base_config({"echo": upstream_cfg(up, health=FAST_HEALTH)}, routes,
                      listeners=("http", "metrics"), providers=[jwks.provider("corp", ISS)],
                      revocation={"store": "memory"}, admin={"token_env": "DASH_ADMIN_TOKEN"},
                      tracing={"enabled": True, "otlp_endpoint": "http://127.0.0.1:9/v1/traces"})
    admin_token = uuid.uuid4().hex
    gw = mod_procs.gateway(cfg, env={"DASH_ADMIN_TOKEN": admin_token})
    wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200, 10,
             what="ready")
    token = make_token(key, std_claims(iss=ISS))
    for _ in range(2):  # a cache miss, then a hit
        assert gw.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert gw.get("/api/x").status_code == 401
    assert gw.get("/nowhere").status_code == 404
    statuses = {gw.get("/limited/x").status_code for _ in range(5)}
    assert 429 in statuses, statuses
    r = requests.post(gw.url("admin", "/admin/revocations"), timeout=5,
                      headers={"Authorization": f"Bearer {admin_token}"},
                      json={"iss": ISS, "jti": "dash-jti"})
    assert r.status_code == 201, r.text
    gw.proc.send_signal(signal.SIGHUP)  # a reload: portcullis_config_reloads_total

    def reloaded():
        text = requests.get(gw.url("metrics", "/metrics"), timeout=5).text
        return text if "portcullis_config_reloads_total" in text else None
    yield wait_for(reloaded, 10, what="reload counted")
    jwks.stop()


def test_dashboard_is_a_grafana_model_with_a_datasource_variable():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert t["expr"].strip(), p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]
    exprs = "\n".join(e for _, e in dashboard_queries(dash))
    for what, series in REQUIRED_SERIES.items():
        assert series in exprs, f"no panel shows {what} ({series})"
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs


def test_dashboard_queries_only_exported_or_documented_series(live_metrics):
    live = exported_series(live_metrics)
    documented = documented_series()
    allowed = live | documented
    queried = set()
    for title, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        for name in METRIC_NAME.findall(expr):
            assert name in allowed, f"{title!r} queries {name}, which is neither on /metrics nor in §5"
            queried.add(name)
    # The live half of the rule does the work: everything but what needs Redis is really there.
    assert queried - live <= {"portcullis_redis_up"}, queried - live


def test_alert_rules_name_only_exported_or_documented_series(live_metrics):
    allowed = exported_series(live_metrics) | documented_series()
    for name in set(METRIC_NAME.findall(ALERTS.read_text())):
        assert name in allowed, f"alerts.yaml uses {name}, which is neither on /metrics nor in §5"


def _promtool(*args) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make deps` installs it (Debian package prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules():
    r = _promtool("check", "rules", str(ALERTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_pass():
    r = _promtool("test", "rules", str(ALERT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert set(REQUIRED_ALERTS) <= tested, set(REQUIRED_ALERTS) - tested


def test_each_alert_has_a_summary_and_a_runbook_line():
    import yaml
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert set(REQUIRED_ALERTS) <= names, set(REQUIRED_ALERTS) - names
    readme = README.read_text()
    assert "## Tracing, dashboards and alerts" in readme
    section = readme.split("## Tracing, dashboards and alerts", 1)[1].split("\n## ", 1)[0]
    for r in rules:
        assert r["annotations"].get("summary"), r["alert"]
        lines = [line for line in section.splitlines() if r["alert"] in line]
        assert lines, f"no runbook line for {r['alert']} in the README"
    for alert, series in REQUIRED_ALERTS.items():
        expr = next(r["expr"] for r in rules if r["alert"] == alert)
        assert series in expr, (alert, expr)
