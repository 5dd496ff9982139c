#!/usr/bin/env python3
"""Mints many distinct ES256 tokens for load-tests/soak.js, one per line, with the demo IdP's
key (what `portcullis token` does for one token, fast enough for a hundred thousand).

    load-tests/mint-tokens.py --key demo-run/idp/idp-1.pem --iss https://idp.demo.local \\
        --aud api --scope users:read --count 20000 --ttl 7200 --out /tmp/tokens.txt

Each token has its own `sub` (soak-<n>) and `jti`, so each is a separate token-cache entry.
Needs the `cryptography` package (tests/requirements.txt).
"""

import argparse
import base64
import json
import os
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--key", required=True, help="PEM EC P-256 private key")
    ap.add_argument("--kid", help="default: the key file name without extension")
    ap.add_argument("--iss", required=True)
    ap.add_argument("--aud", required=True)
    ap.add_argument("--scope", default="")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--ttl", type=int, default=3600, help="seconds")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    key = serialization.load_pem_private_key(Path(a.key).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SystemExit(f"{a.key}: not an EC P-256 key")
    kid = a.kid or Path(a.key).stem
    header = b64u(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}, separators=(",", ":")).encode())
    now = int(time.time())
    tmp = f"{a.out}.tmp"
    with open(tmp, "w", encoding="ascii") as out:
        for i in range(a.count):
            claims = {"iss": a.iss, "aud": a.aud, "sub": f"soak-{i}", "iat": now, "exp": now + a.ttl,
                      "jti": uuid.uuid4().hex}
            if a.scope:
                claims["scope"] = a.scope
            signing_input = f"{header}.{b64u(json.dumps(claims, separators=(',', ':')).encode())}"
            r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            out.write(f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
