//! The request pipeline, one module per step, in the order `proxy::Gateway::request_filter`
//! runs them:
//!
//! 1. [`client`]: who is asking (client IP behind trusted proxies, request id)
//! 2. [`head`]: request hygiene, everything refused from the head alone
//! 3. [`redirect`]: plain HTTP to HTTPS
//! 4. [`issuer_endpoints`]: the built-in token issuer's own endpoints
//! 5. [`route`]: the route, its allowlist and the target sent upstream;
//!    then [`throttle::before_auth`]: a rate limit keyed on the client IP
//! 6. authenticate, check revocation, authorize: [`crate::auth::gate`]
//! 7. [`throttle::after_auth`]: a rate limit keyed on the token's `sub`
//! 8. proxy: `proxy::Gateway::upstream_peer` and the upstream filters
//!
//! Each step takes what the request head and the steps before it produced and returns the
//! value the next step needs, or a [`LocalResponse`](crate::respond::LocalResponse) that the
//! gateway answers with instead of proxying. No step writes to the connection; only the proxy
//! does, so each step is a plain function a unit test can call without a server.

pub mod client;
pub mod head;
pub mod issuer_endpoints;
pub mod redirect;
pub mod route;
pub mod throttle;

/// Which listener a request arrived on; decides redirects, HSTS and internal-route visibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Http,
    Https,
    Internal,
}
