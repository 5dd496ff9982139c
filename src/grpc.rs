//! gRPC through the gateway (conf/README.md §8).
//!
//! Proxying gRPC needs nothing but HTTP/2 both ways and trailers relayed, which Pingora does. What
//! the gateway must add is the shape of its own refusals: a gRPC client ignores the HTTP status
//! and the JSON body and reads `grpc-status` from the trailers, so a plain 401 would reach the
//! application as a guessed UNKNOWN or INTERNAL. Every local answer to a gRPC request is therefore
//! rewritten into a trailers-only response (one HEADERS frame that ends the stream) carrying the
//! mapped status code.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::respond::LocalResponse;

pub const STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub const MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether `req` is a gRPC call: `content-type: application/grpc`, alone or with a `+format` or
/// `;parameters` suffix (gRPC over HTTP/2, "Requests").
#[must_use]
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| is_grpc_content_type(v.as_bytes()))
}

fn is_grpc_content_type(v: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    v.len() >= GRPC.len()
        && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(v.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The gRPC status code for an HTTP status the gateway decided on.
#[must_use]
pub fn status_code(http_status: u16) -> u8 {
    match http_status {
        400 => 3,             // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 | 405 => 12,      // UNIMPLEMENTED
        413 | 429 | 431 => 8, // RESOURCE_EXHAUSTED
        502 | 503 => 14,      // UNAVAILABLE
        504 => 4,             // DEADLINE_EXCEEDED
        500 => 13,            // INTERNAL
        _ => 2,               // UNKNOWN
    }
}

/// `resp` as a trailers-only gRPC answer: HTTP 200, `content-type: application/grpc`, the
/// mapped `grpc-status` and the error description as `grpc-message`, no body. Headers such as
/// `WWW-Authenticate` and `Retry-After` are kept. Answers below 400 (a redirect) are returned
/// unchanged.
#[must_use]
pub fn trailers_only(resp: LocalResponse) -> LocalResponse {
    if resp.status < 400 {
        return resp;
    }
    let message = description(&resp.body);
    let mut headers: Vec<(HeaderName, HeaderValue)> = resp
        .headers
        .into_iter()
        .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CACHE_CONTROL)
        .collect();
    headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    ));
    headers.push((
        STATUS,
        HeaderValue::from(u16::from(status_code(resp.status))),
    ));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.push((MESSAGE, value));
    }
    LocalResponse {
        status: 200,
        headers,
        body: Bytes::new(),
        close: resp.close,
    }
}

/// The `error_description` of one of the gateway's JSON error bodies.
fn description(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error_description")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC;charset=utf-8",
        ] {
            assert!(is_grpc_content_type(yes.as_bytes()), "{yes}");
        }
        for no in [
            "application/grpcx",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc_content_type(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn the_status_map() {
        for (http, grpc) in [
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 12),
            (405, 12),
            (413, 8),
            (429, 8),
            (502, 14),
            (503, 14),
            (504, 4),
        ] {
            assert_eq!(status_code(http), grpc, "{http}");
        }
    }

    #[test]
    fn a_refusal_becomes_trailers_only_and_keeps_its_challenge() {
        let challenge = HeaderValue::from_static(r#"Bearer realm="portcullis""#);
        let resp = LocalResponse::error(401, "invalid_token", "token expired 100%")
            .with_header(header::WWW_AUTHENTICATE, challenge.clone());
        let grpc = trailers_only(resp);
        assert_eq!(grpc.status, 200);
        assert!(grpc.body.is_empty());
        let get = |name: &str| {
            grpc.headers
                .iter()
                .filter(|(n, _)| n.as_str() == name)
                .map(|(_, v)| v.to_str().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("content-type"), ["application/grpc"]);
        assert_eq!(get("grpc-status"), ["16"]);
        assert_eq!(get("grpc-message"), ["token expired 100%25"]);
        assert_eq!(get("www-authenticate"), [challenge.to_str().unwrap()]);
        assert!(get("cache-control").is_empty());
    }

    #[test]
    fn redirects_are_left_alone() {
        let location = HeaderValue::from_static("https://x/");
        let resp = trailers_only(LocalResponse::redirect(308, location));
        assert_eq!(resp.status, 308);
    }
}
