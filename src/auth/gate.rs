//! Pipeline step 6, the per-route authentication decision in three parts (authenticate, check
//! revocation, authorize) and its HTTP shape (conf/README.md §3.4–§3.6 and the error table): which
//! status, which `WWW-Authenticate` challenge, which metric label.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, WWW_AUTHENTICATE};

use crate::auth::authenticator::Authenticator;
use crate::auth::jws::{self, BearerError};
use crate::auth::policy::AccessPolicy;
use crate::auth::rejection::TokenError;
use crate::auth::verifier::VerifiedToken;
use crate::config::AuthMode;
use crate::respond::LocalResponse;
use crate::revocation::RevocationList;

/// A route's authentication settings, compiled from its `auth:` block.
pub struct RouteAuth {
    pub mode: AuthMode,
    /// `None`: any configured provider.
    pub providers: Option<Vec<String>>,
    pub policy: AccessPolicy,
}

/// What authentication established about the caller.
pub enum Identity {
    /// `mode: none`: the token, if any, is not looked at.
    Skipped,
    /// `mode: optional` without credentials.
    Anonymous,
    Token(Arc<VerifiedToken>),
}

impl Identity {
    /// The `result` label of `portcullis_auth_decisions_total` once every check passed, if the
    /// route authenticates.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Identity::Skipped => None,
            Identity::Anonymous => Some("anonymous"),
            Identity::Token(_) => Some("ok"),
        }
    }

    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        match self {
            Identity::Token(t) => Some(t),
            Identity::Skipped | Identity::Anonymous => None,
        }
    }
}

/// A refused request: the answer, and the `result` label it is counted under.
pub struct Denial {
    pub response: LocalResponse,
    pub label: &'static str,
}

const REALM: &str = r#"Bearer realm="portcullis""#;

/// The `Authorization` values of a request, at most two (two already mean "refuse").
pub fn authorization_values(headers: &http::HeaderMap) -> ([&[u8]; 2], usize) {
    let mut values: [&[u8]; 2] = [&[], &[]];
    let mut n = 0;
    for (slot, v) in values
        .iter_mut()
        .zip(headers.get_all(http::header::AUTHORIZATION))
    {
        *slot = v.as_bytes();
        n += 1;
    }
    (values, n)
}

/// Who the caller is: the bearer token, verified (signature, claims, the route's providers), or
/// anonymous on an optional route. `query_token`: the query carries an `access_token`
/// parameter. Tokens travel in the Authorization header only (RFC 6750 §2.3 is off): a query
/// token would be logged and forwarded by everything downstream, and header plus query is
/// "more than one method" (§3.1). `verification`: set when a signature was verified (a
/// token-cache miss), for the request's trace.
pub async fn authenticate(
    auth: Option<&Authenticator>,
    route: &RouteAuth,
    authorization: &[&[u8]],
    query_token: bool,
    now: i64,
    verification: &mut Option<Range<Instant>>,
) -> Result<Identity, Denial> {
    if route.mode == AuthMode::None {
        return Ok(Identity::Skipped);
    }
    if query_token {
        return Err(Denial {
            response: challenge(
                LocalResponse::bad_request("access_token in the query is not accepted"),
                format!(r#"{REALM}, error="invalid_request""#),
            ),
            label: "malformed",
        });
    }
    let token = match jws::extract_bearer(authorization) {
        Ok(t) => t,
        Err(BearerError::Missing) if route.mode == AuthMode::Optional => {
            return Ok(Identity::Anonymous)
        }
        Err(BearerError::Missing) => {
            return Err(Denial {
                response: challenge(
                    LocalResponse::error(401, "unauthorized", "bearer token required"),
                    REALM.to_string(),
                ),
                label: "missing",
            })
        }
        Err(BearerError::BadRequest(why)) => {
            return Err(Denial {
                response: challenge(
                    LocalResponse::bad_request(why),
                    format!(r#"{REALM}, error="invalid_request""#),
                ),
                label: "malformed",
            })
        }
    };
    // Validation guarantees a provider exists for any route that authenticates.
    let Some(auth) = auth else {
        return Err(Denial {
            response: LocalResponse::for_status(500),
            label: "malformed",
        });
    };
    auth.authenticate_observed(token, route.providers.as_deref(), now, verification)
        .await
        .map(Identity::Token)
        .map_err(invalid_token)
}

/// A revoked token is refused like any invalid one. Cached tokens pass through here on every
/// request, so a revocation takes effect on the next request, not when a cache entry expires.
pub fn check_revocation(revocations: &RevocationList, identity: &Identity) -> Result<(), Denial> {
    let Some(token) = identity.token() else {
        return Ok(());
    };
    if revocations.is_revoked(
        &token.iss,
        token.valid.jti.as_deref(),
        &token.valid.sub,
        token.valid.iat,
    ) {
        return Err(invalid_token(TokenError::REVOKED));
    }
    Ok(())
}

/// The route's scopes, roles and claims.
pub fn authorize(route: &RouteAuth, identity: &Identity) -> Result<(), Denial> {
    let Some(token) = identity.token() else {
        return Ok(());
    };
    route.policy.check(token).map_err(|scope| Denial {
        response: challenge(
            LocalResponse::error(
                403,
                "insufficient_scope",
                "the token lacks a required scope, role or claim",
            ),
            format!(r#"{REALM}, error="insufficient_scope", scope="{scope}""#),
        ),
        label: "insufficient_scope",
    })
}

fn invalid_token(e: TokenError) -> Denial {
    Denial {
        response: challenge(
            LocalResponse::error(401, "invalid_token", e.description),
            format!(
                r#"{REALM}, error="invalid_token", error_description="{}""#,
                e.description
            ),
        ),
        label: e.kind.label(),
    }
}

fn challenge(resp: LocalResponse, value: String) -> LocalResponse {
    match HeaderValue::from_str(&value) {
        Ok(v) => resp.with_header(WWW_AUTHENTICATE, v),
        Err(_) => resp.with_header(WWW_AUTHENTICATE, HeaderValue::from_static(REALM)),
    }
}

/// The raw value of an identity header: `scope` is the token's scopes (from `scope` or `scp`);
/// other claims by dotted path, arrays joined by spaces, numbers and booleans as text. Objects
/// and nulls are not sent. The caller percent-encodes the result.
pub fn identity_value(token: &VerifiedToken, path: &[String]) -> Option<String> {
    use serde_json::Value;
    if let [only] = path {
        if only == "scope" {
            return Some(token.valid.scopes.join(" "));
        }
    }
    let (first, rest) = path.split_first()?;
    let mut cur = token.claims.get(first.as_str())?;
    for seg in rest {
        cur = cur.as_object()?.get(seg.as_str())?;
    }
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match cur {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        other => scalar(other),
    }
}
