"""Upstream TLS (conf/README.md §2 `upstreams.*.tls`): SNI, certificate verification against the CA
in `server.ca_file`, and `verify: false`. The upstream is a real HTTPS server on loopback."""
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.harness import assert_json_error, base_config, free_port, route


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = json.dumps({"path": self.path, "sni": self.server.last_sni}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def https_upstream(tls_files):
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.last_sni = None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files.cert, tls_files.key)

    def remember_sni(_sock, name, _ctx):
        server.last_sni = name

    ctx.sni_callback = remember_sni
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    server.shutdown()


def _config(addr, tls, ca_file=None):
    cfg = base_config({"u": {"peers": [{"addr": addr}], "tls": tls, "health_check": {"kind": "none"},
                             "retries": 0}},
                      [route("tls", "/t", "u")])
    if ca_file:
        cfg["server"] = {"ca_file": str(ca_file)}
    return cfg


def test_verified_tls_with_sni(procs, https_upstream, tls_files):
    gw = procs.gateway(_config(https_upstream, {"enabled": True, "sni": "localhost", "verify": True},
                               ca_file=tls_files.ca))
    r = gw.get("/t/x")
    assert r.status_code == 200, r.text
    assert r.json() == {"path": "/t/x", "sni": "localhost"}


def test_untrusted_certificate_is_refused(procs, https_upstream):
    gw = procs.gateway(_config(https_upstream, {"enabled": True, "sni": "localhost", "verify": True}))
    r = gw.get("/t/x")
    assert_json_error(r.status_code, r.headers, r.content, 502, "bad_gateway")


def test_wrong_name_is_refused(procs, https_upstream, tls_files):
    gw = procs.gateway(_config(https_upstream, {"enabled": True, "sni": "billing.internal", "verify": True},
                               ca_file=tls_files.ca))
    r = gw.get("/t/x")
    assert_json_error(r.status_code, r.headers, r.content, 502, "bad_gateway")


def test_verify_false_accepts_any_certificate(procs, https_upstream):
    gw = procs.gateway(_config(https_upstream, {"enabled": True, "sni": "localhost", "verify": False}))
    r = gw.get("/t/x")
    assert r.status_code == 200, r.text
