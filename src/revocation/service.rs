//! The revocation list together with its durable store: a change is written (and fsync'd) before
//! it is applied in memory and before the admin API answers, so an acknowledged revocation can
//! never be lost in a crash, and the in-memory list the request path reads stays lock-free.
//!
//! During a graceful upgrade two processes answer admin requests and append to the same log, so
//! each also follows the log ([`Revocations::follow`]) to put in force what the other
//! acknowledged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{resolve_path, RevocationConf, RevocationStoreKind};
use crate::metrics;
use crate::redis_link::RedisLink;
use crate::revocation::file_log::{FileStore, OpenLogError};
use crate::revocation::list::RevocationList;
use crate::revocation::redis_store::{RedisRevocations, RedisWriteError};
use crate::revocation::store::{MemoryStore, Record, RevocationStore, StoreError};

/// Why the revocations could not be opened; the gateway refuses to start with it. The messages
/// name the configuration key to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("revocation.path: {0}")]
    OpenLog(#[from] OpenLogError),
    #[error("revocation.path: {0}")]
    Load(#[from] StoreError),
    #[error("revocation.store: redis needs a top-level redis: block (redis.url)")]
    RedisUnavailable,
}

/// Why a change was not made; it is not in force either. Callers log it and answer with a
/// generic error, since the cause names paths the client has no business seeing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("revocation store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("revocation store write failed: {0}")]
    Store(#[from] StoreError),
    #[error("revocation store write failed: {0}")]
    Redis(#[from] RedisWriteError),
}

impl WriteError {
    /// The shared store could not be reached: a 503 the client may retry, not a server fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, WriteError::Redis(RedisWriteError::Unavailable))
    }
}

/// What every change returns: `Ok` once it is durable and in force, an error if it is neither.
pub type Stored = Result<(), WriteError>;

/// The configured backend, not loaded yet. The one place that knows which backends exist.
fn open_store(conf: &RevocationConf, base: &Path) -> Result<Arc<dyn RevocationStore>, OpenError> {
    Ok(match conf.store {
        RevocationStoreKind::Memory => Arc::new(MemoryStore),
        RevocationStoreKind::File => Arc::new(FileStore::open(&resolve_path(base, &conf.path))?),
        // The list is loaded and followed from Redis by [`RedisRevocations`]; there is no log.
        RevocationStoreKind::Redis => Arc::new(MemoryStore),
    })
}

pub struct Revocations {
    list: Arc<RevocationList>,
    store: Arc<dyn RevocationStore>,
    /// Taken around "append, then apply" and around "read the log's new records, then apply",
    /// so every record this process applied before a read of the log is in that read: applying
    /// the read's records then never undoes a change already answered for.
    apply_order: Arc<Mutex<()>>,
    /// Whether the last read of the log failed, so a lasting failure is logged once.
    follow_failing: AtomicBool,
    /// `store: redis`: changes go through Redis, and its follower keeps the list current.
    redis: Option<Arc<RedisRevocations>>,
}

impl Revocations {
    /// Opens the configured store, compacts it and replays it into a fresh list.
    /// With `store: redis` the list starts empty and `link` is required; the follower
    /// ([`Revocations::redis`]) loads it.
    pub fn open(
        conf: &RevocationConf,
        base: &Path,
        now: i64,
        link: Option<&Arc<RedisLink>>,
    ) -> Result<Revocations, OpenError> {
        let redis_link = match (conf.store, link) {
            (RevocationStoreKind::Redis, None) => return Err(OpenError::RedisUnavailable),
            (RevocationStoreKind::Redis, Some(l)) => Some(Arc::clone(l)),
            _ => None,
        };
        let store = open_store(conf, base)?;
        let loaded = store.load_and_compact(now)?;
        for w in &loaded.warnings {
            log::warn!("revocation log: {w}");
        }
        let list = Arc::new(RevocationList::new());
        for rec in &loaded.records {
            apply(&list, rec);
        }
        let redis = redis_link.map(|l| Arc::new(RedisRevocations::new(l, Arc::clone(&list))));
        let r = Revocations {
            list,
            store,
            apply_order: Arc::new(Mutex::new(())),
            follow_failing: AtomicBool::new(false),
            redis,
        };
        r.publish_counts();
        let (jti, subject) = r.list.counts();
        log::info!(
            "revocations loaded from the {} store: {jti} jti, {subject} subject cut-offs",
            r.store.name(),
        );
        Ok(r)
    }

    pub fn list(&self) -> &Arc<RevocationList> {
        &self.list
    }

    /// The Redis side of `store: redis`, whose follower the Redis background service runs.
    pub fn redis(&self) -> Option<&Arc<RedisRevocations>> {
        self.redis.as_ref()
    }

    /// Why `/readyz` must answer 503 on account of the revocations, if it must.
    pub fn not_ready(&self) -> Option<&'static str> {
        match &self.redis {
            Some(r) if !r.is_ready() => Some(
                "revocation store: not loaded from redis, or catching up after a lost connection",
            ),
            _ => None,
        }
    }

    /// Revokes one verified token (RFC 7009 at the issuer). Its entry is kept until no copy of
    /// the token can pass validation any more: `exp` plus the `leeway` it was validated with.
    pub async fn revoke_token(&self, iss: &str, jti: &str, exp: i64, leeway: i64) -> Stored {
        self.revoke_jti(iss, jti, Some(exp.saturating_add(leeway)))
            .await
    }

    /// Revokes the token `(iss, jti)` for an admin, who may not hold the token, so the caller
    /// decides how long the entry must last (`expires_at`; `None`: until unrevoked).
    pub async fn revoke_jti(&self, iss: &str, jti: &str, expires_at: Option<i64>) -> Stored {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.record(Record::RevokeJti {
            iss,
            jti,
            expires_at,
        })
        .await
    }

    /// Revokes every token of `(iss, sub)` with `iat < before`, the ones not seen yet included,
    /// which is why it is kept by cut-off rather than by token (`expires_at`; `None`: until
    /// unrevoked).
    pub async fn revoke_subject(
        &self,
        iss: &str,
        sub: &str,
        before: i64,
        expires_at: Option<i64>,
    ) -> Stored {
        let (iss, sub) = (iss.to_owned(), sub.to_owned());
        self.record(Record::RevokeSubject {
            iss,
            sub,
            before,
            expires_at,
        })
        .await
    }

    /// Lifts a [`Revocations::revoke_jti`] (or `revoke_token`); harmless if there is none.
    pub async fn unrevoke_jti(&self, iss: &str, jti: &str) -> Stored {
        let (iss, jti) = (iss.to_owned(), jti.to_owned());
        self.record(Record::DeleteJti { iss, jti }).await
    }

    /// Lifts a [`Revocations::revoke_subject`]; harmless if there is none.
    pub async fn unrevoke_subject(&self, iss: &str, sub: &str) -> Stored {
        let (iss, sub) = (iss.to_owned(), sub.to_owned());
        self.record(Record::DeleteSubject { iss, sub }).await
    }

    /// Makes `record` durable, then applies it. Returns once both are done.
    async fn record(&self, record: Record) -> Stored {
        if let Some(redis) = &self.redis {
            redis.write(&record).await?;
            self.publish_counts();
            return Ok(());
        }
        let store = Arc::clone(&self.store);
        let list = Arc::clone(&self.list);
        let apply_order = Arc::clone(&self.apply_order);
        tokio::task::spawn_blocking(move || {
            let _in_order = apply_order.lock();
            store.append(&record)?;
            apply(&list, &record);
            Ok::<(), StoreError>(())
        })
        .await??;
        self.publish_counts();
        Ok(())
    }

    /// Applies what was appended to the store since the last call, by another process sharing
    /// it or by this one. Blocking (reads the log): call it off the request path.
    pub fn follow(&self) {
        let in_order = self.apply_order.lock();
        let new = match self.store.read_new() {
            Ok(new) => {
                if self.follow_failing.swap(false, Ordering::Relaxed) {
                    log::info!("revocation log: readable again");
                }
                new
            }
            Err(e) => {
                if !self.follow_failing.swap(true, Ordering::Relaxed) {
                    log::error!("{e}; changes made by another process are not applied here");
                }
                return;
            }
        };
        for w in &new.warnings {
            log::warn!("revocation log: {w}");
        }
        if new.records.is_empty() {
            return;
        }
        apply_in_one_step(&self.list, &new.records);
        drop(in_order);
        self.publish_counts();
    }

    /// Drops entries past their expiry (called periodically in the background).
    pub fn sweep(&self, now: i64) {
        if self.list.sweep(now) > 0 {
            self.publish_counts();
        }
    }

    pub fn publish_counts(&self) {
        publish_counts(&self.list);
    }
}

/// Exports the list's sizes as `portcullis_revocations{kind}`.
pub(super) fn publish_counts(list: &RevocationList) {
    let (jti, subject) = list.counts();
    metrics::REVOCATIONS
        .with_label_values(&["jti"])
        .set(jti as i64);
    metrics::REVOCATIONS
        .with_label_values(&["subject"])
        .set(subject as i64);
}

pub(super) fn apply(list: &RevocationList, rec: &Record) {
    match rec {
        Record::RevokeJti {
            iss,
            jti,
            expires_at,
        } => list.revoke_jti(iss, jti, *expires_at),
        Record::RevokeSubject {
            iss,
            sub,
            before,
            expires_at,
        } => list.revoke_subject(iss, sub, *before, *expires_at),
        Record::DeleteJti { iss, jti } => {
            list.remove_jti(iss, jti);
        }
        Record::DeleteSubject { iss, sub } => {
            list.remove_subject(iss, sub);
        }
    }
}

#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    Jti(&'a str, &'a str),
    Subject(&'a str, &'a str),
}

/// What a run of records does to one key.
#[derive(Default)]
struct Net {
    /// A deletion is in the run.
    deleted: bool,
    /// The revocations after the last deletion, merged: `(before, expires_at)`.
    revoked: Option<(i64, Option<i64>)>,
}

/// Applies `records` (in log order) with one list operation per key. Applied one by one, a key
/// revoked, deleted and revoked again would be unrevoked for an instant although its last
/// revocation may already have been answered with 201. Folded, a key revoked after its last
/// deletion is only ever merged into, never removed first; where that differs from a replay (the
/// list kept a wider cut-off or a later expiry from before the deletion, which needs another
/// process's deletion in the run) it errs on the revoked side, and the next start replays the
/// log exactly.
pub(super) fn apply_in_one_step(list: &RevocationList, records: &[Record]) {
    let mut net: HashMap<Key<'_>, Net> = HashMap::new();
    for rec in records {
        match rec {
            Record::RevokeJti {
                iss,
                jti,
                expires_at,
            } => revoke(net.entry(Key::Jti(iss, jti)).or_default(), 0, *expires_at),
            Record::RevokeSubject {
                iss,
                sub,
                before,
                expires_at,
            } => revoke(
                net.entry(Key::Subject(iss, sub)).or_default(),
                *before,
                *expires_at,
            ),
            Record::DeleteJti { iss, jti } => delete(net.entry(Key::Jti(iss, jti)).or_default()),
            Record::DeleteSubject { iss, sub } => {
                delete(net.entry(Key::Subject(iss, sub)).or_default())
            }
        }
    }
    for (key, net) in net {
        match (key, net.revoked) {
            (Key::Jti(iss, jti), Some((_, expires_at))) => list.revoke_jti(iss, jti, expires_at),
            (Key::Subject(iss, sub), Some((before, expires_at))) => {
                list.revoke_subject(iss, sub, before, expires_at)
            }
            (Key::Jti(iss, jti), None) if net.deleted => {
                list.remove_jti(iss, jti);
            }
            (Key::Subject(iss, sub), None) if net.deleted => {
                list.remove_subject(iss, sub);
            }
            _ => {}
        }
    }
}

/// Merges as [`RevocationList`] does: the larger cut-off, the later expiry (`None` wins).
fn revoke(net: &mut Net, before: i64, expires_at: Option<i64>) {
    net.revoked = Some(match net.revoked {
        None => (before, expires_at),
        Some((b, e)) => (b.max(before), e.zip(expires_at).map(|(a, b)| a.max(b))),
    });
}

fn delete(net: &mut Net) {
    net.deleted = true;
    net.revoked = None;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::revocation::test_support::TempDir;

    impl TempDir {
        fn conf(&self) -> RevocationConf {
            RevocationConf {
                store: RevocationStoreKind::File,
                path: self.0.join("revocations.jsonl"),
                redis: None,
            }
        }
    }

    fn jti(jti: &str) -> Record {
        Record::RevokeJti {
            iss: "I".into(),
            jti: jti.into(),
            expires_at: None,
        }
    }

    fn delete_jti(jti: &str) -> Record {
        Record::DeleteJti {
            iss: "I".into(),
            jti: jti.into(),
        }
    }

    fn subject(sub: &str, before: i64, expires_at: Option<i64>) -> Record {
        Record::RevokeSubject {
            iss: "I".into(),
            sub: sub.into(),
            before,
            expires_at,
        }
    }

    fn jti_revoked(r: &Revocations, id: &str) -> bool {
        r.list().is_revoked("I", Some(id), "nobody", Some(0))
    }

    /// The hand-over: the old process keeps acknowledging while the new one runs.
    #[tokio::test]
    async fn a_process_applies_what_another_appended() {
        let dir = TempDir::new();
        let base = Path::new("/");
        let old = Revocations::open(&dir.conf(), base, 0, None).unwrap();
        old.revoke_jti("I", "before-upgrade", None).await.unwrap();
        let new = Revocations::open(&dir.conf(), base, 0, None).unwrap();
        assert!(jti_revoked(&new, "before-upgrade"));

        old.revoke_jti("I", "during-upgrade", None).await.unwrap();
        old.unrevoke_jti("I", "before-upgrade").await.unwrap();
        new.follow();
        assert!(jti_revoked(&new, "during-upgrade"));
        assert!(!jti_revoked(&new, "before-upgrade"));
        assert_eq!(new.list().counts(), (1, 0));

        new.revoke_jti("I", "after-upgrade", None).await.unwrap();
        old.follow();
        assert!(jti_revoked(&old, "after-upgrade"));
        drop((old, new));
        let restarted = Revocations::open(&dir.conf(), base, 0, None).unwrap();
        assert_eq!(restarted.list().counts(), (2, 0));
        assert!(jti_revoked(&restarted, "during-upgrade"));
        assert!(jti_revoked(&restarted, "after-upgrade"));
    }

    #[tokio::test]
    async fn reading_back_its_own_records_changes_nothing() {
        let dir = TempDir::new();
        let r = Revocations::open(&dir.conf(), Path::new("/"), 0, None).unwrap();
        r.revoke_jti("I", "j", None).await.unwrap();
        r.unrevoke_jti("I", "j").await.unwrap();
        r.revoke_jti("I", "j", None).await.unwrap();
        r.revoke_jti("I", "gone", None).await.unwrap();
        r.unrevoke_jti("I", "gone").await.unwrap();
        r.revoke_subject("I", "s", 100, Some(10)).await.unwrap();
        r.follow();
        assert!(jti_revoked(&r, "j"));
        assert!(!jti_revoked(&r, "gone"));
        assert_eq!(r.list().counts(), (1, 1));
        assert_eq!(
            r.list().subject_entries(),
            vec![("I".into(), "s".into(), 100, Some(10))]
        );
        // Nothing new: nothing applied twice.
        r.follow();
        assert_eq!(r.list().counts(), (1, 1));
    }

    /// Each intent lands in the log as the record a replay turns back into the same entry.
    #[tokio::test]
    async fn each_intent_is_logged_as_its_record() {
        let dir = TempDir::new();
        let r = Revocations::open(&dir.conf(), Path::new("/"), 0, None).unwrap();
        r.revoke_token("I", "t", 100, 30).await.unwrap();
        r.revoke_subject("I", "s", 5, None).await.unwrap();
        r.revoke_subject("I", "lifted", 5, None).await.unwrap();
        r.unrevoke_subject("I", "lifted").await.unwrap();
        assert_eq!(
            r.list().jti_entries(),
            vec![("I".into(), "t".into(), Some(130))]
        );
        assert_eq!(
            r.list().subject_entries(),
            vec![("I".into(), "s".into(), 5, None)]
        );
        drop(r);
        let restarted = Revocations::open(&dir.conf(), Path::new("/"), 0, None).unwrap();
        assert_eq!(restarted.list().counts(), (1, 1));
    }

    #[test]
    fn a_run_is_applied_as_its_net_effect_per_key() {
        let list = RevocationList::new();
        list.revoke_jti("I", "deleted-then-revoked", Some(5));
        list.revoke_jti("I", "revoked-then-deleted", None);
        list.revoke_subject("I", "widened", 10, Some(100));
        apply_in_one_step(
            &list,
            &[
                delete_jti("deleted-then-revoked"),
                jti("revoked-then-deleted"),
                Record::RevokeJti {
                    iss: "I".into(),
                    jti: "deleted-then-revoked".into(),
                    expires_at: Some(7),
                },
                delete_jti("revoked-then-deleted"),
                subject("widened", 20, Some(50)),
                subject("widened", 5, Some(200)),
                delete_jti("never-revoked"),
            ],
        );
        assert_eq!(
            list.jti_entries(),
            vec![("I".into(), "deleted-then-revoked".into(), Some(7))]
        );
        assert_eq!(
            list.subject_entries(),
            vec![("I".into(), "widened".into(), 20, Some(200))]
        );
    }

    /// Operators read these at start and in the log: the typed errors keep the old texts.
    #[tokio::test]
    async fn errors_read_as_before() {
        let dir = TempDir::new();
        let on_a_directory = RevocationConf {
            path: dir.0.clone(),
            ..dir.conf()
        };
        let err = Revocations::open(&on_a_directory, Path::new("/"), 0, None)
            .err()
            .unwrap();
        let expected = format!(
            "revocation.path: revocation log {}: cannot open: ",
            dir.0.display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");

        let redis = RevocationConf {
            store: RevocationStoreKind::Redis,
            ..dir.conf()
        };
        let err = Revocations::open(&redis, Path::new("/"), 0, None)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "revocation.store: redis needs a top-level redis: block (redis.url)"
        );

        let r = Revocations::open(&dir.conf(), Path::new("/"), 0, None).unwrap();
        std::fs::remove_dir_all(&dir.0).unwrap();
        let err = r.revoke_jti("I", "lost", None).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("revocation store write failed: cannot reopen "),
            "{err}"
        );
        assert!(!jti_revoked(&r, "lost"), "applied although not stored");
    }

    #[test]
    fn the_memory_store_has_nothing_to_follow() {
        let conf = RevocationConf {
            store: RevocationStoreKind::Memory,
            ..RevocationConf::default()
        };
        let r = Revocations::open(&conf, Path::new("/nonexistent"), 0, None).unwrap();
        r.follow();
        assert_eq!(r.list().counts(), (0, 0));
    }
}
