//! Token verification: [`decode`] (structure, before the provider is known) and [`verify`] (key,
//! pinned algorithm, signature, claims).
//!
//! This is our own pipeline rather than `jsonwebtoken::decode` because the crate takes the
//! algorithm from the header, re-parses the key on every call, parses the payload twice and
//! skips wrong-typed claims (conf/HARDENING.md §0, §2). Here the algorithm is pinned by the key,
//! keys are parsed once per JWKS load, and the payload is parsed once, strictly.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::alg::Alg;
use super::claims::{self, ValidClaims, ValidationPolicy};
use super::jwk::{KeySet, VerifyingKey};
use super::jws::{b64url_decode, parse_header, parse_object_strict, split_compact};
use super::rejection::{Rejection, TokenError};

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
        return Err(TokenError::malformed("token too large"));
    }
    let parts = split_compact(token).ok_or(TokenError::malformed("malformed token"))?;
    let header_json = b64url_decode(parts.header).ok_or(TokenError::malformed("invalid header"))?;
    let header = parse_header(&header_json).map_err(TokenError::malformed)?;
    let payload_json =
        b64url_decode(parts.payload).ok_or(TokenError::malformed("invalid payload"))?;
    let claims =
        parse_object_strict(&payload_json).ok_or(TokenError::malformed("invalid payload"))?;
    let signature = b64url_decode(parts.signature)
        .ok_or(TokenError::malformed("invalid signature encoding"))?;
    let iss = match claims.get("iss") {
        Some(Value::String(iss)) => iss.clone(),
        _ => {
            return Err(TokenError::new(
                Rejection::WrongIssuer,
                "invalid claim: iss",
            ))
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
    let alg_refused = || TokenError::new(Rejection::BadSignature, "algorithm not allowed for key");
    let Some(key) = keys.get(&decoded.kid) else {
        return Err(if keys.lists_without_allowed_alg(&decoded.kid) {
            alg_refused()
        } else {
            TokenError::new(Rejection::UnknownKid, "unknown key id")
        });
    };
    if !key.serves(decoded.alg) || !policy.algorithms.contains(&decoded.alg) {
        return Err(alg_refused());
    }
    if !key.verify(
        decoded.alg,
        decoded.signing_input.as_bytes(),
        &decoded.signature,
    ) {
        return Err(TokenError::new(Rejection::BadSignature, "bad signature"));
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
mod tests {
    use super::*;
    use crate::auth::jwk::parse_jwks;
    use crate::auth::test_support::{
        b64, jwks, rsa_algs, rsa_pair, rsa_pair_2, with, without, xorshift, Signer,
    };
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://id.example.com";
    const MAX: usize = 8192;

    fn policy(algs: &[Alg]) -> ValidationPolicy {
        ValidationPolicy {
            provider: Arc::from("corp"),
            issuer: ISS.to_owned(),
            audiences: vec!["api".to_owned(), "gateway".to_owned()],
            algorithms: algs.to_vec(),
            leeway_secs: claims::DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: None,
            require_jti: false,
            accepted_types: vec![],
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW,
               "jti": "j-1", "scope": "users:read users:write"})
    }

    /// Header and payload given as raw JSON text, so duplicates and oddities survive.
    fn mint_raw(header: &str, payload: &str, signer: &Signer, alg: Alg) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let s = signer.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&s))
    }

    fn mint(header: &Value, payload: &Value, signer: &Signer, alg: Alg) -> String {
        mint_raw(&header.to_string(), &payload.to_string(), signer, alg)
    }

    fn hdr(alg: Alg, kid: &str) -> Value {
        json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"})
    }

    /// One provider with one key.
    struct Fx {
        signer: Signer,
        alg: Alg,
        kid: &'static str,
        keys: KeySet,
        policy: ValidationPolicy,
    }

    impl Fx {
        fn new(signer: Signer, alg: Alg) -> Fx {
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
        fn es256() -> Fx {
            Fx::new(Signer::es256(), Alg::ES256)
        }
        fn token(&self, payload: &Value) -> String {
            mint(&hdr(self.alg, self.kid), payload, &self.signer, self.alg)
        }
        fn run(&self, token: &str) -> Result<VerifiedToken, TokenError> {
            self.run_at(token, NOW)
        }
        /// The verified token minted from `payload`; panics if it was refused.
        fn accepts(&self, payload: &Value) -> VerifiedToken {
            self.run(&self.token(payload)).unwrap()
        }
        /// The refusal of a token minted from `payload`; panics if it was accepted.
        fn refuses_claims(&self, payload: &Value) -> TokenError {
            self.refuses(&self.token(payload))
        }
        #[track_caller]
        fn assert_claims_refused(&self, payload: &Value, expected: TokenError) {
            assert_eq!(self.refuses_claims(payload), expected);
        }
        /// Asserts that `token` is refused with exactly `expected`.
        #[track_caller]
        fn assert_refused(&self, token: &str, expected: TokenError) {
            assert_eq!(self.refuses(token), expected);
        }
        /// The refusal of `token`; panics if it was accepted.
        fn refuses(&self, token: &str) -> TokenError {
            err(self.run(token))
        }
        fn run_at(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
            let d = decode(token, MAX)?;
            verify(&d, &self.policy, &self.keys, now)
        }
    }

    fn err(r: Result<VerifiedToken, TokenError>) -> TokenError {
        r.expect_err("token was accepted")
    }

    /// Damage to the signature segment that the strict base64 check or the signature check may
    /// catch first: either refusal is right, acceptance never is.
    fn malformed_or_bad_signature(r: Result<VerifiedToken, TokenError>) -> bool {
        matches!(err(r).kind, Rejection::Malformed | Rejection::BadSignature)
    }

    // ---------------------------------------------------------------- happy paths

    #[test]
    fn every_algorithm_verifies() {
        let mut fxs = vec![
            Fx::es256(),
            Fx::new(Signer::es384(), Alg::ES384),
            Fx::new(Signer::ed25519(), Alg::EdDSA),
        ];
        for alg in rsa_algs() {
            fxs.push(Fx::new(Signer::rsa(), alg));
        }
        for fx in fxs {
            let t = fx.accepts(&claims());
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
                let e = fx.refuses(&tok);
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
            assert_eq!(fx.refuses(&tok).kind, Rejection::Malformed, "{h}");
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
                let e = fx.refuses(&tok);
                assert_eq!(e, TokenError::malformed("algorithm not supported"));
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
            let e = fx.refuses(&with_sig(&tok, &s));
            assert_eq!(e, TokenError::new(Rejection::BadSignature, "bad signature"));
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
        let e = fx.refuses(&with_sig(&good, der.as_ref()));
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
                fx.refuses(&with_sig(&good, &s)).kind,
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
            fx.assert_refused(
                &tok,
                TokenError::new(Rejection::BadSignature, "algorithm not allowed for key"),
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
            assert_eq!(fx.refuses(&t).kind, Rejection::Malformed, "{t}");
        }
        // Payload swapped under the original signature.
        let other = b64(with(claims(), "sub", json!("admin")).to_string().as_bytes());
        assert_eq!(
            fx.refuses(&format!("{h}.{other}.{s}")).kind,
            Rejection::BadSignature
        );
        // Header swapped (typ changed) under the original signature.
        let h2 = b64(json!({"alg":"ES256","kid":"k1"}).to_string().as_bytes());
        assert_eq!(
            fx.refuses(&format!("{h2}.{p}.{s}")).kind,
            Rejection::BadSignature
        );
        // Truncated signature (refused as non-canonical base64 or as a bad signature).
        for cut in 1..=8 {
            let t = format!("{h}.{p}.{}", &s[..s.len() - cut]);
            assert!(malformed_or_bad_signature(fx.run(&t)), "{cut}");
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
            fx.refuses(&format!("{input}.{}", b64(tag.as_ref()))).kind,
            Rejection::Malformed
        );
        // Empty signature segment with our real header.
        let tok = fx.token(&claims());
        let cut = tok.rfind('.').unwrap();
        assert_eq!(fx.refuses(&tok[..=cut]).kind, Rejection::Malformed);
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
                fx.refuses(&with_sig(&tok, &s)).kind,
                Rejection::BadSignature
            );
        }
        // A valid signature from a different RSA key.
        let other = Signer::Rsa(rsa_pair_2());
        let forged = mint(&hdr(Alg::RS256, "k1"), &claims(), &other, Alg::RS256);
        fx.assert_refused(
            &forged,
            TokenError::new(Rejection::BadSignature, "bad signature"),
        );
    }

    #[test]
    fn a11_alg_switching_inside_the_rsa_family() {
        for pinned in rsa_algs() {
            let fx = Fx::new(Signer::rsa(), pinned);
            fx.accepts(&claims());
            for other in rsa_algs().filter(|a| *a != pinned) {
                // Signed correctly for `other` with the very same private key.
                let tok = mint(&hdr(other, "k1"), &claims(), &fx.signer, other);
                assert_eq!(
                    fx.refuses(&tok),
                    TokenError::new(Rejection::BadSignature, "algorithm not allowed for key"),
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
            fx.refuses_claims(&claims()).description,
            "algorithm not allowed for key"
        );
    }

    // ---------------------------------------------------------------- 1.2 key injection / selection

    /// conf/README.md §3.4: Microsoft Entra ID and `oidc-provider` publish RSA keys without `alg`.
    #[test]
    fn rsa_key_without_alg_serves_the_listed_rsa_algorithms() {
        let signer = Signer::rsa();
        let jwks_doc = jwks(&[signer.jwk("k1")]);
        let sign = |alg: Alg| mint(&hdr(alg, "k1"), &claims(), &signer, alg);
        let run = |algs: &[Alg], alg: Alg| {
            let keys = parse_jwks(&jwks_doc, algs).unwrap().keys;
            verify(&decode(&sign(alg), MAX).unwrap(), &policy(algs), &keys, NOW)
        };
        let both = [Alg::RS256, Alg::PS256];
        assert!(run(&both, Alg::RS256).is_ok());
        assert!(run(&both, Alg::PS256).is_ok());
        // An algorithm the key does not serve is named as such, never as an unknown kid (which
        // would make the gateway refetch the JWKS for nothing).
        let refused = TokenError::new(Rejection::BadSignature, "algorithm not allowed for key");
        assert_eq!(err(run(&[Alg::RS256], Alg::PS256)), refused);
        assert_eq!(err(run(&[Alg::RS256, Alg::ES256], Alg::RS512)), refused);
        // Also when the provider allows none of the key's algorithms at all.
        assert_eq!(err(run(&[Alg::ES256], Alg::RS256)), refused);
    }

    #[test]
    fn k1_embedded_jwk_header_is_never_used() {
        let fx = Fx::es256();
        let attacker = Signer::es256();
        for kid in ["k1", "attacker"] {
            let h = json!({"alg":"ES256","kid":kid,"jwk":attacker.jwk(kid)});
            let tok = mint(&h, &claims(), &attacker, Alg::ES256);
            let e = fx.refuses(&tok);
            assert!(
                matches!(e.kind, Rejection::BadSignature | Rejection::UnknownKid),
                "{kid}"
            );
        }
        // x5c with the attacker's key as well.
        let h = json!({"alg":"ES256","kid":"k1","x5c":["MIIB"]});
        let forged = mint(&h, &claims(), &attacker, Alg::ES256);
        assert_eq!(fx.refuses(&forged).kind, Rejection::BadSignature);
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
            let forged = mint(&h, &claims(), &attacker, Alg::ES256);
            assert_eq!(fx.refuses(&forged).kind, Rejection::BadSignature);
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
                fx.refuses(&tok),
                TokenError::new(Rejection::UnknownKid, "unknown key id"),
                "{kid}"
            );
        }
        let long = mint(
            &hdr(Alg::ES256, &"k".repeat(300)),
            &claims(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(fx.refuses(&long).description, "invalid header: kid");
        let huge = mint(
            &hdr(Alg::ES256, &"k".repeat(64 * 1024)),
            &claims(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(fx.refuses(&huge).description, "token too large");
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
        assert_eq!(a.refuses(&clash).kind, Rejection::BadSignature);
    }

    #[test]
    fn k13_token_without_kid() {
        let fx = Fx::es256();
        let tok = mint(&json!({"alg":"ES256"}), &claims(), &fx.signer, Alg::ES256);
        fx.assert_refused(&tok, TokenError::malformed("missing header: kid"));
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
            fx.assert_refused(&tok, TokenError::malformed(why));
        }
        // A nested JWT as the payload (a JSON string) is not an object.
        let inner = fx.token(&claims());
        let tok = mint_raw(
            &hdr(Alg::ES256, "k1").to_string(),
            &json!(inner).to_string(),
            &fx.signer,
            Alg::ES256,
        );
        assert_eq!(fx.refuses(&tok).description, "invalid payload");
        // A 5-segment JWE.
        assert_eq!(
            fx.refuses("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")
                .kind,
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
                fx.refuses(&with_typ(bad)),
                TokenError::malformed("token type not accepted"),
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
            assert_eq!(fx.refuses(t).kind, Rejection::Malformed, "{t}");
        }
        assert_eq!(fx.refuses(&format!("{tok}.")).kind, Rejection::Malformed);
        for extra in ["A", "AA", "AAA", "AAAA"] {
            let t = format!("{tok}{extra}");
            assert!(malformed_or_bad_signature(fx.run(&t)), "{extra}");
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
                assert_eq!(fx.refuses(&p.join(".")).kind, Rejection::Malformed);
            }
            let mut p = parts.clone();
            p[i].insert(2, ' ');
            assert_eq!(fx.refuses(&p.join(".")).kind, Rejection::Malformed);
        }
        // The standard alphabet: re-encode the signature with + and /.
        let std_sig = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            crate::auth::jws::b64url_decode(&parts[2]).unwrap(),
        );
        let t = format!("{}.{}.{}", parts[0], parts[1], std_sig);
        assert_eq!(fx.refuses(&t).kind, Rejection::Malformed);
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
        fx.assert_refused(&t, TokenError::malformed("invalid signature encoding"));
    }

    #[test]
    fn h5_json_serialization() {
        let fx = Fx::es256();
        let tok = fx.token(&claims());
        let p: Vec<&str> = tok.split('.').collect();
        let js = json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]})
            .to_string();
        assert_eq!(fx.refuses(&js).kind, Rejection::Malformed);
        let flat = json!({"payload": p[1], "protected": p[0], "signature": p[2]}).to_string();
        assert_eq!(fx.refuses(&flat).kind, Rejection::Malformed);
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
                fx.refuses(&sign(h, p)),
                TokenError::malformed("invalid payload"),
                "{p}"
            );
        }
        for hd in [
            r#"{"alg":"none","alg":"ES256","kid":"k1"}"#,
            r#"{"alg":"ES256","kid":"k1","alg":"ES256"}"#,
            r#"{"alg":"ES256","kid":"x","kid":"k1"}"#,
        ] {
            let ok_payload = claims().to_string();
            fx.assert_refused(
                &sign(hd, &ok_payload),
                TokenError::malformed("invalid header"),
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
            assert_eq!(fx.refuses(&tok).description, "invalid payload", "{p}");
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
        assert_eq!(fx.refuses(&tok).description, "invalid payload");
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
        assert_eq!(fx.refuses_claims(&big).description, "token too large");
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
                TokenError::new(Rejection::WrongIssuer, "invalid claim: iss"),
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
        let e = |exp: Value| fx.refuses_claims(&with(claims(), "exp", exp));
        // C1 missing.
        fx.assert_claims_refused(
            &without(claims(), "exp"),
            TokenError::malformed("missing claim: exp"),
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
                TokenError::malformed("invalid claim: exp"),
                "{bad}"
            );
        }
        // C3 float, rounded.
        let t = fx.accepts(&with(claims(), "exp", json!(NOW as f64 + 600.7)));
        assert_eq!(t.valid.exp, NOW + 601);
        // C4 1e10: accepted as a date (max_lifetime is the policy for far-future dates).
        assert_eq!(
            fx.accepts(&with(claims(), "exp", json!(1e10))).valid.exp,
            10_000_000_000
        );
        // C6 zero / past.
        assert_eq!(
            e(json!(0)),
            TokenError::new(Rejection::Expired, "token expired")
        );
        assert_eq!(e(json!(NOW - 3600)).kind, Rejection::Expired);
        // C8 inside leeway, C9 outside.
        fx.accepts(&with(claims(), "exp", json!(NOW - 20)));
        fx.accepts(&with(claims(), "exp", json!(NOW - 30)));
        assert_eq!(e(json!(NOW - 31)).kind, Rejection::Expired);
        assert_eq!(e(json!(NOW - 45)).kind, Rejection::Expired);
    }

    #[test]
    fn c7_max_lifetime() {
        let mut fx = Fx::es256();
        fx.policy.max_lifetime_secs = Some(24 * 3600);
        let century = NOW + 100 * 365 * 24 * 3600;
        let too_long = TokenError::malformed("token lifetime too long");
        fx.assert_claims_refused(&with(claims(), "exp", json!(century)), too_long);
        // Measured from iat when present, else from now.
        let p = with(
            with(claims(), "iat", json!(NOW - 3600)),
            "exp",
            json!(NOW + 23 * 3600 + 1),
        );
        fx.assert_claims_refused(&p, too_long);
        let p = with(
            with(claims(), "iat", json!(NOW - 3600)),
            "exp",
            json!(NOW + 23 * 3600),
        );
        fx.accepts(&p);
        let p = with(without(claims(), "iat"), "exp", json!(NOW + 24 * 3600 + 1));
        fx.assert_claims_refused(&p, too_long);
        let p = with(without(claims(), "iat"), "exp", json!(NOW + 24 * 3600));
        fx.accepts(&p);
    }

    #[test]
    fn c10_to_c13_nbf_iat() {
        let fx = Fx::es256();
        let nyv = TokenError::new(Rejection::NotYetValid, "token not yet valid");
        // C10
        fx.assert_claims_refused(&with(claims(), "nbf", json!(NOW + 3600)), nyv);
        fx.assert_claims_refused(&with(claims(), "nbf", json!(NOW + 31)), nyv);
        let t = fx.accepts(&with(claims(), "nbf", json!(NOW + 30)));
        assert_eq!(t.valid.nbf, Some(NOW + 30));
        // C11, C12: wrong types and negatives.
        for bad in [
            json!((NOW + 3600).to_string()),
            json!(-5),
            json!(null),
            json!(false),
        ] {
            fx.assert_claims_refused(
                &with(claims(), "nbf", bad),
                TokenError::malformed("invalid claim: nbf"),
            );
        }
        // C13: iat far in the future, or not a date.
        fx.assert_claims_refused(
            &with(claims(), "iat", json!(NOW + 86400)),
            TokenError::new(Rejection::NotYetValid, "iat in the future"),
        );
        fx.accepts(&with(claims(), "iat", json!(NOW + 30)));
        for bad in [json!("x"), json!(-1), json!({})] {
            fx.assert_claims_refused(
                &with(claims(), "iat", bad),
                TokenError::malformed("invalid claim: iat"),
            );
        }
        // iat is optional.
        assert_eq!(fx.accepts(&without(claims(), "iat")).valid.iat, None);
    }

    #[test]
    fn leeway_is_clamped() {
        let mut fx = Fx::es256();
        fx.policy.leeway_secs = 100_000;
        assert_eq!(
            fx.refuses_claims(&with(claims(), "exp", json!(NOW - 301)))
                .kind,
            Rejection::Expired
        );
        fx.accepts(&with(claims(), "exp", json!(NOW - 300)));
        fx.policy.leeway_secs = -100;
        assert_eq!(
            fx.refuses_claims(&with(claims(), "exp", json!(NOW - 1)))
                .kind,
            Rejection::Expired
        );
        fx.accepts(&with(claims(), "exp", json!(NOW)));
        // now near i64::MAX does not overflow.
        assert_eq!(
            err(fx.run_at(&fx.token(&claims()), i64::MAX)).kind,
            Rejection::Expired
        );
    }

    #[test]
    fn c14_to_c17_iss() {
        let fx = Fx::es256();
        let wrong = TokenError::new(Rejection::WrongIssuer, "invalid claim: iss");
        // The caller chose this provider although iss differs (defence in depth in verify).
        for iss in [
            "https://id.example.com/",
            "https://ID.example.com",
            "https://evil.example.com",
            "",
        ] {
            assert_eq!(
                fx.refuses_claims(&with(claims(), "iss", json!(iss))),
                wrong,
                "{iss}"
            );
        }
        for iss in [json!(["https://evil/", ISS]), json!(123), json!({})] {
            fx.assert_claims_refused(&with(claims(), "iss", iss), wrong);
        }
        fx.assert_claims_refused(&without(claims(), "iss"), wrong);
    }

    #[test]
    fn c18_to_c22_aud() {
        let mut fx = Fx::es256();
        let wrong = TokenError::new(Rejection::WrongAudience, "invalid claim: aud");
        fx.accepts(&with(claims(), "aud", json!(["other", "gateway"])));
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
                fx.refuses_claims(&with(claims(), "aud", aud.clone())),
                wrong,
                "{aud}"
            );
        }
        fx.assert_claims_refused(&without(claims(), "aud"), wrong);
        // C22: a policy with no audience accepts no token.
        fx.policy.audiences.clear();
        fx.assert_refused(&fx.token(&claims()), wrong);
    }

    #[test]
    fn c23_sub() {
        let fx = Fx::es256();
        let bad = TokenError::malformed("invalid claim: sub");
        for sub in [json!(42), json!(null), json!(["alice"]), json!("")] {
            fx.assert_claims_refused(&with(claims(), "sub", sub), bad);
        }
        fx.assert_claims_refused(&without(claims(), "sub"), bad);
    }

    #[test]
    fn jti_rules() {
        let mut fx = Fx::es256();
        for jti in [json!(1), json!(null), json!(""), json!(["j"])] {
            fx.assert_claims_refused(
                &with(claims(), "jti", jti),
                TokenError::malformed("invalid claim: jti"),
            );
        }
        assert_eq!(fx.accepts(&without(claims(), "jti")).valid.jti, None);
        fx.policy.require_jti = true;
        fx.assert_claims_refused(
            &without(claims(), "jti"),
            TokenError::malformed("missing claim: jti"),
        );
        fx.accepts(&claims());
    }

    #[test]
    fn scope_claims() {
        let fx = Fx::es256();
        let t = fx.accepts(&with(without(claims(), "scope"), "scp", json!(["a", "b"])));
        assert_eq!(t.valid.scopes, ["a", "b"]);
        for (k, v) in [
            ("scope", json!(["a"])),
            ("scope", json!(5)),
            ("scp", json!(5)),
            ("scp", json!([1])),
        ] {
            assert_eq!(
                fx.refuses_claims(&with(claims(), k, v)).kind,
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
        for seed in xorshift(0x9e37_79b9_7f4a_7c15).take(5000) {
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
