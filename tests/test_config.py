"""`portcullis -t -c FILE` (conf/README.md §1, §2): exit 0 for a good file, exit 1 listing every
error with its key path; a config that fails validation never starts a gateway."""

import subprocess

import pytest

from support.harness import base_config, gateway_bin, route, upstream_cfg


def good_config(tls=None):
    cfg = base_config({"u": upstream_cfg("127.0.0.1:7001")}, [route("r", "/", "u")])
    cfg["listeners"]["http"] = {"addr": "127.0.0.1:18080"}
    return cfg


def test_good_file_exits_0(procs):
    code, out = procs.validate(good_config())
    assert code == 0, out


def test_minimal_file_with_defaults_exits_0(procs):
    text = (
        "listeners:\n  http: { addr: \"127.0.0.1:18080\" }\n"
        "upstreams:\n  u:\n    peers: [{ addr: \"127.0.0.1:7001\" }]\n"
        "routes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: u\n"
        "    auth: { mode: none }\n"
    )
    code, out = procs.validate(text)
    assert code == 0, out


def test_relative_paths_resolved_against_config_file(procs, tls_files):
    import shutil
    d = procs.dir / "rel"
    (d / "tls").mkdir(parents=True)
    shutil.copy(tls_files.cert, d / "tls" / "server.crt")
    shutil.copy(tls_files.key, d / "tls" / "server.key")
    cfg = good_config()
    cfg["listeners"]["https"] = {"addr": "127.0.0.1:18443", "cert": "tls/server.crt",
                                 "key": "tls/server.key"}
    (d / "portcullis.yaml").write_text(__import__("json").dumps(cfg))
    # Run from another directory: relative paths must follow the file, not the cwd.
    p = subprocess.run([gateway_bin(), "-t", "-c", str(d / "portcullis.yaml")], cwd="/",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout.decode()


def _expect_error(procs, cfg, *needles):
    code, out = procs.validate(cfg)
    assert code == 1, f"exit {code}, expected 1\n{out}"
    for n in needles:
        assert n in out, f"{n!r} not in output:\n{out}"
    return out


def test_unknown_upstream(procs):
    cfg = good_config()
    cfg["routes"][0]["upstream"] = "billing"
    _expect_error(procs, cfg, "routes[0].upstream", "billing")


def test_duplicate_route_names(procs):
    cfg = good_config()
    cfg["routes"].append(route("r", "/other", "u"))
    _expect_error(procs, cfg, "routes[1].name")


def test_bad_cidr_trusted_proxies(procs):
    cfg = good_config()
    cfg["trusted_proxies"] = ["10.0.0.0/33"]
    _expect_error(procs, cfg, "trusted_proxies[0]")


def test_bad_cidr_allow_cidrs(procs):
    cfg = good_config()
    cfg["routes"][0]["allow_cidrs"] = ["not-a-cidr"]
    _expect_error(procs, cfg, "routes[0].allow_cidrs[0]")


def test_missing_cert_file(procs):
    cfg = good_config()
    cfg["listeners"]["https"] = {"addr": "127.0.0.1:18443", "cert": "tls/missing.crt",
                                 "key": "tls/missing.key"}
    _expect_error(procs, cfg, "listeners.https.cert")


def test_bad_duration(procs):
    cfg = good_config()
    cfg["upstreams"]["u"]["timeouts"] = {"read": "30 parsecs"}
    _expect_error(procs, cfg, "upstreams.u.timeouts.read")


def test_unknown_key(procs):
    cfg = good_config()
    cfg["routes"][0]["matchh"] = cfg["routes"][0].pop("match")
    _expect_error(procs, cfg, "routes[0].matchh")


def test_unknown_top_level_key(procs):
    cfg = good_config()
    cfg["listners"] = {}
    _expect_error(procs, cfg, "listners")


def test_bad_enum_value(procs):
    cfg = good_config()
    cfg["upstreams"]["u"]["balance"] = "fastest"
    _expect_error(procs, cfg, "upstreams.u.balance")


def test_auth_required_without_provider(procs):
    cfg = good_config()
    del cfg["routes"][0]["auth"]          # default mode: required
    _expect_error(procs, cfg, "routes[0].auth")


def test_no_public_listener(procs):
    cfg = good_config()
    cfg["listeners"] = {"admin": {"addr": "127.0.0.1:19901"}}
    _expect_error(procs, cfg, "listeners")


def test_yaml_syntax_error(procs):
    code, out = procs.validate("listeners: { http: [unclosed\n")
    assert code == 1, out
    assert out.strip()


def test_all_errors_listed(procs):
    cfg = good_config()
    cfg["routes"][0]["upstream"] = "billing"
    cfg["trusted_proxies"] = ["300.1.1.1/8"]
    cfg["upstreams"]["u"]["timeouts"] = {"read": "soon"}
    cfg["routes"].append(route("r2", "/x", "u", allow_cidrs=["1.2.3.4/99"]))
    _expect_error(procs, cfg, "routes[0].upstream", "trusted_proxies[0]",
                  "upstreams.u.timeouts.read", "routes[1].allow_cidrs[0]")


def test_all_semantic_errors_listed(procs):
    """Same as above without a value that fails to parse: cross-reference errors all listed."""
    cfg = good_config()
    cfg["routes"][0]["upstream"] = "billing"
    cfg["trusted_proxies"] = ["300.1.1.1/8"]
    cfg["routes"].append(route("r", "/x", "u", allow_cidrs=["1.2.3.4/99"]))
    _expect_error(procs, cfg, "routes[0].upstream", "trusted_proxies[0]", "routes[1].name",
                  "routes[1].allow_cidrs[0]")


def test_invalid_config_never_starts(procs):
    cfg = good_config()
    cfg["routes"][0]["upstream"] = "billing"
    gw = procs.gateway(cfg, start=False)
    p = subprocess.Popen([gateway_bin(), "-c", str(gw.path)], cwd=gw.dir,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("gateway kept running with an invalid config")
    assert p.returncode != 0
    assert b"routes[0].upstream" in out, out
