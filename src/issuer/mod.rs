//! The built-in OAuth 2.0 token endpoint (conf/README.md §6): password and client-credentials grants
//! (RFC 6749 §4.3, §4.4), signed with the configured key and published as a JWKS so the gateway
//! validates its own tokens like any other provider's.
//!
//! This module is transport-free: it takes the body and the two headers that matter and returns
//! status, headers and body. The proxy glue owns routing, body limits and revocation.
//!
//! Security choices, each deliberate:
//! - wrong password, unknown user and disabled user give the same answer after the same argon2
//!   work (a dummy hash stands in for unknown names), so the endpoint does not enumerate accounts;
//! - argon2 runs on blocking threads, at most a few at once, so a login flood cannot exhaust
//!   memory (each run allocates the hash's `m` KiB) or starve the proxy's async workers;
//! - failed logins are throttled per (name, client IP) before the password is even checked.

mod accounts;
pub mod form;
mod shared_throttle;
mod throttle;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::auth::alg::Alg;
use crate::config::{resolve_path, IssuerConf};
use crate::keys::{self, KeyError, PrivateKey, SigningKey};
pub use accounts::hash_secret;

/// The built-in issuer takes part in authentication as a provider under this name, so routes
/// can name it in `auth.providers`.
pub const PROVIDER_NAME: &str = "issuer";
use accounts::{Account, Accounts, Kind};
use form::{is_form_content_type, parse_basic, parse_form, BasicCredentials, Form, FormError};
use throttle::{Key, Subject, Throttle};

pub static LOGIN_THROTTLED: LazyLock<IntCounter> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a duplicate name is a programming error caught at start-up
    register_int_counter!(
        "portcullis_issuer_throttled_total",
        "Token requests refused because of too many failed logins for a name and client IP."
    )
    .expect("metric registration")
});

pub static TOKENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    register_int_counter_vec!(
        "portcullis_issuer_tokens_total",
        "Token endpoint answers, by grant and result.",
        &["grant", "result"]
    )
    .expect("metric registration")
});

/// Token requests are a few hundred bytes; anything this large is not a login.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Concurrent argon2 runs, process-wide (shared across reloads).
static ARGON2_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    Arc::new(Semaphore::new(n))
});

const JSON: &str = "application/json;charset=UTF-8";

/// An answer for the proxy glue to write as is.
#[derive(Debug)]
pub struct EndpointResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl EndpointResponse {
    /// RFC 6749 §5.1: token responses must never be cached, by the client or anything between.
    fn json(status: u16, body: &Value) -> EndpointResponse {
        EndpointResponse {
            status,
            headers: vec![
                ("Content-Type", JSON.into()),
                ("Cache-Control", "no-store".into()),
                ("Pragma", "no-cache".into()),
            ],
            body: body.to_string().into_bytes(),
        }
    }
}

/// Why a token request failed; each is one RFC 6749 §5.2 answer.
#[derive(Debug)]
enum Failure {
    InvalidRequest(&'static str),
    InvalidClient(&'static str),
    InvalidGrant,
    InvalidScope(&'static str),
    UnsupportedGrantType,
    Throttled(u64),
    ServerError,
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Failure::InvalidRequest(_) => "invalid_request",
            Failure::InvalidClient(_) => "invalid_client",
            Failure::InvalidGrant => "invalid_grant",
            Failure::InvalidScope(_) => "invalid_scope",
            Failure::UnsupportedGrantType => "unsupported_grant_type",
            Failure::Throttled(_) => "throttled",
            Failure::ServerError => "server_error",
        }
    }

    fn response(&self) -> EndpointResponse {
        let (status, code, description) = match self {
            Failure::InvalidRequest(d) => (400, "invalid_request", *d),
            Failure::InvalidClient(d) => (401, "invalid_client", *d),
            // One text for wrong password, unknown user and disabled user.
            Failure::InvalidGrant => (400, "invalid_grant", "invalid username or password"),
            Failure::InvalidScope(d) => (400, "invalid_scope", *d),
            Failure::UnsupportedGrantType => (
                400,
                "unsupported_grant_type",
                "grant_type must be password or client_credentials",
            ),
            Failure::Throttled(_) => (429, "too_many_requests", "too many failed logins"),
            Failure::ServerError => (500, "server_error", "the token could not be signed"),
        };
        let mut r = EndpointResponse::json(
            status,
            &json!({ "error": code, "error_description": description }),
        );
        match self {
            // RFC 6749 §5.2: a 401 names the scheme the client should authenticate with.
            Failure::InvalidClient(_) => r
                .headers
                .push(("WWW-Authenticate", "Basic realm=\"portcullis\"".into())),
            Failure::Throttled(secs) => r.headers.push(("Retry-After", secs.to_string())),
            _ => {}
        }
        r
    }
}

/// The issuer built from one config: its key, its accounts, and the throttle it shares with its
/// predecessors across reloads.
pub struct Issuer {
    path_prefix: String,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    max_failed_logins: u32,
    signing_key: SigningKey,
    jwks: Vec<u8>,
    users: Accounts,
    clients: Accounts,
    throttle: ArcSwap<Throttle>,
}

impl Issuer {
    /// Reads the signing key and the users and clients files (relative paths against
    /// `base_dir`). Every problem is reported with its key path. Runs argon2 twice (the dummy
    /// hashes), so call it off the async workers.
    pub fn load(conf: &IssuerConf, base_dir: &Path) -> Result<Issuer, Vec<String>> {
        LazyLock::force(&LOGIN_THROTTLED);
        LazyLock::force(&TOKENS);
        let mut errors = Vec::new();
        let key = load_signing_key(&resolve_path(base_dir, &conf.signing_key))
            .map_err(|e| errors.push(format!("issuer.signing_key: {e}")))
            .ok();
        let mut accounts = |kind, file: &Option<std::path::PathBuf>| {
            let path = file.as_ref().map(|f| resolve_path(base_dir, f));
            accounts::load(kind, path.as_deref())
                .map_err(|e| errors.extend(e))
                .ok()
        };
        let users = accounts(Kind::Users, &conf.users_file);
        let clients = accounts(Kind::Clients, &conf.clients_file);
        let (Some((signing_key, jwks)), Some(users), Some(clients)) = (key, users, clients) else {
            return Err(errors);
        };
        Ok(Issuer {
            path_prefix: conf.path_prefix.clone(),
            issuer: conf.issuer.clone(),
            audience: conf.audience.clone(),
            ttl_secs: conf.token_ttl.whole_secs_ceil().max(1),
            max_failed_logins: conf.max_failed_logins.max(1),
            signing_key,
            jwks,
            users,
            clients,
            throttle: ArcSwap::from_pointee(Throttle::default()),
        })
    }

    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kid(&self) -> &str {
        self.signing_key.kid()
    }

    pub fn algorithm(&self) -> &'static str {
        self.signing_key.alg().as_str()
    }

    /// The JWKS document served at `{prefix}/jwks.json` and used as the `issuer` provider's keys.
    pub fn jwks_json(&self) -> &[u8] {
        &self.jwks
    }

    /// Keeps failed-login counts across a reload: a reload must not be a way to reset them.
    pub fn inherit_state(&self, previous: &Issuer) {
        self.throttle.store(previous.throttle.load_full());
    }

    /// `POST {prefix}/token`. `content_type` and `authorization` are the raw header values.
    pub async fn token_endpoint(
        &self,
        body: &[u8],
        content_type: Option<&[u8]>,
        authorization: Option<&[u8]>,
        client_ip: IpAddr,
        now: i64,
    ) -> EndpointResponse {
        let (grant, outcome) = match read_form(body, content_type) {
            Ok(form) => {
                self.token_request(&form, authorization, client_ip, now)
                    .await
            }
            Err(f) => ("unknown", Err(f)),
        };
        let result = match &outcome {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        TOKENS.with_label_values(&[grant, result]).inc();
        if matches!(outcome, Err(Failure::Throttled(_))) {
            LOGIN_THROTTLED.inc();
        }
        outcome.unwrap_or_else(|f| f.response())
    }

    /// The grant a well-formed request asks for (the metric label) and its outcome.
    async fn token_request(
        &self,
        form: &Form,
        authorization: Option<&[u8]>,
        ip: IpAddr,
        now: i64,
    ) -> (&'static str, Result<EndpointResponse, Failure>) {
        let grant = match form.get("grant_type").map(String::as_str) {
            Some("password") => "password",
            Some("client_credentials") => "client_credentials",
            Some(_) => return ("unknown", Err(Failure::UnsupportedGrantType)),
            None => {
                return (
                    "unknown",
                    Err(Failure::InvalidRequest("missing grant_type")),
                )
            }
        };
        let outcome = async {
            let basic = client_credentials(form, authorization)?;
            let requested = requested_scopes(form.get("scope"))?;
            if grant == "password" {
                self.password_grant(form, basic, requested, ip, now).await
            } else {
                self.client_credentials_grant(basic, requested, ip, now)
                    .await
            }
        }
        .await;
        (grant, outcome)
    }

    async fn password_grant(
        &self,
        form: &Form,
        basic: Option<BasicCredentials>,
        requested: Option<Vec<String>>,
        ip: IpAddr,
        now: i64,
    ) -> Result<EndpointResponse, Failure> {
        let username = form
            .get("username")
            .ok_or(Failure::InvalidRequest("missing username"))?;
        let password = form
            .get("password")
            .ok_or(Failure::InvalidRequest("missing password"))?;
        // Client authentication is optional for this grant, but when offered it must succeed.
        let client_id = match basic {
            Some(c) => Some(self.authenticate_client(c, ip, now).await?.0),
            None => None,
        };
        let throttle = self.throttle.load_full();
        let key = Key::new(Subject::User, username, ip);
        let attempt = shared_throttle::begin(&throttle, key, now, self.max_failed_logins)
            .await
            .map_err(Failure::Throttled)?;
        let account = self.users.by_name.get(username);
        let phc = account.map_or(&self.users.dummy_phc, |a| &a.phc).clone();
        let verified = verify_password(phc, password.clone()).await;
        let account = match account {
            Some(a) if verified && !a.disabled => a,
            _ => return Err(Failure::InvalidGrant),
        };
        shared_throttle::succeeded(&throttle, attempt).await;
        let scopes = narrow(requested, &account.scopes)?;
        self.issue(username, &scopes, client_id.as_deref(), now)
    }

    async fn client_credentials_grant(
        &self,
        basic: Option<BasicCredentials>,
        requested: Option<Vec<String>>,
        ip: IpAddr,
        now: i64,
    ) -> Result<EndpointResponse, Failure> {
        let basic = basic.ok_or(Failure::InvalidClient(
            "client authentication required (HTTP Basic)",
        ))?;
        let (client_id, account) = self.authenticate_client(basic, ip, now).await?;
        let scopes = narrow(requested, &account.scopes)?;
        self.issue(&client_id, &scopes, Some(&client_id), now)
    }

    /// Checks a client's Basic credentials, throttled per (client_id, IP) like user logins.
    async fn authenticate_client(
        &self,
        creds: BasicCredentials,
        ip: IpAddr,
        now: i64,
    ) -> Result<(String, &Account), Failure> {
        let throttle = self.throttle.load_full();
        let key = Key::new(Subject::Client, &creds.client_id, ip);
        let attempt = shared_throttle::begin(&throttle, key, now, self.max_failed_logins)
            .await
            .map_err(Failure::Throttled)?;
        let account = self.clients.by_name.get(&creds.client_id);
        let phc = account.map_or(&self.clients.dummy_phc, |a| &a.phc).clone();
        let verified = !creds.secret.is_empty() && verify_password(phc, creds.secret).await;
        match account {
            Some(a) if verified && !a.disabled => {
                shared_throttle::succeeded(&throttle, attempt).await;
                Ok((creds.client_id, a))
            }
            _ => Err(Failure::InvalidClient("client authentication failed")),
        }
    }

    /// Signs an access token (RFC 9068 shape: `typ: at+jwt`, `client_id` when a client
    /// authenticated) and builds the RFC 6749 §5.1 answer.
    fn issue(
        &self,
        sub: &str,
        scopes: &[String],
        client_id: Option<&str>,
        now: i64,
    ) -> Result<EndpointResponse, Failure> {
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        let scope = scopes.join(" ");
        let mut claims = keys::base_claims(&self.issuer, sub, &self.audience, now, ttl);
        claims.insert("scope".into(), json!(scope));
        if let Some(c) = client_id {
            claims.insert("client_id".into(), json!(c));
        }
        let token = self.signing_key.sign("at+jwt", claims).map_err(|e| {
            log::error!("issuer: {e}");
            Failure::ServerError
        })?;
        Ok(EndpointResponse::json(
            200,
            &json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.ttl_secs,
                "scope": scope,
            }),
        ))
    }
}

/// Parses an RFC 7009 revocation request body; the `token` parameter if present.
pub fn revoke_form_token(body: &[u8], content_type: Option<&[u8]>) -> Option<String> {
    read_form(body, content_type).ok()?.remove("token")
}

fn read_form(body: &[u8], content_type: Option<&[u8]>) -> Result<Form, Failure> {
    if body.len() > MAX_FORM_BYTES {
        return Err(Failure::InvalidRequest("request body too large"));
    }
    if !is_form_content_type(content_type) {
        return Err(Failure::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    parse_form(body).map_err(|e| match e {
        FormError::Malformed => Failure::InvalidRequest("malformed form body"),
        FormError::Repeated => Failure::InvalidRequest("a parameter is repeated"),
    })
}

/// The client's Basic credentials, if it sent any. Credentials in the body (`client_secret`)
/// are not supported: RFC 6749 §2.3.1 makes them optional for servers and discourages them.
fn client_credentials(
    form: &Form,
    authorization: Option<&[u8]>,
) -> Result<Option<BasicCredentials>, Failure> {
    let basic = match authorization {
        None => None,
        Some(v) => Some(parse_basic(v).ok_or(Failure::InvalidClient(
            "malformed Authorization header (expected HTTP Basic)",
        ))?),
    };
    if form.contains_key("client_secret") {
        return Err(match basic {
            Some(_) => Failure::InvalidRequest("more than one client authentication method"),
            None => Failure::InvalidClient("use HTTP Basic client authentication"),
        });
    }
    if let (Some(b), Some(id)) = (&basic, form.get("client_id")) {
        if *id != b.client_id {
            return Err(Failure::InvalidRequest(
                "client_id does not match the authenticated client",
            ));
        }
    }
    Ok(basic)
}

/// The `scope` parameter as a de-duplicated list; `None` when absent (all allowed scopes).
fn requested_scopes(scope: Option<&String>) -> Result<Option<Vec<String>>, Failure> {
    let Some(scope) = scope else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !accounts::is_scope_token(s) {
            return Err(Failure::InvalidScope("malformed scope"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Every requested scope must be allowed; without a request, everything allowed is granted.
fn narrow(requested: Option<Vec<String>>, allowed: &[String]) -> Result<Vec<String>, Failure> {
    match requested {
        None => Ok(allowed.to_vec()),
        Some(req) if req.iter().all(|r| allowed.contains(r)) => Ok(req),
        Some(_) => Err(Failure::InvalidScope(
            "the requested scope exceeds what was granted",
        )),
    }
}

/// Runs argon2 on a blocking thread, holding one of the process-wide slots for the whole run
/// (even if the caller goes away), and answers whether `password` matches.
async fn verify_password(phc: String, password: String) -> bool {
    let Ok(permit) = Arc::clone(&ARGON2_SLOTS).acquire_owned().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        PasswordHash::new(&phc).is_ok_and(|hash| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// Why the signing key file cannot be used; printed after `issuer.signing_key: `.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
struct SigningKeyError {
    path: PathBuf,
    problem: KeyProblem,
}

#[derive(Debug, thiserror::Error)]
enum KeyProblem {
    #[error("{0}")]
    Read(std::io::Error),
    #[error("cannot take a key id from the file name")]
    NoKid,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("a {0} key; the issuer signs with ES256 (EC P-256) or EdDSA (Ed25519) only")]
    Algorithm(Alg),
}

/// The signing key, under its kid (the file name without extension), and its public JWKS
/// document.
fn load_signing_key(path: &Path) -> Result<(SigningKey, Vec<u8>), SigningKeyError> {
    read_signing_key(path).map_err(|problem| SigningKeyError {
        path: path.to_owned(),
        problem,
    })
}

fn read_signing_key(path: &Path) -> Result<(SigningKey, Vec<u8>), KeyProblem> {
    let pem = std::fs::read(path).map_err(KeyProblem::Read)?;
    let kid = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or(KeyProblem::NoKid)?;
    let key = PrivateKey::from_pem(&pem)?;
    let alg = key.algorithm();
    let signing_key = key.signing_key(kid, alg)?;
    if !matches!(alg, Alg::ES256 | Alg::EdDSA) {
        return Err(KeyProblem::Algorithm(alg));
    }
    let jwk = key.public_jwk(kid, alg)?;
    let jwks = json!({ "keys": [jwk] }).to_string().into_bytes();
    Ok((signing_key, jwks))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
