//! The in-memory revocation index.
//!
//! Sized for millions of entries read on every request: entries live in 64 shards of
//! `RwLock`ed hash tables, so concurrent reads on different threads rarely share a lock, and
//! a list with no entries answers without touching any lock.
//!
//! A lookup hashes the issuer and the key once, with foldhash seeded from the OS RNG, and uses
//! that hash both to pick the shard and to probe its table: no issuer table is consulted on the
//! way. Each slot is one cache line holding the key inline when short (UUID `jti`s) and the
//! issuer as a shared, interned string, so with a million entries (buckets out of cache) a
//! miss costs the table's control bytes and a hit one more line, not a chase through heap
//! strings. Keys and issuers are always compared in full.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foldhash::fast::FoldHasher;
use foldhash::SharedSeed;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};

const SHARDS: usize = 64;
/// `expires_at` of an entry kept until deleted (stored inline instead of an `Option`).
const NEVER: i64 = i64::MAX;

/// A key of up to `N` bytes held inline, a longer one on the heap.
enum Key<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<str>),
}

impl<const N: usize> Key<N> {
    fn new(key: &str) -> Key<N> {
        let src = key.as_bytes();
        match (u8::try_from(src.len()), src.len() <= N) {
            (Ok(len), true) => {
                let mut bytes = [0; N];
                bytes[..src.len()].copy_from_slice(src);
                Key::Inline { len, bytes }
            }
            _ => Key::Heap(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            Key::Heap(s) => s.as_bytes(),
        }
    }

    fn string(&self) -> String {
        // Always valid UTF-8: it was copied from a `&str`.
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

/// One table slot, aligned to a cache line.
#[repr(align(64))]
struct Slot<V, const N: usize> {
    value: V,
    /// Interned: one allocation per issuer, however many entries name it.
    iss: Arc<str>,
    key: Key<N>,
}

impl<V, const N: usize> Slot<V, N> {
    fn is(&self, iss: &str, key: &[u8]) -> bool {
        self.key.as_bytes() == key && *self.iss == *iss
    }
}

/// A shard on its own cache line, so readers on different threads do not contend on
/// neighbouring lock words.
#[repr(align(64))]
struct Shard<V, const N: usize>(RwLock<HashTable<Slot<V, N>>>);

/// jti -> expires_at, in one cache line: 38 inline bytes fit a UUID.
type JtiSlot = Slot<i64, JTI_INLINE>;
const JTI_INLINE: usize = 38;
/// sub -> cut-off, in two lines: subjects are fewer, and often longer than a UUID.
type SubjectSlot = Slot<SubjectCut, SUB_INLINE>;
const SUB_INLINE: usize = 94;
const _: () = assert!(std::mem::size_of::<JtiSlot>() == 64);
const _: () = assert!(std::mem::size_of::<SubjectSlot>() == 128);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SubjectCut {
    before: i64,
    expires_at: i64,
}

pub struct RevocationList {
    /// Every issuer ever listed, so slots share one copy. Only writers use it.
    issuers: Mutex<HashSet<Arc<str>>>,
    jti: Box<[Shard<i64, JTI_INLINE>]>,
    subjects: Box<[Shard<SubjectCut, SUB_INLINE>]>,
    jti_count: AtomicUsize,
    subject_count: AtomicUsize,
    /// Secret hash seeds: which keys share a shard or a probe sequence is not predictable.
    seed: SharedSeed,
    per_list_seed: u64,
}

impl Default for RevocationList {
    fn default() -> Self {
        RevocationList::new()
    }
}

fn to_expiry(expires_at: Option<i64>) -> i64 {
    expires_at.unwrap_or(NEVER)
}

fn from_expiry(expires_at: i64) -> Option<i64> {
    (expires_at != NEVER).then_some(expires_at)
}

impl RevocationList {
    pub fn new() -> RevocationList {
        // std's RandomState is keyed from the OS RNG; foldhash's own default seed is not.
        let random = RandomState::new();
        RevocationList {
            issuers: Mutex::new(HashSet::new()),
            jti: new_shards(),
            subjects: new_shards(),
            jti_count: AtomicUsize::new(0),
            subject_count: AtomicUsize::new(0),
            seed: SharedSeed::from_u64(random.hash_one(0u64)),
            per_list_seed: random.hash_one(1u64),
        }
    }

    fn intern(&self, iss: &str) -> Arc<str> {
        let mut issuers = self.issuers.lock();
        match issuers.get(iss) {
            Some(name) => Arc::clone(name),
            None => {
                let name: Arc<str> = Arc::from(iss);
                issuers.insert(Arc::clone(&name));
                name
            }
        }
    }

    /// The issuer's hash, which seeds its keys' hashes: `is_revoked` hashes the issuer once
    /// for both tables.
    fn issuer_hash(&self, iss: &str) -> u64 {
        let mut h = FoldHasher::with_seed(self.per_list_seed, &self.seed);
        h.write(iss.as_bytes());
        h.finish()
    }

    fn key_hash(&self, issuer_hash: u64, key: &[u8]) -> u64 {
        let mut h = FoldHasher::with_seed(issuer_hash, &self.seed);
        h.write(key);
        // As `str`'s Hash does: the final fold mixes every input bit into the top tag bits too.
        h.write_u8(0xff);
        h.finish()
    }

    fn slot_hash<V, const N: usize>(&self, slot: &Slot<V, N>) -> u64 {
        self.key_hash(self.issuer_hash(&slot.iss), slot.key.as_bytes())
    }

    /// The shard comes from bits 32..38 of the hash, which the table uses neither for its
    /// bucket index (low bits) nor for its control tags (top 7 bits).
    fn shard<V, const N: usize>(shards: &[Shard<V, N>], hash: u64) -> &Shard<V, N> {
        &shards[(hash >> 32) as usize % SHARDS]
    }

    fn find<V: Copy, const N: usize>(
        &self,
        shards: &[Shard<V, N>],
        issuer_hash: u64,
        iss: &str,
        key: &str,
    ) -> Option<V> {
        let key = key.as_bytes();
        let hash = self.key_hash(issuer_hash, key);
        Self::shard(shards, hash)
            .0
            .read()
            .find(hash, |s| s.is(iss, key))
            .map(|s| s.value)
    }

    /// List `(iss, key)` with `value`, or `merge` the new value into the listed one.
    /// Returns whether an entry was added.
    fn upsert<V, const N: usize>(
        &self,
        shards: &[Shard<V, N>],
        iss: &str,
        key: &str,
        value: V,
        merge: impl FnOnce(&mut V, V),
    ) -> bool {
        let bytes = key.as_bytes();
        let hash = self.key_hash(self.issuer_hash(iss), bytes);
        let mut table = Self::shard(shards, hash).0.write();
        match table.entry(hash, |s| s.is(iss, bytes), |s| self.slot_hash(s)) {
            Entry::Occupied(mut listed) => {
                merge(&mut listed.get_mut().value, value);
                false
            }
            Entry::Vacant(free) => {
                free.insert(Slot {
                    value,
                    iss: self.intern(iss),
                    key: Key::new(key),
                });
                true
            }
        }
    }

    fn remove<V, const N: usize>(&self, shards: &[Shard<V, N>], iss: &str, key: &str) -> bool {
        let key = key.as_bytes();
        let hash = self.key_hash(self.issuer_hash(iss), key);
        let mut table = Self::shard(shards, hash).0.write();
        match table.find_entry(hash, |s| s.is(iss, key)) {
            Ok(listed) => {
                listed.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Remove the slots `expired` says are, shrinking tables left mostly empty, so memory
    /// follows the live entries back down after a mass expiry.
    fn sweep_shards<V, const N: usize>(
        &self,
        shards: &[Shard<V, N>],
        expired: impl Fn(&V) -> bool,
    ) -> usize {
        let mut removed = 0;
        for shard in shards {
            let mut table = shard.0.write();
            let before = table.len();
            table.retain(|s| !expired(&s.value));
            removed += before - table.len();
            let len = table.len();
            if len < table.capacity() / 4 {
                table.shrink_to(len, |s| self.slot_hash(s));
            }
        }
        removed
    }

    /// Revoked if `(iss, jti)` is listed, or `(iss, sub)` has a cut-off `before` with the
    /// token's `iat < before` (a token without `iat` counts as covered: it cannot prove it was
    /// issued after the cut-off). Entries past their `expires_at` but not yet swept still count.
    pub fn is_revoked(&self, iss: &str, jti: Option<&str>, sub: &str, iat: Option<i64>) -> bool {
        let jti_n = self.jti_count.load(Ordering::Acquire);
        let sub_n = self.subject_count.load(Ordering::Acquire);
        if jti_n == 0 && sub_n == 0 {
            return false;
        }
        let issuer_hash = self.issuer_hash(iss);
        if let (Some(jti), true) = (jti, jti_n > 0) {
            if self.find(&self.jti, issuer_hash, iss, jti).is_some() {
                return true;
            }
        }
        if sub_n > 0 {
            if let Some(cut) = self.find(&self.subjects, issuer_hash, iss, sub) {
                return iat.is_none_or(|iat| iat < cut.before);
            }
        }
        false
    }

    /// List `(iss, jti)`, until `expires_at` (None: until deleted). Listing it again keeps the
    /// later expiry (None wins).
    pub fn revoke_jti(&self, iss: &str, jti: &str, expires_at: Option<i64>) {
        let expires_at = to_expiry(expires_at);
        if self.upsert(&self.jti, iss, jti, expires_at, |old, new| {
            *old = (*old).max(new)
        }) {
            self.jti_count.fetch_add(1, Ordering::Release);
        }
    }

    /// Revoke every token of `(iss, sub)` issued before `before`. A later call keeps the larger
    /// `before` and the later expiry (None wins), so a revocation can only be widened here.
    pub fn revoke_subject(&self, iss: &str, sub: &str, before: i64, expires_at: Option<i64>) {
        let cut = SubjectCut {
            before,
            expires_at: to_expiry(expires_at),
        };
        if self.upsert(&self.subjects, iss, sub, cut, |old, new| {
            old.before = old.before.max(new.before);
            old.expires_at = old.expires_at.max(new.expires_at);
        }) {
            self.subject_count.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether an entry was removed.
    pub fn remove_jti(&self, iss: &str, jti: &str) -> bool {
        let removed = self.remove(&self.jti, iss, jti);
        if removed {
            self.jti_count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Whether an entry was removed.
    pub fn remove_subject(&self, iss: &str, sub: &str) -> bool {
        let removed = self.remove(&self.subjects, iss, sub);
        if removed {
            self.subject_count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Remove entries whose `expires_at < now`; returns how many were removed.
    pub fn sweep(&self, now: i64) -> usize {
        let jti = self.sweep_shards(&self.jti, |exp| *exp < now);
        let subjects = self.sweep_shards(&self.subjects, |cut| cut.expires_at < now);
        self.jti_count.fetch_sub(jti, Ordering::Release);
        self.subject_count.fetch_sub(subjects, Ordering::Release);
        jti + subjects
    }

    /// (jti entries, subject entries).
    pub fn counts(&self) -> (usize, usize) {
        (
            self.jti_count.load(Ordering::Acquire),
            self.subject_count.load(Ordering::Acquire),
        )
    }

    /// Every `(iss, jti, expires_at)`, sorted by issuer then jti.
    pub fn jti_entries(&self) -> Vec<(String, String, Option<i64>)> {
        let mut out = Vec::new();
        for shard in self.jti.iter() {
            out.extend(
                shard
                    .0
                    .read()
                    .iter()
                    .map(|s| (s.iss.to_string(), s.key.string(), from_expiry(s.value))),
            );
        }
        out.sort_unstable();
        out
    }

    /// Every `(iss, sub, before, expires_at)`, sorted by issuer then subject.
    pub fn subject_entries(&self) -> Vec<(String, String, i64, Option<i64>)> {
        let mut out = Vec::new();
        for shard in self.subjects.iter() {
            out.extend(shard.0.read().iter().map(|s| {
                (
                    s.iss.to_string(),
                    s.key.string(),
                    s.value.before,
                    from_expiry(s.value.expires_at),
                )
            }));
        }
        out.sort_unstable();
        out
    }
}

fn new_shards<V, const N: usize>() -> Box<[Shard<V, N>]> {
    (0..SHARDS)
        .map(|_| Shard(RwLock::new(HashTable::new())))
        .collect()
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (jti, subject) = self.counts();
        f.debug_struct("RevocationList")
            .field("jti", &jti)
            .field("subject", &subject)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const A: &str = "https://a.example";
    const B: &str = "https://b.example";

    #[test]
    fn empty_list_revokes_nothing() {
        let l = RevocationList::new();
        assert!(!l.is_revoked(A, Some("j"), "s", None));
        assert_eq!(l.counts(), (0, 0));
        assert!(!l.remove_jti(A, "j"));
        assert!(!l.remove_subject(A, "s"));
    }

    #[test]
    fn jti_revocation_is_per_issuer() {
        let l = RevocationList::new();
        l.revoke_jti(A, "j1", None);
        assert!(l.is_revoked(A, Some("j1"), "anyone", Some(5)));
        // R2: a reissued token with the same jti is revoked whatever else differs.
        assert!(l.is_revoked(A, Some("j1"), "other", None));
        assert!(!l.is_revoked(B, Some("j1"), "anyone", Some(5)));
        assert!(!l.is_revoked(A, Some("j2"), "anyone", Some(5)));
        assert!(!l.is_revoked(A, None, "anyone", Some(5)));
        assert!(!l.is_revoked(A, Some("J1"), "anyone", Some(5)));
        assert_eq!(l.counts(), (1, 0));
        l.revoke_jti(A, "j1", Some(10));
        assert_eq!(l.counts(), (1, 0));
        assert!(l.remove_jti(A, "j1"));
        assert!(!l.remove_jti(A, "j1"));
        assert!(!l.is_revoked(A, Some("j1"), "anyone", Some(5)));
        assert_eq!(l.counts(), (0, 0));
    }

    #[test]
    fn subject_cut_off() {
        let l = RevocationList::new();
        l.revoke_subject(A, "alice", 1000, None);
        assert!(l.is_revoked(A, None, "alice", Some(999)));
        assert!(!l.is_revoked(A, None, "alice", Some(1000)));
        assert!(!l.is_revoked(A, None, "alice", Some(2000)));
        // No iat: cannot show it is newer than the cut-off.
        assert!(l.is_revoked(A, None, "alice", None));
        assert!(l.is_revoked(A, Some("unrelated-jti"), "alice", Some(1)));
        assert!(!l.is_revoked(A, None, "bob", Some(1)));
        assert!(!l.is_revoked(B, None, "alice", Some(1)));
        // The larger cut-off is kept, whatever the order.
        l.revoke_subject(A, "alice", 500, None);
        assert!(l.is_revoked(A, None, "alice", Some(999)));
        l.revoke_subject(A, "alice", 3000, Some(50));
        assert!(l.is_revoked(A, None, "alice", Some(2999)));
        assert_eq!(
            l.subject_entries(),
            vec![(A.to_owned(), "alice".to_owned(), 3000, None)]
        );
        assert_eq!(l.counts(), (0, 1));
        assert!(l.remove_subject(A, "alice"));
        assert!(!l.is_revoked(A, None, "alice", None));
        assert_eq!(l.counts(), (0, 0));
    }

    #[test]
    fn expiry_merge_and_sweep() {
        let l = RevocationList::new();
        l.revoke_jti(A, "short", Some(100));
        l.revoke_jti(A, "extended", Some(100));
        l.revoke_jti(A, "extended", Some(300));
        l.revoke_jti(A, "not-shortened", Some(300));
        l.revoke_jti(A, "not-shortened", Some(100));
        l.revoke_jti(A, "forever", Some(100));
        l.revoke_jti(A, "forever", None);
        l.revoke_subject(B, "s1", 10, Some(100));
        l.revoke_subject(B, "s2", 10, None);
        assert_eq!(l.counts(), (4, 2));
        assert_eq!(l.sweep(100), 0, "expires_at is inclusive");
        assert_eq!(l.sweep(101), 2);
        assert_eq!(l.counts(), (3, 1));
        assert!(!l.is_revoked(A, Some("short"), "x", None));
        assert!(l.is_revoked(A, Some("extended"), "x", None));
        assert!(!l.is_revoked(B, None, "s1", None));
        assert!(l.is_revoked(B, None, "s2", None));
        assert_eq!(l.sweep(1000), 2);
        assert_eq!(
            l.jti_entries(),
            vec![(A.to_owned(), "forever".to_owned(), None)]
        );
        assert_eq!(
            l.subject_entries(),
            vec![(B.to_owned(), "s2".to_owned(), 10, None)]
        );
    }

    #[test]
    fn listings_are_sorted_and_complete() {
        let l = RevocationList::new();
        for i in (0..50).rev() {
            l.revoke_jti(if i % 2 == 0 { A } else { B }, &format!("j{i:02}"), Some(i));
        }
        let e = l.jti_entries();
        assert_eq!(e.len(), 50);
        assert!(e.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(e[0], (A.to_owned(), "j00".to_owned(), Some(0)));
    }

    #[test]
    fn many_entries() {
        let l = RevocationList::new();
        for i in 0..200_000u32 {
            l.revoke_jti(A, &format!("jti-{i}"), Some(i64::from(i)));
        }
        assert_eq!(l.counts(), (200_000, 0));
        assert!(l.is_revoked(A, Some("jti-123456"), "s", None));
        assert!(!l.is_revoked(A, Some("jti-200000"), "s", None));
        assert_eq!(l.sweep(100_000), 100_000);
        assert_eq!(l.counts(), (100_000, 0));
    }

    #[test]
    fn inline_and_heap_keys_compare_in_full() {
        let l = RevocationList::new();
        let keys = [
            String::new(),
            "x".repeat(37),
            "x".repeat(38),
            "x".repeat(39),
            "x".repeat(94),
            "x".repeat(95),
            "x".repeat(255),
            "x".repeat(256),
            "\u{e9}t\u{e9}".to_owned(),
        ];
        for k in &keys {
            l.revoke_jti(A, k, Some(1));
            l.revoke_subject(A, k, 10, Some(1));
        }
        assert_eq!(l.counts(), (keys.len(), keys.len()));
        for k in &keys {
            assert!(l.is_revoked(A, Some(k), "-", None), "{}", k.len());
            assert!(l.is_revoked(A, None, k, Some(9)), "{}", k.len());
            assert!(!l.is_revoked(B, Some(k), k, Some(9)));
            let longer = format!("{k}x");
            if !keys.contains(&longer) {
                assert!(!l.is_revoked(A, Some(&longer), &longer, Some(9)));
            }
        }
        let mut listed: Vec<String> = l.jti_entries().into_iter().map(|e| e.1).collect();
        let mut expected = keys.to_vec();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(l.subject_entries().len(), keys.len());
        for k in &keys {
            assert!(l.remove_jti(A, k));
            assert!(l.remove_subject(A, k));
        }
        assert_eq!(l.counts(), (0, 0));
    }

    #[test]
    fn sweep_gives_memory_back() {
        let l = RevocationList::new();
        for i in 0..50_000 {
            l.revoke_jti(A, &format!("j{i}"), Some(if i < 49_000 { 1 } else { 100 }));
        }
        let capacity =
            |l: &RevocationList| -> usize { l.jti.iter().map(|s| s.0.read().capacity()).sum() };
        let full = capacity(&l);
        assert_eq!(l.sweep(2), 49_000);
        assert!(capacity(&l) * 8 < full, "{} of {full}", capacity(&l));
        assert!(l.is_revoked(A, Some("j49999"), "s", None));
        assert!(!l.is_revoked(A, Some("j0"), "s", None));
    }

    /// Memory for a million UUID jtis: `cargo test --release --lib -- --ignored --nocapture
    /// million_jtis_rss`.
    #[test]
    #[ignore = "allocates ~150 MB; run by hand"]
    fn million_jtis_rss() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        let before = rss_kib();
        let l = RevocationList::new();
        for i in 0..1_000_000usize {
            l.revoke_jti(A, &format!("{i:08x}-0000-4000-8000-{i:012x}"), Some(1));
        }
        let after = rss_kib();
        println!(
            "1M UUID jtis: {} MiB RSS in all, {} MiB for the list",
            after / 1024,
            (after - before) / 1024
        );
        assert!(after < 200 * 1024);
    }

    #[test]
    fn concurrent_readers_see_writes() {
        let l = Arc::new(RevocationList::new());
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let iss = format!("https://iss{}.example", i % 7);
                        l.revoke_jti(&iss, &format!("{t}-{i}"), None);
                        assert!(l.is_revoked(&iss, Some(&format!("{t}-{i}")), "s", None));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(l.counts(), (10_000, 0));
        assert_eq!(l.jti_entries().len(), 10_000);
    }
}
