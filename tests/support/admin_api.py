"""Shared pieces of the admin / revocation / reload / upgrade suites (conf/README.md §4, §5).

- `Admin`: the admin API of one gateway, with its bearer token.
- `file_provider` / `write_jwks`: a provider whose JWKS is a local file (`jwks: {file: ...}`), the
  simplest real key source: the gateway reads exactly the public keys the test's own signing keys
  export.
- `metric_value`: one Prometheus sample, 0 when the series does not exist yet.
- `run_k6`: runs a script from load-tests/ with the k6 binary `load-tests/k6.sh` finds and returns
  its exit code, output and `--summary-export` document.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from .harness import REPO_DIR, Gateway, metric, wait_for, with_overrides
from .jwt import SigningKey, jwks

ADMIN_TOKEN = "admin-0123456789abcdef-ZYXW"
K6 = REPO_DIR / "load-tests" / "k6.sh"


class Admin:
    """`Authorization: Bearer <token>` requests to the admin listener of `gw`."""

    def __init__(self, gw: Gateway, token: str | None = ADMIN_TOKEN):
        self.gw = gw
        self.token = token

    def headers(self, extra: dict | None = None) -> dict:
        h = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw["headers"] = self.headers(kw.get("headers"))
        return requests.request(method, self.gw.url("admin", path), **kw)

    def revoke(self, body: Any) -> requests.Response:
        return self.request("POST", "/admin/revocations", json=body)

    def revoke_ok(self, body: Any) -> dict:
        r = self.revoke(body)
        assert r.status_code == 201, f"POST /admin/revocations {body!r}: {r.status_code} {r.text}"
        return r.json()

    def unrevoke(self, body: Any) -> requests.Response:
        return self.request("DELETE", "/admin/revocations", json=body)

    def revocations(self) -> dict:
        r = self.request("GET", "/admin/revocations")
        assert r.status_code == 200, f"GET /admin/revocations: {r.status_code} {r.text}"
        return r.json()

    def reload(self) -> requests.Response:
        return self.request("POST", "/admin/reload")

    def status(self) -> dict:
        r = self.request("GET", "/admin/status")
        assert r.status_code == 200, f"GET /admin/status: {r.status_code} {r.text}"
        return r.json()


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    """Writes the public JWKS of `keys` atomically (the gateway may be watching the file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jwks(*keys)))
    os.replace(tmp, path)
    return path


def file_provider(name: str, issuer: str, jwks_path: Path, **overrides) -> dict:
    """A conf/README.md §2 provider entry reading its keys from `jwks_path`; `overrides` replace or
    add provider keys (None removes one)."""
    p: dict[str, Any] = {"name": name, "issuer": issuer, "audiences": ["api"],
                         "algorithms": ["ES256"], "jwks": {"file": str(jwks_path)},
                         "leeway": "30s"}
    return with_overrides(p, overrides)


def wait_ready(gw: Gateway, timeout: float = 10.0) -> None:
    """Until /readyz answers 200 (every provider holds its keys)."""
    wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200,
             timeout, what="/readyz 200 (every provider has keys)")


def metric_value(gw: Gateway, name: str, **labels) -> float:
    v = metric(gw.metrics(), name, **labels)
    return 0.0 if v is None else v


def write_config_atomically(gw: Gateway, config: dict) -> None:
    """Replaces the gateway's config file in one rename, so a reload never reads half a file.

    `gw.config` (which the harness uses for listener addresses) is left as it was started: a
    reload cannot move a listener."""
    tmp = gw.path.with_name(gw.path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, gw.path)


class K6Result:
    def __init__(self, returncode: int, output: str, summary: dict | None, elapsed: float):
        self.returncode = returncode
        self.output = output
        self.summary = summary or {}
        self.elapsed = elapsed

    def count(self, metric_name: str) -> float:
        m = self.summary.get("metrics", {}).get(metric_name, {})
        return float(m.get("count", 0))

    def tail(self, n: int = 60) -> str:
        return "k6 output (tail):\n" + "\n".join(self.output.splitlines()[-n:])


def start_k6(script: str, env: dict, workdir: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Starts `load-tests/k6.sh run <script>` in the background; returns (process, output file,
    summary file). Pair with `finish_k6`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / (Path(script).stem + ".k6.out")
    summary_path = workdir / (Path(script).stem + ".k6.summary.json")
    full_env = dict(os.environ)
    full_env.update({k: str(v) for k, v in env.items()})
    out = open(out_path, "wb")
    proc = subprocess.Popen(
        [str(K6), "run", "--quiet", "--no-color", "--no-usage-report",
         "--summary-export", str(summary_path), str(REPO_DIR / "load-tests" / script)],
        cwd=str(REPO_DIR), env=full_env, stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    out.close()
    proc._k6_started = time.monotonic()  # type: ignore[attr-defined]
    return proc, out_path, summary_path


def finish_k6(proc: subprocess.Popen, out_path: Path, summary_path: Path,
              timeout: float) -> K6Result:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    elapsed = time.monotonic() - proc._k6_started  # type: ignore[attr-defined]
    summary = None
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            summary = None
    return K6Result(proc.returncode, out_path.read_text(errors="replace"), summary, elapsed)
