//! Keys, signers and JSON builders shared by the token-checking tests, so that no test module
//! has to reach into another module's tests (which would make the two import each other).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::alg::Alg;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A test signer with its public JWK.
pub enum Signer {
    Ec(EcdsaKeyPair, usize),
    Rsa(&'static RsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub fn rsa_pair() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
}

pub fn rsa_pair_2() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
}

impl Signer {
    pub fn es256() -> Signer {
        Signer::Ec(
            EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            32,
        )
    }
    pub fn es384() -> Signer {
        Signer::Ec(
            EcdsaKeyPair::generate(&sig::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            48,
        )
    }
    pub fn ed25519() -> Signer {
        Signer::Ed(Ed25519KeyPair::generate().unwrap())
    }
    pub fn rsa() -> Signer {
        Signer::Rsa(rsa_pair())
    }

    /// Public JWK without `alg` (added by callers when wanted).
    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Ec(kp, len) => {
                let p = kp.public_key().as_ref();
                json!({"kty":"EC","crv": if *len == 32 {"P-256"} else {"P-384"},
                       "kid": kid, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..])})
            }
            Signer::Ed(kp) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":b64(kp.public_key().as_ref())})
            }
            Signer::Rsa(kp) => {
                let pk = kp.public_key();
                json!({"kty":"RSA","kid":kid,
                       "n": b64(pk.modulus().big_endian_without_leading_zero()),
                       "e": b64(pk.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    /// Sign `msg` as `alg` (for RSA, which padding; for EC/Ed, `alg` is ignored).
    pub fn sign(&self, alg: Alg, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ec(kp, _) => kp.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let (_, enc) = rsa_algs()
                    .zip(RSA_SIGNING)
                    .find(|(a, _)| *a == alg)
                    .expect("an RSA alg");
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(enc, &rng, msg, &mut out).unwrap();
                out
            }
        }
    }
}

/// The RSA algorithms, in `Alg::ALL` order.
pub fn rsa_algs() -> impl Iterator<Item = Alg> {
    Alg::ALL.into_iter().filter(|a| a.is_rsa())
}

/// The signing padding of each of [`rsa_algs`], in the same order.
const RSA_SIGNING: [&dyn sig::RsaEncoding; 6] = [
    &sig::RSA_PKCS1_SHA256,
    &sig::RSA_PKCS1_SHA384,
    &sig::RSA_PKCS1_SHA512,
    &sig::RSA_PSS_SHA256,
    &sig::RSA_PSS_SHA384,
    &sig::RSA_PSS_SHA512,
];

pub fn jwks(keys: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// An endless xorshift64 sequence from `seed`: the crude fuzz loops mutate the same way on
/// every run, so a failure reproduces.
pub fn xorshift(mut seed: u64) -> impl Iterator<Item = u64> {
    std::iter::repeat_with(move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    })
}

/// `v` with member `k` set to `x`.
pub fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

/// `v` without member `k`.
pub fn without(mut v: Value, k: &str) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(k);
    }
    v
}
