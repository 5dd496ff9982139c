//! Authentication hot-path targets: verification per algorithm on a cache miss, a token-cache
//! hit, and the whole per-request decision (cache, verification, revocation, route policy).
//!
//! Keys are generated fresh and tokens minted here (the crate's test minting is not exported),
//! so the numbers measure real aws-lc-rs verification, not a canned fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::Criterion;
use serde_json::{json, Value};

use portcullis::auth::alg::Alg;
use portcullis::auth::authenticator::{Authenticator, KeySource, Provider};
use portcullis::auth::cache::TokenCache;
use portcullis::auth::claims::ValidationPolicy;
use portcullis::auth::gate::{self, Identity, RouteAuth};
use portcullis::auth::jwk::{parse_jwks, KeySet};
use portcullis::auth::policy::AccessPolicy;
use portcullis::auth::verifier::{decode, verify_owned};
use portcullis::config::AuthMode;
use portcullis::revocation::RevocationList;

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://id.example.com";
const MAX_TOKEN_BYTES: usize = 8192;
/// Unrelated revocations in force during the full-decision benches.
const REVOKED_JTIS: usize = 100_000;
const REVOKED_SUBJECTS: usize = 1_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(aws_lc_rs::rsa::KeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    fn alg(&self) -> Alg {
        match self {
            Signer::Es256(_) => Alg::ES256,
            Signer::Rs256(_) => Alg::RS256,
            Signer::EdDsa(_) => Alg::EdDSA,
        }
    }

    /// Public JWK with `alg` pinned.
    fn jwk(&self, kid: &str) -> Value {
        let alg = self.alg().as_str();
        match self {
            Signer::Es256(kp) => {
                // Uncompressed point: 0x04 || x || y.
                let p = kp.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "alg": alg, "kid": kid,
                       "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Signer::Rs256(kp) => {
                let pk = kp.public_key();
                json!({"kty": "RSA", "alg": alg, "kid": kid,
                       "n": b64(pk.modulus().big_endian_without_leading_zero()),
                       "e": b64(pk.exponent().big_endian_without_leading_zero())})
            }
            Signer::EdDsa(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "alg": alg, "kid": kid,
                       "x": b64(kp.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Es256(kp) => kp.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Rs256(kp) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(&sig::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .unwrap();
                out
            }
            Signer::EdDsa(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }

    fn mint(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg().as_str(), "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }
}

/// A typical access token: audience, subject, jti, scopes, a one-hour lifetime.
fn claims(jti: &str) -> Value {
    json!({"iss": ISS, "aud": "api", "sub": "alice", "iat": NOW, "nbf": NOW,
           "exp": NOW + 3600, "jti": jti, "scope": "users:read users:write",
           "email": "alice@example.com", "roles": ["reader"]})
}

fn validation_policy() -> ValidationPolicy {
    ValidationPolicy {
        provider: Arc::from("corp"),
        issuer: ISS.to_owned(),
        audiences: vec!["api".to_owned()],
        algorithms: Alg::ALL.to_vec(),
        leeway_secs: portcullis::auth::claims::DEFAULT_LEEWAY_SECS,
        max_lifetime_secs: Some(86_400),
        require_jti: false,
        accepted_types: vec![],
    }
}

/// One provider's key set holding one key per benchmarked algorithm, and a token for each.
struct Fixture {
    keys: Arc<KeySet>,
    policy: ValidationPolicy,
    /// (algorithm name, token)
    tokens: Vec<(&'static str, String)>,
}

impl Fixture {
    fn new() -> Fixture {
        let signers = [
            (
                "es-1",
                Signer::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()),
            ),
            (
                "rs-1",
                Signer::Rs256(aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap()),
            ),
            ("ed-1", Signer::EdDsa(Ed25519KeyPair::generate().unwrap())),
        ];
        let jwks = json!({"keys": signers.iter().map(|(kid, s)| s.jwk(kid)).collect::<Vec<_>>()});
        let parsed = parse_jwks(jwks.to_string().as_bytes(), &Alg::ALL).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        assert_eq!(parsed.keys.len(), signers.len());
        let tokens = signers
            .iter()
            .map(|(kid, s)| {
                (
                    s.alg().as_str(),
                    s.mint(kid, &claims(&format!("jti-{kid}"))),
                )
            })
            .collect();
        Fixture {
            keys: Arc::new(parsed.keys),
            policy: validation_policy(),
            tokens,
        }
    }

    fn token(&self, alg: &str) -> &str {
        self.tokens
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, t)| t.as_str())
            .unwrap()
    }

    fn authenticator(&self, cache: TokenCache) -> Authenticator {
        let provider = Provider {
            policy: self.policy.clone(),
            keys: KeySource::Fixed(Arc::clone(&self.keys)),
        };
        Authenticator::new(vec![Arc::new(provider)], Arc::new(cache), MAX_TOKEN_BYTES)
    }
}

/// Revocations for the same issuer that none of the benchmarked tokens match, so every lookup
/// goes all the way into the shards and misses.
fn unrelated_revocations() -> Arc<RevocationList> {
    let list = RevocationList::new();
    for i in 0..REVOKED_JTIS {
        list.revoke_jti(ISS, &format!("{i:08x}-0000-4000-8000-{i:012x}"), None);
    }
    for i in 0..REVOKED_SUBJECTS {
        list.revoke_subject(ISS, &format!("user-{i}"), NOW, None);
    }
    Arc::new(list)
}

/// Drives a future that never waits: `authenticate` and `decide` only await a JWKS refetch, and a
/// fixed key set holding the token's kid never gets there. Polling once with a no-op waker keeps
/// an executor's bookkeeping out of the numbers.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("future waited on I/O; the bench fixture is wrong"),
    }
}

fn verify_cache_miss(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("verify_cache_miss");
    for alg in ["ES256", "RS256", "EdDSA"] {
        let token = fx.token(alg);
        let check = decode(token, MAX_TOKEN_BYTES).unwrap();
        verify_owned(check, &fx.policy, &fx.keys, NOW).unwrap();
        group.bench_function(alg, |b| {
            b.iter(|| {
                let decoded = decode(black_box(token), MAX_TOKEN_BYTES).unwrap();
                verify_owned(decoded, &fx.policy, &fx.keys, black_box(NOW)).unwrap()
            })
        });
    }
    group.finish();
}

fn token_cache_hit(c: &mut Criterion) {
    let fx = Fixture::new();
    let token = fx.token("ES256");
    let verified = Arc::new(
        verify_owned(
            decode(token, MAX_TOKEN_BYTES).unwrap(),
            &fx.policy,
            &fx.keys,
            NOW,
        )
        .unwrap(),
    );
    let cache = TokenCache::new(10_000, 300);
    // A cache with other residents, so the hit is not into near-empty shards.
    for i in 0..5_000 {
        cache.insert(&format!("{token}-{i:05}"), Arc::clone(&verified), NOW);
    }
    cache.insert(token, Arc::clone(&verified), NOW);
    assert!(cache.get(token, NOW).is_some());
    c.bench_function("token_cache/hit", |b| {
        b.iter(|| cache.get(black_box(token), black_box(NOW)).unwrap())
    });
}

/// Steps 6 of the pipeline as the proxy runs them: authenticate, check revocation, authorize.
fn admit(
    auth: &Authenticator,
    revocations: &RevocationList,
    route: &RouteAuth,
    authorization: &[&[u8]],
) -> bool {
    let Ok(identity) = ready(gate::authenticate(
        Some(auth),
        route,
        authorization,
        false,
        NOW,
        &mut None,
    )) else {
        return false;
    };
    gate::check_revocation(revocations, &identity).is_ok()
        && gate::authorize(route, &identity).is_ok()
        && matches!(identity, Identity::Token(_))
}

fn authenticate(c: &mut Criterion) {
    let fx = Fixture::new();
    let revocations = unrelated_revocations();
    let cached = fx.authenticator(TokenCache::new(10_000, 300));
    let uncached = fx.authenticator(TokenCache::new(0, 300));

    let mut group = c.benchmark_group("authenticate");
    let es = fx.token("ES256");
    // Prime the cache; every measured call is then a hit.
    ready(cached.authenticate(es, None, NOW)).unwrap();
    assert_eq!(cached.cache().len(), 1);
    group.bench_function("cache_hit", |b| {
        b.iter(|| ready(cached.authenticate(black_box(es), None, black_box(NOW))).unwrap())
    });
    for alg in ["ES256", "RS256", "EdDSA"] {
        let token = fx.token(alg);
        group.bench_function(format!("cache_disabled/{alg}"), |b| {
            b.iter(|| ready(uncached.authenticate(black_box(token), None, black_box(NOW))).unwrap())
        });
    }
    group.finish();

    let route = RouteAuth {
        mode: AuthMode::Required,
        providers: Some(vec!["corp".to_owned()]),
        policy: AccessPolicy::new(
            vec!["users:read".to_owned()],
            vec![],
            Some(("roles".to_owned(), vec!["reader".to_owned()])),
            vec![],
        ),
    };
    let header = format!("Bearer {es}");
    let authorization = [header.as_bytes()];
    assert!(admit(&cached, &revocations, &route, &authorization));
    assert!(admit(&uncached, &revocations, &route, &authorization));

    // Kept under its old name so results compare across versions: the whole per-request
    // decision, with 100,000 unrelated revocations in force.
    let mut group = c.benchmark_group("gate_decide");
    for (name, auth) in [("cache_hit", &cached), ("cache_disabled/ES256", &uncached)] {
        group.bench_function(name, |b| {
            b.iter(|| admit(auth, &revocations, &route, black_box(&authorization)))
        });
    }
    group.finish();
}

common::bench_main!(verify_cache_miss, token_cache_hit, authenticate);
