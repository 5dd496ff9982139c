//! Step 4: the built-in token issuer's endpoints under its `path_prefix`. They sit before
//! routing so that no route can shadow them, and after the redirect so that passwords and
//! client secrets never travel over plain HTTP.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use pingora::proxy::Session;

use crate::auth::authenticator::Authenticator;
use crate::auth::claims::DEFAULT_LEEWAY_SECS;
use crate::clock::unix_now;
use crate::issuer::{self, Issuer};
use crate::request_body::{read_capped, BodyError};
use crate::respond::LocalResponse;
use crate::revocation::service::Revocations;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {prefix}/token`: password and client-credentials grants.
    Token,
    /// `POST {prefix}/revoke` (RFC 7009).
    Revoke,
    /// `GET {prefix}/jwks.json`: the issuer's public keys.
    Jwks,
}

/// Form bodies for the issuer are small; anything bigger is refused before parsing.
const MAX_ISSUER_BODY: usize = 16 * 1024;

/// Which endpoint `path` names, if any; a known endpoint with the wrong method is a 405 here
/// rather than a 404 from routing.
pub fn matching(
    issuer: Option<&Issuer>,
    path: &str,
    method: &Method,
) -> Result<Option<Endpoint>, LocalResponse> {
    let Some(iss) = issuer else { return Ok(None) };
    let prefix = iss.path_prefix().trim_end_matches('/');
    let endpoint = match path.strip_prefix(prefix) {
        Some("/token") => Endpoint::Token,
        Some("/revoke") => Endpoint::Revoke,
        Some("/jwks.json") => Endpoint::Jwks,
        _ => return Ok(None),
    };
    let allow = match endpoint {
        Endpoint::Jwks if method == Method::GET || method == Method::HEAD => {
            return Ok(Some(endpoint))
        }
        Endpoint::Token | Endpoint::Revoke if method == Method::POST => return Ok(Some(endpoint)),
        Endpoint::Jwks => "GET, HEAD",
        Endpoint::Token | Endpoint::Revoke => "POST",
    };
    Err(
        LocalResponse::error(405, "method_not_allowed", "method not allowed")
            .with_header(header::ALLOW, HeaderValue::from_static(allow)),
    )
}

/// Everything an endpoint needs besides the request itself.
pub struct IssuerContext<'a> {
    pub issuer: &'a Issuer,
    /// Verifies tokens presented for revocation.
    pub auth: Option<&'a Authenticator>,
    pub revocations: &'a Revocations,
    /// The real client, not a trusted proxy in front of it: the login throttle keys on it.
    pub client_ip: IpAddr,
}

/// Serves the endpoint; the answer is always local.
pub async fn serve(
    session: &mut Session,
    cx: IssuerContext<'_>,
    endpoint: Endpoint,
) -> LocalResponse {
    if endpoint == Endpoint::Jwks {
        return LocalResponse::new(
            200,
            vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                ),
            ],
            Bytes::copy_from_slice(cx.issuer.jwks_json()),
        );
    }
    let body = match read_capped(session, MAX_ISSUER_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return LocalResponse::for_status(413),
        Err(BodyError::Unreadable) => {
            return LocalResponse::bad_request("the request body could not be read")
        }
    };
    let req = session.req_header();
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes);
    let now = unix_now();
    if endpoint == Endpoint::Revoke {
        return revoke(&cx, &body, content_type, now).await;
    }
    let authorization = req
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let r = cx
        .issuer
        .token_endpoint(&body, content_type, authorization, cx.client_ip, now)
        .await;
    let headers = r
        .headers
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(&value).ok()?,
            ))
        })
        .collect();
    LocalResponse::new(r.status, headers, Bytes::from(r.body))
}

/// RFC 7009: holding the token is the credential. It is verified first so a forged token
/// revokes nothing, and the answer is 200 whatever happened, so the endpoint cannot be used to
/// probe which tokens are valid.
async fn revoke(
    cx: &IssuerContext<'_>,
    body: &[u8],
    content_type: Option<&[u8]>,
    now: i64,
) -> LocalResponse {
    if let (Some(token), Some(auth)) = (issuer::revoke_form_token(body, content_type), cx.auth) {
        let only_issuer = [issuer::PROVIDER_NAME.to_string()];
        if let Ok(v) = auth.authenticate(&token, Some(&only_issuer), now).await {
            let already = cx.revocations.list().is_revoked(
                &v.iss,
                v.valid.jti.as_deref(),
                &v.valid.sub,
                v.valid.iat,
            );
            if let (Some(jti), false) = (&v.valid.jti, already) {
                let stored = cx
                    .revocations
                    .revoke_token(&v.iss, jti, v.valid.exp, DEFAULT_LEEWAY_SECS)
                    .await;
                if let Err(e) = stored {
                    log::error!("token revocation not stored: {e}");
                    return LocalResponse::error(
                        503,
                        "temporarily_unavailable",
                        "revocation could not be stored",
                    );
                }
            }
        }
    }
    LocalResponse::new(
        200,
        vec![
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        Bytes::new(),
    )
}
