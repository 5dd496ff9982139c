use std::fs;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

use super::*;
use crate::clock::unix_now as now;
use crate::config::Dur;

const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");

fn cheap(pw: &str) -> String {
    hash_secret(pw.as_bytes(), argon2::Params::new(8, 1, 1, None).unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Fixture {
    dir: PathBuf,
    conf: IssuerConf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn fixture_with(alg: Alg) -> Fixture {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-issuer-{}-{}",
        std::process::id(),
        keys::random_jti()
    ));
    fs::create_dir_all(dir.join("keys")).unwrap();
    let pem = keys::generate_pem(alg, aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    fs::write(dir.join("keys/dev-1.pem"), pem).unwrap();
    fs::write(dir.join("keys/jwks.json"), r#"{"keys":[]}"#).unwrap();
    let users = format!(
        "users:\n  - username: alice\n    password_hash: \"{}\"\n    scopes: [users:read, users:write]\n  - username: carol\n    password_hash: \"{}\"\n    scopes: [users:read]\n    disabled: true\n  - username: dave\n    password_hash: \"{}\"\n",
        cheap("alice-pw"),
        cheap("carol-pw"),
        cheap("dave-pw"),
    );
    let clients = format!(
        "clients:\n  - client_id: reporting\n    secret_hash: \"{}\"\n    scopes: [reports:read, reports:write]\n  - client_id: old\n    secret_hash: \"{}\"\n    scopes: [reports:read]\n    disabled: true\n",
        cheap("rep-secret"),
        cheap("old-secret"),
    );
    fs::write(dir.join("users.yaml"), users).unwrap();
    fs::write(dir.join("clients.yaml"), clients).unwrap();
    let conf = IssuerConf {
        enabled: true,
        path_prefix: "/auth".into(),
        issuer: "https://gateway.test".into(),
        signing_key: "keys/dev-1.pem".into(),
        audience: "api".into(),
        token_ttl: Dur::secs(900),
        users_file: Some("users.yaml".into()),
        clients_file: Some("clients.yaml".into()),
        max_failed_logins: 5,
    };
    Fixture { dir, conf }
}

fn fixture() -> (Fixture, Issuer) {
    let f = fixture_with(Alg::ES256);
    let issuer = Issuer::load(&f.conf, &f.dir).unwrap();
    (f, issuer)
}

fn basic(id: &str, secret: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
}

fn header<'a>(r: &'a EndpointResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(r: &EndpointResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

const ALICE: &str = "grant_type=password&username=alice&password=alice-pw";
const CLIENT: &str = "grant_type=client_credentials";

async fn password(issuer: &Issuer, form: &str, from: &str) -> EndpointResponse {
    issuer
        .token_endpoint(form.as_bytes(), FORM, None, ip(from), now())
        .await
}

/// A token request with HTTP Basic client credentials.
async fn as_client(
    issuer: &Issuer,
    form: &str,
    (id, secret): (&str, &str),
    from: &str,
) -> EndpointResponse {
    let auth = basic(id, secret);
    issuer
        .token_endpoint(form.as_bytes(), FORM, Some(&auth), ip(from), now())
        .await
}

/// The verified claims of the token in a successful answer.
fn token_claims(issuer: &Issuer, r: &EndpointResponse) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    verify(issuer, body(r)["access_token"].as_str().unwrap()).claims
}

fn assert_no_store(r: &EndpointResponse) {
    assert_eq!(
        header(r, "Content-Type"),
        Some("application/json;charset=UTF-8")
    );
    assert_eq!(header(r, "Cache-Control"), Some("no-store"));
    assert_eq!(header(r, "Pragma"), Some("no-cache"));
}

fn assert_error(r: &EndpointResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_no_store(r);
    let b = body(r);
    assert_eq!(b["error"], code);
    assert!(b["error_description"].is_string());
    assert_eq!(
        b.as_object().unwrap().len(),
        2,
        "only error and description"
    );
}

fn verify(issuer: &Issuer, token: &str) -> jsonwebtoken::TokenData<Value> {
    let set: JwkSet = serde_json::from_slice(issuer.jwks_json()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(issuer.kid()));
    let key = DecodingKey::from_jwk(set.find(issuer.kid()).unwrap()).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer.issuer()]);
    v.set_audience(&[issuer.audience()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v).unwrap()
}

#[tokio::test]
async fn password_grant_issues_a_token_the_jwks_verifies() {
    let (_f, issuer) = fixture();
    assert_eq!(issuer.kid(), "dev-1");
    assert_eq!(issuer.algorithm(), "ES256");
    assert_eq!(issuer.path_prefix(), "/auth");
    let r = password(&issuer, ALICE, "192.0.2.1").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_no_store(&r);
    let b = body(&r);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["scope"], "users:read users:write");
    assert_eq!(b.as_object().unwrap().len(), 4, "no refresh token");
    let data = verify(&issuer, b["access_token"].as_str().unwrap());
    assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    let c = data.claims;
    assert_eq!(c["iss"], "https://gateway.test");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "api");
    assert_eq!(c["scope"], "users:read users:write");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert_eq!(c["jti"].as_str().unwrap().len(), 32);
    assert!(c.get("client_id").is_none());
}

#[tokio::test]
async fn eddsa_keys_sign_and_other_keys_are_refused() {
    let f = fixture_with(Alg::EdDSA);
    let issuer = Issuer::load(&f.conf, &f.dir).unwrap();
    assert_eq!(issuer.algorithm(), "EdDSA");
    token_claims(&issuer, &password(&issuer, ALICE, "192.0.2.1").await);

    for alg in [Alg::ES384, Alg::RS256] {
        let f = fixture_with(alg);
        let errs = Issuer::load(&f.conf, &f.dir).err().unwrap();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("issuer.signing_key: "), "{errs:?}");
        assert!(errs[0].contains("ES256"), "{errs:?}");
    }
}

#[tokio::test]
async fn wrong_password_unknown_and_disabled_users_look_the_same() {
    let (_f, issuer) = fixture();
    let mut answers = Vec::new();
    for form in [
        "grant_type=password&username=alice&password=nope",
        "grant_type=password&username=mallory&password=nope",
        "grant_type=password&username=carol&password=carol-pw",
    ] {
        let r = password(&issuer, form, "192.0.2.10").await;
        assert_error(&r, 400, "invalid_grant");
        answers.push((r.status, r.headers, r.body));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let (_f, issuer) = fixture();
    let at = ip("192.0.2.20");
    let cases: &[(&[u8], Option<&[u8]>)] = &[
        (b"username=alice&password=alice-pw", FORM),
        (b"grant_type=password&password=alice-pw", FORM),
        (b"grant_type=password&username=alice", FORM),
        (b"grant_type=password&username=alice&password=", FORM),
        (
            b"grant_type=password&username=alice&username=bob&password=x",
            FORM,
        ),
        (b"grant_type=password&username=al%zzice&password=x", FORM),
        (
            b"grant_type=password&username=alice&password=alice-pw",
            Some(b"application/json"),
        ),
        (
            b"grant_type=password&username=alice&password=alice-pw",
            None,
        ),
    ];
    for (form, ct) in cases {
        let r = issuer.token_endpoint(form, *ct, None, at, now()).await;
        assert_error(&r, 400, "invalid_request");
    }
    let big = vec![b'a'; MAX_FORM_BYTES + 1];
    assert_error(
        &issuer.token_endpoint(&big, FORM, None, at, now()).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn unknown_grants_are_unsupported() {
    let (_f, issuer) = fixture();
    for g in ["authorization_code", "refresh_token", "PASSWORD"] {
        let r = password(&issuer, &format!("grant_type={g}"), "192.0.2.21").await;
        assert_error(&r, 400, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn client_credentials_grant() {
    let (_f, issuer) = fixture();
    let at = "192.0.2.30";
    let ok = as_client(&issuer, CLIENT, ("reporting", "rep-secret"), at).await;
    assert_eq!(body(&ok)["scope"], "reports:read reports:write");
    let c = token_claims(&issuer, &ok);
    assert_eq!(c["sub"], "reporting");
    assert_eq!(c["client_id"], "reporting");

    for auth in [
        Some(basic("reporting", "wrong")),
        Some(basic("reporting", "")),
        Some(basic("nobody", "rep-secret")),
        Some(basic("old", "old-secret")),
        Some(b"Bearer abc".to_vec()),
        None,
    ] {
        let r = issuer
            .token_endpoint(CLIENT.as_bytes(), FORM, auth.as_deref(), ip(at), now())
            .await;
        assert_error(&r, 401, "invalid_client");
        assert_eq!(
            header(&r, "WWW-Authenticate"),
            Some("Basic realm=\"portcullis\"")
        );
    }
    // Body credentials are refused, alone or alongside Basic.
    let in_body = format!("{CLIENT}&client_id=reporting&client_secret=rep-secret");
    assert_error(
        &password(&issuer, &in_body, at).await,
        401,
        "invalid_client",
    );
    let both = format!("{CLIENT}&client_secret=rep-secret");
    let r = as_client(&issuer, &both, ("reporting", "rep-secret"), at).await;
    assert_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn basic_secrets_are_form_decoded() {
    let (_f, issuer) = fixture();
    // `rep%2Dsecret` decodes to `rep-secret` (RFC 6749 §2.3.1).
    let r = as_client(&issuer, CLIENT, ("reporting", "rep%2Dsecret"), "192.0.2.31").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn password_grant_checks_a_client_when_one_is_offered() {
    let (_f, issuer) = fixture();
    let at = "192.0.2.40";
    let r = as_client(&issuer, ALICE, ("reporting", "bad"), at).await;
    assert_error(&r, 401, "invalid_client");
    let r = as_client(&issuer, ALICE, ("reporting", "rep-secret"), at).await;
    let c = token_claims(&issuer, &r);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["client_id"], "reporting");
}

#[tokio::test]
async fn scopes_are_narrowed_and_never_widened() {
    let (_f, issuer) = fixture();
    let at = "192.0.2.50";
    let r = password(
        &issuer,
        &format!("{ALICE}&scope=users%3Aread+users:read"),
        at,
    )
    .await;
    assert_eq!(body(&r)["scope"], "users:read");
    assert_eq!(token_claims(&issuer, &r)["scope"], "users:read");

    for scope in ["users:read+admin", "%22quoted%22"] {
        let r = password(&issuer, &format!("{ALICE}&scope={scope}"), at).await;
        assert_error(&r, 400, "invalid_scope");
    }

    // A user without scopes gets an empty scope, and cannot ask for any.
    let dave = "grant_type=password&username=dave&password=dave-pw";
    assert_eq!(body(&password(&issuer, dave, at).await)["scope"], "");
    let r = as_client(
        &issuer,
        &format!("{CLIENT}&scope=users:read"),
        ("reporting", "rep-secret"),
        at,
    )
    .await;
    assert_error(&r, 400, "invalid_scope");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_name_and_ip() {
    let (f, issuer) = fixture();
    let before = LOGIN_THROTTLED.get();
    let bad = "grant_type=password&username=alice&password=guess";
    for _ in 0..5 {
        assert_error(
            &password(&issuer, bad, "198.51.100.1").await,
            400,
            "invalid_grant",
        );
    }
    // The sixth attempt is refused even with the right password.
    let r = password(&issuer, ALICE, "198.51.100.1").await;
    assert_error(&r, 429, "too_many_requests");
    let retry: u64 = header(&r, "Retry-After").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(LOGIN_THROTTLED.get() > before);
    // Another IP, and another user from the same IP, are unaffected.
    assert_eq!(password(&issuer, ALICE, "198.51.100.2").await.status, 200);
    let dave = "grant_type=password&username=dave&password=dave-pw";
    assert_eq!(password(&issuer, dave, "198.51.100.1").await.status, 200);
    // A reload keeps the counts.
    let reloaded = Issuer::load(&f.conf, &f.dir).unwrap();
    reloaded.inherit_state(&issuer);
    assert_eq!(password(&reloaded, ALICE, "198.51.100.1").await.status, 429);
    // The window frees a slot after 15 minutes.
    let later = now() + 901;
    let r = reloaded
        .token_endpoint(ALICE.as_bytes(), FORM, None, ip("198.51.100.1"), later)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bad_client_secrets_are_throttled_too() {
    let (_f, issuer) = fixture();
    let at = "198.51.100.9";
    for _ in 0..5 {
        let r = as_client(&issuer, CLIENT, ("reporting", "guess"), at).await;
        assert_eq!(r.status, 401);
    }
    let r = as_client(&issuer, CLIENT, ("reporting", "rep-secret"), at).await;
    assert_error(&r, 429, "too_many_requests");
}

#[test]
fn load_errors_name_the_file_and_entry() {
    let f = fixture_with(Alg::ES256);
    fs::write(
        f.dir.join("users.yaml"),
        "users:\n  - username: a\n    password_hash: \"$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\n  - username: b\n    password_hash: nope\n    scopes: [\"bad scope\"]\n",
    )
    .unwrap();
    fs::write(
        f.dir.join("clients.yaml"),
        "clients:\n  - client_id: c\n    secret_hash: x\n    colour: red\n",
    )
    .unwrap();
    let errs = Issuer::load(&f.conf, &f.dir).err().unwrap();
    let all = errs.join("\n");
    for want in [
        "issuer.users_file: users[0] (\"a\"): password_hash: algorithm argon2i",
        "issuer.users_file: users[1] (\"b\"): password_hash: not a PHC string",
        "scopes: invalid scope \"bad scope\"",
        "issuer.clients_file: line 4: ",
        "colour",
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }

    let mut conf = f.conf.clone();
    conf.users_file = Some("missing.yaml".into());
    conf.signing_key = "keys/jwks.json".into();
    let errs = Issuer::load(&conf, &f.dir).err().unwrap();
    assert!(
        errs.iter().any(|e| e.starts_with("issuer.users_file: ")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("issuer.signing_key: ")),
        "{errs:?}"
    );

    let dup = format!(
        "users:\n  - {{username: a, password_hash: \"{0}\"}}\n  - {{username: a, password_hash: \"{0}\"}}\n",
        cheap("x")
    );
    fs::write(f.dir.join("users.yaml"), dup).unwrap();
    fs::write(f.dir.join("clients.yaml"), "").unwrap();
    let errs = Issuer::load(&f.conf, &f.dir).err().unwrap();
    assert_eq!(
        errs,
        vec!["issuer.users_file: users[1] (\"a\"): username: duplicate".to_string()]
    );
}

#[test]
fn revoke_form_token_parsing() {
    assert_eq!(
        revoke_form_token(b"token=abc.def.ghi&token_type_hint=access_token", FORM),
        Some("abc.def.ghi".into())
    );
    assert_eq!(revoke_form_token(b"token=a%2Eb", FORM), Some("a.b".into()));
    assert_eq!(revoke_form_token(b"token=", FORM), None);
    assert_eq!(revoke_form_token(b"other=1", FORM), None);
    assert_eq!(revoke_form_token(b"token=a&token=b", FORM), None);
    assert_eq!(
        revoke_form_token(b"token=abc", Some(b"application/json")),
        None
    );
    assert_eq!(revoke_form_token(b"token=abc", None), None);
}

#[tokio::test]
async fn the_endpoint_future_is_send() {
    // Pingora's handlers are `Send` futures; holding a lock guard across `.await` would break this.
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let (_f, issuer) = fixture();
    let r = assert_send(issuer.token_endpoint(b"", FORM, None, ip("192.0.2.99"), now())).await;
    assert_error(&r, 400, "invalid_request");
}
