//! Signature verification per JWS algorithm, aws-lc (`ParsedPublicKey`, what the verifier uses)
//! against OpenSSL (linked anyway through Pingora's TLS), with keys parsed once as the JWKS
//! loader does. It decides which library verifies tokens on a token-cache miss.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use criterion::{criterion_group, criterion_main, Criterion};
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::sign::Verifier;

/// A JWS signing input of typical size (header and a dozen claims).
const MESSAGE: &[u8] = b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIiwic3ViIjoidXNlci0xMjMiLCJhdWQiOiJhcGkiLCJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwic2NvcGUiOiJ1c2VyczpyZWFkIHVzZXJzOndyaXRlIiwianRpIjoiMTIzNDU2NzgtMTIzNC0xMjM0LTEyMzQtMTIzNDU2Nzg5MDEyIn0";

struct Case {
    name: &'static str,
    aws: ParsedPublicKey,
    ossl: PKey<Public>,
    digest: Option<MessageDigest>,
    signature: Vec<u8>,
    /// ES256 signatures are r || s on the wire; OpenSSL wants DER, converted per request.
    raw_ecdsa: bool,
}

fn cases() -> Vec<Case> {
    let rng = SystemRandom::new();
    let mut out = Vec::new();

    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let spki = openssl_spki_from_point(ec.public_key().as_ref());
    out.push(Case {
        name: "ES256",
        aws: ParsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, ec.public_key().as_ref()).unwrap(),
        ossl: spki,
        digest: Some(MessageDigest::sha256()),
        signature: ec.sign(&rng, MESSAGE).unwrap().as_ref().to_vec(),
        raw_ecdsa: true,
    });

    let rsa = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(&sig::RSA_PKCS1_SHA256, &rng, MESSAGE, &mut rsa_sig)
        .unwrap();
    let rsa_pub = rsa.public_key().as_ref().to_vec(); // PKCS#1 RSAPublicKey
    out.push(Case {
        name: "RS256",
        aws: ParsedPublicKey::new(&sig::RSA_PKCS1_2048_8192_SHA256, &rsa_pub).unwrap(),
        ossl: PKey::from_rsa(openssl::rsa::Rsa::public_key_from_der_pkcs1(&rsa_pub).unwrap())
            .unwrap(),
        digest: Some(MessageDigest::sha256()),
        signature: rsa_sig,
        raw_ecdsa: false,
    });

    let ed = Ed25519KeyPair::generate().unwrap();
    out.push(Case {
        name: "EdDSA",
        aws: ParsedPublicKey::new(&sig::ED25519, ed.public_key().as_ref()).unwrap(),
        ossl: PKey::public_key_from_raw_bytes(ed.public_key().as_ref(), openssl::pkey::Id::ED25519)
            .unwrap(),
        digest: None,
        signature: ed.sign(MESSAGE).as_ref().to_vec(),
        raw_ecdsa: false,
    });
    out
}

/// An uncompressed P-256 point as an OpenSSL public key.
fn openssl_spki_from_point(point: &[u8]) -> PKey<Public> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let p = openssl::ec::EcPoint::from_bytes(&group, point, &mut ctx).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::from_public_key(&group, &p).unwrap()).unwrap()
}

fn openssl_verify(case: &Case, signature: &[u8]) -> bool {
    let der;
    let signature = if case.raw_ecdsa {
        let (r, s) = signature.split_at(signature.len() / 2);
        let parsed = EcdsaSig::from_private_components(
            BigNum::from_slice(r).unwrap(),
            BigNum::from_slice(s).unwrap(),
        )
        .unwrap();
        der = parsed.to_der().unwrap();
        &der[..]
    } else {
        signature
    };
    let mut v = match case.digest {
        Some(d) => Verifier::new(d, &case.ossl).unwrap(),
        None => Verifier::new_without_digest(&case.ossl).unwrap(),
    };
    v.verify_oneshot(signature, MESSAGE).unwrap()
}

fn verify_backends(c: &mut Criterion) {
    for case in cases() {
        assert!(case.aws.verify_sig(MESSAGE, &case.signature).is_ok());
        assert!(openssl_verify(&case, &case.signature));
        let mut group = c.benchmark_group(format!("verify/{}", case.name));
        group.bench_function("aws-lc", |b| {
            b.iter(|| {
                case.aws
                    .verify_sig(black_box(MESSAGE), black_box(&case.signature))
            })
        });
        group.bench_function("openssl", |b| {
            b.iter(|| openssl_verify(&case, black_box(&case.signature)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = verify_backends
}
criterion_main!(benches);
