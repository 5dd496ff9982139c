"""A real `redis-server` for the multi-instance suite (conf/README.md §7), on a free loopback port
in its own directory, plus the few commands the tests need (sent with redis-cli, so the tests
speak to Redis the way an operator would).

`appendonly=True` keeps the data across `stop()` / `start()`, as a production Redis would with
`appendonly yes`; without it the server keeps nothing on disk (`--save ''`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .harness import _terminate, free_port, port_open, wait_for


def redis_server_bin() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server not found (make test installs it with apt-get)")
    return path


class RedisServer:
    def __init__(self, workdir: Path, appendonly: bool = False, port: int | None = None,
                 password: str | None = None, tls=None):
        self.password = password
        self.tls = tls  # a harness TlsFiles: serve TLS only, with its certificate
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                     "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "no"]
        else:
            ports = ["--port", str(self.port)]
        args = [redis_server_bin(), *ports, "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log"),
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--enable-debug-command", "local"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: port_open(self.port) and self.cli("PING") == "PONG", 10,
                 what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _terminate(self.proc, grace=5.0)

    def cli(self, *args: str) -> str:
        auth = ["--no-auth-warning", "-a", self.password] if self.password is not None else []
        if self.tls is not None:
            auth += ["--tls", "--cacert", str(self.tls.ca)]
        out = subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def commandstats(self) -> dict[str, int]:
        """`INFO commandstats` as {command: calls}."""
        stats = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                fields = dict(kv.split("=", 1) for kv in rest.split(","))
                stats[name] = int(fields["calls"])
        return stats
