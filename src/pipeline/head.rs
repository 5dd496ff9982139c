//! Step 2, request hygiene: everything refused from the request head alone, before anything
//! looks at routes or tokens. The target is canonicalised here (`crate::hygiene`), so every
//! later step, and the upstream, sees one spelling of the path.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Method;
use pingora::http::RequestHeader;

use crate::config::Limits;
use crate::hygiene::{self, RequestTarget};
use crate::respond::LocalResponse;
use crate::routing::{allow_every_routable_method, STANDARD_METHODS};

/// The request target once it passed: what the rest of the pipeline routes on.
pub struct CheckedHead<'r> {
    /// Canonical path; borrowed when the client already sent it canonical.
    pub path: Cow<'r, str>,
    /// The raw query without `?`.
    pub query: Option<&'r str>,
    /// The request's authority as sent (`name[:port]`); `None` only for HTTP/1.0 without one.
    pub host: Option<&'r str>,
}

impl CheckedHead<'_> {
    /// The authority without its port, as routes and redirects match it.
    pub fn hostname(&self) -> &str {
        self.host.map(strip_port).unwrap_or_default()
    }
}

/// The method, the head's size and the target: refusals that come before the path is known.
pub fn target<'r>(
    req: &'r RequestHeader,
    limits: &Limits,
) -> Result<(Cow<'r, str>, Option<&'r str>), LocalResponse> {
    if req.method == Method::CONNECT {
        return Err(LocalResponse::bad_framing("CONNECT is not supported"));
    }
    if !STANDARD_METHODS.contains(&req.method.as_str()) {
        return Err(LocalResponse::bad_request("unsupported method"));
    }
    if head_size(req) > limits.max_header_bytes {
        return Err(LocalResponse::for_status(431));
    }
    match hygiene::canonicalize_target(req.raw_path()) {
        Ok(RequestTarget::Origin { path, query }) => Ok((path, query)),
        Ok(RequestTarget::Asterisk) if req.method == Method::OPTIONS => Err(options_asterisk()),
        Ok(RequestTarget::Asterisk) => Err(LocalResponse::bad_request("asterisk-form target")),
        Err(e) => Err(LocalResponse::bad_request(e.description())),
    }
}

/// Host and message framing: the authority the request names, and refusals for heads whose
/// body boundaries could be read two ways (request smuggling) or whose body is over the limit.
pub fn framing<'r>(
    req: &'r RequestHeader,
    limits: &Limits,
) -> Result<Option<&'r str>, LocalResponse> {
    let host = request_host(req).map_err(LocalResponse::bad_request)?;
    if req.headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        // Two lengths, even equal ones, are a framing ambiguity.
        return Err(LocalResponse::bad_framing("more than one Content-Length"));
    }
    if nominates_forwarding_header(req) {
        return Err(LocalResponse::bad_request(
            "Connection must not name Host or X-Forwarded-* headers",
        ));
    }
    if req.headers.contains_key(header::CONTENT_LENGTH)
        && req.headers.contains_key(header::TRANSFER_ENCODING)
    {
        // CL.TE / TE.CL: refuse rather than pick one, and never read what follows as a
        // pipelined request (RFC 9112 §6.1).
        return Err(LocalResponse::bad_framing(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if content_length(req).is_some_and(|len| len > limits.max_body_bytes) {
        return Err(LocalResponse::for_status(413));
    }
    Ok(host)
}

/// The authority a checked request names (the Host header, or `:authority` on HTTP/2), as
/// `X-Forwarded-Host` passes it on. Call only after [`framing`] accepted the request.
pub fn authority(req: &RequestHeader) -> Option<&str> {
    match req.headers.get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri.authority().map(|a| a.as_str()),
    }
}

/// `OPTIONS *` asks about the server, not a resource: answered here, never proxied.
fn options_asterisk() -> LocalResponse {
    LocalResponse::new(200, Vec::new(), Bytes::new()).with_header(
        header::ALLOW,
        HeaderValue::from_static(allow_every_routable_method()),
    )
}

/// Pingora's upstream header policy refuses these nominations after connecting upstream; refuse
/// them here instead, with the contract's error and before any upstream work.
fn nominates_forwarding_header(req: &RequestHeader) -> bool {
    req.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            t.starts_with(b":")
                || [
                    &b"host"[..],
                    b"x-forwarded-for",
                    b"x-forwarded-host",
                    b"x-forwarded-proto",
                ]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p))
        })
    })
}

/// Request line plus header lines, as `limits.max_header_bytes` counts them.
fn head_size(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers
        .iter()
        .fold(line, |acc, (k, v)| acc + k.as_str().len() + v.len() + 4)
        + 2
}

fn content_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request's authority: the single Host header, or `:authority` on HTTP/2. Two Host headers,
/// a Host that disagrees with the authority, or a syntactically bad value are refused.
fn request_host(req: &RequestHeader) -> Result<Option<&str>, &'static str> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let authority = req.uri.authority().map(|a| a.as_str());
    let host = match (header_host, authority) {
        (Some(h), Some(a)) => {
            let h = h.to_str().map_err(|_| "invalid Host")?;
            if !h.eq_ignore_ascii_case(a) {
                return Err("Host does not match the request authority");
            }
            h
        }
        (Some(h), None) => h.to_str().map_err(|_| "invalid Host")?,
        (None, Some(a)) => a,
        (None, None) => {
            return if req.version == http::Version::HTTP_11 {
                Err("missing Host")
            } else {
                Ok(None)
            }
        }
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if !valid || !host_port_ok(host) {
        return Err("invalid Host");
    }
    Ok(Some(host))
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, with a numeric port.
fn host_port_ok(host: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(bracketed) = host.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((_, "")) => true,
            Some((_, rest)) => rest.strip_prefix(':').is_some_and(port_ok),
            None => false,
        };
    }
    host.split_once(':').is_none_or(|(_, p)| port_ok(p))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(request_host(&req), Err("missing Host"));
        req.append_header("host", "api.example.com:8443").unwrap();
        assert_eq!(request_host(&req).unwrap(), Some("api.example.com:8443"));
        req.append_header("host", "evil.com").unwrap();
        assert_eq!(request_host(&req), Err("more than one Host header"));
        let mut bad = RequestHeader::build("GET", b"/", None).unwrap();
        bad.append_header("host", "a b@c").unwrap();
        assert_eq!(request_host(&bad), Err("invalid Host"));
        assert!(host_port_ok("[::1]") && host_port_ok("[::1]:80") && host_port_ok("a.com:443"));
        assert!(!host_port_ok("a.com:abc") && !host_port_ok("a.com:") && !host_port_ok("a:b:1"));
    }

    #[test]
    fn ports() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }

    fn status(req: &RequestHeader) -> u16 {
        let limits = Limits::default();
        target(req, &limits)
            .and_then(|_| framing(req, &limits))
            .err()
            .map_or(0, |r| r.status)
    }

    #[test]
    fn refusals_from_the_head_alone() {
        let get = |target: &[u8]| {
            let mut r = RequestHeader::build("GET", target, None).unwrap();
            r.append_header("host", "a.com").unwrap();
            r
        };
        assert_eq!(status(&get(b"/ok")), 0);
        assert_eq!(
            status(&get(b"/a/../b")),
            0,
            "dot segments are resolved, not refused"
        );
        assert_eq!(status(&get(b"*")), 400);
        let mut two_lengths = get(b"/");
        two_lengths.append_header("content-length", "1").unwrap();
        two_lengths.append_header("content-length", "1").unwrap();
        assert_eq!(status(&two_lengths), 400);
        let mut cl_te = get(b"/");
        cl_te.append_header("content-length", "1").unwrap();
        cl_te.append_header("transfer-encoding", "chunked").unwrap();
        assert!(framing(&cl_te, &Limits::default()).err().unwrap().close);
        let mut nominated = get(b"/");
        nominated
            .append_header("connection", "close, X-Forwarded-For")
            .unwrap();
        assert_eq!(status(&nominated), 400);
        let mut huge = get(b"/");
        huge.append_header("content-length", "999999999999")
            .unwrap();
        assert_eq!(status(&huge), 413);
        let options = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        let answer = target(&options, &Limits::default()).err().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers.len(), 1);
    }
}
