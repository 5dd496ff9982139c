//! The route's rate limit, a token bucket per client, in two places of the pipeline. A limit
//! keyed on the client IP is taken before authentication (step 5a), so a flood of forged tokens
//! is refused with 429 instead of buying one signature check each. A limit keyed on `sub` can
//! only be taken once the token is verified (step 7); an unauthenticated request on such a
//! route (`mode: optional`) is keyed on its client IP there. A `shared` limit asks Redis
//! ([`shared_limit`]) and falls back to the local bucket when Redis does not answer.

use std::net::IpAddr;
use std::time::Instant;

use http::header::{self, HeaderValue};

use crate::auth::verifier::VerifiedToken;
use crate::metrics;
use crate::rate_limit::RateKey;
use crate::respond::LocalResponse;
use crate::runtime::Route;
use crate::shared_limit;

/// Step 5a: a client-IP limit, before any token work.
pub async fn before_auth(route: &Route, client_ip: IpAddr) -> Result<(), LocalResponse> {
    match &route.rate_limit {
        Some(limiter) if limiter.key == RateKey::ClientIp => check(route, client_ip, None).await,
        _ => Ok(()),
    }
}

/// Step 7: a `sub` limit, once the caller is known.
pub async fn after_auth(
    route: &Route,
    client_ip: IpAddr,
    token: Option<&VerifiedToken>,
) -> Result<(), LocalResponse> {
    match &route.rate_limit {
        Some(limiter) if limiter.key == RateKey::Subject => check(route, client_ip, token).await,
        _ => Ok(()),
    }
}

async fn check(
    route: &Route,
    client_ip: IpAddr,
    token: Option<&VerifiedToken>,
) -> Result<(), LocalResponse> {
    let Some(limiter) = &route.rate_limit else {
        return Ok(());
    };
    let (v4, v6);
    let key: &[u8] = match (limiter.key, token, client_ip) {
        (RateKey::Subject, Some(t), _) => t.valid.sub.as_bytes(),
        (_, _, IpAddr::V4(ip)) => {
            v4 = ip.octets();
            &v4
        }
        (_, _, IpAddr::V6(ip)) => {
            v6 = ip.octets();
            &v6
        }
    };
    let shared = match limiter.is_shared() {
        true => shared_limit::check(limiter, &route.name, key).await,
        false => None,
    };
    let verdict = match shared {
        Some(v) => v,
        None => {
            if limiter.is_shared() {
                metrics::RATE_LIMIT_FALLBACK
                    .with_label_values(&[route.name.as_str()])
                    .inc();
            }
            limiter.check(key, Instant::now())
        }
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
