//! JWKS parsing: each key is filtered, pinned to exactly one algorithm and parsed once, at load.
//!
//! A naive `find(kid)` + build-key-from-JWK + take-alg-from-header is how most JWT bypasses
//! happen (conf/HARDENING.md §0.5, §0.12, K8-K12, A3, A7, A11). So the key decides the algorithm:
//! a JWK's `alg` becomes the one algorithm it will ever verify; without one, its type/curve does
//! (EC and OKP keys imply exactly one), and an RSA key without `alg` (Microsoft Entra ID and
//! `oidc-provider` publish these) serves every RSA algorithm the provider lists and no other.
//! Everything that could make a key ambiguous or weak is refused here, per key, so that one
//! bad entry does not take the issuer's other keys down with it.
//!
//! Nothing in this module may panic on a JWKS body: every field is type-checked, every length is
//! checked before the crypto library sees it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use super::alg::Alg;
use super::jws::{b64url_decode, parse_object_strict, valid_kid};

/// Source of [`VerifyingKey::uid`]. Starts at 1 so 0 can never name a key.
static NEXT_KEY_UID: AtomicU64 = AtomicU64::new(1);

/// One public key, parsed once per algorithm it serves.
pub struct VerifyingKey {
    pub kid: String,
    /// Unique per parsed key in this process. The token cache records it so that entries
    /// verified by a key that has since left the JWKS can be dropped (`TokenCache::retain_keys`).
    pub uid: u64,
    /// Never empty. One entry except for an RSA key without `alg` (at most the six RSA
    /// algorithms); the crypto library binds a parsed key to one algorithm.
    parsed: Vec<(Alg, ParsedPublicKey)>,
    /// Exact signature length for this key: 64/96 for ECDSA (raw r||s, never DER: A5), 64 for
    /// Ed25519, the modulus length for RSA. Checked before the crypto call.
    sig_len: usize,
}

impl VerifyingKey {
    /// Whether this key verifies tokens signed with `alg`.
    pub fn serves(&self, alg: Alg) -> bool {
        self.parsed.iter().any(|(a, _)| *a == alg)
    }

    /// The algorithms this key serves, in the order they were derived.
    pub fn algorithms(&self) -> impl Iterator<Item = Alg> + '_ {
        self.parsed.iter().map(|(alg, _)| *alg)
    }

    /// Whether `signature` is a valid `alg` signature of `signing_input` under this key; false
    /// for an algorithm the key does not serve.
    pub fn verify(&self, alg: Alg, signing_input: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.sig_len
            && self
                .parsed
                .iter()
                .find(|(a, _)| *a == alg)
                .is_some_and(|(_, key)| key.verify_sig(signing_input, signature).is_ok())
    }

    /// Same kid, algorithms and public key: a JWKS refresh that still carries this key may keep
    /// the old `Arc` (and uid), so the token cache stays warm across refreshes.
    pub fn same_key(&self, other: &VerifyingKey) -> bool {
        self.kid == other.kid
            && self.parsed.len() == other.parsed.len()
            && self
                .parsed
                .iter()
                .zip(&other.parsed)
                .all(|((a, k), (b, l))| a == b && k.as_ref() == l.as_ref())
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms().collect::<Vec<_>>())
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one provider, by kid.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// Kids of well-formed entries left out only because the provider allows none of their
    /// algorithms. A token naming one is refused as "algorithm not allowed for key", not as an
    /// unknown kid, so it never triggers a refetch that could not help.
    without_allowed_alg: HashSet<String>,
}

impl KeySet {
    pub fn empty() -> KeySet {
        KeySet::default()
    }

    /// Exact-match lookup (K4: a kid is a map key, never a path, query or command).
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }

    /// Whether the JWKS lists `kid` with only algorithms the provider does not allow.
    pub fn lists_without_allowed_alg(&self, kid: &str) -> bool {
        self.without_allowed_alg.contains(kid)
    }

    /// Sorted, for `/admin/status` and stable logs.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort_unstable();
        kids
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<VerifyingKey>> {
        self.keys.values()
    }

    /// The uids of these keys, for `TokenCache::retain_keys`.
    pub fn uids(&self) -> HashSet<u64> {
        self.keys.values().map(|k| k.uid).collect()
    }
}

/// A JWK that was left out of the key set, and why (for logs and `/admin/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedKey {
    pub kid: Option<String>,
    pub reason: JwkError,
}

/// Why a whole JWKS document is unusable (the caller keeps its last good set).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS is {0} bytes, the limit is {MAX_JWKS_BYTES}")]
    TooLarge(usize),
    #[error("JWKS is not a JSON object (or has duplicate members)")]
    NotAnObject,
    #[error("JWKS `keys` is not an array")]
    KeysNotAnArray,
    #[error("JWKS has no `keys` array")]
    NoKeys,
    #[error("JWKS lists {0} keys, the limit is {MAX_JWKS_KEYS}")]
    TooManyKeys(usize),
}

/// Why one JWK was left out; the other keys of the set stay usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("duplicate kid")]
    DuplicateKid,
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing `{0}`")]
    Missing(&'static str),
    #[error("`{0}` is not a string")]
    NotAString(&'static str),
    #[error("`{0}` is not base64url")]
    NotBase64url(&'static str),
    #[error("`kid` must be 1 to 256 printable ASCII characters")]
    UnfitKid,
    #[error("`use` is not \"sig\"")]
    NotForSignatures,
    #[error("`key_ops` is not an array")]
    KeyOpsNotAnArray,
    #[error("`key_ops` is not an array of strings")]
    KeyOpsNotStrings,
    #[error("`key_ops` does not include \"verify\"")]
    KeyOpsWithoutVerify,
    #[error("{kty} curve {crv:?} not supported")]
    UnsupportedCurve { kty: String, crv: String },
    #[error("symmetric (`oct`) keys are never used")]
    Symmetric,
    #[error("key type {0:?} not supported")]
    UnsupportedKeyType(String),
    #[error("alg {0:?} not supported")]
    UnsupportedAlg(String),
    #[error("alg {0} does not match the key type")]
    AlgDoesNotFit(Alg),
    #[error("no RSA algorithm is allowed")]
    NoRsaAlgAllowed,
    #[error("alg {0} is not allowed for this provider")]
    AlgNotAllowed(Alg),
    #[error("RSA modulus is {0} bits, it must be 2048 to 8192")]
    RsaModulusSize(usize),
    #[error("RSA exponent must be odd, at least 3 and at most 33 bits")]
    RsaExponent,
    #[error("EC `x` and `y` must be {0} bytes each")]
    EcCoordinateLength(usize),
    #[error("Ed25519 `x` must be 32 bytes")]
    Ed25519Length,
    #[error("invalid {0} public key")]
    Invalid(&'static str),
}

#[derive(Debug)]
pub struct ParsedJwks {
    pub keys: KeySet,
    pub rejected: Vec<RejectedKey>,
}

/// Largest JWKS, discovery document or key file accepted. Real key sets are a few KiB; the cap
/// bounds memory and parse time if an IdP (or whoever sits in front of it) misbehaves.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys a JWKS may list.
pub const MAX_JWKS_KEYS: usize = 100;

/// Parse a JWKS body, keeping the keys that pass the filter (module docs) and reporting the rest.
///
/// `Err` only when the document as a whole is unusable: too big, not a JSON object (duplicate
/// members anywhere count as not JSON: which of two values the IdP meant is unknowable), no
/// `keys` array, or more than 100 keys. The caller then keeps its last good set.
pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<ParsedJwks, JwksError> {
    parse_jwks_reusing(body, allowed, &KeySet::empty())
}

/// [`parse_jwks`], but a key identical to one in `previous` (same kid, alg and public key) is
/// kept as the same `Arc`, with the same uid, so a refresh that changes nothing does not empty
/// the token cache.
pub fn parse_jwks_reusing(
    body: &[u8],
    allowed: &[Alg],
    previous: &KeySet,
) -> Result<ParsedJwks, JwksError> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge(body.len()));
    }
    let doc = parse_object_strict(body).ok_or(JwksError::NotAnObject)?;
    let entries = match doc.get("keys") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(JwksError::KeysNotAnArray),
        None => return Err(JwksError::NoKeys),
    };
    if entries.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooManyKeys(entries.len()));
    }

    // K11: a kid that names two entries names no key at all; count every entry that carries one,
    // including entries refused for other reasons, so "which one did the IdP mean" never arises.
    let mut kid_counts: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        if let Some(Value::String(kid)) = entry.get("kid") {
            *kid_counts.entry(kid.as_str()).or_default() += 1;
        }
    }

    let mut keys = HashMap::new();
    let mut without_allowed_alg = HashSet::new();
    let mut rejected = Vec::new();
    for entry in entries {
        let kid = match entry.get("kid") {
            Some(Value::String(kid)) => Some(kid.as_str()),
            _ => None,
        };
        let reject = |reason: JwkError| RejectedKey {
            // Only a printable, bounded kid is echoed into logs/status.
            kid: kid.filter(|k| valid_kid(k)).map(str::to_owned),
            reason,
        };
        if kid.is_some_and(|k| kid_counts.get(k).copied().unwrap_or(0) > 1) {
            rejected.push(reject(JwkError::DuplicateKid));
            continue;
        }
        match parse_jwk(entry, allowed) {
            Ok(key) => {
                let key = match previous.get(&key.kid) {
                    Some(old) if old.same_key(&key) => Arc::clone(old),
                    _ => Arc::new(key),
                };
                keys.insert(key.kid.clone(), key);
            }
            Err(reason) => {
                if let (JwkError::AlgNotAllowed(_) | JwkError::NoRsaAlgAllowed, Some(kid)) =
                    (&reason, kid)
                {
                    without_allowed_alg.insert(kid.to_owned());
                }
                rejected.push(reject(reason));
            }
        }
    }
    Ok(ParsedJwks {
        keys: KeySet {
            keys,
            without_allowed_alg,
        },
        rejected,
    })
}

fn str_member<'v>(
    jwk: &'v Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'v str>, JwkError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwkError::NotAString(name)),
    }
}

fn required_b64(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = str_member(jwk, name)?.ok_or(JwkError::Missing(name))?;
    b64url_decode(text).ok_or(JwkError::NotBase64url(name))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    /// The algorithm this key type implies on its own, if there is exactly one.
    fn implied_alg(self) -> Option<Alg> {
        match self {
            KeyType::Rsa => None,
            KeyType::P256 => Some(Alg::ES256),
            KeyType::P384 => Some(Alg::ES384),
            KeyType::Ed25519 => Some(Alg::EdDSA),
        }
    }

    fn fits(self, alg: Alg) -> bool {
        match self {
            KeyType::Rsa => alg.is_rsa(),
            _ => self.implied_alg() == Some(alg),
        }
    }
}

/// One JWK -> one pinned, parsed key, or the reason it cannot be used.
fn parse_jwk(entry: &Value, allowed: &[Alg]) -> Result<VerifyingKey, JwkError> {
    let jwk = entry.as_object().ok_or(JwkError::NotAnObject)?;
    let kid = match str_member(jwk, "kid")? {
        None => return Err(JwkError::Missing("kid")),
        Some(k) if !valid_kid(k) => return Err(JwkError::UnfitKid),
        Some(k) => k,
    };

    // K8: a key published for encryption must never verify a signature.
    match str_member(jwk, "use")? {
        None | Some("sig") => {}
        Some(_) => return Err(JwkError::NotForSignatures),
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) => {
            if !ops.iter().all(Value::is_string) {
                return Err(JwkError::KeyOpsNotStrings);
            }
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Err(JwkError::KeyOpsWithoutVerify);
            }
        }
        Some(_) => return Err(JwkError::KeyOpsNotAnArray),
    }

    let kty = str_member(jwk, "kty")?.ok_or(JwkError::Missing("kty"))?;
    let key_type = match kty {
        "RSA" => KeyType::Rsa,
        "EC" | "OKP" => {
            let crv = str_member(jwk, "crv")?.ok_or(JwkError::Missing("crv"))?;
            match (kty, crv) {
                ("EC", "P-256") => KeyType::P256,
                ("EC", "P-384") => KeyType::P384,
                ("OKP", "Ed25519") => KeyType::Ed25519,
                _ => {
                    return Err(JwkError::UnsupportedCurve {
                        kty: kty.to_owned(),
                        crv: crv.to_owned(),
                    })
                }
            }
        }
        // K12: a symmetric key in a JWKS is a shared secret published to the world.
        "oct" => return Err(JwkError::Symmetric),
        other => return Err(JwkError::UnsupportedKeyType(other.to_owned())),
    };

    // A7/A11: the key, not the token header, decides the algorithm.
    let algs: Vec<Alg> = match str_member(jwk, "alg")? {
        Some(name) => {
            let alg = Alg::parse(name).ok_or_else(|| JwkError::UnsupportedAlg(name.to_owned()))?;
            if !key_type.fits(alg) {
                return Err(JwkError::AlgDoesNotFit(alg));
            }
            if !allowed.contains(&alg) {
                return Err(JwkError::AlgNotAllowed(alg));
            }
            vec![alg]
        }
        None => match key_type.implied_alg() {
            Some(alg) if allowed.contains(&alg) => vec![alg],
            Some(alg) => return Err(JwkError::AlgNotAllowed(alg)),
            None => {
                let rsa: Vec<Alg> = allowed.iter().copied().filter(|a| a.is_rsa()).collect();
                if rsa.is_empty() {
                    return Err(JwkError::NoRsaAlgAllowed);
                }
                rsa
            }
        },
    };

    let (parsed, sig_len) = match key_type {
        KeyType::Rsa => rsa_keys(jwk, &algs)?,
        KeyType::P256 => ec_key(jwk, 32, Alg::ES256, &sig::ECDSA_P256_SHA256_FIXED)?,
        KeyType::P384 => ec_key(jwk, 48, Alg::ES384, &sig::ECDSA_P384_SHA384_FIXED)?,
        KeyType::Ed25519 => {
            let x = required_b64(jwk, "x")?;
            if x.len() != 32 {
                return Err(JwkError::Ed25519Length);
            }
            let key = ParsedPublicKey::new(&sig::ED25519, &x)
                .map_err(|_| JwkError::Invalid("Ed25519"))?;
            (vec![(Alg::EdDSA, key)], 64)
        }
    };
    Ok(VerifyingKey {
        kid: kid.to_owned(),
        uid: NEXT_KEY_UID.fetch_add(1, Ordering::Relaxed),
        parsed,
        sig_len,
    })
}

/// Bit length of a big-endian unsigned integer without leading zero bytes.
fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

fn strip_leading_zeros(be: &[u8]) -> &[u8] {
    let zeros = be.iter().take_while(|b| **b == 0).count();
    &be[zeros..]
}

/// K9: modulus 2048..=8192 bits (RFC 7518 §3.3), exponent odd, at least 3, and at most 33 bits
/// (the largest the crypto library will verify with; a key it would refuse on every request is
/// refused here instead).
fn rsa_keys(
    jwk: &Map<String, Value>,
    algs: &[Alg],
) -> Result<(Vec<(Alg, ParsedPublicKey)>, usize), JwkError> {
    let n_raw = required_b64(jwk, "n")?;
    let e_raw = required_b64(jwk, "e")?;
    let n = strip_leading_zeros(&n_raw);
    let e = strip_leading_zeros(&e_raw);
    let bits = bit_len(n);
    if !(2048..=8192).contains(&bits) {
        return Err(JwkError::RsaModulusSize(bits));
    }
    let e_odd = e.last().is_some_and(|b| b & 1 == 1);
    if !e_odd || bit_len(e) > 33 || (e.len() == 1 && e[0] < 3) {
        return Err(JwkError::RsaExponent);
    }
    let mut parsed = Vec::with_capacity(algs.len());
    for &alg in algs {
        // `fits` already tied an RSA key to RSA algorithms; this only keeps the lookup total.
        let params = alg.rsa_params().ok_or(JwkError::AlgDoesNotFit(alg))?;
        let key = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .map_err(|_| JwkError::Invalid("RSA"))?;
        parsed.push((alg, key));
    }
    Ok((parsed, n.len()))
}

/// Uncompressed SEC1 point from fixed-length `x`/`y` (K10); the library checks it is on the curve.
fn ec_key(
    jwk: &Map<String, Value>,
    coord_len: usize,
    alg: Alg,
    verification: &'static sig::EcdsaVerificationAlgorithm,
) -> Result<(Vec<(Alg, ParsedPublicKey)>, usize), JwkError> {
    let x = required_b64(jwk, "x")?;
    let y = required_b64(jwk, "y")?;
    if x.len() != coord_len || y.len() != coord_len {
        return Err(JwkError::EcCoordinateLength(coord_len));
    }
    let mut point = Vec::with_capacity(1 + 2 * coord_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = ParsedPublicKey::new(verification, &point).map_err(|_| JwkError::Invalid("EC"))?;
    Ok((vec![(alg, key)], 2 * coord_len))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::auth::test_support::{b64, jwks, rsa_algs, with, without, xorshift, Signer};
    use serde_json::json;

    /// Parse a one-key JWKS and return the refusal reason (panics if the key was accepted).
    fn refused(jwk: Value, allowed: &[Alg]) -> String {
        let parsed = parse_jwks(&jwks(&[jwk]), allowed).unwrap();
        assert!(parsed.keys.is_empty(), "key was accepted");
        assert_eq!(parsed.rejected.len(), 1);
        parsed.rejected[0].reason.to_string()
    }

    fn accepted(jwk: Value, allowed: &[Alg]) -> Arc<VerifyingKey> {
        let parsed = parse_jwks(&jwks(&[jwk]), allowed).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let key = parsed.keys.iter().next().unwrap().clone();
        key
    }

    #[test]
    fn keys_of_every_type_load_and_verify() {
        let all = Alg::ALL;
        let cases = [
            (Signer::es256(), Alg::ES256),
            (Signer::es384(), Alg::ES384),
            (Signer::ed25519(), Alg::EdDSA),
        ];
        for (signer, alg) in cases {
            let key = accepted(signer.jwk("k"), &all);
            assert_eq!(key.algorithms().collect::<Vec<_>>(), [alg]);
            let s = signer.sign(alg, b"msg");
            assert!(key.verify(alg, b"msg", &s));
            assert!(!key.verify(alg, b"msh", &s));
        }
        for alg in rsa_algs() {
            let signer = Signer::rsa();
            let key = accepted(with(signer.jwk("r"), "alg", json!(alg.as_str())), &all);
            assert_eq!(key.algorithms().collect::<Vec<_>>(), [alg]);
            assert!(key.verify(alg, b"msg", &signer.sign(alg, b"msg")));
            // A key with `alg` serves that one algorithm, whatever else the provider allows.
            for other in rsa_algs().filter(|o| *o != alg) {
                assert!(!key.serves(other));
                assert!(!key.verify(other, b"msg", &signer.sign(other, b"msg")));
            }
        }
    }

    #[test]
    fn alg_derivation() {
        // RSA without alg: every RSA algorithm the provider allows, and only those.
        let signer = Signer::rsa();
        let rsa = signer.jwk("r");
        let key = accepted(rsa.clone(), &[Alg::ES256, Alg::PS256]);
        assert_eq!(key.algorithms().collect::<Vec<_>>(), [Alg::PS256]);
        let key = accepted(rsa.clone(), &[Alg::RS256, Alg::ES256, Alg::PS256]);
        assert_eq!(
            key.algorithms().collect::<Vec<_>>(),
            [Alg::RS256, Alg::PS256]
        );
        for alg in [Alg::RS256, Alg::PS256] {
            assert!(key.verify(alg, b"msg", &signer.sign(alg, b"msg")));
        }
        // Not the signature of another algorithm, nor an algorithm the provider left out.
        assert!(!key.verify(Alg::PS256, b"msg", &signer.sign(Alg::RS256, b"msg")));
        assert!(!key.verify(Alg::RS512, b"msg", &signer.sign(Alg::RS512, b"msg")));
        assert!(!key.serves(Alg::ES256));
        assert!(refused(rsa.clone(), &[Alg::ES256]).contains("no RSA"));
        // Derived EC/OKP algs must still be allowed.
        assert!(refused(Signer::es256().jwk("e"), &[Alg::RS256]).contains("not allowed"));
        assert!(refused(Signer::ed25519().jwk("e"), &[Alg::ES256]).contains("not allowed"));
        // A JWK alg must be allowed too.
        assert!(refused(with(rsa, "alg", json!("RS512")), &[Alg::RS256]).contains("not allowed"));
    }

    #[test]
    fn k8_use_key_ops_alg() {
        let all = Alg::ALL;
        let rsa = || with(Signer::rsa().jwk("r"), "alg", json!("RS256"));
        assert!(refused(with(rsa(), "use", json!("enc")), &all).contains("use"));
        assert!(refused(with(rsa(), "use", json!(1)), &all).contains("use"));
        assert_eq!(
            accepted(with(rsa(), "use", json!("sig")), &all)
                .algorithms()
                .collect::<Vec<_>>(),
            [Alg::RS256]
        );
        assert!(refused(with(rsa(), "key_ops", json!(["encrypt"])), &all).contains("key_ops"));
        assert!(refused(with(rsa(), "key_ops", json!([])), &all).contains("key_ops"));
        assert!(refused(with(rsa(), "key_ops", json!("verify")), &all).contains("key_ops"));
        assert!(refused(with(rsa(), "key_ops", json!(["verify", 1])), &all).contains("key_ops"));
        accepted(with(rsa(), "key_ops", json!(["sign", "verify"])), &all);
        for alg in ["RSA-OAEP", "HS256", "none", "rs256", "ES256"] {
            let reason = refused(with(rsa(), "alg", json!(alg)), &all);
            assert!(reason.contains("alg"), "{alg}: {reason}");
        }
        assert!(refused(with(rsa(), "alg", json!(256)), &all).contains("alg"));
    }

    #[test]
    fn a7_curve_and_alg_must_agree() {
        for (signer, member, value, why) in [
            (Signer::es256(), "alg", "ES384", "does not match"),
            (Signer::es384(), "alg", "ES256", "does not match"),
            (Signer::ed25519(), "alg", "ES256", "does not match"),
            (Signer::es256(), "alg", "RS256", "does not match"),
            (Signer::rsa(), "alg", "EdDSA", "does not match"),
            // The curve decides the coordinate length: a P-384 key labelled P-256 is refused.
            (Signer::es384(), "crv", "P-256", "32 bytes"),
            (Signer::es256(), "crv", "P-521", "not supported"),
            (Signer::ed25519(), "crv", "X25519", "not supported"),
        ] {
            let reason = refused(with(signer.jwk("e"), member, json!(value)), &Alg::ALL);
            assert!(reason.contains(why), "{member}={value}: {reason}");
        }
    }

    #[test]
    fn k9_rsa_size_and_exponent() {
        let all = [Alg::RS256];
        let base = Signer::rsa().jwk("r");
        let n = b64url_decode(base["n"].as_str().unwrap()).unwrap();
        // 512 and 1024-bit moduli.
        for bytes in [64usize, 128, 255] {
            let mut small = n[..bytes].to_vec();
            small[0] |= 0x80;
            let reason = refused(with(base.clone(), "n", json!(b64(&small))), &all);
            assert!(reason.contains("bits"), "{reason}");
        }
        // Over 8192 bits, and a huge (100 KB) modulus: refused before any bignum work.
        for bytes in [1025usize, 100_000] {
            let big = vec![0xffu8; bytes];
            assert!(refused(with(base.clone(), "n", json!(b64(&big))), &all).contains("bits"));
        }
        // Leading zeros on n are tolerated (same integer).
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        accepted(with(base.clone(), "n", json!(b64(&padded))), &all);
        for e in [&[1u8][..], &[0], &[2], &[1, 0, 0], &[], &[1, 0, 0, 0, 0, 1]] {
            let reason = refused(with(base.clone(), "e", json!(b64(e))), &all);
            assert!(reason.contains("exponent"), "{e:?}: {reason}");
        }
        accepted(with(base.clone(), "e", json!(b64(&[3]))), &all);
        assert!(refused(without(base.clone(), "n"), &all).contains("missing `n`"));
        assert!(refused(without(base.clone(), "e"), &all).contains("missing `e`"));
        assert!(refused(with(base.clone(), "n", json!(12)), &all).contains("not a string"));
        assert!(refused(with(base, "n", json!("a+b/")), &all).contains("base64url"));
    }

    #[test]
    fn k10_malformed_points_never_panic() {
        let all = Alg::ALL;
        let ed = Signer::ed25519().jwk("e");
        for len in [0usize, 3, 31, 33, 64] {
            assert!(
                refused(with(ed.clone(), "x", json!(b64(&vec![7u8; len]))), &all)
                    .contains("32 bytes")
            );
        }
        let ec = Signer::es256().jwk("e");
        assert!(refused(with(ec.clone(), "x", json!(b64(&[1u8; 3]))), &all).contains("32 bytes"));
        assert!(refused(with(ec.clone(), "y", json!(b64(&[1u8; 33]))), &all).contains("32 bytes"));
        // Right lengths, not on the curve.
        assert!(refused(with(ec.clone(), "y", json!(b64(&[1u8; 32]))), &all).contains("invalid EC"));
        assert!(refused(with(ec.clone(), "x", json!(b64(&[0u8; 32]))), &all).contains("invalid EC"));
        assert!(refused(without(ec.clone(), "y"), &all).contains("missing `y`"));
        assert!(refused(without(ec.clone(), "crv"), &all).contains("crv"));
        assert!(refused(with(ec, "crv", json!(null)), &all).contains("crv"));
    }

    #[test]
    fn k11_duplicate_kid_refuses_every_copy() {
        let a = Signer::es256().jwk("dup");
        let b = Signer::es256().jwk("dup");
        let c = Signer::es256().jwk("other");
        let parsed = parse_jwks(&jwks(&[a, b, c]), &Alg::ALL).unwrap();
        assert_eq!(parsed.keys.kids(), vec!["other".to_owned()]);
        assert_eq!(parsed.rejected.len(), 2);
        assert!(parsed
            .rejected
            .iter()
            .all(|r| r.reason == JwkError::DuplicateKid && r.kid.as_deref() == Some("dup")));
        // A refused twin (use: enc) still makes the kid ambiguous.
        let sig_key = Signer::es256().jwk("k");
        let enc_key = with(Signer::es256().jwk("k"), "use", json!("enc"));
        let parsed = parse_jwks(&jwks(&[sig_key, enc_key]), &Alg::ALL).unwrap();
        assert!(parsed.keys.is_empty());
    }

    #[test]
    fn k12_oct_and_unknown_types() {
        let oct = json!({"kty":"oct","kid":"h","k":"c2VjcmV0","alg":"HS256"});
        assert!(refused(oct, &Alg::ALL).contains("oct"));
        assert!(refused(json!({"kty":"XYZ","kid":"x"}), &Alg::ALL).contains("not supported"));
        assert!(refused(json!({"kid":"x"}), &Alg::ALL).contains("kty"));
    }

    #[test]
    fn kid_rules() {
        let ec = Signer::es256().jwk("x");
        assert!(refused(without(ec.clone(), "kid"), &Alg::ALL).contains("kid"));
        for bad in [
            json!(""),
            json!("a\u{0}b"),
            json!("k".repeat(257)),
            json!("caf\u{e9}"),
            json!(5),
        ] {
            let parsed =
                parse_jwks(&jwks(&[with(ec.clone(), "kid", bad.clone())]), &Alg::ALL).unwrap();
            assert!(parsed.keys.is_empty(), "{bad}");
            // An unfit kid is never echoed back.
            assert_eq!(parsed.rejected[0].kid, None);
        }
        accepted(with(ec, "kid", json!("k".repeat(256))), &Alg::ALL);
    }

    #[test]
    fn one_bad_key_leaves_the_rest_usable() {
        let good = Signer::es256().jwk("good");
        let keys = [
            json!("string"),
            json!(1),
            json!(null),
            json!([]),
            json!({}),
            good,
            json!({"kty":"RSA","kid":"r","n":"","e":""}),
        ];
        let parsed = parse_jwks(&jwks(&keys), &Alg::ALL).unwrap();
        assert_eq!(parsed.keys.kids(), vec!["good".to_owned()]);
        assert_eq!(parsed.rejected.len(), 6);
        assert_eq!(parsed.rejected[6 - 1].kid.as_deref(), Some("r"));
    }

    #[test]
    fn whole_document_errors() {
        let json = [
            "",
            "garbage",
            "[]",
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":null}"#,
            r#"{"keys":[],"keys":[]}"#,
            r#"{"keys":[]} x"#,
        ];
        let not_utf8: &[u8] = b"\xff\xfe";
        for bad in json.map(str::as_bytes).into_iter().chain([not_utf8]) {
            assert!(
                parse_jwks(bad, &Alg::ALL).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_jwks(b"{\"keys\":[]}", &Alg::ALL)
            .unwrap()
            .keys
            .is_empty());
        let too_many: Vec<Value> = (0..101)
            .map(|i| json!({"kty":"oct","kid":i.to_string()}))
            .collect();
        assert_eq!(
            parse_jwks(&jwks(&too_many), &Alg::ALL).unwrap_err(),
            JwksError::TooManyKeys(101)
        );
        let mut big = b"{\"keys\":[],\"pad\":\"".to_vec();
        big.resize(MAX_JWKS_BYTES, b'a');
        big.extend_from_slice(b"\"}");
        assert_eq!(
            parse_jwks(&big, &Alg::ALL).unwrap_err().to_string(),
            format!("JWKS is {} bytes, the limit is 262144", MAX_JWKS_BYTES + 2)
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A crude fuzz over mutations of a valid JWKS.
        let doc = jwks(&[
            Signer::es256().jwk("a"),
            Signer::ed25519().jwk("b"),
            with(Signer::rsa().jwk("c"), "alg", json!("RS256")),
        ]);
        for seed in xorshift(0x2545_f491_4f6c_dd1d).take(3000) {
            let mut m = doc.clone();
            let i = (seed as usize) % m.len();
            match seed % 3 {
                0 => m[i] = (seed >> 8) as u8,
                1 => m.truncate(i),
                _ => m.insert(i, b"{}[]\",:0-ae"[(seed >> 16) as usize % 11]),
            }
            let _ = parse_jwks(&m, &Alg::ALL);
        }
    }

    #[test]
    fn uid_identity() {
        let doc = jwks(&[Signer::es256().jwk("a"), Signer::ed25519().jwk("b")]);
        let first = parse_jwks(&doc, &Alg::ALL).unwrap().keys;
        let second = parse_jwks(&doc, &Alg::ALL).unwrap().keys;
        let a1 = first.get("a").unwrap();
        let b1 = first.get("b").unwrap();
        assert_ne!(a1.uid, b1.uid);
        assert_ne!(a1.uid, 0);
        // A plain re-parse is a new key object with a new uid.
        assert_ne!(a1.uid, second.get("a").unwrap().uid);
        assert!(a1.same_key(second.get("a").unwrap()));
        // Reusing keeps the Arc (and uid) of identical keys, and only those.
        let rotated = jwks(&[Signer::es256().jwk("a"), Signer::ed25519().jwk("b")]);
        let same = parse_jwks_reusing(&doc, &Alg::ALL, &first).unwrap().keys;
        assert!(Arc::ptr_eq(same.get("a").unwrap(), a1));
        assert_eq!(same.uids(), first.uids());
        let new = parse_jwks_reusing(&rotated, &Alg::ALL, &first)
            .unwrap()
            .keys;
        assert_ne!(new.get("a").unwrap().uid, a1.uid);
        assert!(new.uids().is_disjoint(&first.uids()));
    }

    #[test]
    fn signature_length_is_exact() {
        let signer = Signer::es256();
        let key = accepted(signer.jwk("e"), &Alg::ALL);
        let mut s = signer.sign(Alg::ES256, b"m");
        assert!(key.verify(Alg::ES256, b"m", &s));
        s.push(0);
        assert!(!key.verify(Alg::ES256, b"m", &s));
        assert!(!key.verify(Alg::ES256, b"m", &[]));
        let shown = format!("{key:?}");
        assert!(shown.contains("kid") && shown.contains("ES256"));
        // Public, but still not something to dump into logs: the key bytes stay out.
        assert!(!shown.contains("bytes") && !shown.contains("key:"));
    }
}
