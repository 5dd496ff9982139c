//! The in-memory revocation index.
//!
//! Sized for millions of entries read on every request: issuers are interned to `u32` ids
//! (one copy of each issuer URL instead of one per entry), the issuer table is an `ArcSwap`
//! snapshot (lock-free reads, rare copy-on-write), and entries live in 64 shards of
//! `RwLock<HashMap>` so concurrent reads on different threads rarely share a lock. A list
//! with no entries answers without touching any lock.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

const SHARDS: usize = 64;
/// `expires_at` of an entry kept until deleted (stored inline instead of an `Option`).
const NEVER: i64 = i64::MAX;

type IssuerId = u32;
/// Per shard: issuer id -> key (jti or sub) -> value.
type Shard<V> = RwLock<HashMap<IssuerId, HashMap<Box<str>, V>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SubjectCut {
    before: i64,
    expires_at: i64,
}

pub struct RevocationList {
    issuer_ids: ArcSwap<HashMap<Arc<str>, IssuerId>>,
    /// id -> issuer; only appended to, under `intern_lock`.
    issuer_names: RwLock<Vec<Arc<str>>>,
    intern_lock: Mutex<()>,
    jti: Box<[Shard<i64>]>,
    subjects: Box<[Shard<SubjectCut>]>,
    jti_count: AtomicUsize,
    subject_count: AtomicUsize,
    hasher: RandomState,
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
        RevocationList {
            issuer_ids: ArcSwap::from_pointee(HashMap::new()),
            issuer_names: RwLock::new(Vec::new()),
            intern_lock: Mutex::new(()),
            jti: new_shards(),
            subjects: new_shards(),
            jti_count: AtomicUsize::new(0),
            subject_count: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }

    fn issuer_id(&self, iss: &str) -> Option<IssuerId> {
        self.issuer_ids.load().get(iss).copied()
    }

    fn intern(&self, iss: &str) -> IssuerId {
        if let Some(id) = self.issuer_id(iss) {
            return id;
        }
        let _guard = self.intern_lock.lock();
        if let Some(id) = self.issuer_id(iss) {
            return id;
        }
        let mut names = self.issuer_names.write();
        // More than 4 billion distinct issuers cannot happen through a config or the admin API;
        // saturate rather than wrap if it ever did.
        let id = IssuerId::try_from(names.len()).unwrap_or(IssuerId::MAX);
        let name: Arc<str> = Arc::from(iss);
        names.push(Arc::clone(&name));
        let mut ids = HashMap::clone(&self.issuer_ids.load());
        ids.insert(name, id);
        self.issuer_ids.store(Arc::new(ids));
        id
    }

    fn shard<'s, V>(&self, shards: &'s [Shard<V>], id: IssuerId, key: &str) -> &'s Shard<V> {
        let h = self.hasher.hash_one((id, key)) as usize;
        &shards[h % shards.len()]
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
        let Some(id) = self.issuer_id(iss) else {
            return false;
        };
        if let (Some(jti), true) = (jti, jti_n > 0) {
            let listed = self
                .shard(&self.jti, id, jti)
                .read()
                .get(&id)
                .is_some_and(|m| m.contains_key(jti));
            if listed {
                return true;
            }
        }
        if sub_n > 0 {
            let cut = self
                .shard(&self.subjects, id, sub)
                .read()
                .get(&id)
                .and_then(|m| m.get(sub).copied());
            if let Some(cut) = cut {
                return iat.is_none_or(|iat| iat < cut.before);
            }
        }
        false
    }

    /// List `(iss, jti)`, until `expires_at` (None: until deleted). Listing it again keeps the
    /// later expiry (None wins).
    pub fn revoke_jti(&self, iss: &str, jti: &str, expires_at: Option<i64>) {
        let id = self.intern(iss);
        let expires_at = to_expiry(expires_at);
        let mut shard = self.shard(&self.jti, id, jti).write();
        let entries = shard.entry(id).or_default();
        match entries.get_mut(jti) {
            Some(old) => *old = (*old).max(expires_at),
            None => {
                entries.insert(jti.into(), expires_at);
                self.jti_count.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Revoke every token of `(iss, sub)` issued before `before`. A later call keeps the larger
    /// `before` and the later expiry (None wins), so a revocation can only be widened here.
    pub fn revoke_subject(&self, iss: &str, sub: &str, before: i64, expires_at: Option<i64>) {
        let id = self.intern(iss);
        let expires_at = to_expiry(expires_at);
        let mut shard = self.shard(&self.subjects, id, sub).write();
        let entries = shard.entry(id).or_default();
        match entries.get_mut(sub) {
            Some(old) => {
                old.before = old.before.max(before);
                old.expires_at = old.expires_at.max(expires_at);
            }
            None => {
                entries.insert(sub.into(), SubjectCut { before, expires_at });
                self.subject_count.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Whether an entry was removed.
    pub fn remove_jti(&self, iss: &str, jti: &str) -> bool {
        let Some(id) = self.issuer_id(iss) else {
            return false;
        };
        let removed = remove_from(self.shard(&self.jti, id, jti), id, jti);
        if removed {
            self.jti_count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Whether an entry was removed.
    pub fn remove_subject(&self, iss: &str, sub: &str) -> bool {
        let Some(id) = self.issuer_id(iss) else {
            return false;
        };
        let removed = remove_from(self.shard(&self.subjects, id, sub), id, sub);
        if removed {
            self.subject_count.fetch_sub(1, Ordering::Release);
        }
        removed
    }

    /// Remove entries whose `expires_at < now`; returns how many were removed.
    pub fn sweep(&self, now: i64) -> usize {
        let jti = sweep_shards(&self.jti, |exp| *exp < now);
        let subjects = sweep_shards(&self.subjects, |cut| cut.expires_at < now);
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
        let names = self.issuer_names.read();
        let mut out = Vec::new();
        for shard in self.jti.iter() {
            for (id, entries) in shard.read().iter() {
                let iss = issuer_name(&names, *id);
                out.extend(
                    entries
                        .iter()
                        .map(|(jti, exp)| (iss.to_owned(), jti.to_string(), from_expiry(*exp))),
                );
            }
        }
        out.sort_unstable();
        out
    }

    /// Every `(iss, sub, before, expires_at)`, sorted by issuer then subject.
    pub fn subject_entries(&self) -> Vec<(String, String, i64, Option<i64>)> {
        let names = self.issuer_names.read();
        let mut out = Vec::new();
        for shard in self.subjects.iter() {
            for (id, entries) in shard.read().iter() {
                let iss = issuer_name(&names, *id);
                out.extend(entries.iter().map(|(sub, cut)| {
                    (
                        iss.to_owned(),
                        sub.to_string(),
                        cut.before,
                        from_expiry(cut.expires_at),
                    )
                }));
            }
        }
        out.sort_unstable();
        out
    }
}

fn new_shards<V>() -> Box<[Shard<V>]> {
    (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect()
}

fn issuer_name(names: &[Arc<str>], id: IssuerId) -> &str {
    names.get(id as usize).map_or("", |n| n)
}

fn remove_from<V>(shard: &Shard<V>, id: IssuerId, key: &str) -> bool {
    let mut shard = shard.write();
    let Some(entries) = shard.get_mut(&id) else {
        return false;
    };
    let removed = entries.remove(key).is_some();
    if entries.is_empty() {
        shard.remove(&id);
    }
    removed
}

fn sweep_shards<V>(shards: &[Shard<V>], expired: impl Fn(&V) -> bool) -> usize {
    let mut removed = 0;
    for shard in shards {
        let mut shard = shard.write();
        shard.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|_, v| !expired(v));
            removed += before - entries.len();
            !entries.is_empty()
        });
    }
    removed
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
