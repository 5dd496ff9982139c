//! Signing keys: what the operator tools (`keygen`, `token`) and the built-in issuer share.
//!
//! Both read a PEM private key, derive its public JWK, sign tokens with it, and agree on which
//! algorithm a key implies. Keeping that here rather than in the CLI module means the issuer
//! reads its key exactly the way `token` does (the keygen -> token -> JWKS round trip is
//! unit-tested) without the server depending on command-line code.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pem::{EncodeConfig, LineEnding, Pem};
use serde_json::{json, Map, Value};

use crate::auth::alg::Alg;

/// Why a key could not be read, generated or used. The texts are what `portcullis` prints and
/// what the issuer reports under `issuer.signing_key`.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM file (not UTF-8)")]
    NotUtf8,
    #[error("{}", pem_problem(.0))]
    Pem(pem::PemError),
    #[error("encrypted private keys are not supported; decrypt it first (openssl pkcs8 -nocrypt)")]
    Encrypted,
    #[error("no private key found (expected a PEM \"PRIVATE KEY\" block)")]
    NoPrivateKey,
    #[error("unsupported or invalid private key (expected EC P-256/P-384, Ed25519 or RSA of at least 2048 bits)")]
    Unsupported,
    #[error("algorithm {alg} does not fit this key (it is a {key} key)")]
    AlgorithmMismatch { alg: Alg, key: Alg },
    #[error("unexpected EC public key encoding")]
    EcEncoding,
    #[error("RSA key: {0}")]
    Rsa(jsonwebtoken::errors::Error),
    #[error("unsupported algorithm {0}")]
    CannotGenerate(Alg),
    #[error("{0} key generation failed")]
    Generation(Alg),
    #[error("signing failed: {0}")]
    Signing(jsonwebtoken::errors::Error),
    #[error("invalid key id {0:?}: use 1-128 characters from A-Z a-z 0-9 - _ . (not starting with a dot)")]
    InvalidKid(String),
}

/// Framing problems in the words the hand-written PEM reader used, so operators see the same
/// messages as before the `pem` crate took over the parsing.
fn pem_problem(e: &pem::PemError) -> String {
    match e {
        pem::PemError::MismatchedTags(label, _) => format!("PEM block {label:?} has no END line"),
        pem::PemError::InvalidData(_) => "PEM block: invalid base64".to_owned(),
        _ => "malformed PEM header".to_owned(),
    }
}

/// The jsonwebtoken name of an algorithm; every [`Alg`] has one, and no symmetric one is
/// reachable from here.
pub(crate) fn jwt_algorithm(alg: Alg) -> Algorithm {
    match alg {
        Alg::ES256 => Algorithm::ES256,
        Alg::ES384 => Algorithm::ES384,
        Alg::RS256 => Algorithm::RS256,
        Alg::RS384 => Algorithm::RS384,
        Alg::RS512 => Algorithm::RS512,
        Alg::PS256 => Algorithm::PS256,
        Alg::PS384 => Algorithm::PS384,
        Alg::PS512 => Algorithm::PS512,
        Alg::EdDSA => Algorithm::EdDSA,
    }
}

/// A key id becomes a file name (`DIR/K.pem`), so it is kept to characters that cannot escape
/// the directory or hide the file.
pub fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok = !kid.is_empty()
        && kid.len() <= 128
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKid(kid.to_owned()))
    }
}

/// A fresh private key for `alg` as PKCS#8 PEM (`rsa_size` only matters for RS256/PS256, the
/// RSA algorithms `keygen` offers).
pub fn generate_pem(alg: Alg, rsa_size: KeySize) -> Result<String, KeyError> {
    let failed = |_| KeyError::Generation(alg);
    let der = match alg {
        Alg::ES256 | Alg::ES384 => {
            let curve: &'static EcdsaSigningAlgorithm = if alg == Alg::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            EcdsaKeyPair::generate(curve)
                .map_err(failed)?
                .to_pkcs8v1()
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        Alg::EdDSA => Ed25519KeyPair::generate()
            .map_err(failed)?
            .to_pkcs8v1()
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Alg::RS256 | Alg::PS256 => {
            let pair = RsaKeyPair::generate(rsa_size).map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
        other => return Err(KeyError::CannotGenerate(other)),
    };
    Ok(pem_text(&Pem::new("PRIVATE KEY", der)))
}

/// PEM with Unix line endings (the `pem` crate defaults to CRLF).
fn pem_text(block: &Pem) -> String {
    pem::encode_config(block, EncodeConfig::new().set_line_ending(LineEnding::LF))
}

/// The first private-key block of a PEM file. Other blocks (openssl's `EC PARAMETERS`) are
/// skipped.
fn private_block(pem: &[u8]) -> Result<Pem, KeyError> {
    std::str::from_utf8(pem).map_err(|_| KeyError::NotUtf8)?;
    for block in pem::parse_many(pem).map_err(KeyError::Pem)? {
        match block.tag() {
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => return Ok(block),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            _ => {}
        }
    }
    Err(KeyError::NoPrivateKey)
}

/// A parsed private key, and what signing with it needs.
pub struct PrivateKey(Parsed);

enum Parsed {
    Ec {
        pair: EcdsaKeyPair,
        alg: Alg,
        pkcs8: Vec<u8>,
    },
    Ed {
        pair: Ed25519KeyPair,
        pkcs8: Vec<u8>,
    },
    Rsa {
        pair: RsaKeyPair,
        /// jsonwebtoken wants PKCS#1 for RSA; its PEM reader unwraps PKCS#8 to get it.
        pem: String,
    },
}

impl PrivateKey {
    /// Reads a PKCS#8, SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM key.
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, KeyError> {
        let block = private_block(pem)?;
        let der = block.contents();
        let ec = |curve: &'static EcdsaSigningAlgorithm, alg: Alg, sec1: bool| {
            let pair = if sec1 {
                EcdsaKeyPair::from_private_key_der(curve, der).ok()?
            } else {
                EcdsaKeyPair::from_pkcs8(curve, der).ok()?
            };
            // jsonwebtoken signs from PKCS#8, so a SEC1 key is re-encoded once here.
            let pkcs8 = pair.to_pkcs8v1().ok()?.as_ref().to_vec();
            Some(Parsed::Ec { pair, alg, pkcs8 })
        };
        let rsa = |pair| Parsed::Rsa {
            pair,
            pem: pem_text(&block),
        };
        let found = match block.tag() {
            "PRIVATE KEY" => ec(&ECDSA_P256_SHA256_FIXED_SIGNING, Alg::ES256, false)
                .or_else(|| ec(&ECDSA_P384_SHA384_FIXED_SIGNING, Alg::ES384, false))
                .or_else(|| {
                    Ed25519KeyPair::from_pkcs8(der).ok().map(|pair| Parsed::Ed {
                        pair,
                        pkcs8: der.to_vec(),
                    })
                })
                .or_else(|| RsaKeyPair::from_pkcs8(der).ok().map(rsa)),
            "EC PRIVATE KEY" => ec(&ECDSA_P256_SHA256_FIXED_SIGNING, Alg::ES256, true)
                .or_else(|| ec(&ECDSA_P384_SHA384_FIXED_SIGNING, Alg::ES384, true)),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der).ok().map(rsa),
            _ => None,
        };
        found.map(PrivateKey).ok_or(KeyError::Unsupported)
    }

    /// The algorithm a key implies: the curve fixes it for EC and Ed25519; RSA defaults to RS256.
    pub fn algorithm(&self) -> Alg {
        match &self.0 {
            Parsed::Ec { alg, .. } => *alg,
            Parsed::Ed { .. } => Alg::EdDSA,
            Parsed::Rsa { .. } => Alg::RS256,
        }
    }

    /// Checks that `alg` can be used with this key (only RSA has a choice).
    pub fn check_algorithm(&self, alg: Alg) -> Result<(), KeyError> {
        let ok = match self.0 {
            Parsed::Rsa { .. } => alg.is_rsa(),
            _ => alg == self.algorithm(),
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::AlgorithmMismatch {
                alg,
                key: self.algorithm(),
            })
        }
    }

    /// The public JWK, with `kid`, `alg` and `use: "sig"`, as `keygen` publishes it.
    pub fn public_jwk(&self, kid: &str, alg: Alg) -> Result<Value, KeyError> {
        self.check_algorithm(alg)?;
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.0 {
            Parsed::Ec {
                pair, alg: ec_alg, ..
            } => {
                let point = pair.public_key().as_ref();
                let (crv, len) = if *ec_alg == Alg::ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                // Uncompressed SEC1 point: 0x04 || x || y.
                if point.len() != 1 + 2 * len || point.first() != Some(&4) {
                    return Err(KeyError::EcEncoding);
                }
                let (x, y) = point[1..].split_at(len);
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Parsed::Ed { pair, .. } => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
            Parsed::Rsa { pair, .. } => {
                let parts: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
                let strip = |v: &[u8]| {
                    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                    v[first..].to_vec()
                };
                json!({"kty": "RSA", "n": b64(&strip(&parts.n)), "e": b64(&strip(&parts.e))})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        Ok(jwk)
    }

    /// A key that signs as `alg` under `kid`; `alg` must fit the key.
    pub fn signing_key(&self, kid: &str, alg: Alg) -> Result<SigningKey, KeyError> {
        self.check_algorithm(alg)?;
        let key = match &self.0 {
            Parsed::Ec { pkcs8, .. } => EncodingKey::from_ec_der(pkcs8),
            Parsed::Ed { pkcs8, .. } => EncodingKey::from_ed_der(pkcs8),
            Parsed::Rsa { pem, .. } => {
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(KeyError::Rsa)?
            }
        };
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            key,
        })
    }
}

/// A private key ready to sign, with the `kid` and `alg` its tokens carry.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    key: EncodingKey,
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// A compact JWS of `claims` with header `alg`, `kid` and `typ`.
    pub fn sign(&self, typ: &str, claims: Map<String, Value>) -> Result<String, KeyError> {
        let mut header = Header::new(jwt_algorithm(self.alg));
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, &Value::Object(claims), &self.key).map_err(KeyError::Signing)
    }
}

/// The claims every minted token starts with: `iss`, `sub`, `aud`, `iat` = `now`,
/// `exp` = `now + ttl_secs` (saturating) and a random `jti`.
pub fn base_claims(iss: &str, sub: &str, aud: &str, now: i64, ttl_secs: i64) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(iss));
    claims.insert("sub".into(), json!(sub));
    claims.insert("aud".into(), json!(aud));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(ttl_secs)));
    claims.insert("jti".into(), json!(random_jti()));
    claims
}

/// 128 random bits, hex: unique enough that revocation by `(iss, jti)` never hits a neighbour.
pub fn random_jti() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sec1_ec_keys_are_read_and_imply_their_algorithm() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'static> =
            pair.private_key().as_der().unwrap();
        let pem = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            pem_text(&Pem::new("EC PRIVATE KEY", sec1.as_ref()))
        );
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Alg::ES256);
        let jwk = key.public_jwk("sec1", key.algorithm()).unwrap();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["kid"], "sec1");
        let signing = key.signing_key("sec1", Alg::ES256).unwrap();
        assert_eq!((signing.kid(), signing.alg()), ("sec1", Alg::ES256));
    }

    #[test]
    fn unreadable_keys_say_why() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"not a pem",
                "no private key found (expected a PEM \"PRIVATE KEY\" block)",
            ),
            (b"\xff\xfe", "not a PEM file (not UTF-8)"),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted private keys are not supported; decrypt it first (openssl pkcs8 -nocrypt)",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "PEM block \"PRIVATE KEY\" has no END line",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "unsupported or invalid private key (expected EC P-256/P-384, Ed25519 or RSA of at least 2048 bits)",
            ),
        ];
        for (pem, why) in cases {
            let err = PrivateKey::from_pem(pem).err().unwrap();
            assert_eq!(err.to_string(), why);
        }
    }

    #[test]
    fn the_algorithm_must_fit_the_key() {
        let pem = generate_pem(Alg::EdDSA, KeySize::Rsa2048).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(
            key.signing_key("k", Alg::ES256).err().unwrap().to_string(),
            "algorithm ES256 does not fit this key (it is a EdDSA key)"
        );
        assert_eq!(
            generate_pem(Alg::RS512, KeySize::Rsa2048)
                .unwrap_err()
                .to_string(),
            "unsupported algorithm RS512"
        );
    }

    #[test]
    fn key_ids_must_be_safe_file_names() {
        for ok in ["k", "dev-1", "a.b_c", &"k".repeat(128)] {
            assert!(check_kid(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", ".hidden", "a/b", "a b", &"k".repeat(129)] {
            assert!(check_kid(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_kid("a/b").unwrap_err().to_string(),
            "invalid key id \"a/b\": use 1-128 characters from A-Z a-z 0-9 - _ . (not starting with a dot)"
        );
    }
}
