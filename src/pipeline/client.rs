//! Step 1: who is asking. The socket peer is read once per request; the client IP is the peer
//! unless the peer is a trusted proxy, in which case `X-Forwarded-For` is believed up to the
//! first untrusted hop.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use pingora::proxy::Session;

use crate::forwarding;

pub struct Client {
    /// The TCP peer (a proxy in front of us, or the client itself).
    pub peer: IpAddr,
    pub peer_trusted: bool,
    /// What rate limits, allowlists and the login throttle key on.
    pub ip: IpAddr,
    /// The client's `X-Request-Id` when well-formed, else a fresh one.
    pub request_id: String,
}

impl Default for Client {
    fn default() -> Client {
        Client {
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            request_id: String::new(),
        }
    }
}

pub fn identify(session: &Session, trusted_proxies: &[IpNet]) -> Client {
    let headers = &session.req_header().headers;
    let request_id = match headers.get("x-request-id") {
        Some(v) if forwarding::valid_request_id(v.as_bytes()) => {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        }
        _ => forwarding::new_request_id(),
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
        request_id,
    }
}
