//! Operator tools behind the `keygen`, `token` and `hash-password` subcommands (SPEC §1), and the
//! key handling the built-in issuer shares with them.
//!
//! They live in the library rather than in `main.rs` so that the round trips that matter (a minted
//! token verifies against the JWKS `keygen` wrote; a hash verifies its password) are unit-tested,
//! and so that the issuer reads its signing key exactly the way `token` does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

/// The algorithms `keygen` can produce (SPEC §1).
pub const KEYGEN_ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// Parses one of [`KEYGEN_ALGORITHMS`]; symmetric and unlisted algorithms are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "RS256" => Ok(Algorithm::RS256),
        "PS256" => Ok(Algorithm::PS256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(format!(
            "unsupported algorithm {other:?} (expected one of {})",
            KEYGEN_ALGORITHMS.join(", ")
        )),
    }
}

/// The JOSE name of an algorithm (`ES256`, `EdDSA`, ...).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// A key id becomes a file name (`DIR/K.pem`), so it is kept to characters that cannot escape
/// the directory or hide the file.
pub fn check_kid(kid: &str) -> Result<(), String> {
    let ok = !kid.is_empty()
        && kid.len() <= 128
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid key id {kid:?}: use 1-128 characters from A-Z a-z 0-9 - _ . (not starting with a dot)"
        ))
    }
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeygenOutput {
    pub private_key: PathBuf,
    pub jwks: PathBuf,
}

/// Generates a key pair, writes `DIR/KID.pem` (PKCS#8, mode 0600 from creation) and adds the
/// public JWK to `DIR/jwks.json`, replacing a key with the same kid, so a second key can be
/// published next to the first before switching over (rotation).
pub fn keygen(
    alg: Algorithm,
    kid: &str,
    out_dir: &Path,
    rsa_bits: Option<u32>,
) -> Result<KeygenOutput, String> {
    check_kid(kid)?;
    let rsa_size = match (alg, rsa_bits) {
        (Algorithm::RS256 | Algorithm::PS256, None | Some(2048)) => KeySize::Rsa2048,
        (Algorithm::RS256 | Algorithm::PS256, Some(3072)) => KeySize::Rsa3072,
        (Algorithm::RS256 | Algorithm::PS256, Some(bits)) => {
            return Err(format!("--bits {bits}: RSA keys are 2048 or 3072 bits"))
        }
        (_, Some(_)) => return Err("--bits only applies to RS256 and PS256".into()),
        (_, None) => KeySize::Rsa2048,
    };
    let pkcs8 = generate_pkcs8(alg, rsa_size)?;
    let pem = pem_encode("PRIVATE KEY", &pkcs8);
    let parsed = PrivateKey::parse_pem(pem.as_bytes())?;
    let jwk = parsed.public_jwk(kid, alg)?;

    fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let jwks_path = out_dir.join("jwks.json");
    // Read the existing set before writing anything, so a corrupt jwks.json leaves no orphan key.
    let mut keys = read_jwks_keys(&jwks_path)?;
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid));
    keys.push(jwk);

    let key_path = out_dir.join(format!("{kid}.pem"));
    write_private(&key_path, pem.as_bytes())?;
    let doc = json!({ "keys": keys });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n";
    if let Err(e) = write_atomic(&jwks_path, text.as_bytes()) {
        // Keep the pair consistent: a private key without its published public key is useless.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok(KeygenOutput {
        private_key: key_path,
        jwks: jwks_path,
    })
}

fn generate_pkcs8(alg: Algorithm, rsa_size: KeySize) -> Result<Vec<u8>, String> {
    let failed = |_| format!("{} key generation failed", algorithm_name(alg));
    let doc = match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let curve: &'static EcdsaSigningAlgorithm = if alg == Algorithm::ES256 {
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
        Algorithm::EdDSA => Ed25519KeyPair::generate()
            .map_err(failed)?
            .to_pkcs8v1()
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 | Algorithm::PS256 => {
            let pair = RsaKeyPair::generate(rsa_size).map_err(failed)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
        other => return Err(format!("unsupported algorithm {}", algorithm_name(other))),
    };
    Ok(doc)
}

fn read_jwks_keys(path: &Path) -> Result<Vec<Value>, String> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match doc.get("keys") {
        Some(Value::Array(keys)) => Ok(keys.clone()),
        _ => Err(format!(
            "{}: not a JWK set (no \"keys\" array); refusing to overwrite it",
            path.display()
        )),
    }
}

/// Creates the file with mode 0600 in the `open` call itself, so the key is never readable by
/// others, not even between creation and a later chmod. An existing key is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{}: already exists; refusing to overwrite a private key",
                    path.display()
                )
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes through a temporary file and a rename, so a gateway watching the JWKS file never reads
/// half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first private-key block of a PEM file: its label and DER bytes. Other blocks (openssl's
/// `EC PARAMETERS`) are skipped.
fn pem_private_block(pem: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not UTF-8)".to_string())?;
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let (label, body_and_more) = after
            .split_once("-----")
            .ok_or_else(|| "malformed PEM header".to_string())?;
        let end_marker = format!("-----END {label}-----");
        let end = body_and_more
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        let body = &body_and_more[..end];
        rest = &body_and_more[end + end_marker.len()..];
        match label {
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                let compact: String = body.split_ascii_whitespace().collect();
                let der = STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|_| format!("PEM block {label:?}: invalid base64"))?;
                return Ok((label.to_string(), der));
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err("encrypted private keys are not supported; decrypt it first (openssl pkcs8 -nocrypt)".into())
            }
            _ => {}
        }
    }
    Err("no private key found (expected a PEM \"PRIVATE KEY\" block)".into())
}

/// A parsed private key, and what signing with it needs.
enum PrivateKey {
    Ec {
        pair: EcdsaKeyPair,
        alg: Algorithm,
        pkcs8: Vec<u8>,
    },
    Ed {
        pair: Ed25519KeyPair,
        pkcs8: Vec<u8>,
    },
    Rsa {
        pair: RsaKeyPair,
    },
}

impl PrivateKey {
    fn parse_pem(pem: &[u8]) -> Result<PrivateKey, String> {
        let (label, der) = pem_private_block(pem)?;
        let ec = |curve: &'static EcdsaSigningAlgorithm, alg: Algorithm, sec1: bool| {
            let pair = if sec1 {
                EcdsaKeyPair::from_private_key_der(curve, &der).ok()?
            } else {
                EcdsaKeyPair::from_pkcs8(curve, &der).ok()?
            };
            // jsonwebtoken signs from PKCS#8, so a SEC1 key is re-encoded once here.
            let pkcs8 = pair.to_pkcs8v1().ok()?.as_ref().to_vec();
            Some(PrivateKey::Ec { pair, alg, pkcs8 })
        };
        let found = match label.as_str() {
            "PRIVATE KEY" => ec(&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256, false)
                .or_else(|| ec(&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384, false))
                .or_else(|| {
                    Ed25519KeyPair::from_pkcs8(&der)
                        .ok()
                        .map(|pair| PrivateKey::Ed {
                            pair,
                            pkcs8: der.clone(),
                        })
                })
                .or_else(|| {
                    RsaKeyPair::from_pkcs8(&der)
                        .ok()
                        .map(|pair| PrivateKey::Rsa { pair })
                }),
            "EC PRIVATE KEY" => ec(&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256, true)
                .or_else(|| ec(&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384, true)),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .ok()
                .map(|pair| PrivateKey::Rsa { pair }),
            _ => None,
        };
        found.ok_or_else(|| {
            "unsupported or invalid private key (expected EC P-256/P-384, Ed25519 or RSA of at least 2048 bits)"
                .to_string()
        })
    }

    /// The algorithm a key implies: the curve fixes it for EC and Ed25519; RSA defaults to RS256.
    fn default_algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Ec { alg, .. } => *alg,
            PrivateKey::Ed { .. } => Algorithm::EdDSA,
            PrivateKey::Rsa { .. } => Algorithm::RS256,
        }
    }

    /// Checks that `alg` can be used with this key (only RSA has a choice).
    fn check_algorithm(&self, alg: Algorithm) -> Result<(), String> {
        let ok = match self {
            PrivateKey::Rsa { .. } => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            _ => alg == self.default_algorithm(),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "algorithm {} does not fit this key (it is a {} key)",
                algorithm_name(alg),
                algorithm_name(self.default_algorithm())
            ))
        }
    }

    fn public_jwk(&self, kid: &str, alg: Algorithm) -> Result<Value, String> {
        self.check_algorithm(alg)?;
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let alg_name = algorithm_name(alg);
        Ok(match self {
            PrivateKey::Ec {
                pair, alg: ec_alg, ..
            } => {
                let point = pair.public_key().as_ref();
                let (crv, len) = if *ec_alg == Algorithm::ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                // Uncompressed SEC1 point: 0x04 || x || y.
                if point.len() != 1 + 2 * len || point.first() != Some(&4) {
                    return Err("unexpected EC public key encoding".into());
                }
                let (x, y) = point[1..].split_at(len);
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y),
                       "kid": kid, "alg": alg_name, "use": "sig"})
            }
            PrivateKey::Ed { pair, .. } => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
                       "kid": kid, "alg": alg_name, "use": "sig"})
            }
            PrivateKey::Rsa { pair } => {
                let parts: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
                let strip = |v: &[u8]| {
                    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                    v[first..].to_vec()
                };
                json!({"kty": "RSA", "n": b64(&strip(&parts.n)), "e": b64(&strip(&parts.e)),
                       "kid": kid, "alg": alg_name, "use": "sig"})
            }
        })
    }

    fn encoding_key(&self, pem: &[u8]) -> Result<EncodingKey, String> {
        match self {
            PrivateKey::Ec { pkcs8, .. } => Ok(EncodingKey::from_ec_der(pkcs8)),
            PrivateKey::Ed { pkcs8, .. } => Ok(EncodingKey::from_ed_der(pkcs8)),
            // jsonwebtoken wants PKCS#1 for RSA; its PEM reader unwraps PKCS#8 to get it.
            PrivateKey::Rsa { .. } => {
                EncodingKey::from_rsa_pem(pem).map_err(|e| format!("RSA key: {e}"))
            }
        }
    }
}

/// The public JWK (with `kid`, `alg`, `use: "sig"`) of a PEM private key, and the algorithm the
/// key implies (RS256 for RSA).
pub fn public_jwk_from_private_pem(pem: &[u8], kid: &str) -> Result<(Algorithm, Value), String> {
    let key = PrivateKey::parse_pem(pem)?;
    let alg = key.default_algorithm();
    Ok((alg, key.public_jwk(kid, alg)?))
}

/// A signing key from a PEM private key, and the algorithm the key implies (RS256 for RSA).
pub fn encoding_key_from_pem(pem: &[u8]) -> Result<(Algorithm, EncodingKey), String> {
    let key = PrivateKey::parse_pem(pem)?;
    Ok((key.default_algorithm(), key.encoding_key(pem)?))
}

/// Parses a `--claim k=v` argument: `v` is JSON when it parses as JSON (`n=5`, `roles=["a"]`,
/// `ok=true`), otherwise the literal string.
pub fn parse_claim_arg(arg: &str) -> Result<(String, Value), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("--claim {arg:?}: expected name=value"))?;
    if k.is_empty() {
        return Err(format!("--claim {arg:?}: empty claim name"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

/// What `token` mints.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    pub kid: &'a str,
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub scope: Option<&'a str>,
    pub ttl_secs: u64,
    /// Applied last, so they may override any default claim (`exp`, `iat`, ...).
    pub extra_claims: &'a [(String, Value)],
    /// Only meaningful for RSA keys (RS256 by default, PS256 on request).
    pub alg: Option<Algorithm>,
    pub now: i64,
}

/// Mints a signed JWT for development and tests. Header: `alg` (from the key), `kid`, `typ: JWT`.
pub fn mint_token(pem: &[u8], req: &MintRequest<'_>) -> Result<String, String> {
    let key = PrivateKey::parse_pem(pem)?;
    let alg = match req.alg {
        Some(a) => {
            key.check_algorithm(a)?;
            a
        }
        None => key.default_algorithm(),
    };
    let encoding_key = key.encoding_key(pem)?;
    let ttl = i64::try_from(req.ttl_secs).map_err(|_| "ttl too large".to_string())?;
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(req.iss));
    claims.insert("sub".into(), json!(req.sub));
    claims.insert("aud".into(), json!(req.aud));
    claims.insert("iat".into(), json!(req.now));
    claims.insert("nbf".into(), json!(req.now));
    claims.insert("exp".into(), json!(req.now.saturating_add(ttl)));
    claims.insert("jti".into(), json!(random_jti()));
    if let Some(scope) = req.scope {
        claims.insert("scope".into(), json!(scope));
    }
    for (k, v) in req.extra_claims {
        claims.insert(k.clone(), v.clone());
    }
    let mut header = Header::new(alg);
    header.kid = Some(req.kid.to_string());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, &Value::Object(claims), &encoding_key)
        .map_err(|e| format!("signing failed: {e}"))
}

/// 128 random bits, hex: unique enough that revocation by `(iss, jti)` never hits a neighbour.
pub fn random_jti() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Strips one trailing line ending (`\n` or `\r\n`) — what a shell `echo` or a terminal adds —
/// and nothing else, so passwords ending in spaces keep them.
pub fn strip_one_newline(input: &[u8]) -> &[u8] {
    if let Some(s) = input.strip_suffix(b"\r\n") {
        s
    } else if let Some(s) = input.strip_suffix(b"\n") {
        s
    } else {
        input
    }
}

/// An argon2id PHC string with the argon2 crate's default parameters and a random salt.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    hash_password_with(password, argon2::Params::default())
}

/// Like [`hash_password`] with explicit parameters (tests use cheap ones).
pub fn hash_password_with(password: &[u8], params: argon2::Params) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.is_empty() {
        return Err("empty password".into());
    }
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-tools-{name}-{}-{}",
            std::process::id(),
            random_jti()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn verify(token: &str, jwks_path: &Path, kid: &str, alg: Algorithm) -> Value {
        let set: JwkSet = serde_json::from_slice(&fs::read(jwks_path).unwrap()).unwrap();
        let jwk = set.find(kid).expect("kid in jwks");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(alg);
        v.set_issuer(&["https://iss.test"]);
        v.set_audience(&["api"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(kid));
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.header.alg, alg);
        data.claims
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn keygen_then_token_verifies_for_every_algorithm() {
        let dir = tempdir("all");
        for name in KEYGEN_ALGORITHMS {
            let alg = parse_algorithm(name).unwrap();
            let kid = format!("k-{name}");
            let out = keygen(alg, &kid, &dir, None).unwrap();
            let mode = fs::metadata(&out.private_key).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
            let pem = fs::read(&out.private_key).unwrap();
            assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let extra = vec![parse_claim_arg("roles=[\"admin\"]").unwrap()];
            let req = MintRequest {
                kid: &kid,
                iss: "https://iss.test",
                aud: "api",
                sub: "alice",
                scope: Some("a b"),
                ttl_secs: 900,
                extra_claims: &extra,
                alg: (alg == Algorithm::PS256).then_some(Algorithm::PS256),
                now: now(),
            };
            let token = mint_token(&pem, &req).unwrap();
            let claims = verify(&token, &out.jwks, &kid, alg);
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["scope"], "a b");
            assert_eq!(claims["roles"], json!(["admin"]));
            assert_eq!(
                claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
                900
            );
            assert_eq!(claims["nbf"], claims["iat"]);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        }
        // Every key stays in the set: rotation means publishing the new key beside the old one.
        let set: Value = serde_json::from_slice(&fs::read(dir.join("jwks.json")).unwrap()).unwrap();
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), KEYGEN_ALGORITHMS.len());
        for k in keys {
            assert_eq!(k["use"], "sig");
            assert!(k.get("d").is_none(), "no private material in the JWKS");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keygen_replaces_same_kid_and_never_overwrites_a_private_key() {
        let dir = tempdir("replace");
        keygen(Algorithm::ES256, "one", &dir, None).unwrap();
        let err = keygen(Algorithm::ES256, "one", &dir, None).unwrap_err();
        assert!(err.contains("refusing to overwrite"), "{err}");
        fs::remove_file(dir.join("one.pem")).unwrap();
        keygen(Algorithm::EdDSA, "one", &dir, None).unwrap();
        let set: Value = serde_json::from_slice(&fs::read(dir.join("jwks.json")).unwrap()).unwrap();
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["alg"], "EdDSA");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keygen_refuses_bad_kids_and_corrupt_jwks() {
        let dir = tempdir("bad");
        for kid in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(
                keygen(Algorithm::ES256, kid, &dir, None).is_err(),
                "{kid:?}"
            );
        }
        fs::write(dir.join("jwks.json"), b"{\"not\": 1}").unwrap();
        assert!(keygen(Algorithm::ES256, "k", &dir, None).is_err());
        assert!(!dir.join("k.pem").exists(), "no orphan private key");
        assert!(keygen(Algorithm::ES256, "k", &dir, Some(3072)).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rsa_3072_keys_are_supported() {
        let dir = tempdir("rsa3072");
        let out = keygen(Algorithm::RS256, "big", &dir, Some(3072)).unwrap();
        let set: Value = serde_json::from_slice(&fs::read(&out.jwks).unwrap()).unwrap();
        let n = URL_SAFE_NO_PAD
            .decode(set["keys"][0]["n"].as_str().unwrap())
            .unwrap();
        assert_eq!(n.len(), 384);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claims_override_defaults_and_algorithm_must_fit_the_key() {
        let dir = tempdir("override");
        let out = keygen(Algorithm::ES256, "k", &dir, None).unwrap();
        let pem = fs::read(&out.private_key).unwrap();
        let extra = vec![
            parse_claim_arg("exp=1000").unwrap(),
            parse_claim_arg("n=5").unwrap(),
            parse_claim_arg("name=bob smith").unwrap(),
        ];
        let req = MintRequest {
            kid: "k",
            iss: "https://iss.test",
            aud: "api",
            sub: "s",
            scope: None,
            ttl_secs: 60,
            extra_claims: &extra,
            alg: None,
            now: now(),
        };
        let token = mint_token(&pem, &req).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
            .unwrap()
            .claims;
        assert_eq!(claims["exp"], 1000);
        assert_eq!(claims["n"], 5);
        assert_eq!(claims["name"], "bob smith");
        assert!(claims.get("scope").is_none());
        let bad = MintRequest {
            alg: Some(Algorithm::EdDSA),
            ..req
        };
        assert!(mint_token(&pem, &bad).is_err());
        assert!(parse_claim_arg("novalue").is_err());
        assert!(parse_claim_arg("=x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn helpers_read_sec1_ec_keys_and_report_the_algorithm() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'static> =
            pair.private_key().as_der().unwrap();
        let pem = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            pem_encode("EC PRIVATE KEY", sec1.as_ref())
        );
        let (alg, jwk) = public_jwk_from_private_pem(pem.as_bytes(), "sec1").unwrap();
        assert_eq!(alg, Algorithm::ES256);
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["kid"], "sec1");
        let (alg2, _key) = encoding_key_from_pem(pem.as_bytes()).unwrap();
        assert_eq!(alg2, Algorithm::ES256);
        assert!(encoding_key_from_pem(b"not a pem").is_err());
        assert!(public_jwk_from_private_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "x"
        )
        .unwrap_err()
        .contains("encrypted"));
    }

    #[test]
    fn hash_password_round_trips() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let phc = hash_password(strip_one_newline(b"s3cret pass\n")).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        let argon = argon2::Argon2::default();
        assert!(argon.verify_password(b"s3cret pass", &parsed).is_ok());
        assert!(argon.verify_password(b"s3cret pass\n", &parsed).is_err());
        assert!(hash_password(strip_one_newline(b"\n")).is_err());
        assert_eq!(strip_one_newline(b"a\n\n"), b"a\n");
        assert_eq!(strip_one_newline(b"a\r\n"), b"a");
        assert_eq!(strip_one_newline(b"a "), b"a ");
    }
}
