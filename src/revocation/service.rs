//! The revocation list together with its durable store: a change is written (and fsync'd) before
//! it is applied in memory and before the admin API answers, so an acknowledged revocation can
//! never be lost in a crash, and the in-memory list the request path reads stays lock-free.

use std::path::Path;
use std::sync::Arc;

use crate::config::{resolve_path, RevocationConf, RevocationStoreKind};
use crate::metrics;
use crate::revocation::store::{FileStore, MemoryStore, Record, RevocationStore};
use crate::revocation::RevocationList;

pub struct Revocations {
    list: Arc<RevocationList>,
    store: Arc<dyn RevocationStore>,
}

impl Revocations {
    /// Opens the configured store, replays it into a fresh list and compacts it.
    pub fn open(conf: &RevocationConf, base: &Path, now: i64) -> Result<Revocations, String> {
        let store: Arc<dyn RevocationStore> =
            match conf.store {
                RevocationStoreKind::Memory => Arc::new(MemoryStore),
                RevocationStoreKind::File => {
                    let path = resolve_path(base, &conf.path);
                    Arc::new(FileStore::open(&path).map_err(|e| format!("revocation.path: {e}"))?)
                }
                RevocationStoreKind::Redis => return Err(
                    "revocation.store: redis is not available in this build; use file or memory"
                        .into(),
                ),
            };
        let loaded = store
            .load_and_compact(now)
            .map_err(|e| format!("revocation.path: {e}"))?;
        for w in &loaded.warnings {
            log::warn!("revocation log: {w}");
        }
        let list = Arc::new(RevocationList::new());
        for rec in &loaded.records {
            apply(&list, rec);
        }
        let r = Revocations { list, store };
        r.publish_counts();
        log::info!(
            "revocations loaded from the {} store: {} jti, {} subject cut-offs",
            r.store.name(),
            r.list.counts().0,
            r.list.counts().1
        );
        Ok(r)
    }

    pub fn list(&self) -> &Arc<RevocationList> {
        &self.list
    }

    /// Makes `record` durable, then applies it. Returns once both are done.
    pub async fn record(&self, record: Record) -> Result<(), String> {
        let store = Arc::clone(&self.store);
        let rec = record.clone();
        tokio::task::spawn_blocking(move || store.append(&rec))
            .await
            .map_err(|e| format!("revocation store task failed: {e}"))?
            .map_err(|e| format!("revocation store write failed: {e}"))?;
        apply(&self.list, &record);
        self.publish_counts();
        Ok(())
    }

    /// Drops entries past their expiry (called periodically in the background).
    pub fn sweep(&self, now: i64) {
        if self.list.sweep(now) > 0 {
            self.publish_counts();
        }
    }

    pub fn publish_counts(&self) {
        let (jti, subject) = self.list.counts();
        metrics::REVOCATIONS
            .with_label_values(&["jti"])
            .set(jti as i64);
        metrics::REVOCATIONS
            .with_label_values(&["subject"])
            .set(subject as i64);
    }
}

fn apply(list: &RevocationList, rec: &Record) {
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
