"""Stopping (conf/README.md §1 "Signals and graceful upgrade") and what a reload leaves behind.

With the server block's default stop settings, SIGTERM must end an idle gateway within a couple
of seconds, and a busy one as soon as its in-flight requests are answered: the grace period is
a ceiling, not a sleep. A reload that replaces a provider must release the old provider's
runtime (its key set and the tasks that serve it) instead of keeping it for the life of the
process.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, wait_ready, write_config_atomically,
                               write_jwks)
from support.harness import base_config, route, upstream_cfg, wait_for
from support.jwt import SigningKey, std_claims

CORP = "https://id.test"


def default_stop_settings(procs, cfg: dict):
    """A gateway whose config leaves the stop settings to their defaults (the harness otherwise
    sets a zero grace period to keep the suite fast)."""
    gw = procs.gateway(cfg, start=False)
    gw.config["server"].pop("grace_period_seconds")
    gw.config["server"].pop("graceful_shutdown_timeout_seconds")
    gw.write_config()
    return gw.start()


def exit_time(gw, limit: float) -> float:
    """Seconds from now until the gateway process exits (at most `limit`); asserts exit code 0."""
    began = time.monotonic()
    try:
        code = gw.proc.wait(timeout=limit)
    except Exception:  # noqa: BLE001 - report how long it took, not the exception type
        raise AssertionError(f"still running {limit}s after SIGTERM\n{gw.logs_tail()}") from None
    assert code == 0, f"exit code {code}\n{gw.logs_tail()}"
    return time.monotonic() - began


def test_idle_gateway_stops_within_seconds(procs):
    up = procs.upstream("idle")
    gw = default_stop_settings(procs, base_config({"u": upstream_cfg(up)}, [route("r", "/", "u")],
                                                  listeners=("http", "https")))
    # Leave idle keep-alive connections open, plain and TLS, as client pools would.
    plain, tls = requests.Session(), requests.Session()
    assert plain.get(gw.url("http", "/x"), timeout=5).status_code == 200
    assert tls.get(gw.url("https", "/x"), timeout=5, verify=str(procs.tls.ca)).status_code == 200
    gw.proc.send_signal(signal.SIGTERM)
    took = exit_time(gw, 10)
    plain.close()
    tls.close()
    assert took < 3, f"idle gateway took {took:.2f}s to stop after SIGTERM"


def test_in_flight_request_completes_then_the_process_exits(procs):
    up = procs.upstream("slow")
    gw = default_stop_settings(procs, base_config({"u": upstream_cfg(up)}, [route("r", "/", "u")]))
    mark = up.count()
    result: dict = {}

    def slow_request():
        began = time.monotonic()
        try:
            r = requests.get(gw.url("http", "/slow?delay_ms=2500"), timeout=20)
            result["status"], result["body"] = r.status_code, r.json()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = repr(e)
        result["done"] = time.monotonic() - began

    t = threading.Thread(target=slow_request)
    t.start()
    wait_for(lambda: up.count() > mark, 5, what="the slow request to reach the upstream")
    signalled = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    t.join(timeout=20)
    answered = time.monotonic() - signalled
    assert result.get("status") == 200, f"in-flight request after SIGTERM: {result}\n{gw.logs_tail()}"
    assert result["body"]["path"] == "/slow?delay_ms=2500"
    took = exit_time(gw, 10)
    assert took < 2, (f"the gateway exited {took:.2f}s after its last request was answered "
                      f"({answered:.2f}s after SIGTERM)")


def test_a_reload_that_replaces_a_provider_releases_the_old_runtime(procs):
    key = SigningKey("ES256", "es1")
    jwks_path = write_jwks(procs.dir / "jwks.json", key)
    up = procs.upstream("u")
    cfg = base_config({"svc": upstream_cfg(up)},
                      [route("api", "/api", "svc", auth={"mode": "required"})],
                      listeners=("http",),
                      providers=[file_provider("corp", CORP, jwks_path)],
                      admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"})
    gw = procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    admin = Admin(gw)
    tok = key.token(std_claims(iss=CORP))
    assert gw.get("/api/x", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    released = "provider corp: key-set runtime released"
    assert released not in gw.logs()
    reloads = 3
    for i in range(reloads):
        new = json.loads(json.dumps(gw.config))
        # Other JWKS settings: the provider's runtime is replaced, not reused.
        new["providers"][0]["jwks"]["refresh_interval"] = f"{10 + i}m"
        write_config_atomically(gw, new)
        r = admin.reload()
        assert r.status_code == 200, f"reload {i}: {r.status_code} {r.text}"
        wait_ready(gw)
        r = gw.get("/api/x", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, f"after reload {i}: {r.status_code} {r.text}"
        wait_for(lambda: gw.logs().count(released) == i + 1, 5,
                 what=f"the runtime replaced by reload {i} to be released "
                      f"(released so far: {gw.logs().count(released)})")
    assert gw.logs().count(released) == reloads
