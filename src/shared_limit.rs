//! `rate_limit.shared: true`: one token bucket per route and client key for all instances,
//! kept in Redis (conf/README.md §7).
//!
//! The bucket is a GCRA "theoretical arrival time" updated atomically by one script, with the
//! time taken from Redis's own clock inside the script, so instances with skewed clocks still
//! share one bucket. This is the one Redis round trip on a request path, so it is bounded by
//! `redis.command_timeout`; when Redis does not answer in time the caller falls back to the
//! route's local bucket and a request is never failed because Redis is down.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::rate_limit::RateLimiter;
use crate::redis_link;

/// Admits one request or answers how long until one would be admitted, in microseconds.
/// KEYS: the bucket. ARGV: microseconds per token, burst.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - burst * interval
if over > 0 then return math.ceil(over) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
",
    )
});

/// The shared bucket's verdict for `key` on `route`: `Some(Ok)` admitted, `Some(Err(wait))`
/// refused, `None` when Redis did not answer in time (use the local bucket).
pub async fn check(limiter: &RateLimiter, route: &str, key: &[u8]) -> Option<Result<(), Duration>> {
    let link = redis_link::link()?;
    // Known down (the background service notices within a second, and tells when it is back):
    // the local bucket at once, instead of one timeout per request.
    if !link.is_connected() {
        return None;
    }
    let mut con = link.commands()?;
    let (rps, burst) = limiter.rate();
    // The hash tag keeps each bucket whole on one cluster slot.
    let bucket = link.key(&format!("ratelimit:{{{route}:{}}}", hex::encode(key)));
    let mut call = GCRA.prepare_invoke();
    call.key(bucket).arg(1_000_000.0 / rps).arg(burst);
    match tokio::time::timeout(link.command_timeout(), call.invoke_async::<i64>(&mut con)).await {
        Ok(Ok(0)) => Some(Ok(())),
        Ok(Ok(wait_us)) => Some(Err(Duration::from_micros(wait_us.max(1) as u64))),
        Ok(Err(e)) => {
            link.failed("rate_limit", &e);
            None
        }
        Err(_) => {
            link.failed("rate_limit", &"timed out");
            None
        }
    }
}
