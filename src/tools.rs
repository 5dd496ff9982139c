//! Operator tools behind the `keygen`, `token` and `hash-password` subcommands (conf/README.md §1), and the
//! key handling the built-in issuer shares with them.
//!
//! They live in the library rather than in `main.rs` so that the round trips that matter (a minted
//! token verifies against the JWKS `keygen` wrote; a hash verifies its password) are unit-tested,
//! and so that the issuer reads its signing key exactly the way `token` does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rsa::KeySize;
use serde_json::{json, Value};

use crate::auth::alg::Alg;
use crate::keys::{self, KeyError, PrivateKey};

/// The algorithms `keygen` can produce (conf/README.md §1).
pub const KEYGEN_ALGORITHMS: [Alg; 5] =
    [Alg::ES256, Alg::ES384, Alg::RS256, Alg::PS256, Alg::EdDSA];

/// Why a tool failed; the text is what `portcullis` prints after its name.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("unsupported algorithm {0:?} (expected one of {list})", list = keygen_algorithm_names())]
    UnknownAlgorithm(String),
    #[error("--bits {0}: RSA keys are 2048 or 3072 bits")]
    RsaBits(u32),
    #[error("--bits only applies to RS256 and PS256")]
    BitsWithoutRsa,
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: already exists; refusing to overwrite a private key", .0.display())]
    KeyExists(PathBuf),
    #[error("{}: {source}", path.display())]
    JwksSyntax {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: not a JWK set (no \"keys\" array); refusing to overwrite it", .0.display())]
    NotJwks(PathBuf),
    #[error(transparent)]
    Json(serde_json::Error),
    #[error("--claim {0:?}: expected name=value")]
    ClaimWithoutValue(String),
    #[error("--claim {0:?}: empty claim name")]
    ClaimWithoutName(String),
    #[error("ttl too large")]
    TtlTooLarge,
    #[error("empty password")]
    EmptyPassword,
    #[error("hashing failed: {0}")]
    Hashing(argon2::password_hash::Error),
}

fn keygen_algorithm_names() -> String {
    KEYGEN_ALGORITHMS.map(Alg::as_str).join(", ")
}

/// Parses one of [`KEYGEN_ALGORITHMS`]; symmetric and unlisted algorithms are refused.
pub fn parse_algorithm(name: &str) -> Result<Alg, ToolError> {
    Alg::parse(name)
        .filter(|alg| KEYGEN_ALGORITHMS.contains(alg))
        .ok_or_else(|| ToolError::UnknownAlgorithm(name.to_owned()))
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
    alg: Alg,
    kid: &str,
    out_dir: &Path,
    rsa_bits: Option<u32>,
) -> Result<KeygenOutput, ToolError> {
    keys::check_kid(kid)?;
    let rsa_size = match (alg, rsa_bits) {
        (Alg::RS256 | Alg::PS256, None | Some(2048)) => KeySize::Rsa2048,
        (Alg::RS256 | Alg::PS256, Some(3072)) => KeySize::Rsa3072,
        (Alg::RS256 | Alg::PS256, Some(bits)) => return Err(ToolError::RsaBits(bits)),
        (_, Some(_)) => return Err(ToolError::BitsWithoutRsa),
        (_, None) => KeySize::Rsa2048,
    };
    let pem = keys::generate_pem(alg, rsa_size)?;
    let jwk = PrivateKey::from_pem(pem.as_bytes())?.public_jwk(kid, alg)?;

    fs::create_dir_all(out_dir).map_err(|e| file_error(out_dir, e))?;
    let jwks_path = out_dir.join("jwks.json");
    // Read the existing set before writing anything, so a corrupt jwks.json leaves no orphan key.
    let mut keys = read_jwks_keys(&jwks_path)?;
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid));
    keys.push(jwk);

    let key_path = out_dir.join(format!("{kid}.pem"));
    write_private(&key_path, pem.as_bytes())?;
    let doc = json!({ "keys": keys });
    let text = serde_json::to_string_pretty(&doc).map_err(ToolError::Json)? + "\n";
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

fn file_error(path: &Path, source: std::io::Error) -> ToolError {
    ToolError::File {
        path: path.to_owned(),
        source,
    }
}

fn read_jwks_keys(path: &Path) -> Result<Vec<Value>, ToolError> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_error(path, e)),
    };
    let doc: Value = serde_json::from_slice(&text).map_err(|source| ToolError::JwksSyntax {
        path: path.to_owned(),
        source,
    })?;
    match doc.get("keys") {
        Some(Value::Array(keys)) => Ok(keys.clone()),
        _ => Err(ToolError::NotJwks(path.to_owned())),
    }
}

/// Creates the file with mode 0600 in the `open` call itself, so the key is never readable by
/// others, not even between creation and a later chmod. An existing key is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ToolError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                ToolError::KeyExists(path.to_owned())
            } else {
                file_error(path, e)
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(path, e))
}

/// Writes through a temporary file and a rename, so a gateway watching the JWKS file never reads
/// half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ToolError> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_error(path, e)
    })
}

/// Parses a `--claim k=v` argument: `v` is JSON when it parses as JSON (`n=5`, `roles=["a"]`,
/// `ok=true`), otherwise the literal string.
pub fn parse_claim_arg(arg: &str) -> Result<(String, Value), ToolError> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| ToolError::ClaimWithoutValue(arg.to_owned()))?;
    if k.is_empty() {
        return Err(ToolError::ClaimWithoutName(arg.to_owned()));
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
    pub alg: Option<Alg>,
    pub now: i64,
}

/// Mints a signed JWT for development and tests. Header: `alg` (from the key), `kid`, `typ: JWT`.
pub fn mint_token(pem: &[u8], req: &MintRequest<'_>) -> Result<String, ToolError> {
    let key = PrivateKey::from_pem(pem)?;
    let signing_key = key.signing_key(req.kid, req.alg.unwrap_or(key.algorithm()))?;
    let ttl = i64::try_from(req.ttl_secs).map_err(|_| ToolError::TtlTooLarge)?;
    let mut claims = keys::base_claims(req.iss, req.sub, req.aud, req.now, ttl);
    claims.insert("nbf".into(), json!(req.now));
    if let Some(scope) = req.scope {
        claims.insert("scope".into(), json!(scope));
    }
    for (k, v) in req.extra_claims {
        claims.insert(k.clone(), v.clone());
    }
    Ok(signing_key.sign("JWT", claims)?)
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
pub fn hash_password(password: &[u8]) -> Result<String, ToolError> {
    hash_password_with(password, argon2::Params::default())
}

/// Like [`hash_password`] with explicit parameters (tests use cheap ones).
pub fn hash_password_with(password: &[u8], params: argon2::Params) -> Result<String, ToolError> {
    if password.is_empty() {
        return Err(ToolError::EmptyPassword);
    }
    crate::issuer::hash_secret(password, params).map_err(ToolError::Hashing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::unix_now;
    use crate::keys::{jwt_algorithm, random_jti};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
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

    fn verify(token: &str, jwks_path: &Path, kid: &str, alg: Alg) -> Value {
        let set: JwkSet = serde_json::from_slice(&fs::read(jwks_path).unwrap()).unwrap();
        let jwk = set.find(kid).expect("kid in jwks");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(jwt_algorithm(alg));
        v.set_issuer(&["https://iss.test"]);
        v.set_audience(&["api"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(kid));
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(data.header.alg, jwt_algorithm(alg));
        data.claims
    }

    #[test]
    fn keygen_then_token_verifies_for_every_algorithm() {
        let dir = tempdir("all");
        for alg in KEYGEN_ALGORITHMS {
            assert_eq!(parse_algorithm(alg.as_str()).unwrap(), alg);
            let kid = format!("k-{alg}");
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
                alg: (alg == Alg::PS256).then_some(Alg::PS256),
                now: unix_now(),
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
        keygen(Alg::ES256, "one", &dir, None).unwrap();
        let err = keygen(Alg::ES256, "one", &dir, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing to overwrite"), "{err}");
        fs::remove_file(dir.join("one.pem")).unwrap();
        keygen(Alg::EdDSA, "one", &dir, None).unwrap();
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
            assert!(keygen(Alg::ES256, kid, &dir, None).is_err(), "{kid:?}");
        }
        fs::write(dir.join("jwks.json"), b"{\"not\": 1}").unwrap();
        assert!(keygen(Alg::ES256, "k", &dir, None).is_err());
        assert!(!dir.join("k.pem").exists(), "no orphan private key");
        assert!(keygen(Alg::ES256, "k", &dir, Some(3072)).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rsa_3072_keys_are_supported() {
        let dir = tempdir("rsa3072");
        let out = keygen(Alg::RS256, "big", &dir, Some(3072)).unwrap();
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
        let out = keygen(Alg::ES256, "k", &dir, None).unwrap();
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
            now: unix_now(),
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
            alg: Some(Alg::EdDSA),
            ..req
        };
        assert!(mint_token(&pem, &bad).is_err());
        assert!(parse_claim_arg("novalue").is_err());
        assert!(parse_claim_arg("=x").is_err());
        fs::remove_dir_all(&dir).unwrap();
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
