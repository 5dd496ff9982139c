"""Several instances sharing one Redis (conf/README.md §7).

Real gateways, a real `redis-server` started here on a free port, a real echo upstream and tokens
minted here. What is checked is what an operator of N instances behind a balancer relies on:

- a revocation (or its removal) acknowledged by one instance is in force on every other within
  one second, and on an instance started later from its first ready moment;
- while Redis is down or cut off, an instance is not ready, says so in /admin/status and
  /metrics, keeps refusing what it had revoked, and answers a new revocation with 503 instead of
  a 201 that was not stored; once Redis is back it catches up before it reports ready;
- the token check itself never talks to Redis.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, finish_k6, metric_value, start_k6,
                               wait_ready, write_config_atomically, write_jwks)
from support.issuer import hash_password, issuer_block, keygen, post_form
from support.harness import base_config, route, upstream_cfg, wait_for
from support.jwt import SigningKey, std_claims
from support.redis_server import RedisServer
from support.tcp_proxy import TcpProxy

CORP = "https://id.test"
LEEWAY = 1
ENV = {"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


class Cluster:
    """N gateways with one config but for the Redis URL each one reaches Redis through."""

    def __init__(self, procs, redis: RedisServer, routes=None):
        self.procs = procs
        self.redis = redis
        self.key = SigningKey("ES256", "es1")
        self.jwks_path = write_jwks(procs.dir / "jwks.json", self.key)
        self.up = procs.upstream("echo")
        self.prefix = f"t{uuid.uuid4().hex[:8]}:"
        self.routes = routes or [route("api", "/api", "echo", auth={"mode": "required"})]

    def config(self, url: str, **top) -> dict:
        providers = [file_provider("corp", CORP, self.jwks_path, leeway=f"{LEEWAY}s")]
        return base_config({"echo": upstream_cfg(self.up)}, self.routes,
                           listeners=("http", "metrics"), providers=providers,
                           admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"},
                           revocation={"store": "redis"},
                           redis={"url": url, "prefix": self.prefix}, **top)

    def gateway(self, url: str | None = None, ready: bool = True):
        gw = self.procs.gateway(self.config(url or self.redis.url), env=ENV)
        if ready:
            wait_ready(gw)
        return gw

    def tok(self, **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(**claims))


def status_of(gw, token: str) -> int:
    return gw.get("/api/x", headers={"Authorization": f"Bearer {token}"}).status_code


def ready(gw) -> bool:
    return requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200


def within(seconds: float, pred, what: str) -> float:
    """Polls `pred` until true; fails unless that happened within `seconds`. Returns the time."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        elapsed = time.monotonic() - t0
        assert elapsed < seconds, f"{what}: not within {seconds}s"
        time.sleep(0.02)


def refused_everywhere(gws, token: str, seconds: float = 1.0, what: str = "revocation"):
    t0 = time.monotonic()
    for gw in gws:
        left = seconds - (time.monotonic() - t0)
        within(max(left, 0.001), lambda: status_of(gw, token) == 401, f"{what} on {gw.addr('http')}")


def accepted_everywhere(gws, token: str, seconds: float = 1.0, what: str = "removal"):
    t0 = time.monotonic()
    for gw in gws:
        left = seconds - (time.monotonic() - t0)
        within(max(left, 0.001), lambda: status_of(gw, token) == 200, f"{what} on {gw.addr('http')}")


# ---------------------------------------------------------------------------------------------
# 1. Three gateways, one Redis


def test_a_revocation_on_one_instance_is_in_force_on_every_other_within_a_second(procs, redis):
    c = Cluster(procs, redis)
    a, b, gw_c = c.gateway(), c.gateway(), c.gateway()
    gws = [a, b, gw_c]

    by_token = c.tok(sub=uid("alice"))
    by_jti_id = uid("jti")
    by_jti = c.tok(sub=uid("bob"), jti=by_jti_id)
    sub = uid("carol")
    t0 = int(time.time())
    by_subject = c.tok(sub=sub, jti=None, iat=t0 - 5)
    for t in (by_token, by_jti, by_subject):
        assert all(status_of(gw, t) == 200 for gw in gws)  # cached on every instance

    assert Admin(a).revoke({"token": by_token}).status_code == 201
    assert status_of(a, by_token) == 401, "in force on the acknowledging instance at once"
    refused_everywhere([b, gw_c], by_token, what="token revocation")

    assert Admin(b).revoke({"iss": CORP, "jti": by_jti_id, "exp": int(time.time()) + 600}).status_code == 201
    refused_everywhere([a, gw_c, b], by_jti, what="jti revocation")

    assert Admin(gw_c).revoke({"iss": CORP, "sub": sub, "before": t0 - 2}).status_code == 201
    refused_everywhere([a, b], by_subject, what="subject cut-off")
    assert status_of(a, c.tok(sub=sub, iat=t0 - 1)) == 200, "only older tokens"

    # DELETE propagates the same way.
    assert Admin(b).unrevoke({"token": by_token}).status_code == 204
    accepted_everywhere([b, a, gw_c], by_token, what="token unrevoked")
    assert Admin(a).unrevoke({"iss": CORP, "sub": sub}).status_code == 204
    accepted_everywhere([a, b, gw_c], by_subject, what="subject unrevoked")

    # The lists agree.
    lists = [Admin(gw).revocations() for gw in gws]
    assert lists[0] == lists[1] == lists[2], lists
    assert [e["jti"] for e in lists[0]["jti"]] == [by_jti_id]
    assert lists[0]["subjects"] == []

    # An instance started later refuses from its first ready moment.
    late = c.gateway()
    assert status_of(late, by_jti) == 401
    assert status_of(late, by_token) == 200
    assert Admin(late).revocations() == lists[0]
    assert metric_value(late, "portcullis_revocations", kind="jti") == 1
    assert metric_value(late, "portcullis_redis_up") == 1
    assert Admin(late).status()["redis"] == {"connected": True, "last_error": None}


def issuer_files(procs, max_failed_logins: int = 5) -> dict:
    """One signing key and users file for every instance (absolute paths)."""
    d = procs.dir / "issuer"
    d.mkdir(exist_ok=True)
    key = keygen("ES256", "dev-1", d / "keys")
    users = {"users": [{"username": "alice", "password_hash": hash_password("right-pw"),
                        "scopes": ["api"], "disabled": False}]}
    (d / "users.yaml").write_text(json.dumps(users))
    (d / "clients.yaml").write_text(json.dumps({"clients": []}))
    return issuer_block(signing_key=str(key), users_file=str(d / "users.yaml"),
                        clients_file=str(d / "clients.yaml"), max_failed_logins=max_failed_logins)


def login(gw, password: str):
    return post_form(gw, "/auth/token", {"grant_type": "password", "username": "alice",
                                          "password": password})


def test_the_issuer_logout_reaches_every_instance(procs, redis):
    c = Cluster(procs, redis)
    block = issuer_files(procs)
    a = procs.gateway(c.config(redis.url, issuer=block), env=ENV)
    b = procs.gateway(c.config(redis.url, issuer=block), env=ENV)
    wait_ready(a)
    wait_ready(b)
    r = login(a, "right-pw")
    assert r.status == 200, r
    token = r.json()["access_token"]
    assert status_of(b, token) == 200
    r = post_form(a, "/auth/revoke", {"token": token})
    assert r.status == 200, r
    refused_everywhere([a, b], token, what="issuer /revoke")


# ---------------------------------------------------------------------------------------------
# 2. Redis down, Redis back; a partition


def test_while_redis_is_down_instances_hold_their_list_and_refuse_new_revocations(procs, redis):
    c = Cluster(procs, redis)
    a, b = c.gateway(), c.gateway()
    revoked = c.tok(sub=uid("r"))
    fine = c.tok(sub=uid("f"))
    assert status_of(b, fine) == 200
    Admin(a).revoke_ok({"token": revoked})
    refused_everywhere([b], revoked)

    redis.stop()
    for gw in (a, b):
        wait_for(lambda: not ready(gw), 5, what="/readyz 503 with redis down")
        r = requests.get(gw.url("admin", "/readyz"), timeout=2)
        assert r.status_code == 503
        assert any(x.startswith("revocation store") for x in r.json()["reasons"]), r.text
        st = Admin(gw).status()["redis"]
        assert st["connected"] is False and st["last_error"], st
        assert metric_value(gw, "portcullis_redis_up") == 0
        assert metric_value(gw, "portcullis_redis_errors_total", op="revocation_follow") >= 1
        # Still checked against the last list.
        assert status_of(gw, revoked) == 401
        assert status_of(gw, fine) == 200

    new = c.tok(sub=uid("n"))
    t0 = time.monotonic()
    r = Admin(a).revoke({"token": new})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "unavailable"
    assert time.monotonic() - t0 < 3
    assert status_of(a, new) == 200, "a change that was not stored is not in force"
    assert Admin(b).unrevoke({"token": revoked}).status_code == 503
    assert status_of(b, revoked) == 401

    redis.start()  # appendonly: the list comes back with it
    for gw in (a, b):
        wait_for(lambda: ready(gw), 10, what="ready again once redis is back")
        assert Admin(gw).status()["redis"]["connected"] is True
        assert metric_value(gw, "portcullis_redis_up") == 1
    Admin(b).revoke_ok({"token": new})
    refused_everywhere([a, b], new)
    assert status_of(a, revoked) == 401
    assert status_of(a, fine) == 200


def test_a_cut_off_instance_is_not_ready_and_catches_up_within_two_seconds(procs, redis):
    c = Cluster(procs, redis)
    proxy = TcpProxy(redis.port)
    try:
        a = c.gateway()
        cut = c.gateway(proxy.url)
        early = c.tok(sub=uid("e"))
        Admin(a).revoke_ok({"token": early})
        refused_everywhere([cut], early)

        proxy.cut()
        wait_for(lambda: not ready(cut), 5, what="cut instance not ready")
        during = c.tok(sub=uid("d"))
        assert status_of(cut, during) == 200
        Admin(a).revoke_ok({"token": during})
        Admin(a).unrevoke({"token": early})
        time.sleep(1.5)
        assert not ready(cut), "ready while it cannot have caught up"
        assert status_of(cut, during) == 200, "the cut instance cannot know yet"

        proxy.heal()
        t = within(2.0, lambda: status_of(cut, during) == 401, "catch-up after the partition heals")
        assert status_of(cut, early) == 200, f"the removal was caught up too (after {t:.2f}s)"
        wait_for(lambda: ready(cut), 2, what="ready after catching up")
        assert Admin(cut).revocations() == Admin(a).revocations()
    finally:
        proxy.close()


def test_a_redis_that_lost_its_data_does_not_unrevoke_anything_on_running_instances(procs, tmp_path):
    volatile = RedisServer(tmp_path / "volatile")  # no appendonly: a restart loses everything
    volatile.start()
    try:
        c = Cluster(procs, volatile)
        gw = c.gateway()
        t = c.tok(sub=uid("kept"))
        Admin(gw).revoke_ok({"token": t})
        volatile.stop()
        wait_for(lambda: not ready(gw), 5, what="not ready while redis is down")
        volatile.start()
        wait_for(lambda: ready(gw), 10, what="ready again")
        assert status_of(gw, t) == 401
        assert "no longer holds the last change applied here" in gw.logs()
        # New changes flow as before.
        other = c.tok(sub=uid("new"))
        Admin(gw).revoke_ok({"token": other})
        assert status_of(gw, other) == 401
    finally:
        volatile.stop()


def test_an_instance_started_while_redis_is_down_starts_not_ready(procs, redis):
    c = Cluster(procs, redis)
    a = c.gateway()
    t = c.tok(sub=uid("x"))
    Admin(a).revoke_ok({"token": t})
    redis.stop()
    late = c.gateway(ready=False)
    time.sleep(1.5)
    assert not ready(late)
    redis.start()
    wait_for(lambda: ready(late), 10, what="ready once redis is up")
    assert status_of(late, t) == 401


# ---------------------------------------------------------------------------------------------
# 3. Shared rate limits


def hammer(gws, path: str, seconds: float) -> tuple[int, int, float]:
    """Requests round-robin over `gws` for `seconds`: (admitted, refused, elapsed)."""
    admitted = refused = 0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        r = gws[i % len(gws)].get(path)
        i += 1
        if r.status_code == 200:
            admitted += 1
        elif r.status_code == 429:
            refused += 1
        else:
            raise AssertionError(f"unexpected {r.status_code}: {r.text}")
    return admitted, refused, time.monotonic() - t0


RPS, BURST = 10, 20


def limited_routes():
    return [route("limited", "/limited", "echo",
                  rate_limit={"rps": RPS, "burst": BURST, "key": "client_ip", "shared": True}),
            route("api", "/api", "echo", auth={"mode": "required"})]


def test_a_shared_rate_limit_admits_for_all_instances_what_one_would(procs, redis):
    c = Cluster(procs, redis, routes=limited_routes())
    gws = [c.gateway() for _ in range(3)]
    admitted, refused, elapsed = hammer(gws, "/limited/x", 3.0)
    expected = BURST + RPS * elapsed
    assert abs(admitted - expected) <= 0.1 * expected, (admitted, expected, refused)
    assert refused > admitted, "the instances shared one bucket"
    for gw in gws:
        assert metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited") == 0
    assert sum(metric_value(gw, "portcullis_rate_limited_total", route="limited")
               for gw in gws) == refused


def test_a_shared_rate_limit_falls_back_to_the_local_bucket_while_redis_is_down(procs, redis):
    c = Cluster(procs, redis, routes=limited_routes())
    gw = c.gateway()
    redis.stop()
    wait_for(lambda: Admin(gw).status()["redis"]["connected"] is False, 5, what="redis seen down")
    admitted, refused, elapsed = hammer([gw], "/limited/x", 1.5)
    # The local bucket: one instance's burst + rate, never an error.
    assert admitted <= BURST + RPS * elapsed + 1, admitted
    assert admitted >= BURST, admitted
    assert metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited") == admitted + refused
    assert metric_value(gw, "portcullis_redis_up") == 0
    redis.start()
    wait_for(lambda: ready(gw), 10, what="ready again")
    before = metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited")
    wait_for(lambda: gw.get("/limited/x").status_code in (200, 429) and
             metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited") == before,
             5, what="the shared bucket answers again")


def test_with_a_local_revocation_store_the_redis_link_is_still_watched(procs, redis):
    c = Cluster(procs, redis, routes=limited_routes())
    cfg = c.config(redis.url)
    cfg["revocation"] = {"store": "memory"}
    gw = procs.gateway(cfg, env=ENV)
    wait_ready(gw)
    wait_for(lambda: metric_value(gw, "portcullis_redis_up") == 1, 5, what="redis up")
    assert gw.get("/limited/x").status_code == 200
    assert redis.cli("--scan", "--pattern", f"{c.prefix}ratelimit:*") != ""
    redis.stop()
    wait_for(lambda: metric_value(gw, "portcullis_redis_up") == 0, 5, what="redis seen down")
    assert ready(gw), "without the redis store, readiness does not depend on Redis"
    assert Admin(gw).status()["redis"]["connected"] is False
    assert gw.get("/limited/x").status_code == 200
    assert metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited") == 1
    assert metric_value(gw, "portcullis_redis_errors_total", op="ping") >= 1
    redis.start()
    wait_for(lambda: metric_value(gw, "portcullis_redis_up") == 1, 10, what="redis up again")


def test_a_slow_redis_does_not_stall_a_shared_rate_limit(procs, redis):
    c = Cluster(procs, redis, routes=limited_routes())
    gw = c.gateway()
    assert gw.get("/limited/x").status_code == 200
    sleeper = threading.Thread(target=redis.cli, args=("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    try:
        time.sleep(0.2)
        t0 = time.monotonic()
        r = gw.get("/limited/x")
        took = time.monotonic() - t0
    finally:
        sleeper.join()
    assert r.status_code == 200, r.text
    assert took < 0.8, f"a request waited {took:.2f}s for a Redis that did not answer"
    assert metric_value(gw, "portcullis_rate_limit_fallback_total", route="limited") == 1
    assert metric_value(gw, "portcullis_redis_errors_total", op="rate_limit") == 1


# ---------------------------------------------------------------------------------------------
# 4. The login throttle


def test_failed_logins_are_counted_across_instances(procs, redis):
    c = Cluster(procs, redis)
    block = issuer_files(procs, max_failed_logins=4)
    a = procs.gateway(c.config(redis.url, issuer=block), env=ENV)
    b = procs.gateway(c.config(redis.url, issuer=block), env=ENV)
    wait_ready(a)
    wait_ready(b)
    assert login(a, "right-pw").status == 200, "a success takes no slot"
    for gw in (a, b, a, b):
        r = login(gw, "wrong-pw")
        assert r.status == 400 and r.json()["error"] == "invalid_grant", r
    # Four failures spread over two instances: the fifth attempt is refused on both, even with
    # the right password; one instance alone counted only two.
    for gw in (a, b):
        r = login(gw, "right-pw")
        assert r.status == 429, r
        assert int(r.header("Retry-After")) > 0
    # Another client IP is not affected.
    r = post_form(b, "/auth/token", {"grant_type": "password", "username": "alice",
                                      "password": "right-pw"}, source_ip="127.0.0.2")
    assert r.status == 200, r


# ---------------------------------------------------------------------------------------------
# Configuration and secrets


def test_config_check_names_the_redis_key_paths(procs):
    c = base_config({"echo": upstream_cfg("127.0.0.1:9")},
                    [route("r", "/", "echo", rate_limit={"rps": 1, "shared": True})],
                    revocation={"store": "redis"})
    c["listeners"] = {"http": {"addr": "127.0.0.1:18080"}}
    code, out = procs.validate(c)
    assert code == 1, out
    assert "revocation.store: redis needs a top-level redis: block" in out, out
    assert "routes[0].rate_limit.shared: needs a top-level redis: block" in out, out

    c["redis"] = {"url": "http://user:pw-in-url@127.0.0.1:6379", "password_env": "PORTCULLIS_TEST_UNSET_VAR"}
    code, out = procs.validate(c)
    assert code == 1, out
    assert "redis.url: must start with redis:// or rediss://" in out, out
    assert "redis.password_env: environment variable PORTCULLIS_TEST_UNSET_VAR is not set" in out, out
    assert "pw-in-url" not in out
    assert "revocation.store" not in out and "rate_limit.shared" not in out, out

    c["redis"] = {"url": "rediss://user:pw-in-url@redis.example:6380/2", "command_timeout": "0s"}
    code, out = procs.validate(c)
    assert code == 1 and "redis.command_timeout: must be greater than zero" in out, out
    c["redis"]["command_timeout"] = "100ms"
    code, out = procs.validate(c)
    assert code == 0, out


def test_a_reload_cannot_move_the_redis_connection(procs, redis):
    c = Cluster(procs, redis)
    gw = c.gateway()
    cfg = json.loads(json.dumps(gw.config))
    cfg["redis"]["prefix"] = "elsewhere:"
    write_config_atomically(gw, cfg)
    r = Admin(gw).reload()
    assert r.status_code == 422, r.text
    assert any(e.startswith("redis: changed") for e in r.json()["errors"]), r.text
    assert ready(gw)


def test_rediss_connects_over_verified_tls(procs, tmp_path, tls_files):
    server = RedisServer(tmp_path / "redis-tls", tls=tls_files).start()
    try:
        c = Cluster(procs, server)
        url = f"rediss://localhost:{server.port}/0"
        trusted = procs.gateway(c.config(url), env=dict(ENV, SSL_CERT_FILE=str(tls_files.ca)))
        wait_ready(trusted)
        t = c.tok(sub=uid("tls"))
        Admin(trusted).revoke_ok({"token": t})
        assert status_of(trusted, t) == 401
        assert server.cli("XLEN", f"{c.prefix}{{revocations}}:log") == "1"
        # A server whose certificate the gateway cannot verify is not used.
        other_ca = tmp_path / "other-ca.crt"
        other_ca.write_text(Path(tls_files.cert).read_text())  # a leaf, not the CA that signed it
        untrusted = procs.gateway(c.config(url), env=dict(ENV, SSL_CERT_FILE=str(other_ca)))
        wait_for(lambda: Admin(untrusted).status()["redis"]["last_error"], 5, what="a TLS error")
        assert not ready(untrusted)
        assert Admin(untrusted).revoke({"token": c.tok(sub=uid("x"))}).status_code == 503
    finally:
        server.stop()


def test_the_redis_password_stays_out_of_logs_status_and_metrics(procs, tmp_path):
    password = "pw-" + uuid.uuid4().hex
    server = RedisServer(tmp_path / "redis-auth", password=password).start()
    try:
        c = Cluster(procs, server)
        in_url = c.gateway(f"redis://:{password}@127.0.0.1:{server.port}/0")
        cfg = c.config(f"redis://127.0.0.1:{server.port}/0")
        cfg["redis"]["password_env"] = "PORTCULLIS_TEST_REDIS_PW"
        from_env = procs.gateway(cfg, env=dict(ENV, PORTCULLIS_TEST_REDIS_PW=password))
        wait_ready(from_env)
        t = c.tok(sub=uid("s"))
        Admin(in_url).revoke_ok({"token": t})
        refused_everywhere([from_env], t)
        wrong = procs.gateway(c.config(f"redis://:wrong-{password}@127.0.0.1:{server.port}/0"),
                              env=ENV)
        wait_for(lambda: Admin(wrong).status()["redis"]["last_error"], 5, what="an auth error")
        assert not ready(wrong)
        for gw in (in_url, from_env, wrong):
            seen = [gw.logs(), json.dumps(Admin(gw).status()), requests.get(
                gw.url("metrics", "/metrics"), timeout=5).text]
            assert all(password not in x for x in seen), gw.logs_tail()
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# 5. Nothing on the request path


def test_proxied_requests_with_a_cached_token_send_nothing_to_redis(procs, redis):
    c = Cluster(procs, redis)
    gw = c.gateway()
    t = c.tok(sub=uid("quiet"))
    assert status_of(gw, t) == 200
    time.sleep(0.3)

    def busy(stats):  # the follower's blocking XREAD and this test's INFO are expected
        return {k: v for k, v in stats.items() if k not in ("xread", "info")}

    before = busy(redis.commandstats())
    for _ in range(50):
        assert status_of(gw, t) == 200
    after = busy(redis.commandstats())
    assert after == before, (before, after)


# ---------------------------------------------------------------------------------------------
# 7. The k6 script load-tests/multi-instance.js against three real instances


def test_the_multi_instance_k6_script_passes_against_three_instances(procs, redis):
    c = Cluster(procs, redis, routes=limited_routes())
    gws = [c.gateway() for _ in range(3)]
    tokens = [c.tok(sub=uid("k6")) for _ in range(3)]
    proc, out, summary = start_k6("multi-instance.js", {
        "BASE_URLS": ",".join(gw.url("http", "").rstrip("/") for gw in gws),
        "ADMIN_URLS": ",".join(gw.url("admin", "").rstrip("/") for gw in gws),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "REQ_PATH": "/api/x",
        "TOKENS": ",".join(tokens),
        "LIMITED_PATH": "/limited/x",
        "LIMIT_RPS": RPS,
        "LIMIT_BURST": BURST,
        "LIMIT_RATE": 60,
        "DURATION": "4s",
    }, procs.dir / "k6")
    result = finish_k6(proc, out, summary, timeout=60)
    assert result.returncode == 0, result.tail()
    propagation = result.summary["metrics"]["propagation_ms"]
    assert 0 <= propagation["max"] < 1000, propagation
    checks = result.summary["metrics"]["checks"]
    assert checks["fails"] == 0 and checks["passes"] > 0, checks
    assert result.count("refused") > 0, result.tail()
    for t in tokens:
        assert all(status_of(gw, t) == 401 for gw in gws)


def test_a_list_of_many_scan_pieces_loads_whole_and_drops_what_expired(procs, redis):
    """A first load reads the shared list with HSCAN, several calls for a list this size (30,000
    entries; 5,000 a call). Entries written in the gateway's snapshot format straight into
    Redis: every live one is in force, the expired ones are left out and removed. That a million
    entries load within the command timeout is benches/redis_scale.py's to show."""
    cluster = Cluster(procs, redis)
    key = f"{cluster.prefix}{{revocations}}:list"
    live, expired, now = 30_000, 500, int(time.time())
    for start in range(0, live, 1000):
        args = []
        for i in range(start, min(start + 1000, live)):
            args += [json.dumps(["jti", CORP, f"bulk-{i}"], separators=(",", ":")), "0:"]
        redis.cli("HSET", key, *args)
    old = []
    for i in range(expired):
        old += [json.dumps(["jti", CORP, f"old-{i}"], separators=(",", ":")), f"0:{now - 60}"]
    redis.cli("HSET", key, *old)

    gw = cluster.gateway()
    st = Admin(gw).status()
    assert st["revocations"]["jti"] == live, st["revocations"]
    assert status_of(gw, cluster.tok(jti="bulk-29999")) == 401
    assert status_of(gw, cluster.tok(jti="old-7")) == 200
    assert int(redis.cli("HLEN", key)) == live, "expired entries were not removed from Redis"
