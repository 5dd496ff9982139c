//! Property tests of what parses bytes from the network or from an operator: request targets,
//! `Authorization` headers and compact JWS, JWKS documents, the config file.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, in `cargo test`);
//! `make fuzz` runs the same properties with a large budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::auth::alg::Alg;
use crate::auth::claims::ValidationPolicy;
use crate::auth::jwk::{parse_jwks, KeySet};
use crate::auth::jws::{extract_bearer, valid_kid};
use crate::auth::test_support::{b64, jwks, Signer};
use crate::auth::verifier::{decode, verify};
use crate::hygiene::{canonicalize_target, RequestTarget};

// ---------------------------------------------------------------------------------------------
// Request targets

/// Pieces that exercise every rule: dot segments plain and encoded, encoded slashes and
/// backslashes, unreserved characters encoded, repeated slashes, invalid escapes, queries.
fn target_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E".to_owned()),
        Just(".%2e".to_owned()),
        Just("%2f".to_owned()),
        Just("%2F".to_owned()),
        Just("%5c".to_owned()),
        Just("%41".to_owned()),
        Just("%7e".to_owned()),
        Just("%7E".to_owned()),
        Just("%25".to_owned()),
        Just("%".to_owned()),
        Just("%g1".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("~".to_owned()),
        "[a-zA-Z0-9_-]{1,4}",
        "%[0-9a-fA-F]{2}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop::collection::vec(target_piece(), 0..16).prop_map(|p| format!("/{}", p.concat()))
}

/// The segment as an upstream that percent-decodes would read it.
fn decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #[test]
    fn any_bytes_as_a_target_never_panic(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = canonicalize_target(&raw);
    }

    #[test]
    fn a_canonical_path_is_a_fixed_point_without_dot_segments_or_encoded_separators(raw in target()) {
        let Ok(RequestTarget::Origin { path, .. }) = canonicalize_target(raw.as_bytes()) else {
            return Ok(());
        };
        prop_assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
        prop_assert!(!path.contains("//"), "{raw:?} -> {path:?}");
        let lower = path.to_ascii_lowercase();
        prop_assert!(!lower.contains("%2f") && !lower.contains("%5c"), "{raw:?} -> {path:?}");
        for segment in path.split('/') {
            let d = decoded(segment);
            prop_assert!(d != "." && d != "..", "{raw:?} -> {path:?}: segment {segment:?}");
        }
        // Canonicalising again changes nothing and needs no rewrite.
        let again = canonicalize_target(path.as_bytes()).unwrap();
        match again {
            RequestTarget::Origin { path: p2, query } => {
                prop_assert_eq!(&p2, &path);
                prop_assert!(matches!(p2, std::borrow::Cow::Borrowed(_)), "{path:?} rewritten again");
                prop_assert_eq!(query, None);
            }
            RequestTarget::Asterisk => prop_assert!(false, "{path:?} became *"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authorization headers and compact JWS

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://id.example.com";
const MAX_TOKEN: usize = 8192;

struct Fixture {
    token: String,
    keys: KeySet,
    policy: ValidationPolicy,
}

fn fixture() -> &'static Fixture {
    static FX: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FX.get_or_init(|| {
        let signer = Signer::es256();
        let mut jwk = signer.jwk("k1");
        jwk["alg"] = json!("ES256");
        let keys = parse_jwks(&jwks(&[jwk]), &Alg::ALL).unwrap().keys;
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}).to_string();
        let payload = json!({"iss": ISS, "aud": "api", "sub": "alice", "exp": NOW + 600,
                             "iat": NOW, "jti": "j-1"})
        .to_string();
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = signer.sign(Alg::ES256, input.as_bytes());
        Fixture {
            token: format!("{input}.{}", b64(&sig)),
            keys,
            policy: ValidationPolicy {
                provider: Arc::from("corp"),
                issuer: ISS.to_owned(),
                audiences: vec!["api".to_owned()],
                algorithms: vec![Alg::ES256],
                leeway_secs: 30,
                max_lifetime_secs: None,
                require_jti: false,
                accepted_types: vec![],
            },
        }
    })
}

/// One edit of a token's bytes.
#[derive(Clone, Debug)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    SwapSegments(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"AZaz09-_.=+/ ".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
        (0..3usize, 0..3usize).prop_map(|(a, b)| Edit::SwapSegments(a, b)),
    ]
}

fn apply(token: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut t = token.to_vec();
    for e in edits {
        let n = t.len().max(1);
        match *e {
            Edit::Replace(i, b) => {
                if let Some(x) = t.get_mut(i % n) {
                    *x = b;
                }
            }
            Edit::Insert(i, b) => t.insert(i % (t.len() + 1), b),
            Edit::Delete(i) => {
                if !t.is_empty() {
                    t.remove(i % n);
                }
            }
            Edit::Truncate(i) => t.truncate(i % n),
            Edit::SwapSegments(a, b) => {
                let mut parts: Vec<Vec<u8>> = t.split(|&c| c == b'.').map(<[u8]>::to_vec).collect();
                if a < parts.len() && b < parts.len() {
                    parts.swap(a, b);
                }
                t = parts.join(&b'.');
            }
        }
    }
    t
}

proptest! {
    #[test]
    fn any_authorization_header_never_panics(values in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..80), 0..3)) {
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        if let Ok(token) = extract_bearer(&refs) {
            if let Ok(d) = decode(token, MAX_TOKEN) {
                let fx = fixture();
                let _ = verify(&d, &fx.policy, &fx.keys, NOW);
            }
        }
    }

    #[test]
    fn a_mutated_token_is_never_verified(edits in prop::collection::vec(edit(), 1..4)) {
        let fx = fixture();
        let original = fx.token.as_bytes();
        let mutated = apply(original, &edits);
        let header = [b"Bearer ".as_slice(), &mutated].concat();
        let Ok(token) = extract_bearer(&[&header]) else { return Ok(()) };
        let verified = decode(token, MAX_TOKEN)
            .ok()
            .and_then(|d| verify(&d, &fx.policy, &fx.keys, NOW).ok());
        // `Bearer` may be followed by more than one space (RFC 6750 `1*SP`), so an edit that
        // only adds spaces in front leaves the very token that was signed.
        if token.as_bytes() == original {
            prop_assert!(verified.is_some(), "the unmutated token must verify");
        } else {
            prop_assert!(verified.is_none(), "mutated token verified: {:?}", String::from_utf8_lossy(&mutated));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWKS documents

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[A-Za-z0-9_-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "EC", "RSA", "OKP", "oct", "P-256", "P-384", "Ed25519", "ES256", "RS256", "EdDSA",
            "none", "HS256", "sig", "enc", "verify", "AQAB", ""
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

/// A JWK-shaped object: the members a JWK has, each with a random value, some left out.
fn jwk_like() -> impl Strategy<Value = Value> {
    let members = [
        "kty", "crv", "x", "y", "n", "e", "alg", "use", "kid", "key_ops", "d", "x5c",
    ];
    prop::collection::vec(
        (prop::sample::select(members.to_vec()), json_scalar()),
        0..10,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

proptest! {
    #[test]
    fn any_bytes_as_a_jwks_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_jwks(&body, &Alg::ALL);
    }

    #[test]
    fn a_jwks_of_random_keys_keeps_only_well_formed_ones(
        keys in prop::collection::vec(jwk_like(), 0..6),
        real in any::<bool>(),
        real_kid in "[ -~]{0,300}",
    ) {
        let mut keys = keys;
        if real {
            keys.push(Signer::es256().jwk(&real_kid));
        }
        let body = jwks(&keys);
        if let Ok(parsed) = parse_jwks(&body, &Alg::ALL) {
            prop_assert!(parsed.keys.len() + parsed.rejected.len() <= keys.len());
            for kid in parsed.keys.kids() {
                prop_assert!(valid_kid(&kid), "accepted kid {kid:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The config loader

const BASE_CONFIG: &str = r#"
listeners: { http: { addr: "127.0.0.1:8080" }, admin: { addr: "127.0.0.1:9901" } }
limits: { max_body_bytes: 1024, header_read_timeout: 5s }
providers:
  - name: corp
    issuer: https://id.example.com
    jwks: { url: "https://id.example.com/jwks.json", refresh_interval: 5m }
upstreams:
  svc: { peers: [ { addr: "127.0.0.1:9000" } ] }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: svc
    auth: { mode: required }
    rate_limit: { rps: 10, burst: 20 }
"#;

/// Key paths of the base config, each a list of map keys / sequence indexes.
const PATHS: &[&[&str]] = &[
    &["listeners", "http", "addr"],
    &["limits", "max_body_bytes"],
    &["limits", "header_read_timeout"],
    &["providers", "0", "issuer"],
    &["providers", "0", "jwks", "refresh_interval"],
    &["upstreams", "svc", "peers"],
    &["routes", "0", "match", "path_prefix"],
    &["routes", "0", "auth", "mode"],
    &["routes", "0", "rate_limit", "rps"],
    &["routes", "0", "upstream"],
];

fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value as Y;
    let leaf = prop_oneof![
        Just(Y::Null),
        any::<bool>().prop_map(Y::Bool),
        any::<i64>().prop_map(|n| Y::Number(n.into())),
        any::<f64>().prop_map(|f| Y::Number(f.into())),
        "[ -~]{0,20}".prop_map(Y::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Y::Sequence),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|kv| {
                Y::Mapping(kv.into_iter().map(|(k, v)| (Y::String(k), v)).collect())
            }),
        ]
    })
}

fn set_path(doc: &mut serde_yaml::Value, path: &[&str], value: serde_yaml::Value) {
    let mut at = doc;
    for (i, key) in path.iter().enumerate() {
        let next = match key.parse::<usize>() {
            Ok(n) => at.get_mut(n),
            Err(_) => at.get_mut(*key),
        };
        let Some(next) = next else { return };
        if i + 1 == path.len() {
            *next = value;
            return;
        }
        at = next;
    }
}

/// `routes.0.rate_limit.rps` -> `routes[0].rate_limit.rps`, the way errors name a key.
fn dotted(path: &[&str]) -> String {
    let mut out = String::new();
    for key in path {
        if key.parse::<usize>().is_ok() {
            out.push_str(&format!("[{key}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
    }
    out
}

proptest! {
    #[test]
    fn any_bytes_as_a_config_never_panic(text in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = crate::config::parse_and_validate(&text, std::path::Path::new("/nonexistent"));
    }

    #[test]
    fn a_bad_value_is_refused_with_its_key_path(at in 0..PATHS.len(), value in yaml_value()) {
        let base: serde_yaml::Value = serde_yaml::from_str(BASE_CONFIG).unwrap();
        prop_assert!(crate::config::parse_and_validate(BASE_CONFIG.as_bytes(),
            std::path::Path::new("/nonexistent")).is_ok());
        let mut doc = base;
        set_path(&mut doc, PATHS[at], value);
        let text = serde_yaml::to_string(&doc).unwrap();
        if let Err(errors) = crate::config::parse_and_validate(text.as_bytes(),
            std::path::Path::new("/nonexistent")) {
            let want = dotted(PATHS[at]);
            // The bad value's own path, or a path inside or naming it (a route's upstream is
            // reported where the route names it).
            let listing = errors.join("\n");
            let parent = want.rsplit_once('.').map_or(want.as_str(), |(p, _)| p);
            prop_assert!(listing.contains(&want) || listing.contains(parent),
                "{want}: errors do not name the key path:\n{listing}\n--- config:\n{text}");
        }
    }
}
