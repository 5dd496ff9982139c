//! The route's rate limit, a token bucket per client, in two places of the pipeline. A limit
//! keyed on the client IP is taken before authentication (step 5a), so a flood of forged tokens
//! is refused with 429 instead of buying one signature check each. A limit keyed on `sub` can
//! only be taken once the token is verified (step 7); an unauthenticated request on such a
//! route (`mode: optional`) is keyed on its client IP there.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};

use crate::auth::verifier::VerifiedToken;
use crate::metrics;
use crate::rate_limit::RateKey;
use crate::respond::LocalResponse;
use crate::runtime::Route;

/// Step 5a: a client-IP limit, before any token work.
pub fn before_auth(route: &Route, client_ip: IpAddr) -> Result<(), LocalResponse> {
    match &route.rate_limit {
        Some(limiter) if limiter.key == RateKey::ClientIp => check(route, client_ip, None),
        _ => Ok(()),
    }
}

/// Step 7: a `sub` limit, once the caller is known.
pub fn after_auth(
    route: &Route,
    client_ip: IpAddr,
    token: Option<&VerifiedToken>,
) -> Result<(), LocalResponse> {
    match &route.rate_limit {
        Some(limiter) if limiter.key == RateKey::Subject => check(route, client_ip, token),
        _ => Ok(()),
    }
}

fn check(
    route: &Route,
    client_ip: IpAddr,
    token: Option<&VerifiedToken>,
) -> Result<(), LocalResponse> {
    let Some(limiter) = &route.rate_limit else {
        return Ok(());
    };
    let now = Instant::now();
    let verdict = match (limiter.key, token) {
        (RateKey::Subject, Some(t)) => limiter.check(t.valid.sub.as_bytes(), now),
        _ => match client_ip {
            IpAddr::V4(v4) => limiter.check(&v4.octets(), now),
            IpAddr::V6(v6) => limiter.check(&v6.octets(), now),
        },
    };
    let Err(wait) = verdict else { return Ok(()) };
    metrics::RATE_LIMITED
        .with_label_values(&[route.name.as_str()])
        .inc();
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Err(
        LocalResponse::error(429, "rate_limited", "too many requests")
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1))),
    )
}
