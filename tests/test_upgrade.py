"""Graceful upgrade (conf/README.md §1 `-u`, "Signals and graceful upgrade").

`portcullis -u -c <same config>` is started while the old process runs; it waits on
`server.upgrade_sock` for the listening sockets. SIGQUIT to the old process hands them over; the
old one keeps serving for Pingora's 5 s close delay, drains for `grace_period_seconds` and exits.
Under constant load (load-tests/upgrade.js) not one request may fail, and the new process must
be in charge afterwards, with every acknowledged revocation in force.

Each test owns both processes and stops them however it ends (they are registered with the
`procs` fixture, which SIGTERMs and reaps every gateway).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import requests

from support.admin_api import (ADMIN_TOKEN, Admin, file_provider, finish_k6, start_k6, wait_ready,
                               write_jwks)
from support.harness import _spawn, base_config, gateway_bin, route, upstream_cfg, wait_for
from support.jwt import SigningKey, std_claims

CORP = "https://id.test"


class Spawned:
    """A gateway process started by hand (the `-u` one); duck-types what `Procs.close` uses."""

    def __init__(self, proc: subprocess.Popen, stdout: Path, stderr: Path):
        self.proc, self.stdout, self.stderr = proc, stdout, stderr

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs_tail(self, n: int = 40) -> str:
        text = "\n".join(p.read_text(errors="replace") for p in (self.stdout, self.stderr) if p.exists())
        return "new process output (tail):\n" + "\n".join(text.splitlines()[-n:])


class Env:
    def __init__(self, procs, gw, up, key):
        self.procs, self.gw, self.up, self.key = procs, gw, up, key
        self.admin = Admin(gw)

    def tok(self, **claims) -> str:
        claims.setdefault("iss", CORP)
        return self.key.token(std_claims(**claims))

    def get(self, token: str) -> requests.Response:
        # A fresh connection each time: the answer comes from whichever process accepts it.
        return requests.get(self.gw.url("http", "/api/x"), headers={"Authorization": f"Bearer {token}"},
                            timeout=10)

    def start_new(self) -> Spawned:
        """`portcullis -u -c <the same config file>`, registered for clean-up at once."""
        out, err = self.gw.dir / "upgraded.stdout", self.gw.dir / "upgraded.stderr"
        env = dict(os.environ)
        env.pop("PORTCULLIS_ADMIN_TOKEN", None)
        env.setdefault("RUST_LOG", "info")
        env.update(self.gw.env or {})
        with open(out, "ab") as o, open(err, "ab") as e:
            proc = _spawn([gateway_bin(), "-u", "-c", str(self.gw.path)], cwd=self.gw.dir, env=env,
                          stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        new = Spawned(proc, out, err)
        self.procs.gateways.append(new)
        return new

    def hand_over(self, new: Spawned) -> None:
        """Waits until the new process listens on the upgrade socket, then SIGQUITs the old one."""
        sock = Path(self.gw.config["server"]["upgrade_sock"])

        def listening():
            if not new.alive():
                raise AssertionError(f"the -u process exited with {new.proc.returncode}\n{new.logs_tail()}")
            return sock.exists() and stat.S_ISSOCK(sock.stat().st_mode)

        wait_for(listening, 10, interval=0.02, what=f"the new process to listen on {sock}")
        self.gw.proc.send_signal(signal.SIGQUIT)

    def wait_old_exit(self, timeout: float) -> int:
        try:
            return self.gw.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the old process did not exit within {timeout}s of SIGQUIT\n"
                                 f"{self.gw.logs_tail()}") from None


def start(procs, grace: int) -> Env:
    key = SigningKey("ES256", "es1")
    jwks_path = write_jwks(procs.dir / "jwks.json", key)
    up = procs.upstream("up")
    cfg = base_config({"svc": upstream_cfg(up)},
                      [route("api", "/api", "svc", auth={"mode": "required"})],
                      listeners=("http", "metrics"),
                      providers=[file_provider("corp", CORP, jwks_path)],
                      revocation={"store": "file", "path": str(procs.dir / "revocations.jsonl")},
                      admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"},
                      # Absolute per-test pid file and upgrade socket come from the harness.
                      server={"daemon": False, "grace_period_seconds": grace,
                              "graceful_shutdown_timeout_seconds": 2})
    gw = procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_ready(gw)
    return Env(procs, gw, up, key)


def test_graceful_upgrade_under_load(procs, tmp_path):
    e = start(procs, grace=2)
    tok = e.tok(ttl=600)
    revoked = e.tok(sub="revoked-before-upgrade")
    e.admin.revoke_ok({"token": revoked})
    old_pid = e.gw.proc.pid

    proc, out, summary = start_k6("upgrade.js", {
        "BASE_URL": e.gw.url("http", "").rstrip("/"), "REQ_PATH": "/api/upgrade", "TOKEN": tok,
        "RATE": 100, "DURATION": "12s",
    }, tmp_path)
    try:
        wait_for(lambda: e.up.count() > 5 or proc.poll() is not None, 20, what="k6 traffic to start")
        assert proc.poll() is None, out.read_text()
        new = e.start_new()
        e.hand_over(new)
        code = e.wait_old_exit(timeout=15)
        assert new.alive(), f"the new process died\n{new.logs_tail()}"
        # Only the new process is left: it serves the proxy and admin listeners.
        r = e.get(tok)
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{new.logs_tail()}"
        assert requests.get(e.gw.url("admin", "/healthz"), timeout=5).status_code == 200
        assert e.admin.status()["revocations"]["jti"] == 1
        r = e.get(revoked)
        assert r.status_code == 401 and "token revoked" in r.headers.get("WWW-Authenticate", ""), \
            (r.status_code, r.headers)
    finally:
        res = finish_k6(proc, out, summary, timeout=60)
    assert code == 0, f"the old process exited with {code}\n{e.gw.logs_tail()}"
    assert old_pid != new.proc.pid
    assert res.returncode == 0, f"k6 exited {res.returncode}\n{res.tail()}\n{e.gw.logs_tail()}\n{new.logs_tail()}"
    assert res.count("connection_errors") == 0, res.tail()
    sent = res.count("http_reqs")
    assert sent >= 0.8 * 100 * 12, f"k6 sent only {sent} requests\n{res.tail()}"


def test_revocation_acknowledged_during_the_hand_over_is_kept(procs):
    """A 201 means durable and in force (conf/README.md §4). Between the start of the `-u` process
    (which replays the revocation log) and the SIGQUIT, the old process still owns the admin
    listener; a revocation it acknowledges then must be in force in the new process and survive a
    restart."""
    e = start(procs, grace=0)
    tok = e.tok(sub="revoked-during-upgrade")
    assert e.get(tok).status_code == 200
    new = e.start_new()
    sock = Path(e.gw.config["server"]["upgrade_sock"])
    wait_for(lambda: sock.exists() or not new.alive(), 10, interval=0.02,
             what="the new process to reach the socket hand-over")
    assert new.alive(), new.logs_tail()
    e.admin.revoke_ok({"token": tok})            # answered by the old process
    assert e.get(tok).status_code == 401
    e.hand_over(new)
    e.wait_old_exit(timeout=15)
    in_force = e.get(tok)
    # And after a restart of the new process, from the log alone.
    new.proc.send_signal(signal.SIGTERM)
    new.proc.wait(timeout=10)
    e.gw.start()
    wait_ready(e.gw)
    after_restart = e.get(tok)
    assert (in_force.status_code, after_restart.status_code) == (401, 401), (
        f"revocation acknowledged (201) by the old process during the upgrade: new process answers "
        f"{in_force.status_code}, after a restart {after_restart.status_code}; "
        f"log now: {(procs.dir / 'revocations.jsonl').read_text()!r}")


def test_the_new_process_compacts_the_log_while_the_old_one_keeps_appending(procs):
    """The `-u` process compacts the revocation log at start, as any start does (conf/README.md
    §2), while the old process still answers admin requests: what the old one acknowledges after
    the compaction lands in the compacted log and is in force in the new process and after a
    restart."""
    e = start(procs, grace=0)
    log = procs.dir / "revocations.jsonl"
    lifted, kept, later = (e.tok(sub=s) for s in ("lifted", "kept", "revoked-after-compaction"))
    e.admin.revoke_ok({"token": lifted})
    assert e.admin.unrevoke({"token": lifted}).status_code == 204
    e.admin.revoke_ok({"token": kept})
    assert len(log.read_text().splitlines()) == 3
    inode = log.stat().st_ino

    new = e.start_new()
    sock = Path(e.gw.config["server"]["upgrade_sock"])
    wait_for(lambda: sock.exists() or not new.alive(), 10, interval=0.02,
             what="the new process to reach the socket hand-over")
    assert new.alive(), new.logs_tail()
    compacted = log.read_text().splitlines()
    assert (log.stat().st_ino != inode, len(compacted)) == (True, 1), compacted
    assert '"revoke_jti"' in compacted[0]

    e.admin.revoke_ok({"token": later})          # answered by the old process, after the rename
    assert len(log.read_text().splitlines()) == 2, log.read_text()
    e.hand_over(new)
    e.wait_old_exit(timeout=15)
    seen = [e.get(t).status_code for t in (lifted, kept, later)]
    new.proc.send_signal(signal.SIGTERM)
    new.proc.wait(timeout=10)
    e.gw.start()
    wait_ready(e.gw)
    after_restart = [e.get(t).status_code for t in (lifted, kept, later)]
    assert (seen, after_restart) == ([200, 401, 401], [200, 401, 401]), (
        f"(lifted, kept, revoked after the compaction): new process {seen}, after a restart "
        f"{after_restart}; log now: {log.read_text()!r}")
