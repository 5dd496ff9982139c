//! The state every listener's proxy service, the admin API and the reload path share. It lives
//! apart from the proxy so that the admin API and reload depend on the state, not on the
//! request path.

use std::path::PathBuf;

use arc_swap::ArcSwap;

use crate::access_log::AccessLog;
use crate::revocation::service::Revocations;
use crate::runtime::{Persistent, Snapshot};
use crate::telemetry::SpanQueue;

/// Replaced piecewise: a reload swaps `snapshot`; everything else lives as long as the process.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub keep: Persistent,
    pub revocations: Revocations,
    pub access_log: Option<AccessLog>,
    /// Finished requests waiting for the trace exporter.
    pub spans: SpanQueue,
    /// What `reload` re-reads.
    pub config_path: PathBuf,
    /// Sections a reload may not change, as first loaded.
    pub pinned: crate::config::PinnedSections,
    pub reload_lock: parking_lot::Mutex<()>,
    /// Unix seconds at start-up, for `/admin/status`.
    pub started_at: i64,
    /// The outcome of the last reload; `None` before the first.
    pub last_reload: parking_lot::Mutex<Option<crate::reload::LastReload>>,
}
