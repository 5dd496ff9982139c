//! Step 1: who is asking. The socket peer is read once per request; the client IP is the peer
//! unless the peer is a trusted proxy, in which case `X-Forwarded-For` is believed up to the
//! first untrusted hop.

use std::net::{IpAddr, Ipv4Addr};

use http::header::HeaderValue;
use ipnet::IpNet;
use pingora::proxy::Session;

use crate::forwarding;

pub struct Client {
    /// The TCP peer (a proxy in front of us, or the client itself).
    pub peer: IpAddr,
    pub peer_trusted: bool,
    /// What rate limits, allowlists and the login throttle key on.
    pub ip: IpAddr,
    /// The client's `X-Request-Id` when well-formed, else a fresh one; `None` only before the
    /// request was read. A header value, so echoing it to the client and the upstream shares
    /// one buffer instead of copying it per header.
    pub request_id: Option<HeaderValue>,
}

impl Default for Client {
    fn default() -> Client {
        Client {
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            request_id: None,
        }
    }
}

pub fn identify(session: &Session, trusted_proxies: &[IpNet]) -> Client {
    let headers = &session.req_header().headers;
    let request_id = match headers.get("x-request-id") {
        Some(v) if forwarding::valid_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    };
    // A Unix-socket or unknown peer counts as local: it can only be another process here.
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
    Client {
        peer,
        peer_trusted: forwarding::is_trusted(peer, trusted_proxies),
        ip: forwarding::client_ip(
            peer,
            headers.get_all("x-forwarded-for").iter(),
            trusted_proxies,
        ),
        request_id: Some(request_id),
    }
}

/// 128 random bits in hex, formatted on the stack.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert!(forwarding::valid_request_id(a.as_bytes()));
        assert_ne!(a, b);
    }
}
