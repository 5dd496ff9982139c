"""Per-route rate limits (conf/README.md §2 `routes[].rate_limit`; §3.9 error table: 429 with
Retry-After)."""
from support.admin_api import file_provider, wait_ready, write_jwks
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
