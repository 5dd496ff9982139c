//! What the upstream is allowed to see: the client's real address, header hygiene towards the
//! upstream, and request ids.
//!
//! Everything here is a plain function over header maps so it can be tested without a server.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue};
use ipnet::IpNet;
use pingora::http::RequestHeader;

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the de-facto ones) never forwarded upstream.
/// Framing headers (Content-Length, Transfer-Encoding) are left to Pingora, which re-frames bodies.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "http2-settings",
];

/// Headers a `Connection` option may never remove, because removing them would change how the
/// message is framed or routed rather than just dropping a hop-by-hop field.
const NEVER_NOMINATED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client address used for `allow_cidrs`, consistent hashing and logs: the TCP peer, or,
/// when the peer is a trusted proxy, the rightmost `X-Forwarded-For` entry that is not itself
/// trusted (entries left of it were written by the untrusted client and prove nothing).
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl Iterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut entries: Vec<&[u8]> = Vec::new();
    for v in xff {
        entries.extend(v.as_bytes().split(|&b| b == b',').map(trim_ascii));
    }
    let mut client = peer;
    for raw in entries.iter().rev() {
        let Some(ip) = std::str::from_utf8(raw).ok().and_then(parse_forwarded_ip) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            return ip;
        }
    }
    client
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // "[::1]:1234" and "1.2.3.4:1234" forms written by some proxies.
    s.parse::<std::net::SocketAddr>().ok().map(|sa| sa.ip())
}

/// A client-supplied `X-Request-Id` is kept only if it is 1–128 visible ASCII bytes, so it can be
/// logged and echoed without escaping.
pub fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Everything the upstream request gets from the gateway besides identity claims.
pub struct ForwardedFor<'a> {
    pub peer: IpAddr,
    pub peer_trusted: bool,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub request_id: Option<&'a HeaderValue>,
}

/// Removes hop-by-hop headers, every header named in `Connection`, and every gateway-owned
/// identity header in any spelling (including `_` for `-`, which CGI-style servers conflate);
/// then writes the forwarding headers. Identity claims are added by the caller afterwards, so
/// nothing a client sent can survive under those names.
pub fn sanitize_upstream_request(
    req: &mut RequestHeader,
    identity_names: &[HeaderName],
    strip_authorization: bool,
    fwd: &ForwardedFor<'_>,
) -> pingora::Result<()> {
    let mut nominated: Vec<HeaderName> = Vec::new();
    for v in req.headers.get_all(http::header::CONNECTION) {
        for token in v.as_bytes().split(|&b| b == b',') {
            let token = trim_ascii(token);
            if let Ok(name) = HeaderName::from_bytes(token) {
                if !NEVER_NOMINATED.contains(&name.as_str()) {
                    nominated.push(name);
                }
            }
        }
    }
    for name in nominated.iter().chain(identity_names) {
        req.remove_header(name);
    }
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
    if strip_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    let underscored: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().contains('_'))
        .filter(|k| {
            let dashed = k.as_str().replace('_', "-");
            identity_names.iter().any(|n| n.as_str() == dashed)
        })
        .cloned()
        .collect();
    for name in &underscored {
        req.remove_header(name);
    }

    let peer = fwd.peer.to_string();
    if fwd.peer_trusted {
        let existing: Vec<&str> = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let value = if existing.is_empty() {
            peer
        } else {
            format!("{}, {peer}", existing.join(", "))
        };
        req.insert_header("x-forwarded-for", value)?;
    } else {
        // An untrusted client's claims about earlier hops are worthless; drop all of them.
        req.remove_header("forwarded");
        req.remove_header("x-real-ip");
        req.insert_header("x-forwarded-for", peer)?;
    }
    req.insert_header("x-forwarded-proto", fwd.proto)?;
    match fwd.host {
        Some(h) => req.insert_header("x-forwarded-host", h)?,
        None => {
            req.remove_header("x-forwarded-host");
        }
    }
    match fwd.request_id {
        Some(id) => req.insert_header("x-request-id", id.clone())?,
        None => {
            req.remove_header("x-request-id");
        }
    }
    Ok(())
}

/// Percent-encodes a claim value for a header: control bytes, DEL, non-ASCII and `%` itself, so
/// the value is reversible and can never split or smuggle a header line. Spaces stay: they are
/// the separator of joined arrays and scope lists.
pub fn encode_claim_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for &b in v.as_bytes() {
        if b == b' ' || ((0x21..=0x7e).contains(&b) && b != b'%') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_walks_forwarded_for_from_the_right() {
        let trusted: [IpNet; 1] = ["10.0.0.0/8".parse().unwrap()];
        for (why, peer, xff, client) in [
            (
                "an untrusted peer is the client",
                "9.9.9.9",
                "1.2.3.4",
                "9.9.9.9",
            ),
            (
                "a trusted peer yields the rightmost untrusted entry",
                "10.0.0.1",
                "6.6.6.6, 1.2.3.4, 10.0.0.2",
                "1.2.3.4",
            ),
            (
                "a garbage entry stops the walk",
                "10.0.0.1",
                "1.2.3.4, nonsense",
                "10.0.0.1",
            ),
        ] {
            let xff = [HeaderValue::from_static(xff)];
            let ip = client_ip(peer.parse().unwrap(), xff.iter(), &trusted);
            assert_eq!(ip, client.parse::<IpAddr>().unwrap(), "{why}");
        }
    }

    #[test]
    fn sanitizes_identity_and_nominated_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("x-auth-subject", "admin"),
            ("X_Auth_Subject", "admin"),
            ("connection", "close, x-secret, content-length"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("authorization", "Bearer a.b.c"),
            ("x-forwarded-for", "6.6.6.6"),
            ("content-length", "0"),
        ] {
            req.append_header(k.to_string(), v).unwrap();
        }
        let names = [HeaderName::from_static("x-auth-subject")];
        let fwd = ForwardedFor {
            peer: "127.0.0.1".parse().unwrap(),
            peer_trusted: false,
            proto: "https",
            host: Some("api.example.com"),
            request_id: Some(&HeaderValue::from_static("abc")),
        };
        sanitize_upstream_request(&mut req, &names, true, &fwd).unwrap();
        let h = &req.headers;
        for gone in [
            "x-auth-subject",
            "x_auth_subject",
            "connection",
            "x-secret",
            "keep-alive",
            "authorization",
        ] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
        assert_eq!(h.get("content-length").unwrap(), "0");
        assert_eq!(h.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "api.example.com");
        assert_eq!(h.get("x-request-id").unwrap(), "abc");
    }

    #[test]
    fn claim_values_cannot_break_headers() {
        assert_eq!(encode_claim_value("a\r\nX-Admin: 1"), "a%0D%0AX-Admin: 1");
        assert_eq!(encode_claim_value("josé"), "jos%C3%A9");
        assert_eq!(encode_claim_value("100%"), "100%25");
        assert!(HeaderValue::from_str(&encode_claim_value("\u{0}\u{7f}\u{1F600}")).is_ok());
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(&[b'a'; 129]));
    }
}
