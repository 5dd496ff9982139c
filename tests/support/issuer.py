"""Pieces for the built-in issuer suite (conf/README.md §1 `keygen` / `hash-password`, §6).

- `hash_password` / `keygen`: the real CLI, as an operator would run it.
- `IssuerSite`: the files one issuer-enabled gateway reads (signing key, users.yaml, clients.yaml),
  written next to its config so the config can name them with relative paths.
- `post_form`: a form POST over `http.client`, optionally from another loopback source address
  (127.0.0.2, 127.0.0.3, ...), so a test can present a different TCP peer to the gateway.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .harness import Gateway, gateway_bin
from .jwt import b64u_decode

ISSUER = "https://gateway.local"
AUDIENCE = "api"


def run_cli(args: list, stdin: bytes = b"", cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PORTCULLIS_ADMIN_TOKEN", None)
    return subprocess.run([gateway_bin(), *args], input=stdin, capture_output=True, cwd=cwd,
                          env=env, timeout=timeout)


def hash_password(password: str) -> str:
    """`printf PASSWORD | portcullis hash-password` -> the PHC string."""
    p = run_cli(["hash-password"], stdin=password.encode())
    assert p.returncode == 0, f"hash-password exited {p.returncode}: {p.stderr!r}"
    return p.stdout.decode().strip()


def keygen(alg: str, kid: str, out: Path) -> Path:
    """`portcullis keygen --alg ALG --kid KID --out OUT` -> OUT/KID.pem."""
    p = run_cli(["keygen", "--alg", alg, "--kid", kid, "--out", str(out)])
    assert p.returncode == 0, f"keygen exited {p.returncode}: {p.stderr!r}"
    pem = Path(out) / f"{kid}.pem"
    assert pem.exists(), f"keygen did not write {pem}"
    return pem


def issuer_block(**overrides) -> dict:
    """The conf/README.md §6 `issuer:` block with relative paths; `overrides` replace keys."""
    block: dict[str, Any] = {
        "enabled": True,
        "path_prefix": "/auth",
        "issuer": ISSUER,
        "signing_key": "keys/dev-1.pem",
        "audience": AUDIENCE,
        "token_ttl": "15m",
        "users_file": "users.yaml",
        "clients_file": "clients.yaml",
        "max_failed_logins": 5,
    }
    block.update(overrides)
    return block


class IssuerSite:
    """The issuer's files in the (not yet started) gateway's directory."""

    def __init__(self, gw: Gateway, alg: str, kid: str):
        self.gw = gw
        self.dir = gw.dir
        self.alg = alg
        self.kid = kid
        self.key_path = keygen(alg, kid, self.dir / "keys")
        self.users: list[dict] = []
        self.clients: list[dict] = []

    def user(self, username: str, phc: str, scopes: list, disabled: bool = False) -> None:
        self.users.append({"username": username, "password_hash": phc, "scopes": scopes,
                           "disabled": disabled})

    def client(self, client_id: str, phc: str, scopes: list, disabled: bool = False) -> None:
        self.clients.append({"client_id": client_id, "secret_hash": phc, "scopes": scopes,
                             "disabled": disabled})

    def write(self) -> None:
        """Writes users.yaml and clients.yaml atomically (JSON is valid YAML)."""
        for name, doc in (("users.yaml", {"users": self.users}),
                          ("clients.yaml", {"clients": self.clients})):
            path = self.dir / name
            tmp = path.with_name(name + ".tmp")
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, path)

    def set_disabled(self, username: str, disabled: bool) -> None:
        for u in self.users:
            if u["username"] == username:
                u["disabled"] = disabled
        self.write()


class FormResponse:
    def __init__(self, status: int, headers: list, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"FormResponse({self.status}, {dict(self.headers)!r}, {self.body[:300]!r})"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def post_form(gw: Gateway, path: str, fields: dict | list | str | bytes | None = None, *,
              headers: dict | None = None, source_ip: str | None = None,
              content_type: str | None = "application/x-www-form-urlencoded",
              method: str = "POST", timeout: float = 10) -> FormResponse:
    """One request on a fresh connection; `source_ip` binds the client side of the socket."""
    if fields is None:
        body = b""
    elif isinstance(fields, bytes):
        body = fields
    elif isinstance(fields, str):
        body = fields.encode()
    else:
        body = urlencode(fields).encode()
    hdrs = {"Host": "gateway.local", "Connection": "close"}
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", gw.port("http"), timeout=timeout,
                                      source_address=(source_ip, 0) if source_ip else None)
    try:
        conn.request(method, path, body=body if method != "GET" else None, headers=hdrs)
        r = conn.getresponse()
        return FormResponse(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def jwt_parts(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWS, unverified."""
    h, p, _ = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p))
