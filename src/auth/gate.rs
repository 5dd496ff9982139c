//! The per-route authentication decision and its HTTP shape (SPEC §3 steps 4–6 and the error
//! table): which status, which `WWW-Authenticate` challenge, which metric label.

use std::sync::Arc;

use http::header::{HeaderValue, WWW_AUTHENTICATE};

use crate::auth::authenticator::Authenticator;
use crate::auth::jws::{self, BearerError};
use crate::auth::policy::AccessPolicy;
use crate::auth::verifier::VerifiedToken;
use crate::config::AuthMode;
use crate::respond::LocalResponse;

/// A route's authentication settings, compiled from its `auth:` block.
pub struct RouteAuth {
    pub mode: AuthMode,
    /// `None`: any configured provider.
    pub providers: Option<Vec<String>>,
    pub policy: AccessPolicy,
}

pub enum Decision {
    /// `mode: none`: the token, if any, is not looked at.
    Skipped,
    /// `mode: optional` without credentials.
    Anonymous,
    Allowed(Arc<VerifiedToken>),
    Denied {
        response: LocalResponse,
        label: &'static str,
    },
}

impl Decision {
    /// The `result` label of `portcullis_auth_decisions_total`, if the route authenticates.
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Decision::Skipped => None,
            Decision::Anonymous => Some("anonymous"),
            Decision::Allowed(_) => Some("ok"),
            Decision::Denied { label, .. } => Some(label),
        }
    }
}

const REALM: &str = r#"Bearer realm="portcullis""#;

/// `query_token`: the query carries an `access_token` parameter. Tokens travel in the
/// Authorization header only (RFC 6750 §2.3 is off): a query token would be logged and forwarded
/// by everything downstream, and header plus query is "more than one method" (§3.1).
pub async fn decide(
    auth: Option<&Authenticator>,
    route: &RouteAuth,
    authorization: &[&[u8]],
    query_token: bool,
    now: i64,
) -> Decision {
    if route.mode == AuthMode::None {
        return Decision::Skipped;
    }
    if query_token {
        return Decision::Denied {
            response: challenge(
                LocalResponse::bad_request("access_token in the query is not accepted"),
                format!(r#"{REALM}, error="invalid_request""#),
            ),
            label: "malformed",
        };
    }
    let token = match jws::extract_bearer(authorization) {
        Ok(t) => t,
        Err(BearerError::Missing) if route.mode == AuthMode::Optional => {
            return Decision::Anonymous
        }
        Err(BearerError::Missing) => {
            return Decision::Denied {
                response: challenge(
                    LocalResponse::error(401, "unauthorized", "bearer token required"),
                    REALM.to_string(),
                ),
                label: "missing",
            }
        }
        Err(BearerError::BadRequest(why)) => {
            return Decision::Denied {
                response: challenge(
                    LocalResponse::bad_request(why),
                    format!(r#"{REALM}, error="invalid_request""#),
                ),
                label: "malformed",
            }
        }
    };
    // Validation guarantees a provider exists for any route that authenticates.
    let Some(auth) = auth else {
        return Decision::Denied {
            response: LocalResponse::for_status(500),
            label: "malformed",
        };
    };
    let verified = match auth
        .authenticate(token, route.providers.as_deref(), now)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            return Decision::Denied {
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
    };
    match route.policy.check(&verified) {
        Ok(()) => Decision::Allowed(verified),
        Err(scope) => Decision::Denied {
            response: challenge(
                LocalResponse::error(
                    403,
                    "insufficient_scope",
                    "the token lacks a required scope, role or claim",
                ),
                format!(r#"{REALM}, error="insufficient_scope", scope="{scope}""#),
            ),
            label: "insufficient_scope",
        },
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
