"""Token revocation (conf/README.md §3.5, §4 `/admin/revocations`, §5 `portcullis_revocations`).

Real gateway, real echo upstream, keys from a real JWKS file, tokens minted here. A revocation
must be in force on the very next request after its 201 (cached tokens included), must survive a
`kill -9` (the file store fsyncs before answering), must not be dodged by re-encoding an ECDSA
signature, and must disappear once no token it covers can still be valid.

Providers of the shared gateway:
  corp   https://id.test     leeway 1s, no max_lifetime  (subject cut-offs kept until deleted)
  short  https://short.test  leeway 0s, max_lifetime 3s  (subject cut-offs expire quickly)
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, metric_value, wait_ready,
                               write_jwks)
from support.harness import base_config, route, upstream_cfg, wait_for
from support.jwt import (AuthClient, SigningKey, assert_invalid_token, assert_ok, b64u_decode,
                         ecdsa_high_s, now, std_claims)

CORP = "https://id.test"
SHORT = "https://short.test"
CORP_LEEWAY = 1
REVOKED = "token revoked"


def claims_of(token: str) -> dict:
    return json.loads(b64u_decode(token.split(".")[1]))


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Env:
    def __init__(self, gw, up, key, log_path: Path):
        self.gw, self.up, self.key = gw, up, key
        self.admin = Admin(gw)
        self.client = AuthClient(gw, up)
        self.log_path = log_path

    def tok(self, **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(**claims))

    def call(self, token: str):
        return self.client.call("/api/x", token, route="api")

    def assert_ok(self, token: str):
        return assert_ok(self.call(token))

    def assert_revoked(self, token: str):
        assert_invalid_token(self.call(token), "revoked", REVOKED)


def make_config(up, jwks_path: Path, revocation: dict | None) -> dict:
    providers = [
        file_provider("corp", CORP, jwks_path, leeway=f"{CORP_LEEWAY}s"),
        file_provider("short", SHORT, jwks_path, leeway="0s", max_lifetime="3s"),
    ]
    routes = [route("api", "/api", "echo", auth={"mode": "required"})]
    extra = {"revocation": revocation} if revocation is not None else {}
    return base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                       providers=providers, admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"}, **extra)


def start_env(procs, name: str, revocation: dict | None) -> Env:
    key = SigningKey("ES256", "es1")
    jwks_path = write_jwks(procs.dir / f"{name}-jwks.json", key)
    up = procs.upstream(name)
    log_path = procs.dir / f"{name}-revocations.jsonl"
    if revocation is not None and revocation.get("store") == "file" and "path" not in revocation:
        revocation = dict(revocation, path=str(log_path))
    gw = procs.gateway(make_config(up, jwks_path, revocation),
                       env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    return Env(gw, up, key, log_path)


@pytest.fixture(scope="module")
def env(mod_procs) -> Env:
    return start_env(mod_procs, "rev", {"store": "file"})


def revocation_gauge(gw, kind: str) -> float:
    return metric_value(gw, "portcullis_revocations", kind=kind)


# ---------------------------------------------------------------------------------------------
# 1. A revocation is in force on the very next request


def test_jti_revocation_refuses_the_token_on_the_next_request(env):
    t = env.tok(sub=uid("alice"))
    claims = claims_of(t)
    env.assert_ok(t)
    before = revocation_gauge(env.gw, "jti")
    answer = env.admin.revoke_ok({"token": t})
    assert answer == {"iss": CORP, "jti": claims["jti"], "expires_at": claims["exp"] + CORP_LEEWAY}, answer
    env.assert_revoked(t)
    env.assert_revoked(t)  # and stays refused
    assert revocation_gauge(env.gw, "jti") == before + 1
    listed = env.admin.revocations()
    assert {"iss": CORP, "jti": claims["jti"], "expires_at": claims["exp"] + CORP_LEEWAY} in listed["jti"]
    # Narrow: the same subject's other tokens are untouched.
    env.assert_ok(env.tok(sub=claims["sub"]))


def test_revocation_by_iss_jti_exp_body(env):
    jti = uid("jti")
    t = env.tok(sub=uid("bob"), jti=jti)
    env.assert_ok(t)
    exp = now() + 600
    answer = env.admin.revoke_ok({"iss": CORP, "jti": jti, "exp": exp})
    assert answer == {"iss": CORP, "jti": jti, "expires_at": exp + CORP_LEEWAY}, answer
    env.assert_revoked(t)
    # The same jti under another issuer is another token.
    other = env.key.token(std_claims(iss=SHORT, jti=jti, ttl=2))
    env.assert_ok(other)


def test_jti_revocation_without_exp_is_kept_until_deleted(env):
    jti = uid("noexp")
    answer = env.admin.revoke_ok({"iss": CORP, "jti": jti})
    assert answer == {"iss": CORP, "jti": jti, "expires_at": None}, answer
    assert {"iss": CORP, "jti": jti, "expires_at": None} in env.admin.revocations()["jti"]
    env.assert_revoked(env.tok(jti=jti))


def test_subject_cutoff_refuses_older_tokens_only(env):
    sub = uid("carol")
    t = now()
    before = t - 5
    old = env.tok(sub=sub, iat=before - 5)
    at_cutoff = env.tok(sub=sub, iat=before)        # iat < before is revoked; iat == before is not
    newer = env.tok(sub=sub, iat=before + 3)
    for tok in (old, at_cutoff, newer):
        env.assert_ok(tok)
    subjects_before = revocation_gauge(env.gw, "subject")
    answer = env.admin.revoke_ok({"iss": CORP, "sub": sub, "before": before})
    # corp has no max_lifetime, so the cut-off is kept until deleted.
    assert answer == {"iss": CORP, "sub": sub, "before": before, "expires_at": None}, answer
    env.assert_revoked(old)
    env.assert_ok(at_cutoff)
    env.assert_ok(newer)
    # A token issued after the cut-off (minted now, iat > before) passes.
    env.assert_ok(env.tok(sub=sub))
    # Other subjects, and the same subject name under another issuer, are untouched.
    env.assert_ok(env.tok(sub=uid("dave"), iat=before - 5))
    env.assert_ok(env.key.token(std_claims(iss=SHORT, sub=sub, ttl=2)))
    assert revocation_gauge(env.gw, "subject") == subjects_before + 1
    assert {"iss": CORP, "sub": sub, "before": before, "expires_at": None} in env.admin.revocations()["subjects"]


def test_subject_cutoff_before_defaults_to_now(env):
    sub = uid("erin")
    issued = env.tok(sub=sub, iat=now() - 2)
    env.assert_ok(issued)
    t0 = now()
    answer = env.admin.revoke_ok({"iss": CORP, "sub": sub})
    t1 = now()
    assert t0 <= answer["before"] <= t1, (t0, answer, t1)
    env.assert_revoked(issued)
    # Once the clock has passed the cut-off, a freshly minted token (iat >= before) passes.
    wait_for(lambda: now() >= answer["before"], 3, what="clock past the cut-off")
    env.assert_ok(env.tok(sub=sub, iat=max(now(), answer["before"])))


def test_token_without_jti_revokes_its_subject_up_to_its_iat(env):
    sub = uid("frank")
    iat = now() - 10
    t = env.tok(sub=sub, iat=iat, jti=None)
    env.assert_ok(t)
    answer = env.admin.revoke_ok({"token": t})
    assert answer["iss"] == CORP and answer["sub"] == sub and answer["before"] == iat + 1, answer
    env.assert_revoked(t)
    env.assert_revoked(env.tok(sub=sub, iat=iat, jti=None, exp=iat + 900))   # same iat: covered
    env.assert_ok(env.tok(sub=sub, iat=iat + 1))                           # issued later: not


def test_cached_token_is_refused_on_the_next_request(env):
    t = env.tok(sub=uid("gina"))
    hits0 = metric_value(env.gw, "portcullis_token_cache_requests_total", result="hit")
    env.assert_ok(t)
    env.assert_ok(t)
    hits1 = metric_value(env.gw, "portcullis_token_cache_requests_total", result="hit")
    assert hits1 >= hits0 + 1, f"the second request was not a cache hit ({hits0} -> {hits1})"
    env.admin.revoke_ok({"token": t})
    env.assert_revoked(t)


def test_cached_token_is_refused_after_a_subject_cutoff(env):
    sub = uid("hank")
    t = env.tok(sub=sub, iat=now() - 3)
    env.assert_ok(t)
    env.assert_ok(t)  # now cached
    env.admin.revoke_ok({"iss": CORP, "sub": sub, "before": now() - 1})
    env.assert_revoked(t)


def test_delete_lifts_a_revocation(env):
    sub = uid("ivan")
    t = env.tok(sub=sub, iat=now() - 3)
    env.admin.revoke_ok({"token": t})
    env.assert_revoked(t)
    r = env.admin.unrevoke({"token": t})
    assert r.status_code == 204, r.text
    assert r.content == b""
    env.assert_ok(t)
    jti = claims_of(t)["jti"]
    assert all(e["jti"] != jti for e in env.admin.revocations()["jti"])

    env.admin.revoke_ok({"iss": CORP, "sub": sub, "before": now()})
    env.assert_revoked(t)
    r = env.admin.unrevoke({"iss": CORP, "sub": sub, "before": now()})
    assert r.status_code == 204, r.text
    env.assert_ok(t)
    assert all(e["sub"] != sub for e in env.admin.revocations()["subjects"])


# ---------------------------------------------------------------------------------------------
# 2. ECDSA malleability: (r, n - s) is the same token to the revocation list


def test_high_s_twin_of_a_revoked_token_is_refused(env):
    original = env.tok(sub=uid("mallory"))
    twin = ecdsa_high_s(original)
    assert twin != original and twin.split(".")[:2] == original.split(".")[:2]
    # Before revocation the twin is simply another valid signature.
    env.assert_ok(twin)
    env.assert_ok(original)
    env.admin.revoke_ok({"token": original})
    env.assert_revoked(original)
    env.assert_revoked(twin)
    env.assert_revoked(ecdsa_high_s(twin))  # the low-S form again, i.e. the original


def test_revoking_the_twin_also_refuses_the_original(env):
    original = env.tok(sub=uid("trudy"))
    twin = ecdsa_high_s(original)
    env.assert_ok(original)   # cached as the original string
    env.admin.revoke_ok({"token": twin})
    env.assert_revoked(original)
    env.assert_revoked(twin)


# ---------------------------------------------------------------------------------------------
# 4. Entries go away once nothing they cover can still be valid


def test_entries_expire_and_the_gauges_drop(env):
    jti = uid("short-lived")
    sub = uid("short-sub")
    jti0 = revocation_gauge(env.gw, "jti")
    sub0 = revocation_gauge(env.gw, "subject")
    t = now()
    a = env.admin.revoke_ok({"iss": CORP, "jti": jti, "exp": t + 2})
    assert a["expires_at"] == t + 2 + CORP_LEEWAY, a
    # short: max_lifetime 3s, leeway 0s -> kept until before + 3.
    b = env.admin.revoke_ok({"iss": SHORT, "sub": sub, "before": t})
    assert b == {"iss": SHORT, "sub": sub, "before": t, "expires_at": t + 3}, b
    # An unknown issuer gets the default 30 s leeway.
    c = env.admin.revoke_ok({"iss": "https://unknown.test", "jti": uid("u"), "exp": t + 100})
    assert c["expires_at"] == t + 130, c

    assert revocation_gauge(env.gw, "jti") == jti0 + 2
    assert revocation_gauge(env.gw, "subject") == sub0 + 1
    listed = env.admin.revocations()
    assert any(e["jti"] == jti for e in listed["jti"])
    assert any(e["sub"] == sub for e in listed["subjects"])

    def gone():
        doc = env.admin.revocations()
        return (all(e["jti"] != jti for e in doc["jti"])
                and all(e["sub"] != sub for e in doc["subjects"]))

    wait_for(gone, 10, interval=0.2, what="expired entries to leave GET /admin/revocations")
    assert now() >= t + 3, "an entry was dropped before its expires_at"
    wait_for(lambda: revocation_gauge(env.gw, "jti") == jti0 + 1
             and revocation_gauge(env.gw, "subject") == sub0, 3, interval=0.1,
             what="portcullis_revocations to drop")
    st = env.admin.status()["revocations"]
    assert st == {"jti": jti0 + 1, "subject": sub0}, st


# ---------------------------------------------------------------------------------------------
# 3. Crash safety of the file store


def read_log(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def assert_clean_log(path: Path) -> list[dict]:
    data = read_log(path)
    assert data == b"" or data.endswith(b"\n"), f"log does not end with a newline: {data[-80:]!r}"
    return [json.loads(line) for line in data.decode().splitlines()]


def kill9(gw) -> None:
    gw.proc.kill()
    gw.proc.wait(timeout=5)


def restart(gw) -> None:
    gw.start()
    wait_ready(gw)


def test_revocations_survive_kill_9_and_a_torn_log(procs):
    e = start_env(procs, "crash", {"store": "file"})
    jti_tok = e.tok(sub=uid("crash-a"))
    sub_b = uid("crash-b")
    sub_tok = e.tok(sub=sub_b, iat=now() - 5)
    lifted = e.tok(sub=uid("crash-c"))
    e.admin.revoke_ok({"token": jti_tok})
    e.admin.revoke_ok({"iss": CORP, "sub": sub_b, "before": now() - 1})
    e.admin.revoke_ok({"token": lifted})
    assert e.admin.unrevoke({"token": lifted}).status_code == 204
    # Durable at 201: no clean shutdown needed.
    kill9(e.gw)
    restart(e.gw)
    e.assert_revoked(jti_tok)
    e.assert_revoked(sub_tok)
    e.assert_ok(lifted)
    # Compacted at start: exactly the two live entries, the revoke+delete pair is gone.
    assert len(assert_clean_log(e.log_path)) == 2, read_log(e.log_path)

    # A crash in the middle of an append leaves half a line without its newline.
    torn_tok = e.tok(sub=uid("crash-torn"))
    torn_jti = claims_of(torn_tok)["jti"]
    kill9(e.gw)
    torn_line = json.dumps({"op": "revoke_jti", "iss": CORP, "jti": torn_jti, "expires_at": None})
    torn = torn_line[: len(torn_line) // 2].encode()
    with open(e.log_path, "ab") as f:
        f.write(torn)
    restart(e.gw)
    e.assert_revoked(jti_tok)
    e.assert_revoked(sub_tok)
    e.assert_ok(torn_tok)  # never acknowledged, so never in force
    data = read_log(e.log_path)
    assert torn not in data, f"the torn bytes are still in the log: {data!r}"
    assert len(assert_clean_log(e.log_path)) == 2, data
    assert "line 3" in e.gw.logs(), "no warning naming the torn line:\n" + e.gw.logs_tail()

    # Appends after recovery land on whole lines and survive the next crash.
    later = e.tok(sub=uid("crash-d"))
    e.admin.revoke_ok({"token": later})
    kill9(e.gw)
    restart(e.gw)
    for tok in (jti_tok, sub_tok, later):
        e.assert_revoked(tok)
    assert len(assert_clean_log(e.log_path)) == 3


def test_a_bad_line_in_the_middle_is_skipped_with_its_line_number(procs):
    e = start_env(procs, "badline", {"store": "file"})
    first = e.tok(sub=uid("bad-a"))
    second = e.tok(sub=uid("bad-b"))
    e.admin.revoke_ok({"token": first})
    e.admin.revoke_ok({"token": second})
    kill9(e.gw)
    lines = read_log(e.log_path).splitlines(keepends=True)
    assert len(lines) == 2, lines
    secret = "eyJhbGciOiJFUzI1NiJ9.bad-line-canary.c2ln"
    garbage = f'{{"op":"revoke_jti","iss":{json.dumps(CORP)},"jti":12,"note":"{secret}"}}\n'.encode()
    e.log_path.write_bytes(lines[0] + garbage + b"not json at all\n" + lines[1])
    restart(e.gw)
    e.assert_revoked(first)
    e.assert_revoked(second)
    logs = e.gw.logs()
    assert "line 2" in logs and "line 3" in logs, "bad lines not reported by line number:\n" + e.gw.logs_tail()
    assert secret not in logs, "the content of a bad line was logged"
    assert len(assert_clean_log(e.log_path)) == 2, read_log(e.log_path)


def test_memory_store_keeps_nothing_across_restarts(procs):
    e = start_env(procs, "mem", {"store": "memory"})
    t = e.tok(sub=uid("mem"))
    e.admin.revoke_ok({"token": t})
    e.assert_revoked(t)
    e.gw.stop()
    restart(e.gw)
    e.assert_ok(t)
    assert e.admin.revocations() == {"jti": [], "subjects": []}


def test_default_store_is_a_file_next_to_the_config(procs):
    e = start_env(procs, "dflt", None)
    t = e.tok(sub=uid("dflt"))
    e.admin.revoke_ok({"token": t})
    log = e.gw.dir / "data" / "revocations.jsonl"
    assert log.exists(), sorted(str(p) for p in e.gw.dir.rglob("*"))
    jti = claims_of(t)["jti"]
    assert jti.encode() in log.read_bytes()
    kill9(e.gw)
    restart(e.gw)
    e.assert_revoked(t)
    assert os.stat(log).st_size > 0
