"""Fixtures for the Portcullis integration suite.

`procs` (per test) and `mod_procs` (per module) start upstreams and gateways and always stop them,
even when a test fails, so no process outlives the run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.harness import Gateway, TlsFiles, Upstream, free_port, make_tls, validate  # noqa: E402


class Procs:
    """Owns every process a test (or module) starts."""

    def __init__(self, workdir: Path, tls: TlsFiles):
        self.dir = Path(workdir)
        self.tls = tls
        self.upstreams: list[Upstream] = []
        self.gateways: list[Gateway] = []
        self._n = 0

    def upstream(self, name: str, start: bool = True, port: int | None = None) -> Upstream:
        up = Upstream(name, self.dir, port=port)
        self.upstreams.append(up)
        return up.start() if start else up

    def gateway(self, config: dict, start: bool = True, env: dict | None = None) -> Gateway:
        self._n += 1
        gw = Gateway(config, self.dir / f"gw{self._n}", tls=self.tls, env=env)
        self.gateways.append(gw)
        return gw.start() if start else gw

    def validate(self, config) -> tuple[int, str]:
        self._n += 1
        return validate(config, self.dir / f"check{self._n}")

    @staticmethod
    def dead_addr() -> str:
        """A loopback address with nothing listening."""
        return f"127.0.0.1:{free_port()}"

    def close(self) -> None:
        # SIGTERM every gateway first so their graceful shutdowns overlap, then reap each one.
        for gw in self.gateways:
            try:
                if gw.alive():
                    gw.proc.send_signal(signal.SIGTERM)
            except Exception:  # noqa: BLE001 - teardown must reach every process
                pass
        for gw in self.gateways:
            try:
                if gw.proc is not None:
                    try:
                        gw.proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        gw.proc.kill()
                        gw.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        for up in self.upstreams:
            try:
                up.stop()
            except Exception:  # noqa: BLE001
                pass


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def procs(tmp_path, tls_files):
    p = Procs(tmp_path, tls_files)
    yield p
    p.close()


@pytest.fixture(scope="module")
def mod_procs(tmp_path_factory, tls_files, request):
    p = Procs(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), tls_files)
    yield p
    p.close()
