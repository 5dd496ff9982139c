"""The demo's WebSocket peer and client (conf/README.md §8).

    ws_echo.py serve --listen 127.0.0.1:7003
        a WebSocket server that answers each message with `echo:<message> (subject: <X-Auth-Subject>)`,
        so the demo shows both the frames and the identity the gateway passed on;
    ws_echo.py call --url wss://localhost:8443/chat --ca demo-run/tls/ca.crt --token "$TOKEN" [MESSAGE ...]
        opens a WebSocket through the gateway with the token, sends each message and prints the
        answers; a refused handshake prints its HTTP status and exits 1.
"""

from __future__ import annotations

import argparse
import ssl
import sys

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve


def serve_forever(listen: str) -> int:
    host, port = listen.rsplit(":", 1)

    def echo(ws: ServerConnection) -> None:
        subject = ws.request.headers.get("X-Auth-Subject", "-") if ws.request else "-"
        for message in ws:
            ws.send(f"echo:{message} (subject: {subject})")

    with serve(echo, host, int(port)) as server:
        print(f"ws_echo: listening on {listen}", flush=True)
        server.serve_forever()
    return 0


def call(url: str, ca: str | None, token: str | None, messages: list[str]) -> int:
    context = None
    if url.startswith("wss://"):
        context = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with connect(url, ssl=context, additional_headers=headers, open_timeout=5) as ws:
            for message in messages or ["hello"]:
                ws.send(message)
                print(ws.recv(timeout=5))
    except InvalidStatus as refused:
        print(f"handshake refused: HTTP {refused.response.status_code}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", required=True)
    c = sub.add_parser("call")
    c.add_argument("--url", required=True)
    c.add_argument("--ca")
    c.add_argument("--token")
    c.add_argument("messages", nargs="*")
    args = parser.parse_args()
    if args.mode == "serve":
        return serve_forever(args.listen)
    return call(args.url, args.ca, args.token, args.messages)


if __name__ == "__main__":
    sys.exit(main())
