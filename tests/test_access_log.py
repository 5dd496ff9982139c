"""Access log: one JSON line per request; tokens never logged (conf/README.md §3.9 "Error responses"
last sentence; project addition `access_log: {enabled, path}`)."""

import json

import pytest

from support.harness import base_config, http_get_raw, route, upstream_cfg, wait_for

SECRET = "secret.token.value"
# The brief's `access_token=abc`, with a value distinctive enough that a hex request id or a
# timestamp cannot contain it by chance.
QUERY_SECRET = "abcQv7Zq-access"


def _lines(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _find(entries, rid):
    return [e for e in entries if rid in json.dumps(e)]


def _key(entry, *fragments, exact=()):
    """The value of the first key containing one of `fragments` (names are not in the contract)."""
    for k, v in entry.items():
        if any(f in k.lower() for f in fragments) or k.lower() in exact:
            return v
    return None


@pytest.fixture(scope="module")
def env(mod_procs):
    up = mod_procs.upstream("LOG")
    cfg = base_config({"u": upstream_cfg(up)},
                      [route("logged", "/r", "u"), route("ro", "/ro", "u", methods=["GET"])],
                      access_log={"enabled": True, "path": "access.log"})
    gw = mod_procs.gateway(cfg)
    return gw, up, gw.dir / "access.log"


def test_one_json_line_per_request(env):
    gw, up, log = env
    rid = "log-line-0001"
    r = gw.raw(http_get_raw("/r/./x//y?z=1", headers=[("X-Request-Id", rid)]))
    assert r.status == 200
    entries = wait_for(lambda: _find(_lines(log), rid), 5, what="access log line")
    assert len(entries) == 1, entries
    e = entries[0]
    text = json.dumps(e)
    assert _key(e, "time", exact=("ts", "@timestamp")) is not None, e
    assert "127.0.0.1" in [str(v) for v in e.values()], e
    assert "GET" in e.values(), e
    assert "/r/x/y" in [str(v) for v in e.values()] or "/r/x/y?z=1" in [str(v) for v in e.values()], e
    assert "logged" in e.values(), e
    assert 200 in e.values() or "200" in e.values(), e
    assert up.addr in text, e
    assert isinstance(_key(e, "duration", "latency", "elapsed"), (int, float)), e
    assert isinstance(_key(e, "bytes"), (int, float)), e


def test_every_request_logged_including_errors(env):
    gw, _, log = env
    rids = [f"log-many-{i}" for i in range(4)]
    targets = ["/r/a", "/nope", "/r/%2f", "/r/b"]
    for rid, t in zip(rids, targets):
        gw.raw(http_get_raw(t, headers=[("X-Request-Id", rid)]))
    for rid in rids:
        got = wait_for(lambda: _find(_lines(log), rid), 5, what=f"log line for {rid}")
        assert len(got) == 1, got
    nope = _find(_lines(log), "log-many-1")[0]
    assert 404 in nope.values() or "404" in nope.values(), nope


def test_requests_not_proxied_name_no_peer(env):
    """A request the gateway answered itself must not name an upstream peer in its log line."""
    gw, up, log = env
    cases = [("/nope", "GET", "log-nopeer-404"), ("/ro/x", "POST", "log-nopeer-405"),
             ("/r/%2f", "GET", "log-nopeer-400")]
    for target, method, rid in cases:
        resp = gw.raw(http_get_raw(target, method=method, headers=[("X-Request-Id", rid)]))
        assert resp.status in (400, 404, 405), resp.status
    for _, _, rid in cases:
        entry = wait_for(lambda: _find(_lines(log), rid), 5, what=f"log line for {rid}")[0]
        assert up.addr not in json.dumps(entry), entry


def test_tokens_never_logged(env):
    gw, _, log = env
    rid = "log-secret-1"
    gw.get(f"/r/s?access_token={QUERY_SECRET}&x=1",
           headers={"Authorization": f"Bearer {SECRET}", "X-Request-Id": rid})
    gw.get(f"/nope?access_token={QUERY_SECRET}", headers={"Authorization": f"Bearer {SECRET}"})
    gw.raw(http_get_raw(f"/r/%2f?access_token={QUERY_SECRET}",
                        headers=[("Authorization", f"Bearer {SECRET}")]))
    wait_for(lambda: _find(_lines(log), rid), 5, what="access log line")
    for f in gw.dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert SECRET.encode() not in data, f"token in {f}"
            assert QUERY_SECRET.encode() not in data, f"access_token value in {f}"


def test_access_log_to_stdout(procs):
    up = procs.upstream("LOG-OUT")
    cfg = base_config({"u": upstream_cfg(up)}, [route("logged", "/r", "u")],
                      access_log={"enabled": True, "path": None})
    gw = procs.gateway(cfg)
    rid = "stdout-line-1"
    gw.get(f"/r/x?access_token={QUERY_SECRET}",
           headers={"X-Request-Id": rid, "Authorization": f"Bearer {SECRET}"})
    entries = wait_for(lambda: _find(_lines(gw.stdout), rid), 5, what="access log on stdout")
    assert len(entries) == 1
    out = gw.stdout.read_bytes() + gw.stderr.read_bytes()
    assert SECRET.encode() not in out and QUERY_SECRET.encode() not in out
