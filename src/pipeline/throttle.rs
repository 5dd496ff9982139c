//! Step 7: the route's rate limit, a token bucket per client: by `sub` when the route keys on
//! it and the request is authenticated, else by client IP.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};

use crate::auth::verifier::VerifiedToken;
use crate::metrics;
use crate::rate_limit::RateKey;
use crate::respond::LocalResponse;
use crate::runtime::Route;

pub fn check(
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
