//! Durable storage behind the revocation list (conf/README.md §2 `revocation`, §4).
//!
//! The in-memory list answers every request; a store only has to make an admin change survive a
//! restart. So the store is a write-ahead log and little more: [`RevocationStore::append`] makes
//! one change durable before the admin API answers 201, [`RevocationStore::load_and_compact`]
//! runs at start to rebuild the live state and shrink the storage to it, and
//! [`RevocationStore::read_new`] hands over what was appended since, by this process or another.
//!
//! A backend is one implementation of [`RevocationStore`]: [`MemoryStore`] here, the JSON-lines
//! file in [`super::file_log`]. The service holds it as a trait object, so another backend only
//! has to implement the trait and be chosen in `service::open_store`.

use std::io;

use serde::{Deserialize, Serialize};

/// One change to the revocation list, as stored (one JSON object per line, tagged by `op`).
///
/// Times are seconds since the epoch. `expires_at: None` means "kept until deleted".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// The token `(iss, jti)` is revoked; the entry is useless after the token's `exp` + leeway.
    RevokeJti {
        iss: String,
        jti: String,
        expires_at: Option<i64>,
    },
    /// Every token of `(iss, sub)` with `iat < before` is revoked.
    RevokeSubject {
        iss: String,
        sub: String,
        before: i64,
        expires_at: Option<i64>,
    },
    /// Undoes a [`Record::RevokeJti`].
    DeleteJti { iss: String, jti: String },
    /// Undoes a [`Record::RevokeSubject`].
    DeleteSubject { iss: String, sub: String },
}

/// The live state found at start, and what was wrong with the storage.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Only `RevokeJti` / `RevokeSubject`, after deletions, merges and expiry at `now`, in the order
    /// their entries first appeared.
    pub records: Vec<Record>,
    /// Human-readable, one per problem, e.g. `"line 17: invalid record (...), skipped"`. Never
    /// contains the content of a bad line (it could be anything, even a token).
    pub warnings: Vec<String>,
}

/// Records appended to the log since the previous read, in log order.
#[derive(Debug, Default)]
pub struct NewRecords {
    /// Every valid record, deletions included, exactly as appended (not merged or filtered).
    pub records: Vec<Record>,
    /// One per bad line, as in [`Loaded::warnings`].
    pub warnings: Vec<String>,
}

/// What a store could not do. Callers only log it or refuse to start, so a backend-neutral
/// operation plus the backend's own cause is all they need, and a new backend adds no variant.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What the store holds could not be read, at start or while following another process.
    #[error("{store}: cannot read: {source}")]
    Read {
        /// The store as an operator knows it, e.g. `revocation log /var/lib/p/revocations.jsonl`.
        store: String,
        source: io::Error,
    },
    /// The store could not be shrunk to the live state at start.
    #[error("{store}: cannot compact: {source}")]
    Compact { store: String, source: io::Error },
    /// A change did not become durable. Only the cause: the caller says which change it was.
    #[error(transparent)]
    Write(io::Error),
}

/// Durable backing of the revocation list.
pub trait RevocationStore: Send + Sync {
    /// Returns only once the record is durable (file: written and fsync'd). Blocking; callers run
    /// it on a blocking thread.
    fn append(&self, record: &Record) -> Result<(), StoreError>;
    /// Called once at start (the new process of a graceful upgrade included): read everything,
    /// return the live state, and compact the backing storage to exactly that state.
    fn load_and_compact(&self, now: i64) -> Result<Loaded, StoreError>;
    /// What was appended since the load or the previous call. Blocking. Records this process
    /// appended come back too: applying them again, in log order, ends in the same state.
    fn read_new(&self) -> Result<NewRecords, StoreError>;
    /// The `revocation.store` value this implements.
    fn name(&self) -> &'static str;
}

/// `store: memory`: revocations live only as long as the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl RevocationStore for MemoryStore {
    fn append(&self, _record: &Record) -> Result<(), StoreError> {
        Ok(())
    }

    fn load_and_compact(&self, _now: i64) -> Result<Loaded, StoreError> {
        Ok(Loaded::default())
    }

    fn read_new(&self) -> Result<NewRecords, StoreError> {
        Ok(NewRecords::default())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// Record builders the revocation tests share, in the shapes they write most.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn jti(iss: &str, jti: &str, expires_at: Option<i64>) -> Record {
        Record::RevokeJti {
            iss: iss.into(),
            jti: jti.into(),
            expires_at,
        }
    }

    /// Issuer `I`, kept until deleted: the revocation most tests need several of.
    pub(crate) fn jtis(ids: &[&str]) -> Vec<Record> {
        ids.iter().map(|id| jti("I", id, None)).collect()
    }

    pub(crate) fn subject(iss: &str, sub: &str, before: i64, expires_at: Option<i64>) -> Record {
        Record::RevokeSubject {
            iss: iss.into(),
            sub: sub.into(),
            before,
            expires_at,
        }
    }

    pub(crate) fn delete_jti(iss: &str, jti: &str) -> Record {
        let (iss, jti) = (iss.into(), jti.into());
        Record::DeleteJti { iss, jti }
    }

    /// `record` as an append writes it.
    pub(crate) fn line(record: &Record) -> String {
        let mut s = serde_json::to_string(record).unwrap();
        s.push('\n');
        s
    }

    /// The log a run of appends of `records` leaves.
    pub(crate) fn lines(records: &[Record]) -> String {
        records.iter().map(line).collect()
    }

    #[test]
    fn wire_format_is_tagged_by_op() {
        assert_eq!(
            serde_json::to_string(&jti("I", "J", Some(5))).unwrap(),
            r#"{"op":"revoke_jti","iss":"I","jti":"J","expires_at":5}"#
        );
        let parsed: Record =
            serde_json::from_str(r#"{"op":"delete_subject","iss":"I","sub":"S"}"#).unwrap();
        assert_eq!(
            parsed,
            Record::DeleteSubject {
                iss: "I".into(),
                sub: "S".into()
            }
        );
        // A missing expires_at reads as "until deleted".
        let parsed: Record =
            serde_json::from_str(r#"{"op":"revoke_subject","iss":"I","sub":"S","before":7}"#)
                .unwrap();
        assert_eq!(parsed, subject("I", "S", 7, None));
    }

    #[test]
    fn memory_store_keeps_nothing() {
        let store = MemoryStore;
        store.append(&jti("I", "j", None)).unwrap();
        let loaded = store.load_and_compact(0).unwrap();
        assert!(loaded.records.is_empty() && loaded.warnings.is_empty());
        assert!(store.read_new().unwrap().records.is_empty());
        assert_eq!(store.name(), "memory");
    }
}
