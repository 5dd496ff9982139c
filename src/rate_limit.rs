//! Per-route rate limits (`routes[].rate_limit`): a token bucket per client key, refilled at
//! `rps` up to `burst`.
//!
//! Buckets live in a sharded map with short critical sections (no `.await` inside), bounded in
//! size so a flood of distinct keys costs memory only up to a fixed cap.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const SHARDS: usize = 16;
/// Per shard; a full shard first drops buckets that have refilled completely (they carry no
/// state worth keeping), then, if still full, starts over.
const MAX_KEYS_PER_SHARD: usize = 16 * 1024;

/// What identifies a client for the limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateKey {
    #[default]
    ClientIp,
    /// The verified token's `sub`; anonymous requests fall back to the client IP.
    Subject,
}

/// The config spells the keys `client_ip` and `claim:sub`; anything else is refused with its key
/// path rather than read as the default.
impl<'de> serde::Deserialize<'de> for RateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match name.as_ref() {
            "client_ip" => Ok(RateKey::ClientIp),
            "claim:sub" => Ok(RateKey::Subject),
            _ => Err(serde::de::Error::custom("must be client_ip or claim:sub")),
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    rps: f64,
    burst: f64,
    pub key: RateKey,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<Box<[u8]>, Bucket>>>,
    /// `shared: true`: the bucket lives in Redis (crate::shared_limit); the local one above
    /// only answers while Redis does not.
    shared: bool,
}

impl RateLimiter {
    pub fn new(rps: u32, burst: Option<u32>, key: RateKey) -> RateLimiter {
        let rps = f64::from(rps.max(1));
        RateLimiter {
            rps,
            burst: burst.map_or(rps, f64::from).max(1.0),
            key,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shared: false,
        }
    }

    /// Keeps the bucket in Redis, shared by every instance (conf/README.md §7).
    pub fn shared(mut self, shared: bool) -> RateLimiter {
        self.shared = shared;
        self
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// `(rps, burst)`, for the shared bucket's script.
    pub fn rate(&self) -> (f64, f64) {
        (self.rps, self.burst)
    }

    /// Takes one token for `key`; `Err(retry_after)` when the bucket is empty.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = self.shards.get(shard) else {
            return Ok(());
        };
        let mut map = shard.lock();
        if !map.contains_key(key) && map.len() >= MAX_KEYS_PER_SHARD {
            let (rps, burst) = (self.rps, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rps < burst);
            if map.len() >= MAX_KEYS_PER_SHARD {
                map.clear();
            }
        }
        let bucket = map.entry(key.into()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rps;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rps))
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(10, Some(3), RateKey::ClientIp);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(b"a", t0).is_ok());
        }
        let wait = rl.check(b"a", t0).expect_err("bucket is empty");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rl.check(b"b", t0).is_ok(), "keys are independent");
        assert!(rl.check(b"a", t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn many_keys_stay_bounded() {
        let rl = RateLimiter::new(1, None, RateKey::ClientIp);
        let t0 = Instant::now();
        for i in 0..(SHARDS * MAX_KEYS_PER_SHARD + 1000) as u64 {
            let _ = rl.check(&i.to_le_bytes(), t0);
        }
        let total: usize = rl.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= SHARDS * MAX_KEYS_PER_SHARD);
    }
}
