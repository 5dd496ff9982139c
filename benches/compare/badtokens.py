"""Derive the malformed tokens of the correctness pass from valid ones (string surgery only).

    python3 badtokens.py OUT_DIR ES256_TOKEN_FILE RS256_TOKEN_FILE RS256_PUBLIC_PEM

Writes OUT_DIR/<case>.txt, one token each. Tokens that need a real signature over other
claims (expired, wrong iss/aud, unknown kid) are minted by `portcullis token` instead.
"""

import base64
import hashlib
import hmac
import json
import pathlib
import sys


def b64d(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def flip(part: str, index: int) -> str:
    """Change one base64url character, in the middle of the part, to another."""
    old = part[index]
    new = "A" if old != "A" else "B"
    return part[:index] + new + part[index + 1:]


def hs256(header: dict, payload: str, secret: bytes) -> str:
    signing_input = b64e(json.dumps(header).encode()) + "." + payload
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64e(mac)


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    es = pathlib.Path(sys.argv[2]).read_text().split()[0]
    rs = pathlib.Path(sys.argv[3]).read_text().split()[0]
    rs_public_pem = pathlib.Path(sys.argv[4]).read_bytes()
    out.mkdir(parents=True, exist_ok=True)

    head, payload, sig = es.split(".")
    claims = json.loads(b64d(payload))
    claims["sub"] = "mallory"
    header = json.loads(b64d(head))
    rs_head, rs_payload, rs_sig = rs.split(".")

    cases = {
        # same header and signature, other claims
        "tampered-payload": f"{head}.{b64e(json.dumps(claims).encode())}.{sig}",
        "tampered-signature-es256": f"{head}.{payload}.{flip(sig, len(sig) // 2)}",
        "tampered-signature-rs256": f"{rs_head}.{rs_payload}.{flip(rs_sig, len(rs_sig) // 2)}",
        "truncated": es[:-12],
        "garbage": "not-a-jwt",
        "three-garbage-parts": "abc.def.ghi",
        # unsigned: alg none, empty signature
        "alg-none": ".".join(
            [b64e(json.dumps({**header, "alg": "none"}).encode()), payload, ""]
        ),
        # algorithm confusion: HS256 keyed with the RSA public key as a shared secret
        "alg-confusion-hs256": hs256(
            {**json.loads(b64d(rs_head)), "alg": "HS256"}, rs_payload, rs_public_pem
        ),
    }
    for name, token in cases.items():
        (out / f"{name}.txt").write_text(token + "\n")


if __name__ == "__main__":
    main()
