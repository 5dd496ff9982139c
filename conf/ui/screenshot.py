#!/usr/bin/env python3
"""Regenerates conf/ui/status-page.png, the README's picture of the status page (conf/README.md §10).

    python3 conf/ui/screenshot.py [--out FILE] [--width 1280] [--dark]

Starts a stack of its own, like `make demo` but on free loopback ports and from a temporary
directory (so it runs next to a running demo): a copy of conf/portcullis.yaml, fresh demo
material from conf/demo/prepare.sh, the two echo peers and the WebSocket peer, and the gateway.
It then sends a little traffic (alice logs in at the built-in issuer and calls a few routes, a
few requests are refused, one token is revoked), opens the status page in headless Chromium
(/usr/bin/chromium + /usr/bin/chromedriver, Debian packages chromium and chromium-driver), signs
in with the admin token and saves a full-page PNG. Everything it started is stopped on exit.

PORTCULLIS_BIN overrides the binary (default target/release/portcullis; build it first).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.browser import start_chromium  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.2)
    raise SystemExit(f"screenshot: timed out waiting for {what}")


def demo_config(tmp: Path) -> tuple[dict, dict]:
    """conf/portcullis.yaml with every port moved to a free one; ../demo-run stays relative, so
    the copy in tmp/conf/ reads tmp/demo-run/. Returns (config, {name: port})."""
    cfg = yaml.safe_load((ROOT / "conf" / "portcullis.yaml").read_text())
    ports = {}
    for name, listener in cfg["listeners"].items():
        ports[name] = free_port()
        listener["addr"] = f"127.0.0.1:{ports[name]}"
    cfg["https_redirect"]["https_port"] = ports["https"]
    cfg["server"]["pid_file"] = str(tmp / "portcullis.pid")
    cfg["server"]["upgrade_sock"] = str(tmp / "upgrade.sock")
    cfg["access_log"] = {"enabled": False}
    for ups in cfg["upstreams"].values():
        for peer in ups["peers"]:
            port = free_port()
            ports[f"peer:{peer['addr']}"] = port
            peer["addr"] = f"127.0.0.1:{port}"
    return cfg, ports


def traffic(base: str, admin: str, token: str, ca: str) -> None:
    """What an operator would see after a few minutes of use."""
    class Client:  # verify= on each call: a session's own setting loses to REQUESTS_CA_BUNDLE
        def get(self, url, **kw):
            return requests.get(url, verify=ca, **kw)

        def post(self, url, **kw):
            return requests.post(url, verify=ca, **kw)

    s = Client()
    r = s.post(f"{base}/auth/token", data={"grant_type": "password", "username": "alice",
                                           "password": "alice-password"}, timeout=10)
    r.raise_for_status()
    alice = r.json()["access_token"]
    auth = {"Authorization": f"Bearer {alice}"}
    for i in range(12):
        s.get(f"{base}/users/{i}", headers=auth, timeout=10)
    for _ in range(5):
        s.get(f"{base}/public/hello", timeout=10)
    for _ in range(3):
        s.get(f"{base}/users/1", timeout=10)          # 401: no token
    s.get(f"{base}/reports/daily", headers=auth, timeout=10)  # 403: alice lacks reports:read
    bob = s.post(f"{base}/auth/token", data={"grant_type": "password", "username": "bob",
                                             "password": "bob-password"}, timeout=10).json()["access_token"]
    s.get(f"{base}/reports/daily", headers={"Authorization": f"Bearer {bob}"}, timeout=10)
    # Revoke bob's token (by its jti), and every token of one subject.
    h = {"Authorization": f"Bearer {token}"}
    requests.post(f"{admin}/admin/revocations", json={"token": bob}, headers=h, timeout=10).raise_for_status()
    requests.post(f"{admin}/admin/revocations", json={"iss": "https://idp.demo.local", "sub": "carol"},
                  headers=h, timeout=10).raise_for_status()
    # One accepted reload, so the overview has one to show.
    requests.post(f"{admin}/admin/reload", headers=h, timeout=10).raise_for_status()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "conf" / "ui" / "status-page.png"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--dark", action="store_true", help="emulate prefers-color-scheme: dark")
    args = ap.parse_args()

    binary = os.environ.get("PORTCULLIS_BIN", str(ROOT / "target" / "release" / "portcullis"))
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"screenshot: {binary} not found: run 'make build' first")
    procs: list[subprocess.Popen] = []
    driver = None
    with tempfile.TemporaryDirectory(prefix="portcullis-ui-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            run = tmp / "demo-run"
            subprocess.run([str(ROOT / "conf" / "demo" / "prepare.sh"), str(run)], check=True,
                           env={**os.environ, "PORTCULLIS_BIN": binary}, stdout=subprocess.DEVNULL)
            token = secrets.token_urlsafe(24)
            cfg, ports = demo_config(tmp)
            (tmp / "conf").mkdir()
            config = tmp / "conf" / "portcullis.yaml"
            config.write_text(json.dumps(cfg, indent=2))

            log = open(tmp / "stack.log", "wb")
            peers = cfg["upstreams"]["echo"]["peers"]
            for name, peer in zip(("peer-a", "peer-b"), peers):
                procs.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "tests" / "support" / "echo_upstream.py"),
                     "--listen", peer["addr"], "--name", name], stdout=log, stderr=log))
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "conf" / "demo" / "ws_echo.py"), "serve",
                 "--listen", cfg["upstreams"]["chat"]["peers"][0]["addr"]], stdout=log, stderr=log))
            procs.append(subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=log,
                                          env={**os.environ, "PORTCULLIS_ADMIN_TOKEN": token}))
            admin = f"http://127.0.0.1:{ports['admin']}"
            base = f"https://localhost:{ports['https']}"

            def healthy() -> bool:
                st = requests.get(f"{admin}/admin/status", timeout=1,
                                  headers={"Authorization": f"Bearer {token}"}).json()
                return all(p["healthy"] and p["last_check"] for ps in st["upstreams"].values() for p in ps)

            wait(lambda: requests.get(f"{admin}/readyz", timeout=1).status_code == 200, "the gateway")
            wait(healthy, "every peer healthy")
            traffic(base, admin, token, str(run / "tls" / "ca.crt"))

            driver = start_chromium(tmp / "chromium")
            # The exact width asked for (a headless window has a minimum size; the emulated
            # viewport does not), as a phone under 700 px.
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": args.width, "height": 900, "deviceScaleFactor": 1, "mobile": args.width < 700})
            if args.dark:
                driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
                    "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
            driver.get(f"{admin}/ui")
            driver.find_element("css selector", "#admin-token").send_keys(token)
            driver.find_element("css selector", "#login button[type=submit]").click()
            wait(lambda: driver.execute_script(
                "return !document.querySelector('#data').hidden &&"
                " document.querySelectorAll('#routes tbody tr').length > 0"), "the page's data")
            time.sleep(2.5)  # one more refresh: the ages read a few seconds
            height = driver.execute_script("return document.documentElement.scrollHeight")
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": args.width, "height": height, "scale": 1}})
            Path(args.out).write_bytes(base64.b64decode(shot["data"]))
            print(f"screenshot: wrote {args.out} ({args.width}x{height})")
        finally:
            if driver is not None:
                driver.quit()
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGINT if p is procs[-1] else signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
