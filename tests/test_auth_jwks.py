"""JWKS life cycle against a real HTTP JWKS server (tests/support/jwks_server.py): rotation,
removal, outages and max_stale, the unknown-kid refetch limit, Cache-Control / ETag, OpenID
discovery, a file JWKS edited while running, the key filter (K8-K12) and issuer binding (K7).

conf/README.md §2 providers[].jwks, §3.4, §4 /readyz, §5 jwks metrics; conf/HARDENING.md K6-K12.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid

import requests

from support.harness import base_config, metric, route, upstream_cfg, wait_for
from support.jwks_server import JwksServer
from support.jwt import (AuthClient, SigningKey, assert_invalid_token, assert_ok, b64u, make_token,
                         std_claims)

ISS = "https://id.test"
REFRESH = "portcullis_jwks_refresh_total"


def authed(name: str, prefix: str, providers: list | None = None, **auth) -> dict:
    a = {"mode": "required", **auth}
    if providers is not None:
        a["providers"] = providers
    return route(name, prefix, "echo", auth=a)


def start(procs, providers: list, routes: list | None = None, ready: bool = True, **top):
    up = procs.upstream("echo")
    cfg = base_config({"echo": upstream_cfg(up)}, routes or [authed("api", "/api")],
                      listeners=("http", "metrics"), providers=providers, **top)
    gw = procs.gateway(cfg)
    if ready:
        wait_ready(gw)
    return gw, up, AuthClient(gw, up)


def readyz(gw) -> int:
    return requests.get(gw.url("admin", "/readyz"), timeout=2).status_code


def wait_ready(gw, timeout: float = 10.0) -> None:
    wait_for(lambda: readyz(gw) == 200, timeout, what="/readyz 200")


def refreshes(gw, provider: str, result: str) -> float:
    return metric(gw.metrics(), REFRESH, provider=provider, result=result) or 0.0


def quiet_since_last_fetch(server: JwksServer, seconds: float) -> None:
    """Sleep until `seconds` have passed since the server's last request (the unknown-kid refetch
    is allowed once per min_refresh after *any* fetch)."""
    last = max((e["t"] for e in server.log), default=0.0)
    wait = last + seconds - time.monotonic()
    if wait > 0:
        time.sleep(wait)


def tok(key: SigningKey, iss: str = ISS, **claims) -> str:
    return make_token(key, std_claims(iss=iss, **claims))


# ---------------------------------------------------------------------------------------------
# Rotation


def test_new_kid_accepted_on_first_use_although_refresh_interval_is_1h(procs):
    k1, k2 = SigningKey("ES256", "k1"), SigningKey("RS256", "k2")
    with JwksServer([k1]) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS)])
        assert_ok(client.call("/api/x", tok(k1), route="api"))
        samples = gw.metrics()
        assert metric(samples, "portcullis_jwks_keys", provider="corp") == 1
        ts = metric(samples, "portcullis_jwks_last_success_timestamp_seconds", provider="corp")
        assert ts is not None and abs(ts - time.time()) < 30, ts
        ok_before = refreshes(gw, "corp", "ok")
        quiet_since_last_fetch(srv, 1.2)  # min_refresh 1s since the start-up fetch
        srv.set_keys([k1, k2])
        fetches = srv.jwks_fetches()
        # The very first request with the new kid is accepted: it triggers one refetch.
        assert_ok(client.call("/api/x", tok(k2), route="api"))
        assert srv.jwks_fetches() == fetches + 1
        assert refreshes(gw, "corp", "ok") == ok_before + 1
        assert metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 2
        assert_ok(client.call("/api/x", tok(k1), route="api"))


def test_removed_key_stops_verifying_after_next_refresh(procs):
    k1, k2 = SigningKey("ES256", "k1"), SigningKey("EdDSA", "k2")
    with JwksServer([k1, k2], max_age=1) as srv:  # max-age=1 -> refresh every min_refresh (1s)
        gw, up, client = start(procs, [srv.provider("corp", ISS)])
        assert_ok(client.call("/api/x", tok(k2), route="api"))
        srv.set_keys([k1])
        removed_at = time.monotonic()
        n = srv.jwks_fetches()
        wait_for(lambda: srv.jwks_fetches() > n, 3.0, what="a scheduled refresh after the removal")
        time.sleep(0.2)  # let the gateway apply the body it just fetched
        assert time.monotonic() - removed_at < 3.0
        assert_invalid_token(client.call("/api/x", tok(k2), route="api"), "unknown_kid", "unknown key id")
        assert_ok(client.call("/api/x", tok(k1), route="api"))
        assert metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 1


# ---------------------------------------------------------------------------------------------
# Outages, max_stale, readiness


def test_server_down_keeps_last_keys_until_max_stale_then_refuses_and_unready(procs):
    k1 = SigningKey("ES256", "k1")
    with JwksServer([k1]) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS, jwks={"refresh_interval": "1s",
                                                                        "max_stale": "3s"})])
        assert_ok(client.call("/api/x", tok(k1), route="api"))
        errors_before = refreshes(gw, "corp", "error")
        srv.stop()
        down_at = time.monotonic()
        # Within max_stale the last good keys keep verifying (fresh tokens: no cache involved).
        time.sleep(1.5)
        assert_ok(client.call("/api/x", tok(k1), route="api"))
        assert readyz(gw) == 200
        assert refreshes(gw, "corp", "error") > errors_before, "failed fetches must be counted"
        # After max_stale (3s after the last success) the keys are gone.
        wait_for(lambda: readyz(gw) == 503, 4.0, what="/readyz 503 after max_stale")
        assert time.monotonic() - down_at >= 1.9, "keys dropped long before max_stale"
        body = requests.get(gw.url("admin", "/readyz"), timeout=2).text
        assert "corp" in body, body
        assert_invalid_token(client.call("/api/x", tok(k1), route="api"), "unknown_kid", "unknown key id")
        assert metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 0
        # The IdP comes back on the same port: keys and readiness return without a restart.
        srv.start()
        wait_ready(gw, 5.0)
        assert_ok(client.call("/api/x", tok(k1), route="api"))


def test_readyz_503_until_first_key_set_loaded(procs):
    k1 = SigningKey("ES256", "k1")
    with JwksServer([k1], start=False) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS)], ready=False)
        assert readyz(gw) == 503
        assert_invalid_token(client.call("/api/x", tok(k1), route="api"), "unknown_kid", "unknown key id")
        srv.start()
        wait_ready(gw, 5.0)
        assert_ok(client.call("/api/x", tok(k1), route="api"))


def test_healthy_idp_never_goes_stale_when_max_stale_is_below_refresh_interval(procs):
    """`max_stale` is how long the last good keys are kept *while fetches fail* (conf/README.md §2).
    With refresh_interval 1h and max_stale 3s and an IdP that never fails, the gateway must either
    refuse that configuration (`-t`) or keep the provider ready; dropping the keys of a healthy IdP
    every 3 s makes /readyz flap and every provider token pay for a refetch."""
    k1 = SigningKey("ES256", "k1")
    with JwksServer([k1]) as srv:
        provider = srv.provider("corp", ISS, jwks={"refresh_interval": "1h", "max_stale": "3s"})
        up = procs.upstream("echo")
        cfg = base_config({"echo": upstream_cfg(up)}, [authed("api", "/api")],
                          listeners=("http", "metrics"), providers=[provider])
        gw = procs.gateway(cfg, start=False)
        code, out = procs.validate(gw.config)
        if code != 0:
            assert "max_stale" in out, out  # refused up front: acceptable
            return
        gw.start()
        wait_ready(gw)
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            assert readyz(gw) == 200, "provider went unready although its JWKS server is healthy"
            assert metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 1
            time.sleep(0.25)


# ---------------------------------------------------------------------------------------------
# Unknown-kid refetch storm (K6)


def test_random_kid_storm_fetches_at_most_once_per_min_refresh(procs):
    k1 = SigningKey("ES256", "k1")
    with JwksServer([k1]) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS, jwks={"min_refresh": "2s"})])
        quiet_since_last_fetch(srv, 2.2)
        srv.reset_counts()
        results: list = []
        lock = threading.Lock()

        def worker(n):
            s = requests.Session()
            for _ in range(n):
                t = make_token(k1, std_claims(), kid="rnd-" + uuid.uuid4().hex)
                t0 = time.monotonic()
                r = s.get(gw.url("http", "/api/x"), headers={"Authorization": f"Bearer {t}"}, timeout=10)
                with lock:
                    results.append((r.status_code, time.monotonic() - t0))

        t_start = time.monotonic()
        threads = [threading.Thread(target=worker, args=(10,)) for _ in range(10)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        duration = time.monotonic() - t_start
        assert len(results) == 100
        assert all(code == 401 for code, _ in results), {code for code, _ in results}
        # fetch_timeout is 1s: no request may wait longer on the IdP than that (plus slack).
        assert max(el for _, el in results) < 3.0, max(el for _, el in results)
        allowed = math.floor(duration / 2.0) + 1
        assert srv.jwks_fetches() <= allowed, \
            f"{srv.jwks_fetches()} JWKS fetches in {duration:.2f}s with min_refresh 2s (allowed {allowed})"
        assert up.count() == 0
        d = client.decisions("api")
        assert d.get("unknown_kid", 0) >= 100, d


# ---------------------------------------------------------------------------------------------
# Cache-Control and ETag


def test_cache_control_max_age_and_etag_if_none_match(procs):
    k1 = SigningKey("ES256", "k1")
    with JwksServer([k1], max_age=1, etag=True) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS)])  # refresh_interval 1h
        wait_for(lambda: srv.not_modified >= 2, 5.0, what="two 304 answers to conditional refetches")
        time.sleep(0.3)
        fetches = srv.jwks_fetches()
        # max-age=1 within [min_refresh 1s, refresh_interval 1h]: about one fetch per second.
        assert 3 <= fetches <= 8, fetches
        tag = srv.current_etag()
        conditional = [e for e in srv.log[1:] if e["path"] == srv.JWKS_PATH]
        assert conditional and all(e["headers"].get("if-none-match") == tag for e in conditional), \
            [e["headers"].get("if-none-match") for e in conditional]
        assert refreshes(gw, "corp", "not_modified") == srv.not_modified
        assert refreshes(gw, "corp", "ok") == 1
        assert_ok(client.call("/api/x", tok(k1), route="api"))
        # A changed document gets a new ETag and is loaded (200, result ok).
        k2 = SigningKey("ES256", "k2")
        srv.set_keys([k1, k2])
        wait_for(lambda: refreshes(gw, "corp", "ok") == 2, 3.0, what="refresh_total{result=ok} after the change")
        assert_ok(client.call("/api/x", tok(k2), route="api"))


def test_max_age_is_clamped_to_min_refresh_and_refresh_interval(procs):
    k1, k2 = SigningKey("ES256", "k1"), SigningKey("ES256", "k2")
    with (JwksServer([k1], max_age=0) as fast,          # clamped up to min_refresh (1s)
          JwksServer([k2], max_age=86400) as slow):     # clamped down to refresh_interval (2s)
        start(procs, [fast.provider("fast", ISS),
                      slow.provider("slow", "https://slow.test", jwks={"refresh_interval": "2s"})])
        fast.reset_counts()
        slow.reset_counts()
        time.sleep(4.2)
        assert fast.jwks_fetches() <= 6, f"max-age=0 must not refetch faster than min_refresh: {fast.jwks_fetches()}"
        assert fast.jwks_fetches() >= 3, fast.jwks_fetches()
        assert 1 <= slow.jwks_fetches() <= 3, f"max-age above refresh_interval must be clamped: {slow.jwks_fetches()}"


# ---------------------------------------------------------------------------------------------
# Discovery and file sources


def test_openid_discovery(procs):
    k1, k2 = SigningKey("ES256", "k1"), SigningKey("ES256", "k2")
    with JwksServer([k1]) as good, JwksServer([k2]) as mixup:
        mixup.discovery_issuer = "http://127.0.0.1:1/evil"  # document about another issuer
        gw, up, client = start(procs, [good.provider("good", good.base, discovery=True),
                                       mixup.provider("mixup", mixup.base, discovery=True)], ready=False)
        wait_for(lambda: good.counts[good.JWKS_PATH] >= 1, 5.0, what="discovered JWKS fetched")
        assert good.counts[good.DISCOVERY_PATH] >= 1
        assert_ok(client.call("/api/x", tok(k1, iss=good.base), route="api"))
        # Discovery that names another issuer is refused: no keys, never ready, JWKS never fetched.
        time.sleep(0.3)
        assert mixup.counts[mixup.DISCOVERY_PATH] >= 1
        assert mixup.counts[mixup.JWKS_PATH] == 0
        assert readyz(gw) == 503
        assert_invalid_token(client.call("/api/x", tok(k2, iss=mixup.base), route="api"), "unknown_kid")


def test_file_jwks_edited_while_running(procs):
    k1, k2 = SigningKey("ES256", "k1"), SigningKey("PS256", "k2")
    up = procs.upstream("echo")
    provider = {"name": "corp", "issuer": ISS, "audiences": ["api"],
                "algorithms": ["ES256", "RS256", "EdDSA", "PS256", "ES384"],
                "jwks": {"file": "jwks.json", "refresh_interval": "1h", "min_refresh": "1s",
                         "fetch_timeout": "1s", "max_stale": "1h"}}
    cfg = base_config({"echo": upstream_cfg(up)}, [authed("api", "/api")], listeners=("http", "metrics"),
                      providers=[provider])
    gw = procs.gateway(cfg, start=False)
    path = gw.dir / "jwks.json"
    path.write_text(json.dumps({"keys": [k1.jwk()]}))
    gw.start()
    wait_ready(gw)
    client = AuthClient(gw, up)
    assert_ok(client.call("/api/x", tok(k1), route="api"))
    time.sleep(1.1)  # a different mtime second, whatever the file system's granularity
    # Rotate in the file: k2 added, k1 removed. Watched, not only re-read on an unknown kid.
    path.write_text(json.dumps({"keys": [k2.jwk()]}, indent=1))
    edited = time.monotonic()
    wait_for(lambda: metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 1
             and refreshes(gw, "corp", "ok") >= 2, 2.5, what="file change picked up")
    wait_for(lambda: client.call("/api/x", tok(k1), route="api").status == 401, 2.5,
             what="k1 refused after its removal from the file")
    assert time.monotonic() - edited < 2.5
    assert_invalid_token(client.call("/api/x", tok(k1), route="api"), "unknown_kid", "unknown key id")
    assert_ok(client.call("/api/x", tok(k2), route="api"))


# ---------------------------------------------------------------------------------------------
# Key filter (K8-K12) and issuer binding (K7)


def test_jwks_key_filter_k8_to_k12(procs):
    good = SigningKey("ES256", "good")
    enc = SigningKey("ES256", "use-enc")
    ops = SigningKey("ES256", "ops-encrypt")
    ops_sign = SigningKey("ES256", "ops-sign-only")
    crv = SigningKey("ES256", "p256-says-es384")
    oaep = SigningKey("RS256", "rsa-oaep")
    rsa_hs = SigningKey("RS256", "rsa-alg-hs256")
    weak = SigningKey("RS256", "rsa-1024", rsa_bits=1024)
    e1 = SigningKey("RS256", "rsa-e1")
    dup_a, dup_b = SigningKey("ES256", "dup"), SigningKey("ES256", "dup")
    curve_lie = SigningKey("ES256", "crv-p384-coords-p256")
    ed_short = SigningKey("EdDSA", "ed-short-x")
    secret = b"0123456789abcdef0123456789abcdef"
    keys = [
        good.jwk(),
        enc.jwk(use="enc"),                                   # K8 use
        ops.jwk(use=None, key_ops=["encrypt"]),               # K8 key_ops
        ops_sign.jwk(use=None, key_ops=["sign"]),             # K8 key_ops without verify
        crv.jwk(alg="ES384"),                                 # A7/K8 alg vs curve
        oaep.jwk(alg="RSA-OAEP"),                             # K8 encryption alg
        rsa_hs.jwk(alg="HS256"),                              # K8 symmetric alg on an RSA key
        weak.jwk(),                                           # K9 RSA-1024
        e1.jwk(e=b64u(b"\x01")),                              # K9 e=1
        dup_a.jwk(), dup_b.jwk(),                             # K11 duplicate kid
        curve_lie.jwk(crv="P-384"),                           # K10 coordinates of the wrong size
        ed_short.jwk(x=b64u(b"abc")),                         # K10 3-byte Ed25519 x
        {"kty": "EC", "crv": "P-256", "kid": "bogus-point", "alg": "ES256", "use": "sig",
         "x": b64u(b"\x01" * 32), "y": b64u(b"\x02" * 32)},  # K10 not on the curve
        {"kty": "oct", "kid": "oct1", "k": b64u(secret), "alg": "HS256", "use": "sig"},  # K12
        {"kty": "oct", "kid": "oct-es", "k": b64u(secret)},  # K12 without alg
    ]
    with JwksServer(keys) as srv:
        gw, up, client = start(procs, [srv.provider("corp", ISS, algorithms=["ES256", "RS256", "EdDSA", "ES384"])])
        assert gw.alive()
        assert metric(gw.metrics(), "portcullis_jwks_keys", provider="corp") == 1
        assert_ok(client.call("/api/x", tok(good), route="api"))
        refused = [
            tok(enc), tok(ops), tok(ops_sign),
            make_token(crv, std_claims(), alg="ES384"), tok(crv),
            tok(oaep), tok(rsa_hs), tok(weak), tok(e1), tok(dup_a), tok(dup_b), tok(curve_lie), tok(ed_short),
            make_token(good, std_claims(), kid="bogus-point"),
            make_token(good, std_claims(), kid="oct-es"),
        ]
        for t in refused:
            assert_invalid_token(client.call("/api/x", t, route="api"), "unknown_kid", "unknown key id")
        # The symmetric key itself: HS256 is refused whatever the JWKS says.
        hs = make_token(None, std_claims(), alg="HS256", kid="oct1", secret=secret)
        assert_invalid_token(client.call("/api/x", hs, route="api"), ("malformed", "unknown_kid", "bad_signature"))
        assert gw.alive()
        assert readyz(gw) == 200


def test_cross_issuer_confusion_k7(procs):
    a1, b1 = SigningKey("ES256", "A1"), SigningKey("ES256", "B1")
    with JwksServer([a1]) as sa, JwksServer([b1]) as sb:
        routes = [authed("any", "/any"), authed("only-b", "/b", ["b"]), authed("only-a", "/a", ["a"])]
        gw, up, client = start(procs, [sa.provider("a", "https://a.test"), sb.provider("b", "https://b.test")],
                               routes=routes)
        ta, tb = tok(a1, iss="https://a.test"), tok(b1, iss="https://b.test")
        assert_ok(client.call("/any/x", ta, route="any"))
        assert_ok(client.call("/any/x", tb, route="any"))
        # Claims issuer A, signed with B's key under B's kid: A's key set has no B1.
        forged = tok(b1, iss="https://a.test")
        assert_invalid_token(client.call("/any/x", forged, route="any"), ("unknown_kid", "wrong_issuer"))
        assert_invalid_token(client.call("/a/x", forged, route="only-a"), ("unknown_kid", "wrong_issuer"))
        # Claims issuer A, A's kid, B's signature.
        forged2 = make_token(b1, std_claims(iss="https://a.test"), kid="A1")
        assert_invalid_token(client.call("/any/x", forged2, route="any"), "bad_signature", "bad signature")
        # A route restricted to provider b refuses A's perfectly valid tokens (and cached ones).
        assert_invalid_token(client.call("/b/x", ta, route="only-b"), "wrong_issuer")
        assert_ok(client.call("/b/x", tb, route="only-b"))
        assert_invalid_token(client.call("/a/x", tb, route="only-a"), "wrong_issuer")
        # Nothing about B1 was ever asked of A's JWKS server beyond its own schedule.
        assert sb.counts[sb.DISCOVERY_PATH] == 0
