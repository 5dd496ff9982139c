"""A small, deliberately permissive JWT builder for the auth tests.

Unlike a JWT library it will build anything: arbitrary header/payload *text* (duplicate members,
non-objects, BOMs), any `alg` string, any signature bytes, HMAC with any secret. That is what an
attacker can do, so that is what the tests need. Real signatures come from `cryptography`
(ES256/ES384 as raw r||s per RFC 7518 §3.4, RS*/PS* per §3.3/§3.5, EdDSA per RFC 8037), and
`SigningKey.jwk()` exports the public half as the JWK the gateway's JWKS will serve.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .harness import with_overrides

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES = {"P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}

# Curve orders, for hand-made ECDSA signatures (A4, A6).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
             "581A0DB248B0A77AECEC196ACCC52973", 16)


def b64u(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def js(obj: Any) -> str:
    """Compact JSON text (what IdPs send)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _int_b64(n: int, length: int | None = None) -> str:
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


class SigningKey:
    """A private key pinned to one JWS algorithm, with a kid."""

    def __init__(self, alg: str, kid: str, private=None, rsa_bits: int = 2048):
        self.alg = alg
        self.kid = kid
        if private is None:
            private = generate_private(alg, rsa_bits)
        self.private = private
        self.public = private.public_key()

    # ---- export

    def jwk(self, include_alg: bool = True, **overrides) -> dict:
        """Public JWK; `overrides` replace or add members, a value of None removes one."""
        pub = self.public
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            d = {"kty": "RSA", "n": _int_b64(nums.n), "e": _int_b64(nums.e)}
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
            size = _CURVES[crv][1]
            nums = pub.public_numbers()
            d = {"kty": "EC", "crv": crv, "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
        elif isinstance(pub, ed25519.Ed25519PublicKey):
            raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            d = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
        else:  # pragma: no cover
            raise TypeError(pub)
        d["kid"] = self.kid
        d["use"] = "sig"
        if include_alg:
            d["alg"] = self.alg
        return with_overrides(d, overrides)

    def public_pem(self, fmt: str = "spki") -> bytes:
        if fmt == "spki":
            return self.public.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        if fmt == "pkcs1":
            return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        if fmt == "der":
            return self.public.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        raise ValueError(fmt)

    # ---- signing

    def sign(self, signing_input: bytes, alg: str | None = None) -> bytes:
        """Signature of `signing_input` under `alg` (default: the key's own), even when `alg`
        does not fit the key (e.g. ES384 with a P-256 key, RS256 with a PS256-pinned key)."""
        return sign_with(self.private, alg or self.alg, signing_input)

    def token(self, claims: dict | None = None, **kw) -> str:
        return make_token(self, claims, **kw)


def generate_private(alg: str, rsa_bits: int = 2048):
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "ES512":
        return ec.generate_private_key(ec.SECP521R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for {alg}")


def sign_with(private, alg: str, data: bytes) -> bytes:
    if isinstance(private, (bytes, str)):  # HMAC secret
        secret = private.encode() if isinstance(private, str) else private
        return hmac.new(secret, data, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("HS"):
        raise ValueError("HS* needs a secret")
    if alg.startswith("RS"):
        return private.sign(data, padding.PKCS1v15(), _HASHES[alg[2:]]())
    if alg.startswith("PS"):
        h = _HASHES[alg[2:]]()
        return private.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    if alg.startswith("ES"):
        size = (private.curve.key_size + 7) // 8
        der = private.sign(data, ec.ECDSA(_HASHES[alg[2:]]()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return private.sign(data)
    raise ValueError(f"cannot sign {alg}")


def now() -> int:
    return int(time.time())


def std_claims(iss: str = "https://id.test", aud: Any = "api", sub: str = "alice",
               ttl: int = 600, **extra) -> dict:
    """A valid claim set; `extra` adds or replaces claims, a value of None removes one."""
    t = now()
    c = {"iss": iss, "sub": sub, "aud": aud, "iat": t, "exp": t + ttl, "jti": uuid.uuid4().hex}
    return with_overrides(c, extra)


def make_token(key: SigningKey | None, claims: dict | None = None, *,
               header: dict | None = None, header_extra: dict | None = None,
               header_raw: str | bytes | None = None, payload_raw: str | bytes | None = None,
               alg: str | None = None, kid: str | None | bool = True,
               secret: bytes | str | None = None, signature: bytes | None = None,
               sign_alg: str | None = None) -> str:
    """Compact JWS. Defaults give a valid token for `key`.

    header: the whole header dict (no defaults added); otherwise {"alg", "kid"} from the key plus
      `header_extra` (a None value removes a member). kid=False leaves kid out; a string replaces it.
    header_raw / payload_raw: exact JSON text (or bytes) to encode, for malformed JSON.
    secret: HMAC-sign with this secret (alg must be HS*).
    signature: use these bytes instead of signing. sign_alg: sign with this alg instead of `alg`.
    """
    if header_raw is not None:
        htxt = header_raw
    else:
        if header is None:
            header = {"alg": alg or (key.alg if key else "none")}
            if kid is True and key is not None:
                header["kid"] = key.kid
            elif isinstance(kid, str):
                header["kid"] = kid
            with_overrides(header, header_extra or {})
        htxt = js(header)
    if payload_raw is not None:
        ptxt = payload_raw
    else:
        ptxt = js(claims if claims is not None else std_claims())
    signing_input = (b64u(htxt) + "." + b64u(ptxt)).encode("ascii")
    if signature is None:
        if secret is not None:
            signature = sign_with(secret, alg or "HS256", signing_input)
        elif key is not None:
            signature = key.sign(signing_input, sign_alg or alg)
        else:
            signature = b""
    return signing_input.decode() + "." + b64u(signature)


def split(token: str) -> tuple[str, str, str]:
    h, p, s = token.split(".")
    return h, p, s


def jwks(*keys: SigningKey | dict) -> dict:
    return {"keys": [k.jwk() if isinstance(k, SigningKey) else k for k in keys]}


def ecdsa_high_s(token: str, order: int = P256_N) -> str:
    """The A6 twin: (r, n - s) is also a valid ECDSA signature of the same input."""
    h, p, s = split(token)
    sig = b64u_decode(s)
    half = len(sig) // 2
    r, sv = sig[:half], int.from_bytes(sig[half:], "big")
    return f"{h}.{p}.{b64u(r + (order - sv).to_bytes(half, 'big'))}"


def rsa_raw_sign(key: SigningKey, encoded_message: bytes) -> bytes:
    """Textbook RSA on an already padded message (for PKCS#1 v1.5 forgeries, A10)."""
    priv = key.private.private_numbers()
    n = priv.public_numbers.n
    k = (n.bit_length() + 7) // 8
    m = int.from_bytes(encoded_message.rjust(k, b"\x00"), "big")
    return pow(m, priv.d, n).to_bytes(k, "big")


SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def pkcs1_em(k: int, t: bytes, *, block_type: int = 1, ps_byte: int = 0xFF,
             sep: bytes = b"\x00") -> bytes:
    """EM = 0x00 || BT || PS || sep || T, PS filling up to k bytes; knobs to break each part."""
    prefix = b"\x00" + bytes([block_type])
    ps_len = k - len(prefix) - len(sep) - len(t)
    if ps_len < 0:
        raise ValueError("T too long")
    return prefix + bytes([ps_byte]) * ps_len + sep + t


def self_signed_cert_der(key: SigningKey) -> bytes:
    """A throwaway self-signed certificate for `key` (the K3 `x5c` header)."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    t = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public).serial_number(x509.random_serial_number())
            .not_valid_before(t - datetime.timedelta(hours=1))
            .not_valid_after(t + datetime.timedelta(days=1))
            .sign(key.private, None if key.alg == "EdDSA" else hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------------------------
# Driving the gateway and checking its auth answers (conf/README.md §3.4, §3.9, §5 metrics)

DECISIONS = "portcullis_auth_decisions_total"
REALM = 'Bearer realm="portcullis"'
INVALID_REQUEST = 'Bearer realm="portcullis", error="invalid_request"'


class Outcome:
    """One request through the gateway: the response, the auth-decision metric delta of its route
    ({result: increment}), and what the echo upstream received meanwhile."""

    def __init__(self, resp, delta: dict, forwarded: list, elapsed: float, token: str | None):
        self.resp = resp
        self.status = resp.status
        self.delta = delta
        self.forwarded = forwarded
        self.elapsed = elapsed
        self.token = token

    def header(self, name: str) -> str | None:
        return self.resp.header(name)

    def json(self) -> dict:
        return json.loads(self.resp.body)

    def __repr__(self) -> str:
        return (f"Outcome(status={self.status}, www-authenticate={self.header('WWW-Authenticate')!r}, "
                f"delta={self.delta}, forwarded={len(self.forwarded)}, body={self.resp.body[:300]!r})")


class AuthClient:
    """Sends requests over raw sockets (so duplicate headers, tabs and odd schemes go out as
    written) and measures the `portcullis_auth_decisions_total` delta of the route."""

    def __init__(self, gw, upstream):
        self.gw = gw
        self.upstream = upstream

    def decisions(self, route: str) -> dict:
        from .harness import metric_select
        out = {}
        for labels, v in metric_select(self.gw.metrics(), DECISIONS, route=route).items():
            out[dict(labels)["result"]] = v
        return out

    def call(self, path: str, token: str | None = None, *, route: str, headers=(),
             method: str = "GET", body: bytes = b"", scheme: str = "Bearer",
             timeout: float = 10.0) -> Outcome:
        from .harness import http_get_raw
        hdrs = list(headers)
        if token is not None:
            hdrs.insert(0, ("Authorization", f"{scheme} {token}"))
        before = self.decisions(route)
        mark = self.upstream.count()
        data = http_get_raw(path, host="example.com", method=method, headers=hdrs, body=body)
        t0 = time.monotonic()
        try:
            resp = self.gw.raw(data, timeout=timeout)
        except (ConnectionResetError, BrokenPipeError) as e:
            # The gateway closed while we were still sending (an oversize request).
            from .harness import RawResponse
            resp = RawResponse(0, f"connection closed while sending: {e!r}", [], b"", b"")
        elapsed = time.monotonic() - t0
        after = self.decisions(route)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        delta = {k: v for k, v in delta.items() if v}
        return Outcome(resp, delta, self.upstream.since(mark), elapsed, token)


def _json_error(o: Outcome, code: str) -> dict:
    ctype = (o.header("Content-Type") or "").split(";")[0].strip().lower()
    assert ctype == "application/json", f"Content-Type {ctype!r}: {o!r}"
    assert "no-store" in (o.header("Cache-Control") or "").lower(), f"Cache-Control: {o!r}"
    doc = o.json()
    assert doc.get("error") == code, f"error code {doc!r} != {code!r}"
    assert isinstance(doc.get("error_description"), str) and doc["error_description"], doc
    return doc


def assert_not_forwarded(o: Outcome) -> None:
    assert o.forwarded == [], f"upstream received {len(o.forwarded)} request(s) for a refused request: {o!r}"


def assert_no_token_echo(o: Outcome) -> None:
    if not o.token or len(o.token) < 12:
        return
    raw = o.resp.raw.decode("latin-1")
    for piece in [o.token] + [p for p in o.token.split(".") if len(p) >= 12]:
        assert piece not in raw, f"the response echoes the token (or a segment of it): {o!r}"


def assert_missing(o: Outcome) -> None:
    assert o.status == 401, o
    assert o.header("WWW-Authenticate") == REALM, o
    assert o.delta == {"missing": 1}, o
    assert_not_forwarded(o)


def assert_bad_request(o: Outcome, labels=("malformed",)) -> None:
    """400 invalid_request. `labels`: acceptable metric deltas; () means none is counted."""
    assert o.status == 400, o
    assert o.header("WWW-Authenticate") == INVALID_REQUEST, o
    _json_error(o, "invalid_request")
    if labels:
        assert len(o.delta) == 1 and next(iter(o.delta)) in labels and sum(o.delta.values()) == 1, o
    assert_not_forwarded(o)
    assert_no_token_echo(o)


def assert_invalid_token(o: Outcome, labels, desc: str | None = None) -> str:
    """401 invalid_token with a description naming the check; returns the description."""
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    assert o.status == 401, o
    www = o.header("WWW-Authenticate") or ""
    doc = _json_error(o, "invalid_token")
    d = doc["error_description"]
    assert www == f'{REALM}, error="invalid_token", error_description="{d}"', (www, o)
    if desc is not None:
        assert d == desc, f"description {d!r} != {desc!r}: {o!r}"
    assert len(o.delta) == 1 and sum(o.delta.values()) == 1, f"want one of {labels}: {o!r}"
    got = next(iter(o.delta))
    assert got in labels, f"result label {got!r} not in {labels}: {o!r}"
    assert_not_forwarded(o)
    assert_no_token_echo(o)
    return d


def assert_forbidden(o: Outcome, scope: str) -> None:
    assert o.status == 403, o
    assert o.header("WWW-Authenticate") == \
        f'{REALM}, error="insufficient_scope", scope="{scope}"', o
    _json_error(o, "insufficient_scope")
    assert o.delta == {"insufficient_scope": 1}, o
    assert_not_forwarded(o)


def assert_ok(o: Outcome, label: str = "ok") -> dict:
    """200 from the upstream; returns what the upstream received."""
    assert o.status == 200, o
    assert o.delta == {label: 1}, o
    assert len(o.forwarded) == 1, o
    return o.forwarded[0]
