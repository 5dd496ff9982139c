//! Responses the gateway writes itself: the contract's JSON errors and the HTTPS redirect.
//!
//! All of them go through `write_local`, so every local answer carries the same headers (request
//! id, HSTS on HTTPS) — which is also what makes a hidden route's 404 indistinguishable from a
//! real one.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v2::server::HttpSession as H2Session;
use pingora::protocols::http::ServerSession as HttpSession;
use pingora::proxy::Session;

use crate::grpc;

/// A local answer: status, JSON error code and description, and extra headers.
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Close the connection afterwards: the request's framing cannot be trusted.
    pub close: bool,
}

impl LocalResponse {
    pub fn new(
        status: u16,
        headers: Vec<(header::HeaderName, HeaderValue)>,
        body: Bytes,
    ) -> LocalResponse {
        LocalResponse {
            status,
            headers,
            body,
            close: false,
        }
    }

    pub fn error(status: u16, code: &str, description: &str) -> LocalResponse {
        let body = serde_json::json!({ "error": code, "error_description": description });
        LocalResponse {
            status,
            headers: vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body: Bytes::from(body.to_string()),
            close: false,
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> LocalResponse {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> LocalResponse {
        LocalResponse::error(404, "not_found", "no route")
    }

    pub fn bad_request(description: &str) -> LocalResponse {
        LocalResponse::error(400, "invalid_request", description)
    }

    /// A 400 after which the connection is closed, for requests whose framing is ambiguous.
    pub fn bad_framing(description: &str) -> LocalResponse {
        let mut r = LocalResponse::bad_request(description);
        r.close = true;
        r
    }

    pub fn redirect(status: u16, location: HeaderValue) -> LocalResponse {
        LocalResponse {
            status,
            headers: vec![(header::LOCATION, location)],
            body: Bytes::new(),
            close: false,
        }
    }

    /// The canonical error for a status the proxy path produces.
    pub fn for_status(status: u16) -> LocalResponse {
        match status {
            400 => LocalResponse::bad_request("malformed request"),
            404 => LocalResponse::not_found(),
            413 => LocalResponse::error(
                413,
                "payload_too_large",
                "request body exceeds limits.max_body_bytes",
            ),
            431 => LocalResponse::error(
                431,
                "request_header_fields_too_large",
                "request head exceeds limits.max_header_bytes",
            ),
            502 => LocalResponse::error(502, "bad_gateway", "upstream connection failed"),
            503 => LocalResponse::error(503, "service_unavailable", "no healthy upstream peer"),
            504 => LocalResponse::error(504, "gateway_timeout", "upstream timed out"),
            _ => LocalResponse::error(status, "internal_error", "internal error"),
        }
    }
}

/// Headers every response of the current request gets, local or proxied.
pub struct CommonHeaders<'a> {
    pub request_id: Option<&'a HeaderValue>,
    pub hsts: Option<&'a HeaderValue>,
}

impl CommonHeaders<'_> {
    pub fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        if let Some(id) = self.request_id {
            resp.insert_header("x-request-id", id.clone())?;
        }
        if let Some(hsts) = self.hsts {
            resp.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
        Ok(())
    }
}

/// Writes a complete local response. When the request may still have an unread body, the
/// connection is closed afterwards instead of draining an attacker-sized body to reuse it.
pub async fn write_local(
    session: &mut Session,
    resp: LocalResponse,
    common: &CommonHeaders<'_>,
) -> pingora::Result<()> {
    let grpc = grpc::is_grpc(session.req_header());
    let resp = if grpc {
        grpc::trailers_only(resp)
    } else {
        resp
    };
    let mut head = ResponseHeader::build(resp.status, Some(resp.headers.len() + 4))?;
    for (name, value) in resp.headers {
        head.insert_header(name, value)?;
    }
    if !grpc {
        head.insert_header(header::CONTENT_LENGTH, resp.body.len().to_string())?;
    }
    common.apply(&mut head)?;
    if resp.close || !session.is_body_empty() {
        session.set_keepalive(None);
    }
    let has_body = !resp.body.is_empty() && session.req_header().method != http::Method::HEAD;
    if let HttpSession::H2(h2) = session.as_downstream_mut() {
        if grpc {
            // Trailers-only: the status must arrive in a HEADERS frame that ends the stream.
            // The proxy session would end it with an empty DATA frame instead, which gRPC
            // clients report as a protocol error rather than the status. The request is read
            // first: a stream that ends on this frame alone, with request data still unread,
            // was seen to leave the frame unsent until the client gave up.
            read_rest_of_request(h2).await;
            h2.write_response_header(Box::new(head), true)?;
        } else {
            h2.write_response_header(Box::new(head), !has_body)?;
            if has_body {
                h2.write_body(resp.body, true).await?;
            }
            read_rest_of_request(h2).await;
        }
        return Ok(());
    }
    session
        .write_response_header(Box::new(head), !has_body)
        .await?;
    if has_body {
        session.write_response_body(Some(resp.body), true).await?;
    }
    Ok(())
}

/// How much of an HTTP/2 request body is still read after a local answer, and for how long.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes what an HTTP/2 client is still sending of a request the gateway answers itself,
/// within bounds. A stream closed under a request body still in flight is reset,
/// and clients differ in how they take that: some report the reset instead of the answer they
/// already have. Past the bounds the reset is what the client gets (RFC 9113 §8.1 allows it).
async fn read_rest_of_request(h2: &mut H2Session) {
    let mut left = DRAIN_BYTES;
    let read = async {
        while let Ok(Some(chunk)) = h2.read_body_bytes().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}
