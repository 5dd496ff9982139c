//! Per-route rate limits (`routes[].rate_limit`): a token bucket per client key, refilled at
//! `rps` up to `burst`.
//!
//! Each bucket is kept as one number, the instant it will be full again (the generic cell rate
//! algorithm's "theoretical arrival time"): a request is allowed when taking a token would not
//! push that instant more than `burst / rps` into the future. A bucket whose instant has passed
//! is full and carries no state, so it can be forgotten at any time.
//!
//! Memory is bounded per limiter: at most [`MAX_KEYS_PER_SHARD`] buckets in each of [`SHARDS`]
//! shards, each bucket 16 bytes (a keyed 64-bit hash of the client key and its full-again
//! instant), so a flood of distinct keys costs at most about 4.5 MiB per limited route. When a
//! shard is full, the buckets that are already full go first; if that is not enough, the ones
//! that would be full soonest go, an eighth of the shard at once so the scan is paid once per
//! couple of thousand new keys. A busy key (one that is being limited, or just was) has its
//! full-again instant furthest in the future and is evicted last, so a flood of new keys cannot
//! reset the bucket of the client it is meant to hide: an evicted bucket is never more than
//! the shard's eighth-quantile refill time away from full.
//!
//! Keys are SipHash-keyed per limiter (random key from the OS), so a client cannot choose keys
//! that share another client's bucket or land in one shard.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::config::RateLimitConf;

pub const SHARDS: usize = 16;
/// Buckets per shard: 7/8 of 16,384, hashbrown's maximum load for a table of 16,384 slots, so a
/// full shard is one 16,384-slot table (17 bytes a slot) and never doubles.
pub const MAX_KEYS_PER_SHARD: usize = 14 * 1024;
/// What a full shard keeps after evicting the buckets closest to full.
const KEEP_AFTER_EVICTION: usize = MAX_KEYS_PER_SHARD - MAX_KEYS_PER_SHARD / 8;

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

/// One client's bucket: the keyed hash of its key and the instant (nanoseconds after the
/// limiter's epoch) at which it will be full again.
#[derive(Clone, Copy)]
struct Bucket {
    key: u64,
    full_at: u64,
}

pub struct RateLimiter {
    /// The settings it was built from; a reload with the same settings keeps this limiter.
    pub conf: RateLimitConf,
    pub key: RateKey,
    /// Nanoseconds one request adds to a bucket's full-again instant (`1 / rps`).
    per_request: u64,
    /// How far a bucket's full-again instant may lie in the future (`burst / rps`).
    tolerance: u64,
    epoch: Instant,
    hasher: RandomState,
    shards: Vec<Mutex<HashTable<Bucket>>>,
}

impl RateLimiter {
    pub fn new(conf: &RateLimitConf) -> RateLimiter {
        let rps = f64::from(conf.rps.max(1));
        let burst = conf.burst.map_or(rps, f64::from).max(1.0);
        let per_request = 1e9 / rps;
        RateLimiter {
            conf: conf.clone(),
            key: conf.key,
            per_request: per_request as u64,
            tolerance: (per_request * burst) as u64,
            // Far enough back that `now` is never before it, even for callers that pass an
            // instant taken just before the limiter was built.
            epoch: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
        }
    }

    /// `shared: true`: the bucket lives in Redis (crate::shared_limit); the local one here only
    /// answers while Redis does not (conf/README.md §7).
    pub fn is_shared(&self) -> bool {
        self.conf.shared
    }

    /// `(rps, burst)`, for the shared bucket's script.
    pub fn rate(&self) -> (f64, f64) {
        let rps = f64::from(self.conf.rps.max(1));
        (rps, self.conf.burst.map_or(rps, f64::from).max(1.0))
    }

    /// Takes one token for `key`; `Err(retry_after)` when the bucket is empty.
    pub fn check(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        let hash = self.hasher.hash_one(key);
        // The middle bits: hashbrown uses the low bits for the slot and the top seven as a tag.
        let Some(shard) = self.shards.get((hash >> 32) as usize % SHARDS) else {
            return Ok(());
        };
        let now = nanos(now.saturating_duration_since(self.epoch));
        let mut table = shard.lock();
        if table.len() >= MAX_KEYS_PER_SHARD && table.find(hash, |b| b.key == hash).is_none() {
            evict(&mut table, now);
        }
        let full_at = match table.entry(hash, |b| b.key == hash, |b| b.key) {
            Entry::Occupied(o) => &mut o.into_mut().full_at,
            Entry::Vacant(v) => {
                let bucket = Bucket {
                    key: hash,
                    full_at: now,
                };
                &mut v.insert(bucket).into_mut().full_at
            }
        };
        let next = (*full_at).max(now).saturating_add(self.per_request);
        let ahead = next - now;
        if ahead <= self.tolerance {
            *full_at = next;
            Ok(())
        } else {
            Err(Duration::from_nanos(ahead - self.tolerance))
        }
    }

    /// Buckets held now, over every shard.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Makes room in a full shard: first every bucket that is full again (no state lost), then, if
/// that is not an eighth of the shard, the buckets that would be full soonest, down to
/// [`KEEP_AFTER_EVICTION`]. The survivors move to a fresh table: erasing in place leaves
/// tombstones that would make the table double at the next insert.
fn evict(table: &mut HashTable<Bucket>, now: u64) {
    let mut instants: Vec<u64> = table
        .iter()
        .map(|b| b.full_at)
        .filter(|&t| t > now)
        .collect();
    let excess = instants.len().saturating_sub(KEEP_AFTER_EVICTION);
    // Buckets at or before `threshold` go, but of those exactly at it only `at_threshold`, so a
    // shard of equal buckets is thinned, not emptied.
    let (threshold, mut at_threshold) = if excess == 0 {
        (now, 0)
    } else {
        let (_, nth, _) = instants.select_nth_unstable(excess - 1);
        let nth = *nth;
        let below = instants.iter().filter(|&&t| t < nth).count();
        (nth, excess - below)
    };
    let mut kept = HashTable::with_capacity(MAX_KEYS_PER_SHARD);
    for b in table.iter() {
        let goes = b.full_at <= now
            || b.full_at < threshold
            || (b.full_at == threshold && at_threshold > 0 && {
                at_threshold -= 1;
                true
            });
        if !goes {
            kept.insert_unique(b.key, *b, |b: &Bucket| b.key);
        }
    }
    *table = kept;
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn limiter(rps: u32, burst: Option<u32>) -> RateLimiter {
        RateLimiter::new(&RateLimitConf {
            rps,
            burst,
            key: RateKey::ClientIp,
            shared: false,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_refill() {
        let rl = limiter(10, Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(b"a", t0).is_ok());
        }
        let wait = rl.check(b"a", t0).expect_err("bucket is empty");
        assert!(wait <= ms(100), "{wait:?}");
        assert!(rl.check(b"b", t0).is_ok(), "keys are independent");
        assert!(rl.check(b"a", t0 + ms(100)).is_ok());
        assert!(rl.check(b"a", t0 + ms(100)).is_err());
    }

    #[test]
    fn steady_rate_is_allowed_and_refill_is_capped_at_burst() {
        let rl = limiter(10, Some(2));
        let t0 = Instant::now();
        for i in 0..50 {
            assert!(rl.check(b"a", t0 + ms(100 * i)).is_ok(), "request {i}");
        }
        // An hour idle refills to `burst`, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!(rl.check(b"a", later).is_ok());
        assert!(rl.check(b"a", later).is_ok());
        assert!(rl.check(b"a", later).is_err());
    }

    #[test]
    fn retry_after_is_the_time_to_the_next_token() {
        let rl = limiter(2, Some(1));
        let t0 = Instant::now();
        assert!(rl.check(b"a", t0).is_ok());
        assert_eq!(rl.check(b"a", t0).expect_err("empty"), ms(500));
        assert_eq!(rl.check(b"a", t0 + ms(200)).expect_err("empty"), ms(300));
    }

    fn fill(rl: &RateLimiter, from: u64, n: u64, now: Instant) {
        for i in from..from + n {
            let _ = rl.check(&i.to_le_bytes(), now);
        }
    }

    #[test]
    fn many_keys_stay_bounded() {
        let rl = limiter(1, None);
        let t0 = Instant::now();
        fill(&rl, 0, (SHARDS * MAX_KEYS_PER_SHARD * 3) as u64, t0);
        assert!(rl.len() <= SHARDS * MAX_KEYS_PER_SHARD, "{}", rl.len());
        for shard in &rl.shards {
            assert!(
                shard.lock().capacity() <= 16 * 1024,
                "a shard's table grew past one size"
            );
        }
    }

    #[test]
    fn a_flood_of_new_keys_does_not_reset_an_exhausted_bucket() {
        let rl = limiter(1, Some(5));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(rl.check(b"victim", t0).is_ok());
        }
        assert!(rl.check(b"victim", t0).is_err());
        // Far more distinct keys than the limiter holds, each spending one token, within the
        // victim's refill time.
        let flood = (SHARDS * MAX_KEYS_PER_SHARD * 4) as u64;
        for i in 0..flood {
            let now = t0 + Duration::from_nanos(i * 1_000); // 1 M new keys/s
            let _ = rl.check(&i.to_le_bytes(), now);
        }
        let end = t0 + Duration::from_nanos(flood * 1_000);
        assert!(
            end < t0 + Duration::from_secs(1),
            "the flood outlasted one token's refill"
        );
        assert!(
            rl.check(b"victim", end).is_err(),
            "the victim's bucket was reset"
        );
        assert!(rl.len() <= SHARDS * MAX_KEYS_PER_SHARD);
    }

    #[test]
    fn a_busy_bucket_survives_a_shard_full_of_refilled_and_fresh_buckets() {
        let rl = limiter(1, Some(2));
        let t0 = Instant::now();
        // Fill the limiter with buckets that are full again 2 s later.
        fill(&rl, 0, (SHARDS * MAX_KEYS_PER_SHARD * 2) as u64, t0);
        let held = rl.len();
        // A key that spends its burst now, then new keys after the old ones refilled.
        let t1 = t0 + Duration::from_secs(3);
        assert!(rl.check(b"busy", t1).is_ok());
        assert!(rl.check(b"busy", t1).is_ok());
        fill(&rl, 1 << 40, held as u64, t1);
        assert!(
            rl.check(b"busy", t1).is_err(),
            "the busy bucket was evicted"
        );
    }

    #[test]
    fn eviction_takes_the_buckets_closest_to_full_and_only_an_eighth() {
        let mut table = HashTable::new();
        for i in 0..MAX_KEYS_PER_SHARD as u64 {
            table.insert_unique(
                i,
                Bucket {
                    key: i,
                    full_at: 1_000 + i,
                },
                |b| b.key,
            );
        }
        evict(&mut table, 0);
        assert_eq!(table.len(), KEEP_AFTER_EVICTION);
        let evicted = (MAX_KEYS_PER_SHARD - KEEP_AFTER_EVICTION) as u64;
        let oldest_kept = table.iter().map(|b| b.full_at).min().expect("kept some");
        assert_eq!(oldest_kept, 1_000 + evicted);
    }

    #[test]
    fn eviction_thins_a_shard_of_equal_buckets_instead_of_emptying_it() {
        let mut table = HashTable::new();
        for i in 0..MAX_KEYS_PER_SHARD as u64 {
            table.insert_unique(i, Bucket { key: i, full_at: 5 }, |b| b.key);
        }
        evict(&mut table, 0);
        assert_eq!(table.len(), KEEP_AFTER_EVICTION);
        // And buckets already full go without touching the rest.
        table.insert_unique(
            u64::MAX,
            Bucket {
                key: u64::MAX,
                full_at: 1,
            },
            |b| b.key,
        );
        evict(&mut table, 2);
        assert_eq!(table.len(), KEEP_AFTER_EVICTION);
    }
}
