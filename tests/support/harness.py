"""Process harness for Portcullis integration tests.

Starts the real gateway binary and real upstream processes on loopback ports, and offers raw-socket
HTTP, Prometheus parsing and throwaway TLS material. Nothing here is a mock: every assertion in the
suite is about bytes that crossed a real socket.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import requests

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = TESTS_DIR.parent
ECHO = TESTS_DIR / "support" / "echo_upstream.py"


def with_overrides(base: dict, overrides: dict) -> dict:
    """`base` with each of `overrides` set, where a value of None removes the key instead.
    Changes `base` in place and returns it."""
    for k, v in overrides.items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return base


def gateway_bin() -> str:
    return os.environ.get("PORTCULLIS_BIN", str(REPO_DIR / "target" / "release" / "portcullis"))


def _spawn(args: list, **kw) -> subprocess.Popen:
    """Popen that rides out a rebuild replacing the binary (missing file / ETXTBSY for a moment)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return subprocess.Popen(args, **kw)
        except OSError as e:
            if time.monotonic() > deadline or e.errno not in (errno.ENOENT, errno.ETXTBSY):
                raise
            time.sleep(0.5)


def free_port() -> int:
    """A loopback port that was free a moment ago (the gateway cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Polls `pred` until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except GatewayDied:
            raise
        except Exception as e:  # noqa: BLE001 - polling tolerates transient errors
            last_exc = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}" +
                               (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# Upstream (echo) processes


class Upstream:
    """One `echo_upstream.py` process on a fixed loopback port (kept across restarts)."""

    def __init__(self, name: str, workdir: Path, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.record = Path(workdir) / f"upstream-{name}-{self.port}.jsonl"
        self.log = Path(workdir) / f"upstream-{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Upstream":
        if self.proc and self.proc.poll() is None:
            return self
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ECHO), "--listen", self.addr, "--name", self.name,
             "--record", str(self.record)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"upstream {self.name} exited: {self.log.read_text()}")
            return port_open(self.port)

        wait_for(ready, timeout, what=f"upstream {self.name} on {self.addr}")
        return self

    def stop(self) -> None:
        if self.proc:
            _terminate(self.proc)

    def kill(self) -> None:
        """SIGKILL: the port stops accepting at once, like a crashed service."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        wait_for(lambda: not port_open(self.port), 5, what=f"{self.addr} closed")

    def restart(self) -> "Upstream":
        self.kill()
        return self.start()

    # What this upstream received (one dict per request, see echo_upstream.py).
    def requests(self, include_health: bool = False) -> list[dict]:
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            if include_health or not d.get("health"):
                out.append(d)
        return out

    def count(self) -> int:
        return len(self.requests())

    def since(self, mark: int) -> list[dict]:
        return self.requests()[mark:]


# --------------------------------------------------------------------------------------------
# TLS material


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> TlsFiles:
    """Throwaway CA and a server certificate for localhost/127.0.0.1 (and test host names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portcullis test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", "example.com", "api.example.com", "*.example.com", "internal.svc"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.crt", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    os.chmod(files.key, 0o600)
    return files


# --------------------------------------------------------------------------------------------
# Config helpers (keys exactly as conf/README.md §2)


def upstream_cfg(*peers, health: dict | None = None, **extra) -> dict:
    """`peers` are Upstream objects, "host:port" strings or (peer, weight) tuples.

    Health checking defaults to `kind: none` so a test that is not about health is not timing
    dependent; health tests pass their own `health`."""
    plist = []
    for p in peers:
        weight = None
        if isinstance(p, tuple):
            p, weight = p
        addr = p.addr if isinstance(p, Upstream) else str(p)
        entry: dict[str, Any] = {"addr": addr}
        if weight is not None:
            entry["weight"] = weight
        plist.append(entry)
    cfg: dict[str, Any] = {"peers": plist, "health_check": health or {"kind": "none"}}
    cfg.update(extra)
    return cfg


FAST_HEALTH = {"kind": "http", "path": "/healthz", "interval": "200ms", "timeout": "200ms",
               "healthy_threshold": 1, "unhealthy_threshold": 2}


def route(name: str, prefix: str, upstream: str, *, host: str | None = None,
          methods: list[str] | None = None, **extra) -> dict:
    match: dict[str, Any] = {"path_prefix": prefix}
    if host is not None:
        match["host"] = host
    if methods is not None:
        match["methods"] = methods
    r: dict[str, Any] = {"name": name, "match": match, "upstream": upstream,
                         "auth": {"mode": "none"}}
    r.update(extra)
    return r


def base_config(upstreams: dict, routes: list, listeners: Iterable[str] = ("http",), **top) -> dict:
    """A gateway config; listener addresses are filled in by `Gateway` (free ports).

    `https_redirect` defaults to enabled in the contract, so plain-HTTP tests switch it off here
    unless they pass their own."""
    cfg: dict[str, Any] = {
        "listeners": {name: {} for name in listeners},
        "https_redirect": {"enabled": False},
        "upstreams": upstreams,
        "routes": routes,
    }
    cfg.update(top)
    return cfg


# --------------------------------------------------------------------------------------------
# The gateway process


class Gateway:
    """`portcullis -c <dir>/portcullis.yaml` with per-instance ports, pid file and upgrade socket.

    Listener entries without `addr` get a free loopback port; `https` entries without `cert`/`key`
    get the session's throwaway certificate; an `admin` listener is always added (readiness)."""

    def __init__(self, config: dict, workdir: Path, tls: TlsFiles | None = None,
                 env: dict | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.env = env
        cfg = json.loads(json.dumps(config))  # deep copy
        server = cfg.setdefault("server", {})
        server.setdefault("threads", 1)
        server.setdefault("pid_file", str(self.dir / "portcullis.pid"))
        server.setdefault("upgrade_sock", str(self.dir / "upgrade.sock"))
        server.setdefault("grace_period_seconds", 0)
        server.setdefault("graceful_shutdown_timeout_seconds", 1)
        listeners = cfg.setdefault("listeners", {})
        listeners.setdefault("admin", {})
        for name, lst in listeners.items():
            if lst is None:
                lst = listeners[name] = {}
            lst.setdefault("addr", f"127.0.0.1:{free_port()}")
            if name == "https" and tls is not None:
                lst.setdefault("cert", str(tls.cert))
                lst.setdefault("key", str(tls.key))
        self.config = cfg
        self.path = self.dir / "portcullis.yaml"
        self.write_config()
        self.stdout = self.dir / "gateway.stdout"
        self.stderr = self.dir / "gateway.stderr"
        self.proc: subprocess.Popen | None = None
        self._session = requests.Session()

    def write_config(self) -> None:
        """(Re)writes `self.config` to the config file; JSON is valid YAML."""
        self.path.write_text(json.dumps(self.config, indent=2))

    # ---- lifecycle

    def start(self, timeout: float = 20.0) -> "Gateway":
        binary = gateway_bin()
        try:  # a rebuild replaces the file; give it a moment before calling it missing
            wait_for(lambda: os.path.exists(binary), 5, interval=0.2, what="gateway binary")
        except TimeoutError:
            raise RuntimeError(f"gateway binary not found: {binary} (build it, or set PORTCULLIS_BIN)") from None
        env = dict(os.environ)
        env.pop("PORTCULLIS_ADMIN_TOKEN", None)
        env.setdefault("RUST_LOG", "info")
        if self.env:
            env.update(self.env)
        out = open(self.stdout, "ab")
        err = open(self.stderr, "ab")
        self.proc = _spawn([binary, "-c", str(self.path)], cwd=self.dir, env=env,
                           stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()

        def ready():
            if self.proc.poll() is not None:
                raise GatewayDied(self)
            try:
                r = requests.get(self.url("admin", "/healthz"), timeout=0.5)
            except requests.RequestException:
                return False
            if r.status_code != 200:
                return False
            return all(port_open(self.port(n)) for n in self.config["listeners"])

        try:
            wait_for(ready, timeout, interval=0.05, what="gateway readiness (admin /healthz)")
        except GatewayDied:
            raise
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{self.logs_tail()}") from None
        return self

    def stop(self) -> None:
        self._session.close()
        if self.proc:
            _terminate(self.proc, grace=5.0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        parts = []
        for p in (self.stdout, self.stderr):
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)

    def logs_tail(self, n: int = 40) -> str:
        lines = self.logs().splitlines()
        return "gateway output (tail):\n" + "\n".join(lines[-n:])

    # ---- addresses

    def addr(self, listener: str) -> str:
        return self.config["listeners"][listener]["addr"]

    def port(self, listener: str) -> int:
        return int(self.addr(listener).rsplit(":", 1)[1])

    def url(self, listener: str, path: str = "/") -> str:
        scheme = "https" if listener == "https" else "http"
        return f"{scheme}://127.0.0.1:{self.port(listener)}{path}"

    # ---- clients

    def request(self, method: str, path: str, listener: str = "http", **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw.setdefault("allow_redirects", False)
        if listener == "https" and self.tls is not None:
            kw.setdefault("verify", str(self.tls.ca))
        return self._session.request(method, self.url(listener, path), **kw)

    def get(self, path: str, listener: str = "http", **kw) -> requests.Response:
        return self.request("GET", path, listener, **kw)

    def raw(self, data: bytes, listener: str = "http", **kw) -> "RawResponse":
        return raw_request(self.port(listener), data, tls=(listener == "https"),
                           ca=self.tls.ca if (self.tls and listener == "https") else None, **kw)

    def metrics(self) -> dict:
        r = requests.get(self.url("metrics", "/metrics"), timeout=5)
        r.raise_for_status()
        return parse_prometheus(r.text)


class GatewayDied(RuntimeError):
    def __init__(self, gw: Gateway):
        super().__init__(f"gateway exited with {gw.proc.returncode} during start-up\n{gw.logs_tail()}")


def validate(config: dict | str, workdir: Path, name: str = "check.yaml") -> tuple[int, str]:
    """`portcullis -t -c FILE`; returns (exit code, stdout+stderr)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    env = dict(os.environ)
    env.pop("PORTCULLIS_ADMIN_TOKEN", None)
    p = _spawn([gateway_bin(), "-t", "-c", str(path)], cwd=workdir, env=env,
               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return p.returncode, out.decode(errors="replace")


# --------------------------------------------------------------------------------------------
# Prometheus text format


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v: str) -> str:
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}.get(m.group(1), m.group(0)), v)


def parse_prometheus(text: str) -> dict:
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparseable metrics line: {line!r}")
        name, _, labels_txt, value = m.group(1), m.group(2), m.group(3), m.group(4)
        labels = {}
        if labels_txt:
            pos = 0
            while pos < len(labels_txt):
                lm = _LABEL.match(labels_txt, pos)
                if not lm:
                    raise ValueError(f"bad labels in {line!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(samples: dict, name: str, **labels) -> float | None:
    """The value of the sample with exactly these labels, or None."""
    return samples.get((name, frozenset({k: str(v) for k, v in labels.items()}.items())))


def metric_select(samples: dict, name: str, **labels) -> dict:
    """Samples of `name` whose labels include `labels` -> {frozenset(labels): value}."""
    want = {k: str(v) for k, v in labels.items()}
    out = {}
    for (n, ls), v in samples.items():
        if n != name:
            continue
        d = dict(ls)
        if all(d.get(k) == val for k, val in want.items()):
            out[ls] = v
    return out


# --------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over sockets (for requests that requests/urllib would refuse to send)


@dataclass
class RawResponse:
    status: int                       # 0: the connection closed without any response
    reason: str
    headers: list                     # [(name, value)] in received order
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        vals = self.headers_all(name)
        return vals[0] if vals else None

    def headers_all(self, name: str) -> list:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        return json.loads(self.body)


class RawConn:
    """One client connection; send arbitrary bytes, read responses one at a time."""

    def __init__(self, port: int, tls: bool = False, ca: Path | None = None,
                 server_hostname: str = "localhost", timeout: float = 5.0, alpn: list | None = None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
            if alpn:
                ctx.set_alpn_protocols(alpn)
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def closed_within(self, seconds: float) -> bool:
        """True if the peer closes (EOF/reset) within `seconds` (data received meanwhile is kept)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self._fill():
                    return True
            except (socket.timeout, TimeoutError):
                return False
            except OSError:
                return True
        return False

    def read_response(self, head_request: bool = False) -> RawResponse:
        start = len(self.buf)
        while True:
            while b"\r\n\r\n" not in self.buf:
                if not self._fill():
                    return RawResponse(0, "", [], self.buf, self.buf)
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
            if 100 <= status < 200 and status != 101:
                self.buf = rest  # interim response: read the next head
                continue
            break
        resp_headers = {k.lower(): v for k, v in headers}
        body = b""
        if head_request or status in (204, 304) or 100 <= status < 200:
            self.buf = rest
        elif "chunked" in resp_headers.get("transfer-encoding", "").lower():
            self.buf = rest
            body = self._read_chunked()
        elif "content-length" in resp_headers:
            n = int(resp_headers["content-length"])
            self.buf = rest
            while len(self.buf) < n and self._fill():
                pass
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            self.buf = rest
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return RawResponse(status, reason, headers, body, head + b"\r\n\r\n" + body)

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    return out
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + self.buf:
                    if not self._fill():
                        return out
                _, self.buf = (b"\r\n" + self.buf).split(b"\r\n\r\n", 1)
                return out
            while len(self.buf) < size + 2:
                if not self._fill():
                    return out + self.buf
            out += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_request(port: int, data: bytes, tls: bool = False, timeout: float = 5.0,
                ca: Path | None = None, head_request: bool | None = None) -> RawResponse:
    """Sends `data` as-is on a fresh connection and parses one response."""
    if head_request is None:
        head_request = data.startswith(b"HEAD ")
    with RawConn(port, tls=tls, ca=ca, timeout=timeout) as c:
        c.send(data)
        try:
            return c.read_response(head_request=head_request)
        except (socket.timeout, TimeoutError):
            return RawResponse(0, "timeout", [], c.buf, c.buf)


def http_get_raw(target: str | bytes, host: str = "example.com", method: str | bytes = "GET",
                 headers: Iterable[tuple] = (), body: bytes = b"", close: bool = True) -> bytes:
    """Builds a request head byte-for-byte (no normalisation of the target)."""
    t = target if isinstance(target, bytes) else target.encode("latin-1")
    m = method if isinstance(method, bytes) else method.encode()
    out = m + b" " + t + b" HTTP/1.1\r\n"
    if host is not None:
        out += b"Host: " + host.encode() + b"\r\n"
    for k, v in headers:
        kb = k if isinstance(k, bytes) else k.encode("latin-1")
        vb = v if isinstance(v, bytes) else v.encode("latin-1")
        out += kb + b": " + vb + b"\r\n"
    if body:
        out += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    if close:
        out += b"Connection: close\r\n"
    return out + b"\r\n" + body


def echo_headers(doc: dict, name: str) -> list:
    """Values of header `name` (case-insensitive) as the echo upstream received them."""
    n = name.lower()
    return [v for k, v in doc["headers"] if k.lower() == n]


def echo_header_names(doc: dict) -> list:
    return [k.lower() for k, _ in doc["headers"]]


def assert_json_error(status_code: int, headers, body: bytes | str, want_status: int, code: str):
    """The contract's error shape: JSON {error, error_description}, no-store."""
    assert status_code == want_status, f"status {status_code} != {want_status}; body={body!r}"
    get = headers.get if hasattr(headers, "get") else (lambda k: dict((a.lower(), b) for a, b in headers).get(k.lower()))
    ctype = get("Content-Type") or get("content-type") or ""
    assert ctype.split(";")[0].strip().lower() == "application/json", f"Content-Type {ctype!r}"
    cc = get("Cache-Control") or get("cache-control") or ""
    assert "no-store" in cc.lower(), f"Cache-Control {cc!r}"
    doc = json.loads(body)
    assert doc.get("error") == code, f"error code {doc!r} != {code}"
    assert isinstance(doc.get("error_description"), str), doc
