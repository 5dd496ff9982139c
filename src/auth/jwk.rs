//! STAND-IN for the real JWKS parser (written on another branch; this file is replaced at merge).
//! It only mirrors the agreed signatures so `provider.rs` compiles and its tests can run: every
//! object in `keys` with a string `kid` becomes a key with the first allowed algorithm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        [
            Alg::ES256,
            Alg::ES384,
            Alg::RS256,
            Alg::RS384,
            Alg::RS512,
            Alg::PS256,
            Alg::PS384,
            Alg::PS512,
            Alg::EdDSA,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::EdDSA => "EdDSA",
        }
    }
}

pub struct VerifyingKey {
    pub kid: String,
    pub alg: Alg,
    pub uid: u64,
}

pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
}

impl KeySet {
    pub fn empty() -> KeySet {
        KeySet {
            by_kid: HashMap::new(),
        }
    }
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.by_kid.get(kid)
    }
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.by_kid.keys().cloned().collect();
        kids.sort();
        kids
    }
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

pub struct RejectedKey {
    pub kid: Option<String>,
    pub reason: String,
}

pub struct ParsedJwks {
    pub keys: KeySet,
    pub rejected: Vec<RejectedKey>,
}

pub fn parse_jwks(body: &[u8], allowed: &[Alg]) -> Result<ParsedJwks, String> {
    static UID: AtomicU64 = AtomicU64::new(1);
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no keys array")?;
    let mut keys = KeySet::empty();
    let mut rejected = Vec::new();
    for k in list {
        match k.get("kid").and_then(|v| v.as_str()) {
            Some(kid) => {
                let key = VerifyingKey {
                    kid: kid.to_owned(),
                    alg: allowed.first().copied().unwrap_or(Alg::ES256),
                    uid: UID.fetch_add(1, Ordering::Relaxed),
                };
                keys.by_kid.insert(kid.to_owned(), Arc::new(key));
            }
            None => rejected.push(RejectedKey {
                kid: None,
                reason: "no kid".into(),
            }),
        }
    }
    Ok(ParsedJwks { keys, rejected })
}
