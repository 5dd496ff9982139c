"""The JWT attack catalogue (conf/HARDENING.md §1.1-§1.5) against the running gateway.

One gateway and one real JWKS server serve the whole table. Every row is a token built here with
our own key material (tests/support/jwt.py) and sent through the http listener; each case asserts
the status, the `WWW-Authenticate` challenge, the JSON error, the
`portcullis_auth_decisions_total{route,result}` delta, and that the echo upstream received nothing
for a refused request (and exactly one request, without `Authorization`, for an accepted one).

Routes:  /api      -> provider corp    (https://id.test, leeway 30s, max_lifetime 24h)
         /nolimit  -> provider nolimit (no max_lifetime: C4 `exp:1e10`)
         /strict   -> provider strict  (require_jti, accepted_types [at+jwt]: H2)
         /scoped   -> corp, scopes [admin] (Z1);  /roles -> corp, roles claim `roles` any_of [admin] (Z2)
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import pytest
import requests

from support.harness import base_config, route, upstream_cfg, wait_for
from support.jwks_server import JwksServer
from support.jwt import (P256_N, P384_N, SHA256_DIGESTINFO, AuthClient, SigningKey, assert_bad_request,
                         assert_forbidden, assert_invalid_token, assert_missing, assert_not_forwarded,
                         assert_ok, b64u, b64u_decode, ecdsa_high_s, js, make_token, now, pkcs1_em,
                         rsa_raw_sign, self_signed_cert_der, split, std_claims)

ADMIN_TOKEN = "catalog-admin-token-0123456789"
CORP = "https://id.test"
STRICT = "https://strict.test"


class Ctx:
    """Key material shared by every case (generated once per module)."""

    def __init__(self):
        self.es1 = SigningKey("ES256", "es1")
        self.es384 = SigningKey("ES384", "es384")
        self.rs1 = SigningKey("RS256", "rs1")
        self.ps1 = SigningKey("PS256", "ps1")
        self.ed1 = SigningKey("EdDSA", "ed1")
        self.att = SigningKey("ES256", "att1")      # attacker, not in any JWKS
        self.b1 = SigningKey("ES256", "b1")         # the other issuer's key
        self.canary_url = ""

    def tok(self, key: SigningKey | None = None, claims: dict | None = None, **kw) -> str:
        return make_token(key or self.es1, claims if claims is not None else std_claims(), **kw)


@dataclass
class Req:
    """A request other than `Authorization: Bearer <token>` on the route."""
    token: str | None = None
    headers: list = field(default_factory=list)
    query: str = ""
    method: str = "GET"
    body: bytes = b""
    scheme: str = "Bearer"


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], object]       # -> token str, or Req
    expect: str                          # ok | invalid | missing | bad_request | forbidden | oversize
    labels: tuple = ("malformed",)
    desc: str | None = None
    route: str = "api"
    scope: str = ""                      # forbidden: the challenge's scope attribute
    max_seconds: float | None = None     # K4/K5: refused quickly


def ok(id, build, route="api"):
    return Case(id, build, "ok", ("ok",), route=route)


def bad(id, build, labels=("malformed",), desc=None, route="api", **kw):
    if isinstance(labels, str):
        labels = (labels,)
    return Case(id, build, "invalid", labels, desc, route, **kw)


# ---------------------------------------------------------------------------------------------
# Row builders


def with_sig(token: str, sig: bytes) -> str:
    h, p, _ = split(token)
    return f"{h}.{p}.{b64u(sig)}"


def hs_token(c: Ctx, secret, alg="HS256", kid="rs1") -> str:
    return make_token(None, std_claims(), alg=alg, kid=kid, secret=secret)


def em_token(c: Ctx, em_for: Callable[[bytes], bytes]) -> str:
    """RS256 token (kid rs1) whose signature is textbook RSA over a hand-made PKCS#1 block."""
    unsigned = make_token(c.rs1, std_claims(), signature=b"x")
    h, p, _ = split(unsigned)
    si = f"{h}.{p}".encode()
    return with_sig(unsigned, rsa_raw_sign(c.rs1, em_for(si)))


def digest_info(si: bytes) -> bytes:
    return SHA256_DIGESTINFO + hashlib.sha256(si).digest()


def noncanonical_last_char(segment: str) -> str | None:
    """Same bytes, but with unused trailing bits set in the last character (H4)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = {2: 4, 3: 2}.get(len(segment) % 4)
    if not spare:
        return None
    v = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[v | 1]


def with_dash_or_underscore(c: Ctx) -> str:
    for _ in range(200):
        t = c.tok()
        if "-" in t or "_" in t:
            return t
    raise AssertionError("no token with - or _ in 200 tries")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def cl(**kw) -> dict:
    return std_claims(**kw)


def claims_text(**kw) -> str:
    """Valid claims as JSON text without the closing brace, so a row can append raw members."""
    return js(std_claims(**kw))[:-1]


KID_INJECTIONS = ["../../../../dev/null", "/dev/null", "x' UNION SELECT '1';--", "|sleep 10",
                  "$(curl http://127.0.0.1:9/k4)", "`id`", "..\\..\\windows\\win.ini", "0",
                  "es1 ", "ES1", "es1\u00e9"]

# ---------------------------------------------------------------------------------------------
# The table

CASES: list[Case] = []

# Sanity rows: every key type verifies.
for _k in ["es1", "es384", "rs1", "ps1", "ed1"]:
    CASES.append(ok(f"control-{_k}", lambda c, k=_k: c.tok(getattr(c, k))))

# ---- §1.1 A1-A11: algorithm / signature
for _alg in ["none", "None", "NONE", "nOnE", "none "]:
    CASES += [
        bad(f"A1-{_alg.strip()}{'-sp' if _alg.endswith(' ') else ''}-empty-sig",
            lambda c, a=_alg: make_token(None, cl(), header={"alg": a, "kid": "es1"}, signature=b"")),
        bad(f"A1-{_alg.strip()}{'-sp' if _alg.endswith(' ') else ''}-two-segments",
            lambda c, a=_alg: make_token(None, cl(), header={"alg": a, "kid": "es1"}, signature=b"")[:-1]),
        bad(f"A1-{_alg.strip()}{'-sp' if _alg.endswith(' ') else ''}-junk-sig",
            lambda c, a=_alg: make_token(None, cl(), header={"alg": a, "kid": "es1"},
                                         signature=b"junk signature bytes")),
    ]
CASES += [
    bad("A1-none-no-kid", lambda c: make_token(None, cl(), header={"alg": "none"}, signature=b"junk")),
    bad("A1-none-valid-es256-sig", lambda c: c.tok(c.es1, header={"alg": "none", "kid": "es1"},
                                                   sign_alg="ES256")),
    bad("A2-alg-missing", lambda c: c.tok(header={"typ": "JWT", "kid": "es1"}, sign_alg="ES256")),
    bad("A2-alg-number", lambda c: c.tok(header={"alg": 123, "kid": "es1"}, sign_alg="ES256")),
    bad("A2-alg-null", lambda c: c.tok(header={"alg": None, "kid": "es1"}, sign_alg="ES256")),
    bad("A2-alg-array", lambda c: c.tok(header={"alg": ["ES256"], "kid": "es1"}, sign_alg="ES256")),
    bad("A2-alg-lowercase", lambda c: c.tok(header={"alg": "es256", "kid": "es1"}, sign_alg="ES256")),
]
for _fmt in ["spki", "pkcs1", "der", "jwk"]:
    for _nl in ["", "-no-newline"]:
        def _a3(c, fmt=_fmt, nl=_nl):
            secret = js(c.rs1.jwk()).encode() if fmt == "jwk" else c.rs1.public_pem(fmt)
            if nl and secret.endswith(b"\n"):
                secret = secret.rstrip(b"\n")
            elif not nl and fmt in ("der", "jwk"):
                secret += b"\n"
            return hs_token(c, secret)
        CASES.append(bad(f"A3-HS256-keyed-with-rs1-{_fmt}{_nl}", _a3, ("malformed", "bad_signature")))
CASES += [
    bad("A3-HS384-keyed-with-rs1-spki", lambda c: hs_token(c, c.rs1.public_pem(), "HS384"),
        ("malformed", "bad_signature")),
    bad("A3-HS512-keyed-with-es1-spki", lambda c: hs_token(c, c.es1.public_pem(), "HS512", "es1"),
        ("malformed", "bad_signature")),
]
_A4 = {
    "zeros": (0, 0), "r=s=n": (P256_N, P256_N), "r=0,s=1": (0, 1), "r=1,s=0": (1, 0),
    "r=s=n-1": (P256_N - 1, P256_N - 1), "r=n,s=1": (P256_N, 1), "r=s=n+1": (P256_N + 1, P256_N + 1),
    "r=s=1": (1, 1),
}
for _name, (_r, _s) in _A4.items():
    CASES.append(bad(f"A4-psychic-{_name}",
                     lambda c, r=_r, s=_s: with_sig(c.tok(), r.to_bytes(32, "big") + s.to_bytes(32, "big")),
                     "bad_signature"))
CASES += [
    bad("A4-psychic-es384-zeros", lambda c: with_sig(c.tok(c.es384), bytes(96)), "bad_signature"),
    bad("A4-psychic-es384-r=s=n", lambda c: with_sig(c.tok(c.es384), P384_N.to_bytes(48, "big") * 2),
        "bad_signature"),
    bad("A5-der-signature", lambda c: _der_token(c), ("bad_signature", "malformed")),
    bad("A5-65-bytes", lambda c: _resig(c, lambda s: s + b"\x00"), ("bad_signature", "malformed")),
    bad("A5-63-bytes", lambda c: _resig(c, lambda s: s[:-1]), ("bad_signature", "malformed")),
    bad("A5-128-bytes", lambda c: _resig(c, lambda s: s + s), ("bad_signature", "malformed")),
    bad("A5-trailing-zeros", lambda c: _resig(c, lambda s: s + bytes(32)), ("bad_signature", "malformed")),
    bad("A5-leading-zero", lambda c: _resig(c, lambda s: b"\x00" + s), ("bad_signature", "malformed")),
    ok("A6-high-s-twin-accepted", lambda c: ecdsa_high_s(c.tok())),
    bad("A7-ES384-header-P256-key", lambda c: c.tok(c.es1, alg="ES384"), "bad_signature"),
    bad("A7-ES256-header-P384-key", lambda c: c.tok(c.es384, alg="ES256"), "bad_signature"),
    bad("A7-ES256-kid-es1-signed-by-P384", lambda c: c.tok(c.es384, kid="es1", alg="ES256"), "bad_signature"),
    bad("A7-EdDSA-header-kid-es1", lambda c: c.tok(c.ed1, kid="es1"), ("bad_signature", "malformed")),
    bad("A8-h.p.", lambda c: ".".join(split(c.tok())[:2]) + "."),
    bad("A8-h.p", lambda c: ".".join(split(c.tok())[:2])),
    bad("A8-h..", lambda c: split(c.tok())[0] + ".."),
    bad("A8-.p.s", lambda c: "." + ".".join(split(c.tok())[1:])),
    bad("A8-payload-swapped", lambda c: _swap_payload(c), "bad_signature"),
    bad("A8-header-swapped", lambda c: _swap_header(c), "bad_signature"),
    bad("A8-signature-of-other-token", lambda c: with_sig(c.tok(), b64u_decode(split(c.tok(claims=cl(sub="x")))[2])),
        "bad_signature"),
    bad("A9-HS256-empty-secret", lambda c: hs_token(c, b"", kid="es1"), ("malformed", "bad_signature")),
    bad("A9-HS256-empty-secret-no-kid", lambda c: make_token(None, cl(), header={"alg": "HS256"}, secret=b""),
        ("malformed", "bad_signature")),
    ok("A10-control-textbook-pkcs1", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si)))),
    bad("A10-block-type-2", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si), block_type=2)),
        "bad_signature"),
    bad("A10-padding-zero-bytes", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si), ps_byte=0)),
        "bad_signature"),
    bad("A10-separator-01", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si), sep=b"\x01")),
        "bad_signature"),
    bad("A10-garbage-after-digest", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si) + b"\x00" * 8)),
        "bad_signature"),
    bad("A10-short-padding-garbage-tail",
        lambda c: em_token(c, lambda si: b"\x00\x01" + b"\xff" * 7 + b"\x00" + digest_info(si)
                           + b"\x41" * (256 - 10 - len(digest_info(si)))), "bad_signature"),
    bad("A10-sha1-oid-with-sha256-digest",
        lambda c: em_token(c, lambda si: pkcs1_em(256, bytes.fromhex("3021300906052b0e03021a05000414")[:-1]
                                                  + b"\x20" + hashlib.sha256(si).digest())), "bad_signature"),
    bad("A10-digest-length-byte-wrong",
        lambda c: em_token(c, lambda si: pkcs1_em(256, SHA256_DIGESTINFO[:-1] + b"\x21"
                                                  + hashlib.sha256(si).digest() + b"\x00")), "bad_signature"),
    bad("A10-digest-of-other-input", lambda c: em_token(c, lambda si: pkcs1_em(256, digest_info(si + b"x"))),
        "bad_signature"),
    bad("A10-bare-digest-no-digestinfo",
        lambda c: em_token(c, lambda si: pkcs1_em(256, hashlib.sha256(si).digest())), "bad_signature"),
    bad("A10-signature-zero", lambda c: with_sig(c.tok(c.rs1), bytes(256)), "bad_signature"),
    bad("A10-signature-one", lambda c: with_sig(c.tok(c.rs1), (1).to_bytes(256, "big")), "bad_signature"),
    bad("A10-signature-n", lambda c: with_sig(c.tok(c.rs1), c.rs1.public.public_numbers().n.to_bytes(256, "big")),
        ("bad_signature", "malformed")),
    bad("A10-signature-257-bytes", lambda c: _resig(c, lambda s: b"\x00" + s, c.rs1), ("bad_signature", "malformed")),
    bad("A11-RS256-on-PS256-pinned-key", lambda c: c.tok(c.ps1, alg="RS256"), "bad_signature"),
    bad("A11-PS256-on-RS256-pinned-key", lambda c: c.tok(c.rs1, alg="PS256"), "bad_signature"),
    bad("A11-PS384-on-PS256-pinned-key", lambda c: c.tok(c.ps1, alg="PS384"), ("bad_signature", "malformed")),
    bad("A11-PS512-on-PS256-pinned-key", lambda c: c.tok(c.ps1, alg="PS512"), ("bad_signature", "malformed")),
    bad("A11-RS512-on-RS256-pinned-key", lambda c: c.tok(c.rs1, alg="RS512"), ("bad_signature", "malformed")),
    bad("A11-RS384-on-RS256-pinned-key", lambda c: c.tok(c.rs1, alg="RS384"), ("bad_signature", "malformed")),
]


def _der_token(c: Ctx) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    t = c.tok()
    h, p, _ = split(t)
    der = c.es1.private.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    return with_sig(t, der)


def _resig(c: Ctx, f, key: SigningKey | None = None) -> str:
    t = c.tok(key or c.es1)
    return with_sig(t, f(b64u_decode(split(t)[2])))


def _swap_payload(c: Ctx) -> str:
    h, _, s = split(c.tok())
    return f"{h}.{b64u(js(cl(sub='admin', scope='admin')))}.{s}"


def _swap_header(c: Ctx) -> str:
    _, p, s = split(c.tok())
    return f"{b64u(js({'alg': 'ES256', 'kid': 'es1', 'typ': 'JWT'}))}.{p}.{s}"


# ---- §1.2 K1-K5, K7, K13: key injection / selection
CASES += [
    bad("K1-jwk-header-attacker-key-legit-kid",
        lambda c: c.tok(c.att, kid="es1", header_extra={"jwk": c.att.jwk()}), "bad_signature"),
    bad("K1-jwk-header-attacker-key-attacker-kid",
        lambda c: c.tok(c.att, header_extra={"jwk": c.att.jwk()}), "unknown_kid", "unknown key id"),
    bad("K1-jwk-header-no-kid", lambda c: c.tok(c.att, kid=False, header_extra={"jwk": c.att.jwk()})),
    bad("K1-jwk-header-attacker-key-under-rsa-kid",
        lambda c: c.tok(c.att, kid="rs1", header_extra={"jwk": c.att.jwk()}), ("bad_signature",)),
    bad("K3-x5c-self-signed-legit-kid",
        lambda c: c.tok(c.att, kid="es1",
                        header_extra={"x5c": [base64.b64encode(self_signed_cert_der(c.att)).decode()]}),
        "bad_signature"),
    bad("K3-x5c-self-signed-attacker-kid",
        lambda c: c.tok(c.att, header_extra={"x5c": [base64.b64encode(self_signed_cert_der(c.att)).decode()]}),
        "unknown_kid", "unknown key id"),
]
for _i, _kid in enumerate(KID_INJECTIONS):
    CASES.append(bad(f"K4-kid-{_i}-es256", lambda c, k=_kid: c.tok(c.es1, kid=k),
                     ("unknown_kid", "malformed"), max_seconds=2.0))
    CASES.append(bad(f"K4-kid-{_i}-hs256-empty", lambda c, k=_kid: hs_token(c, b"", kid=k),
                     ("malformed", "bad_signature", "unknown_kid"), max_seconds=2.0))
CASES += [
    bad("K4-kid-with-control-byte", lambda c: c.tok(c.es1, kid="es1\n"), ("malformed", "unknown_kid")),
    bad("K4-kid-hs256-secret-1", lambda c: hs_token(c, b"1", kid="/dev/null"), ("malformed", "bad_signature")),
    bad("K4-kid-number", lambda c: c.tok(c.es1, kid=False, header_extra={"kid": 1})),
    bad("K4-kid-empty", lambda c: c.tok(c.es1, kid="")),
    bad("K5-kid-300-chars", lambda c: c.tok(c.es1, kid="k" * 300), max_seconds=2.0),
    bad("K5-token-over-max-token-bytes", lambda c: c.tok(c.es1, kid="k" * 7000), max_seconds=2.0),
    Case("K5-kid-64KiB-header-cap", lambda c: c.tok(c.es1, kid="k" * 65536), "oversize", (), max_seconds=3.0),
    bad("K7-iss-corp-signed-by-other-issuer-key", lambda c: c.tok(c.b1), "unknown_kid", "unknown key id"),
    bad("K7-other-issuer-token-on-corp-route",
        lambda c: c.tok(c.b1, cl(iss="https://other.test")), ("wrong_issuer",)),
    bad("K13-no-kid", lambda c: c.tok(c.es1, kid=False)),
    bad("K13-no-kid-rsa", lambda c: c.tok(c.rs1, kid=False)),
]

# ---- §1.3 H1-H9: header and structure
CASES += [
    bad("H1-crit-unknown", lambda c: c.tok(header_extra={"crit": ["x-unknown"], "x-unknown": "v"})),
    bad("H1-crit-empty", lambda c: c.tok(header_extra={"crit": []})),
    bad("H1-crit-exp", lambda c: c.tok(header_extra={"crit": ["exp"], "exp": now() + 60})),
    bad("H1-crit-string", lambda c: c.tok(header_extra={"crit": "b64"})),
    bad("H2-typ-logout+jwt", lambda c: _strict(c, typ="logout+jwt"), route="strict"),
    bad("H2-typ-secevent+jwt", lambda c: _strict(c, typ="secevent+jwt"), route="strict"),
    bad("H2-typ-JWT-where-at+jwt-expected", lambda c: _strict(c, typ="JWT"), route="strict"),
    bad("H2-typ-missing", lambda c: _strict(c, typ=None), route="strict"),
    bad("H2-typ-number", lambda c: _strict(c, typ=1), route="strict"),
    ok("H2-typ-at+jwt", lambda c: _strict(c), route="strict"),
    ok("H2-typ-application/at+jwt", lambda c: _strict(c, typ="application/at+jwt"), route="strict"),
    ok("H2-typ-AT+JWT", lambda c: _strict(c, typ="AT+JWT"), route="strict"),
    bad("H2-id-token-aud-client-id", lambda c: c.tok(claims=cl(aud="client-123", nonce="n")), "wrong_audience"),
    Case("H3-empty", lambda c: Req(token=""), "missing", ("missing",)),
    bad("H3-dot", lambda c: "."),
    bad("H3-two-dots", lambda c: ".."),
    bad("H3-four-segments", lambda c: c.tok() + ".AAAA"),
    bad("H3-trailing-dot", lambda c: c.tok() + "."),
    bad("H3-truncated-signature", lambda c: c.tok()[:-4], ("malformed", "bad_signature")),
    bad("H3-extra-char", lambda c: c.tok() + "A", ("malformed", "bad_signature")),
    bad("H3-Zm9v", lambda c: "Zm9v"),
    bad("H3-one-segment-header-only", lambda c: split(c.tok())[0]),
    bad("H4-padding-header", lambda c: _pad(c.tok(), 0)),
    bad("H4-padding-payload", lambda c: _pad(c.tok(), 1)),
    bad("H4-padding-signature", lambda c: _pad(c.tok(), 2)),
    bad("H4-standard-alphabet", lambda c: with_dash_or_underscore(c).replace("-", "+").replace("_", "/")),
    Case("H4-space-inside", lambda c: Req(token=c.tok().replace(".", ". ", 1)), "bad_or_invalid", ("malformed",)),
    bad("H4-noncanonical-signature-bits", lambda c: _noncanon(c.tok(), 2)),
    bad("H4-noncanonical-header-bits", lambda c: _noncanon(_header_len_not_mult4(c), 0)),
    bad("H4-percent-encoded-dot", lambda c: c.tok().replace(".", "%2E", 1)),
    Case("H5-json-serialization", lambda c: Req(token=_json_serialization(c)), "bad_or_invalid", ("malformed",)),
    bad("H5-json-serialization-base64url", lambda c: b64u(_json_serialization(c))),
    bad("H6-header-dup-alg", lambda c: c.tok(header_raw='{"alg":"none","alg":"ES256","kid":"es1"}', sign_alg="ES256")),
    bad("H6-header-dup-alg-reversed",
        lambda c: c.tok(header_raw='{"alg":"ES256","alg":"none","kid":"es1"}', sign_alg="ES256")),
    bad("H6-header-dup-kid", lambda c: c.tok(header_raw='{"alg":"ES256","kid":"nope","kid":"es1"}')),
    bad("H6-payload-dup-exp-future-past",
        lambda c: c.tok(payload_raw=claims_text(exp=None) + f',"exp":{now() + 600},"exp":{now() - 600}}}')),
    bad("H6-payload-dup-exp-past-future",
        lambda c: c.tok(payload_raw=claims_text(exp=None) + f',"exp":{now() - 600},"exp":{now() + 600}}}')),
    bad("H6-payload-dup-sub", lambda c: c.tok(payload_raw=claims_text(sub=None) + ',"sub":"alice","sub":"admin"}')),
    bad("H6-payload-dup-role", lambda c: c.tok(payload_raw=claims_text() + ',"roles":"user","roles":"admin"}'),
        route="roles"),
    bad("H6-payload-dup-scope", lambda c: c.tok(payload_raw=claims_text() + ',"scope":"read","scope":"admin"}'),
        route="scoped"),
    bad("H6-payload-dup-iss", lambda c: c.tok(payload_raw=claims_text(iss=None) + f',"iss":"x","iss":"{CORP}"}}'),
        ("malformed", "wrong_issuer")),
    bad("H6-payload-dup-aud", lambda c: c.tok(payload_raw=claims_text(aud=None) + ',"aud":"api","aud":"api"}')),
    bad("H6-payload-dup-nested", lambda c: c.tok(
        payload_raw=claims_text() + ',"realm_access":{"roles":["user"],"roles":["admin"]}}')),
    bad("H6-payload-dup-escaped-key", lambda c: c.tok(payload_raw=claims_text(sub=None) + ',"sub":"alice","s\\u0075b":"admin"}')),
    bad("H7-payload-hello", lambda c: c.tok(payload_raw="hello")),
    bad("H7-payload-null", lambda c: c.tok(payload_raw="null")),
    bad("H7-payload-number", lambda c: c.tok(payload_raw="123")),
    bad("H7-payload-string", lambda c: c.tok(payload_raw='"' + js(cl()).replace('"', "'") + '"')),
    bad("H7-payload-trailing-garbage", lambda c: c.tok(payload_raw=js(cl()) + " x")),
    bad("H7-payload-two-objects", lambda c: c.tok(payload_raw=js(cl()) + js(cl()))),
    bad("H7-payload-utf8-bom", lambda c: c.tok(payload_raw=b"\xef\xbb\xbf" + js(cl()).encode())),
    bad("H7-payload-utf16", lambda c: c.tok(payload_raw=js(cl()).encode("utf-16"))),
    bad("H7-payload-array", lambda c: c.tok(payload_raw=js([now() + 600, now() - 10, "alice", CORP, "api"]))),
    bad("H7-payload-invalid-utf8", lambda c: c.tok(payload_raw=claims_text().encode() + b',"x":"\xff\xfe"}')),
    bad("H7-header-not-object", lambda c: c.tok(header_raw='["ES256","es1"]')),
    Case("H8-header-100k-nesting", lambda c: c.tok(header_raw='{"alg":"ES256","kid":"es1","x":' + nested(100000) + "}"),
         "oversize", (), max_seconds=3.0),
    bad("H8-header-nesting-2500-under-token-cap",
        lambda c: c.tok(header_raw='{"alg":"ES256","kid":"es1","x":' + nested(2500) + "}"), max_seconds=2.0),
    bad("H8-header-nesting-200", lambda c: c.tok(header_raw='{"alg":"ES256","kid":"es1","x":' + nested(200) + "}")),
    bad("H8-payload-nesting-200", lambda c: c.tok(payload_raw=claims_text() + ',"x":' + nested(200) + "}")),
    Case("H8-payload-1MiB", lambda c: c.tok(claims=cl(pad="p" * (1 << 20))), "oversize", (), max_seconds=5.0),
    bad("H9-jwe-five-segments", lambda c: ".".join([b64u(js({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "rs1"})),
                                                     b64u(b"k" * 256), b64u(b"iv" * 6), b64u(b"ct" * 20), b64u(b"t" * 16)])),
    bad("H9-cty-JWT-nested", lambda c: c.tok(header_extra={"cty": "JWT"}, payload_raw=json.dumps(c.tok()))),
    bad("H9-cty-JWT-object-payload", lambda c: c.tok(header_extra={"cty": "JWT"})),
    bad("H9-cty-application-jwt", lambda c: c.tok(header_extra={"cty": "application/JWT"})),
    bad("H9-zip-DEF", lambda c: c.tok(header_extra={"zip": "DEF"})),
    bad("H9-enc-in-jws", lambda c: c.tok(header_extra={"enc": "A256GCM"})),
    bad("H9-b64-false", lambda c: c.tok(header_extra={"b64": False, "crit": ["b64"]})),
    bad("H9-b64-false-no-crit", lambda c: c.tok(header_extra={"b64": False})),
]


def _strict(c: Ctx, typ="at+jwt", **claims) -> str:
    """A token for the `strict` provider (require_jti, accepted_types [at+jwt])."""
    return c.tok(claims=cl(iss=STRICT, **claims), header_extra={"typ": typ})


def _pad(token: str, idx: int) -> str:
    parts = list(split(token))
    parts[idx] += "=" * (-len(parts[idx]) % 4 or 2)
    return ".".join(parts)


def _noncanon(token: str, idx: int) -> str:
    parts = list(split(token))
    nc = noncanonical_last_char(parts[idx])
    assert nc is not None and nc != parts[idx], "segment has no spare bits"
    parts[idx] = nc
    return ".".join(parts)


def _header_len_not_mult4(c: Ctx) -> str:
    for n in range(1, 8):
        t = c.tok(header_extra={"x": "y" * n})
        if len(split(t)[0]) % 4 in (2, 3):
            return t
    raise AssertionError("unreachable")


def _json_serialization(c: Ctx) -> str:
    h, p, s = split(c.tok())
    return js({"payload": p, "signatures": [{"protected": h, "signature": s}]})


# ---- §1.4 C1-C23: claims / time
def _t(**kw):
    return lambda c: c.tok(claims=cl(**kw))


def _raw_exp(text: str, **kw):
    return lambda c: c.tok(payload_raw=claims_text(exp=None, **kw) + f',"exp":{text}}}')


def _exp_exponent(c: Ctx) -> str:
    e = (now() + 7200) // 1000 + 1
    return c.tok(payload_raw=claims_text(exp=None) + f',"exp":{e}e3}}')


CASES += [
    bad("C1-exp-missing", _t(exp=None)),
    bad("C2-exp-string", _t(exp="9999999999")),
    bad("C2-exp-string-near-future", lambda c: c.tok(claims=cl(exp=str(now() + 600)))),
    ok("C3-exp-float", lambda c: c.tok(payload_raw=claims_text(exp=None) + f',"exp":{now() + 600}.7}}')),
    ok("C4-exp-1e10-no-max-lifetime", lambda c: c.tok(payload_raw=claims_text(exp=None, iss="https://nolimit.test")
                                                     + ',"exp":1e10}'), route="nolimit"),
    ok("C4-exp-exponent-notation", _exp_exponent),
    bad("C5-exp-minus-1", _raw_exp("-1"), ("malformed", "expired")),
    bad("C5-exp-true", _raw_exp("true")),
    bad("C5-exp-null", _raw_exp("null")),
    bad("C5-exp-2^64", _raw_exp(str(2 ** 64))),
    bad("C5-exp-1e300", _raw_exp("1e300")),
    bad("C5-exp-NaN-text", _raw_exp("NaN")),
    bad("C5-exp-object", _raw_exp('{"t":1}')),
    bad("C6-exp-0", lambda c: c.tok(claims=cl(exp=0, iat=None)), ("expired",), "token expired"),
    bad("C6-exp-past", lambda c: c.tok(claims=cl(exp=now() - 3600, iat=now() - 4200)), "expired", "token expired"),
    bad("C7-exp-u64-max", _raw_exp("18446744073709551615")),
    bad("C7-exp-now+100y", lambda c: c.tok(claims=cl(exp=now() + 100 * 365 * 86400)), ("malformed",)),
    bad("C7-exp-now+100y-no-iat", lambda c: c.tok(claims=cl(exp=now() + 100 * 365 * 86400, iat=None))),
    bad("C7-exp-25h", lambda c: c.tok(claims=cl(exp=now() + 25 * 3600))),
    ok("C7-exp-23h-within-max-lifetime", lambda c: c.tok(claims=cl(exp=now() + 23 * 3600))),
    ok("C8-exp-20s-ago-inside-leeway", lambda c: c.tok(claims=cl(exp=now() - 20, iat=now() - 600))),
    bad("C9-exp-45s-ago-outside-leeway", lambda c: c.tok(claims=cl(exp=now() - 45, iat=now() - 600)),
        "expired", "token expired"),
    bad("C10-nbf-future", lambda c: c.tok(claims=cl(nbf=now() + 3600)), "not_yet_valid"),
    ok("C10-nbf-20s-future-inside-leeway", lambda c: c.tok(claims=cl(nbf=now() + 20))),
    bad("C11-nbf-string", lambda c: c.tok(claims=cl(nbf=str(now() + 3600)))),
    bad("C11-nbf-string-past", lambda c: c.tok(claims=cl(nbf=str(now() - 3600)))),
    bad("C12-nbf-minus-5", lambda c: c.tok(claims=cl(nbf=-5)), ("malformed", "not_yet_valid")),
    bad("C13-iat-far-future", lambda c: c.tok(claims=cl(iat=now() + 3600, exp=now() + 4000)), "not_yet_valid"),
    bad("C13-iat-string", lambda c: c.tok(claims=cl(iat="x"))),
    bad("C14-iss-wrong", _t(iss="https://evil.test"), "wrong_issuer"),
    bad("C14-iss-trailing-slash", _t(iss=CORP + "/"), "wrong_issuer"),
    bad("C14-iss-case", _t(iss="https://ID.test"), "wrong_issuer"),
    bad("C15-iss-missing", _t(iss=None), ("wrong_issuer", "malformed")),
    bad("C16-iss-array-with-ours", _t(iss=["https://evil/", CORP]), ("wrong_issuer", "malformed")),
    bad("C16-iss-array-only-ours", _t(iss=[CORP]), ("wrong_issuer", "malformed")),
    bad("C17-iss-number", _t(iss=123), ("wrong_issuer", "malformed")),
    bad("C17-iss-object", _t(iss={}), ("wrong_issuer", "malformed")),
    ok("C18-aud-array-containing-ours", _t(aud=["other", "api"])),
    bad("C19-aud-other-array", _t(aud=["other"]), "wrong_audience"),
    bad("C19-aud-empty-array", _t(aud=[]), "wrong_audience"),
    bad("C19-aud-case", _t(aud="API"), "wrong_audience"),
    bad("C19-aud-other-string", _t(aud="other"), "wrong_audience"),
    bad("C20-aud-missing", _t(aud=None), "wrong_audience"),
    bad("C21-aud-number", _t(aud=123), ("wrong_audience", "malformed")),
    bad("C21-aud-number-array", _t(aud=[123]), ("wrong_audience", "malformed")),
    bad("C21-aud-mixed-array", _t(aud=["api", 123]), ("wrong_audience", "malformed")),
    bad("C22-aud-other-with-default-audiences",
        lambda c: c.tok(claims=cl(iss="https://nolimit.test", aud="gateway")), "wrong_audience", route="nolimit"),
    ok("C22-aud-api-with-default-audiences", lambda c: c.tok(claims=cl(iss="https://nolimit.test")), route="nolimit"),
    bad("C23-sub-number", _t(sub=42)),
    bad("C23-sub-missing", _t(sub=None)),
    bad("C23-sub-empty", _t(sub="")),
    bad("C23-sub-array", _t(sub=["alice"])),
    ok("require_jti-present", lambda c: _strict(c), route="strict"),
    bad("require_jti-missing", lambda c: _strict(c, jti=None), route="strict"),
    bad("require_jti-number", lambda c: _strict(c, jti=7), route="strict"),
    bad("require_jti-empty", lambda c: _strict(c, jti=""), route="strict"),
]

# ---- §1.5 T1-T4 (token transport), Z1-Z2 (authorization shape)
CASES += [
    Case("T1-query-access_token", lambda c: Req(query="access_token=" + c.tok()), "bad_request_query",
         ("malformed",)),
    Case("T1-query-access_token-second-param", lambda c: Req(query="a=1&access_token=" + c.tok()),
         "bad_request_query", ("malformed",)),
    Case("T1-cookie-only", lambda c: Req(headers=[("Cookie", "access_token=" + c.tok())]), "missing", ("missing",)),
    Case("T1-form-body-only", lambda c: Req(method="POST", body=("access_token=" + c.tok()).encode(),
                                            headers=[("Content-Type", "application/x-www-form-urlencoded")]),
         "missing", ("missing",)),
    ok("T2-scheme-lowercase", lambda c: Req(token=c.tok(), scheme="bearer")),
    ok("T2-scheme-uppercase", lambda c: Req(token=c.tok(), scheme="BEARER")),
    ok("T2-scheme-mixed", lambda c: Req(token=c.tok(), scheme="bEaReR")),
    ok("T2-two-spaces", lambda c: Req(token=" " + c.tok())),
    ok("T2-trailing-spaces", lambda c: Req(token=c.tok() + "   ")),
    Case("T2-tab-after-bearer", lambda c: Req(headers=[("Authorization", "Bearer\t" + c.tok())]), "bad_request"),
    Case("T2-bearer-no-token", lambda c: Req(headers=[("Authorization", "Bearer")]), "missing", ("missing",)),
    Case("T2-basic-scheme", lambda c: Req(headers=[("Authorization", "Basic dXNlcjpwYXNz")]), "missing",
         ("missing",)),
    Case("T2-basic-scheme-with-jwt", lambda c: Req(headers=[("Authorization", "Basic " + c.tok())]), "missing",
         ("missing",)),
    Case("T2-two-credentials-comma", lambda c: Req(headers=[("Authorization", f"Bearer {c.tok()}, Bearer {c.tok()}")]),
         "bad_request"),
    Case("T2-token-then-space-junk", lambda c: Req(headers=[("Authorization", f"Bearer {c.tok()} x")]), "bad_request"),
    Case("T2-bearer-equals", lambda c: Req(headers=[("Authorization", "Bearer=" + c.tok())]), "bad_request"),
    Case("T3-two-authorization-headers", lambda c: Req(headers=[("Authorization", "Bearer " + c.tok()),
                                                                ("Authorization", "Bearer " + c.tok())]),
         "bad_request"),
    Case("T3-same-token-twice", lambda c: Req(headers=[("Authorization", "Bearer " + c.tok())] * 2), "bad_request"),
    Case("T3-bearer-and-basic", lambda c: Req(headers=[("Authorization", "Bearer " + c.tok()),
                                                       ("Authorization", "Basic dXNlcjpwYXNz")]), "bad_request"),
    Case("T3-valid-and-garbage", lambda c: Req(headers=[("Authorization", "Bearer garbage"),
                                                        ("Authorization", "Bearer " + c.tok())]), "bad_request"),
    Case("T4-header-and-query", lambda c: (lambda t: Req(token=t, query="access_token=" + t))(c.tok()),
         "bad_request_query", ("malformed",)),
    ok("Z1-scope-exact", _t(scope="admin"), route="scoped"),
    ok("Z1-scope-among-others", _t(scope="read admin write"), route="scoped"),
    ok("Z1-scope-extra-spaces", _t(scope="  read  admin "), route="scoped"),
    ok("Z1-scp-array", _t(scp=["read", "admin"]), route="scoped"),
    Case("Z1-read:admin", _t(scope="read:admin"), "forbidden", ("insufficient_scope",), route="scoped",
         scope="admin"),
    Case("Z1-superadmin", _t(scope="superadmin"), "forbidden", ("insufficient_scope",), route="scoped", scope="admin"),
    Case("Z1-admin-prefix", _t(scope="admins"), "forbidden", ("insufficient_scope",), route="scoped", scope="admin"),
    Case("Z1-case-variant", _t(scope="ADMIN"), "forbidden", ("insufficient_scope",), route="scoped", scope="admin"),
    Case("Z1-tab-separated", _t(scope="read\tadmin"), "forbidden", ("insufficient_scope",), route="scoped",
         scope="admin"),
    Case("Z1-newline-separated", _t(scope="read\nadmin"), "forbidden", ("insufficient_scope",), route="scoped",
         scope="admin"),
    Case("Z1-comma-separated", _t(scope="read,admin"), "forbidden", ("insufficient_scope",), route="scoped",
         scope="admin"),
    Case("Z1-empty-scope", _t(scope=""), "forbidden", ("insufficient_scope",), route="scoped", scope="admin"),
    Case("Z1-no-scope", _t(), "forbidden", ("insufficient_scope",), route="scoped", scope="admin"),
    bad("Z1-scope-array-wrong-type", _t(scope=["admin"]), route="scoped"),
    bad("Z1-scope-number", _t(scope=1), route="scoped"),
    bad("Z1-scp-object", _t(scp={"admin": True}), route="scoped"),
    ok("Z2-roles-string", _t(roles="admin"), route="roles"),
    ok("Z2-roles-array", _t(roles=["user", "admin"]), route="roles"),
    Case("Z2-roles-nested-array", _t(roles=[["admin"]]), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-object", _t(roles={"admin": True}), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-case", _t(roles="Admin"), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-substring", _t(roles="superadmin"), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-space-joined", _t(roles="user admin"), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-true", _t(roles=True), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-missing", _t(), "forbidden", ("insufficient_scope",), route="roles"),
    Case("Z2-roles-in-scope-only", _t(scope="admin"), "forbidden", ("insufficient_scope",), route="roles"),
]

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), sorted(i for i in _ids if _ids.count(i) > 1)

PATHS = {"api": "/api/x", "nolimit": "/nolimit/x", "strict": "/strict/x", "scoped": "/scoped/x",
         "roles": "/roles/x"}


# ---------------------------------------------------------------------------------------------
# Fixture: one gateway for the module


class Env:
    def __init__(self, gw, up, client, ctx, jwks, other, canary):
        self.gw, self.up, self.client, self.ctx = gw, up, client, ctx
        self.jwks, self.other, self.canary = jwks, other, canary


@pytest.fixture(scope="module")
def env(mod_procs):
    ctx = Ctx()
    jwks = JwksServer([ctx.es1, ctx.es384, ctx.rs1, ctx.ps1, ctx.ed1])
    other = JwksServer([ctx.b1])
    canary = JwksServer([ctx.att])  # serves the attacker's key, to anyone who asks
    ctx.canary_url = canary.url
    up = mod_procs.upstream("catalog")
    corp = jwks.provider("corp", CORP)
    providers = [
        corp,
        # No max_lifetime (C4), and no `audiences` key: the default ["api"] applies (C22).
        jwks.provider("nolimit", "https://nolimit.test", max_lifetime=None, audiences=None),
        jwks.provider("strict", STRICT, require_jti=True, accepted_types=["at+jwt"]),
        other.provider("other", "https://other.test"),
    ]

    def authed(name, prefix, providers, **auth):
        return route(name, prefix, "echo", auth={"mode": "required", "providers": providers, **auth})

    routes = [
        authed("api", "/api", ["corp"]),
        authed("nolimit", "/nolimit", ["nolimit"]),
        authed("strict", "/strict", ["strict"]),
        authed("scoped", "/scoped", ["corp"], scopes=["admin"]),
        authed("roles", "/roles", ["corp"], roles={"claim": "roles", "any_of": ["admin"]}),
    ]
    cfg = base_config({"echo": upstream_cfg(up)}, routes, listeners=("http", "metrics"),
                      providers=providers, admin={"token_env": "PORTCULLIS_ADMIN_TOKEN"},
                      revocation={"store": "memory"})
    gw = mod_procs.gateway(cfg, env={"PORTCULLIS_ADMIN_TOKEN": ADMIN_TOKEN})
    wait_for(lambda: requests.get(gw.url("admin", "/readyz"), timeout=2).status_code == 200, 10,
             what="/readyz 200 (every provider has keys)")
    yield Env(gw, up, AuthClient(gw, up), ctx, jwks, other, canary)
    for s in (jwks, other, canary):
        s.stop()


def run_case(env: Env, case: Case):
    built = case.build(env.ctx)
    req = built if isinstance(built, Req) else Req(token=built)
    path = PATHS[case.route] + (("?" + req.query) if req.query else "")
    o = env.client.call(path, req.token, route=case.route, headers=req.headers, method=req.method,
                        body=req.body, scheme=req.scheme)
    return o


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalog(env, case: Case):
    o = run_case(env, case)
    if case.expect == "ok":
        seen = assert_ok(o)
        names = [k.lower() for k, _ in seen["headers"]]
        assert "authorization" not in names, "Authorization forwarded although forward_authorization is false"
    elif case.expect == "invalid":
        assert_invalid_token(o, case.labels, case.desc)
    elif case.expect == "missing":
        assert_missing(o)
    elif case.expect == "bad_request":
        assert_bad_request(o, case.labels)
    elif case.expect == "bad_request_query":
        # Refused before (or as part of) authentication: counting it as `malformed` or not at all
        # are both fine; being let through or counted as anything else is not.
        assert_bad_request(o, () if o.delta == {} else case.labels)
    elif case.expect == "bad_or_invalid":
        # A space or comma inside the credential: either "not one bearer token" (400) or "bad
        # token" (401) is a refusal; both must be labelled malformed and reach nobody.
        if o.status == 400:
            assert_bad_request(o, case.labels)
        else:
            assert_invalid_token(o, case.labels)
    elif case.expect == "forbidden":
        assert_forbidden(o, case.scope)
    elif case.expect == "oversize":
        # Above limits.max_header_bytes: conf/README.md §3.1 (oversize headers get 431), before auth.
        # Heads over Pingora's own 1 MiB parse limit are refused by Pingora with a bare 400
        # before the gateway sees them (README "Known limits").
        assert o.status == 431 or (o.status == 400 and len(o.token or "") > 1 << 20), o
        assert_not_forwarded(o)
        assert o.delta == {}, o
    else:  # pragma: no cover
        raise AssertionError(case.expect)
    if case.max_seconds is not None:
        assert o.elapsed < case.max_seconds, f"took {o.elapsed:.2f}s"


def test_a6_high_s_twin_of_a_revoked_token_is_refused(env):
    """A6/R1: the malleated ECDSA twin is a different string with the same jti; revocation keys on
    (iss, jti), so revoking the original also refuses the twin (and vice versa)."""
    c = env.ctx
    original = c.tok()
    twin = ecdsa_high_s(original)
    assert twin != original
    assert_ok(env.client.call("/api/x", twin, route="api"))
    r = requests.post(env.gw.url("admin", "/admin/revocations"), json={"token": original},
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert r.status_code == 201, r.text
    for t in (original, twin):
        assert_invalid_token(env.client.call("/api/x", t, route="api"), "revoked", "token revoked")


def test_k2_jku_x5u_are_never_fetched(env):
    """K2: `jku`/`x5u` (and friends) pointing at a loopback canary that serves the attacker's key:
    refused when signed by the attacker, accepted when signed by the issuer's key, and in no case
    does the canary see a single request."""
    c, canary = env.ctx, env.canary
    canary.reset_counts()
    targets = [canary.url, canary.base + "/x5u.pem", "http://169.254.169.254/latest/meta-data/",
               "file:///etc/passwd", canary.base + "/.well-known/jwks.json"]
    for target in targets:
        for member in ("jku", "x5u"):
            # Attacker key, attacker kid (the kid the canary's JWKS would resolve).
            assert_invalid_token(env.client.call("/api/x", c.tok(c.att, header_extra={member: target}),
                                                 route="api"), "unknown_kid", "unknown key id")
            # Attacker key under the issuer's kid.
            assert_invalid_token(env.client.call("/api/x", c.tok(c.att, kid="es1", header_extra={member: target}),
                                                 route="api"), "bad_signature", "bad signature")
            # The issuer's own signature: the header member is simply never used.
            assert_ok(env.client.call("/api/x", c.tok(c.es1, header_extra={member: target}), route="api"))
    # Every member at once, plus an embedded attacker JWK and x5c.
    kitchen = {"jku": canary.url, "x5u": canary.base + "/cert", "jwk": c.att.jwk(),
               "x5c": [base64.b64encode(self_signed_cert_der(c.att)).decode()]}
    assert_invalid_token(env.client.call("/api/x", c.tok(c.att, header_extra=kitchen), route="api"),
                         "unknown_kid")
    assert_ok(env.client.call("/api/x", c.tok(c.es1, header_extra=kitchen), route="api"))
    time.sleep(0.5)  # a fetch, if one had been started, would have arrived by now
    assert canary.total() == 0, f"canary received requests: {dict(canary.counts)}"
