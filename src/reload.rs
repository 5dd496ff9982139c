//! Hot reload (`POST /admin/reload`, SIGHUP): re-read and validate the config file, then publish
//! a new snapshot in one atomic swap. In-flight requests finish on the snapshot they started
//! with; peer health, fetched keys, cached tokens and revocations carry over through
//! `Persistent`. Sections that are bound into the running process (listeners, Pingora's server
//! settings, the revocation store, the access log) cannot change this way.

use std::sync::Arc;

use crate::config;
use crate::metrics;
use crate::runtime::Snapshot;
use crate::state::Shared;

/// What `/admin/status` reports about the last reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastReload {
    /// Unix seconds.
    pub at: i64,
    pub ok: bool,
    /// The config in force afterwards: the new one, or the old one kept after a refusal.
    pub config_hash: String,
    /// Why it was refused (the lines `-t` prints); empty when it succeeded.
    pub errors: Vec<String>,
}

/// Returns the new config hash, or every error (the running config stays in force).
pub fn reload(shared: &Shared) -> Result<String, Vec<String>> {
    let _one_at_a_time = shared.reload_lock.lock();
    let result = try_reload(shared);
    *shared.last_reload.lock() = Some(LastReload {
        at: crate::clock::unix_now(),
        ok: result.is_ok(),
        config_hash: shared.snapshot.load().config_hash.clone(),
        errors: result.as_ref().err().cloned().unwrap_or_default(),
    });
    match &result {
        Ok(hash) => {
            metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc();
            log::info!("config reloaded (hash {hash})");
        }
        Err(errors) => {
            metrics::CONFIG_RELOADS.with_label_values(&["error"]).inc();
            log::warn!(
                "config reload refused; the running config is kept: {}",
                errors.join("; ")
            );
        }
    }
    result
}

fn try_reload(shared: &Shared) -> Result<String, Vec<String>> {
    let loaded = config::load(&shared.config_path)?;
    let changed: Vec<String> = shared
        .pinned
        .changed(&loaded.config)
        .into_iter()
        .map(|name| {
            format!(
                "{name}: changed, but {name} cannot be changed by a reload; restart, or do a graceful upgrade (start the new process with -u, then send SIGQUIT to the old one)"
            )
        })
        .collect();
    if !changed.is_empty() {
        return Err(changed);
    }
    let snap = Snapshot::build(&loaded, &shared.keep)?;
    let hash = snap.config_hash.clone();
    shared.snapshot.store(Arc::new(snap));
    let current = shared.snapshot.load();
    shared.keep.adopt(&current);
    let ups: Vec<_> = current.upstreams.values().cloned().collect();
    shared.keep.health.retain_used(&ups);
    Ok(hash)
}
