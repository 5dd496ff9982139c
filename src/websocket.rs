//! WebSocket upgrades (conf/README.md §8).
//!
//! The handshake is an ordinary request: routed, authenticated and authorized by the pipeline
//! like any other. What is particular to WebSocket is what comes after the `101`: the connection
//! can outlive the token that opened it by hours, so it carries a [`Lease`] that every frame is
//! checked against. A token that expires or is revoked ends the connection at the next frame in
//! either direction, and a silent connection ends after the upstream's `timeouts.idle`.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use pingora::http::RequestHeader;
use prometheus::IntGauge;

use crate::auth::verifier::VerifiedToken;
use crate::respond::LocalResponse;
use crate::revocation::RevocationList;

/// Whether `req` asks for a WebSocket: an HTTP/1.1 `GET` with `Upgrade: websocket` and
/// `Connection: upgrade` (both compared case-insensitively, as lists). Other upgrades (`h2c`,
/// TLS) are not WebSocket and lose their `Upgrade` header like any hop-by-hop header.
#[must_use]
pub fn requested(req: &RequestHeader) -> bool {
    req.method == http::Method::GET
        && req.version == http::Version::HTTP_11
        && lists_token(req, header::UPGRADE, "websocket")
        && lists_token(req, header::CONNECTION, "upgrade")
}

fn lists_token(req: &RequestHeader, name: header::HeaderName, token: &str) -> bool {
    req.headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The answer on a route with `websocket: false`; nothing reaches the upstream.
#[must_use]
pub fn not_allowed() -> LocalResponse {
    LocalResponse::error(
        403,
        "forbidden",
        "WebSocket upgrades are not allowed on this route",
    )
}

/// The two headers that carry an upgrade to the upstream. Everything else hop-by-hop has been
/// removed by then; these are put back exactly as the contract allows.
pub fn forward_upgrade(upstream: &mut RequestHeader) -> pingora::Result<()> {
    upstream.insert_header(header::UPGRADE, HeaderValue::from_static("websocket"))?;
    upstream.insert_header(header::CONNECTION, HeaderValue::from_static("upgrade"))?;
    Ok(())
}

/// What keeps an open WebSocket alive: the token that opened it (if the route authenticates) and
/// the moment it stops being acceptable.
pub struct Lease {
    token: Arc<VerifiedToken>,
    /// `exp` plus the leeway the token was validated with: the same instant at which the
    /// gateway would refuse it on a new request.
    ends_at: i64,
}

impl Lease {
    #[must_use]
    pub fn new(token: Arc<VerifiedToken>, leeway_secs: i64) -> Lease {
        let ends_at = token.valid.exp.saturating_add(leeway_secs.max(0));
        Lease { token, ends_at }
    }

    /// How long the connection may stay silent: `idle`, or less when the token ends sooner, so
    /// that a connection nobody writes to is closed when its token expires rather than at the
    /// next frame. At least a second, so a token that ends now still gets its frame check.
    #[must_use]
    pub fn quiet_limit(&self, idle: Duration, now: i64) -> Duration {
        let left = u64::try_from(self.ends_at.saturating_sub(now)).unwrap_or(0);
        idle.min(Duration::from_secs(left.max(1)))
    }

    /// `Err` names why the connection must end now.
    pub fn check(&self, revocations: &RevocationList, now: i64) -> Result<(), &'static str> {
        if now > self.ends_at {
            return Err("the token of this WebSocket expired");
        }
        let t = &self.token;
        if revocations.is_revoked(&t.iss, t.valid.jti.as_deref(), &t.valid.sub, t.valid.iat) {
            return Err("the token of this WebSocket was revoked");
        }
        Ok(())
    }
}

/// One open WebSocket in `portcullis_websocket_connections{route}`, for as long as it lives.
pub struct Open(IntGauge);

impl Open {
    #[must_use]
    pub fn count(gauge: &IntGauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(method: &str, version: http::Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/ws", None).unwrap();
        req.set_version(version);
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn only_a_get_over_http11_with_both_headers_is_a_websocket() {
        use http::Version;
        let both = [("upgrade", "websocket"), ("connection", "Upgrade")];
        assert!(requested(&request("GET", Version::HTTP_11, &both)));
        assert!(requested(&request(
            "GET",
            Version::HTTP_11,
            &[
                ("upgrade", "WebSocket"),
                ("connection", "keep-alive, upgrade")
            ]
        )));
        assert!(!requested(&request("POST", Version::HTTP_11, &both)));
        assert!(!requested(&request("GET", Version::HTTP_10, &both)));
        assert!(!requested(&request(
            "GET",
            Version::HTTP_11,
            &[("upgrade", "websocket")]
        )));
        assert!(!requested(&request(
            "GET",
            Version::HTTP_11,
            &[("upgrade", "h2c"), ("connection", "upgrade")]
        )));
        assert!(!requested(&request(
            "GET",
            Version::HTTP_11,
            &[("upgrade", "websocketx"), ("connection", "upgrade")]
        )));
    }

    fn token(exp: i64) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            provider: Arc::from("corp"),
            iss: "https://id.test".into(),
            valid: crate::auth::claims::ValidClaims {
                sub: "alice".into(),
                jti: Some("j1".into()),
                iat: Some(900),
                exp,
                nbf: None,
                scopes: Vec::new(),
            },
            claims: serde_json::Map::new(),
            kid: "k1".into(),
            key_uid: 1,
        })
    }

    #[test]
    fn a_lease_ends_with_its_token() {
        let list = RevocationList::new();
        let lease = Lease::new(token(1000), 30);
        assert!(lease.check(&list, 1000).is_ok());
        assert!(lease.check(&list, 1030).is_ok());
        assert!(lease.check(&list, 1031).unwrap_err().contains("expired"));

        list.revoke_jti("https://id.test", "j1", None);
        assert!(lease.check(&list, 1000).unwrap_err().contains("revoked"));
        assert!(list.remove_jti("https://id.test", "j1"));
        assert!(lease.check(&list, 1000).is_ok());
        // A subject cut-off after the token's iat ends it too.
        list.revoke_subject("https://id.test", "alice", 950, None);
        assert!(lease.check(&list, 1000).unwrap_err().contains("revoked"));
    }

    #[test]
    fn a_silent_connection_may_last_until_the_token_ends() {
        let lease = Lease::new(token(1000), 0);
        let idle = Duration::from_secs(60);
        assert_eq!(lease.quiet_limit(idle, 900), Duration::from_secs(60));
        assert_eq!(lease.quiet_limit(idle, 990), Duration::from_secs(10));
        assert_eq!(lease.quiet_limit(idle, 1000), Duration::from_secs(1));
        assert_eq!(lease.quiet_limit(idle, 5000), Duration::from_secs(1));
    }

    #[test]
    fn the_gauge_follows_the_connections() {
        let gauge = IntGauge::new("test_ws", "test").unwrap();
        let a = Open::count(&gauge);
        let b = Open::count(&gauge);
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }
}
