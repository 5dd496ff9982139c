//! Verified-token cache: skips signature verification and claim parsing for a token seen
//! recently. Revocation and route authorization still run on every hit (conf/README.md §3.5), so the
//! cache only ever stores what [`verify`](super::verifier::verify) would say again.
//!
//! Keyed by the full token string (never a hash of it: a hash collision would hand one
//! client another's identity). Sharded `RwLock`ed tables keep hits on different threads from
//! contending, and the total size is a hard bound: memory cannot grow with traffic.
//!
//! A token is hashed once per lookup, with foldhash seeded from the OS RNG per cache: the same
//! 64-bit hash picks the shard and probes its table (and is stored, so a resize never rehashes
//! tokens). SipHash over a ~400-byte token was most of the cost of a hit; foldhash is a
//! non-cryptographic hash, but with a secret seed tokens that collide cannot be precomputed.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use foldhash::fast::FoldHasher;
use foldhash::SharedSeed;
use hashbrown::HashTable;
use parking_lot::RwLock;

use super::verifier::VerifiedToken;

const MAX_SHARDS: usize = 32;

struct Entry {
    token: Box<str>,
    hash: u64,
    verified: Arc<VerifiedToken>,
    /// min(token exp, inserted + max_ttl): the entry is dead from this second on.
    expires_at: i64,
}

impl Entry {
    fn is(&self, hash: u64, token: &str) -> bool {
        self.hash == hash && *self.token == *token
    }
}

struct Shard {
    map: HashTable<Entry>,
    /// Last second in which a full shard was swept for expired entries, so a full shard of
    /// live entries is not rescanned on every insert.
    last_sweep: i64,
}

/// A shard on its own cache line, so readers on different threads do not contend on
/// neighbouring lock words.
#[repr(align(64))]
struct LockedShard {
    lock: RwLock<Shard>,
    cap: usize,
}

pub struct TokenCache {
    shards: Box<[LockedShard]>,
    /// Secret hash seeds: which tokens share a shard or a probe sequence is not predictable.
    seed: SharedSeed,
    per_cache_seed: u64,
    max_entries: usize,
    max_ttl_secs: i64,
}

impl TokenCache {
    /// At most `max_entries` tokens (0 disables the cache), each kept at most `max_ttl_secs`
    /// and never past its `exp`.
    pub fn new(max_entries: usize, max_ttl_secs: i64) -> TokenCache {
        TokenCache::with_shards(max_entries, max_ttl_secs, MAX_SHARDS)
    }

    fn with_shards(max_entries: usize, max_ttl_secs: i64, shards: usize) -> TokenCache {
        let n = shards.min(max_entries);
        // Per-shard capacities add up to exactly max_entries.
        let shards = (0..n)
            .map(|i| LockedShard {
                lock: RwLock::new(Shard {
                    map: HashTable::new(),
                    last_sweep: i64::MIN,
                }),
                cap: max_entries / n + usize::from(i < max_entries % n),
            })
            .collect();
        // std's RandomState is keyed from the OS RNG; foldhash's own default seed is not.
        let random = RandomState::new();
        TokenCache {
            shards,
            seed: SharedSeed::from_u64(random.hash_one(0u64)),
            per_cache_seed: random.hash_one(1u64),
            max_entries,
            max_ttl_secs,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    fn hash(&self, token: &str) -> u64 {
        let mut h = FoldHasher::with_seed(self.per_cache_seed, &self.seed);
        h.write(token.as_bytes());
        // As `str`'s Hash does: the final fold mixes every input bit into the top tag bits too.
        h.write_u8(0xff);
        h.finish()
    }

    /// The token's hash and shard. The shard comes from bits 32..56, which the table uses
    /// neither for its bucket index (low bits) nor for its control tags (top 7 bits).
    fn shard(&self, token: &str) -> Option<(u64, &LockedShard)> {
        let len = self.shards.len();
        if len == 0 {
            return None;
        }
        let hash = self.hash(token);
        let i = ((hash >> 32) & 0x00ff_ffff) as usize % len;
        self.shards.get(i).map(|s| (hash, s))
    }

    /// The verified token, unless absent or dead (`now >= min(exp, inserted + max_ttl)`; a
    /// dead entry is removed).
    pub fn get(&self, token: &str, now: i64) -> Option<Arc<VerifiedToken>> {
        let (hash, locked) = self.shard(token)?;
        {
            let shard = locked.lock.read();
            match shard.map.find(hash, |e| e.is(hash, token)) {
                None => return None,
                Some(e) if now < e.expires_at => return Some(Arc::clone(&e.verified)),
                Some(_) => {}
            }
        }
        let mut shard = locked.lock.write();
        if let Ok(found) = shard.map.find_entry(hash, |e| e.is(hash, token)) {
            if now >= found.get().expires_at {
                found.remove();
            }
        }
        None
    }

    /// Remember a verified token. When its shard is full, expired entries go first, then
    /// arbitrary ones; the bound is never exceeded.
    pub fn insert(&self, token: &str, verified: Arc<VerifiedToken>, now: i64) {
        let expires_at = verified
            .valid
            .exp
            .min(now.saturating_add(self.max_ttl_secs));
        if expires_at <= now {
            return;
        }
        let Some((hash, locked)) = self.shard(token) else {
            return;
        };
        let mut guard = locked.lock.write();
        let shard = &mut *guard;
        if let Some(e) = shard.map.find_mut(hash, |e| e.is(hash, token)) {
            e.verified = verified;
            e.expires_at = expires_at;
            return;
        }
        if shard.map.len() >= locked.cap && shard.last_sweep != now {
            shard.map.retain(|e| e.expires_at > now);
            shard.last_sweep = now;
        }
        while shard.map.len() >= locked.cap {
            let Some(victim) = shard.map.iter().next().map(|e| e.hash) else {
                break;
            };
            if let Ok(found) = shard.map.find_entry(victim, |e| e.hash == victim) {
                found.remove();
            }
        }
        let entry = Entry {
            token: token.into(),
            hash,
            verified,
            expires_at,
        };
        shard.map.insert_unique(hash, entry, |e| e.hash);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock.read().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every entry verified by a key uid not in `live`. `live` must hold the uids of every
    /// provider's current keys; [`retain_provider_keys`](Self::retain_provider_keys) is the
    /// per-provider form.
    pub fn retain_keys(&self, live: &HashSet<u64>) {
        for locked in self.shards.iter() {
            locked
                .lock
                .write()
                .map
                .retain(|e| live.contains(&e.verified.key_uid));
        }
    }

    /// Drop the entries of `provider` whose key is not in `live` (that provider's current
    /// keys), leaving other providers' entries alone. Called when a JWKS refresh changes keys.
    pub fn retain_provider_keys(&self, provider: &str, live: &HashSet<u64>) {
        for locked in self.shards.iter() {
            locked.lock.write().map.retain(|e| {
                &*e.verified.provider != provider || live.contains(&e.verified.key_uid)
            });
        }
    }

    /// Drop dead entries; returns how many. Optional housekeeping: dead entries are also
    /// dropped on access and when a shard fills up.
    pub fn sweep(&self, now: i64) -> usize {
        let mut removed = 0;
        for locked in self.shards.iter() {
            let mut shard = locked.lock.write();
            let before = shard.map.len();
            shard.map.retain(|e| e.expires_at > now);
            removed += before - shard.map.len();
        }
        removed
    }

    pub fn clear(&self) {
        for locked in self.shards.iter() {
            locked.lock.write().map.clear();
        }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("max_entries", &self.max_entries)
            .field("max_ttl_secs", &self.max_ttl_secs)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::Map;

    const NOW: i64 = 1_700_000_000;

    fn vt(exp: i64, uid: u64, provider: &str) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken {
            provider: Arc::from(provider),
            iss: "i".into(),
            valid: crate::auth::claims::ValidClaims {
                sub: "s".into(),
                jti: None,
                iat: None,
                exp,
                nbf: None,
                scopes: vec![],
            },
            claims: Map::new(),
            kid: "k".into(),
            key_uid: uid,
        })
    }

    #[test]
    fn hit_miss_and_expiry_at_exp() {
        let c = TokenCache::new(100, 300);
        assert!(c.enabled());
        assert!(c.get("a.b.c", NOW).is_none());
        c.insert("a.b.c", vt(NOW + 100, 1, "p"), NOW);
        assert_eq!(c.get("a.b.c", NOW + 99).unwrap().valid.exp, NOW + 100);
        assert_eq!(c.len(), 1);
        assert!(c.get("a.b.d", NOW).is_none());
        assert!(c.get("a.b.c", NOW + 100).is_none());
        assert_eq!(c.len(), 0, "dead entry removed on access");
    }

    #[test]
    fn expiry_at_max_ttl() {
        let c = TokenCache::new(100, 60);
        c.insert("t", vt(NOW + 3600, 1, "p"), NOW);
        assert!(c.get("t", NOW + 59).is_some());
        assert!(c.get("t", NOW + 60).is_none());
        // Already dead or zero ttl: never stored.
        c.insert("u", vt(NOW, 1, "p"), NOW);
        assert!(c.is_empty());
        let z = TokenCache::new(100, 0);
        z.insert("t", vt(NOW + 10, 1, "p"), NOW);
        assert!(z.is_empty());
    }

    #[test]
    fn disabled_cache() {
        let c = TokenCache::new(0, 300);
        assert!(!c.enabled());
        c.insert("t", vt(NOW + 10, 1, "p"), NOW);
        assert!(c.get("t", NOW).is_none());
        assert_eq!(c.len(), 0);
        c.retain_keys(&HashSet::new());
        assert_eq!(c.sweep(NOW), 0);
    }

    #[test]
    fn bound_is_never_exceeded() {
        for max in [1usize, 3, 31, 32, 33, 100, 1000] {
            let c = TokenCache::new(max, 300);
            let caps: usize = c.shards.iter().map(|s| s.cap).sum();
            assert_eq!(caps, max);
            for i in 0..(max * 5 + 50) {
                c.insert(
                    &format!("tok-{i}-xxxxxxxxxxxxxxxx{i}"),
                    vt(NOW + 100, 1, "p"),
                    NOW,
                );
                assert!(c.len() <= max);
            }
            assert!(!c.is_empty());
        }
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let c = TokenCache::with_shards(4, 300, 1);
        c.insert("a", vt(NOW + 10, 1, "p"), NOW);
        c.insert("b", vt(NOW + 1000, 1, "p"), NOW);
        c.insert("c", vt(NOW + 1000, 1, "p"), NOW);
        c.insert("d", vt(NOW + 1000, 1, "p"), NOW);
        c.insert("e", vt(NOW + 1000, 1, "p"), NOW + 20);
        assert_eq!(c.len(), 4);
        for k in ["b", "c", "d", "e"] {
            assert!(c.get(k, NOW + 20).is_some(), "{k}");
        }
        // Full of live entries: one arbitrary victim, the new one is in.
        c.insert("f", vt(NOW + 1000, 1, "p"), NOW + 20);
        assert_eq!(c.len(), 4);
        assert!(c.get("f", NOW + 20).is_some());
        // Re-inserting an existing token replaces it without evicting anything.
        c.insert("f", vt(NOW + 500, 1, "p"), NOW + 21);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get("f", NOW + 21).unwrap().valid.exp, NOW + 500);
    }

    #[test]
    fn keyed_by_the_full_token() {
        let c = TokenCache::with_shards(10, 300, 1);
        let tail = "x".repeat(64);
        c.insert(&format!("A{tail}"), vt(NOW + 100, 1, "p"), NOW);
        assert!(c.get(&format!("B{tail}"), NOW).is_none());
        assert!(c.get(&tail, NOW).is_none());
        assert!(c.get(&format!("A{tail}"), NOW).is_some());
    }

    #[test]
    fn retain_keys_and_provider_keys() {
        let c = TokenCache::new(100, 300);
        c.insert("t1", vt(NOW + 100, 1, "a"), NOW);
        c.insert("t2", vt(NOW + 100, 2, "a"), NOW);
        c.insert("t3", vt(NOW + 100, 3, "b"), NOW);
        c.retain_provider_keys("a", &HashSet::from([2]));
        assert!(c.get("t1", NOW).is_none());
        assert!(c.get("t2", NOW).is_some());
        assert!(c.get("t3", NOW).is_some());
        c.retain_keys(&HashSet::from([3]));
        assert!(c.get("t2", NOW).is_none());
        assert!(c.get("t3", NOW).is_some());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn sweep_counts() {
        let c = TokenCache::new(100, 300);
        c.insert("t1", vt(NOW + 10, 1, "a"), NOW);
        c.insert("t2", vt(NOW + 100, 1, "a"), NOW);
        assert_eq!(c.sweep(NOW + 50), 1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn concurrent_use() {
        let c = Arc::new(TokenCache::new(64, 300));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let k = format!("tok-{}-{}", t, i % 100);
                        if c.get(&k, NOW).is_none() {
                            c.insert(&k, vt(NOW + 100, 1, "p"), NOW);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.len() <= 64);
    }
}
