//! Token verification: [`decode`] (structure, before the provider is known) and [`verify`] (key,
//! pinned algorithm, signature, claims).
//!
//! This is our own pipeline rather than `jsonwebtoken::decode` because the crate takes the
//! algorithm from the header, re-parses the key on every call, parses the payload twice and
//! skips wrong-typed claims (jwt-hardening §0, §2). Here the algorithm is pinned by the key,
//! keys are parsed once per JWKS load, and the payload is parsed once, strictly.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::claims::{self, ValidClaims};
use super::jwk::{Alg, KeySet, VerifyingKey};
use super::jws::{b64url_decode, parse_header, parse_object_strict, split_compact};

/// Why a token was refused; each maps to one `portcullis_auth_decisions_total` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    Malformed,
    BadSignature,
    UnknownKid,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    Revoked,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownKid => "unknown_kid",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::Revoked => "revoked",
        }
    }
}

/// A refused token: 401 `invalid_token` with `description` as `error_description`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenError {
    pub kind: Rejection,
    /// Names the failed check. Static text only: it can never carry key material, claim values
    /// or the token.
    pub description: &'static str,
}

impl TokenError {
    /// The refusal for a revoked token (the revocation check runs outside this module).
    pub const REVOKED: TokenError = TokenError {
        kind: Rejection::Revoked,
        description: "token revoked",
    };

    pub fn label(self) -> &'static str {
        self.kind.label()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description)
    }
}

impl std::error::Error for TokenError {}

fn malformed(description: &'static str) -> TokenError {
    TokenError {
        kind: Rejection::Malformed,
        description,
    }
}

/// How one provider's tokens are validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// Provider name, copied into every token it verifies.
    pub provider: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Clamped to 0..=300 when used.
    pub leeway_secs: i64,
    pub max_lifetime_secs: Option<i64>,
    pub require_jti: bool,
    /// Accepted `typ` header values; empty accepts any (or none). Compared case-insensitively,
    /// with an optional `application/` prefix.
    pub accepted_types: Vec<String>,
}

/// A structurally valid token, not yet trusted: nothing in it has been authenticated.
pub struct DecodedToken<'t> {
    /// Unverified `iss`, only good for choosing the provider.
    pub iss: String,
    pub kid: String,
    pub alg: Alg,
    pub typ: Option<String>,
    /// `header.payload`, what the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    /// The payload, parsed once, duplicate-free.
    pub claims: Map<String, Value>,
}

impl fmt::Debug for DecodedToken<'_> {
    /// Leaves out the signing input and signature: together they are the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedToken")
            .field("iss", &self.iss)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("typ", &self.typ)
            .finish_non_exhaustive()
    }
}

/// Structural checks, run before the provider is known (see the module docs of `jws` for why
/// each is strict): length, charset and three non-empty segments, strict base64url, the JOSE
/// header rules of [`parse_header`], a duplicate-free JSON object payload, and a string `iss`.
pub fn decode(token: &str, max_token_bytes: usize) -> Result<DecodedToken<'_>, TokenError> {
    // K5/H8: bound the work before decoding anything.
    if token.len() > max_token_bytes {
        return Err(malformed("token too large"));
    }
    let parts = split_compact(token).ok_or(malformed("malformed token"))?;
    let header_json = b64url_decode(parts.header).ok_or(malformed("invalid header"))?;
    let header = parse_header(&header_json).map_err(malformed)?;
    let payload_json = b64url_decode(parts.payload).ok_or(malformed("invalid payload"))?;
    let claims = parse_object_strict(&payload_json).ok_or(malformed("invalid payload"))?;
    let signature =
        b64url_decode(parts.signature).ok_or(malformed("invalid signature encoding"))?;
    let iss = match claims.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        _ => {
            return Err(TokenError {
                kind: Rejection::WrongIssuer,
                description: "invalid claim: iss",
            })
        }
    };
    Ok(DecodedToken {
        iss,
        kid: header.kid,
        alg: header.alg,
        typ: header.typ,
        signing_input: parts.signing_input,
        signature,
        claims,
    })
}

/// A token whose signature and claims have been checked (revocation and route authorization
/// are still to come).
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    pub provider: Arc<str>,
    pub iss: String,
    /// The registered claims validation read, so nothing looks them up in `claims` again.
    pub valid: ValidClaims,
    pub claims: Map<String, Value>,
    pub kid: String,
    pub key_uid: u64,
}

/// Verify `decoded` with the provider the caller chose by `decoded.iss` (exact match on the
/// provider's issuer), so a key of issuer B is never even looked at for a token claiming A (K7).
///
/// Order: kid lookup in that provider's keys (absent: `UnknownKid`), algorithm equal to the
/// key's pinned one and allowed by the policy (else `BadSignature`: A3, A7, A11), signature, then
/// the claims ([`claims::validate`]).
///
/// This copies the claims map into the result; [`verify_owned`] moves it instead.
pub fn verify(
    decoded: &DecodedToken<'_>,
    policy: &ValidationPolicy,
    keys: &KeySet,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    let (key, valid) = check(decoded, policy, keys, now)?;
    Ok(assemble(
        policy,
        key,
        valid,
        decoded.iss.clone(),
        decoded.kid.clone(),
        decoded.claims.clone(),
    ))
}

/// [`verify`] without copying the payload: the hot path on a cache miss.
pub fn verify_owned(
    decoded: DecodedToken<'_>,
    policy: &ValidationPolicy,
    keys: &KeySet,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    let (key, valid) = check(&decoded, policy, keys, now)?;
    Ok(assemble(
        policy,
        key,
        valid,
        decoded.iss,
        decoded.kid,
        decoded.claims,
    ))
}

fn check<'k>(
    decoded: &DecodedToken<'_>,
    policy: &ValidationPolicy,
    keys: &'k KeySet,
    now: i64,
) -> Result<(&'k VerifyingKey, ValidClaims), TokenError> {
    let key = keys.get(&decoded.kid).ok_or(TokenError {
        kind: Rejection::UnknownKid,
        description: "unknown key id",
    })?;
    if decoded.alg != key.alg || !policy.algorithms.contains(&key.alg) {
        return Err(TokenError {
            kind: Rejection::BadSignature,
            description: "algorithm not allowed for key",
        });
    }
    if !key.verify(decoded.signing_input.as_bytes(), &decoded.signature) {
        return Err(TokenError {
            kind: Rejection::BadSignature,
            description: "bad signature",
        });
    }
    let valid = claims::validate(&decoded.claims, decoded.typ.as_deref(), policy, now)?;
    Ok((key, valid))
}

fn assemble(
    policy: &ValidationPolicy,
    key: &VerifyingKey,
    valid: ValidClaims,
    iss: String,
    kid: String,
    claims: Map<String, Value>,
) -> VerifiedToken {
    VerifiedToken {
        provider: Arc::clone(&policy.provider),
        iss,
        valid,
        claims,
        kid,
        key_uid: key.uid,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::jwk::tests::{b64, jwks, rsa_pair, Signer};
    use crate::auth::jwk::{parse_jwks, KeySet};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    pub const NOW: i64 = 1_700_000_000;
    pub const ISS: &str = "https://id.example.com";
    const MAX: usize = 8192;

    pub fn policy(algs: &[Alg]) -> ValidationPolicy {
        ValidationPolicy {
            provider: Arc::from("corp"),
            issuer: ISS.to_owned(),
            audiences: vec!["api".to_owned(), "gateway".to_owned()],
            algorithms: algs.to_vec(),
            leeway_secs: 30,
            max_lifetime_secs: None,
            require_jti: false,
            accepted_types: vec![],
        }
    }

    pub fn claims() -> Value {
        json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW,
               "jti": "j-1", "scope": "users:read users:write"})
    }

    /// Header and payload given as raw JSON text, so duplicates and oddities survive.
    pub fn mint_raw(header: &str, payload: &str, signer: &Signer, alg: Alg) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let s = signer.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&s))
    }

    pub fn mint(header: &Value, payload: &Value, signer: &Signer, alg: Alg) -> String {
        mint_raw(&header.to_string(), &payload.to_string(), signer, alg)
    }

    pub fn hdr(alg: Alg, kid: &str) -> Value {
        json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"})
    }

    /// One provider with one key.
    pub struct Fx {
        pub signer: Signer,
        pub alg: Alg,
        pub kid: &'static str,
        pub keys: KeySet,
        pub policy: ValidationPolicy,
    }

    impl Fx {
        pub fn new(signer: Signer, alg: Alg) -> Fx {
            let mut jwk = signer.jwk("k1");
            jwk["alg"] = json!(alg.as_str());
            let keys = parse_jwks(&jwks(&[jwk]), &Alg::ALL).unwrap().keys;
            assert_eq!(keys.len(), 1);
            Fx {
                signer,
                alg,
                kid: "k1",
                keys,
                policy: policy(&Alg::ALL),
            }
        }
        pub fn es256() -> Fx {
            Fx::new(Signer::es256(), Alg::ES256)
        }
        pub fn token(&self, payload: &Value) -> String {
            mint(&hdr(self.alg, self.kid), payload, &self.signer, self.alg)
        }
        pub fn run(&self, token: &str) -> Result<VerifiedToken, TokenError> {
            self.run_at(token, NOW)
        }
        pub fn run_at(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
            let d = decode(token, MAX)?;
            verify(&d, &self.policy, &self.keys, now)
        }
    }

    fn with(mut v: Value, k: &str, x: Value) -> Value {
        v[k] = x;
        v
    }
    fn without(mut v: Value, k: &str) -> Value {
        v.as_object_mut().unwrap().remove(k);
        v
    }

    fn err(r: Result<VerifiedToken, TokenError>) -> TokenError {
        r.expect_err("token was accepted")
    }

    // ---------------------------------------------------------------- happy paths

    #[test]
    fn every_algorithm_verifies() {
        let mut fxs = vec![
            Fx::es256(),
            Fx::new(Signer::es384(), Alg::ES384),
            Fx::new(Signer::ed25519(), Alg::EdDSA),
        ];
        for alg in [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ] {
            fxs.push(Fx::new(Signer::rsa(), alg));
        }
        for fx in fxs {
            let t = fx.run(&fx.token(&claims())).unwrap();
            assert_eq!(&*t.provider, "corp");
            assert_eq!(t.iss, ISS);
            assert_eq!(t.valid.sub, "alice");
            assert_eq!(t.valid.jti.as_deref(), Some("j-1"));
            assert_eq!(
                (t.valid.iat, t.valid.exp, t.valid.nbf),
                (Some(NOW), NOW + 600, None)
            );
            assert_eq!(t.valid.scopes, ["users:read", "users:write"]);
            assert_eq!(t.kid, "k1");
            assert_eq!(t.key_uid, fx.keys.get("k1").unwrap().uid);
            assert_eq!(t.claims["aud"], json!("api"));
        }
    }

    #[test]
    fn verify_owned_matches_verify() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let a = verify(&decode(&tok, MAX).unwrap(), &fx.policy, &fx.keys, NOW).unwrap();
        let b = verify_owned(decode(&tok, MAX).unwrap(), &fx.policy, &fx.keys, NOW).unwrap();
        assert_eq!(a, b);
        let bad = fx.token(&with(claims(), "aud", json!("x")));
        assert_eq!(
            verify_owned(decode(&bad, MAX).unwrap(), &fx.policy, &fx.keys, NOW)
                .unwrap_err()
                .kind,
            Rejection::WrongAudience
        );
    }

    #[test]
    fn labels() {
        let all = [
            (Rejection::Malformed, "malformed"),
            (Rejection::BadSignature, "bad_signature"),
            (Rejection::UnknownKid, "unknown_kid"),
            (Rejection::Expired, "expired"),
            (Rejection::NotYetValid, "not_yet_valid"),
            (Rejection::WrongIssuer, "wrong_issuer"),
            (Rejection::WrongAudience, "wrong_audience"),
            (Rejection::Revoked, "revoked"),
        ];
        for (r, l) in all {
            assert_eq!(r.label(), l);
        }
        assert_eq!(TokenError::REVOKED.description, "token revoked");
        assert_eq!(TokenError::REVOKED.to_string(), "token revoked");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let d = decode(&tok, MAX).unwrap();
        let shown = format!("{d:?}");
        let parts: Vec<&str> = tok.split('.').collect();
        for p in parts {
            assert!(!shown.contains(p));
        }
    }

    // ---------------------------------------------------------------- 1.1 algorithm / signature

    #[test]
    fn a1_alg_none_every_casing_and_shape() {
        let fx = Fx::es256();
        let p = b64(claims().to_string().as_bytes());
        for alg in ["none", "None", "NONE", "nOnE", "none ", " none", "noNE"] {
            let h = b64(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
            for tok in [
                format!("{h}.{p}."),
                format!("{h}.{p}"),
                format!("{h}.{p}.AAAA"),
                format!("{h}.{p}.{}", b64(&[0u8; 64])),
            ] {
                let e = err(fx.run(&tok));
                assert_eq!(e.kind, Rejection::Malformed, "{alg} {tok}");
            }
        }
    }

    #[test]
    fn a2_alg_missing_or_not_a_string() {
        let fx = Fx::es256();
        for h in [
            json!({"typ":"JWT","kid":"k1"}),
            json!({"alg":123,"kid":"k1"}),
            json!({"alg":null,"kid":"k1"}),
            json!({"alg":["ES256"],"kid":"k1"}),
        ] {
            let tok = mint(&h, &claims(), &fx.signer, Alg::ES256);
            assert_eq!(err(fx.run(&tok)).kind, Rejection::Malformed, "{h}");
        }
    }

    #[test]
    fn a3_hs256_with_public_key_bytes() {
        use aws_lc_rs::hmac;
        let signer = Signer::rsa();
        let fx = Fx::new(Signer::rsa(), Alg::RS256);
        let pk = rsa_pair().public_key();
        let der = pk.as_ref().to_vec();
        let jwk_text = signer.jwk("k1").to_string();
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----",
            b64(&der)
        );
        for secret in [
            der.clone(),
            jwk_text.into_bytes(),
            pem.clone().into_bytes(),
            format!("{pem}\n").into_bytes(),
            vec![],
        ] {
            for alg in ["HS256", "HS384", "HS512"] {
                let h = b64(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
                let input = format!("{h}.{}", b64(claims().to_string().as_bytes()));
                let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
                let tag = hmac::sign(&key, input.as_bytes());
                let tok = format!("{input}.{}", b64(tag.as_ref()));
                let e = err(fx.run(&tok));
                assert_eq!(
                    e,
                    TokenError {
                        kind: Rejection::Malformed,
                        description: "algorithm not supported"
                    }
                );
            }
        }
    }

    /// P-256 group order n.
    const P256_N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    /// a - b for 32-byte big-endian numbers (a >= b).
    fn sub32(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = a[i] as i16 - b[i] as i16 - borrow;
            borrow = if d < 0 {
                d += 256;
                1
            } else {
                0
            };
            out[i] = d as u8;
        }
        out
    }

    fn with_sig(tok: &str, sig: &[u8]) -> String {
        let cut = tok.rfind('.').unwrap();
        format!("{}.{}", &tok[..cut], b64(sig))
    }

    #[test]
    fn a4_psychic_signatures() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let one = {
            let mut o = [0u8; 32];
            o[31] = 1;
            o
        };
        let n_minus_1 = sub32(&P256_N, &one);
        let cases: Vec<Vec<u8>> = vec![
            [[0u8; 32], [0u8; 32]].concat(),
            [P256_N, P256_N].concat(),
            [[0u8; 32], one].concat(),
            [one, [0u8; 32]].concat(),
            [n_minus_1, n_minus_1].concat(),
            [one, one].concat(),
        ];
        for s in cases {
            let e = err(fx.run(&with_sig(&tok, &s)));
            assert_eq!(
                e,
                TokenError {
                    kind: Rejection::BadSignature,
                    description: "bad signature"
                }
            );
        }
    }

    #[test]
    fn a5_der_and_wrong_length_ecdsa_signatures() {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let fixed = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .unwrap();
        let asn1 =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        assert_eq!(fixed.public_key().as_ref(), asn1.public_key().as_ref());
        let fx = Fx::new(Signer::Ec(fixed, 32), Alg::ES256);
        let good = fx.token(&claims());
        fx.run(&good).unwrap();
        let input = &good[..good.rfind('.').unwrap()];
        let der = asn1.sign(&rng, input.as_bytes()).unwrap();
        let e = err(fx.run(&with_sig(&good, der.as_ref())));
        assert_eq!(e.kind, Rejection::BadSignature);
        // Too long / trailing zeros / truncated.
        let raw = crate::auth::jws::b64url_decode(&good[good.rfind('.').unwrap() + 1..]).unwrap();
        for s in [
            [raw.clone(), vec![0]].concat(),
            [raw.clone(), vec![0; 64]].concat(),
            raw[..63].to_vec(),
            [vec![0], raw.clone()].concat(),
        ] {
            assert_eq!(
                err(fx.run(&with_sig(&good, &s))).kind,
                Rejection::BadSignature
            );
        }
    }

    #[test]
    fn a6_high_s_twin_verifies_but_revocation_still_denies_it() {
        // ECDSA is malleable: (r, n - s) is a second valid signature of the same message. The
        // verifier cannot refuse it (it is valid), so revocation keys on (iss, jti), never on the
        // token string or its hash; see `revocation`.
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let raw = crate::auth::jws::b64url_decode(&tok[tok.rfind('.').unwrap() + 1..]).unwrap();
        let twin_s = sub32(&P256_N, &raw[32..]);
        let twin_sig = [&raw[..32], &twin_s[..]].concat();
        let twin = with_sig(&tok, &twin_sig);
        assert_ne!(tok, twin);
        let a = fx.run(&tok).unwrap();
        let b = fx.run(&twin).unwrap();
        assert_eq!(a.valid.jti, b.valid.jti);
        let list = crate::revocation::RevocationList::new();
        list.revoke_jti(&a.iss, a.valid.jti.as_deref().unwrap(), None);
        for t in [&a, &b] {
            assert!(list.is_revoked(&t.iss, t.valid.jti.as_deref(), &t.valid.sub, t.valid.iat));
        }
    }

    #[test]
    fn a7_es384_header_with_p256_key() {
        let fx = Fx::es256();
        let p384 = Signer::es384();
        // Signed with a P-384 key, and with the P-256 key itself (a 64-byte signature).
        for tok in [
            mint(&hdr(Alg::ES384, "k1"), &claims(), &p384, Alg::ES384),
            mint(&hdr(Alg::ES384, "k1"), &claims(), &fx.signer, Alg::ES256),
        ] {
            assert_eq!(
                err(fx.run(&tok)),
                TokenError {
                    kind: Rejection::BadSignature,
                    description: "algorithm not allowed for key"
                }
            );
        }
    }

    #[test]
    fn a8_signature_stripping_and_payload_swap() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let parts: Vec<&str> = tok.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        for t in [
            format!("{h}.{p}."),
            format!("{h}.{p}"),
            format!("{h}.."),
            format!(".{p}.{s}"),
            format!("{h}..{s}"),
            format!("{h}.{p}.{s}."),
        ] {
            assert_eq!(err(fx.run(&t)).kind, Rejection::Malformed, "{t}");
        }
        // Payload swapped under the original signature.
        let other = b64(with(claims(), "sub", json!("admin")).to_string().as_bytes());
        assert_eq!(
            err(fx.run(&format!("{h}.{other}.{s}"))).kind,
            Rejection::BadSignature
        );
        // Header swapped (typ changed) under the original signature.
        let h2 = b64(json!({"alg":"ES256","kid":"k1"}).to_string().as_bytes());
        assert_eq!(
            err(fx.run(&format!("{h2}.{p}.{s}"))).kind,
            Rejection::BadSignature
        );
        // Truncated signature (refused as non-canonical base64 or as a bad signature).
        for cut in 1..=8 {
            let kind = err(fx.run(&format!("{h}.{p}.{}", &s[..s.len() - cut]))).kind;
            assert!(
                matches!(kind, Rejection::Malformed | Rejection::BadSignature),
                "{cut}"
            );
        }
    }

    #[test]
    fn a9_empty_or_blank_key_signatures() {
        use aws_lc_rs::hmac;
        let fx = Fx::es256();
        let h = b64(json!({"alg":"HS256","kid":"k1"}).to_string().as_bytes());
        let input = format!("{h}.{}", b64(claims().to_string().as_bytes()));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b""), input.as_bytes());
        assert_eq!(
            err(fx.run(&format!("{input}.{}", b64(tag.as_ref())))).kind,
            Rejection::Malformed
        );
        // Empty signature segment with our real header.
        let tok = fx.token(&claims());
        let cut = tok.rfind('.').unwrap();
        assert_eq!(err(fx.run(&tok[..=cut])).kind, Rejection::Malformed);
    }

    #[test]
    fn a10_rsa_garbage_signatures() {
        let fx = Fx::new(Signer::rsa(), Alg::RS256);
        let tok = fx.token(&claims());
        for s in [
            vec![0u8; 256],
            vec![0xff; 256],
            vec![1u8; 255],
            vec![1u8; 257],
        ] {
            assert_eq!(
                err(fx.run(&with_sig(&tok, &s))).kind,
                Rejection::BadSignature
            );
        }
        // A valid signature from a different RSA key.
        let other = Signer::Rsa(crate::auth::jwk::tests::rsa_pair_2());
        let forged = mint(&hdr(Alg::RS256, "k1"), &claims(), &other, Alg::RS256);
        assert_eq!(
            err(fx.run(&forged)),
            TokenError {
                kind: Rejection::BadSignature,
                description: "bad signature"
            }
        );
    }

    #[test]
    fn a11_alg_switching_inside_the_rsa_family() {
        let rsa_algs = [
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
        ];
        for pinned in rsa_algs {
            let fx = Fx::new(Signer::rsa(), pinned);
            fx.run(&fx.token(&claims())).unwrap();
            for other in rsa_algs.into_iter().filter(|a| *a != pinned) {
                // Signed correctly for `other` with the very same private key.
                let tok = mint(&hdr(other, "k1"), &claims(), &fx.signer, other);
                assert_eq!(
                    err(fx.run(&tok)),
                    TokenError {
                        kind: Rejection::BadSignature,
                        description: "algorithm not allowed for key"
                    },
                    "{pinned} <- {other}"
                );
            }
        }
    }

    #[test]
    fn policy_algorithms_also_bind() {
        let mut fx = Fx::es256();
        fx.policy.algorithms = vec![Alg::RS256];
        assert_eq!(
            err(fx.run(&fx.token(&claims()))).description,
            "algorithm not allowed for key"
        );
    }

    // ---------------------------------------------------------------- 1.2 key injection / selection

    #[test]
    fn k1_embedded_jwk_header_is_never_used() {
        let fx = Fx::es256();
        let attacker = Signer::es256();
        for kid in ["k1", "attacker"] {
            let h = json!({"alg":"ES256","kid":kid,"jwk":attacker.jwk(kid)});
            let tok = mint(&h, &claims(), &attacker, Alg::ES256);
            let e = err(fx.run(&tok));
            assert!(
                matches!(e.kind, Rejection::BadSignature | Rejection::UnknownKid),
                "{kid}"
            );
        }
        // x5c with the attacker's key as well.
        let h = json!({"alg":"ES256","kid":"k1","x5c":["MIIB"]});
        assert_eq!(
            err(fx.run(&mint(&h, &claims(), &attacker, Alg::ES256))).kind,
            Rejection::BadSignature
        );
    }

    #[test]
    fn k2_jku_and_x5u_are_ignored() {
        let fx = Fx::es256();
        let attacker = Signer::es256();
        for (name, url) in [
            ("jku", "http://127.0.0.1:9/jwks.json"),
            ("jku", "http://169.254.169.254/latest"),
            ("x5u", "file:///etc/passwd"),
        ] {
            let h = json!({"alg":"ES256","kid":"k1", name: url});
            // The issuer's own signature: the header member is simply ignored.
            fx.run(&mint(&h, &claims(), &fx.signer, Alg::ES256))
                .unwrap();
            // The attacker's: refused, and nothing was fetched (this module does no I/O at all).
            assert_eq!(
                err(fx.run(&mint(&h, &claims(), &attacker, Alg::ES256))).kind,
                Rejection::BadSignature
            );
        }
    }

    #[test]
    fn k4_k5_hostile_kids() {
        let fx = Fx::es256();
        for kid in [
            "../../../../dev/null",
            "/dev/null",
            "x' UNION SELECT '1';--",
            "|sleep 10",
            "$(curl x)",
            "K1",
            "k1 ",
        ] {
            let tok = mint(&hdr(Alg::ES256, kid), &claims(), &fx.signer, Alg::ES256);
            assert_eq!(
                err(fx.run(&tok)),
                TokenError {
                    kind: Rejection::UnknownKid,
                    description: "unknown key id"
                },
                "{kid}"
            );
        }
        let long = mint(
            &hdr(Alg::ES256, &"k".repeat(300)),
            &claims(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(err(fx.run(&long)).description, "invalid header: kid");
        let huge = mint(
            &hdr(Alg::ES256, &"k".repeat(64 * 1024)),
            &claims(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(err(fx.run(&huge)).description, "token too large");
    }

    #[test]
    fn k7_cross_issuer() {
        // Provider A and provider B, both trusted; B's key signs a token that claims A.
        let a = Fx::es256();
        let b_signer = Signer::es256();
        let mut b_jwk = b_signer.jwk("b1");
        b_jwk["alg"] = json!("ES256");
        let b_keys = parse_jwks(&jwks(&[b_jwk]), &Alg::ALL).unwrap().keys;
        let mut b_policy = policy(&Alg::ALL);
        b_policy.issuer = "https://b.example.com".to_owned();

        let forged = mint(&hdr(Alg::ES256, "b1"), &claims(), &b_signer, Alg::ES256);
        let d = decode(&forged, MAX).unwrap();
        assert_eq!(d.iss, ISS); // the caller picks provider A by iss ...
        assert_eq!(
            verify(&d, &a.policy, &a.keys, NOW).unwrap_err().kind,
            Rejection::UnknownKid
        );
        // ... and even a caller that wrongly used B's keys is stopped by B's issuer check.
        assert_eq!(
            verify(&d, &b_policy, &b_keys, NOW).unwrap_err().kind,
            Rejection::WrongIssuer
        );
        // Same kid in both sets: A's key does not verify B's signature.
        let clash = mint(&hdr(Alg::ES256, "k1"), &claims(), &b_signer, Alg::ES256);
        assert_eq!(err(a.run(&clash)).kind, Rejection::BadSignature);
    }

    #[test]
    fn k13_token_without_kid() {
        let fx = Fx::es256();
        let tok = mint(&json!({"alg":"ES256"}), &claims(), &fx.signer, Alg::ES256);
        assert_eq!(
            err(fx.run(&tok)),
            TokenError {
                kind: Rejection::Malformed,
                description: "missing header: kid"
            }
        );
    }

    #[test]
    fn unknown_kid_and_empty_keyset() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let d = decode(&tok, MAX).unwrap();
        assert_eq!(
            verify(&d, &fx.policy, &KeySet::empty(), NOW)
                .unwrap_err()
                .kind,
            Rejection::UnknownKid
        );
    }

    // ---------------------------------------------------------------- 1.3 header / structure

    #[test]
    fn h1_crit_and_h9_enc_zip_cty() {
        let fx = Fx::es256();
        let cases = [
            (
                json!({"alg":"ES256","kid":"k1","crit":["x-unknown"],"x-unknown":"v"}),
                "crit header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","crit":[]}),
                "crit header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","crit":["exp"],"exp":1}),
                "crit header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","enc":"A256GCM"}),
                "enc header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","zip":"DEF"}),
                "zip header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","b64":false}),
                "b64 header not supported",
            ),
            (
                json!({"alg":"ES256","kid":"k1","cty":"JWT"}),
                "nested JWT not supported",
            ),
        ];
        for (h, why) in cases {
            let tok = mint(&h, &claims(), &fx.signer, Alg::ES256);
            assert_eq!(
                err(fx.run(&tok)),
                TokenError {
                    kind: Rejection::Malformed,
                    description: why
                }
            );
        }
        // A nested JWT as the payload (a JSON string) is not an object.
        let inner = fx.token(&claims());
        let tok = mint_raw(
            &hdr(Alg::ES256, "k1").to_string(),
            &json!(inner).to_string(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(err(fx.run(&tok)).description, "invalid payload");
        // A 5-segment JWE.
        assert_eq!(
            err(fx.run("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")).kind,
            Rejection::Malformed
        );
    }

    #[test]
    fn h2_typ() {
        let mut fx = Fx::es256();
        fx.policy.accepted_types = vec!["at+jwt".to_owned()];
        let with_typ = |typ: Option<&str>| {
            let mut h = json!({"alg":"ES256","kid":"k1"});
            if let Some(t) = typ {
                h["typ"] = json!(t);
            }
            mint(&h, &claims(), &fx.signer, Alg::ES256)
        };
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            fx.run(&with_typ(Some(ok))).unwrap();
        }
        for bad in [
            Some("logout+jwt"),
            Some("secevent+jwt"),
            Some("JWT"),
            Some(""),
            None,
        ] {
            assert_eq!(
                err(fx.run(&with_typ(bad))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "token type not accepted"
                },
                "{bad:?}"
            );
        }
        // Without accepted_types any typ (or none) passes.
        fx.policy.accepted_types.clear();
        fx.run(&with_typ(Some("logout+jwt"))).unwrap();
        fx.run(&with_typ(None)).unwrap();
    }

    #[test]
    fn h3_garbage_tokens() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        for t in [
            "",
            ".",
            "..",
            "...",
            "Zm9v",
            "a.b",
            "a.b.c.d",
            "a.b.c",
            "e30.e30.e30",
            "e30.e30.",
            "e30.e30.AA",
        ] {
            assert_eq!(err(fx.run(t)).kind, Rejection::Malformed, "{t}");
        }
        assert_eq!(err(fx.run(&format!("{tok}."))).kind, Rejection::Malformed);
        for extra in ["A", "AA", "AAA", "AAAA"] {
            let kind = err(fx.run(&format!("{tok}{extra}"))).kind;
            assert!(
                matches!(kind, Rejection::Malformed | Rejection::BadSignature),
                "{extra}"
            );
        }
    }

    #[test]
    fn h4_base64_variants() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        fx.run(&tok).unwrap();
        let parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
        for i in 0..3 {
            for suffix in ["=", "==", " ", "\n", "\t"] {
                let mut p = parts.clone();
                p[i].push_str(suffix);
                assert_eq!(err(fx.run(&p.join("."))).kind, Rejection::Malformed);
            }
            let mut p = parts.clone();
            p[i].insert(2, ' ');
            assert_eq!(err(fx.run(&p.join("."))).kind, Rejection::Malformed);
        }
        // The standard alphabet: re-encode the signature with + and /.
        let std_sig = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::auth::jws::b64url_decode(&parts[2]).unwrap(),
        );
        let t = format!("{}.{}.{}", parts[0], parts[1], std_sig);
        assert_eq!(err(fx.run(&t)).kind, Rejection::Malformed);
        // Non-canonical trailing bits: a 64-byte signature has 4 unused bits in its last char.
        const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = *parts[2].as_bytes().last().unwrap();
        let idx = ALPHA.iter().position(|c| *c == last).unwrap();
        let tweaked = ALPHA[idx ^ 1] as char;
        let t = format!(
            "{}.{}.{}{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 1],
            tweaked
        );
        assert_eq!(
            err(fx.run(&t)),
            TokenError {
                kind: Rejection::Malformed,
                description: "invalid signature encoding"
            }
        );
    }

    #[test]
    fn h5_json_serialization() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let p: Vec<&str> = tok.split('.').collect();
        let js = json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]})
            .to_string();
        assert_eq!(err(fx.run(&js)).kind, Rejection::Malformed);
        let flat = json!({"payload": p[1], "protected": p[0], "signature": p[2]}).to_string();
        assert_eq!(err(fx.run(&flat)).kind, Rejection::Malformed);
    }

    #[test]
    fn h6_duplicate_members() {
        let fx = Fx::es256();
        let sign = |h: &str, p: &str| mint_raw(h, p, &fx.signer, Alg::ES256);
        let h = r#"{"alg":"ES256","kid":"k1"}"#;
        let base = format!(r#""iss":"{ISS}","aud":"api","sub":"alice","iat":{NOW}"#);
        let payloads = [
            format!(r#"{{{base},"exp":{},"exp":{}}}"#, NOW + 600, NOW - 600),
            format!(r#"{{{base},"exp":{},"exp":{}}}"#, NOW - 600, NOW + 600),
            format!(
                r#"{{"iss":"{ISS}","aud":"api","sub":"alice","sub":"admin","exp":{}}}"#,
                NOW + 600
            ),
            format!(
                r#"{{{base},"exp":{},"role":"user","role":"admin"}}"#,
                NOW + 600
            ),
            format!(
                r#"{{{base},"exp":{},"scope":"a","scope":"admin"}}"#,
                NOW + 600
            ),
            format!(
                r#"{{{base},"exp":{},"realm_access":{{"roles":["u"],"roles":["admin"]}}}}"#,
                NOW + 600
            ),
            format!(r#"{{{base},"exp":{},"iss":"{ISS}"}}"#, NOW + 600),
        ];
        for p in &payloads {
            assert_eq!(
                err(fx.run(&sign(h, p))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid payload"
                },
                "{p}"
            );
        }
        for hd in [
            r#"{"alg":"none","alg":"ES256","kid":"k1"}"#,
            r#"{"alg":"ES256","kid":"k1","alg":"ES256"}"#,
            r#"{"alg":"ES256","kid":"x","kid":"k1"}"#,
        ] {
            let ok_payload = claims().to_string();
            assert_eq!(
                err(fx.run(&sign(hd, &ok_payload))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid header"
                }
            );
        }
    }

    #[test]
    fn h7_non_object_payloads() {
        let fx = Fx::es256();
        let h = r#"{"alg":"ES256","kid":"k1"}"#;
        let arr = format!(r#"[{},0,"alice","{ISS}","api"]"#, NOW + 600);
        let trailing = format!("{} x", claims());
        let bom = format!("\u{feff}{}", claims());
        for p in [
            "hello",
            "null",
            "123",
            r#""a string""#,
            "true",
            &arr,
            &trailing,
            &bom,
            " ",
        ] {
            let tok = mint_raw(h, p, &fx.signer, Alg::ES256);
            assert_eq!(err(fx.run(&tok)).description, "invalid payload", "{p}");
        }
        // UTF-16 JSON is not JSON.
        let utf16: Vec<u8> = claims()
            .to_string()
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        let input = format!("{}.{}", b64(h.as_bytes()), b64(&utf16));
        let tok = format!(
            "{input}.{}",
            b64(&fx.signer.sign(Alg::ES256, input.as_bytes()))
        );
        assert_eq!(err(fx.run(&tok)).description, "invalid payload");
    }

    #[test]
    fn h8_nesting_and_size() {
        let fx = Fx::es256();
        let nested = format!(
            r#"{{"iss":"{ISS}","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let tok = mint_raw(
            r#"{"alg":"ES256","kid":"k1"}"#,
            &nested,
            &fx.signer,
            Alg::ES256,
        );
        let e = decode(&tok, 1 << 20).unwrap_err();
        assert_eq!(e.description, "invalid payload");
        let big = with(claims(), "pad", json!("x".repeat(MAX)));
        assert_eq!(err(fx.run(&fx.token(&big))).description, "token too large");
        // The limit is inclusive.
        let tok = fx.token(&claims());
        assert!(decode(&tok, tok.len()).is_ok());
        assert_eq!(
            decode(&tok, tok.len() - 1).unwrap_err().description,
            "token too large"
        );
    }

    #[test]
    fn iss_must_be_a_string_at_decode() {
        let fx = Fx::es256();
        for iss in [
            json!(null),
            json!(123),
            json!({}),
            json!([ISS]),
            json!(["https://evil/", ISS]),
        ] {
            let tok = fx.token(&with(claims(), "iss", iss.clone()));
            assert_eq!(
                decode(&tok, MAX).unwrap_err(),
                TokenError {
                    kind: Rejection::WrongIssuer,
                    description: "invalid claim: iss"
                },
                "{iss}"
            );
        }
        let tok = fx.token(&without(claims(), "iss"));
        assert_eq!(decode(&tok, MAX).unwrap_err().kind, Rejection::WrongIssuer);
    }

    // ---------------------------------------------------------------- 1.4 claims / time (C1-C23)

    #[test]
    fn c1_to_c9_exp() {
        let fx = Fx::es256();
        let e = |exp: Value| err(fx.run(&fx.token(&with(claims(), "exp", exp))));
        // C1 missing.
        assert_eq!(
            err(fx.run(&fx.token(&without(claims(), "exp")))),
            TokenError {
                kind: Rejection::Malformed,
                description: "missing claim: exp"
            }
        );
        // C2 string, C5 -1/true/null/2^64/1e300, C7 u64::MAX.
        for bad in [
            json!("9999999999"),
            json!(-1),
            json!(true),
            json!(null),
            json!(18446744073709551616.0),
            json!(1e300),
            json!(u64::MAX),
            json!([NOW + 600]),
        ] {
            assert_eq!(
                e(bad.clone()),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid claim: exp"
                },
                "{bad}"
            );
        }
        // C3 float, rounded.
        let t = fx
            .run(&fx.token(&with(claims(), "exp", json!(NOW as f64 + 600.7))))
            .unwrap();
        assert_eq!(t.valid.exp, NOW + 601);
        // C4 1e10: accepted as a date (max_lifetime is the policy for far-future dates).
        assert_eq!(
            fx.run(&fx.token(&with(claims(), "exp", json!(1e10))))
                .unwrap()
                .valid
                .exp,
            10_000_000_000
        );
        // C6 zero / past.
        assert_eq!(
            e(json!(0)),
            TokenError {
                kind: Rejection::Expired,
                description: "token expired"
            }
        );
        assert_eq!(e(json!(NOW - 3600)).kind, Rejection::Expired);
        // C8 inside leeway, C9 outside.
        fx.run(&fx.token(&with(claims(), "exp", json!(NOW - 20))))
            .unwrap();
        fx.run(&fx.token(&with(claims(), "exp", json!(NOW - 30))))
            .unwrap();
        assert_eq!(e(json!(NOW - 31)).kind, Rejection::Expired);
        assert_eq!(e(json!(NOW - 45)).kind, Rejection::Expired);
    }

    #[test]
    fn c7_max_lifetime() {
        let mut fx = Fx::es256();
        fx.policy.max_lifetime_secs = Some(24 * 3600);
        let century = NOW + 100 * 365 * 24 * 3600;
        let too_long = TokenError {
            kind: Rejection::Malformed,
            description: "token lifetime too long",
        };
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "exp", json!(century))))),
            too_long
        );
        // Measured from iat when present, else from now.
        let p = with(
            with(claims(), "iat", json!(NOW - 3600)),
            "exp",
            json!(NOW + 23 * 3600 + 1),
        );
        assert_eq!(err(fx.run(&fx.token(&p))), too_long);
        let p = with(
            with(claims(), "iat", json!(NOW - 3600)),
            "exp",
            json!(NOW + 23 * 3600),
        );
        fx.run(&fx.token(&p)).unwrap();
        let p = with(without(claims(), "iat"), "exp", json!(NOW + 24 * 3600 + 1));
        assert_eq!(err(fx.run(&fx.token(&p))), too_long);
        let p = with(without(claims(), "iat"), "exp", json!(NOW + 24 * 3600));
        fx.run(&fx.token(&p)).unwrap();
    }

    #[test]
    fn c10_to_c13_nbf_iat() {
        let fx = Fx::es256();
        let nyv = TokenError {
            kind: Rejection::NotYetValid,
            description: "token not yet valid",
        };
        // C10
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "nbf", json!(NOW + 3600))))),
            nyv
        );
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "nbf", json!(NOW + 31))))),
            nyv
        );
        let t = fx
            .run(&fx.token(&with(claims(), "nbf", json!(NOW + 30))))
            .unwrap();
        assert_eq!(t.valid.nbf, Some(NOW + 30));
        // C11, C12: wrong types and negatives.
        for bad in [
            json!((NOW + 3600).to_string()),
            json!(-5),
            json!(null),
            json!(false),
        ] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), "nbf", bad)))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid claim: nbf"
                }
            );
        }
        // C13: iat far in the future, or not a date.
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "iat", json!(NOW + 86400))))),
            TokenError {
                kind: Rejection::NotYetValid,
                description: "iat in the future"
            }
        );
        fx.run(&fx.token(&with(claims(), "iat", json!(NOW + 30))))
            .unwrap();
        for bad in [json!("x"), json!(-1), json!({})] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), "iat", bad)))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid claim: iat"
                }
            );
        }
        // iat is optional.
        assert_eq!(
            fx.run(&fx.token(&without(claims(), "iat")))
                .unwrap()
                .valid
                .iat,
            None
        );
    }

    #[test]
    fn leeway_is_clamped() {
        let mut fx = Fx::es256();
        fx.policy.leeway_secs = 100_000;
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "exp", json!(NOW - 301))))).kind,
            Rejection::Expired
        );
        fx.run(&fx.token(&with(claims(), "exp", json!(NOW - 300))))
            .unwrap();
        fx.policy.leeway_secs = -100;
        assert_eq!(
            err(fx.run(&fx.token(&with(claims(), "exp", json!(NOW - 1))))).kind,
            Rejection::Expired
        );
        fx.run(&fx.token(&with(claims(), "exp", json!(NOW))))
            .unwrap();
        // now near i64::MAX does not overflow.
        assert_eq!(
            err(fx.run_at(&fx.token(&claims()), i64::MAX)).kind,
            Rejection::Expired
        );
    }

    #[test]
    fn c14_to_c17_iss() {
        let fx = Fx::es256();
        let wrong = TokenError {
            kind: Rejection::WrongIssuer,
            description: "invalid claim: iss",
        };
        // The caller chose this provider although iss differs (defence in depth in verify).
        for iss in [
            "https://id.example.com/",
            "https://ID.example.com",
            "https://evil.example.com",
            "",
        ] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), "iss", json!(iss))))),
                wrong,
                "{iss}"
            );
        }
        for iss in [json!(["https://evil/", ISS]), json!(123), json!({})] {
            assert_eq!(err(fx.run(&fx.token(&with(claims(), "iss", iss)))), wrong);
        }
        assert_eq!(err(fx.run(&fx.token(&without(claims(), "iss")))), wrong);
    }

    #[test]
    fn c18_to_c22_aud() {
        let mut fx = Fx::es256();
        let wrong = TokenError {
            kind: Rejection::WrongAudience,
            description: "invalid claim: aud",
        };
        fx.run(&fx.token(&with(claims(), "aud", json!(["other", "gateway"]))))
            .unwrap();
        for aud in [
            json!(["other"]),
            json!([]),
            json!("GATEWAY"),
            json!("API"),
            json!(123),
            json!([123]),
            json!(null),
            json!({"api":true}),
            json!([["api"]]),
        ] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), "aud", aud.clone())))),
                wrong,
                "{aud}"
            );
        }
        assert_eq!(err(fx.run(&fx.token(&without(claims(), "aud")))), wrong);
        // C22: a policy with no audience accepts no token.
        fx.policy.audiences.clear();
        assert_eq!(err(fx.run(&fx.token(&claims()))), wrong);
    }

    #[test]
    fn c23_sub() {
        let fx = Fx::es256();
        let bad = TokenError {
            kind: Rejection::Malformed,
            description: "invalid claim: sub",
        };
        for sub in [json!(42), json!(null), json!(["alice"]), json!("")] {
            assert_eq!(err(fx.run(&fx.token(&with(claims(), "sub", sub)))), bad);
        }
        assert_eq!(err(fx.run(&fx.token(&without(claims(), "sub")))), bad);
    }

    #[test]
    fn jti_rules() {
        let mut fx = Fx::es256();
        for jti in [json!(1), json!(null), json!(""), json!(["j"])] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), "jti", jti)))),
                TokenError {
                    kind: Rejection::Malformed,
                    description: "invalid claim: jti"
                }
            );
        }
        assert_eq!(
            fx.run(&fx.token(&without(claims(), "jti")))
                .unwrap()
                .valid
                .jti,
            None
        );
        fx.policy.require_jti = true;
        assert_eq!(
            err(fx.run(&fx.token(&without(claims(), "jti")))),
            TokenError {
                kind: Rejection::Malformed,
                description: "missing claim: jti"
            }
        );
        fx.run(&fx.token(&claims())).unwrap();
    }

    #[test]
    fn scope_claims() {
        let fx = Fx::es256();
        let t = fx
            .run(&fx.token(&with(without(claims(), "scope"), "scp", json!(["a", "b"]))))
            .unwrap();
        assert_eq!(t.valid.scopes, ["a", "b"]);
        for (k, v) in [
            ("scope", json!(["a"])),
            ("scope", json!(5)),
            ("scp", json!(5)),
            ("scp", json!([1])),
        ] {
            assert_eq!(
                err(fx.run(&fx.token(&with(claims(), k, v)))).kind,
                Rejection::Malformed
            );
        }
    }

    #[test]
    fn payload_float_and_escapes_are_fine() {
        let fx = Fx::es256();
        let p = format!(
            r#"{{"iss":"https:\/\/id.example.com","aud":"api","sub":"al\u0069ce","exp":{}.0}}"#,
            NOW + 60
        );
        let t = fx
            .run(&mint_raw(
                r#"{"alg":"ES256","kid":"k1"}"#,
                &p,
                &fx.signer,
                Alg::ES256,
            ))
            .unwrap();
        assert_eq!(t.valid.sub, "alice");
        assert_eq!(t.valid.exp, NOW + 60);
    }

    #[test]
    fn random_mutations_never_panic() {
        let fx = Fx::es256();
        let tok = fx.token(&claims()).into_bytes();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = tok.clone();
            let i = (seed as usize) % m.len();
            m[i] = b"AZaz09-_.=+/ \x00"[(seed >> 20) as usize % 14];
            if let Ok(s) = std::str::from_utf8(&m) {
                if let Ok(d) = decode(s, MAX) {
                    let _ = verify(&d, &fx.policy, &fx.keys, NOW);
                }
            }
        }
    }
}
