//! Per-provider JWKS runtime: keeps one issuer's verification keys fresh and hands the request path a
//! lock-free snapshot of them.
//!
//! Why it is shaped this way:
//! - The request path only ever does `keys()` (an `ArcSwap` load). Everything that can block or fail
//!   (HTTP, file I/O, parsing) happens in a spawned fetch task, so a slow IdP never holds a request
//!   longer than `fetch_timeout`, and a dropped request cannot abandon a half-done fetch.
//! - All fetches of a provider, scheduled or triggered by an unknown `kid`, go through one
//!   single-flight gate. Unknown-kid fetches are additionally rate-limited to one per `min_refresh`
//!   and the kid is negatively cached, so a storm of random kids (conf/HARDENING.md K6) costs the IdP at
//!   most one request per `min_refresh`.
//! - A failed fetch never replaces good keys (conf/HARDENING.md §2.4 item 2: keep the last-known-good set); only
//!   `max_stale` without any success discards them, because by then a key may have been revoked at
//!   the IdP and we would never learn it.
//! - The JWKS location comes only from configuration (K2): token headers (`jku`, `x5u`) never reach
//!   this module, redirects are not followed, and plain HTTP is allowed for loopback only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::auth::alg::Alg;
use crate::auth::jwk::{parse_jwks_reusing, JwksError, KeySet, MAX_JWKS_BYTES};
use crate::clock::unix_now;
use crate::metrics;

/// Largest number of unknown kids remembered at once. A random-kid storm would otherwise grow the
/// negative cache without bound; when it is full it is simply emptied, which is safe because the
/// fetch rate limit, not this cache, is what protects the IdP.
const NEGATIVE_CACHE_MAX: usize = 1024;

/// Longest interval between two cheap `stat` polls of a `file` source.
const FILE_POLL: Duration = Duration::from_secs(1);

/// Where a provider's keys come from (conf/README.md §2 `providers[].jwks`: exactly one of url/file/discovery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    /// Absolute, already resolved against the config file's directory.
    File(PathBuf),
    /// `GET {issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery {
        issuer: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSettings {
    pub source: JwksSource,
    pub refresh_interval: Duration,
    pub min_refresh: Duration,
    pub fetch_timeout: Duration,
    pub max_stale: Duration,
    pub algorithms: Vec<Alg>,
}

/// What `GET /admin/status` and `/readyz` report for one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderStatus {
    pub name: String,
    pub keys: Vec<String>,
    /// Unix seconds of the last successful fetch (a 304 counts).
    pub last_refresh: Option<i64>,
    /// Why the last attempt failed, or why the keys were discarded; `None` after a success.
    pub last_error: Option<String>,
    pub ready: bool,
}

/// Why a JWKS or discovery URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL {url:?}: {reason}")]
    Invalid {
        url: String,
        reason: <Url as std::str::FromStr>::Err,
    },
    #[error("URL must not contain credentials")]
    Credentials,
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("URL {0:?}: http:// is allowed only for loopback hosts; use https://")]
    PlainHttp(String),
    #[error("URL {url:?}: scheme {scheme:?} not allowed; use https://")]
    Scheme { url: String, scheme: String },
}

/// The TLS stack could not be set up; every HTTP fetch of the provider fails with this.
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot build the JWKS HTTP client: {}", describe(&**.0))]
struct ClientError(Arc<reqwest::Error>);

/// Why one refresh attempt failed; its text becomes the provider's `last_error`.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Client(ClientError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("{}", describe(.0))]
    Transport(reqwest::Error),
    #[error("{url}: unexpected HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {source}")]
    Body { url: String, source: BodyError },
    #[error("{url}: invalid JSON: {source}")]
    DiscoveryJson {
        url: String,
        source: serde_json::Error,
    },
    #[error("{url}: issuer {found} does not match {issuer:?}")]
    IssuerMismatch {
        url: String,
        found: String,
        issuer: String,
    },
    #[error("{0}: no jwks_uri string")]
    NoJwksUri(String),
    #[error("{url}: jwks_uri: {source}")]
    JwksUri { url: String, source: UrlError },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_JWKS_BYTES} bytes", .0.display())]
    FileTooLarge(PathBuf),
    #[error("304 Not Modified but no keys are held")]
    NotModifiedWithoutKeys,
    #[error("invalid JWKS: {0}")]
    Jwks(#[from] JwksError),
    #[error("JWKS has no usable keys ({0} rejected)")]
    NoUsableKeys(usize),
}

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("body larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("{}", describe(.0))]
    Transport(reqwest::Error),
}

/// Size and modification time of a key file: a change in either means "re-read it".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileSig {
    modified: Option<SystemTime>,
    len: u64,
}

/// Mutable bookkeeping. Guarded by a `parking_lot` mutex that is only ever held for a few field
/// updates, never across an `.await`.
#[derive(Default)]
struct State {
    /// A fetch task is running; others join it instead of starting their own.
    fetching: bool,
    last_started: Option<Instant>,
    /// When the background loop should fetch next (`None`: as soon as it runs).
    next_due: Option<Instant>,
    last_success: Option<Instant>,
    last_success_unix: Option<i64>,
    last_error: Option<String>,
    /// Set once `max_stale` has discarded the keys, so it happens (and is logged) once.
    stale_cleared: bool,
    /// ETag of the key set we hold, with the URL it came from (the discovered URL may change).
    etag: Option<(String, HeaderValue)>,
    /// Cached `jwks_uri` from discovery; dropped after any failed attempt so the next re-discovers.
    jwks_uri: Option<String>,
    /// File signature of the key set we hold (`file` source).
    file_good: Option<FileSig>,
    /// Unknown kid -> until when it is known to be unknown.
    negative: HashMap<String, Instant>,
}

/// Raw result of one fetch, before parsing.
enum Fetched {
    Body {
        body: Vec<u8>,
        etag: Option<(String, HeaderValue)>,
        max_age: Option<Duration>,
        file_sig: Option<FileSig>,
    },
    NotModified {
        max_age: Option<Duration>,
    },
}

/// How a caller takes part in the single flight.
enum Flight {
    /// A fetch is running (started by us or someone else); it bumps this channel when done.
    Wait(watch::Receiver<u64>),
    /// No fetch allowed now (rate limit, no runtime, provider being dropped).
    Refused,
}

pub struct ProviderRuntime {
    name: String,
    settings: JwksSettings,
    /// `None` when the TLS stack could not be set up; every HTTP fetch then fails with this reason.
    client: Result<reqwest::Client, ClientError>,
    keys: ArcSwap<KeySet>,
    state: Mutex<State>,
    /// Bumped whenever the key set is replaced or discarded.
    generation: watch::Sender<u64>,
    /// Bumped whenever a fetch attempt ends; single-flight waiters listen here.
    attempts: watch::Sender<u64>,
    /// Lets `&self` methods spawn a fetch task that outlives the caller.
    me: Weak<ProviderRuntime>,
}

impl Drop for ProviderRuntime {
    /// Logged so an operator (and the reload tests) can see that a replaced provider's runtime,
    /// with its key set and refresh loop, is really gone.
    fn drop(&mut self) {
        log::info!("provider {}: key-set runtime released", self.name);
    }
}

impl ProviderRuntime {
    pub fn new(name: &str, settings: JwksSettings) -> Arc<ProviderRuntime> {
        let client = build_client(settings.fetch_timeout);
        if let Err(e) = &client {
            log::error!("provider {name}: {e}");
        }
        Arc::new_cyclic(|me| ProviderRuntime {
            name: name.to_owned(),
            settings,
            client,
            keys: ArcSwap::from_pointee(KeySet::empty()),
            state: Mutex::new(State::default()),
            generation: watch::Sender::new(0),
            attempts: watch::Sender::new(0),
            me: me.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// Lock-free snapshot for the request path.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// True once a key set has been loaded and fetches have not been failing for `max_stale`.
    pub fn is_ready(&self) -> bool {
        let fresh = self.fresh(&self.state.lock());
        fresh && !self.keys.load().is_empty()
    }

    /// `max_stale` bounds how long keys are kept *while fetches fail* (conf/README.md §2): a healthy IdP
    /// whose refresh_interval is longer than max_stale never makes its keys stale.
    fn fresh(&self, st: &State) -> bool {
        st.last_success
            .is_some_and(|t| st.last_error.is_none() || t.elapsed() <= self.settings.max_stale)
            && !st.stale_cleared
    }

    /// Called by the request path when a token names a kid that is not in `keys()`.
    ///
    /// Single-flight: concurrent callers share one fetch. Rate-limited: a fetch starts only if none
    /// started (of any kind) within the last `min_refresh`; after a fetch that did not bring the
    /// kid, the kid is negatively cached for `min_refresh`. Waits at most `fetch_timeout`.
    /// Returns true if, afterwards, `keys()` contains the kid.
    pub async fn refresh_for_kid(&self, kid: &str) -> bool {
        if self.keys.load().get(kid).is_some() {
            return true;
        }
        let flight = {
            let mut st = self.state.lock();
            let now = Instant::now();
            if st.negative.get(kid).is_some_and(|until| *until > now) {
                return false;
            }
            let recent = st
                .last_started
                .is_some_and(|t| now.duration_since(t) < self.settings.min_refresh);
            if st.fetching {
                Flight::Wait(self.attempts.subscribe())
            } else if recent {
                Flight::Refused
            } else {
                self.start_locked(&mut st)
            }
        };
        let Flight::Wait(mut done) = flight else {
            // A fetch may have completed between our first look and taking the lock.
            return self.keys.load().get(kid).is_some();
        };
        let finished = tokio::time::timeout(self.settings.fetch_timeout, done.changed())
            .await
            .is_ok();
        if self.keys.load().get(kid).is_some() {
            return true;
        }
        if finished {
            let mut st = self.state.lock();
            if st.negative.len() >= NEGATIVE_CACHE_MAX {
                let now = Instant::now();
                st.negative.retain(|_, until| *until > now);
                if st.negative.len() >= NEGATIVE_CACHE_MAX {
                    st.negative.clear();
                }
            }
            st.negative.insert(
                kid.to_owned(),
                after(Instant::now(), self.settings.min_refresh),
            );
        }
        false
    }

    /// Background loop: first fetch immediately, then refresh on schedule until `shutdown` flips
    /// to true (or its sender is dropped, so a replaced config's loops cannot linger).
    ///
    /// Schedule: after a success, `Cache-Control: max-age` clamped to [min_refresh,
    /// refresh_interval] (no max-age: refresh_interval); after a failure, min_refresh. A `file`
    /// source is also `stat`ed every min(refresh_interval, 1 s) and re-read when its size or mtime
    /// changes. The loop also discards the keys once `max_stale` passes without a success.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = match self.settings.source {
            JwksSource::File(_) => Some(self.settings.refresh_interval.min(FILE_POLL)),
            _ => None,
        };
        let mut last_seen: Option<Option<FileSig>> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.expire_if_stale();
            let now = Instant::now();
            let (due, stale_at) = {
                let st = self.state.lock();
                let stale_at = if st.stale_cleared || st.last_error.is_none() {
                    None
                } else {
                    st.last_success.map(|t| after(t, self.settings.max_stale))
                };
                (st.next_due, stale_at)
            };
            let mut fetch = due.is_none_or(|d| d <= now);
            if !fetch {
                if let (Some(_), JwksSource::File(path)) = (poll, &self.settings.source) {
                    let sig = file_sig(path).await;
                    fetch = last_seen.is_some_and(|seen| seen != sig);
                    last_seen = Some(sig);
                }
            }
            if fetch {
                if let JwksSource::File(path) = &self.settings.source {
                    last_seen = Some(file_sig(path).await);
                }
                let Flight::Wait(mut done) = self.start_or_join() else {
                    return; // no runtime to spawn on, or the provider is being dropped
                };
                tokio::select! {
                    _ = done.changed() => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
                continue;
            }
            let mut wake = due.unwrap_or(now);
            if let Some(s) = stale_at {
                wake = wake.min(after(s, Duration::from_millis(1)));
            }
            if let Some(p) = poll {
                wake = wake.min(after(now, p));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// For `GET /admin/status` and `/readyz` reasons.
    pub fn status(&self) -> ProviderStatus {
        let keys = self.keys();
        let (last_refresh, last_error, fresh) = {
            let st = self.state.lock();
            (st.last_success_unix, st.last_error.clone(), self.fresh(&st))
        };
        ProviderStatus {
            name: self.name.clone(),
            keys: keys.kids(),
            last_refresh,
            last_error,
            ready: fresh && !keys.is_empty(),
        }
    }

    /// Subscribe to key-set changes (so the verified-token cache can drop entries of removed keys).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// A task body that calls `on_change` after every replacement of the key set, until `stop`
    /// changes or the runtime is dropped. It holds only a weak reference: a task that kept the
    /// runtime alive while waiting on the runtime's own channel would never see that channel
    /// close, so every reload that replaced a provider would leak the task and the runtime.
    pub fn on_key_changes<F>(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut on_change: F,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        F: FnMut(&ProviderRuntime) + Send + 'static,
    {
        let me = Arc::downgrade(self);
        let mut changes = self.generation.subscribe();
        async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = stop.changed() => return,
                }
                let Some(rt) = me.upgrade() else { return };
                on_change(&rt);
            }
        }
    }

    /// Joins the running fetch or starts one, ignoring the unknown-kid rate limit (the schedule
    /// already keeps scheduled fetches `min_refresh` apart).
    fn start_or_join(&self) -> Flight {
        let mut st = self.state.lock();
        if st.fetching {
            Flight::Wait(self.attempts.subscribe())
        } else {
            self.start_locked(&mut st)
        }
    }

    /// Spawns the fetch task. The caller holds the state lock and has checked `!st.fetching`; the
    /// waiter subscribes before the task can finish, so it cannot miss the completion.
    fn start_locked(&self, st: &mut State) -> Flight {
        let Some(me) = self.me.upgrade() else {
            return Flight::Refused;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            log::error!(
                "provider {}: JWKS fetch requested outside a Tokio runtime",
                self.name
            );
            return Flight::Refused;
        };
        st.fetching = true;
        st.last_started = Some(Instant::now());
        let done = self.attempts.subscribe();
        rt.spawn(async move {
            // Ends the flight even if this task is cancelled or a parser panics.
            let _flight = FlightGuard(&me);
            let result = match tokio::time::timeout(me.settings.fetch_timeout, me.fetch()).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Timeout(me.settings.fetch_timeout)),
            };
            me.apply(result);
        });
        Flight::Wait(done)
    }

    async fn fetch(&self) -> Result<Fetched, FetchError> {
        match &self.settings.source {
            JwksSource::Url(url) => self.fetch_url(url).await,
            JwksSource::File(path) => self.fetch_file(path).await,
            JwksSource::Discovery { issuer } => {
                let cached = self.state.lock().jwks_uri.clone();
                let url = match cached {
                    Some(u) => u,
                    None => {
                        let u = self.discover(issuer).await?;
                        self.state.lock().jwks_uri = Some(u.clone());
                        u
                    }
                };
                self.fetch_url(&url).await
            }
        }
    }

    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        self.client
            .as_ref()
            .map_err(|e| FetchError::Client(e.clone()))
    }

    async fn fetch_url(&self, url: &str) -> Result<Fetched, FetchError> {
        check_jwks_url(url)?;
        let etag = {
            let st = self.state.lock();
            st.etag
                .as_ref()
                .filter(|(for_url, _)| for_url == url)
                .map(|(_, tag)| tag.clone())
        };
        let mut req = self.client()?.get(url).header(
            ACCEPT,
            HeaderValue::from_static("application/jwk-set+json, application/json"),
        );
        let conditional = etag.is_some();
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        let mut resp = req.send().await.map_err(FetchError::Transport)?;
        let max_age = cache_max_age(resp.headers());
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_MODIFIED if conditional => return Ok(Fetched::NotModified { max_age }),
            s => return Err(status_error(url, s)),
        }
        let etag = resp
            .headers()
            .get(ETAG)
            .map(|tag| (url.to_owned(), tag.clone()));
        let body = read_capped(url, &mut resp).await?;
        Ok(Fetched::Body {
            body,
            etag,
            max_age,
            file_sig: None,
        })
    }

    /// OpenID discovery: returns the `jwks_uri`, checked against the same URL policy.
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = discovery_url(issuer);
        check_jwks_url(&url)?;
        let mut resp = self
            .client()?
            .get(&url)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await
            .map_err(FetchError::Transport)?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(&url, resp.status()));
        }
        let body = read_capped(&url, &mut resp).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|source| FetchError::DiscoveryJson {
                url: url.clone(),
                source,
            })?;
        // OpenID Connect Discovery §4.3: the document must be about the issuer we asked for
        // (a mismatch means a mix-up or a misrouted request).
        if let Some(found) = doc.get("issuer") {
            let same = found
                .as_str()
                .is_some_and(|f| f.strip_suffix('/').unwrap_or(f) == trim_slash(issuer));
            if !same {
                return Err(FetchError::IssuerMismatch {
                    url,
                    found: found.to_string().chars().take(200).collect(),
                    issuer: issuer.to_owned(),
                });
            }
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FetchError::NoJwksUri(url.clone()))?;
        check_jwks_url(jwks_uri).map_err(|source| FetchError::JwksUri { url, source })?;
        Ok(jwks_uri.to_owned())
    }

    async fn fetch_file(&self, path: &Path) -> Result<Fetched, FetchError> {
        let file_error = |source| FetchError::File {
            path: path.to_owned(),
            source,
        };
        let meta = tokio::fs::metadata(path).await.map_err(file_error)?;
        let sig = FileSig {
            modified: meta.modified().ok(),
            len: meta.len(),
        };
        if self.state.lock().file_good == Some(sig) {
            return Ok(Fetched::NotModified { max_age: None });
        }
        if meta.len() > MAX_JWKS_BYTES as u64 {
            return Err(FetchError::FileTooLarge(path.to_owned()));
        }
        let file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let mut body = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_JWKS_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .await
            .map_err(file_error)?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(FetchError::FileTooLarge(path.to_owned()));
        }
        Ok(Fetched::Body {
            body,
            etag: None,
            max_age: None,
            file_sig: Some(sig),
        })
    }

    /// Records the outcome of one attempt: keys, schedule, status and metrics.
    fn apply(&self, result: Result<Fetched, FetchError>) {
        let result = result.and_then(|fetched| match fetched {
            Fetched::NotModified { .. } if self.keys.load().is_empty() => {
                // Our keys were discarded (max_stale) while this request carried their ETag.
                Err(FetchError::NotModifiedWithoutKeys)
            }
            Fetched::NotModified { max_age } => Ok((None, max_age)),
            Fetched::Body {
                body,
                etag,
                max_age,
                file_sig,
            } => {
                // Unchanged keys keep their identity, so cached tokens they verified stay valid.
                let parsed = parse_jwks_reusing(&body, &self.settings.algorithms, &self.keys())?;
                for r in &parsed.rejected {
                    log::warn!(
                        "provider {}: JWKS key {} ignored: {}",
                        self.name,
                        r.kid
                            .as_deref()
                            .map_or("without kid".to_owned(), |k| format!("{k:?}")),
                        r.reason
                    );
                }
                if parsed.keys.is_empty() {
                    return Err(FetchError::NoUsableKeys(parsed.rejected.len()));
                }
                Ok((Some((parsed.keys, etag, file_sig)), max_age))
            }
        });
        let now = Instant::now();
        let provider = self.name.as_str();
        match result {
            Ok((fresh, max_age)) => {
                let unix = unix_now();
                let changed = {
                    let mut st = self.state.lock();
                    st.last_success = Some(now);
                    st.last_success_unix = Some(unix);
                    st.last_error = None;
                    st.stale_cleared = false;
                    st.next_due = Some(after(now, self.next_delay(max_age)));
                    match fresh {
                        Some((keys, etag, file_sig)) => {
                            st.etag = etag;
                            st.file_good = file_sig;
                            // Kids that were unknown may be in the new set.
                            st.negative.clear();
                            let old = self.keys.swap(Arc::new(keys));
                            Some(old.kids())
                        }
                        None => None,
                    }
                };
                let keys = self.keys.load();
                let result = match changed {
                    Some(old_kids) => {
                        self.generation.send_modify(|g| *g += 1);
                        let kids = keys.kids();
                        if kids != old_kids {
                            log::info!("provider {provider}: JWKS loaded, kids {kids:?}");
                        }
                        "ok"
                    }
                    None => {
                        log::debug!("provider {provider}: JWKS not modified");
                        "not_modified"
                    }
                };
                metrics::JWKS_REFRESH
                    .with_label_values(&[provider, result])
                    .inc();
                metrics::JWKS_LAST_SUCCESS
                    .with_label_values(&[provider])
                    .set(unix as f64);
                metrics::JWKS_KEYS
                    .with_label_values(&[provider])
                    .set(keys.len() as i64);
            }
            Err(e) => {
                log::warn!(
                    "provider {provider}: JWKS refresh failed (keeping the last good keys, retry in {:?}): {e}",
                    self.settings.min_refresh
                );
                {
                    let mut st = self.state.lock();
                    // Once the keys are discarded, every later failure keeps saying so: the
                    // status must not read like a passing fetch error while tokens are refused.
                    st.last_error = Some(if st.stale_cleared {
                        self.discarded_reason(&e.to_string())
                    } else {
                        e.to_string()
                    });
                    st.next_due = Some(after(now, self.settings.min_refresh));
                    st.jwks_uri = None;
                }
                metrics::JWKS_REFRESH
                    .with_label_values(&[provider, "error"])
                    .inc();
                self.expire_if_stale();
                metrics::JWKS_KEYS
                    .with_label_values(&[provider])
                    .set(self.keys.load().len() as i64);
            }
        }
    }

    /// Delay to the next scheduled fetch after a success.
    fn next_delay(&self, max_age: Option<Duration>) -> Duration {
        let s = &self.settings;
        max_age
            .unwrap_or(s.refresh_interval)
            .min(s.refresh_interval)
            .max(s.min_refresh)
    }

    fn discarded_reason(&self, last_error: &str) -> String {
        format!(
            "no successful JWKS fetch for more than {:?}; keys discarded (last error: {last_error})",
            self.settings.max_stale
        )
    }

    /// Discards the keys once fetches have been failing and none has succeeded for `max_stale`.
    fn expire_if_stale(&self) {
        let discarded = {
            let mut st = self.state.lock();
            let stale = !st.stale_cleared
                && st.last_error.is_some()
                && st
                    .last_success
                    .is_some_and(|t| t.elapsed() > self.settings.max_stale);
            if stale {
                st.stale_cleared = true;
                st.etag = None;
                st.file_good = None;
                let last = st.last_error.take().unwrap_or_default();
                st.last_error = Some(self.discarded_reason(&last));
                self.keys.store(Arc::new(KeySet::empty()));
            }
            stale
        };
        if discarded {
            log::error!(
                "provider {}: no successful JWKS fetch for more than {:?}; keys discarded, tokens of this provider are refused",
                self.name,
                self.settings.max_stale
            );
            self.generation.send_modify(|g| *g += 1);
            metrics::JWKS_KEYS.with_label_values(&[&self.name]).set(0);
        }
    }
}

/// Ends a flight: clears `fetching` and wakes every waiter, also when the task is cancelled.
struct FlightGuard<'a>(&'a ProviderRuntime);

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.fetching = false;
        self.0.attempts.send_modify(|n| *n += 1);
    }
}

/// conf/README.md §3.4 "JWKS URLs": `https://` anywhere; `http://` only to loopback (127.0.0.0/8, ::1,
/// localhost). Credentials in the URL are refused so they can never end up in logs.
/// Config validation calls this too.
pub fn check_jwks_url(url: &str) -> Result<(), UrlError> {
    let parsed = Url::parse(url).map_err(|reason| UrlError::Invalid {
        url: url.to_owned(),
        reason,
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            // The URL parser has already normalised IPv4 shorthands ("127.1") and bracketed IPv6.
            let ip = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || ip
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(UrlError::PlainHttp(url.to_owned()))
            }
        }
        other => Err(UrlError::Scheme {
            url: url.to_owned(),
            scheme: other.to_owned(),
        }),
    }
}

/// `{issuer}/.well-known/openid-configuration`, with one trailing '/' of the issuer dropped.
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", trim_slash(issuer))
}

fn trim_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

/// No redirects (a redirect could point the fetch anywhere, K2), one total timeout, no proxies
/// from the environment, no connection pool (fetches are minutes apart, and a pooled connection
/// would tie this client to whichever runtime first used it).
fn build_client(fetch_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(fetch_timeout)
        .connect_timeout(fetch_timeout)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError(Arc::new(e)))
}

fn status_error(url: &str, status: StatusCode) -> FetchError {
    FetchError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
    }
}

/// Reads the body, refusing anything over `MAX_JWKS_BYTES` without buffering it.
async fn read_capped(url: &str, resp: &mut reqwest::Response) -> Result<Vec<u8>, FetchError> {
    read_body(resp).await.map_err(|source| FetchError::Body {
        url: url.to_owned(),
        source,
    })
}

async fn read_body(resp: &mut reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The smallest `max-age` directive across `Cache-Control` headers (other directives ignored).
fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let (name, value) = d.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
        .min()
        .map(Duration::from_secs)
}

async fn file_sig(path: &Path) -> Option<FileSig> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some(FileSig {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// An error with its causes ("error sending request: connection refused"); reqwest's top-level
/// message alone rarely says what went wrong.
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// `t + d`, saturating far in the future instead of panicking on an absurd configured duration.
fn after(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    t.checked_add(d)
        .or_else(|| t.checked_add(CENTURY))
        .unwrap_or(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// One request as the test server saw it (lower-cased header names).
    #[derive(Clone, Debug)]
    struct Seen {
        path: String,
        headers: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        delay: Duration,
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    impl Reply {
        fn header(mut self, name: &'static str, value: &str) -> Reply {
            self.headers.push((name, value.to_owned()));
            self
        }
        /// Answer only after `delay`, to exercise timeouts and single flight.
        fn delayed(mut self, delay: Duration) -> Reply {
            self.delay = delay;
            self
        }
    }

    type Handler = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

    /// A real loopback HTTP/1.1 server: one request per connection, answered by a swappable handler.
    struct Server {
        base: String,
        hits: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
        handler: Arc<Mutex<Arc<Handler>>>,
    }

    impl Server {
        async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let seen = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Mutex<Arc<Handler>>> =
                Arc::new(Mutex::new(Arc::new(Box::new(handler))));
            let (h, s, hd) = (hits.clone(), seen.clone(), handler.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut conn, _)) = listener.accept().await else {
                        return;
                    };
                    let (h, s, hd) = (h.clone(), s.clone(), hd.clone());
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        let mut lines = head.split("\r\n");
                        let path = lines
                            .next()
                            .and_then(|l| l.split(' ').nth(1))
                            .unwrap_or("")
                            .to_owned();
                        let headers = lines
                            .filter_map(|l| l.split_once(':'))
                            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                            .collect();
                        let req = Seen { path, headers };
                        h.fetch_add(1, Ordering::SeqCst);
                        s.lock().push(req.clone());
                        let handler = hd.lock().clone();
                        let r = handler(&req);
                        if !r.delay.is_zero() {
                            tokio::time::sleep(r.delay).await;
                        }
                        let mut out = format!(
                            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                            r.status,
                            r.body.len()
                        );
                        for (n, v) in &r.headers {
                            out.push_str(&format!("{n}: {v}\r\n"));
                        }
                        out.push_str("\r\n");
                        let mut bytes = out.into_bytes();
                        bytes.extend_from_slice(&r.body);
                        let _ = conn.write_all(&bytes).await;
                        let _ = conn.shutdown().await;
                    });
                }
            });
            Server {
                base,
                hits,
                seen,
                handler,
            }
        }

        fn set(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
            *self.handler.lock() = Arc::new(Box::new(handler));
        }

        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }

        fn last(&self) -> Seen {
            self.seen.lock().last().cloned().unwrap()
        }

        /// A provider fetching `{base}/jwks` from this server, with `tweak` applied to the
        /// default [`settings`].
        fn provider(
            &self,
            name: &str,
            tweak: impl FnOnce(&mut JwksSettings),
        ) -> Arc<ProviderRuntime> {
            let mut s = settings(JwksSource::Url(format!("{}/jwks", self.base)));
            tweak(&mut s);
            ProviderRuntime::new(&unique(name), s)
        }
    }

    /// A provider's background loop, for the tests that follow its schedule.
    struct Running {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn start(p: &Arc<ProviderRuntime>) -> Running {
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(p.clone().run(rx));
            Running { stop, task }
        }

        async fn stop(self) {
            self.stop.send(true).unwrap();
            self.task.await.unwrap();
        }
    }

    /// A JWKS with one real P-256 key per kid (the same public key under each kid), so the
    /// real key filter accepts them.
    fn jwks(kids: &[&str]) -> String {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        static POINT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
        let (x, y) = POINT.get_or_init(|| {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let kp =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let point = kp.public_key().as_ref().to_vec();
            let b64 = crate::auth::test_support::b64;
            (b64(&point[1..33]), b64(&point[33..65]))
        });
        let keys: Vec<String> = kids
            .iter()
            .map(|k| {
                format!(r#"{{"kid":"{k}","kty":"EC","crv":"P-256","alg":"ES256","use":"sig","x":"{x}","y":"{y}"}}"#)
            })
            .collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    fn settings(source: JwksSource) -> JwksSettings {
        JwksSettings {
            source,
            refresh_interval: Duration::from_secs(60),
            min_refresh: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(2),
            max_stale: Duration::from_secs(3600),
            algorithms: vec![Alg::ES256],
        }
    }

    /// A provider name unique to the test, so the global metric series do not collide.
    fn unique(name: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("{name}-{}", N.fetch_add(1, Ordering::SeqCst))
    }

    /// One forced fetch, as the background loop does it.
    async fn fetch_now(p: &ProviderRuntime) {
        let Flight::Wait(mut done) = p.start_or_join() else {
            panic!("fetch refused");
        };
        done.changed().await.unwrap();
    }

    fn refreshes(p: &ProviderRuntime, result: &str) -> u64 {
        metrics::JWKS_REFRESH
            .with_label_values(&[p.name(), result])
            .get()
    }

    async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn url_fetch_loads_keys_and_feeds_metrics() {
        let srv = Server::start(|_| reply(200, &jwks(&["a", "b"]))).await;
        let p = srv.provider("url-ok", |_| {});
        assert!(!p.is_ready());
        assert!(p.keys().is_empty());
        let mut generation = p.subscribe();
        fetch_now(&p).await;
        assert_eq!(p.keys().kids(), vec!["a", "b"]);
        assert!(p.is_ready());
        assert!(generation.has_changed().unwrap());
        assert_eq!(*generation.borrow_and_update(), 1);
        assert_eq!(srv.last().path, "/jwks");
        let st = p.status();
        assert_eq!(st.keys, vec!["a", "b"]);
        assert!(st.ready);
        assert!(st.last_error.is_none());
        assert!(st.last_refresh.unwrap() > 1_600_000_000);
        assert_eq!(refreshes(&p, "ok"), 1);
        assert_eq!(metrics::JWKS_KEYS.with_label_values(&[p.name()]).get(), 2);
        let ts = metrics::JWKS_LAST_SUCCESS
            .with_label_values(&[p.name()])
            .get();
        assert_eq!(ts as i64, st.last_refresh.unwrap());
    }

    /// What a reload that replaces a provider leaves behind: the key-change task it started for
    /// the old runtime must neither keep that runtime alive nor outlive it.
    #[tokio::test]
    async fn key_change_task_ends_with_its_runtime_and_does_not_keep_it_alive() {
        let srv = Server::start(|_| reply(200, &jwks(&["a"]))).await;
        let p = srv.provider("key-change-task", |_| {});
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (_stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(p.on_key_changes(stop_rx, {
            let seen = Arc::clone(&seen);
            move |rt| {
                assert_eq!(rt.keys().kids(), vec!["a"]);
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }));
        fetch_now(&p).await;
        eventually("the change to be seen", Duration::from_secs(2), || {
            seen.load(Ordering::SeqCst) == 1
        })
        .await;
        let weak = Arc::downgrade(&p);
        drop(p);
        assert!(weak.upgrade().is_none(), "the task kept the runtime alive");
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the task outlived its runtime")
            .unwrap();
    }

    #[tokio::test]
    async fn key_change_task_ends_when_told_to_stop() {
        let srv = Server::start(|_| reply(200, &jwks(&["a"]))).await;
        let p = srv.provider("key-change-stop", |_| {});
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(p.on_key_changes(stop_rx, |_| {}));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the task ignored its stop signal")
            .unwrap();
        assert_eq!(Arc::strong_count(&p), 1);
    }

    #[tokio::test]
    async fn etag_revalidation_gives_not_modified_and_keeps_keys() {
        let srv = Server::start(|req| {
            if req.header("if-none-match") == Some("\"v1\"") {
                return reply(304, "");
            }
            reply(200, &jwks(&["a"])).header("ETag", "\"v1\"")
        })
        .await;
        let p = srv.provider("etag", |_| {});
        let generation = p.subscribe();
        fetch_now(&p).await;
        assert!(srv.last().header("if-none-match").is_none());
        let first = p.status().last_refresh;
        fetch_now(&p).await;
        assert_eq!(srv.hits(), 2);
        assert_eq!(srv.last().header("if-none-match"), Some("\"v1\""));
        assert_eq!(refreshes(&p, "ok"), 1);
        assert_eq!(refreshes(&p, "not_modified"), 1);
        assert_eq!(p.keys().kids(), vec!["a"]);
        assert!(p.is_ready());
        assert!(p.status().last_refresh >= first);
        // A 304 is not a key-set change.
        assert_eq!(*generation.borrow(), 1);
    }

    #[tokio::test]
    async fn unsolicited_304_is_an_error() {
        let srv = Server::start(|_| reply(304, "")).await;
        let p = srv.provider("304", |_| {});
        fetch_now(&p).await;
        assert_eq!(refreshes(&p, "error"), 1);
        assert!(!p.is_ready());
    }

    #[test]
    fn max_age_is_parsed_and_clamped() {
        let mut h = HeaderMap::new();
        assert_eq!(cache_max_age(&h), None);
        h.append(
            CACHE_CONTROL,
            HeaderValue::from_static("public, s-maxage=5, max-age=120"),
        );
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(120)));
        h.append(CACHE_CONTROL, HeaderValue::from_static("MAX-AGE=\"90\""));
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(90)));

        let mut s = settings(JwksSource::Url("https://x/".into()));
        s.min_refresh = Duration::from_secs(30);
        s.refresh_interval = Duration::from_secs(300);
        let p = ProviderRuntime::new(&unique("clamp"), s);
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(p.next_delay(None), Duration::from_secs(300));
        assert_eq!(p.next_delay(secs(0)), Duration::from_secs(30));
        assert_eq!(p.next_delay(secs(120)), Duration::from_secs(120));
        assert_eq!(p.next_delay(secs(86_400)), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn max_age_sets_the_next_scheduled_fetch() {
        let srv =
            Server::start(|_| reply(200, &jwks(&["a"])).header("Cache-Control", "max-age=45"))
                .await;
        let p = srv.provider("maxage", |_| {});
        fetch_now(&p).await;
        let due = p.state.lock().next_due.unwrap();
        let delay = due.duration_since(Instant::now());
        assert!(
            delay > Duration::from_secs(40) && delay <= Duration::from_secs(45),
            "{delay:?}"
        );

        // The loop follows the schedule: max-age=0 means "every min_refresh".
        srv.set(|_| reply(200, &jwks(&["a"])).header("Cache-Control", "max-age=0"));
        let p = srv.provider("maxage-loop", |s| s.min_refresh = Duration::from_millis(40));
        let running = Running::start(&p);
        tokio::time::sleep(Duration::from_millis(300)).await;
        running.stop().await;
        let n = refreshes(&p, "ok");
        assert!((4..=9).contains(&n), "{n} fetches in 300 ms");
    }

    #[tokio::test]
    async fn failures_keep_the_last_good_keys() {
        let srv = Server::start(|_| reply(200, &jwks(&["good"]))).await;
        let p = srv.provider("keep", |_| {});
        fetch_now(&p).await;
        let bad: Vec<Handler> = vec![
            Box::new(|_| reply(500, "oops")),
            Box::new(|_| reply(200, "not json")),
            Box::new(|_| reply(200, r#"{"keys":[]}"#)),
            Box::new(|_| reply(200, r#"{"keys":[{"kty":"EC"}]}"#)),
            Box::new(|_| reply(302, "").header("Location", "/elsewhere")),
            Box::new(|_| reply(200, &" ".repeat(MAX_JWKS_BYTES + 1))),
        ];
        let p2 = srv.provider("keep-timeout", |s| {
            s.fetch_timeout = Duration::from_millis(200)
        });
        for (i, h) in bad.into_iter().enumerate() {
            srv.set(h);
            fetch_now(&p).await;
            assert_eq!(p.keys().kids(), vec!["good"], "case {i}");
            assert!(p.is_ready(), "case {i}");
            assert!(p.status().last_error.is_some(), "case {i}");
            assert_eq!(refreshes(&p, "error"), i as u64 + 1);
        }
        assert!(!srv.seen.lock().iter().any(|r| r.path == "/elsewhere"));
        // Timeouts: a slow server and a short fetch_timeout.
        srv.set(|_| reply(200, &jwks(&["late"])).delayed(Duration::from_millis(500)));
        fetch_now(&p2).await;
        assert!(p2.keys().is_empty());
        let err = p2.status().last_error.unwrap();
        assert!(
            err.contains("timed out") || err.contains("timeout"),
            "{err}"
        );
        // Back to a good answer: error cleared.
        srv.set(|_| reply(200, &jwks(&["good", "new"])));
        fetch_now(&p).await;
        assert_eq!(p.keys().kids(), vec!["good", "new"]);
        assert!(p.status().last_error.is_none());
    }

    #[tokio::test]
    async fn error_backs_off_for_min_refresh() {
        let srv = Server::start(|_| reply(503, "")).await;
        let p = srv.provider("backoff", |s| s.min_refresh = Duration::from_millis(100));
        let running = Running::start(&p);
        tokio::time::sleep(Duration::from_millis(350)).await;
        running.stop().await;
        let n = srv.hits();
        assert!((3..=5).contains(&n), "{n} fetches in 350 ms");
    }

    #[tokio::test]
    async fn max_stale_discards_keys_and_a_success_restores_them() {
        let srv = Server::start(|_| reply(200, &jwks(&["a"]))).await;
        let p = srv.provider("stale", |s| {
            s.min_refresh = Duration::from_millis(20);
            s.refresh_interval = Duration::from_millis(20);
            s.max_stale = Duration::from_millis(150);
        });
        let running = Running::start(&p);
        eventually("first load", Duration::from_secs(2), || p.is_ready()).await;
        srv.set(|_| reply(500, ""));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(p.keys().kids(), vec!["a"], "kept while within max_stale");
        // The status is read in the same look that sees the keys gone: the next failed fetch
        // (every 20 ms) replaces last_error with its own reason.
        let mut seen = None;
        eventually("keys discarded", Duration::from_secs(2), || {
            let st = p.status();
            let discarded = st.keys.is_empty();
            seen = Some(st);
            discarded
        })
        .await;
        assert!(!p.is_ready());
        let st = seen.unwrap();
        assert!(!st.ready);
        assert!(st.keys.is_empty());
        assert!(st.last_error.unwrap().contains("keys discarded"));
        assert_eq!(metrics::JWKS_KEYS.with_label_values(&[p.name()]).get(), 0);
        assert!(!p.refresh_for_kid("a").await);
        srv.set(|_| reply(200, &jwks(&["a"])));
        eventually("restored", Duration::from_secs(2), || p.is_ready()).await;
        assert_eq!(p.keys().kids(), vec!["a"]);
        assert!(p.status().last_error.is_none());
        running.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unknown_kid_storm_costs_at_most_one_fetch_per_min_refresh() {
        let srv =
            Server::start(|_| reply(200, &jwks(&["real"])).delayed(Duration::from_millis(50)))
                .await;
        let p = srv.provider("storm", |s| s.min_refresh = Duration::from_millis(400));
        let storm = |tag: &'static str| {
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let p = p.clone();
                    tokio::spawn(async move { p.refresh_for_kid(&format!("{tag}-{i}")).await })
                })
                .collect();
            async move {
                for t in tasks {
                    assert!(!t.await.unwrap());
                }
            }
        };
        let start = Instant::now();
        storm("first").await;
        assert_eq!(srv.hits(), 1, "concurrent callers share one fetch");
        assert_eq!(p.keys().kids(), vec!["real"]);
        storm("second").await;
        assert!(start.elapsed() < Duration::from_millis(400));
        assert_eq!(srv.hits(), 1, "rate-limited within min_refresh");
        // A kid already found unknown is answered from the negative cache, without a fetch.
        let t = Instant::now();
        assert!(!p.refresh_for_kid("first-7").await);
        assert!(t.elapsed() < Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(420)).await;
        storm("third").await;
        assert_eq!(srv.hits(), 2, "one more fetch once min_refresh has passed");
    }

    #[tokio::test]
    async fn refresh_for_kid_finds_a_newly_published_key() {
        let srv = Server::start(|_| reply(200, &jwks(&["old"]))).await;
        let p = srv.provider("rotate", |s| s.min_refresh = Duration::from_millis(100));
        fetch_now(&p).await;
        assert!(p.refresh_for_kid("old").await);
        srv.set(|_| reply(200, &jwks(&["old", "new"])));
        // Within min_refresh of the last fetch: no fetch, so not found yet.
        assert!(!p.refresh_for_kid("new").await);
        assert_eq!(srv.hits(), 1);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(p.refresh_for_kid("new").await);
        assert_eq!(srv.hits(), 2);
        assert_eq!(p.keys().kids(), vec!["new", "old"]);
    }

    #[tokio::test]
    async fn refresh_for_kid_waits_at_most_fetch_timeout() {
        let srv =
            Server::start(|_| reply(200, &jwks(&["k"])).delayed(Duration::from_secs(5))).await;
        let p = srv.provider("wait", |s| s.fetch_timeout = Duration::from_millis(150));
        let t = Instant::now();
        assert!(!p.refresh_for_kid("k").await);
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn discovery_finds_jwks_uri() {
        let srv = Server::start(|_| reply(404, "")).await;
        let base = srv.base.clone();
        let issuer = format!("{base}/realm");
        let iss = issuer.clone();
        srv.set(move |req| match req.path.as_str() {
            "/realm/.well-known/openid-configuration" => reply(
                200,
                &format!(r#"{{"issuer":"{iss}","jwks_uri":"{base}/realm/certs"}}"#),
            ),
            "/realm/certs" => reply(200, &jwks(&["d1"])),
            _ => reply(404, ""),
        });
        let p = ProviderRuntime::new(
            &unique("disco"),
            settings(JwksSource::Discovery {
                issuer: format!("{issuer}/"),
            }),
        );
        fetch_now(&p).await;
        assert_eq!(p.keys().kids(), vec!["d1"], "{:?}", p.status().last_error);
        assert_eq!(srv.hits(), 2);
        // The jwks_uri is cached: a second refresh does not re-discover.
        fetch_now(&p).await;
        assert_eq!(srv.hits(), 3);
        assert_eq!(srv.last().path, "/realm/certs");

        // A failure drops the cached jwks_uri, so the next attempt re-discovers.
        srv.set(|_| reply(500, ""));
        fetch_now(&p).await;
        assert_eq!(p.keys().kids(), vec!["d1"]);
        fetch_now(&p).await;
        assert_eq!(srv.last().path, "/realm/.well-known/openid-configuration");
    }

    #[tokio::test]
    async fn discovery_refuses_bad_documents() {
        let srv = Server::start(|_| reply(404, "")).await;
        let issuer = srv.base.clone();
        let cases = [
            r#"{"jwks_uri":"http://example.com/certs"}"#.to_owned(),
            format!(r#"{{"issuer":"https://evil.example","jwks_uri":"{issuer}/certs"}}"#),
            r#"{"issuer":1}"#.to_owned(),
            "{}".to_owned(),
        ];
        for (i, doc) in cases.into_iter().enumerate() {
            srv.set(move |_| reply(200, &doc));
            let p = ProviderRuntime::new(
                &unique("disco-bad"),
                settings(JwksSource::Discovery {
                    issuer: issuer.clone(),
                }),
            );
            fetch_now(&p).await;
            assert!(p.keys().is_empty(), "case {i}");
            assert_eq!(refreshes(&p, "error"), 1, "case {i}");
        }
    }

    #[tokio::test]
    async fn file_source_is_reread_after_an_edit() {
        let dir = std::env::temp_dir().join(unique("portcullis-jwks-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks(&["f1"])).unwrap();
        let mut s = settings(JwksSource::File(path.clone()));
        s.refresh_interval = Duration::from_millis(30);
        s.min_refresh = Duration::from_millis(30);
        let p = ProviderRuntime::new(&unique("file"), s);
        let running = Running::start(&p);
        eventually("first load", Duration::from_secs(2), || p.is_ready()).await;
        assert_eq!(p.keys().kids(), vec!["f1"]);

        std::fs::write(&path, jwks(&["f1", "f2"])).unwrap();
        eventually("re-read", Duration::from_secs(2), || p.keys().len() == 2).await;
        // A broken edit keeps the last good keys.
        std::fs::write(&path, "{ broken").unwrap();
        let errors = || refreshes(&p, "error");
        eventually("bad edit seen", Duration::from_secs(2), || errors() >= 1).await;
        assert_eq!(p.keys().kids(), vec!["f1", "f2"]);
        // Unchanged file: re-checked on schedule as not_modified, not re-parsed in a hot loop.
        std::fs::write(&path, jwks(&["f3"])).unwrap();
        eventually("fixed", Duration::from_secs(2), || {
            p.keys().kids() == ["f3"]
        })
        .await;
        eventually("not_modified", Duration::from_secs(2), || {
            refreshes(&p, "not_modified") >= 1
        })
        .await;
        running.stop().await;
        assert!(refreshes(&p, "ok") <= 4, "{}", refreshes(&p, "ok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn oversized_or_missing_file_is_an_error() {
        let dir = std::env::temp_dir().join(unique("portcullis-jwks-big"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, " ".repeat(MAX_JWKS_BYTES + 1)).unwrap();
        let p = ProviderRuntime::new(&unique("file-big"), settings(JwksSource::File(path)));
        fetch_now(&p).await;
        assert!(p.status().last_error.unwrap().contains("larger than"));
        let p = ProviderRuntime::new(
            &unique("file-missing"),
            settings(JwksSource::File(dir.join("nope.json"))),
        );
        fetch_now(&p).await;
        assert_eq!(refreshes(&p, "error"), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn run_stops_on_shutdown() {
        let srv = Server::start(|_| reply(200, &jwks(&["a"]))).await;
        let p = srv.provider("stop", |_| {});
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(p.clone().run(rx));
        eventually("load", Duration::from_secs(2), || p.is_ready()).await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
        // Dropping the sender also ends the loop.
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(p.clone().run(rx));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn absurd_durations_do_not_panic() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now);
        let mut s = settings(JwksSource::Url("https://x/".into()));
        s.refresh_interval = Duration::MAX;
        s.max_stale = Duration::MAX;
        let p = ProviderRuntime::new(&unique("absurd"), s);
        assert_eq!(p.next_delay(None), Duration::MAX);
        assert!(!p.is_ready());
    }

    #[test]
    fn jwks_url_policy() {
        for ok in [
            "https://id.example.com/jwks.json",
            "https://10.0.0.1/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:1/jwks",
        ] {
            assert!(check_jwks_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://id.example.com/jwks.json",
            "http://10.0.0.1/jwks",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/jwks",
            "http://[::ffff:127.0.0.1]/jwks",
            "http://localhost.evil.com/jwks",
            "http://127.0.0.1.nip.io/jwks",
            "file:///etc/passwd",
            "ftp://id.example.com/jwks",
            "https://user:pw@id.example.com/jwks",
            "not a url",
            "",
        ] {
            assert!(check_jwks_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            discovery_url("https://id.example.com/"),
            "https://id.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://id.example.com/realms/x"),
            "https://id.example.com/realms/x/.well-known/openid-configuration"
        );
    }

    #[tokio::test]
    async fn https_to_an_unreachable_host_is_a_clean_error() {
        // Exercises the rustls client build and a failing TLS connect (nothing listens on :1).
        let p = ProviderRuntime::new(
            &unique("tls"),
            settings(JwksSource::Url("https://127.0.0.1:1/jwks".into())),
        );
        assert!(p.client.is_ok());
        fetch_now(&p).await;
        assert!(p.status().last_error.is_some());
        assert!(p.keys().is_empty());
    }
}
